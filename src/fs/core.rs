//! `Core`: the state plus the machinery that makes changes durable. Every change goes
//! through `commit`: validate, build records, append them to the log, apply them.
//!
//! An operation is a plan, then a commit. The plan (`plan_unlink`, `plan_rename`,
//! `plan_setattr`, `plan_share`, `plan_store`, ...) takes `&self`: it checks, reads the
//! state and returns the transaction, and an error from it has changed nothing. Only
//! the public operation, holding `&mut self`, carries it out: pages allocated for it
//! (`alloc_pages`, given back if the commit fails), data stored, then `commit_tx`.
//! Queries (`getattr`, `lookup`, `extents`, `statfs`, ...) take `&self` too; a read
//! that notes an atime is an operation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::Sender;

use super::Ctx;
use super::acl::{ACL_ACCESS, Acl};
use super::copies::Copies;
use super::error::{CheckError, Error, Flushed, PoolError, Result};
use super::extent::Extent;
use super::inode::{Attr, Body, FL_SUPPORTED, Kind, Timespec};
use super::journal::Journal;
use super::record::{Record, decode_all, encode_all, records};
use super::state::{Mode, State};
use super::tx::Tx;
use crate::arena::{Geometry, Media};
use crate::dax::{Failure, PageState};
use crate::runs::number_runs;
use crate::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

/// When reads update atime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AtimeMode {
    /// Linux's default: only when atime is older than mtime/ctime or a day old.
    #[default]
    Relatime,
    Strict,
    Never,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub read_only: bool,
    pub atime: AtimeMode,
    /// Whether reading a directory updates its atime (`nodiratime` turns it off).
    pub dir_atime: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { read_only: false, atime: AtimeMode::default(), dir_atime: true }
    }
}

/// A time to set: now, or a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At(Timespec),
}

/// The changes of one setattr; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub ctime: Option<Timespec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// What `daxlink stat` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub block_size: u64,
    pub pages_total: u64,
    pub pages_used: u64,
    pub pages_free: u64,
    pub pages_shared: u64,
    pub warnings: u64,
    pub inodes: u64,
    pub log_bytes: u64,
    pub generation: u64,
    pub pages_bad: u64,
    /// Memory failures that had to ask the holder (shared pages).
    pub holder_calls: u64,
}

/// A run of a file's blocks on consecutive pages with one sharing state, as
/// `daxlink extents` shows it (FIEMAP's `fiemap_extent`). Not the page table's
/// `mapping`, which names a page's owner inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileExtent {
    pub fblock: FileBlock,
    pub pfn: Pfn,
    pub pages: u64,
    /// Another owner maps these pages too (their share count is above 1: another file,
    /// or this one at another offset): a write copies them first.
    pub co_owned: bool,
    /// The pages failed: this file reads EIO here.
    pub poisoned: bool,
}

/// Who changes a file, as far as the privileges the change drops are concerned.
#[derive(Clone, Copy)]
pub enum Changer<'a> {
    /// Has `CAP_FSETID`: only file capabilities go.
    Privileged,
    /// Lacks `CAP_FSETID`; tells whether it is in a group (its fsgid or a
    /// supplementary group), asked only when a file's set-group-ID bit depends on it.
    Unprivileged(&'a dyn Fn(u32) -> bool),
    /// Changes the owner or the group.
    Chown,
}

/// File capabilities, which any change of the file's contents or owner drops.
const XATTR_CAPS: &[u8] = b"security.capability";

/// Bytes of checkpoint a new empty file costs (its inode and its name, with a short
/// name); `statfs` counts free inodes in these.
const INODE_COST: u64 = 128;

pub struct Core {
    pub(super) media: Arc<dyn Media>,
    pub(super) st: State,
    /// Data copies made without the lock (see `copies`).
    pub(super) copies: Arc<Copies>,
    journal: Journal,
    open: HashMap<Ino, u32>,
    /// Inodes whose attributes changed in memory only (timestamps of in-place writes,
    /// atime); logged lazily at the next sync or checkpoint, as XFS logs timestamps.
    dirty: HashSet<Ino>,
    opts: Options,
    /// Why the filesystem stopped accepting changes, if it did.
    shutdown: Option<String>,
    /// Where failures found by accesses go, to have the kernel's caches of the owners
    /// dropped (`Fs::set_failure_sink`).
    pub(super) failure_sink: Option<Sender<Failure>>,
}

impl Core {
    pub fn mkfs(media: &dyn Media, ctx: Ctx, uuid: [u8; 16]) -> Result<()> {
        let geo = Geometry::for_size(media.len(), uuid)?;
        geo.write(media).map_err(|e| Error::flush(Flushed::Superblock, &e))?;
        let root = Attr::new(Ino::ROOT, libc::S_IFDIR | 0o755, ctx.uid, ctx.gid, Timespec::now());
        Journal::format(media, &geo, &encode_all(&[Record::SetInode(root)]))?;
        Ok(())
    }

    pub fn open(media: Arc<dyn Media>, opts: Options) -> Result<Core> {
        let mut core = Core::load(media, opts, Mode::Replay)?;
        core.st.check().map_err(PoolError::Inconsistent)?;
        if !opts.read_only {
            core.free_orphans()?;
            // A fresh generation: nothing left in the log region can replay again.
            core.checkpoint()?;
        }
        Ok(core)
    }

    /// Rebuilds the state from the newest checkpoint and its log, without judging it.
    pub(super) fn load(media: Arc<dyn Media>, opts: Options, mode: Mode) -> Result<Core> {
        let geo = Geometry::read(&*media)?;
        let rec = Journal::recover(&*media, &geo)?;
        let mut st = State::new(geo);
        let mut journal = rec.journal;
        for r in records(&rec.checkpoint) {
            let r = r.map_err(PoolError::CheckpointRecords)?;
            st.apply(&r, mode).map_err(PoolError::CheckpointApply)?;
        }
        for (n, tx) in rec.transactions.iter().enumerate() {
            let recs = decode_all(tx).map_err(|e| PoolError::LogRecords(n, e))?;
            for r in &recs {
                st.apply(r, mode).map_err(|e| PoolError::LogApply(n, e))?;
            }
            journal.account_replayed(recs.iter().map(|r| r.growth_bound(&|_| false)).sum());
        }
        st.derive_free_space();
        Ok(Core {
            media,
            st,
            copies: Arc::default(),
            journal,
            open: HashMap::new(),
            dirty: HashSet::new(),
            opts,
            shutdown: None,
            failure_sink: None,
        })
    }

    /// `mount -o remount`: takes the new options. Going read-only first makes
    /// everything durable in a checkpoint (nothing is written after); going back to
    /// read-write does what a read-write mount does at open (orphans freed, a fresh
    /// checkpoint), and is refused after a shutdown.
    pub fn reconfigure(&mut self, opts: Options) -> Result<()> {
        match (self.opts.read_only, opts.read_only) {
            (false, true) if self.shutdown.is_none() => self.checkpoint()?,
            (true, false) => {
                if self.shutdown.is_some() {
                    return Err(Error::ReadOnly);
                }
                self.opts.read_only = false;
                if let Err(e) = self.free_orphans().and_then(|()| self.checkpoint()) {
                    self.opts.read_only = true;
                    return Err(e);
                }
            }
            _ => {}
        }
        self.opts = opts;
        Ok(())
    }

    /// Inodes with no name and no opener (unlinked while open before a crash).
    fn free_orphans(&mut self) -> Result<()> {
        let mut orphans: Vec<Ino> = self.st.inodes().filter(|(_, i)| i.attr.nlink == 0).map(|(ino, _)| ino).collect();
        orphans.sort();
        if orphans.is_empty() {
            return Ok(());
        }
        log::info!("freeing {} orphan inode(s)", orphans.len());
        self.commit(orphans.into_iter().map(|ino| Record::FreeInode { ino }).collect())
    }

    pub(super) fn writable(&self) -> Result<()> {
        if self.opts.read_only || self.shutdown.is_some() {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Logs and applies one transaction.
    pub(super) fn commit(&mut self, recs: Vec<Record>) -> Result<()> {
        self.writable()?;
        if recs.is_empty() {
            return Ok(());
        }
        let payload = encode_all(&recs);
        let exists = |ino| self.st.inode(ino).is_some();
        // A map that lengthens an existing extent (appends, sequential writes) adds
        // nothing to the checkpoint.
        let lengthens = |r: &Record| match r {
            Record::Map { ino, fblock, pfn, .. } => {
                self.st.inode(*ino).and_then(|i| i.extents()).is_some_and(|m| m.continues(*fblock, *pfn))
            }
            _ => false,
        };
        let growth: u64 = recs.iter().filter(|r| !lengthens(r)).map(|r| r.growth_bound(&exists)).sum();
        if !self.journal.fits(payload.len() as u64, growth) {
            self.checkpoint()?;
            if !self.journal.fits(payload.len() as u64, growth) {
                return Err(Error::NoSpace);
            }
        }
        self.journal.append(&*self.media, &payload, growth)?;
        for r in &recs {
            if let Record::SetInode(a) = r {
                self.dirty.remove(&a.ino);
            }
            if let Err(why) = self.st.apply(r, Mode::Live) {
                let e = Error::Shutdown { record: format!("{r:?}"), why };
                log::error!("{e}");
                self.shut_down(e.to_string());
                return Err(e);
            }
        }
        Ok(())
    }

    pub(super) fn commit_tx(&mut self, tx: Tx) -> Result<()> {
        self.commit(tx.into_records())
    }

    /// Writes the whole namespace as a new checkpoint and empties the log.
    pub(super) fn checkpoint(&mut self) -> Result<()> {
        self.writable()?;
        let payload = self.st.encode_checkpoint();
        self.journal.checkpoint(&*self.media, &payload)?;
        self.dirty.clear();
        self.committed();
        Ok(())
    }

    /// Everything logged is durable: pages freed since may be reused once no reader
    /// that might still copy from them is left.
    fn committed(&mut self) {
        self.copies.synchronize();
        self.st.committed();
    }

    /// Waits for the data copies made without the lock: a reflink operation shares or
    /// compares pages, and no write may still be landing in them.
    pub(super) fn settle_copies(&self) {
        self.copies.synchronize();
    }

    pub fn options(&self) -> Options {
        self.opts
    }

    pub(super) fn generation(&self) -> u64 {
        self.journal.generation()
    }

    /// Stops all changes, as XFS's forced shutdown does.
    pub(super) fn shut_down(&mut self, why: String) {
        self.shutdown.get_or_insert(why);
    }

    pub(super) fn is_shut_down(&self) -> bool {
        self.shutdown.is_some()
    }

    /// Marks attributes changed in memory; they reach the log at the next sync.
    pub(super) fn touch(&mut self, ino: Ino) {
        self.dirty.insert(ino);
    }

    pub fn sync(&mut self) -> Result<()> {
        if self.writable().is_err() {
            return Ok(());
        }
        let mut dirty: Vec<Ino> = self.dirty.iter().copied().collect();
        dirty.sort();
        let recs = dirty.into_iter().filter_map(|ino| self.st.inode(ino).map(|i| Record::SetInode(i.attr))).collect();
        self.commit(recs)?;
        self.journal.flush(&*self.media)?;
        self.committed();
        Ok(())
    }

    /// The clean-unmount path: nothing can be open any more, so orphans go now rather
    /// than at the next mount; then a checkpoint.
    pub fn unmount(&mut self) -> Result<()> {
        if self.writable().is_err() {
            return Ok(());
        }
        self.open.clear();
        self.free_orphans()?;
        self.checkpoint()
    }

    /// Allocates `n` pages near `goal`; reclaims busy pages with a log flush if needed.
    pub(super) fn alloc_pages(&mut self, goal: Pfn, n: u64) -> Result<Vec<(Pfn, u64)>> {
        if let Some(v) = self.st.allocate(goal, n) {
            return Ok(v);
        }
        if self.st.allocator().busy_pages() > 0 {
            self.sync()?;
            if let Some(v) = self.st.allocate(goal, n) {
                return Ok(v);
            }
        }
        Err(Error::NoSpace)
    }

    /// Returns pages allocated for a change that then failed before it was logged.
    pub(super) fn unalloc(&mut self, runs: &[(Pfn, u64)]) {
        self.st.give_back(runs);
    }

    pub(super) fn inode(&self, ino: Ino) -> Result<&super::inode::Inode> {
        self.st.inode(ino).ok_or(Error::NotFound)
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        Ok(self.inode(ino)?.stat())
    }

    pub fn setattr(&mut self, ino: Ino, set: SetAttr) -> Result<Attr> {
        self.writable()?;
        // notify_change: an immutable inode takes no change at all, an append-only one
        // no new mode, owner, size or explicit time (touching it to now is allowed).
        let a = self.inode(ino)?.attr;
        let explicit = |t: Option<SetTime>| matches!(t, Some(SetTime::At(_)));
        let changes_owner_or_data = set.mode.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.size.is_some()
            || explicit(set.atime)
            || explicit(set.mtime);
        if a.immutable() || (a.append_only() && changes_owner_or_data) {
            return Err(Error::Perm);
        }
        if let Some(size) = set.size {
            self.truncate(ino, size)?;
        }
        let tx = self.plan_setattr(ino, &set)?;
        self.commit_tx(tx)?;
        self.getattr(ino)
    }

    /// Everything of `setattr` but the size, which `truncate` changed before.
    fn plan_setattr(&self, ino: Ino, set: &SetAttr) -> Result<Tx> {
        let now = Timespec::now();
        let mut tx = Tx::new();
        let a = tx.attr(&self.st, ino)?;
        if let Some(m) = set.mode {
            a.mode = (a.mode & libc::S_IFMT) | (m & !libc::S_IFMT);
        }
        if let Some(u) = set.uid {
            a.uid = u;
        }
        if let Some(g) = set.gid {
            a.gid = g;
        }
        let pick = |t: SetTime| match t {
            SetTime::Now => now,
            SetTime::At(t) => t,
        };
        if let Some(t) = set.atime {
            a.atime = pick(t);
        }
        if let Some(t) = set.mtime {
            a.mtime = pick(t);
        }
        a.ctime = set.ctime.unwrap_or(now);
        // posix_acl_chmod: an access ACL follows the new permission bits.
        if let Some(m) = set.mode
            && let Some(v) = self.inode(ino)?.xattrs.get(ACL_ACCESS)
        {
            let mut acl = Acl::decode(v)?;
            acl.chmod(m);
            tx.push(Record::SetXattr { ino, name: ACL_ACCESS.to_vec(), value: acl.encode() });
        }
        Ok(tx)
    }

    /// `chattr`: sets the file attribute flags (`FS_IOC_SETFLAGS`). The VFS has already
    /// checked that the caller owns the inode and holds `CAP_LINUX_IMMUTABLE` if `i` or
    /// `a` change (`fileattr_set_prepare`); flags daxlink does not keep are refused.
    pub fn set_flags(&mut self, ino: Ino, flags: u32) -> Result<Attr> {
        let tx = self.plan_set_flags(ino, flags)?;
        self.commit_tx(tx)?;
        self.getattr(ino)
    }

    fn plan_set_flags(&self, ino: Ino, flags: u32) -> Result<Tx> {
        self.writable()?;
        if flags & !FL_SUPPORTED != 0 {
            return Err(Error::NotSupported);
        }
        let mut tx = Tx::new();
        let a = tx.attr(&self.st, ino)?;
        a.flags = flags;
        a.ctime = Timespec::now();
        Ok(tx)
    }

    /// EPERM unless `ino` may change in any way: neither immutable nor append-only
    /// (chmod, chown, link, xattrs, unlink and rename of it, clone into it).
    pub(super) fn may_modify(&self, ino: Ino) -> Result<()> {
        let a = self.inode(ino)?.attr;
        if a.immutable() || a.append_only() { Err(Error::Perm) } else { Ok(()) }
    }

    /// EPERM unless names may be added to directory `dir` (not immutable) or, with
    /// `removing`, removed from it (nor append-only), as `may_create`/`may_delete`.
    pub(super) fn may_change_entries(&self, dir: Ino, removing: bool) -> Result<()> {
        let a = self.inode(dir)?.attr;
        if a.immutable() || (removing && a.append_only()) { Err(Error::Perm) } else { Ok(()) }
    }

    /// `may_open` for a write: EPERM for an immutable file, and for an append-only one
    /// unless the open appends and does not truncate.
    pub fn may_open_for_write(&self, ino: Ino, append: bool, truncate: bool) -> Result<()> {
        let a = self.inode(ino)?.attr;
        if a.immutable() || (a.append_only() && (!append || truncate)) { Err(Error::Perm) } else { Ok(()) }
    }

    /// What a write, truncate, fallocate, copy or chown does to a file's privileges
    /// when the kernel leaves it to the filesystem (`FUSE_HANDLE_KILLPRIV_V2`), as the
    /// VFS would (`setattr_should_drop_suidgid`): `security.capability` always goes; for
    /// a changer without `CAP_FSETID` set-user-ID goes, and set-group-ID where group
    /// execute makes it one or where the changer is not in the file's group; a chown
    /// drops set-user-ID, and set-group-ID with group execute (without it the bit means
    /// mandatory locking). Returns whether the mode or the attribute changed.
    /// Directories keep everything.
    pub fn kill_privs(&mut self, ino: Ino, who: Changer<'_>) -> Result<bool> {
        let tx = self.plan_kill_privs(ino, who)?;
        if tx.is_empty() {
            // Nothing to drop: not even a read-only filesystem refuses that.
            return Ok(false);
        }
        self.commit_tx(tx)?;
        Ok(true)
    }

    /// The transaction of `kill_privs`; empty when nothing changes.
    fn plan_kill_privs(&self, ino: Ino, who: Changer<'_>) -> Result<Tx> {
        let i = self.inode(ino)?;
        // An immutable file's change is refused anyway (and keeps its mode meanwhile).
        if i.attr.kind() == Kind::Dir || i.attr.immutable() {
            return Ok(Tx::new());
        }
        let mode = i.attr.mode;
        let group_exec = mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP;
        let kill = match who {
            Changer::Privileged => 0,
            Changer::Chown => (mode & libc::S_ISUID) | if group_exec { libc::S_ISGID } else { 0 },
            Changer::Unprivileged(in_group) => {
                let sgid = mode & libc::S_ISGID != 0 && (group_exec || !in_group(i.attr.gid));
                (mode & libc::S_ISUID) | if sgid { libc::S_ISGID } else { 0 }
            }
        };
        let cap = i.xattrs.contains_key(XATTR_CAPS);
        if kill == 0 && !cap {
            return Ok(Tx::new());
        }
        self.writable()?;
        let mut tx = Tx::new();
        if cap {
            tx.push(Record::RemoveXattr { ino, name: XATTR_CAPS.to_vec() });
        }
        let a = tx.attr(&self.st, ino)?;
        a.mode &= !kill;
        a.ctime = Timespec::now();
        Ok(tx)
    }

    pub fn open_inode(&mut self, ino: Ino) -> Result<()> {
        self.inode(ino)?;
        *self.open.entry(ino).or_default() += 1;
        Ok(())
    }

    pub fn release(&mut self, ino: Ino) -> Result<()> {
        let Some(n) = self.open.get_mut(&ino) else {
            return Ok(());
        };
        *n -= 1;
        if *n > 0 {
            return Ok(());
        }
        self.open.remove(&ino);
        if self.st.inode(ino).is_some_and(|i| i.attr.nlink == 0) && self.writable().is_ok() {
            self.commit(vec![Record::FreeInode { ino }])?;
        }
        Ok(())
    }

    pub(super) fn is_open(&self, ino: Ino) -> bool {
        self.open.contains_key(&ino)
    }

    pub fn statfs(&self) -> StatFs {
        // Inodes are limited by checkpoint space. The total is what the slot holds and
        // free inodes are the rest (one per create, as df -i expects); once the slot is
        // nearly full, whatever room is left decides, so free inodes reach 0 when a
        // create would fail. Used inodes (files - ffree) are always exactly the inodes.
        let cap = self.journal.checkpoint_capacity();
        let room = cap.saturating_sub(self.journal.checkpoint_bound());
        let inodes = self.st.inode_count();
        let mut ffree = (cap / INODE_COST).saturating_sub(inodes);
        if room < cap / 8 {
            ffree = ffree.min(room / INODE_COST);
        }
        StatFs {
            blocks: self.st.geo().data_pages(),
            bfree: self.st.allocator().available_pages(),
            files: inodes + ffree,
            ffree,
            bsize: PAGE_SIZE as u32,
            namelen: super::inode::NAME_MAX as u32,
        }
    }

    pub fn stats(&self) -> Stats {
        let (_, shared) = self.st.pages().counts();
        let total = self.st.geo().data_pages();
        // As statfs counts: a failed page is used, a page waiting for the log is free.
        let free = self.st.allocator().available_pages();
        Stats {
            block_size: PAGE_SIZE,
            pages_total: total,
            pages_used: total - free,
            pages_free: free,
            pages_shared: shared,
            warnings: self.st.pages().warnings(),
            inodes: self.st.inode_count(),
            log_bytes: self.journal.log_used(),
            generation: self.journal.generation(),
            pages_bad: self.st.pages().bad_pages().count() as u64,
            holder_calls: self.st.pages().holder_calls(),
        }
    }

    /// The file's mapped ranges, split where pages change between co-owned (another
    /// owner holds them too: another file, or this one at another offset) and private,
    /// or blocks between poisoned and not: what `daxlink extents` shows.
    pub fn extents(&self, ino: Ino) -> Result<Vec<FileExtent>> {
        Ok(self.extents_from(ino, FileBlock(0), usize::MAX)?.0)
    }

    /// At most `max` of those ranges from block `from` on, and whether more follow: a
    /// batch costs what it returns, not the whole file.
    pub fn extents_from(&self, ino: Ino, from: FileBlock, max: usize) -> Result<(Vec<FileExtent>, bool)> {
        let Body::File(m) = &self.inode(ino)?.body else {
            return Err(Error::Invalid);
        };
        let mut extents = m.iter_from(from).flat_map(|x| self.split_by_state(ino, x));
        let out: Vec<FileExtent> = extents.by_ref().take(max).collect();
        let more = extents.next().is_some();
        Ok((out, more))
    }

    /// One extent cut where its pages' sharing or its blocks' poison changes, lazily:
    /// a batch that stops inside an extent has looked at no page past it. The extent
    /// map merges extents that touch, so no run continues into the next one.
    fn split_by_state(&self, ino: Ino, x: Extent) -> impl Iterator<Item = FileExtent> + '_ {
        self.st.pages().co_owned_runs(x.pfn, x.pages).flat_map(move |(at, pages, co_owned)| {
            let (first, end) = (x.fblock.plus(at), x.fblock.plus(at + pages));
            let mut out = Vec::new();
            let mut piece = |b: FileBlock, to: FileBlock, poisoned: bool| {
                if b < to {
                    let pfn = x.pfn.plus(b.0 - x.fblock.0);
                    out.push(FileExtent { fblock: b, pfn, pages: to.0 - b.0, co_owned, poisoned });
                }
            };
            let mut b = first;
            for (bad, n) in number_runs(self.st.poisoned(ino, first..end).map(|p| p.0)) {
                piece(b, FileBlock(bad), false);
                piece(FileBlock(bad), FileBlock(bad + n), true);
                b = FileBlock(bad + n);
            }
            piece(b, end, false);
            out
        })
    }

    pub fn page_state(&self, pfn: Pfn) -> Result<PageState> {
        if !self.st.geo().is_data(pfn) {
            return Err(Error::Invalid);
        }
        Ok(self.st.pages().state(pfn))
    }

    pub fn page_is_bad(&self, pfn: Pfn) -> Result<bool> {
        if !self.st.geo().is_data(pfn) {
            return Err(Error::Invalid);
        }
        Ok(self.st.pages().is_bad(pfn))
    }

    pub fn check(&self) -> std::result::Result<(), CheckError> {
        self.st.check()?;
        let cp = self.st.encode_checkpoint().len() as u64;
        if cp > self.journal.checkpoint_bound() {
            return Err(CheckError::Journal(format!(
                "checkpoint of {cp} bytes exceeds the bound {} the log admission assumed",
                self.journal.checkpoint_bound()
            )));
        }
        Ok(())
    }
}
