//! `memory_failure`: what `mm/memory-failure.c` does for an fs-dax page
//! (`memory_failure_dev_pagemap` → `mf_generic_kill_procs` or
//! `dax_holder_notify_failure`), minus the killing: it finds the owners, and the
//! filesystem contains the damage.

use super::holder::{HolderOps, Owner};
use super::page::{PageState, PageTable};
use crate::types::{PAGE_SIZE, Pfn};

/// What a memory failure of a range of data pages found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// Pages that failed now (already-bad pages are skipped, as `PageHWPoison`).
    pub failed: Vec<Pfn>,
    /// Owners of the failed pages: from the page itself when singly owned, from the
    /// holder when shared.
    pub owners: Vec<Owner>,
    /// How many times the holder was consulted.
    pub holder_calls: u64,
}

/// Fails `count` data pages from `pfn`. A free page is only marked bad; a singly owned
/// page names its owner from `(mapping, index)`; the shared pages of the range are
/// resolved with one `notify_failure` call over the span they cover. `flags` (the
/// kernel's `mf_flags`) reach the holder untouched.
pub fn memory_failure(pages: &mut PageTable, pfn: Pfn, count: u64, flags: u32, holder: &dyn HolderOps) -> Failure {
    let mut f = Failure::default();
    let mut shared: Option<(Pfn, Pfn)> = None;
    for i in 0..count {
        let p = pfn.plus(i);
        if !pages.contains(p) || pages.is_bad(p) {
            continue;
        }
        match pages.state(p) {
            PageState::Free => {}
            PageState::Owned { mapping, index } => f.owners.push(Owner { pfn: p, ino: mapping, index }),
            PageState::Shared { .. } => shared = Some((shared.map_or(p, |s| s.0), p)),
        }
        pages.mark_bad(p);
        f.failed.push(p);
    }
    if let Some((first, last)) = shared {
        pages.count_holder_call();
        f.holder_calls += 1;
        let len = (last.0 - first.0 + 1) * PAGE_SIZE;
        let found = holder.notify_failure(first.offset(), len, flags);
        // `failed` is in page order: one binary search per owner.
        f.owners.extend(found.into_iter().filter(|o| f.failed.binary_search(&o.pfn).is_ok()));
    }
    f.owners.sort();
    f.owners.dedup();
    f
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::types::{ArenaOffset, FileBlock, Ino};

    /// A holder that knows one fixed set of owners and counts its calls.
    struct Fixed(Vec<Owner>, Cell<u32>);

    impl HolderOps for Fixed {
        fn notify_failure(&self, offset: ArenaOffset, bytes: u64, _flags: u32) -> Vec<Owner> {
            self.1.set(self.1.get() + 1);
            let (s, e) = (offset.0 / PAGE_SIZE, (offset.0 + bytes) / PAGE_SIZE);
            self.0.iter().copied().filter(|o| o.pfn.0 >= s && o.pfn.0 < e).collect()
        }
    }

    const P: Pfn = Pfn(100);

    #[test]
    fn free_page_is_marked_bad_without_owners() {
        let mut t = PageTable::new(P, 4);
        let h = Fixed(vec![], Cell::new(0));
        let f = memory_failure(&mut t, P, 1, 0, &h);
        assert_eq!(f.failed, vec![P]);
        assert!(f.owners.is_empty());
        assert!(t.is_bad(P));
        assert_eq!(h.1.get(), 0);
    }

    #[test]
    fn owned_page_names_its_owner_without_the_holder() {
        let mut t = PageTable::new(P, 4);
        t.associate(P, Ino(7), FileBlock(3), false);
        let h = Fixed(vec![], Cell::new(0));
        let f = memory_failure(&mut t, P, 1, 0, &h);
        assert_eq!(f.owners, vec![Owner { pfn: P, ino: Ino(7), index: FileBlock(3) }]);
        assert_eq!(h.1.get(), 0, "the holder must not be asked about a singly owned page");
        assert_eq!(t.holder_calls(), 0);
    }

    #[test]
    fn shared_pages_of_a_range_cost_one_holder_call() {
        let mut t = PageTable::new(P, 4);
        let owners: Vec<Owner> = (0..2)
            .flat_map(|i| [Ino(7), Ino(8)].map(|ino| Owner { pfn: P.plus(i), ino, index: FileBlock(i) }))
            .collect();
        for o in &owners {
            t.associate(o.pfn, o.ino, o.index, true);
        }
        let h = Fixed(owners.clone(), Cell::new(0));
        let f = memory_failure(&mut t, P, 2, 0, &h);
        assert_eq!(h.1.get(), 1);
        assert_eq!(f.holder_calls, 1);
        assert_eq!(t.holder_calls(), 1);
        let mut want = owners;
        want.sort();
        assert_eq!(f.owners, want);
    }

    #[test]
    fn an_already_bad_page_is_not_failed_twice() {
        let mut t = PageTable::new(P, 4);
        let h = Fixed(vec![], Cell::new(0));
        memory_failure(&mut t, P, 1, 0, &h);
        assert!(memory_failure(&mut t, P, 1, 0, &h).failed.is_empty());
    }
}
