//! daxlink's ioctls. FUSE forwards ioctls on regular files and directories only in
//! restricted mode, so every argument is fixed-size and its size is encoded in the
//! ioctl number (`_IOR`/`_IOW`/`_IOWR`). All fields are little-endian u64s.

use crate::dax::PageState;
use crate::fs::inode::{FL_APPEND, FL_IMMUTABLE, FL_NOATIME, FL_NODUMP};
use crate::fs::{AtimeMode, BadPage, FileExtent, Options, Stats};
use crate::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

/// The ioctl "type" byte of daxlink.
pub const IOC_TYPE: u32 = b'X' as u32;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (IOC_TYPE << 8) | nr
}

/// Statistics (`daxlink stat`), on any file or directory of the mount.
pub const STATS_LEN: usize = 11 * 8;
pub const DAXLINK_IOC_STATS: u32 = ioc(IOC_READ, 1, STATS_LEN);

/// Extents of the file, from a file offset: in `[start]`; out `[count, more, next]`
/// then `count` records `[file_offset, length, pfn, flags]`.
pub const EXTENTS_MAX: usize = 256;
pub const EXTENTS_LEN: usize = 3 * 8 + EXTENTS_MAX * 4 * 8;
pub const DAXLINK_IOC_EXTENTS: u32 = ioc(IOC_READ | IOC_WRITE, 2, EXTENTS_LEN);
pub const EXTENT_SHARED: u64 = 1;
pub const EXTENT_POISONED: u64 = 2;

/// A page's owner state: in `[pfn]`; out `[pfn, state, mapping, index or share, bad]`.
pub const PAGE_LEN: usize = 5 * 8;
pub const DAXLINK_IOC_PAGE: u32 = ioc(IOC_READ | IOC_WRITE, 3, PAGE_LEN);
pub const PAGE_FREE: u64 = 0;
pub const PAGE_OWNED: u64 = 1;
pub const PAGE_SHARED: u64 = 2;

/// Dedupe into the file the ioctl is on: in `[src inode, src offset, dst offset, len]`;
/// out `[bytes deduped, status (0 same, 1 differs), 0, 0]`.
pub const DEDUPE_LEN: usize = 4 * 8;
pub const DAXLINK_IOC_DEDUPE: u32 = ioc(IOC_READ | IOC_WRITE, 4, DEDUPE_LEN);
pub const DEDUPE_SAME: u64 = 0;
pub const DEDUPE_DIFFERS: u64 = 1;

/// Unshare a range of the file: in `[offset, len]`.
pub const UNSHARE_LEN: usize = 2 * 8;
pub const DAXLINK_IOC_UNSHARE: u32 = ioc(IOC_WRITE, 5, UNSHARE_LEN);

/// Fail arena pages (root only): in `[pfn, count]`; out `[pages failed, owners found,
/// holder calls, 0]`.
pub const INJECT_LEN: usize = 4 * 8;
pub const DAXLINK_IOC_INJECT: u32 = ioc(IOC_READ | IOC_WRITE, 6, INJECT_LEN);

/// Bad pages and their owners, from a cursor (a pfn and an owner of that page): in
/// `[pfn, owner]`; out `[count, more, next pfn, next owner]` then `count` records
/// `[pfn, inode, file offset]` (inode 0: a bad page without owners). A page with more
/// owners than a batch holds continues in the next batch.
pub const POISON_MAX: usize = 512;
pub const POISON_LEN: usize = 4 * 8 + POISON_MAX * 3 * 8;
pub const DAXLINK_IOC_POISON: u32 = ioc(IOC_READ | IOC_WRITE, 7, POISON_LEN);

/// `mount -o remount` (root only): in `[read_only, atime, dir_atime]`, atime 0 relatime,
/// 1 strictatime, 2 noatime.
pub const REMOUNT_LEN: usize = 3 * 8;
pub const DAXLINK_IOC_REMOUNT: u32 = ioc(IOC_WRITE, 8, REMOUNT_LEN);

pub fn encode_remount(o: &Options) -> Vec<u8> {
    bytes(&options_words(o), REMOUNT_LEN)
}

pub fn decode_remount(b: &[u8]) -> Option<Options> {
    options_of(&words(b))
}

/// What a mount's daemon runs with (any user): out `[daemon pid, read_only, atime,
/// dir_atime]`. A remount reads it to keep what it does not name, and to tell the
/// options the daemon started with (its command line) from changed ones.
pub const MOUNT_INFO_LEN: usize = 4 * 8;
pub const DAXLINK_IOC_MOUNT_INFO: u32 = ioc(IOC_READ, 10, MOUNT_INFO_LEN);

pub fn encode_mount_info(pid: u32, o: &Options) -> Vec<u8> {
    let mut w = vec![pid as u64];
    w.extend(options_words(o));
    bytes(&w, MOUNT_INFO_LEN)
}

pub fn decode_mount_info(b: &[u8]) -> Option<(u32, Options)> {
    let w = words(b);
    Some((u32::try_from(*w.first()?).ok()?, options_of(w.get(1..)?)?))
}

fn options_words(o: &Options) -> [u64; 3] {
    let atime = match o.atime {
        AtimeMode::Relatime => 0,
        AtimeMode::Strict => 1,
        AtimeMode::Never => 2,
    };
    [o.read_only as u64, atime, o.dir_atime as u64]
}

fn options_of(w: &[u64]) -> Option<Options> {
    let atime = match *w.get(1)? {
        0 => AtimeMode::Relatime,
        1 => AtimeMode::Strict,
        2 => AtimeMode::Never,
        _ => return None,
    };
    Some(Options { read_only: *w.first()? != 0, atime, dir_atime: *w.get(2)? != 0 })
}

/// The kernel's file attribute ioctls (`chattr`, `lsattr`, `xfs_io -c chattr`), which
/// `fuse_fileattr_get`/`_set` forward to the server: the flags as a 4-byte int (the
/// number says `long`), the fsxattr as its 28-byte struct.
pub const FS_IOC_GETFLAGS: u32 = 0x8008_6601;
pub const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
pub const FS_IOC32_GETFLAGS: u32 = 0x8004_6601;
pub const FS_IOC32_SETFLAGS: u32 = 0x4004_6602;
pub const FS_IOC_FSGETXATTR: u32 = 0x801c_581f;
pub const FS_IOC_FSSETXATTR: u32 = 0x401c_5820;
pub const FSXATTR_LEN: usize = 28;

/// `FS_XFLAG_*` for each `FS_*_FL` daxlink keeps.
const XFLAGS: [(u32, u32); 4] = [(FL_IMMUTABLE, 0x8), (FL_APPEND, 0x10), (FL_NOATIME, 0x40), (FL_NODUMP, 0x80)];

/// The fsxattr of an inode with these flags (no extent size hint, no project).
pub fn encode_fsxattr(flags: u32) -> Vec<u8> {
    let x = XFLAGS.iter().filter(|(f, _)| flags & f != 0).fold(0, |x, (_, b)| x | b);
    let mut out = vec![0u8; FSXATTR_LEN];
    out[..4].copy_from_slice(&x.to_le_bytes());
    out
}

/// The flags an fsxattr asks for; `None` if it asks for an xflag, an extent size or a
/// project daxlink does not keep.
pub fn decode_fsxattr(b: &[u8]) -> Option<u32> {
    let w = |i: usize| b.get(i * 4..i * 4 + 4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let x = w(0)?;
    let known = XFLAGS.iter().fold(0, |k, (_, b)| k | b);
    // fsx_extsize, fsx_projid and fsx_cowextsize (fsx_nextents is output only).
    if x & !known != 0 || w(1)? != 0 || w(3)? != 0 || w(4)? != 0 {
        return None;
    }
    Some(XFLAGS.iter().filter(|(_, b)| x & b != 0).fold(0, |f, (fl, _)| f | fl))
}

/// Little-endian u64 words of an ioctl buffer; short input reads as missing.
pub fn words(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect()
}

pub fn bytes(words: &[u64], len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    out.resize(len, 0);
    out
}

pub fn encode_stats(s: &Stats) -> Vec<u8> {
    bytes(
        &[
            s.block_size,
            s.pages_total,
            s.pages_used,
            s.pages_free,
            s.pages_shared,
            s.warnings,
            s.inodes,
            s.log_bytes,
            s.generation,
            s.pages_bad,
            s.holder_calls,
        ],
        STATS_LEN,
    )
}

pub fn decode_stats(b: &[u8]) -> Option<Stats> {
    let v = words(b);
    (v.len() == 11).then(|| Stats {
        block_size: v[0],
        pages_total: v[1],
        pages_used: v[2],
        pages_free: v[3],
        pages_shared: v[4],
        warnings: v[5],
        inodes: v[6],
        log_bytes: v[7],
        generation: v[8],
        pages_bad: v[9],
        holder_calls: v[10],
    })
}

/// One batch of extents (`Fs::extents_from` of the block holding the start offset);
/// `more`: another batch follows, from the end of this one.
pub fn encode_extents(batch: &[FileExtent], more: bool) -> Vec<u8> {
    debug_assert!(batch.len() <= EXTENTS_MAX);
    let next = batch.last().map_or(0, |m| m.fblock.plus(m.pages).byte());
    let mut w = vec![batch.len() as u64, more as u64, next];
    for m in batch {
        let flags = if m.co_owned { EXTENT_SHARED } else { 0 } | if m.poisoned { EXTENT_POISONED } else { 0 };
        w.extend([m.fblock.byte(), m.pages * PAGE_SIZE, m.pfn.0, flags]);
    }
    bytes(&w, EXTENTS_LEN)
}

/// Decodes a batch: the mappings and where the next batch starts, if any.
pub fn decode_extents(b: &[u8]) -> Option<(Vec<FileExtent>, Option<u64>)> {
    let w = words(b);
    let (count, more, next) = (*w.first()? as usize, *w.get(1)?, *w.get(2)?);
    if count > EXTENTS_MAX {
        return None;
    }
    let recs = w.get(3..3 + count * 4)?;
    let maps = recs
        .chunks_exact(4)
        .map(|r| FileExtent {
            fblock: FileBlock(r[0] / PAGE_SIZE),
            pages: r[1] / PAGE_SIZE,
            pfn: Pfn(r[2]),
            co_owned: r[3] & EXTENT_SHARED != 0,
            poisoned: r[3] & EXTENT_POISONED != 0,
        })
        .collect();
    Some((maps, (more != 0).then_some(next)))
}

pub fn encode_page(pfn: Pfn, s: PageState, bad: bool) -> Vec<u8> {
    let w = match s {
        PageState::Free => [pfn.0, PAGE_FREE, 0, 0],
        PageState::Owned { mapping, index } => [pfn.0, PAGE_OWNED, mapping.0, index.0],
        PageState::Shared { share } => [pfn.0, PAGE_SHARED, 0, share],
    };
    bytes(&[w[0], w[1], w[2], w[3], bad as u64], PAGE_LEN)
}

pub fn decode_page(b: &[u8]) -> Option<(PageState, bool)> {
    let w = words(b);
    let state = match *w.get(1)? {
        PAGE_FREE => PageState::Free,
        PAGE_OWNED => PageState::Owned { mapping: Ino(w[2]), index: FileBlock(w[3]) },
        PAGE_SHARED => PageState::Shared { share: w[3] },
        _ => return None,
    };
    Some((state, *w.get(4)? != 0))
}

/// Where a poison listing goes on: a bad page, and the index of its next owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoisonCursor {
    pub pfn: Pfn,
    pub owner: u64,
}

/// Bad pages and their owners from `at` on, `POISON_MAX` rows a batch.
pub fn encode_poison(all: &[BadPage], at: PoisonCursor) -> Vec<u8> {
    let rows = all.iter().filter(|p| p.pfn >= at.pfn).flat_map(|p| {
        let skip = if p.pfn == at.pfn { at.owner as usize } else { 0 };
        let owners: Box<dyn Iterator<Item = (u64, [u64; 3])>> = if p.owners.is_empty() {
            Box::new(std::iter::once((0, [p.pfn.0, 0, 0])))
        } else {
            Box::new(p.owners.iter().enumerate().map(move |(n, (i, b))| (n as u64, [p.pfn.0, i.0, b.byte()])))
        };
        owners.skip(skip).map(move |(n, row)| (PoisonCursor { pfn: p.pfn, owner: n }, row))
    });
    let mut recs = Vec::new();
    let mut next = None;
    for (cursor, row) in rows {
        if recs.len() == POISON_MAX {
            next = Some(cursor);
            break;
        }
        recs.push(row);
    }
    let at = next.unwrap_or_default();
    let mut w = vec![recs.len() as u64, next.is_some() as u64, at.pfn.0, at.owner];
    w.extend(recs.iter().flatten());
    bytes(&w, POISON_LEN)
}

/// One owner row of a bad page: `(pfn, inode, file offset)`; inode 0 for no owner.
pub type PoisonRow = (Pfn, Ino, u64);

/// Decodes a batch: its rows and where the next batch starts.
pub fn decode_poison(b: &[u8]) -> Option<(Vec<PoisonRow>, Option<PoisonCursor>)> {
    let w = words(b);
    let (count, more) = (*w.first()? as usize, *w.get(1)?);
    let next = PoisonCursor { pfn: Pfn(*w.get(2)?), owner: *w.get(3)? };
    if count > POISON_MAX {
        return None;
    }
    let rows = w.get(4..4 + count * 3)?.chunks_exact(3).map(|r| (Pfn(r[0]), Ino(r[1]), r[2])).collect();
    Some((rows, (more != 0).then_some(next)))
}

/// Clone the entries of a directory that are not directories into the directory the
/// ioctl is on, in one transaction (root only: the daemon cannot check permissions or
/// drop privileges as the kernel would for anyone else): in `[source directory inode,
/// cursor]` (0 at first); out `[files, symlinks, special files, bytes shared, more, next
/// cursor, count]` then `count` inode numbers of entries left to the caller.
pub const CLONE_DIR_MAX: usize = 1024;
pub const CLONE_DIR_LEN: usize = 7 * 8 + CLONE_DIR_MAX * 8;
pub const DAXLINK_IOC_CLONE_DIR: u32 = ioc(IOC_READ | IOC_WRITE, 9, CLONE_DIR_LEN);

/// One batch of `DAXLINK_IOC_CLONE_DIR`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloneDir {
    pub files: u64,
    pub symlinks: u64,
    pub special: u64,
    pub bytes: u64,
    /// Where the next batch starts, if the directory goes on.
    pub next: Option<u64>,
    /// Entries the daemon left to the caller, by inode number.
    pub skipped: Vec<u64>,
}

pub fn encode_clone_dir(r: &CloneDir) -> Vec<u8> {
    let n = r.skipped.len().min(CLONE_DIR_MAX);
    let mut w = vec![r.files, r.symlinks, r.special, r.bytes, r.next.is_some() as u64, r.next.unwrap_or(0), n as u64];
    w.extend(&r.skipped[..n]);
    bytes(&w, CLONE_DIR_LEN)
}

pub fn decode_clone_dir(b: &[u8]) -> Option<CloneDir> {
    let w = words(b);
    let count = *w.get(6)? as usize;
    if count > CLONE_DIR_MAX {
        return None;
    }
    Some(CloneDir {
        files: w[0],
        symlinks: w[1],
        special: w[2],
        bytes: w[3],
        next: (w[4] != 0).then_some(w[5]),
        skipped: w.get(7..7 + count)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_encoded_in_the_numbers_and_fit_the_ioc_field() {
        for (cmd, len) in [
            (DAXLINK_IOC_STATS, STATS_LEN),
            (DAXLINK_IOC_EXTENTS, EXTENTS_LEN),
            (DAXLINK_IOC_PAGE, PAGE_LEN),
            (DAXLINK_IOC_DEDUPE, DEDUPE_LEN),
            (DAXLINK_IOC_UNSHARE, UNSHARE_LEN),
            (DAXLINK_IOC_INJECT, INJECT_LEN),
            (DAXLINK_IOC_POISON, POISON_LEN),
            (DAXLINK_IOC_REMOUNT, REMOUNT_LEN),
            (DAXLINK_IOC_MOUNT_INFO, MOUNT_INFO_LEN),
        ] {
            assert_eq!(((cmd >> 16) & 0x3fff) as usize, len);
            assert!(len < 1 << 14);
        }
    }

    #[test]
    fn extents_batch_and_resume() {
        let all: Vec<FileExtent> = (0..300)
            .map(|i| FileExtent {
                fblock: FileBlock(i * 2),
                pfn: Pfn(1000 + i * 3),
                pages: 1,
                co_owned: i % 2 == 0,
                poisoned: i % 3 == 0,
            })
            .collect();
        let (first, next) = decode_extents(&encode_extents(&all[..EXTENTS_MAX], true)).unwrap();
        assert_eq!(first, all[..EXTENTS_MAX]);
        assert_eq!(next, Some(all[EXTENTS_MAX - 1].fblock.plus(1).byte()));
        let (rest, none) = decode_extents(&encode_extents(&all[EXTENTS_MAX..], false)).unwrap();
        assert_eq!(rest, all[EXTENTS_MAX..]);
        assert_eq!(none, None);
    }

    #[test]
    fn remount_options_roundtrip_and_bad_ones_are_refused() {
        for atime in [AtimeMode::Relatime, AtimeMode::Strict, AtimeMode::Never] {
            let o = Options { read_only: true, atime, dir_atime: false };
            let back = decode_remount(&encode_remount(&o)).unwrap();
            assert_eq!((back.read_only, back.atime, back.dir_atime), (true, atime, false));
        }
        assert!(decode_remount(&bytes(&[0, 7, 1], REMOUNT_LEN)).is_none());
        let o = Options { read_only: false, atime: AtimeMode::Strict, dir_atime: true };
        let (pid, back) = decode_mount_info(&encode_mount_info(4242, &o)).unwrap();
        assert_eq!((pid, back.atime, back.read_only), (4242, AtimeMode::Strict, false));
    }

    #[test]
    fn fsxattr_carries_the_kept_flags_and_refuses_others() {
        for flags in [0, FL_IMMUTABLE, FL_APPEND | FL_NODUMP, FL_NOATIME | FL_IMMUTABLE] {
            assert_eq!(decode_fsxattr(&encode_fsxattr(flags)), Some(flags));
        }
        assert_eq!(&encode_fsxattr(FL_IMMUTABLE)[..4], &8u32.to_le_bytes(), "FS_XFLAG_IMMUTABLE");
        let mut realtime = encode_fsxattr(0);
        realtime[0] = 1; // FS_XFLAG_REALTIME
        assert_eq!(decode_fsxattr(&realtime), None);
        let mut projid = encode_fsxattr(0);
        projid[12] = 7;
        assert_eq!(decode_fsxattr(&projid), None);
        assert_eq!(decode_fsxattr(&[0; 8]), None, "short");
    }

    #[test]
    fn page_states_roundtrip() {
        for s in
            [PageState::Free, PageState::Owned { mapping: Ino(5), index: FileBlock(9) }, PageState::Shared { share: 4 }]
        {
            assert_eq!(decode_page(&encode_page(Pfn(77), s, true)), Some((s, true)));
        }
    }

    /// Every row of a listing, batch by batch.
    fn listing(all: &[BadPage]) -> Vec<PoisonRow> {
        let (mut at, mut rows) = (PoisonCursor::default(), Vec::new());
        loop {
            let (batch, next) = decode_poison(&encode_poison(all, at)).unwrap();
            assert!(!batch.is_empty() || rows.is_empty(), "an empty batch in the middle of a listing");
            rows.extend(batch);
            match next {
                Some(n) => at = n,
                None => return rows,
            }
        }
    }

    #[test]
    fn poison_listing_names_every_owner_of_pages_larger_than_a_batch() {
        let big =
            |pfn: u64, n: u64| BadPage { pfn: Pfn(pfn), owners: (0..n).map(|i| (Ino(i + 2), FileBlock(i))).collect() };
        let all = vec![big(5, 2000), BadPage { pfn: Pfn(9), owners: vec![] }, big(12, 3), big(20, POISON_MAX as u64)];
        let rows = listing(&all);
        let want: Vec<PoisonRow> = all
            .iter()
            .flat_map(|p| match p.owners.as_slice() {
                [] => vec![(p.pfn, Ino(0), 0)],
                o => o.iter().map(|(i, b)| (p.pfn, *i, b.byte())).collect(),
            })
            .collect();
        assert_eq!(rows.len(), 2000 + 1 + 3 + POISON_MAX);
        assert_eq!(rows, want);
        assert_eq!(listing(&all[3..]).len(), POISON_MAX, "an exactly full last batch ends the listing");
        assert!(listing(&[]).is_empty());
    }

    #[test]
    fn malformed_replies_decode_to_none() {
        assert!(decode_stats(&[0; 8]).is_none());
        assert!(decode_extents(&bytes(&[EXTENTS_MAX as u64 + 1, 0, 0], EXTENTS_LEN)).is_none());
        assert!(decode_page(&bytes(&[1, 9], PAGE_LEN)).is_none());
    }

    #[test]
    fn clone_dir_replies_roundtrip_and_refuse_overlong_counts() {
        assert_eq!(((DAXLINK_IOC_CLONE_DIR >> 16) & 0x3fff) as usize, CLONE_DIR_LEN);
        let r = CloneDir { files: 9, symlinks: 2, special: 1, bytes: 1 << 20, next: Some(77), skipped: vec![5, 8] };
        assert_eq!(decode_clone_dir(&encode_clone_dir(&r)), Some(r));
        let end = CloneDir { next: None, skipped: (0..CLONE_DIR_MAX as u64).collect(), ..CloneDir::default() };
        assert_eq!(decode_clone_dir(&encode_clone_dir(&end)), Some(end));
        assert!(decode_clone_dir(&bytes(&[0, 0, 0, 0, 0, 0, CLONE_DIR_MAX as u64 + 1], CLONE_DIR_LEN)).is_none());
    }
}
