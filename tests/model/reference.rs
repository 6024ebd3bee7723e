//! The reference model: a plain in-memory namespace with file contents, link counts,
//! symlinks, xattrs and open handles, changed by the run exactly as Linux would.

use super::*;

pub(crate) const PAGE: u64 = PAGE_SIZE;

/// Sparse file contents: missing pages read as zeros; bytes at or past `size` are zero.
#[derive(Clone, Debug, Default)]
pub(crate) struct Content {
    pub(crate) size: u64,
    pub(crate) pages: BTreeMap<u64, Rc<Vec<u8>>>,
}

impl Content {
    pub(crate) fn write(&mut self, off: u64, data: &[u8]) {
        let mut pos = 0usize;
        while pos < data.len() {
            let at = off + pos as u64;
            let (idx, po) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - po).min(data.len() - pos);
            let page = self.pages.entry(idx).or_insert_with(|| Rc::new(vec![0; PAGE as usize]));
            Rc::make_mut(page)[po..po + n].copy_from_slice(&data[pos..pos + n]);
            pos += n;
        }
        self.size = self.size.max(off + data.len() as u64);
    }

    /// Zeroes `[off, end)` (bytes past `size` are zero already).
    pub(crate) fn zero(&mut self, off: u64, end: u64) {
        let end = end.min(self.size);
        if off >= end {
            return;
        }
        let idxs: Vec<u64> = self.pages.range(off / PAGE..=(end - 1) / PAGE).map(|(k, _)| *k).collect();
        for idx in idxs {
            let ps = idx * PAGE;
            let (s, e) = ((off.max(ps) - ps) as usize, (end.min(ps + PAGE) - ps) as usize);
            if s == 0 && e == PAGE as usize {
                self.pages.remove(&idx);
            } else if let Some(p) = self.pages.get_mut(&idx) {
                Rc::make_mut(p)[s..e].fill(0);
            }
        }
    }

    pub(crate) fn truncate(&mut self, n: u64) {
        if n < self.size {
            let old = self.size;
            self.zero(n, old);
        }
        self.size = n;
    }

    pub(crate) fn read(&self, off: u64, len: u64) -> Vec<u8> {
        let end = off.saturating_add(len).min(self.size);
        if off >= end {
            return Vec::new();
        }
        let mut out = vec![0; (end - off) as usize];
        for (idx, page) in self.pages.range(off / PAGE..=(end - 1) / PAGE) {
            let ps = idx * PAGE;
            let (s, e) = (off.max(ps), end.min(ps + PAGE));
            out[(s - off) as usize..(e - off) as usize].copy_from_slice(&page[(s - ps) as usize..(e - ps) as usize]);
        }
        out
    }

    /// `[doff, doff + count)` becomes `src`'s `[soff, soff + count)`; the size grows to
    /// cover it. `src` must not be `self` (clone it first).
    pub(crate) fn copy_from(&mut self, src: &Content, soff: u64, doff: u64, count: u64) {
        if count == 0 {
            return;
        }
        self.zero(doff, doff + count);
        let end = soff + count;
        for (idx, page) in src.pages.range(soff / PAGE..=(end - 1) / PAGE) {
            let ps = idx * PAGE;
            let (s, e) = (soff.max(ps), end.min(ps + PAGE));
            self.write(doff + (s - soff), &page[(s - ps) as usize..(e - ps) as usize]);
        }
        self.size = self.size.max(doff + count);
    }

    /// Whether every byte of `[off, end)` is zero.
    pub(crate) fn is_zero(&self, off: u64, end: u64) -> bool {
        let end = end.min(self.size);
        if off >= end {
            return true;
        }
        self.pages.range(off / PAGE..=(end - 1) / PAGE).all(|(idx, page)| {
            let ps = idx * PAGE;
            let (s, e) = (off.max(ps) - ps, end.min(ps + PAGE) - ps);
            page[s as usize..e as usize].iter().all(|&b| b == 0)
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// Shared with the saved crash candidates until written (`Rc::make_mut`).
    File(Rc<Content>),
    Dir {
        entries: BTreeMap<Vec<u8>, Ino>,
        parent: Ino,
    },
    Symlink(Vec<u8>),
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) body: Body,
    pub(crate) nlink: u32,
    pub(crate) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Node {
    pub(crate) fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir { .. } => Kind::Dir,
            Body::Symlink(_) => Kind::Symlink,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub(crate) nodes: BTreeMap<Ino, Node>,
    pub(crate) open: BTreeMap<Ino, u32>,
}

impl Model {
    pub(crate) fn new() -> Model {
        let root =
            Node { body: Body::Dir { entries: BTreeMap::new(), parent: Ino::ROOT }, nlink: 2, xattrs: BTreeMap::new() };
        Model { nodes: BTreeMap::from([(Ino::ROOT, root)]), open: BTreeMap::new() }
    }

    pub(crate) fn entries(&self, dir: Ino) -> &BTreeMap<Vec<u8>, Ino> {
        match &self.nodes[&dir].body {
            Body::Dir { entries, .. } => entries,
            _ => panic!("model: {dir} is not a directory"),
        }
    }

    pub(crate) fn entries_mut(&mut self, dir: Ino) -> &mut BTreeMap<Vec<u8>, Ino> {
        match &mut self.nodes.get_mut(&dir).expect("model dir").body {
            Body::Dir { entries, .. } => entries,
            _ => panic!("model: {dir} is not a directory"),
        }
    }

    pub(crate) fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.nodes[&ino].body, Body::Dir { .. })
    }

    pub(crate) fn parent(&self, dir: Ino) -> Ino {
        match &self.nodes[&dir].body {
            Body::Dir { parent, .. } => *parent,
            _ => panic!("model: {dir} is not a directory"),
        }
    }

    pub(crate) fn set_parent(&mut self, dir: Ino, p: Ino) {
        if let Body::Dir { parent, .. } = &mut self.nodes.get_mut(&dir).expect("model dir").body {
            *parent = p;
        }
    }

    /// Whether `dir` is `ancestor` or below it.
    pub(crate) fn is_within(&self, mut dir: Ino, ancestor: Ino) -> bool {
        loop {
            if dir == ancestor {
                return true;
            }
            if dir == Ino::ROOT {
                return false;
            }
            dir = self.parent(dir);
        }
    }

    pub(crate) fn dir_nlink(&self, dir: Ino) -> u32 {
        2 + self.entries(dir).values().filter(|c| self.is_dir(**c)).count() as u32
    }

    pub(crate) fn content(&self, ino: Ino) -> &Content {
        match &self.nodes[&ino].body {
            Body::File(c) => c,
            _ => panic!("model: {ino} is not a file"),
        }
    }

    pub(crate) fn content_mut(&mut self, ino: Ino) -> &mut Content {
        match &mut self.nodes.get_mut(&ino).expect("model file").body {
            Body::File(c) => Rc::make_mut(c),
            _ => panic!("model: {ino} is not a file"),
        }
    }

    /// One name of `ino` is gone: a directory goes at once, anything else when its last
    /// name is gone and nobody has it open.
    pub(crate) fn drop_name(&mut self, ino: Ino) {
        if self.is_dir(ino) {
            self.nodes.remove(&ino);
            return;
        }
        let n = self.nodes.get_mut(&ino).expect("model node");
        n.nlink -= 1;
        if n.nlink == 0 && !self.open.contains_key(&ino) {
            self.nodes.remove(&ino);
        }
    }

    /// What a new mount sees: no open handles, so no unlinked inodes.
    pub(crate) fn after_remount(&mut self) {
        self.open.clear();
        self.nodes.retain(|_, n| n.nlink > 0);
    }

    pub(crate) fn dirs(&self) -> Vec<Ino> {
        self.nodes.iter().filter(|(_, n)| matches!(n.body, Body::Dir { .. })).map(|(i, _)| *i).collect()
    }

    pub(crate) fn files(&self) -> Vec<Ino> {
        self.nodes.iter().filter(|(_, n)| matches!(n.body, Body::File(_))).map(|(i, _)| *i).collect()
    }

    /// Every (parent, name, child).
    pub(crate) fn all_entries(&self) -> Vec<(Ino, Vec<u8>, Ino)> {
        let mut out = Vec::new();
        for (ino, n) in &self.nodes {
            if let Body::Dir { entries, .. } = &n.body {
                out.extend(entries.iter().map(|(name, c)| (*ino, name.clone(), *c)));
            }
        }
        out
    }

    pub(crate) fn pages(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match &n.body {
                Body::File(c) => c.pages.len() as u64,
                _ => 0,
            })
            .sum()
    }
}
