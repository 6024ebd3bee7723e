//! The structure verifiers, one per structure, in the spirit of XFS's per-structure
//! verifiers: each checks its structure against the ones it derives from and returns
//! the first violation, named by structure. `check` runs them all in dependency
//! order; fsck, mount and the tests call it, and a test can call one alone.

use std::collections::HashMap;

use super::State;
use crate::dax::PageState;
use crate::fs::error::CheckError;
use crate::fs::inode::{Body, FL_SUPPORTED};
use crate::runs::number_runs;
use crate::types::{FileBlock, Ino, Pfn};

type Verdict = Result<(), CheckError>;

impl State {
    /// Every verifier, each structure after the ones it is checked against.
    pub fn check(&self) -> Verdict {
        self.verify_namespace()?;
        self.verify_extents()?;
        self.verify_page_table()?;
        self.verify_rmap()?;
        self.verify_space()?;
        self.verify_poison()
    }

    /// Inodes, directories and names: the root is a directory, each inode carries its
    /// own number and known flags, each entry names an inode, each directory is named
    /// once and knows its parent, link counts match the names.
    pub fn verify_namespace(&self) -> Verdict {
        let bad = |s: String| Err(CheckError::Namespace(s));
        let Some(root) = self.inodes.get(&Ino::ROOT) else { return bad("the root inode is missing".into()) };
        if root.dir().is_none() {
            return bad("the root inode is not a directory".into());
        }
        let mut links: HashMap<Ino, u32> = HashMap::new();
        let mut subdirs: HashMap<Ino, u32> = HashMap::new();
        for (ino, i) in &self.inodes {
            if i.attr.ino != *ino {
                return bad(format!("inode {ino} records number {}", i.attr.ino));
            }
            if i.attr.flags & !FL_SUPPORTED != 0 {
                return bad(format!("inode {ino} has attribute flags daxlink does not know: {:#x}", i.attr.flags));
            }
            let Some(d) = i.dir() else { continue };
            d.check().or_else(|e| bad(format!("directory {ino}: {e}")))?;
            for (_, name, child) in d.after(0) {
                let Some(c) = self.inodes.get(&child) else {
                    return bad(format!(
                        "directory {ino} entry {:?} names missing inode {child}",
                        String::from_utf8_lossy(name)
                    ));
                };
                *links.entry(child).or_default() += 1;
                if let Some(cd) = c.dir() {
                    *subdirs.entry(*ino).or_default() += 1;
                    if cd.parent != *ino {
                        return bad(format!("directory {child} is in {ino} but its parent is {}", cd.parent));
                    }
                }
            }
        }
        for (ino, i) in &self.inodes {
            let l = links.get(ino).copied().unwrap_or(0);
            if let Some(d) = i.dir() {
                if i.attr.nlink == 0 && l == 0 && d.is_empty() {
                    continue; // removed while open: an orphan
                }
                let want = 2 + subdirs.get(ino).copied().unwrap_or(0);
                if i.attr.nlink != want {
                    return bad(format!("directory {ino} has nlink {}, expected {want}", i.attr.nlink));
                }
                if *ino != Ino::ROOT && l != 1 {
                    return bad(format!("directory {ino} is linked {l} times"));
                }
                if *ino != Ino::ROOT && !self.inodes.contains_key(&d.parent) {
                    return bad(format!("directory {ino} has a missing parent"));
                }
            } else if i.attr.nlink != l {
                return bad(format!("inode {ino} has nlink {}, but {l} names", i.attr.nlink));
            }
        }
        Ok(())
    }

    /// Each file's extent map on its own: sorted, disjoint, within bounds, in the data
    /// region.
    pub fn verify_extents(&self) -> Verdict {
        for (ino, i) in &self.inodes {
            let Body::File(m) = &i.body else { continue };
            m.check().map_err(|e| CheckError::Extents(format!("inode {ino}: {e}")))?;
            if m.iter().any(|x| !self.geo.is_data_range(x.pfn, x.pages)) {
                return Err(CheckError::Extents(format!("inode {ino} maps pages outside the data region")));
            }
        }
        Ok(())
    }

    /// The page table against the extent maps: every extent page is owned by exactly
    /// that block or shared, and no page is owned that no extent maps.
    pub fn verify_page_table(&self) -> Verdict {
        let mut owned_refs = 0u64;
        for (ino, x) in self.all_extents() {
            for k in 0..x.pages {
                match self.pages.state(x.pfn.plus(k)) {
                    PageState::Owned { mapping, index } if mapping == ino && index == x.fblock.plus(k) => {
                        owned_refs += 1
                    }
                    PageState::Shared { .. } => {}
                    other => {
                        return Err(CheckError::PageTable(format!(
                            "inode {ino} block {} maps page {}, which the page table says is {other:?}",
                            x.fblock.plus(k),
                            x.pfn.plus(k)
                        )));
                    }
                }
            }
        }
        let (owned, _) = self.pages.counts();
        if owned != owned_refs {
            return Err(CheckError::PageTable(format!(
                "{owned} pages are owned, but the extent maps use {owned_refs} of them"
            )));
        }
        Ok(())
    }

    /// The reverse map: it holds the shared parts of the extents and nothing more, and
    /// a shared page has as many owners there as its share count says.
    pub fn verify_rmap(&self) -> Verdict {
        let mut shared_parts = Vec::new();
        for (ino, x) in self.all_extents() {
            let shared = (0..x.pages).filter(|k| self.pages.is_shared(x.pfn.plus(*k)));
            shared_parts.extend(number_runs(shared).map(|(k, n)| (ino, x.pfn.plus(k), n, x.fblock.plus(k))));
        }
        self.rmap.check_extents(shared_parts.into_iter()).map_err(CheckError::Rmap)?;
        let mut segs = self.rmap.iter();
        let mut seg = segs.next();
        for p in self.geo.data_start.0..self.geo.pages_total {
            let mut owners: &[(Ino, FileBlock)] = &[];
            while let Some((s, pages, o)) = seg {
                if s.0 + pages <= p {
                    seg = segs.next();
                    continue;
                }
                if s.0 <= p {
                    owners = o;
                }
                break;
            }
            let state = self.pages.state(Pfn(p));
            let ok = match state {
                PageState::Free | PageState::Owned { .. } => owners.is_empty(),
                PageState::Shared { share } => share == owners.len() as u64,
            };
            if !ok {
                return Err(CheckError::Rmap(format!(
                    "page {}: page table says {state:?}, the reverse map has {} owners",
                    Pfn(p),
                    owners.len()
                )));
            }
        }
        Ok(())
    }

    /// Free space: the allocator is well formed, no mapped or bad page is free in it,
    /// and used + free + busy pages make the data region.
    pub fn verify_space(&self) -> Verdict {
        self.alloc.check().map_err(CheckError::Space)?;
        let mut used = 0;
        let mut free_runs = self.alloc.free_runs();
        let mut free = free_runs.next();
        for p in self.geo.data_start.0..self.geo.pages_total {
            let pfn = Pfn(p);
            while free.is_some_and(|(s, n)| s.0 + n <= p) {
                free = free_runs.next();
            }
            if self.pages.state(pfn) != PageState::Free || self.pages.is_bad(pfn) {
                used += 1;
                if free.is_some_and(|(s, _)| s.0 <= p) {
                    return Err(CheckError::Space(format!("page {pfn} is mapped or bad but free in the allocator")));
                }
            }
        }
        let accounted = used + self.alloc.free_pages() + self.alloc.busy_pages();
        if accounted != self.geo.data_pages() {
            return Err(CheckError::Space(format!(
                "space: {used} used + {} free + {} busy != {} data pages",
                self.alloc.free_pages(),
                self.alloc.busy_pages(),
                self.geo.data_pages()
            )));
        }
        Ok(())
    }

    /// Poison is recorded only for mapped blocks.
    pub fn verify_poison(&self) -> Verdict {
        for &(ino, fblock) in &self.poison {
            if self.inodes.get(&ino).and_then(|i| i.extents()).and_then(|m| m.lookup(fblock)).is_none() {
                return Err(CheckError::Poison(format!("poison recorded for unmapped block {fblock} of inode {ino}")));
            }
        }
        Ok(())
    }

    /// Every extent of every file, with its owner.
    fn all_extents(&self) -> impl Iterator<Item = (Ino, crate::fs::extent::Extent)> + '_ {
        self.inodes.iter().flat_map(|(ino, i)| i.extents().into_iter().flat_map(|m| m.iter()).map(move |x| (*ino, x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::Geometry;
    use crate::fs::inode::{Attr, Timespec};
    use crate::fs::record::Record;
    use crate::fs::state::Mode;

    /// A root and one file mapping 4 pages, consistent.
    fn state() -> (State, Ino, Pfn) {
        let geo = Geometry::for_size(16 << 20, [0; 16]).unwrap();
        let mut st = State::new(geo);
        let t = Timespec::default();
        let root = Attr::new(Ino::ROOT, libc::S_IFDIR | 0o755, 0, 0, t);
        let f = Attr { nlink: 1, ..Attr::new(Ino(2), libc::S_IFREG | 0o644, 0, 0, t) };
        let pfn = geo.data_start.plus(10);
        for r in [
            Record::SetInode(Attr { nlink: 2, ..root }),
            Record::SetInode(f),
            Record::Link { dir: Ino::ROOT, name: b"f".to_vec(), ino: Ino(2) },
            Record::Map { ino: Ino(2), fblock: FileBlock(0), pfn, pages: 4, cloned: false },
        ] {
            st.apply(&r, Mode::Replay).unwrap();
        }
        st.derive_free_space();
        st.check().unwrap();
        (st, Ino(2), pfn)
    }

    #[test]
    fn a_wrong_link_count_fails_the_namespace_verifier_only() {
        let (mut st, f, _) = state();
        st.inodes.get_mut(&f).unwrap().attr.nlink = 2;
        assert!(matches!(st.verify_namespace(), Err(CheckError::Namespace(_))));
        assert_eq!((st.verify_extents(), st.verify_page_table(), st.verify_rmap()), (Ok(()), Ok(()), Ok(())));
    }

    #[test]
    fn a_page_the_table_forgot_fails_the_page_table_verifier() {
        let (mut st, f, pfn) = state();
        st.pages.disassociate(pfn.plus(1), f);
        assert!(matches!(st.verify_page_table(), Err(CheckError::PageTable(_))));
        assert_eq!(st.verify_namespace(), Ok(()));
    }

    #[test]
    fn a_mapped_page_free_in_the_allocator_fails_the_space_verifier() {
        let (mut st, _, _) = state();
        st.alloc = crate::arena::Allocator::new(st.geo.data_start, Pfn(st.geo.pages_total));
        assert!(matches!(st.verify_space(), Err(CheckError::Space(_))));
        assert_eq!(st.verify_page_table(), Ok(()));
    }

    #[test]
    fn poison_of_an_unmapped_block_fails_the_poison_verifier() {
        let (mut st, f, _) = state();
        st.poison.insert((f, FileBlock(99)));
        assert!(matches!(st.verify_poison(), Err(CheckError::Poison(_))));
        assert_eq!(st.verify_space(), Ok(()));
    }

    #[test]
    fn a_shared_page_without_its_owners_fails_the_rmap_verifier() {
        let (mut st, _, pfn) = state();
        st.pages.associate(pfn, Ino(3), FileBlock(0), true);
        assert!(st.pages.is_shared(pfn));
        assert!(matches!(st.verify_rmap(), Err(CheckError::Rmap(_))));
    }
}
