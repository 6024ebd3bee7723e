//! Free-space allocator of the data region. Free space is never persisted: mount
//! derives it from the extent maps, so it cannot disagree with them.
//!
//! Pages freed by a metadata change go to `busy` and are reused only after that change
//! is durable (`commit`), as XFS's busy extents: otherwise a crash could replay a file
//! that still owns a page another file has already overwritten.

use std::collections::BTreeMap;

use crate::types::Pfn;

#[derive(Debug, Clone)]
pub struct Allocator {
    start: Pfn,
    end: Pfn,
    /// Free runs: start -> length. Invariant: disjoint, non-adjacent (merged), inside
    /// `[start, end)`.
    free: BTreeMap<u64, u64>,
    free_pages: u64,
    busy: Vec<(Pfn, u64)>,
    busy_pages: u64,
}

impl Allocator {
    /// An allocator for `[start, end)` where every page is free.
    pub fn new(start: Pfn, end: Pfn) -> Self {
        let mut a = Allocator { start, end, free: BTreeMap::new(), free_pages: 0, busy: Vec::new(), busy_pages: 0 };
        if end > start {
            a.insert_free(start.0, end.0 - start.0);
        }
        a
    }

    pub fn free_pages(&self) -> u64 {
        self.free_pages
    }

    /// Pages freed but not yet reusable, waiting for the log to commit.
    pub fn busy_pages(&self) -> u64 {
        self.busy_pages
    }

    /// Pages a change can count on: free now, or once the log commits (an allocation
    /// that finds too few free commits first). What statfs reports free.
    pub fn available_pages(&self) -> u64 {
        self.free_pages + self.busy_pages
    }

    /// Allocates `n` pages, preferring runs at or after `goal`; all or nothing.
    pub fn alloc(&mut self, goal: Pfn, n: u64) -> Option<Vec<(Pfn, u64)>> {
        if n == 0 {
            return Some(Vec::new());
        }
        if n > self.free_pages {
            return None;
        }
        let mut out = Vec::new();
        let mut want = n;
        // The run holding `goal` (if any), then runs after it, then from the start.
        let first = self.free.range(..=goal.0).next_back().filter(|(s, l)| *s + *l > goal.0).map(|(s, _)| *s);
        let candidates: Vec<u64> = first
            .into_iter()
            .chain(self.free.range(goal.0 + 1..).map(|(s, _)| *s))
            .chain(self.free.range(..goal.0).map(|(s, _)| *s))
            .collect();
        for s in candidates {
            if want == 0 {
                break;
            }
            let Some(&len) = self.free.get(&s) else {
                continue;
            };
            let from = if s <= goal.0 && goal.0 < s + len { goal.0 } else { s };
            let take = want.min(s + len - from);
            self.take(Pfn(from), take);
            out.push((Pfn(from), take));
            want -= take;
        }
        debug_assert_eq!(want, 0);
        Some(out)
    }

    /// Marks `[pfn, pfn + pages)` in use; the range must be free. Used by recovery and to
    /// retire bad pages.
    pub fn take(&mut self, pfn: Pfn, pages: u64) -> bool {
        let Some((&s, &l)) = self.free.range(..=pfn.0).next_back() else {
            return false;
        };
        if pfn.0 + pages > s + l {
            return false;
        }
        self.free.remove(&s);
        if pfn.0 > s {
            self.free.insert(s, pfn.0 - s);
        }
        if pfn.0 + pages < s + l {
            self.free.insert(pfn.0 + pages, s + l - pfn.0 - pages);
        }
        self.free_pages -= pages;
        true
    }

    /// The free runs, (first page, pages), in page order.
    pub fn free_runs(&self) -> impl Iterator<Item = (Pfn, u64)> {
        self.free.iter().map(|(s, l)| (Pfn(*s), *l))
    }

    /// Whether every page of the range is free.
    pub fn is_free(&self, pfn: Pfn, pages: u64) -> bool {
        self.free.range(..=pfn.0).next_back().is_some_and(|(s, l)| pfn.0 + pages <= s + l)
    }

    /// Frees a range once the change that freed it is durable.
    pub fn free_later(&mut self, pfn: Pfn, pages: u64) {
        debug_assert!(pfn >= self.start && pfn.0 + pages <= self.end.0);
        self.busy.push((pfn, pages));
        self.busy_pages += pages;
    }

    /// Takes a failed page out of circulation, whether it is free or busy.
    pub fn retire(&mut self, pfn: Pfn) {
        if self.take(pfn, 1) {
            return;
        }
        if let Some(i) = self.busy.iter().position(|&(p, n)| pfn >= p && pfn.0 < p.0 + n) {
            let (p, n) = self.busy.remove(i);
            let before = pfn.0 - p.0;
            if before > 0 {
                self.busy.push((p, before));
            }
            if n - before > 1 {
                self.busy.push((pfn.plus(1), n - before - 1));
            }
            self.busy_pages -= 1;
        }
    }

    /// The log has committed: busy pages become allocatable.
    pub fn commit(&mut self) {
        for (pfn, len) in std::mem::take(&mut self.busy) {
            self.insert_free(pfn.0, len);
        }
        self.busy_pages = 0;
    }

    fn insert_free(&mut self, mut s: u64, mut l: u64) {
        // The run must not overlap a free run already there.
        debug_assert!(self.free.range(..s + l).next_back().is_none_or(|(a, b)| a + b <= s));
        self.free_pages += l;
        if let Some((&ps, &pl)) = self.free.range(..s).next_back()
            && ps + pl == s
        {
            self.free.remove(&ps);
            s = ps;
            l += pl;
        }
        if let Some(&nl) = self.free.get(&(s + l)) {
            self.free.remove(&(s + l));
            l += nl;
        }
        self.free.insert(s, l);
    }

    /// Verifies the invariants; returns what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let mut prev_end = self.start.0;
        let mut total = 0;
        for (&s, &l) in &self.free {
            if l == 0 || s < prev_end || (s == prev_end && s != self.start.0) || s + l > self.end.0 {
                return Err(format!("allocator: bad free run [{s}, +{l}) after {prev_end}"));
            }
            prev_end = s + l;
            total += l;
        }
        if total != self.free_pages {
            return Err(format!("allocator: counted {total} free pages, recorded {}", self.free_pages));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_prefers_goal_and_is_all_or_nothing() {
        let mut a = Allocator::new(Pfn(10), Pfn(30));
        assert_eq!(a.alloc(Pfn(15), 3).unwrap(), vec![(Pfn(15), 3)]);
        assert_eq!(a.free_pages(), 17);
        assert!(a.alloc(Pfn(10), 18).is_none());
        assert_eq!(a.free_pages(), 17, "failed alloc must not consume");
        let got = a.alloc(Pfn(29), 2).unwrap();
        assert_eq!(got, vec![(Pfn(29), 1), (Pfn(10), 1)]);
        a.check().unwrap();
    }

    #[test]
    fn freed_pages_are_reused_only_after_commit() {
        let mut a = Allocator::new(Pfn(0), Pfn(4));
        let got = a.alloc(Pfn(0), 4).unwrap();
        assert_eq!(got, vec![(Pfn(0), 4)]);
        a.free_later(Pfn(1), 2);
        assert!(a.alloc(Pfn(0), 1).is_none(), "busy pages must not be allocatable");
        a.commit();
        assert_eq!(a.alloc(Pfn(0), 2).unwrap(), vec![(Pfn(1), 2)]);
        a.check().unwrap();
    }

    #[test]
    fn retired_pages_leave_free_and_busy_space() {
        let mut a = Allocator::new(Pfn(0), Pfn(8));
        a.retire(Pfn(2));
        assert_eq!(a.free_pages(), 7);
        a.alloc(Pfn(0), 7).unwrap();
        a.free_later(Pfn(4), 3);
        a.retire(Pfn(5));
        a.commit();
        assert_eq!(a.free_pages(), 2);
        assert!(a.is_free(Pfn(4), 1) && !a.is_free(Pfn(5), 1) && a.is_free(Pfn(6), 1));
        a.check().unwrap();
    }

    #[test]
    fn frees_merge_with_neighbours() {
        let mut a = Allocator::new(Pfn(0), Pfn(8));
        a.alloc(Pfn(0), 8).unwrap();
        for p in [1, 3, 2, 0] {
            a.free_later(Pfn(p), 1);
        }
        a.commit();
        a.check().unwrap();
        assert!(a.is_free(Pfn(0), 4));
        assert_eq!(a.alloc(Pfn(0), 4).unwrap(), vec![(Pfn(0), 4)]);
    }
}
