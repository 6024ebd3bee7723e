//! The page table: one 16-byte record per arena data page, the analogue of the
//! `struct page` fields fs/dax.c uses after "fs/dax: remove PAGE_MAPPING_DAX_SHARED
//! mapping flag".
//!
//! Ownership model, as fs/dax.c states it:
//! - `mapping != 0`: the page belongs to exactly one address space, at `index`.
//! - `mapping == 0 && share > 0`: the page is shared; it no longer knows its owners, who
//!   must be found through the holder (the filesystem's reverse map). It stays shared
//!   until `share` drops to 0, even at `share == 1`.
//! - `mapping == 0 && share == 0`: the page is in no file.
//!
//! The record is rebuilt from the extent maps at mount; it is never persisted.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::{FileBlock, Ino, Pfn};

/// The `struct page` analogue: `mapping` and the `index`/`share` union.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PageRecord {
    /// Owning address space (inode number), 0 for none.
    pub mapping: u64,
    /// `index` (file page) while `mapping != 0`; `share` (owner count) while it is 0.
    index_or_share: u64,
}

const _: () = assert!(std::mem::size_of::<PageRecord>() == 16);

impl PageRecord {
    pub fn index(&self) -> u64 {
        debug_assert!(self.mapping != 0);
        self.index_or_share
    }
    pub fn share(&self) -> u64 {
        debug_assert!(self.mapping == 0);
        self.index_or_share
    }
}

/// What a page's record says about its owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    Free,
    Owned { mapping: Ino, index: FileBlock },
    Shared { share: u64 },
}

fn co_owned(p: &PageRecord) -> bool {
    p.mapping == 0 && p.index_or_share > 1
}

/// Records for the data pages `[base, base + len)`.
pub struct PageTable {
    base: Pfn,
    pages: Vec<PageRecord>,
    warnings: AtomicU64,
    /// Pages that failed (`PageHWPoison`): never allocated again.
    bad: BTreeSet<Pfn>,
    /// How many times a memory failure consulted the holder.
    holder_calls: u64,
}

impl PageTable {
    pub fn new(base: Pfn, pages: u64) -> Self {
        PageTable {
            base,
            pages: vec![PageRecord::default(); pages as usize],
            warnings: AtomicU64::new(0),
            bad: BTreeSet::new(),
            holder_calls: 0,
        }
    }

    /// How many ownership warnings (`WARN_ON_ONCE` analogues) have fired.
    pub fn warnings(&self) -> u64 {
        self.warnings.load(Ordering::Relaxed)
    }

    pub fn is_bad(&self, pfn: Pfn) -> bool {
        self.bad.contains(&pfn)
    }

    pub fn mark_bad(&mut self, pfn: Pfn) {
        self.bad.insert(pfn);
    }

    pub fn bad_pages(&self) -> impl Iterator<Item = Pfn> + '_ {
        self.bad.iter().copied()
    }

    pub fn holder_calls(&self) -> u64 {
        self.holder_calls
    }

    pub(super) fn count_holder_call(&mut self) {
        self.holder_calls += 1;
    }

    pub fn contains(&self, pfn: Pfn) -> bool {
        pfn >= self.base && pfn.0 - self.base.0 < self.pages.len() as u64
    }

    fn page(&mut self, pfn: Pfn) -> &mut PageRecord {
        debug_assert!(self.contains(pfn), "pfn {pfn} outside the page table");
        &mut self.pages[(pfn.0 - self.base.0) as usize]
    }

    pub fn record(&self, pfn: Pfn) -> PageRecord {
        self.pages[(pfn.0 - self.base.0) as usize]
    }

    /// Kernel-style soft warning: logged and counted, never fatal.
    fn warn_on(&self, cond: bool, what: &str, pfn: Pfn) {
        if cond {
            self.warnings.fetch_add(1, Ordering::Relaxed);
            log::warn!("page table: {what} (pfn {pfn})");
        }
    }

    pub fn state(&self, pfn: Pfn) -> PageState {
        let p = self.record(pfn);
        if p.mapping != 0 {
            PageState::Owned { mapping: Ino(p.mapping), index: FileBlock(p.index_or_share) }
        } else if p.index_or_share > 0 {
            PageState::Shared { share: p.index_or_share }
        } else {
            PageState::Free
        }
    }

    /// `dax_page_is_shared`.
    pub fn is_shared(&self, pfn: Pfn) -> bool {
        let p = self.record(pfn);
        p.mapping == 0 && p.index_or_share > 0
    }

    /// Whether more than one owner holds the page (a shared page whose share is above 1).
    pub fn is_co_owned(&self, pfn: Pfn) -> bool {
        co_owned(&self.record(pfn))
    }

    /// `[pfn, pfn + pages)`, which must lie in the table (an extent's pages do), as
    /// runs of pages that are all co-owned or all not: `(offset from pfn, pages,
    /// co_owned)`, in order, lazily. One pass over the records.
    pub fn co_owned_runs(&self, pfn: Pfn, pages: u64) -> impl Iterator<Item = (u64, u64, bool)> + '_ {
        debug_assert!(pages == 0 || (self.contains(pfn) && self.contains(pfn.plus(pages - 1))));
        let first = (pfn.0 - self.base.0) as usize;
        let mut at = 0;
        self.pages[first..first + pages as usize].chunk_by(|a, b| co_owned(a) == co_owned(b)).map(move |run| {
            let start = at;
            at += run.len() as u64;
            (start, run.len() as u64, co_owned(&run[0]))
        })
    }

    /// Whether no address space holds the page.
    pub fn is_free(&self, pfn: Pfn) -> bool {
        self.record(pfn) == PageRecord::default()
    }

    /// `dax_page_make_shared`: forget the single owner, count it as the first share.
    fn make_shared(&mut self, pfn: Pfn) {
        let p = self.page(pfn);
        p.mapping = 0;
        p.index_or_share = 1;
    }

    /// `dax_page_share_put`: drop one share, return how many remain.
    fn share_put(&mut self, pfn: Pfn) -> u64 {
        let was = self.record(pfn).index_or_share;
        self.warn_on(was == 0, "share_put of a page with no shares", pfn);
        let p = self.page(pfn);
        p.index_or_share = was.saturating_sub(1);
        p.index_or_share
    }

    /// `dax_associate_entry` for one page.
    pub fn associate(&mut self, pfn: Pfn, mapping: Ino, index: FileBlock, shared: bool) {
        debug_assert!(mapping.0 != 0);
        let p = self.record(pfn);
        if shared && (p.mapping != 0 || p.index_or_share > 0) {
            if p.mapping != 0 {
                self.make_shared(pfn);
            }
            let share = self.record(pfn).index_or_share;
            self.warn_on(share == 0, "associate(shared) of a page with share 0", pfn);
            self.page(pfn).index_or_share = share + 1;
        } else {
            self.warn_on(p.mapping != 0, "associate of a page that already has a mapping", pfn);
            let p = self.page(pfn);
            p.mapping = mapping.0;
            p.index_or_share = index.0;
        }
    }

    /// `dax_disassociate_entry` for one page.
    pub fn disassociate(&mut self, pfn: Pfn, mapping: Ino) {
        if self.is_shared(pfn) {
            // Keep the shared state while any share remains.
            if self.share_put(pfn) > 0 {
                return;
            }
        } else {
            let p = self.record(pfn);
            self.warn_on(
                p.mapping != 0 && p.mapping != mapping.0,
                "disassociate by an address space that does not own the page",
                pfn,
            );
        }
        *self.page(pfn) = PageRecord::default();
    }

    /// Counts of (owned, shared) pages.
    pub fn counts(&self) -> (u64, u64) {
        let mut owned = 0;
        let mut shared = 0;
        for p in &self.pages {
            if p.mapping != 0 {
                owned += 1;
            } else if p.index_or_share > 0 {
                shared += 1;
            }
        }
        (owned, shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ino = Ino(10);
    const B: Ino = Ino(11);
    const C: Ino = Ino(12);
    const P: Pfn = Pfn(100);

    fn table() -> PageTable {
        PageTable::new(Pfn(100), 4)
    }

    #[test]
    fn co_owned_runs_split_where_the_share_crosses_one() {
        let mut t = PageTable::new(Pfn(100), 8);
        // 100: free, 101: owned, 102-103: share 2, 104: share 1 (shared, one owner
        // left), 105-106: share 3, 107: free.
        t.associate(Pfn(101), A, FileBlock(0), false);
        for pfn in [102, 103, 104, 105, 106] {
            t.associate(Pfn(pfn), A, FileBlock(pfn), false);
            t.associate(Pfn(pfn), B, FileBlock(pfn), true);
        }
        for pfn in [105, 106] {
            t.associate(Pfn(pfn), C, FileBlock(pfn), true);
        }
        t.disassociate(Pfn(104), B);
        let runs: Vec<_> = t.co_owned_runs(Pfn(100), 8).collect();
        assert_eq!(runs, vec![(0, 2, false), (2, 2, true), (4, 1, false), (5, 2, true), (7, 1, false)]);
        for pfn in 100..108 {
            let listed = runs.iter().any(|&(at, n, c)| c && (at..at + n).contains(&(pfn - 100)));
            assert_eq!(t.is_co_owned(Pfn(pfn)), listed, "pfn {pfn}");
        }
        assert_eq!(t.co_owned_runs(Pfn(103), 3).collect::<Vec<_>>(), vec![(0, 1, true), (1, 1, false), (2, 1, true)]);
        assert_eq!(t.co_owned_runs(Pfn(103), 0).count(), 0);
    }

    #[test]
    fn fresh_page_associates_as_owned_with_mapping_and_index() {
        let mut t = table();
        assert_eq!(t.state(P), PageState::Free);
        t.associate(P, A, FileBlock(7), false);
        assert_eq!(t.state(P), PageState::Owned { mapping: A, index: FileBlock(7) });
        assert!(!t.is_shared(P));
        assert_eq!(t.warnings(), 0);
    }

    #[test]
    fn shared_associate_of_a_free_page_takes_the_owned_path() {
        let mut t = table();
        t.associate(P, A, FileBlock(3), true);
        assert_eq!(t.state(P), PageState::Owned { mapping: A, index: FileBlock(3) });
        assert_eq!(t.warnings(), 0);
    }

    #[test]
    fn second_owner_makes_page_shared_with_share_two() {
        let mut t = table();
        t.associate(P, A, FileBlock(0), false);
        t.associate(P, B, FileBlock(0), true);
        assert_eq!(t.state(P), PageState::Shared { share: 2 });
        assert_eq!(t.record(P).mapping, 0, "mapping must be cleared once shared");
        t.associate(P, C, FileBlock(5), true);
        assert_eq!(t.state(P), PageState::Shared { share: 3 });
        assert_eq!(t.warnings(), 0);
    }

    #[test]
    fn shared_page_stays_shared_at_share_one_and_frees_at_zero() {
        let mut t = table();
        t.associate(P, A, FileBlock(0), false);
        t.associate(P, B, FileBlock(0), true);
        t.disassociate(P, A);
        assert_eq!(t.state(P), PageState::Shared { share: 1 });
        assert!(t.is_shared(P));
        t.disassociate(P, B);
        assert_eq!(t.state(P), PageState::Free);
        assert!(t.is_free(P));
        assert_eq!(t.warnings(), 0);
    }

    #[test]
    fn owned_page_disassociates_to_free() {
        let mut t = table();
        t.associate(P, A, FileBlock(1), false);
        t.disassociate(P, A);
        assert!(t.is_free(P));
        assert_eq!(t.warnings(), 0);
    }

    #[test]
    fn unshared_associate_over_an_owner_warns_and_takes_over() {
        let mut t = table();
        t.associate(P, A, FileBlock(1), false);
        t.associate(P, B, FileBlock(2), false);
        assert_eq!(t.warnings(), 1);
        assert_eq!(t.state(P), PageState::Owned { mapping: B, index: FileBlock(2) });
    }

    #[test]
    fn disassociate_by_a_stranger_warns_and_still_clears() {
        let mut t = table();
        t.associate(P, A, FileBlock(1), false);
        t.disassociate(P, B);
        assert_eq!(t.warnings(), 1);
        assert!(t.is_free(P));
    }

    #[test]
    fn disassociate_of_a_free_page_does_not_warn() {
        // The kernel only warns when a *different* mapping is found.
        let mut t = table();
        t.disassociate(P, A);
        assert_eq!(t.warnings(), 0);
        assert!(t.is_free(P));
    }

    #[test]
    fn share_put_of_zero_warns_without_underflow() {
        let mut t = table();
        assert_eq!(t.share_put(P), 0);
        assert_eq!(t.warnings(), 1);
    }

    #[test]
    fn counts_split_owned_and_shared() {
        let mut t = table();
        t.associate(P, A, FileBlock(0), false);
        t.associate(P.plus(1), A, FileBlock(1), false);
        t.associate(P.plus(1), B, FileBlock(1), true);
        assert_eq!(t.counts(), (1, 1));
    }
}
