//! File data: read, write with allocation and copy-on-write, truncate, fallocate, seek.
//!
//! Bytes past EOF in the page holding EOF are undefined on the media: truncate does not
//! zero them (that would change fsync'd bytes before the truncate is durable); instead
//! any change that moves EOF up zeroes them first, while they are still invisible.

use super::copies::Pin;
use super::core::{AtimeMode, Core};
use super::error::{Error, Flushed, Result};
use super::inode::{Body, FL_NOATIME, Kind, MAX_FILE_SIZE, Timespec};
use super::record::Record;
use super::state::MAX_FILE_BLOCKS;
use super::tx::Tx;
use super::{FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE};
use crate::arena::Media;
use crate::types::{ArenaOffset, FileBlock, Ino, PAGE_SIZE, Pfn};

/// What a store writes.
#[derive(Clone, Copy)]
enum Src<'a> {
    Bytes(&'a [u8]),
    /// Zeros; holes stay holes.
    Zeros(u64),
}

impl Src<'_> {
    fn len(&self) -> u64 {
        match self {
            Src::Bytes(b) => b.len() as u64,
            Src::Zeros(n) => *n,
        }
    }
}

/// What a store does to one block.
#[derive(Clone, Copy)]
enum BlockPlan {
    /// The file alone owns the page: the bytes go in place.
    InPlace(Pfn),
    /// A fresh page: a copy of `old` (shared, or failed and wholly rewritten), or a
    /// hole filled.
    Fresh { old: Option<Pfn> },
    /// A hole that zeros keep.
    Hole,
}

/// A store of `len` bytes at `off`, block by block, planned before anything changes;
/// `fresh` blocks need a page each, best allocated from `goal` on.
struct StorePlan {
    off: u64,
    len: u64,
    blocks: Vec<(FileBlock, BlockPlan)>,
    fresh: u64,
    goal: Pfn,
}

impl StorePlan {
    /// Whether the store writes block `b` whole.
    fn covers(&self, b: FileBlock) -> bool {
        b.byte() >= self.off && b.byte() + PAGE_SIZE <= self.off + self.len
    }
}

/// The bytes of a read: `len` of them, zero but for `runs` of (offset in the read,
/// arena offset, length). Carried out after the fs lock is dropped (see `Fs::read`);
/// the pages stay the file's or at least unused until the reader is done
/// (`Copies`).
#[derive(Debug, Default)]
pub struct ReadPlan {
    len: usize,
    runs: Vec<ByteRun>,
}

impl ReadPlan {
    /// Carries the read out under `pin` (taken with the plan, under the lock).
    pub fn read(&self, media: &dyn Media, pin: &Pin) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len];
        for (arena, r) in &self.runs {
            media.read_pinned(pin.range(*arena, r.len() as u64), &mut buf[r.clone()])?;
        }
        Ok(buf)
    }
}

/// Where an in-place write's bytes go.
#[derive(Debug)]
pub struct WritePlan {
    runs: Vec<ByteRun>,
}

/// Bytes of a request on one extent: (arena offset, their offsets in the request).
type ByteRun = (ArenaOffset, std::ops::Range<usize>);

/// Where the bytes `[off, end)` of a file meet extent `x` (which overlaps them).
fn byte_run(x: &super::extent::Extent, off: u64, end: u64) -> ByteRun {
    let s = x.fblock.byte().max(off);
    let e = x.end().byte().min(end);
    (x.pfn.offset().plus(s - x.fblock.byte()), (s - off) as usize..(e - off) as usize)
}

impl WritePlan {
    /// Carries the write out under `pin` (taken with the plan, under the lock).
    pub fn write(&self, media: &dyn Media, pin: &Pin, data: &[u8]) -> Result<()> {
        for (arena, r) in &self.runs {
            media.write_pinned(pin.range(*arena, r.len() as u64), &data[r.clone()])?;
        }
        Ok(())
    }
}

/// Groups consecutive `(block, page)` pairs into `(first block, first page, count)`.
fn runs(pairs: &[(FileBlock, Pfn)]) -> impl Iterator<Item = (FileBlock, Pfn, u64)> + '_ {
    crate::runs::runs(pairs.iter().copied(), |(fb, fp), n, (b, p)| fb.0 + n == b.0 && fp.0 + n == p.0)
        .map(|((b, p), n)| (b, p, n))
}

impl Core {
    /// The size of a regular file; `EISDIR` for a directory, `EINVAL` for any other
    /// kind (what read, write, fallocate and the remap calls answer).
    pub(super) fn file_size(&self, ino: Ino) -> Result<u64> {
        let i = self.inode(ino)?;
        match i.attr.kind() {
            Kind::File => Ok(i.attr.size),
            Kind::Dir => Err(Error::IsDir),
            _ => Err(Error::Invalid),
        }
    }

    pub(super) fn extent_map(&self, ino: Ino) -> Result<&super::extent::ExtentMap> {
        match &self.inode(ino)?.body {
            Body::File(m) => Ok(m),
            _ => Err(Error::Invalid),
        }
    }

    /// A page another file holds must be copied before it is written; so must one that
    /// lost an owner since the last commit, which a crash could give back.
    pub(super) fn page_is_cow(&self, pfn: Pfn) -> bool {
        self.page_is_co_owned(pfn) || self.st.lost_owner_since_commit(pfn)
    }

    /// Whether another file maps the page too: its share count is above 1. (A page
    /// `is_shared` in the page table from its first clone on, down to share 1.)
    pub(super) fn page_is_co_owned(&self, pfn: Pfn) -> bool {
        self.st.pages().is_co_owned(pfn)
    }

    /// Applies the atime policy after a read of `ino`.
    pub(super) fn note_access(&mut self, ino: Ino) {
        if !self.atime_due(ino) {
            return;
        }
        if self.st.touch_atime(ino, Timespec::now()) {
            self.touch(ino);
        }
    }

    /// Whether a read of `ino` now would update its atime: the mount's atime mode
    /// (relatime: atime not after mtime or ctime, or a day old), the file's noatime
    /// flag, and nothing on a read-only filesystem.
    pub fn atime_due(&self, ino: Ino) -> bool {
        let Some(a) = self.st.inode(ino).map(|i| i.attr) else { return false };
        if self.writable().is_err() || a.flags & FL_NOATIME != 0 {
            return false;
        }
        match self.options().atime {
            AtimeMode::Never => false,
            AtimeMode::Strict => true,
            AtimeMode::Relatime => {
                a.atime <= a.mtime || a.atime <= a.ctime || Timespec::now().sec - a.atime.sec >= 24 * 3600
            }
        }
    }

    /// Plans a read up to EOF and applies the atime policy; `whole`: all or EIO.
    pub fn read_plan(&mut self, ino: Ino, off: u64, len: u64, whole: bool) -> Result<ReadPlan> {
        let plan = self.plan_raw(ino, off, len, whole)?;
        self.note_access(ino);
        Ok(plan)
    }

    /// Reads up to EOF without touching atime (under the lock, so the pin is only
    /// what the pinned copy asks for).
    pub(super) fn read_raw(&self, ino: Ino, off: u64, len: u64) -> Result<Vec<u8>> {
        self.plan_raw(ino, off, len, false)?.read(&*self.media, &self.copies.pin())
    }

    /// Where the bytes of a read up to EOF are; a read stops before a poisoned block
    /// and fails if it starts in one. `whole`, a read for a page cache, fails if any
    /// of it is poisoned: a short read would tell the kernel the file ends there, while
    /// a failed request makes it retry page by page, so the caller still gets every
    /// byte before the failed page, then EIO.
    fn plan_raw(&self, ino: Ino, off: u64, len: u64, whole: bool) -> Result<ReadPlan> {
        let size = self.file_size(ino)?;
        if off >= size || len == 0 {
            return Ok(ReadPlan::default());
        }
        let mut end = off.saturating_add(len).min(size);
        let first = FileBlock::of(off);
        if let Some(p) = self.first_poisoned(ino, first, FileBlock::of(end - 1)) {
            if whole || p.byte() <= off {
                return Err(Error::HwPoison);
            }
            end = p.byte();
        }
        let nblocks = FileBlock::of(end - 1).0 - first.0 + 1;
        let runs = self.extent_map(ino)?.range(first, nblocks).iter().map(|x| byte_run(x, off, end)).collect();
        Ok(ReadPlan { len: (end - off) as usize, runs })
    }

    /// Gives `ino` its own copy of block `b` if another file shares its page.
    pub(super) fn unshare_block(&mut self, ino: Ino, b: FileBlock) -> Result<()> {
        let Some(p) = self.extent_map(ino)?.lookup(b) else {
            return Ok(());
        };
        if !self.page_is_cow(p) {
            return Ok(());
        }
        let mut page = vec![0u8; PAGE_SIZE as usize];
        self.media.read(p.offset(), &mut page)?;
        // Rewriting a whole page with its own bytes copies it and changes nothing else.
        let mut tx = Tx::new();
        let allocated = self.store(&mut tx, ino, b.byte(), Src::Bytes(&page))?;
        self.commit_store(tx, &allocated)
    }

    /// Writes `src` at `off` into the media: in place where the file owns the page,
    /// into fresh pages for holes (zeros keep holes) and shared pages (COW). Records
    /// the remaps in `tx`; returns the pages it allocated.
    fn store(&mut self, tx: &mut Tx, ino: Ino, off: u64, src: Src) -> Result<Vec<(Pfn, u64)>> {
        let plan = self.plan_store(ino, off, src)?;
        let allocated = self.alloc_pages(plan.goal, plan.fresh)?;
        self.prepare_write(&allocated);
        match self.carry_out(tx, ino, &plan, src, &allocated) {
            Ok(()) => Ok(allocated),
            Err(e) => {
                self.unalloc(&allocated);
                Err(e)
            }
        }
    }

    /// What `store` does to each block, decided from the state alone.
    fn plan_store(&self, ino: Ino, off: u64, src: Src) -> Result<StorePlan> {
        let len = src.len();
        let mut plan = StorePlan { off, len, blocks: Vec::new(), fresh: 0, goal: self.st.geo().data_start };
        if len == 0 {
            return Ok(plan);
        }
        let (first, last) = (FileBlock::of(off), FileBlock::of(off + len - 1));
        let m = self.extent_map(ino)?;
        for b in first.0..=last.0 {
            let b = FileBlock(b);
            let action = match m.lookup(b) {
                // Only a whole-page write may replace a failed page's contents.
                Some(_) if self.is_poisoned(ino, b) && (!plan.covers(b) || matches!(src, Src::Zeros(_))) => {
                    return Err(Error::HwPoison);
                }
                Some(p) if self.is_poisoned(ino, b) || self.page_is_cow(p) => BlockPlan::Fresh { old: Some(p) },
                Some(p) => BlockPlan::InPlace(p),
                None if matches!(src, Src::Zeros(_)) => BlockPlan::Hole,
                None => BlockPlan::Fresh { old: None },
            };
            plan.fresh += matches!(action, BlockPlan::Fresh { .. }) as u64;
            plan.blocks.push((b, action));
        }
        if let Some(p) = first.0.checked_sub(1).and_then(|b| m.lookup(FileBlock(b))) {
            plan.goal = p.plus(1);
        }
        Ok(plan)
    }

    /// Carries out `plan` with the `allocated` pages (one per fresh block, in order):
    /// a fresh page the write does not cover gets the old page's bytes (or zeros)
    /// first; then the bytes go in, consecutive blocks on consecutive pages in one
    /// store; the remaps go into `tx`.
    fn carry_out(&self, tx: &mut Tx, ino: Ino, plan: &StorePlan, src: Src, allocated: &[(Pfn, u64)]) -> Result<()> {
        let mut pages = allocated.iter().flat_map(|&(p, n)| (0..n).map(move |i| p.plus(i)));
        let mut remap = Vec::with_capacity(plan.fresh as usize);
        let mut cow = Vec::new();
        let mut run: Option<ByteRun> = None;
        let (off, end) = (plan.off, plan.off + plan.len);
        for &(b, action) in &plan.blocks {
            let p = match action {
                BlockPlan::Hole => continue,
                BlockPlan::InPlace(p) => p,
                BlockPlan::Fresh { old } => {
                    let np = pages.next().ok_or(Error::NoSpace)?;
                    if !plan.covers(b) {
                        match old {
                            Some(op) => {
                                let mut page = vec![0u8; PAGE_SIZE as usize];
                                self.media.read(op.offset(), &mut page)?;
                                self.media.write(np.offset(), &page)?;
                            }
                            None => self.media.fill(np.offset(), PAGE_SIZE, 0)?,
                        }
                    }
                    remap.push((b, np));
                    if old.is_some() {
                        cow.push((b, np));
                    }
                    np
                }
            };
            let s = b.byte().max(off);
            let e = (b.byte() + PAGE_SIZE).min(end);
            let (at, bytes) = (p.offset().plus(s - b.byte()), (s - off) as usize..(e - off) as usize);
            match &mut run {
                Some((a, r)) if a.plus(r.len() as u64) == at && r.end == bytes.start => r.end = bytes.end,
                _ => {
                    if let Some((a, r)) = run.replace((at, bytes)) {
                        self.put(src, a, r)?;
                    }
                }
            }
        }
        if let Some((a, r)) = run {
            self.put(src, a, r)?;
        }
        for (b, _, n) in runs(&cow) {
            tx.push(Record::Unmap { ino, fblock: b, pages: n });
        }
        for (b, p, n) in runs(&remap) {
            tx.push(Record::Map { ino, fblock: b, pfn: p, pages: n, cloned: false });
        }
        Ok(())
    }

    /// Stores the bytes `r` of `src` (zeros for `Src::Zeros`) at arena offset `at`.
    fn put(&self, src: Src, at: ArenaOffset, r: std::ops::Range<usize>) -> Result<()> {
        match src {
            Src::Bytes(d) => self.media.write(at, &d[r])?,
            Src::Zeros(_) => self.media.fill(at, r.len() as u64, 0)?,
        }
        Ok(())
    }

    /// Fresh pages about to be written through the mapping.
    fn prepare_write(&self, allocated: &[(Pfn, u64)]) {
        for &(p, n) in allocated {
            self.media.prepare_write(p.offset(), n * PAGE_SIZE);
        }
    }

    /// Commits `tx`, whose records map the freshly `allocated` pages; gives the pages
    /// back if that fails. The pages' new contents are made durable first: a record
    /// must never reach the media before the bytes it points at, or a crash would show
    /// whatever the page held before (another file's data).
    fn commit_store(&mut self, tx: Tx, allocated: &[(Pfn, u64)]) -> Result<()> {
        for &(p, n) in allocated {
            if let Err(e) = self.media.flush(p.offset(), n * PAGE_SIZE) {
                self.unalloc(allocated);
                return Err(Error::flush(Flushed::NewPages, &e));
            }
        }
        self.commit_tx(tx).inspect_err(|_| self.unalloc(allocated))
    }

    /// Zeroes the bytes past EOF in the page holding EOF, before EOF moves up.
    pub(super) fn zero_past_eof(&mut self, ino: Ino, size: u64) -> Result<()> {
        let tail = size % PAGE_SIZE;
        if tail == 0 {
            return Ok(());
        }
        let mut tx = Tx::new();
        let allocated = self.store(&mut tx, ino, size, Src::Zeros(PAGE_SIZE - tail))?;
        self.commit_store(tx, &allocated)
    }

    /// Plans a write that changes no metadata but times — inside EOF, every block on a
    /// page the file alone owns (no COW, no poison) — and sets the times if `stamp`.
    /// None: the write must run under the lock (`write`).
    pub fn plan_in_place(
        &mut self,
        ino: Ino,
        off: u64,
        len: u64,
        append: bool,
        stamp: bool,
    ) -> Result<Option<WritePlan>> {
        self.writable()?;
        let size = self.file_size(ino)?;
        let off = if append { size } else { off };
        self.may_write_at(ino, off, size)?;
        if len == 0 || off.checked_add(len).is_none_or(|end| end > size) {
            return Ok(None);
        }
        let (first, last) = (FileBlock::of(off), FileBlock::of(off + len - 1));
        if self.first_poisoned(ino, first, last).is_some() {
            return Ok(None);
        }
        let mut runs = Vec::new();
        let mut next = first;
        for x in self.extent_map(ino)?.range(first, last.0 - first.0 + 1) {
            if x.fblock != next || (0..x.pages).any(|i| self.page_is_cow(x.pfn.plus(i))) {
                return Ok(None);
            }
            next = x.end();
            runs.push(byte_run(&x, off, off + len));
        }
        if next.0 <= last.0 {
            return Ok(None);
        }
        if stamp {
            self.touch_mtime(ino);
        }
        Ok(Some(WritePlan { runs }))
    }

    /// An immutable file takes no write; an append-only one only at its end.
    fn may_write_at(&self, ino: Ino, off: u64, size: u64) -> Result<()> {
        let a = self.inode(ino)?.attr;
        if a.immutable() || (a.append_only() && off != size) { Err(Error::Perm) } else { Ok(()) }
    }

    /// Writes `data` at `off` (at the end of file when `append`); sets mtime and ctime
    /// if `stamp`.
    pub fn write(&mut self, ino: Ino, off: u64, data: &[u8], append: bool, stamp: bool) -> Result<u64> {
        self.writable()?;
        let size = self.file_size(ino)?;
        let off = if append { size } else { off };
        self.may_write_at(ino, off, size)?;
        if data.is_empty() {
            return Ok(0);
        }
        if off >= MAX_FILE_SIZE {
            return Err(Error::FileTooBig);
        }
        let data = &data[..(data.len() as u64).min(MAX_FILE_SIZE - off) as usize];
        let end = off + data.len() as u64;
        if off > size {
            self.zero_past_eof(ino, size)?;
        }
        let mut tx = Tx::new();
        let allocated = self.store(&mut tx, ino, off, Src::Bytes(data))?;
        let now = Timespec::now();
        if end > size || !tx.is_empty() {
            let a = tx.attr(&self.st, ino)?;
            a.size = a.size.max(end);
            if stamp {
                a.mtime = now;
                a.ctime = now;
            }
            self.commit_store(tx, &allocated)?;
        } else if stamp {
            self.touch_mtime(ino);
        }
        Ok(data.len() as u64)
    }

    /// A write that changed no metadata: its times are set in memory and logged lazily.
    fn touch_mtime(&mut self, ino: Ino) {
        if self.st.touch_mtime(ino, Timespec::now()) {
            self.touch(ino);
        }
    }

    pub(super) fn truncate(&mut self, ino: Ino, size: u64) -> Result<()> {
        self.writable()?;
        let old = self.file_size(ino)?;
        if size > MAX_FILE_SIZE {
            return Err(Error::FileTooBig);
        }
        if size > old {
            self.zero_past_eof(ino, old)?;
        }
        let tx = self.plan_truncate(ino, size)?;
        self.commit_tx(tx)
    }

    /// The transaction of `truncate` once the old EOF page's tail is zeros.
    fn plan_truncate(&self, ino: Ino, size: u64) -> Result<Tx> {
        let mut tx = Tx::new();
        let keep = size.div_ceil(PAGE_SIZE);
        if !self.extent_map(ino)?.range(FileBlock(keep), MAX_FILE_BLOCKS - keep).is_empty() {
            tx.push(Record::Unmap { ino, fblock: FileBlock(keep), pages: MAX_FILE_BLOCKS - keep });
        }
        let now = Timespec::now();
        let a = tx.attr(&self.st, ino)?;
        a.size = size;
        a.mtime = now;
        a.ctime = now;
        Ok(tx)
    }

    /// Maps zeroed pages into every hole of the whole blocks covering `[off, end)`.
    fn allocate_range(&mut self, tx: &mut Tx, ino: Ino, off: u64, end: u64) -> Result<Vec<(Pfn, u64)>> {
        let first = FileBlock::of(off);
        let last = FileBlock(end.div_ceil(PAGE_SIZE));
        let m = self.extent_map(ino)?;
        let mut holes = Vec::new();
        let mut at = first;
        while at < last {
            let h = m.next_hole(at);
            if h >= last {
                break;
            }
            let data = m.next_mapped(h).unwrap_or(last).min(last);
            holes.push((h, data.0 - h.0));
            at = data;
        }
        let n: u64 = holes.iter().map(|h| h.1).sum();
        let goal = self.extent_map(ino)?.lookup(first).unwrap_or(self.st.geo().data_start);
        let allocated = self.alloc_pages(goal, n)?;
        self.prepare_write(&allocated);
        let mut pages = allocated.iter().flat_map(|&(p, n)| (0..n).map(move |i| p.plus(i)));
        let mut pairs = Vec::with_capacity(n as usize);
        for (h, blocks) in holes {
            for i in 0..blocks {
                let p = pages.next().expect("allocated one page per block");
                pairs.push((h.plus(i), p));
            }
        }
        for &(p, n) in &allocated {
            if let Err(e) = self.media.fill(p.offset(), n * PAGE_SIZE, 0) {
                self.unalloc(&allocated);
                return Err(e.into());
            }
        }
        for (b, p, n) in runs(&pairs) {
            tx.push(Record::Map { ino, fblock: b, pfn: p, pages: n, cloned: false });
        }
        Ok(allocated)
    }

    /// Zeroes `[off, end)`: partial pages in place (or by COW), whole pages unmapped.
    fn punch(&mut self, ino: Ino, off: u64, end: u64) -> Result<()> {
        let mut tx = Tx::new();
        let whole_from = off.div_ceil(PAGE_SIZE);
        let whole_to = end / PAGE_SIZE;
        let head_end = if whole_from > whole_to { end } else { whole_from * PAGE_SIZE };
        let mut allocated = self.store(&mut tx, ino, off, Src::Zeros(head_end - off))?;
        if whole_from <= whole_to {
            // The tail page is a different block from the head page: the two stores
            // are independent and share one transaction.
            let tail = whole_to * PAGE_SIZE;
            match self.store(&mut tx, ino, tail, Src::Zeros(end - tail)) {
                Ok(more) => allocated.extend(more),
                Err(e) => {
                    self.unalloc(&allocated);
                    return Err(e);
                }
            }
            if !self.extent_map(ino)?.range(FileBlock(whole_from), whole_to - whole_from).is_empty() {
                tx.push(Record::Unmap { ino, fblock: FileBlock(whole_from), pages: whole_to - whole_from });
            }
        }
        let now = Timespec::now();
        let a = tx.attr(&self.st, ino)?;
        a.mtime = now;
        a.ctime = now;
        self.commit_store(tx, &allocated)
    }

    /// fallocate(2) for the modes FUSE forwards: 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE,
    /// ZERO_RANGE (with or without KEEP_SIZE).
    pub fn fallocate(&mut self, ino: Ino, mode: i32, off: u64, len: u64) -> Result<()> {
        self.writable()?;
        // vfs_fallocate's order: the length, the mode, the file type, the size limit.
        if len == 0 {
            return Err(Error::Invalid);
        }
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        let op = mode & !FALLOC_FL_KEEP_SIZE;
        if !(op == 0 || op == FALLOC_FL_ZERO_RANGE || op == FALLOC_FL_PUNCH_HOLE && keep) {
            return Err(Error::NotSupported);
        }
        // vfs_fallocate: immutable refuses all, append-only all but allocation.
        let a = self.inode(ino)?.attr;
        if a.immutable() || (a.append_only() && op != 0) {
            return Err(Error::Perm);
        }
        let size = self.file_size(ino)?;
        let end = off.checked_add(len).ok_or(Error::FileTooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(Error::FileTooBig);
        }
        if op == FALLOC_FL_PUNCH_HOLE {
            return self.punch(ino, off, end);
        }
        if op == FALLOC_FL_ZERO_RANGE {
            // Punch-then-allocate must not stop half-way: check the space first.
            let first = FileBlock::of(off);
            let blocks = end.div_ceil(PAGE_SIZE) - first.0;
            let m = self.extent_map(ino)?;
            let private: u64 = m
                .range(first, blocks)
                .iter()
                .flat_map(|x| (0..x.pages).map(move |i| x.pfn.plus(i)))
                .filter(|p| !self.page_is_cow(*p))
                .count() as u64;
            if blocks - private > self.st.allocator().available_pages() {
                return Err(Error::NoSpace);
            }
            self.punch(ino, off, end)?;
        }
        if !keep && end > size {
            self.zero_past_eof(ino, size)?;
        }
        let mut tx = Tx::new();
        let allocated = self.allocate_range(&mut tx, ino, off, end)?;
        let now = Timespec::now();
        let a = tx.attr(&self.st, ino)?;
        a.ctime = now;
        if !keep && end > a.size {
            a.size = end;
            a.mtime = now;
        }
        self.commit_store(tx, &allocated)
    }

    /// lseek(2) with SEEK_DATA or SEEK_HOLE (other whences are the kernel's business).
    pub fn seek(&self, ino: Ino, off: u64, whence: i32) -> Result<u64> {
        let size = self.file_size(ino)?;
        if off >= size {
            return Err(Error::NoDeviceOrAddress);
        }
        let m = self.extent_map(ino)?;
        match whence {
            libc::SEEK_DATA => match m.next_mapped(FileBlock::of(off)) {
                Some(b) if b.byte() < size => Ok(off.max(b.byte())),
                _ => Err(Error::NoDeviceOrAddress),
            },
            libc::SEEK_HOLE => Ok(off.max(m.next_hole(FileBlock::of(off)).byte()).min(size)),
            _ => Err(Error::Invalid),
        }
    }
}
