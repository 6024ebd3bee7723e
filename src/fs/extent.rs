//! A file's extent map: file block ranges -> arena page ranges.
//!
//! Invariant: extents are disjoint, non-empty, and two extents that touch in the file
//! and in the arena are merged into one.

use std::collections::BTreeMap;

use crate::types::{FileBlock, Pfn};

/// One mapped range: `pages` pages of the file starting at `fblock` live at `pfn..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub fblock: FileBlock,
    pub pfn: Pfn,
    pub pages: u64,
}

impl Extent {
    pub fn end(&self) -> FileBlock {
        self.fblock.plus(self.pages)
    }
    /// The part of this extent inside `[from, to)`.
    fn clip(&self, from: FileBlock, to: FileBlock) -> Option<Extent> {
        let s = self.fblock.max(from);
        let e = self.end().min(to);
        (s < e).then(|| Extent { fblock: s, pfn: self.pfn.plus(s.0 - self.fblock.0), pages: e.0 - s.0 })
    }
}

#[derive(Clone, Debug, Default)]
pub struct ExtentMap {
    /// fblock -> (pfn, len)
    map: BTreeMap<u64, (Pfn, u64)>,
    pages: u64,
}

impl ExtentMap {
    pub fn mapped_pages(&self) -> u64 {
        self.pages
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Extent> + '_ {
        self.map.iter().map(|(f, (p, l))| Extent { fblock: FileBlock(*f), pfn: *p, pages: *l })
    }

    /// The mapped pieces of `[from, from + blocks)`, in file order.
    pub fn range(&self, from: FileBlock, blocks: u64) -> Vec<Extent> {
        let to = FileBlock(from.0.saturating_add(blocks));
        self.iter_from(from).take_while(|x| x.fblock < to).filter_map(|x| x.clip(from, to)).collect()
    }

    /// The mapped pieces from `from` on, in file order, lazily: one descent, then a
    /// walk as far as the caller goes.
    pub fn iter_from(&self, from: FileBlock) -> impl Iterator<Item = Extent> + '_ {
        let start = self.map.range(..=from.0).next_back().map(|(f, _)| *f).unwrap_or(from.0);
        self.map.range(start..).filter_map(move |(f, (p, l))| {
            Extent { fblock: FileBlock(*f), pfn: *p, pages: *l }.clip(from, FileBlock(u64::MAX))
        })
    }

    /// The page backing `fblock`, if mapped.
    pub fn lookup(&self, fblock: FileBlock) -> Option<Pfn> {
        let (f, (p, l)) = self.map.range(..=fblock.0).next_back()?;
        (fblock.0 < f + l).then(|| p.plus(fblock.0 - f))
    }

    /// First mapped block at or after `fblock`, if any.
    pub fn next_mapped(&self, fblock: FileBlock) -> Option<FileBlock> {
        if self.lookup(fblock).is_some() {
            return Some(fblock);
        }
        self.map.range(fblock.0..).next().map(|(f, _)| FileBlock(*f))
    }

    /// First unmapped block at or after `fblock`.
    pub fn next_hole(&self, fblock: FileBlock) -> FileBlock {
        let mut at = fblock;
        while let Some((f, (_, l))) = self.map.range(..=at.0).next_back() {
            if at.0 >= f + l {
                break;
            }
            at = FileBlock(f + l);
        }
        at
    }

    /// Whether mapping `pfn` at `fblock` would just lengthen an existing extent.
    pub fn continues(&self, fblock: FileBlock, pfn: Pfn) -> bool {
        self.map.range(..fblock.0).next_back().is_some_and(|(f, (p, l))| f + l == fblock.0 && p.0 + l == pfn.0)
    }

    /// Maps a range that must be unmapped; merges with touching neighbours.
    pub fn insert(&mut self, e: Extent) {
        debug_assert!(e.pages > 0);
        debug_assert!(self.range(e.fblock, e.pages).is_empty(), "insert over mapped range");
        let mut e = e;
        self.pages += e.pages;
        if let Some((&f, &(p, l))) = self.map.range(..e.fblock.0).next_back()
            && f + l == e.fblock.0
            && p.0 + l == e.pfn.0
        {
            self.map.remove(&f);
            e = Extent { fblock: FileBlock(f), pfn: p, pages: l + e.pages };
        }
        if let Some(&(p, l)) = self.map.get(&e.end().0)
            && e.pfn.0 + e.pages == p.0
        {
            self.map.remove(&e.end().0);
            e.pages += l;
        }
        self.map.insert(e.fblock.0, (e.pfn, e.pages));
    }

    /// Unmaps `[from, from + blocks)` and returns the pieces that were mapped there.
    pub fn remove(&mut self, from: FileBlock, blocks: u64) -> Vec<Extent> {
        let to = FileBlock(from.0.saturating_add(blocks));
        let pieces = self.range(from, blocks);
        for piece in &pieces {
            // The whole extent holding this piece.
            let (&f, &(p, l)) = self.map.range(..=piece.fblock.0).next_back().expect("piece comes from an extent");
            self.map.remove(&f);
            if f < from.0 {
                self.map.insert(f, (p, from.0 - f));
            }
            if f + l > to.0 {
                self.map.insert(to.0, (p.plus(to.0 - f), f + l - to.0));
            }
            self.pages -= piece.pages;
        }
        pieces
    }

    pub fn check(&self) -> Result<(), String> {
        let mut prev: Option<Extent> = None;
        let mut pages = 0;
        for e in self.iter() {
            if e.pages == 0 {
                return Err(format!("empty extent at block {}", e.fblock));
            }
            if let Some(p) = prev {
                if p.end() > e.fblock {
                    return Err(format!("extents overlap at block {}", e.fblock));
                }
                if p.end() == e.fblock && p.pfn.0 + p.pages == e.pfn.0 {
                    return Err(format!("touching extents not merged at block {}", e.fblock));
                }
            }
            pages += e.pages;
            prev = Some(e);
        }
        if pages != self.pages {
            return Err(format!("extent map counts {} pages, holds {pages}", self.pages));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(f: u64, p: u64, l: u64) -> Extent {
        Extent { fblock: FileBlock(f), pfn: Pfn(p), pages: l }
    }

    #[test]
    fn contiguous_inserts_merge() {
        let mut m = ExtentMap::default();
        m.insert(ext(0, 100, 2));
        m.insert(ext(4, 104, 2));
        m.insert(ext(2, 102, 2));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![ext(0, 100, 6)]);
        m.check().unwrap();
    }

    #[test]
    fn remove_splits_and_reports_pieces() {
        let mut m = ExtentMap::default();
        m.insert(ext(0, 100, 10));
        let gone = m.remove(FileBlock(3), 4);
        assert_eq!(gone, vec![ext(3, 103, 4)]);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![ext(0, 100, 3), ext(7, 107, 3)]);
        assert_eq!(m.mapped_pages(), 6);
        m.check().unwrap();
    }

    #[test]
    fn holes_and_data_are_found() {
        let mut m = ExtentMap::default();
        m.insert(ext(2, 50, 2));
        m.insert(ext(4, 80, 1));
        assert_eq!(m.next_mapped(FileBlock(0)), Some(FileBlock(2)));
        assert_eq!(m.next_hole(FileBlock(2)), FileBlock(5));
        assert_eq!(m.next_hole(FileBlock(0)), FileBlock(0));
        assert_eq!(m.next_mapped(FileBlock(5)), None);
        assert_eq!(m.lookup(FileBlock(4)), Some(Pfn(80)));
        assert_eq!(m.lookup(FileBlock(1)), None);
    }

    #[test]
    fn range_clips_to_the_query() {
        let mut m = ExtentMap::default();
        m.insert(ext(0, 10, 4));
        m.insert(ext(8, 40, 4));
        assert_eq!(m.range(FileBlock(2), 8), vec![ext(2, 12, 2), ext(8, 40, 2)]);
    }
}
