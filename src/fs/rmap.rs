//! The reverse map: shared arena page -> every `(inode, file block)` that maps it, the
//! analogue of XFS's rmap btree that `xfs_dax_notify_failure` walks. Only shared pages
//! are in it: a page with one owner names it in the page table, as fs/dax.c keeps a
//! mapping and index for it, so the holder is asked about shared pages alone.
//!
//! Kept as disjoint page segments, each with the owners of all its pages (an owner is
//! stored with the file block of the segment's first page). Segments split where an
//! owner's extent starts or ends and merge again when neighbours carry the same
//! owners, so a lookup is one `BTreeMap` search plus the owners found: O(log n + k).

use std::collections::BTreeMap;

use crate::dax::{HolderOps, Owner};
use crate::types::{ArenaOffset, FileBlock, Ino, PAGE_SIZE, Pfn};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seg {
    len: u64,
    /// Sorted; file block of the segment's first page.
    owners: Vec<(Ino, FileBlock)>,
}

#[derive(Clone, Debug, Default)]
pub struct Rmap {
    segs: BTreeMap<u64, Seg>,
}

impl Rmap {
    /// Ensures a segment boundary at page `p`.
    fn split_at(&mut self, p: u64) {
        let Some((&s, seg)) = self.segs.range_mut(..p).next_back() else { return };
        if s + seg.len <= p {
            return;
        }
        let left = p - s;
        let right = Seg { len: seg.len - left, owners: seg.owners.iter().map(|&(i, f)| (i, f.plus(left))).collect() };
        seg.len = left;
        self.segs.insert(p, right);
    }

    /// Merges the segments meeting at `p` if they continue each other's owners.
    fn merge_at(&mut self, p: u64) {
        let Some((&s, left)) = self.segs.range(..p).next_back() else { return };
        let Some(right) = self.segs.get(&p) else { return };
        let continues = s + left.len == p
            && left.owners.len() == right.owners.len()
            && left.owners.iter().zip(&right.owners).all(|(&(li, lf), &(ri, rf))| li == ri && lf.plus(left.len) == rf);
        if continues {
            let extra = right.len;
            self.segs.remove(&p);
            if let Some(l) = self.segs.get_mut(&s) {
                l.len += extra;
            }
        }
    }

    /// Records that `ino` maps `pages` pages from `pfn` at file block `fblock`.
    pub fn add(&mut self, pfn: Pfn, pages: u64, ino: Ino, fblock: FileBlock) {
        let (start, end) = (pfn.0, pfn.0 + pages);
        // Most pages have one owner: nothing to split or share, at most to merge.
        if self.segs.range(..end).next_back().is_none_or(|(&s, seg)| s + seg.len <= start) {
            self.segs.insert(start, Seg { len: pages, owners: vec![(ino, fblock)] });
            self.merge_at(end);
            self.merge_at(start);
            return;
        }
        self.split_at(start);
        self.split_at(end);
        let mut at = start;
        let existing: Vec<u64> = self.segs.range(start..end).map(|(s, _)| *s).collect();
        let mut gaps = Vec::new();
        for s in existing {
            if at < s {
                gaps.push((at, s - at));
            }
            let seg = self.segs.get_mut(&s).expect("listed above");
            let owner = (ino, fblock.plus(s - start));
            let pos = seg.owners.binary_search(&owner).unwrap_or_else(|e| e);
            seg.owners.insert(pos, owner);
            at = s + seg.len;
        }
        if at < end {
            gaps.push((at, end - at));
        }
        for (s, l) in gaps {
            self.segs.insert(s, Seg { len: l, owners: vec![(ino, fblock.plus(s - start))] });
        }
        let starts: Vec<u64> = self.segs.range(start..=end).map(|(s, _)| *s).collect();
        for s in starts.into_iter().rev() {
            self.merge_at(s);
        }
    }

    /// Records that `ino` no longer maps those pages.
    pub fn remove(&mut self, pfn: Pfn, pages: u64, ino: Ino, fblock: FileBlock) {
        let (start, end) = (pfn.0, pfn.0 + pages);
        self.split_at(start);
        self.split_at(end);
        let segs: Vec<u64> = self.segs.range(start..end).map(|(s, _)| *s).collect();
        for s in segs {
            let seg = self.segs.get_mut(&s).expect("listed above");
            let owner = (ino, fblock.plus(s - start));
            if let Ok(pos) = seg.owners.binary_search(&owner) {
                seg.owners.remove(pos);
            }
            if seg.owners.is_empty() {
                self.segs.remove(&s);
            }
        }
        self.merge_at(end);
        self.merge_at(start);
    }

    /// Every owner of every page in `[pfn, pfn + pages)`: one descent to the last
    /// segment starting before the end, then backwards while segments still reach the
    /// range.
    pub fn owners(&self, pfn: Pfn, pages: u64) -> Vec<Owner> {
        let end = pfn.0 + pages;
        let mut out = Vec::new();
        for (&s, seg) in self.segs.range(..end).rev() {
            if s + seg.len <= pfn.0 {
                break;
            }
            let lo = s.max(pfn.0);
            let hi = (s + seg.len).min(end);
            for p in lo..hi {
                for &(ino, f) in &seg.owners {
                    out.push(Owner { pfn: Pfn(p), ino, index: f.plus(p - s) });
                }
            }
        }
        out.sort();
        out
    }

    pub fn segments(&self) -> usize {
        self.segs.len()
    }

    /// Segments in page order: (first page, pages, owners with the file block of the
    /// first page).
    pub fn iter(&self) -> impl Iterator<Item = (Pfn, u64, &[(Ino, FileBlock)])> {
        self.segs.iter().map(|(s, g)| (Pfn(*s), g.len, g.owners.as_slice()))
    }

    /// Whether this map says exactly what the extent maps say, given every extent
    /// once as (inode, first page, pages, first block): it must hold each, and no
    /// more owner-pages than they add up to. No second map is built (at a million
    /// extents it would cost as much memory as this one).
    pub fn check_extents(&self, extents: impl Iterator<Item = (Ino, Pfn, u64, FileBlock)>) -> Result<(), String> {
        let mut pages = 0;
        for (ino, pfn, count, fblock) in extents {
            pages += count;
            let end = pfn.0 + count;
            let from = match self.segs.range(..=pfn.0).next_back() {
                Some((&s, seg)) if s + seg.len > pfn.0 => s,
                _ => pfn.0,
            };
            let mut at = pfn.0;
            for (&s, seg) in self.segs.range(from..end) {
                // The owner as the segment records it: its block at the segment's start.
                let owner = (fblock.0 + s).checked_sub(pfn.0).map(|f| (ino, FileBlock(f)));
                if s > at || owner.is_none_or(|o| seg.owners.binary_search(&o).is_err()) {
                    break;
                }
                at = s + seg.len;
            }
            if at < end {
                return Err(format!("reverse map lacks inode {ino} block {} at page {at}", fblock.0 + (at - pfn.0)));
            }
        }
        let held: u64 = self.segs.values().map(|g| g.len * g.owners.len() as u64).sum();
        if held != pages {
            return Err(format!("reverse map holds {held} owner-pages, the extent maps {pages}"));
        }
        Ok(())
    }
}

impl HolderOps for Rmap {
    fn notify_failure(&self, offset: ArenaOffset, bytes: u64, _flags: u32) -> Vec<Owner> {
        let first = offset.0 / PAGE_SIZE;
        let last = (offset.0 + bytes).div_ceil(PAGE_SIZE);
        self.owners(Pfn(first), last - first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(p: u64, i: u64, f: u64) -> Owner {
        Owner { pfn: Pfn(p), ino: Ino(i), index: FileBlock(f) }
    }

    #[test]
    fn check_extents_wants_each_extent_and_nothing_more() {
        let mut r = Rmap::default();
        r.add(Pfn(100), 10, Ino(1), FileBlock(0));
        r.add(Pfn(104), 2, Ino(2), FileBlock(50));
        // Ino 1 as two extents that the map holds as one merged owner run.
        let ext = [(Ino(1), Pfn(100), 5, FileBlock(0)), (Ino(1), Pfn(105), 5, FileBlock(5))];
        let both = || ext.into_iter().chain([(Ino(2), Pfn(104), 2, FileBlock(50))]);
        r.check_extents(both()).unwrap();
        assert!(r.check_extents(ext.into_iter()).is_err(), "an owner no extent has");
        let wrong_block = ext.into_iter().chain([(Ino(2), Pfn(104), 2, FileBlock(51))]);
        assert!(r.check_extents(wrong_block).is_err(), "an extent at another block");
        let more = both().chain([(Ino(3), Pfn(200), 1, FileBlock(0))]);
        assert!(r.check_extents(more).is_err(), "an extent the map lacks");
    }

    #[test]
    fn overlapping_clones_split_and_answer_per_page() {
        let mut r = Rmap::default();
        r.add(Pfn(100), 10, Ino(1), FileBlock(0));
        r.add(Pfn(104), 2, Ino(2), FileBlock(50));
        assert_eq!(r.owners(Pfn(105), 1), vec![owner(105, 1, 5), owner(105, 2, 51)]);
        assert_eq!(r.owners(Pfn(103), 1), vec![owner(103, 1, 3)]);
        assert_eq!(r.segments(), 3);
        r.remove(Pfn(104), 2, Ino(2), FileBlock(50));
        assert_eq!(r.segments(), 1, "segments must merge back");
        assert_eq!(r.owners(Pfn(105), 1), vec![owner(105, 1, 5)]);
    }

    #[test]
    fn adjacent_adds_of_one_file_merge() {
        let mut r = Rmap::default();
        for i in 0..8 {
            r.add(Pfn(200 + i), 1, Ino(3), FileBlock(i));
        }
        assert_eq!(r.segments(), 1);
        r.remove(Pfn(200), 8, Ino(3), FileBlock(0));
        assert_eq!(r.segments(), 0);
    }

    #[test]
    fn one_file_mapping_a_page_twice_is_two_owners() {
        let mut r = Rmap::default();
        r.add(Pfn(10), 1, Ino(4), FileBlock(0));
        r.add(Pfn(10), 1, Ino(4), FileBlock(7));
        assert_eq!(r.owners(Pfn(10), 1), vec![owner(10, 4, 0), owner(10, 4, 7)]);
        r.remove(Pfn(10), 1, Ino(4), FileBlock(0));
        assert_eq!(r.owners(Pfn(10), 1), vec![owner(10, 4, 7)]);
    }

    #[test]
    fn holder_answers_by_byte_range() {
        let mut r = Rmap::default();
        r.add(Pfn(5), 3, Ino(9), FileBlock(0));
        let got = r.notify_failure(Pfn(6).offset(), PAGE_SIZE, 0);
        assert_eq!(got, vec![owner(6, 9, 1)]);
    }
}
