//! Sharing extents between files: clone, dedupe, copy_file_range, unshare.
//!
//! Range checks follow the Linux VFS (`generic_remap_file_range_prep`,
//! `generic_remap_checks`, `generic_remap_check_len` in fs/remap_range.c). A clone maps
//! the source's pages into the destination with `Map { shared: true }`, which the page
//! table turns into `associate(shared = true)`: an owned page becomes shared with
//! share 2, each further clone adds one (fs/dax.c).

use super::core::Core;
use super::error::{Error, Result};
use super::inode::{Kind, MAX_FILE_SIZE, Timespec};
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
    fn regular_size(&self, ino: Ino) -> Result<u64> {
        let a = self.inode(ino)?.attr;
        match a.kind() {
            Kind::File => Ok(a.size),
            Kind::Dir => Err(Error::IsDir),
            _ => Err(Error::Invalid),
        }
    }

    /// `generic_remap_file_range_prep` + `generic_remap_checks` + `generic_remap_check_len`
    /// (without REMAP_FILE_CAN_SHORTEN). `None`: nothing to do.
    fn remap_prep(&self, src: Ino, soff: u64, dst: Ino, doff: u64, len: u64, dedupe: bool) -> Result<Option<Remap>> {
        let size_in = self.regular_size(src)?;
        let size_out = self.regular_size(dst)?;
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
        self.media.read(p.offset().0 + tail, &mut buf)?;
        Ok(buf.iter().all(|b| *b == 0))
    }

    /// Maps the source's blocks over the destination's in one transaction.
    fn share_blocks(
        &mut self,
        src: Ino,
        sblock: FileBlock,
        dst: Ino,
        dblock: FileBlock,
        blocks: u64,
        new_size: u64,
    ) -> Result<()> {
        let pieces = self.extent_map(src)?.range(sblock, blocks);
        let mut tx = Tx::new();
        if !self.extent_map(dst)?.range(dblock, blocks).is_empty() {
            tx.push(Record::Unmap { ino: dst, fblock: dblock, len: blocks });
        }
        for p in pieces {
            tx.push(Record::Map {
                ino: dst,
                fblock: dblock.plus(p.fblock.0 - sblock.0),
                pfn: p.pfn,
                len: p.len,
                shared: true,
            });
        }
        let now = Timespec::now();
        let a = tx.attr(&self.st, dst)?;
        a.size = a.size.max(new_size);
        a.mtime = now;
        a.ctime = now;
        self.commit_tx(tx)
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
        let size_in = self.regular_size(src)?;
        let size_out = self.regular_size(dst)?;
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
        self.share_blocks(src, FileBlock::of(soff), dst, FileBlock::of(doff), r.blocks, doff + r.count)?;
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
        let size_out = self.regular_size(dst)?;
        self.share_blocks(src, FileBlock::of(soff), dst, FileBlock::of(doff), r.blocks, size_out)?;
        Ok(Dedupe::Same { bytes: r.count })
    }

    /// copy_file_range(2): shares every whole block of the range when both offsets sit
    /// at the same place in a block, copies the unaligned head and tail (and everything,
    /// when they do not). Returns the bytes copied (0 at or past the source's EOF).
    pub fn copy_range(&mut self, src: Ino, soff: u64, dst: Ino, doff: u64, len: u64) -> Result<u64> {
        self.settle_copies();
        self.writable()?;
        let size_in = self.regular_size(src)?;
        let size_out = self.regular_size(dst)?;
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
            self.write(dst, doff + at, &buf, false)?;
            at += buf.len() as u64;
        }
        Ok(at)
    }

    /// Gives `ino` private copies of the shared pages in `[off, off + len)`.
    pub fn unshare(&mut self, ino: Ino, off: u64, len: u64) -> Result<()> {
        self.settle_copies();
        self.writable()?;
        let size = self.regular_size(ino)?;
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
            .flat_map(|x| (0..x.len).map(move |i| x.fblock.plus(i)))
            .collect();
        for b in blocks {
            self.unshare_block(ino, b)?;
        }
        Ok(())
    }
}
