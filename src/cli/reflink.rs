//! Verbs on files of a mounted daxlink: clone, dedupe, unshare, extents, page.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use super::fail;
use crate::arena::{Access, Pool};
use crate::dax::PageState;
use crate::fs::{FileExtent, Fs, Options};
use crate::fuse::ioctl;
use crate::types::{PAGE_SIZE, Pfn};

/// Runs a daxlink ioctl whose argument is `buf` (in and out).
pub(super) fn ioctl_rw(f: &impl AsRawFd, cmd: u32, buf: &mut [u8]) -> io::Result<()> {
    debug_assert_eq!(((cmd >> 16) & 0x3fff) as usize, buf.len());
    // SAFETY: the buffer is exactly the size the ioctl number encodes.
    if unsafe { libc::ioctl(f.as_raw_fd(), cmd as _, buf.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn not_daxlink(e: io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOTTY) { "not on a daxlink mount".into() } else { e.to_string() }
}

/// Writes the file's cached data back to the daemon and waits for it: under the
/// writeback cache the kernel holds what programs wrote and sends it later, and an
/// ioctl that reads or shares the file's pages in the daemon must see it. Not an
/// fsync: nothing is made durable (`sync_file_range(2)` over the whole file). An
/// error it reports is a write-back that failed, reported to the file's writers at
/// their fsync or close too (each open file keeps its own mark); the verb acts on
/// what the pool holds, so it goes on.
pub(super) fn write_back(f: &impl AsRawFd) {
    let how = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range on an open descriptor; no memory is passed.
    unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, how) };
}

/// `write_back` for every file of the filesystem `f` is on (`syncfs(2)`, which also
/// makes it durable): for the verbs that act on files they do not name. Its error is
/// any write-back that failed on the filesystem since, and goes by as `write_back`'s.
pub(super) fn write_back_all(f: &impl AsRawFd) {
    // SAFETY: syncfs on an open descriptor; no memory is passed.
    unsafe { libc::syncfs(f.as_raw_fd()) };
}

/// Every mapped extent of an open file, once its cached data is written back.
pub fn extents_of(f: &File) -> Result<Vec<FileExtent>, String> {
    write_back(f);
    let mut all = Vec::new();
    let mut start = 0;
    loop {
        let mut buf = ioctl::bytes(&[start], ioctl::EXTENTS_LEN);
        ioctl_rw(f, ioctl::DAXLINK_IOC_EXTENTS, &mut buf).map_err(not_daxlink)?;
        let (batch, next) = ioctl::decode_extents(&buf).ok_or("malformed extent reply")?;
        all.extend(batch);
        match next {
            Some(n) => start = n,
            None => return Ok(all),
        }
    }
}

pub fn extents(path: &Path, json: bool) -> ExitCode {
    let maps = match File::open(path).map_err(|e| e.to_string()).and_then(|f| extents_of(&f)) {
        Ok(m) => m,
        Err(e) => return fail(path, e),
    };
    if json {
        let rows: Vec<String> = maps
            .iter()
            .map(|m| {
                format!(
                    "{{\"file_offset\":{},\"length\":{},\"pfn\":{},\"shared\":{},\"poisoned\":{}}}",
                    m.fblock.byte(),
                    m.pages * PAGE_SIZE,
                    m.pfn,
                    m.co_owned,
                    m.poisoned
                )
            })
            .collect();
        println!("[{}]", rows.join(","));
    } else {
        println!("{:>5} {:>16} {:>14} {:>12}  flags", "ext", "file_offset", "length", "pfn");
        for (i, m) in maps.iter().enumerate() {
            let flags: Vec<&str> =
                [(m.co_owned, "shared"), (m.poisoned, "poisoned")].iter().filter(|f| f.0).map(|f| f.1).collect();
            let flags = flags.join(",");
            println!("{i:>5} {:>16} {:>14} {:>12}  {flags}", m.fblock.byte(), m.pages * PAGE_SIZE, m.pfn);
        }
    }
    ExitCode::SUCCESS
}

/// `state` is `bad` for a failed page; the ownership fields still say who holds it.
fn page_json(pfn: Pfn, s: PageState, bad: bool) -> String {
    let state = |own: &str| if bad { "bad".to_string() } else { own.to_string() };
    match s {
        PageState::Free => format!("{{\"pfn\":{pfn},\"state\":\"{}\"}}", state("free")),
        PageState::Owned { mapping, index } => {
            format!("{{\"pfn\":{pfn},\"state\":\"{}\",\"mapping\":{mapping},\"index\":{index}}}", state("owned"))
        }
        PageState::Shared { share } => {
            format!("{{\"pfn\":{pfn},\"state\":\"{}\",\"share\":{share}}}", state("shared"))
        }
    }
}

fn page_text(pfn: Pfn, s: PageState, bad: bool) -> String {
    let own = match s {
        PageState::Free => "free".to_string(),
        PageState::Owned { mapping, index } => format!("owned by inode {mapping} at index {index}"),
        PageState::Shared { share } => format!("shared, share {share}"),
    };
    if bad { format!("pfn {pfn}: bad ({own})") } else { format!("pfn {pfn}: {own}") }
}

/// The state of a page, from a mount (its ioctl) or from an unmounted pool.
pub fn page(target: &Path, pfn: u64, json: bool) -> ExitCode {
    let pfn = Pfn(pfn);
    let state = if target.is_dir() {
        File::open(target).map_err(|e| e.to_string()).and_then(|f| {
            let mut buf = ioctl::bytes(&[pfn.0], ioctl::PAGE_LEN);
            ioctl_rw(&f, ioctl::DAXLINK_IOC_PAGE, &mut buf).map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => format!("pfn {pfn} is not a data page of this pool"),
                _ => super::failure::needs_root("page", e),
            })?;
            ioctl::decode_page(&buf).ok_or_else(|| "malformed page reply".to_string())
        })
    } else {
        Pool::open(target, Access::Read, super::LOCK_WAIT).and_then(|pool| {
            let fs = Fs::open(pool.media.clone(), Options { read_only: true, ..Options::default() })
                .map_err(|e| e.to_string())?;
            let bad = |_| format!("pfn {pfn} is not a data page of this pool");
            Ok((fs.page_state(pfn).map_err(bad)?, fs.page_is_bad(pfn).map_err(bad)?))
        })
    };
    match state {
        Ok((s, bad)) => println!("{}", if json { page_json(pfn, s, bad) } else { page_text(pfn, s, bad) }),
        Err(e) => return fail(target, e),
    }
    ExitCode::SUCCESS
}

/// A byte range of a clone-style verb.
#[derive(Clone, Copy, Debug, Default)]
pub struct Range {
    pub src_offset: u64,
    pub dst_offset: u64,
    /// 0: to the source's EOF.
    pub len: u64,
}

/// `cp --reflink=always`: clones through copy_file_range, then proves that every
/// mapped page of the range is shared with the source.
pub fn clone(src: &Path, dst: &Path, r: Range, whole: bool) -> ExitCode {
    match clone_inner(src, dst, r, whole) {
        Ok(n) => {
            println!("daxlink: cloned {n} bytes from {} to {}", src.display(), dst.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(dst, e),
    }
}

fn clone_inner(src: &Path, dst: &Path, r: Range, whole: bool) -> Result<u64, String> {
    // Every check comes before DST is opened (and, for a whole-file clone, truncated).
    if !r.src_offset.is_multiple_of(PAGE_SIZE) || !r.dst_offset.is_multiple_of(PAGE_SIZE) {
        return Err(format!("offsets must be multiples of {PAGE_SIZE} bytes (EINVAL)"));
    }
    let smeta = std::fs::metadata(src).map_err(|e| format!("{}: {e}", src.display()))?;
    not_regular(src, &smeta)?;
    let size = smeta.len();
    if r.src_offset > size || (r.len != 0 && r.src_offset + r.len > size) {
        return Err("the range runs past the source's EOF (EINVAL)".into());
    }
    let len = if r.len == 0 { size - r.src_offset } else { r.len };
    let to_eof = r.src_offset + len == size;
    if !len.is_multiple_of(PAGE_SIZE) && !to_eof {
        return Err(format!("length must be a multiple of {PAGE_SIZE} unless it ends at the source's EOF (EINVAL)"));
    }
    let dmeta = std::fs::metadata(dst).ok();
    let ddev = match &dmeta {
        Some(m) => m.dev(),
        None => {
            let parent = dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::metadata(parent).map_err(|e| format!("{}: {e}", parent.display()))?.dev()
        }
    };
    if ddev != smeta.dev() {
        return Err("source and destination are on different filesystems (EXDEV)".into());
    }
    if let Some(m) = &dmeta {
        not_regular(dst, m)?;
        let same = m.ino() == smeta.ino();
        let overlap = r.dst_offset < r.src_offset + len && r.src_offset < r.dst_offset + len;
        if same && (whole || overlap) {
            return Err("source and destination ranges overlap in the same file (EINVAL)".into());
        }
        // generic_remap_check_len: an unaligned EOF tail may only land at DST's EOF.
        if !whole && !len.is_multiple_of(PAGE_SIZE) && r.dst_offset + len < m.len() {
            return Err("an unaligned EOF block cannot be cloned into the middle of the destination (EINVAL)".into());
        }
    }
    let s = File::open(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let d = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(whole)
        .open(dst)
        .map_err(|e| format!("cannot open: {e}"))?;
    let (mut soff, mut doff) = (r.src_offset as i64, r.dst_offset as i64);
    let mut left = len;
    while left > 0 {
        // SAFETY: both descriptors are open; the offsets are ours.
        let n = unsafe { libc::copy_file_range(s.as_raw_fd(), &mut soff, d.as_raw_fd(), &mut doff, left as usize, 0) };
        if n < 0 {
            return Err(format!("copy_file_range: {}", io::Error::last_os_error()));
        }
        if n == 0 {
            break;
        }
        left -= n as u64;
    }
    verify_shared(&s, &d, r.src_offset, r.dst_offset, len)?;
    Ok(len - left)
}

/// Clones are between regular files only (EISDIR for a directory, else EINVAL).
fn not_regular(path: &Path, m: &std::fs::Metadata) -> Result<(), String> {
    match (m.is_file(), m.is_dir()) {
        (true, _) => Ok(()),
        (false, true) => Err(format!("{} is a directory (EISDIR)", path.display())),
        (false, false) => Err(format!("{} is not a regular file (EINVAL)", path.display())),
    }
}

/// Every source page of the range must sit, shared, at the same place in the destination.
fn verify_shared(s: &File, d: &File, soff: u64, doff: u64, len: u64) -> Result<(), String> {
    shared_everywhere(&extents_of(s)?, &extents_of(d)?, soff, doff, len)
}

/// Whether every page of the source's `[soff, soff + len)` is at the same place in the
/// destination's `[doff, doff + len)`, and shared. Both offsets are page-aligned; a
/// page counts when it starts inside the range (an unaligned EOF tail is one page).
///
/// A merge of the two run lists: O(extents), never a walk of the pages.
pub(super) fn shared_everywhere(
    s: &[FileExtent],
    d: &[FileExtent],
    soff: u64,
    doff: u64,
    len: u64,
) -> Result<(), String> {
    let sw = window(s, soff, len);
    let dw = window(d, doff, len);
    let total = |w: &[Run]| w.iter().map(|r| r.pages).sum::<u64>();
    let (spages, dpages) = (total(&sw), total(&dw));
    // Pages at the same relative place on the same pfn, shared in the destination.
    let (mut i, mut j, mut same) = (0, 0, 0);
    while i < sw.len() && j < dw.len() {
        let (a, b) = (&sw[i], &dw[j]);
        let from = a.first.max(b.first);
        let to = (a.first + a.pages).min(b.first + b.pages);
        if from < to && b.co_owned && a.pfn.0.wrapping_sub(a.first) == b.pfn.0.wrapping_sub(b.first) {
            same += to - from;
        }
        if a.first + a.pages <= b.first + b.pages {
            i += 1;
        } else {
            j += 1;
        }
    }
    verdict(same, spages, dpages)
}

/// The check's answer from the pages shared in place, the source's and the
/// destination's pages in the range.
fn verdict(same: u64, spages: u64, dpages: u64) -> Result<(), String> {
    if same < spages {
        return Err(format!("the clone did not share {} of {spages} pages: blocks were copied", spages - same));
    }
    if dpages != spages {
        return Err(format!(
            "the destination has {} mapped page(s) where the source has holes",
            dpages.abs_diff(spages)
        ));
    }
    Ok(())
}

/// A run of mapped pages inside a byte window, numbered from the window's first page.
struct Run {
    first: u64,
    pfn: Pfn,
    pages: u64,
    co_owned: bool,
}

/// The runs of `maps` (in file order) whose pages start in `[off, off + len)`.
fn window(maps: &[FileExtent], off: u64, len: u64) -> Vec<Run> {
    let (lo, hi) = (off / PAGE_SIZE, (off + len).div_ceil(PAGE_SIZE));
    maps.iter()
        .filter_map(|m| {
            let from = m.fblock.0.max(lo);
            let to = (m.fblock.0 + m.pages).min(hi);
            (from < to).then(|| Run {
                first: from - lo,
                pfn: m.pfn.plus(from - m.fblock.0),
                pages: to - from,
                co_owned: m.co_owned,
            })
        })
        .collect()
}

pub fn dedupe(src: &Path, dst: &Path, r: Range) -> ExitCode {
    let run = || -> Result<(u64, u64), String> {
        let smeta = std::fs::metadata(src).map_err(|e| format!("{}: {e}", src.display()))?;
        let d = OpenOptions::new().read(true).write(true).open(dst).map_err(|e| format!("cannot open: {e}"))?;
        write_back(&File::open(src).map_err(|e| format!("{}: {e}", src.display()))?);
        write_back(&d);
        // FIDEDUPERANGE takes a zero length as "nothing"; here it means to the source's EOF.
        let len = if r.len == 0 { smeta.len().saturating_sub(r.src_offset) } else { r.len };
        let mut buf = ioctl::bytes(&[smeta.ino(), r.src_offset, r.dst_offset, len], ioctl::DEDUPE_LEN);
        ioctl_rw(&d, ioctl::DAXLINK_IOC_DEDUPE, &mut buf).map_err(not_daxlink)?;
        let w = ioctl::words(&buf);
        Ok((w[0], w[1]))
    };
    match run() {
        Ok((bytes, ioctl::DEDUPE_SAME)) => {
            println!("{}: SAME, {bytes} bytes deduped", dst.display());
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("{}: DIFFERS", dst.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(dst, e),
    }
}

pub fn unshare(path: &Path, offset: u64, len: u64) -> ExitCode {
    let run = || -> Result<(), String> {
        let f = OpenOptions::new().read(true).write(true).open(path).map_err(|e| format!("cannot open: {e}"))?;
        write_back(&f);
        let len = if len == 0 { u64::MAX - offset } else { len };
        let mut buf = ioctl::bytes(&[offset, len], ioctl::UNSHARE_LEN);
        ioctl_rw(&f, ioctl::DAXLINK_IOC_UNSHARE, &mut buf).map_err(not_daxlink)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(path, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FileBlock;

    fn ext(fblock: u64, pfn: u64, pages: u64, co_owned: bool) -> FileExtent {
        FileExtent { fblock: FileBlock(fblock), pfn: Pfn(pfn), pages, co_owned, poisoned: false }
    }

    /// The page-by-page statement of the same rule.
    fn by_pages(s: &[FileExtent], d: &[FileExtent], soff: u64, doff: u64, len: u64) -> Result<(), String> {
        let pages = |maps: &[FileExtent], off: u64| -> Vec<(u64, Pfn, bool)> {
            maps.iter()
                .flat_map(|m| (0..m.pages).map(move |i| (m.fblock.plus(i).byte(), m.pfn.plus(i), m.co_owned)))
                .filter(|(o, _, _)| *o >= off && *o < off + len)
                .map(|(o, p, sh)| (o - off, p, sh))
                .collect()
        };
        let (sp, dp) = (pages(s, soff), pages(d, doff));
        let at: std::collections::HashMap<u64, (Pfn, bool)> = dp.iter().map(|(o, p, sh)| (*o, (*p, *sh))).collect();
        let same = sp.iter().filter(|(o, p, _)| at.get(o) == Some(&(*p, true))).count() as u64;
        verdict(same, sp.len() as u64, dp.len() as u64)
    }

    #[test]
    fn a_clone_split_differently_into_extents_is_shared() {
        let s = [ext(0, 100, 8, true), ext(8, 300, 4, true)];
        let d = [ext(2, 100, 3, true), ext(5, 103, 5, true), ext(10, 300, 4, true)];
        assert_eq!(shared_everywhere(&s, &d, 0, 2 * PAGE_SIZE, 12 * PAGE_SIZE), Ok(()));
        // An unaligned EOF tail counts its last page.
        assert_eq!(shared_everywhere(&s, &d, 0, 2 * PAGE_SIZE, 11 * PAGE_SIZE + 1), Ok(()));
    }

    #[test]
    fn copied_moved_private_or_missing_pages_are_counted() {
        let s = [ext(0, 100, 8, true)];
        let copied = [ext(0, 100, 3, true), ext(3, 500, 2, false), ext(5, 105, 3, true)];
        let private = [ext(0, 100, 8, false)];
        let hole = [ext(0, 100, 3, true), ext(4, 104, 4, true)];
        let len = 8 * PAGE_SIZE;
        let msg = |n| Err(format!("the clone did not share {n} of 8 pages: blocks were copied"));
        assert_eq!(shared_everywhere(&s, &copied, 0, 0, len), msg(2));
        assert_eq!(shared_everywhere(&s, &private, 0, 0, len), msg(8));
        assert_eq!(shared_everywhere(&s, &hole, 0, 0, len), msg(1));
        assert_eq!(shared_everywhere(&s, &s, 0, PAGE_SIZE, len), msg(8));
        // Pages where the source has a hole: not copies, but not a clone either.
        let extra = [ext(0, 100, 8, true), ext(9, 900, 1, false)];
        let gap = [ext(0, 100, 8, true)];
        assert_eq!(
            shared_everywhere(&gap, &extra, 0, 0, 10 * PAGE_SIZE),
            Err("the destination has 1 mapped page(s) where the source has holes".into())
        );
    }

    #[test]
    fn the_merge_agrees_with_the_page_walk() {
        // Random extent lists around a common set of pages: splits, holes, copies,
        // private runs and shifted windows.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let random_maps = |next: &mut dyn FnMut(u64) -> u64| {
            let mut maps = Vec::new();
            let mut b = next(3);
            while b < 40 {
                let pages = 1 + next(6);
                maps.push(ext(b, 1000 + b + 100 * next(2), pages, next(4) != 0));
                b += pages + next(2);
            }
            maps
        };
        for _ in 0..2000 {
            let s = random_maps(&mut next);
            let (d, soff, doff) = if next(2) == 0 {
                (random_maps(&mut next), next(4) * PAGE_SIZE, next(4) * PAGE_SIZE)
            } else {
                // The source's runs split anew, now and then one private: mostly clones.
                let mut d = Vec::new();
                for m in &s {
                    let cut = next(m.pages);
                    d.push(ext(m.fblock.0, m.pfn.0, cut, next(8) != 0));
                    d.push(ext(m.fblock.0 + cut, m.pfn.0 + cut, m.pages - cut, next(8) != 0));
                }
                d.retain(|m| m.pages > 0);
                let off = next(4) * PAGE_SIZE;
                (d, off, off)
            };
            let len = next(30) * PAGE_SIZE + next(2) * next(PAGE_SIZE);
            assert_eq!(
                shared_everywhere(&s, &d, soff, doff, len),
                by_pages(&s, &d, soff, doff, len),
                "{s:?} {d:?} {soff} {doff} {len}"
            );
        }
    }
}
