//! Sharing extents between files: clone, dedupe, copy_file_range, unshare.
//!
//! Range checks follow the Linux VFS (`generic_remap_file_range_prep`,
//! `generic_remap_checks`, `generic_remap_check_len` in fs/remap_range.c). A clone maps
//! the source's pages into the destination with `Map { cloned: true }`, which the page
//! table turns into `associate(shared = true)`: an owned page becomes shared with
//! share 2, each further clone adds one (fs/dax.c).

use super::core::Core;
use super::error::{Error, Result};
use super::inode::{Attr, Body, Kind, MAX_FILE_SIZE, Timespec};
use super::record::Record;
use super::tx::Tx;
use crate::types::{FileBlock, Ino, PAGE_SIZE};

/// Longest dedupe request (`vfs_dedupe_file_range` caps each at 1 GiB).
pub const DEDUPE_MAX: u64 = 1 << 30;
/// Bytes moved per step of a byte copy.
const COPY_CHUNK: u64 = 8 << 20;

fn aligned(x: u64) -> bool {
    x.is_multiple_of(PAGE_SIZE)
}

/// The outcome of a dedupe request for one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedupe {
    /// The ranges were identical and now share `bytes`.
    Same { bytes: u64 },
    /// The ranges differ; nothing changed.
    Differs,
}

/// A remap request after the VFS checks: share `count` bytes (`blocks` pages).
struct Remap {
    count: u64,
    blocks: u64,
}

impl Core {
    /// `generic_remap_file_range_prep` + `generic_remap_checks` + `generic_remap_check_len`
    /// (without REMAP_FILE_CAN_SHORTEN). `None`: nothing to do.
    fn remap_prep(&self, src: Ino, soff: u64, dst: Ino, doff: u64, len: u64, dedupe: bool) -> Result<Option<Remap>> {
        let size_in = self.file_size(src)?;
        let size_out = self.file_size(dst)?;
        // IS_IMMUTABLE (and IS_APPEND, which the kernel meets as an O_APPEND open).
        self.may_modify(dst)?;
        let mut len = len;
        if len == 0 {
            if dedupe || soff == size_in {
                return Ok(None);
            }
            if soff > size_in {
                return Err(Error::Invalid);
            }
            len = size_in - soff;
        }
        if !aligned(soff) || !aligned(doff) {
            return Err(Error::Invalid);
        }
        if soff.checked_add(len).is_none() || doff.checked_add(len).is_none() {
            return Err(Error::Invalid);
        }
        if dedupe && (soff >= size_in || soff + len > size_in || doff >= size_out || doff + len > size_out) {
            return Err(Error::Invalid);
        }
        if soff >= size_in {
            return Err(Error::Invalid);
        }
        let mut count = len.min(size_in - soff);
        // generic_write_check_limits
        if doff >= MAX_FILE_SIZE {
            return Err(Error::FileTooBig);
        }
        count = count.min(MAX_FILE_SIZE - doff);
        let to_eof = soff + count == size_in && (!dedupe || doff + count == size_out);
        let bcount = if to_eof {
            size_in.div_ceil(PAGE_SIZE) * PAGE_SIZE - soff
        } else {
            count -= count % PAGE_SIZE;
            count
        };
        if src == dst && doff + bcount > soff && doff < soff + bcount {
            return Err(Error::Invalid);
        }
        // generic_remap_check_len: an unaligned tail may only end at the destination's EOF.
        if !aligned(count) && (dedupe || doff + count < size_out) {
            return Err(Error::Invalid);
        }
        if count == 0 {
            return Ok(None);
        }
        Ok(Some(Remap { count, blocks: bcount / PAGE_SIZE }))
    }

    /// Whether the bytes past `size` in the page holding it are zeros (or a hole), so a
    /// clone need not rewrite (and so unshare) that page.
    fn zero_past_eof_already(&self, ino: Ino, size: u64) -> Result<bool> {
        let Some(p) = self.extent_map(ino)?.lookup(FileBlock::of(size)) else { return Ok(true) };
        let tail = size % PAGE_SIZE;
        let mut buf = vec![0u8; (PAGE_SIZE - tail) as usize];
        self.media.read(p.offset().plus(tail), &mut buf)?;
        Ok(buf.iter().all(|b| *b == 0))
    }

    /// The one transaction that maps the source's blocks over the destination's.
    fn plan_share(
        &self,
        src: Ino,
        sblock: FileBlock,
        dst: Ino,
        dblock: FileBlock,
        blocks: u64,
        new_size: u64,
    ) -> Result<Tx> {
        let pieces = self.extent_map(src)?.range(sblock, blocks);
        let mut tx = Tx::new();
        if !self.extent_map(dst)?.range(dblock, blocks).is_empty() {
            tx.push(Record::Unmap { ino: dst, fblock: dblock, pages: blocks });
        }
        for p in pieces {
            tx.push(Record::Map {
                ino: dst,
                fblock: dblock.plus(p.fblock.0 - sblock.0),
                pfn: p.pfn,
                pages: p.pages,
                cloned: true,
            });
        }
        // A failed page shared into `dst` is lost there too: the copy reads EIO at it
        // until a whole-page write, as the source does.
        for b in self.st.poisoned(src, sblock..sblock.plus(blocks)) {
            tx.push(Record::Poison { ino: dst, fblock: dblock.plus(b.0 - sblock.0) });
        }
        let now = Timespec::now();
        let a = tx.attr(&self.st, dst)?;
        a.size = a.size.max(new_size);
        a.mtime = now;
        a.ctime = now;
        Ok(tx)
    }

    /// FICLONERANGE semantics: shares `[soff, soff + len)` of `src` at `doff` in `dst`
    /// (`len == 0`: to the source's EOF). Returns the bytes cloned, which may be less
    /// than asked when `len` runs past the source's EOF or is not block-aligned.
    pub fn clone_range(&mut self, src: Ino, soff: u64, dst: Ino, doff: u64, len: u64) -> Result<u64> {
        self.settle_copies();
        self.writable()?;
        let Some(r) = self.remap_prep(src, soff, dst, doff, len, false)? else {
            return Ok(0);
        };
        let size_in = self.file_size(src)?;
        let size_out = self.file_size(dst)?;
        if doff > size_out {
            // The gap the clone leaves must read zeros, including the old EOF page's
            // tail (xfs_reflink_remap_prep zeroes it too).
            self.zero_past_eof(dst, size_out)?;
        }
        if !aligned(soff + r.count) && !self.zero_past_eof_already(src, size_in)? {
            // The shared EOF page's bytes past the source's EOF become the destination's
            // bytes past its EOF: make them zeros first (invisible in the source).
            self.zero_past_eof(src, size_in)?;
        }
        let tx = self.plan_share(src, FileBlock::of(soff), dst, FileBlock::of(doff), r.blocks, doff + r.count)?;
        self.commit_tx(tx)?;
        Ok(r.count)
    }

    /// FIDEDUPERANGE for one destination: shares the range only if its bytes are
    /// identical in both files.
    pub fn dedupe_range(&mut self, src: Ino, soff: u64, dst: Ino, doff: u64, len: u64) -> Result<Dedupe> {
        self.settle_copies();
        self.writable()?;
        let Some(r) = self.remap_prep(src, soff, dst, doff, len.min(DEDUPE_MAX), true)? else {
            return Ok(Dedupe::Same { bytes: 0 });
        };
        let mut at = 0;
        while at < r.count {
            let n = (r.count - at).min(COPY_CHUNK);
            if self.read_raw(src, soff + at, n)? != self.read_raw(dst, doff + at, n)? {
                return Ok(Dedupe::Differs);
            }
            at += n;
        }
        let size_out = self.file_size(dst)?;
        let tx = self.plan_share(src, FileBlock::of(soff), dst, FileBlock::of(doff), r.blocks, size_out)?;
        self.commit_tx(tx)?;
        Ok(Dedupe::Same { bytes: r.count })
    }

    /// copy_file_range(2): shares every whole block of the range when both offsets sit
    /// at the same place in a block, copies the unaligned head and tail (and everything,
    /// when they do not). Returns the bytes copied (0 at or past the source's EOF).
    pub fn copy_range(&mut self, src: Ino, soff: u64, dst: Ino, doff: u64, len: u64) -> Result<u64> {
        self.settle_copies();
        self.writable()?;
        let size_in = self.file_size(src)?;
        let size_out = self.file_size(dst)?;
        // generic_copy_file_checks: IS_IMMUTABLE before any shortening to EOF.
        self.may_modify(dst)?;
        if soff >= size_in || len == 0 {
            return Ok(0);
        }
        if doff >= MAX_FILE_SIZE {
            return Err(Error::FileTooBig);
        }
        let count = len.min(size_in - soff).min(MAX_FILE_SIZE - doff);
        if src == dst && doff < soff + count && soff < doff + count {
            return Err(Error::Invalid);
        }
        if soff % PAGE_SIZE != doff % PAGE_SIZE {
            return self.copy_bytes(src, soff, dst, doff, count);
        }
        let head = ((PAGE_SIZE - soff % PAGE_SIZE) % PAGE_SIZE).min(count);
        let end = soff + count;
        // The last partial block is shared too when it ends at the source's EOF and the
        // destination's EOF will be there as well (its tail stays past EOF).
        let share_tail = end == size_in && doff + count >= size_out;
        let body_end = if share_tail { end } else { end - end % PAGE_SIZE };
        if head > 0 {
            self.copy_bytes(src, soff, dst, doff, head)?;
        }
        let body = body_end.saturating_sub(soff + head);
        if body > 0 {
            self.clone_range(src, soff + head, dst, doff + head, body)?;
        }
        let done = head + body;
        if done < count {
            self.copy_bytes(src, soff + done, dst, doff + done, count - done)?;
        }
        Ok(count)
    }

    fn copy_bytes(&mut self, src: Ino, soff: u64, dst: Ino, doff: u64, count: u64) -> Result<u64> {
        let mut at = 0;
        while at < count {
            let buf = self.read_raw(src, soff + at, (count - at).min(COPY_CHUNK))?;
            if buf.is_empty() {
                break;
            }
            self.write(dst, doff + at, &buf, false, true)?;
            at += buf.len() as u64;
        }
        Ok(at)
    }

    /// Gives `ino` private copies of the shared pages in `[off, off + len)`.
    pub fn unshare(&mut self, ino: Ino, off: u64, len: u64) -> Result<()> {
        self.settle_copies();
        self.writable()?;
        let size = self.file_size(ino)?;
        // vfs_fallocate refuses FALLOC_FL_UNSHARE_RANGE on immutable and append-only files.
        self.may_modify(ino)?;
        let end = off.saturating_add(len).min(size.div_ceil(PAGE_SIZE) * PAGE_SIZE);
        if off >= end {
            return Ok(());
        }
        let first = FileBlock::of(off);
        let nblocks = end.div_ceil(PAGE_SIZE) - first.0;
        let blocks: Vec<FileBlock> = self
            .extent_map(ino)?
            .range(first, nblocks)
            .iter()
            .flat_map(|x| (0..x.pages).map(move |i| x.fblock.plus(i)))
            .collect();
        for b in blocks {
            self.unshare_block(ino, b)?;
        }
        Ok(())
    }
}

/// Most entries one `clone_entries` call looks at, and about the most record bytes it
/// logs in its one transaction: it holds the core lock throughout, and its
/// transaction must fit the log of the smallest pool (a 16 MiB pool logs 256 KiB).
const BATCH_ENTRIES: usize = 512;
const BATCH_BYTES: u64 = 64 << 10;

/// What one batch of `clone_entries` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryClones {
    pub files: u64,
    pub symlinks: u64,
    pub special: u64,
    /// Bytes of the pages the new files map, every one shared with its source.
    pub bytes: u64,
    /// The cookie to go on from; `None` at the end of the directory.
    pub next: Option<u64>,
    /// Entries left to the caller: more than one link (a hard link is the caller's to
    /// make, it alone sees the whole tree), damaged pages (whose copy the caller's own
    /// clone reports), a name the destination has already.
    pub skipped: Vec<Ino>,
}

impl Core {
    /// `cp -a`, for the entries of directory `src` that are not directories, from
    /// readdir cookie `cursor` on: each becomes a new inode in `dst` under the same
    /// name with the same mode, owner, atime, mtime, xattrs, symlink target or device
    /// number, a regular file mapping every page of its source shared (holes stay
    /// holes) — one transaction for the batch, so a crash leaves all of it or none.
    /// Stops before `max_skipped` skipped entries would not fit the reply.
    pub fn clone_entries(&mut self, src: Ino, dst: Ino, cursor: u64, max_skipped: usize) -> Result<EntryClones> {
        self.settle_copies();
        self.writable()?;
        let dattr = self.inode(dst)?.attr;
        if self.inode(dst)?.dir().is_none() {
            return Err(Error::NotDir);
        }
        if dattr.nlink == 0 {
            // A removed directory takes no new entries (IS_DEADDIR).
            return Err(Error::NotFound);
        }
        // may_create: an immutable directory takes no new names.
        self.may_change_entries(dst, false)?;
        let sdir = self.inode(src)?.dir().ok_or(Error::NotDir)?;
        let batch: Vec<(u64, Vec<u8>, Ino)> =
            sdir.after(cursor).take(BATCH_ENTRIES).map(|(c, n, i)| (c, n.to_vec(), i)).collect();
        // (cookie, name, source) of what goes in, and of what is left to the caller.
        let mut chosen: Vec<(u64, Vec<u8>, Ino)> = Vec::new();
        let mut skipped: Vec<(u64, Ino)> = Vec::new();
        let (mut last, mut bytes) = (cursor, 0);
        for (cookie, name, ino) in batch {
            if skipped.len() == max_skipped || bytes >= BATCH_BYTES {
                break;
            }
            last = cookie;
            let inode = self.inode(ino)?;
            let a = inode.attr;
            if a.kind() == Kind::Dir {
                continue;
            }
            let damaged = self.st.poisoned(ino, FileBlock(0)..FileBlock(u64::MAX)).next().is_some();
            let taken = self.inode(dst)?.dir().is_some_and(|d| d.get(&name).is_some());
            if a.nlink > 1 || damaged || taken {
                skipped.push((cookie, ino));
                continue;
            }
            let extents = inode.extents().map_or(0, |m| m.len() as u64);
            let xattrs: u64 = inode.xattrs.iter().map(|(n, v)| (n.len() + v.len()) as u64 + 16).sum();
            bytes += 128 + 2 * name.len() as u64 + extents * 34 + xattrs;
            // As clone_range: the bytes past EOF in a shared EOF page become the copy's
            // bytes past its EOF, so they must be zeros first (invisible in the source).
            if a.kind() == Kind::File
                && !aligned(a.size)
                && !self.zero_past_eof_already(ino, a.size)?
                && self.zero_past_eof(ino, a.size).is_err()
            {
                skipped.push((cookie, ino));
                continue;
            }
            chosen.push((cookie, name, ino));
        }
        // A transaction the log cannot take even after a checkpoint (the inode table
        // is full, or the entries' xattrs fill the log): as many entries as it takes.
        // A lone entry that does not fit fails the call, which has made nothing: the
        // caller's own clone of it fails with ENOSPC when the inode table is full, and
        // succeeds one xattr at a time otherwise.
        let mut take = chosen.len();
        let mut out = loop {
            let (tx, out) = self.clone_tx(dst, &chosen[..take])?;
            match self.commit_tx(tx) {
                Ok(()) => break out,
                Err(Error::NoSpace) if take > 1 => {
                    take /= 2;
                    last = chosen[take - 1].0;
                }
                Err(e) => return Err(e),
            }
        };
        out.skipped = skipped.iter().filter(|(c, _)| *c <= last).map(|(_, i)| *i).collect();
        let more = self.inode(src)?.dir().is_some_and(|d| d.after(last).next().is_some());
        out.next = more.then_some(last);
        Ok(out)
    }

    /// The transaction that makes the copies of `chosen` in `dst`, and its counts.
    fn clone_tx(&self, dst: Ino, chosen: &[(u64, Vec<u8>, Ino)]) -> Result<(Tx, EntryClones)> {
        let now = Timespec::now();
        let mut tx = Tx::new();
        let mut out = EntryClones::default();
        for (n, (_, name, ino)) in chosen.iter().enumerate() {
            let inode = self.inode(*ino)?;
            let new = Ino(self.st.next_ino() + n as u64);
            // cp -a keeps no inode flags (chattr's), so neither does this.
            tx.create(Attr { ino: new, nlink: 1, ctime: now, btime: now, flags: 0, ..inode.attr });
            match &inode.body {
                Body::File(map) => {
                    for e in map.iter() {
                        tx.push(Record::Map { ino: new, fblock: e.fblock, pfn: e.pfn, pages: e.pages, cloned: true });
                        out.bytes += e.pages * PAGE_SIZE;
                    }
                    out.files += 1;
                }
                Body::Symlink(target) => {
                    tx.push(Record::SetSymlink { ino: new, target: target.clone() });
                    out.symlinks += 1;
                }
                _ => out.special += 1,
            }
            tx.push(Record::Link { dir: dst, name: name.clone(), ino: new });
            for (name, value) in &inode.xattrs {
                tx.push(Record::SetXattr { ino: new, name: name.clone(), value: value.clone() });
            }
        }
        if !chosen.is_empty() {
            let d = tx.attr(&self.st, dst)?;
            d.mtime = now;
            d.ctime = now;
        }
        Ok((tx, out))
    }
}

impl super::Fs {
    /// `Core::clone_entries` under the lock.
    pub fn clone_entries(&self, src: Ino, dst: Ino, cursor: u64, max_skipped: usize) -> Result<EntryClones> {
        self.run(|c| c.clone_entries(src, dst, cursor, max_skipped))
    }
}
