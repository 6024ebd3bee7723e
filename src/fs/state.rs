//! The in-memory filesystem state and the one function that changes what is persisted
//! in it: `apply`.
//!
//! Live operations, log replay and checkpoint loading all go through `apply`, so the
//! state a crash recovers is built by the very code that built it before the crash.
//! Everything not in a record — the page table, free space, page refcounts (the page
//! table's `share`) — is derived here from the extent maps. The fields are private:
//! operations read the state through the accessors below and plan records from it;
//! the few changes that are never logged by themselves go through named methods
//! (`touch_atime`, `touch_mtime` for lazily logged times; `allocate`, `give_back`,
//! `committed` for free space; `fail_pages` for the page table's bad marks;
//! `clear_double_claims` for fsck).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;

mod verify;

use super::extent::Extent;
use super::inode::{Body, Dir, Inode, Kind, MAX_FILE_SIZE, Timespec};
use super::namespace::check_name;
use super::record::Record;
use super::rmap::Rmap;
use crate::arena::codec::Enc;
use crate::arena::{Allocator, Geometry};
use crate::dax::{Failure, PageState, PageTable};
use crate::runs::{number_runs, runs};
use crate::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

/// Blocks a file may map (8 TiB / 4 KiB).
pub const MAX_FILE_BLOCKS: u64 = MAX_FILE_SIZE / PAGE_SIZE;

/// Whether freed pages wait for a log commit (live) or are free at once (replay: every
/// replayed record is already durable; free space is derived after replay anyway).
/// `Fsck` replays too, but records a page claimed by two single owners instead of
/// refusing it, so fsck can name it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
    Fsck,
}

pub struct State {
    geo: Geometry,
    inodes: HashMap<Ino, Inode>,
    pages: PageTable,
    alloc: Allocator,
    next_ino: u64,
    /// The owners of every shared page (see `rmap`).
    rmap: Rmap,
    /// File blocks whose page failed: they read EIO until a whole-page write.
    poison: BTreeSet<(Ino, FileBlock)>,
    /// Pages that lost an owner but kept another since the last commit. Until the loss
    /// is durable a crash can give the owner back, so they are not written in place
    /// (the busy-extent rule, for shared pages).
    lost_owner_since_commit: HashSet<Pfn>,
    /// Blocks (in `Mode::Fsck`) whose map claimed sole ownership of a page in use.
    double_claims: Vec<(Ino, FileBlock)>,
}

/// Runs of pages in page order: (first page, count).
fn page_runs(pages: impl IntoIterator<Item = Pfn>) -> impl Iterator<Item = (Pfn, u64)> {
    runs(pages, |s, n, p| s.0 + n == p.0)
}

impl State {
    pub fn new(geo: Geometry) -> State {
        let end = Pfn(geo.pages_total);
        State {
            pages: PageTable::new(geo.data_start, geo.data_pages()),
            alloc: Allocator::new(geo.data_start, end),
            inodes: HashMap::new(),
            next_ino: Ino::ROOT.0 + 1,
            rmap: Rmap::default(),
            poison: BTreeSet::new(),
            lost_owner_since_commit: HashSet::new(),
            double_claims: Vec::new(),
            geo,
        }
    }

    pub fn geo(&self) -> &Geometry {
        &self.geo
    }

    pub fn inode(&self, ino: Ino) -> Option<&Inode> {
        self.inodes.get(&ino)
    }

    /// Every inode, in no particular order.
    pub fn inodes(&self) -> impl Iterator<Item = (Ino, &Inode)> {
        self.inodes.iter().map(|(ino, i)| (*ino, i))
    }

    pub fn inode_count(&self) -> u64 {
        self.inodes.len() as u64
    }

    /// The number the next new inode gets.
    pub fn next_ino(&self) -> u64 {
        self.next_ino
    }

    pub fn pages(&self) -> &PageTable {
        &self.pages
    }

    pub fn allocator(&self) -> &Allocator {
        &self.alloc
    }

    pub fn rmap(&self) -> &Rmap {
        &self.rmap
    }

    /// The poisoned blocks of `ino` in `blocks`, in order.
    pub fn poisoned(&self, ino: Ino, blocks: Range<FileBlock>) -> impl Iterator<Item = FileBlock> + '_ {
        let range = (blocks.start < blocks.end).then(|| self.poison.range((ino, blocks.start)..(ino, blocks.end)));
        range.into_iter().flatten().map(|p| p.1)
    }

    pub fn is_poisoned(&self, ino: Ino, b: FileBlock) -> bool {
        self.poison.contains(&(ino, b))
    }

    /// Whether the page lost an owner since the last commit (a crash could give it back).
    pub fn lost_owner_since_commit(&self, pfn: Pfn) -> bool {
        self.lost_owner_since_commit.contains(&pfn)
    }

    /// Blocks (in `Mode::Fsck`) whose map claimed sole ownership of a page in use.
    pub fn double_claims(&self) -> &[(Ino, FileBlock)] {
        &self.double_claims
    }

    /// A read's atime, logged lazily (at the next sync or checkpoint) by the caller.
    pub fn touch_atime(&mut self, ino: Ino, now: Timespec) -> bool {
        self.inodes.get_mut(&ino).map(|i| i.attr.atime = now).is_some()
    }

    /// An in-place write's mtime and ctime, logged lazily by the caller.
    pub fn touch_mtime(&mut self, ino: Ino, now: Timespec) -> bool {
        self.inodes.get_mut(&ino).map(|i| (i.attr.mtime, i.attr.ctime) = (now, now)).is_some()
    }

    /// Takes `n` free pages near `goal` for a change about to be logged.
    pub fn allocate(&mut self, goal: Pfn, n: u64) -> Option<Vec<(Pfn, u64)>> {
        self.alloc.alloc(goal, n)
    }

    /// Returns pages `allocate` gave for a change that failed before it was logged.
    pub fn give_back(&mut self, runs: &[(Pfn, u64)]) {
        for &(p, n) in runs {
            self.alloc.free_later(p, n);
        }
    }

    /// Marks failed data pages bad in the page table and finds their owners (from the
    /// page, or the reverse map for a shared page): `dax::memory_failure`. The
    /// caller logs what it found.
    pub fn fail_pages(&mut self, first: Pfn, count: u64) -> Failure {
        crate::dax::memory_failure(&mut self.pages, first, count, 0, &self.rmap)
    }

    /// fsck repaired the doubly owned blocks it found.
    pub fn clear_double_claims(&mut self) {
        self.double_claims.clear();
    }

    fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, String> {
        self.inodes.get_mut(&ino).ok_or_else(|| format!("inode {ino} does not exist"))
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut Dir, String> {
        self.inode_mut(ino)?.dir_mut().ok_or_else(|| format!("inode {ino} is not a directory"))
    }

    /// Applies one record. An error means the record does not fit the state: a bug when
    /// live, a damaged pool when recovering. Nothing is changed when it fails.
    pub fn apply(&mut self, rec: &Record, mode: Mode) -> Result<(), String> {
        match rec {
            Record::SetInode(a) => {
                let kind =
                    Kind::from_mode(a.mode).ok_or_else(|| format!("inode {} has invalid mode {:o}", a.ino, a.mode))?;
                if a.ino.0 == 0 || a.ino.0 == u64::MAX {
                    return Err(format!("invalid inode number {}", a.ino));
                }
                if kind == Kind::File && a.size > MAX_FILE_SIZE {
                    return Err(format!("inode {} size {} exceeds the limit", a.ino, a.size));
                }
                match self.inodes.get_mut(&a.ino) {
                    Some(i) if i.attr.kind() != kind => {
                        return Err(format!("inode {} changes kind", a.ino));
                    }
                    Some(i) => i.attr = *a,
                    None => {
                        let mut i = Inode::new(*a);
                        if let (Some(d), true) = (i.dir_mut(), a.ino == Ino::ROOT) {
                            d.parent = Ino::ROOT;
                        }
                        self.inodes.insert(a.ino, i);
                        self.next_ino = self.next_ino.max(a.ino.0 + 1);
                    }
                }
            }
            Record::SetSymlink { ino, target } => match &mut self.inode_mut(*ino)?.body {
                Body::Symlink(t) => *t = target.clone(),
                _ => return Err(format!("inode {ino} is not a symlink")),
            },
            Record::FreeInode { ino } => {
                if *ino == Ino::ROOT {
                    return Err("the root cannot be freed".into());
                }
                let inode = self.inodes.get(ino).ok_or_else(|| format!("inode {ino} does not exist"))?;
                if inode.dir().is_some_and(|d| !d.is_empty()) {
                    return Err(format!("directory {ino} freed while not empty"));
                }
                if inode.extents().is_some() {
                    self.unmap(*ino, FileBlock(0), MAX_FILE_BLOCKS, mode)?;
                }
                self.inodes.remove(ino);
            }
            Record::Link { dir, name, ino } => {
                if check_name(name).is_err() {
                    return Err(format!("invalid name {:?}", String::from_utf8_lossy(name)));
                }
                let child_is_dir =
                    self.inodes.get(ino).ok_or_else(|| format!("link to missing inode {ino}"))?.dir().is_some();
                let d = self.dir_mut(*dir)?;
                if d.get(name).is_some() {
                    return Err(format!("name {:?} exists in {dir}", String::from_utf8_lossy(name)));
                }
                d.insert(name, *ino);
                if child_is_dir && let Some(cd) = self.inode_mut(*ino)?.dir_mut() {
                    cd.parent = *dir;
                }
            }
            Record::Unlink { dir, name } => {
                self.dir_mut(*dir)?
                    .remove(name)
                    .ok_or_else(|| format!("unlink of missing name {:?} in {dir}", String::from_utf8_lossy(name)))?;
            }
            Record::Map { ino, fblock, pfn, pages, cloned } => self.map(*ino, *fblock, *pfn, *pages, *cloned, mode)?,
            Record::Unmap { ino, fblock, pages } => self.unmap(*ino, *fblock, *pages, mode)?,
            Record::SetXattr { ino, name, value } => {
                self.inode_mut(*ino)?.xattrs.insert(name.clone(), value.clone());
            }
            Record::RemoveXattr { ino, name } => {
                self.inode_mut(*ino)?.xattrs.remove(name).ok_or_else(|| format!("remove of missing xattr on {ino}"))?;
            }
            Record::BadPage { pfn } => {
                if !self.geo.is_data(*pfn) {
                    return Err(format!("bad page {pfn} outside the data region"));
                }
                self.pages.mark_bad(*pfn);
                if mode == Mode::Live {
                    self.alloc.retire(*pfn);
                }
            }
            Record::Poison { ino, fblock } => {
                let mapped = self.inodes.get(ino).and_then(|i| i.extents()).and_then(|m| m.lookup(*fblock));
                if mapped.is_none() {
                    return Err(format!("poison of unmapped block {fblock} of inode {ino}"));
                }
                self.poison.insert((*ino, *fblock));
            }
        }
        Ok(())
    }

    fn map(
        &mut self,
        ino: Ino,
        fblock: FileBlock,
        pfn: Pfn,
        count: u64,
        cloned: bool,
        mode: Mode,
    ) -> Result<(), String> {
        if count == 0 || fblock.0.checked_add(count).is_none_or(|e| e > MAX_FILE_BLOCKS) {
            return Err(format!("map of blocks [{fblock}, +{count}) out of range"));
        }
        if !self.geo.is_data_range(pfn, count) {
            return Err(format!("map of pages [{pfn}, +{count}) outside the data region"));
        }
        let in_use: Vec<u64> =
            if cloned { Vec::new() } else { (0..count).filter(|i| !self.pages.is_free(pfn.plus(*i))).collect() };
        if !in_use.is_empty() {
            if mode != Mode::Fsck {
                return Err(format!("map of pages [{pfn}, +{count}) that are in use"));
            }
            self.double_claims.extend(in_use.iter().map(|i| (ino, fblock.plus(*i))));
        }
        // fsck keeps the second claim as a share, so the page table stays truthful.
        let shared = cloned || !in_use.is_empty();
        let pages = &mut self.pages;
        let inode = self.inodes.get_mut(&ino).ok_or_else(|| format!("inode {ino} does not exist"))?;
        let Body::File(m) = &mut inode.body else {
            return Err(format!("map into inode {ino}, which is not a regular file"));
        };
        if !m.range(fblock, count).is_empty() {
            return Err(format!("map over mapped blocks of inode {ino}"));
        }
        m.insert(Extent { fblock, pfn, pages: count });
        // The reverse map names the owners of shared pages only; a page with one owner
        // names it in the page table (fs/dax.c: mapping + index, or a share count). A
        // page turning shared brings its first owner along.
        let mut first_owners: Vec<(Pfn, Ino, FileBlock)> = Vec::new();
        let mut now_shared = Vec::new();
        for i in 0..count {
            let p = pfn.plus(i);
            let before = pages.state(p);
            pages.associate(p, ino, fblock.plus(i), shared);
            if pages.is_shared(p) {
                if let PageState::Owned { mapping, index } = before {
                    first_owners.push((p, mapping, index));
                }
                now_shared.push(i);
            }
        }
        // One owner on consecutive pages and blocks: one reverse-map entry.
        let owner_runs = runs(first_owners, |(s, o, f), n, (p, ino, b)| o == ino && s.0 + n == p.0 && f.0 + n == b.0);
        for ((p, owner, index), n) in owner_runs {
            self.rmap.add(p, n, owner, index);
        }
        for (i, n) in number_runs(now_shared) {
            self.rmap.add(pfn.plus(i), n, ino, fblock.plus(i));
        }
        Ok(())
    }

    fn unmap(&mut self, ino: Ino, fblock: FileBlock, blocks: u64, mode: Mode) -> Result<(), String> {
        let inode = self.inodes.get_mut(&ino).ok_or_else(|| format!("inode {ino} does not exist"))?;
        let Body::File(m) = &mut inode.body else {
            return Err(format!("unmap from inode {ino}, which is not a regular file"));
        };
        let end = FileBlock(fblock.0.saturating_add(blocks));
        let poisoned: Vec<_> = self.poison.range((ino, fblock)..(ino, end)).copied().collect();
        for p in poisoned {
            self.poison.remove(&p);
        }
        for e in m.remove(fblock, blocks) {
            let shared: Vec<u64> = (0..e.pages).filter(|i| self.pages.is_shared(e.pfn.plus(*i))).collect();
            for (i, n) in number_runs(shared) {
                self.rmap.remove(e.pfn.plus(i), n, ino, e.fblock.plus(i));
            }
            let mut freed = Vec::new();
            for i in 0..e.pages {
                let p = e.pfn.plus(i);
                self.pages.disassociate(p, ino);
                if !self.pages.is_free(p) {
                    if mode == Mode::Live {
                        self.lost_owner_since_commit.insert(p);
                    }
                    continue;
                }
                // A failed page leaves circulation when its last owner lets go.
                if !self.pages.is_bad(p) {
                    freed.push(p);
                }
            }
            if mode == Mode::Live {
                for (s, n) in page_runs(freed) {
                    self.alloc.free_later(s, n);
                }
            }
        }
        Ok(())
    }

    /// Everything logged so far is durable: freed pages may be reused, pages that lost
    /// owners may be written in place.
    pub fn committed(&mut self) {
        self.alloc.commit();
        self.lost_owner_since_commit.clear();
    }

    /// After replay: derive free space from the page table.
    pub fn derive_free_space(&mut self) {
        let mut alloc = Allocator::new(self.geo.data_start, Pfn(self.geo.pages_total));
        let in_use = (self.geo.data_start.0..self.geo.pages_total)
            .map(Pfn)
            .filter(|p| !self.pages.is_free(*p) || self.pages.is_bad(*p));
        for (s, n) in page_runs(in_use) {
            alloc.take(s, n);
        }
        self.alloc = alloc;
    }

    /// The checkpoint: the record stream that rebuilds this state from nothing. Inodes
    /// first (so links find them), in inode order for a deterministic image.
    pub fn encode_checkpoint(&self) -> Vec<u8> {
        let mut e = Enc::new();
        let mut inos: Vec<&Ino> = self.inodes.keys().collect();
        inos.sort();
        for ino in &inos {
            let i = &self.inodes[ino];
            Record::SetInode(i.attr).encode(&mut e);
            if let Body::Symlink(t) = &i.body {
                Record::SetSymlink { ino: **ino, target: t.clone() }.encode(&mut e);
            }
            for (name, value) in &i.xattrs {
                Record::SetXattr { ino: **ino, name: name.clone(), value: value.clone() }.encode(&mut e);
            }
            if let Body::File(m) = &i.body {
                for x in m.iter() {
                    // `cloned` only where pages are shared: a page that a second extent
                    // also claims as its own is then a fault the load catches.
                    let shared = (0..x.pages).any(|i| self.pages.is_shared(x.pfn.plus(i)));
                    Record::Map { ino: **ino, fblock: x.fblock, pfn: x.pfn, pages: x.pages, cloned: shared }
                        .encode(&mut e);
                }
            }
            for &(_, fblock) in self.poison.range((**ino, FileBlock(0))..=(**ino, FileBlock(u64::MAX))) {
                Record::Poison { ino: **ino, fblock }.encode(&mut e);
            }
        }
        for pfn in self.pages.bad_pages() {
            Record::BadPage { pfn }.encode(&mut e);
        }
        for ino in &inos {
            if let Body::Dir(d) = &self.inodes[ino].body {
                for (_, name, child) in d.after(0) {
                    Record::Link { dir: **ino, name: name.to_vec(), ino: child }.encode(&mut e);
                }
            }
        }
        e.buf
    }
}
