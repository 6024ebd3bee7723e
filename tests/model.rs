//! Model-based test of the fs core: random operation sequences (create, mkdir, symlink,
//! write, truncate, fallocate in every mode, unlink incl. while open, rmdir, rename incl.
//! NOREPLACE/EXCHANGE, link, xattrs, clone, copy_range, dedupe, unshare, sync, remount,
//! crash) applied both to daxlink and to a plain in-memory reference model, compared op
//! by op (result and errno, in the order Linux checks) and in full (namespace, link
//! counts, sizes, contents, symlinks, xattrs) every few ops, with `fs.check()` between.
//! The pool is small, so ENOSPC happens; a request that fails with it must change
//! nothing (the model stays as it was).
//!
//! Durability: `sync` / unmount mark a durable point. A clean remount and a "crash"
//! right after a sync must give exactly the model; a crash at any other instant must
//! give the model as it was at some op since the last durable point.
//!
//! Seeds: five fixed ones, plus one from the clock (printed). `DAXLINK_MODEL_SEED=N`
//! forces the seed of the clock test, `DAXLINK_MODEL_OPS=N` sets the ops per seed,
//! `DAXLINK_MODEL_LOG=N` shows the last N ops of a failure.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use daxlink::arena::MemMedia;
use daxlink::fs::{
    Dedupe, Error, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, Fs, Kind, Options, RENAME_EXCHANGE,
    RENAME_NOREPLACE, SetAttr, XATTR_CREATE, XATTR_REPLACE,
};
use daxlink::types::{Ino, PAGE_SIZE};

use common::ROOT;

/// Small enough that the data region (12 MiB) fills up now and then.
const POOL_SIZE: u64 = 24 << 20;
/// `s_maxbytes`: 8 TiB.
const MAX_FILE: u64 = 8 << 40;
const DEFAULT_OPS: usize = 2000;
/// Ops between full comparisons and between `fs.check()` calls.
const COMPARE_EVERY: usize = 100;
const CHECK_EVERY: usize = 50;
/// Most model states kept for crash matching; a sync is forced beyond it.
const MAX_CANDIDATES: usize = 24;

// ---------------------------------------------------------------------------------
// Deterministic PRNG (splitmix64).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x243f_6a88_85a3_08d3)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)`; `n > 0`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        if v.is_empty() { None } else { Some(v[self.below(v.len() as u64) as usize].clone()) }
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        // A run of one random word repeated, so the content is cheap but position-unique
        // enough: each 8-byte word is xored with its index.
        let base = self.next();
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(&(base ^ i.wrapping_mul(0x0101_0101_0101_0101)).to_le_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }
}

// ---------------------------------------------------------------------------------
// The reference model.

const PAGE: u64 = PAGE_SIZE;

/// Sparse file contents: missing pages read as zeros; bytes at or past `size` are zero.
#[derive(Clone, Debug, Default)]
struct Content {
    size: u64,
    pages: BTreeMap<u64, Rc<Vec<u8>>>,
}

impl Content {
    fn write(&mut self, off: u64, data: &[u8]) {
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
    fn zero(&mut self, off: u64, end: u64) {
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

    fn truncate(&mut self, n: u64) {
        if n < self.size {
            let old = self.size;
            self.zero(n, old);
        }
        self.size = n;
    }

    fn read(&self, off: u64, len: u64) -> Vec<u8> {
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
    fn copy_from(&mut self, src: &Content, soff: u64, doff: u64, count: u64) {
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
    fn is_zero(&self, off: u64, end: u64) -> bool {
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
enum Body {
    /// Shared with the saved crash candidates until written (`Rc::make_mut`).
    File(Rc<Content>),
    Dir {
        entries: BTreeMap<Vec<u8>, Ino>,
        parent: Ino,
    },
    Symlink(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Node {
    body: Body,
    nlink: u32,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Node {
    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir { .. } => Kind::Dir,
            Body::Symlink(_) => Kind::Symlink,
        }
    }
}

#[derive(Clone, Debug)]
struct Model {
    nodes: BTreeMap<Ino, Node>,
    open: BTreeMap<Ino, u32>,
}

impl Model {
    fn new() -> Model {
        let root =
            Node { body: Body::Dir { entries: BTreeMap::new(), parent: Ino::ROOT }, nlink: 2, xattrs: BTreeMap::new() };
        Model { nodes: BTreeMap::from([(Ino::ROOT, root)]), open: BTreeMap::new() }
    }

    fn entries(&self, dir: Ino) -> &BTreeMap<Vec<u8>, Ino> {
        match &self.nodes[&dir].body {
            Body::Dir { entries, .. } => entries,
            _ => panic!("model: {dir} is not a directory"),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> &mut BTreeMap<Vec<u8>, Ino> {
        match &mut self.nodes.get_mut(&dir).expect("model dir").body {
            Body::Dir { entries, .. } => entries,
            _ => panic!("model: {dir} is not a directory"),
        }
    }

    fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.nodes[&ino].body, Body::Dir { .. })
    }

    fn parent(&self, dir: Ino) -> Ino {
        match &self.nodes[&dir].body {
            Body::Dir { parent, .. } => *parent,
            _ => panic!("model: {dir} is not a directory"),
        }
    }

    fn set_parent(&mut self, dir: Ino, p: Ino) {
        if let Body::Dir { parent, .. } = &mut self.nodes.get_mut(&dir).expect("model dir").body {
            *parent = p;
        }
    }

    /// Whether `dir` is `ancestor` or below it.
    fn is_within(&self, mut dir: Ino, ancestor: Ino) -> bool {
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

    fn dir_nlink(&self, dir: Ino) -> u32 {
        2 + self.entries(dir).values().filter(|c| self.is_dir(**c)).count() as u32
    }

    fn content(&self, ino: Ino) -> &Content {
        match &self.nodes[&ino].body {
            Body::File(c) => c,
            _ => panic!("model: {ino} is not a file"),
        }
    }

    fn content_mut(&mut self, ino: Ino) -> &mut Content {
        match &mut self.nodes.get_mut(&ino).expect("model file").body {
            Body::File(c) => Rc::make_mut(c),
            _ => panic!("model: {ino} is not a file"),
        }
    }

    /// One name of `ino` is gone: a directory goes at once, anything else when its last
    /// name is gone and nobody has it open.
    fn drop_name(&mut self, ino: Ino) {
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
    fn after_remount(&mut self) {
        self.open.clear();
        self.nodes.retain(|_, n| n.nlink > 0);
    }

    fn dirs(&self) -> Vec<Ino> {
        self.nodes.iter().filter(|(_, n)| matches!(n.body, Body::Dir { .. })).map(|(i, _)| *i).collect()
    }

    fn files(&self) -> Vec<Ino> {
        self.nodes.iter().filter(|(_, n)| matches!(n.body, Body::File(_))).map(|(i, _)| *i).collect()
    }

    /// Every (parent, name, child).
    fn all_entries(&self) -> Vec<(Ino, Vec<u8>, Ino)> {
        let mut out = Vec::new();
        for (ino, n) in &self.nodes {
            if let Body::Dir { entries, .. } = &n.body {
                out.extend(entries.iter().map(|(name, c)| (*ino, name.clone(), *c)));
            }
        }
        out
    }

    fn pages(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match &n.body {
                Body::File(c) => c.pages.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

// ---------------------------------------------------------------------------------
// Comparing daxlink with the model.

fn errno_name(e: i32) -> String {
    let names = [
        (libc::ENOENT, "ENOENT"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EFBIG, "EFBIG"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENODATA, "ENODATA"),
        (libc::EPERM, "EPERM"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::ENXIO, "ENXIO"),
        (libc::EIO, "EIO"),
    ];
    names.iter().find(|(n, _)| *n == e).map_or(format!("errno {e}"), |(_, s)| s.to_string())
}

fn show<T: std::fmt::Debug>(r: &Result<T, Error>) -> String {
    match r {
        Ok(v) => {
            let v = format!("{v:?}");
            if v.len() > 40 { "Ok(..)".into() } else { format!("Ok({v})") }
        }
        Err(e) => format!("Err({} {e})", errno_name(e.errno())),
    }
}

fn name(n: &[u8]) -> String {
    String::from_utf8_lossy(n).into_owned()
}

/// Compares one file's contents and size.
fn compare_file(fs: &Fs, ino: Ino, c: &Content) -> Result<(), String> {
    let a = fs.getattr(ino).map_err(|e| format!("getattr({ino}): {e}"))?;
    if a.size != c.size {
        return Err(format!("file {ino}: size {} , model {}", a.size, c.size));
    }
    let npages = c.size.div_ceil(PAGE);
    let mut idxs: BTreeSet<u64> = c.pages.keys().copied().filter(|i| *i < npages).collect();
    for x in fs.extents(ino).map_err(|e| format!("extents({ino}): {e}"))? {
        idxs.extend((x.fblock.0..x.fblock.0 + x.len).take_while(|b| *b < npages));
    }
    // Read runs of interesting pages; everything else is a hole in both.
    let idxs: Vec<u64> = idxs.into_iter().collect();
    let mut i = 0;
    while i < idxs.len() {
        let mut j = i;
        while j + 1 < idxs.len() && idxs[j + 1] == idxs[j] + 1 && j - i < 255 {
            j += 1;
        }
        let (off, len) = (idxs[i] * PAGE, (idxs[j] - idxs[i] + 1) * PAGE);
        let got = fs.read(ino, off, len).map_err(|e| format!("read({ino}, {off}, {len}): {e}"))?;
        let want = c.read(off, len);
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            return Err(format!(
                "file {ino}: contents differ at byte {} (fs {:?}, model {:?}; read of {len} at {off} gave {} bytes, model {})",
                off + at as u64,
                got.get(at),
                want.get(at),
                got.len(),
                want.len()
            ));
        }
        i = j + 1;
    }
    // Nothing readable at or past EOF.
    let past = fs.read(ino, c.size, 4096).map_err(|e| format!("read at EOF of {ino}: {e}"))?;
    if !past.is_empty() {
        return Err(format!("file {ino}: read at EOF {} returned {} bytes", c.size, past.len()));
    }
    Ok(())
}

fn compare_xattrs(fs: &Fs, ino: Ino, want: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), String> {
    let list = fs.listxattr(ino).map_err(|e| format!("listxattr({ino}): {e}"))?;
    let names: BTreeSet<Vec<u8>> = list.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| n.to_vec()).collect();
    let expect: BTreeSet<Vec<u8>> = want.keys().cloned().collect();
    if names != expect {
        let show = |s: &BTreeSet<Vec<u8>>| s.iter().map(|n| name(n)).collect::<Vec<_>>();
        return Err(format!("inode {ino}: xattrs {:?}, model {:?}", show(&names), show(&expect)));
    }
    for (n, v) in want {
        let got = fs.getxattr(ino, n).map_err(|e| format!("getxattr({ino}, {}): {e}", name(n)))?;
        if &got != v {
            return Err(format!(
                "inode {ino}: xattr {} is {} bytes, model {} bytes (or differs)",
                name(n),
                got.len(),
                v.len()
            ));
        }
    }
    Ok(())
}

/// The whole filesystem against the model.
fn compare(fs: &Fs, m: &Model) -> Result<(), String> {
    let st = fs.stats();
    if st.inodes != m.nodes.len() as u64 {
        return Err(format!("fs has {} inodes, model {}", st.inodes, m.nodes.len()));
    }
    for (ino, node) in &m.nodes {
        let a = fs.getattr(*ino).map_err(|e| format!("getattr({ino}): {e} (model has a {:?})", node.kind()))?;
        if a.kind() != node.kind() {
            return Err(format!("inode {ino} is a {:?}, model {:?}", a.kind(), node.kind()));
        }
        match &node.body {
            Body::Dir { entries, parent } => {
                let want_nlink = m.dir_nlink(*ino);
                if a.nlink != want_nlink {
                    return Err(format!("directory {ino}: nlink {}, model {want_nlink}", a.nlink));
                }
                let mut got = BTreeMap::new();
                let mut cookie = 0;
                let mut dots = Vec::new();
                loop {
                    let batch = fs.readdir(*ino, cookie, 7).map_err(|e| format!("readdir({ino}, {cookie}): {e}"))?;
                    let Some(last) = batch.last() else { break };
                    cookie = last.offset;
                    for e in batch {
                        if e.name == b"." || e.name == b".." {
                            dots.push((e.name.clone(), e.ino));
                            continue;
                        }
                        let kind = m.nodes.get(&e.ino).map(|n| n.kind());
                        if kind != Some(e.kind) {
                            return Err(format!(
                                "directory {ino}: entry {} is a {:?}, model {kind:?}",
                                name(&e.name),
                                e.kind
                            ));
                        }
                        if got.insert(e.name.clone(), e.ino).is_some() {
                            return Err(format!("directory {ino}: readdir returned {} twice", name(&e.name)));
                        }
                    }
                }
                let want_dots = vec![(b".".to_vec(), *ino), (b"..".to_vec(), *parent)];
                if dots != want_dots {
                    return Err(format!("directory {ino}: dot entries {dots:?}, model {want_dots:?}"));
                }
                if &got != entries {
                    let fmt = |e: &BTreeMap<Vec<u8>, Ino>| {
                        e.iter().map(|(n, i)| format!("{}={i}", name(n))).collect::<Vec<_>>()
                    };
                    return Err(format!("directory {ino}: entries {:?}, model {:?}", fmt(&got), fmt(entries)));
                }
                for (n, child) in entries {
                    let l = fs.lookup(*ino, n).map_err(|e| format!("lookup({ino}, {}): {e}", name(n)))?;
                    if l.ino != *child {
                        return Err(format!("lookup({ino}, {}) = {}, model {child}", name(n), l.ino));
                    }
                }
                let dd = fs.lookup(*ino, b"..").map_err(|e| format!("lookup({ino}, ..): {e}"))?;
                if dd.ino != *parent {
                    return Err(format!("directory {ino}: .. is {}, model {parent}", dd.ino));
                }
            }
            Body::File(c) => {
                if a.nlink != node.nlink {
                    return Err(format!("file {ino}: nlink {}, model {}", a.nlink, node.nlink));
                }
                compare_file(fs, *ino, c)?;
            }
            Body::Symlink(t) => {
                if a.nlink != node.nlink || a.size != t.len() as u64 {
                    return Err(format!(
                        "symlink {ino}: nlink {} size {}, model {} {}",
                        a.nlink,
                        a.size,
                        node.nlink,
                        t.len()
                    ));
                }
                let got = fs.readlink(*ino).map_err(|e| format!("readlink({ino}): {e}"))?;
                if &got != t {
                    return Err(format!("symlink {ino}: target {:?}, model {:?}", name(&got), name(t)));
                }
            }
        }
        compare_xattrs(fs, *ino, &node.xattrs)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The run.

const NAMES: u64 = 10;
const XATTR_NAMES: [&[u8]; 4] = [b"user.a", b"user.b", b"user.long.name.c", b"trusted.t"];

#[derive(Default, Debug)]
struct Counts {
    ok: u64,
    errors: u64,
    enospc: u64,
    remounts: u64,
    crashes: u64,
    syncs: u64,
}

struct Run {
    seed: u64,
    rng: Rng,
    media: Arc<MemMedia>,
    fs: Fs,
    model: Model,
    /// Model states since the last durable point, oldest first; a crash must recover one.
    candidates: Vec<Model>,
    log: Vec<String>,
    op: usize,
    counts: Counts,
}

/// The expected outcome: Ok, or any of these errnos.
type Want = Result<(), Vec<i32>>;

fn err(n: i32) -> Want {
    Err(vec![n])
}

/// Ok if no error condition holds, else the errno of the first, the conditions being
/// listed in the order Linux checks them.
fn first_of(errs: Vec<i32>) -> Want {
    match errs.first() {
        None => Ok(()),
        Some(e) => err(*e),
    }
}

impl Run {
    fn new(seed: u64) -> Run {
        let media = Arc::new(MemMedia::new(POOL_SIZE));
        Fs::mkfs(&*media, ROOT, [1; 16]).expect("mkfs");
        let fs = Fs::open(media.clone(), Options::default()).expect("open a fresh pool");
        let model = Model::new();
        Run {
            seed,
            rng: Rng::new(seed),
            media,
            fs,
            candidates: vec![model.clone()],
            model,
            log: Vec::new(),
            op: 0,
            counts: Counts::default(),
        }
    }

    fn fail(&self, msg: impl std::fmt::Display) -> ! {
        // DAXLINK_MODEL_LOG=N shows the last N ops (default 25).
        let n = std::env::var("DAXLINK_MODEL_LOG").ok().and_then(|s| s.parse().ok()).unwrap_or(25);
        let from = self.log.len().saturating_sub(n);
        panic!(
            "model seed {} op {}: {msg}\n  last ops:\n    {}\n  reproduce: DAXLINK_MODEL_SEED={} cargo test --test model model_clock_seed",
            self.seed,
            self.op,
            self.log[from..].join("\n    "),
            self.seed
        );
    }

    fn note(&mut self, s: String) {
        self.log.push(format!("#{} {s}", self.op));
    }

    /// Checks `got` against `want`: Ok, or one of the errnos listed.
    fn expect<T: std::fmt::Debug>(&mut self, what: &str, got: &Result<T, Error>, want: Want) {
        let ok = match (got, &want) {
            (Ok(_), Ok(())) => true,
            (Err(e), Err(ns)) => ns.contains(&e.errno()),
            _ => false,
        };
        if let Some(l) = self.log.last_mut() {
            l.push_str(&format!(" = {}", show(got)));
        }
        if !ok {
            let w = match &want {
                Ok(()) => "Ok".to_string(),
                Err(ns) => ns.iter().map(|n| errno_name(*n)).collect::<Vec<_>>().join(" or "),
            };
            self.fail(format!("{what}: got {}, expected {w}", show(got)));
        }
        if got.is_ok() {
            self.counts.ok += 1;
        } else {
            self.counts.errors += 1;
        }
    }

    fn name(&mut self) -> Vec<u8> {
        format!("n{}", self.rng.below(NAMES)).into_bytes()
    }

    fn dir(&mut self) -> Ino {
        let dirs = self.model.dirs();
        self.rng.pick(&dirs).expect("the root is always there")
    }

    /// An existing entry most of the time, else a random (maybe missing) name.
    fn entry(&mut self) -> (Ino, Vec<u8>) {
        let all = self.model.all_entries();
        if !all.is_empty() && self.rng.chance(80) {
            let (p, n, _) = self.rng.pick(&all).expect("non-empty");
            (p, n)
        } else {
            (self.dir(), self.name())
        }
    }

    fn file(&mut self) -> Option<Ino> {
        let files = self.model.files();
        self.rng.pick(&files)
    }

    fn any_inode(&mut self) -> Ino {
        let all: Vec<Ino> = self.model.nodes.keys().copied().collect();
        self.rng.pick(&all).expect("the root is always there")
    }

    fn lookup_model(&self, dir: Ino, n: &[u8]) -> Option<Ino> {
        self.model.entries(dir).get(n).copied()
    }

    /// After a successful create: the new inode must be new to the model.
    fn add_node(&mut self, parent: Ino, n: &[u8], ino: Ino, body: Body) {
        if self.model.nodes.contains_key(&ino) {
            self.fail(format!("create returned inode {ino}, which is still in use"));
        }
        let nlink = if matches!(body, Body::Dir { .. }) { 2 } else { 1 };
        self.model.nodes.insert(ino, Node { body, nlink, xattrs: BTreeMap::new() });
        self.model.entries_mut(parent).insert(n.to_vec(), ino);
    }

    fn step(&mut self) {
        let r = self.rng.below(1100);
        match r {
            0..=79 => self.op_create(),
            80..=119 => self.op_mkdir(),
            120..=139 => self.op_symlink(),
            140..=359 => self.op_write(),
            360..=419 => self.op_truncate(),
            420..=499 => self.op_fallocate(),
            500..=569 => self.op_unlink(),
            570..=599 => self.op_rmdir(),
            600..=689 => self.op_rename(),
            690..=729 => self.op_link(),
            730..=759 => self.op_open(),
            760..=789 => self.op_release(),
            790..=839 => self.op_setxattr(),
            840..=859 => self.op_removexattr(),
            860..=899 => self.op_read_check(),
            900..=929 => self.op_seek(),
            930..=966 => self.op_sync(),
            967..=973 => self.op_remount(),
            974..=981 => self.op_crash_after_sync(),
            982..=989 => self.op_crash_anywhere(),
            990..=999 => self.op_efbig(),
            1000..=1039 => self.op_clone(),
            1040..=1069 => self.op_copy_range(),
            1070..=1084 => self.op_dedupe(),
            _ => self.op_unshare(),
        }
    }

    fn op_create(&mut self) {
        let (p, n) = (self.dir(), self.name());
        self.note(format!("create {p}/{}", name(&n)));
        let want = if self.lookup_model(p, &n).is_some() { err(libc::EEXIST) } else { Ok(()) };
        let got = self.fs.mknod(ROOT, p, &n, libc::S_IFREG | 0o644, 0);
        self.expect("mknod", &got, want);
        if let Ok(a) = got {
            if a.nlink != 1 || a.size != 0 || a.kind() != Kind::File {
                self.fail(format!("new file has {a:?}"));
            }
            self.add_node(p, &n, a.ino, Body::File(Rc::new(Content::default())));
        }
    }

    fn op_mkdir(&mut self) {
        let (p, n) = (self.dir(), self.name());
        self.note(format!("mkdir {p}/{}", name(&n)));
        let want = if self.lookup_model(p, &n).is_some() { err(libc::EEXIST) } else { Ok(()) };
        let got = self.fs.mkdir(ROOT, p, &n, 0o755);
        self.expect("mkdir", &got, want);
        if let Ok(a) = got {
            self.add_node(p, &n, a.ino, Body::Dir { entries: BTreeMap::new(), parent: p });
        }
    }

    fn op_symlink(&mut self) {
        let (p, n) = (self.dir(), self.name());
        let len = if self.rng.chance(5) { 4096 } else { self.rng.range(1, 120) as usize };
        let target: Vec<u8> = self.rng.bytes(len).iter().map(|b| b'a' + b % 26).collect();
        self.note(format!("symlink {p}/{} -> {len} bytes", name(&n)));
        let want = if self.lookup_model(p, &n).is_some() { err(libc::EEXIST) } else { Ok(()) };
        let got = self.fs.symlink(ROOT, p, &n, &target);
        self.expect("symlink", &got, want);
        if let Ok(a) = got {
            self.add_node(p, &n, a.ino, Body::Symlink(target));
        }
    }

    /// An offset for a data op on a file of `size` bytes.
    fn offset(&mut self, size: u64) -> u64 {
        match self.rng.below(100) {
            0..=29 => self.rng.range(0, size),
            30..=49 => size,
            50..=74 => size + self.rng.range(1, 64 << 10),
            75..=89 => self.rng.range(0, 4 << 20),
            90..=96 => self.rng.range(0, 64 << 20),
            _ => self.rng.range(0, 1 << 40),
        }
    }

    fn length(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=39 => self.rng.range(1, 4096),
            40..=79 => self.rng.range(1, 64 << 10),
            _ => self.rng.range(1, 200 << 10),
        }
    }

    /// Pages a data op on `[off, end)` could need at most.
    fn spanned(off: u64, end: u64) -> u64 {
        if end <= off { 0 } else { (end - 1) / PAGE - off / PAGE + 1 }
    }

    /// After an op on `[off, end)` of `ino`: the neighbourhood reads as the model says.
    fn verify_range(&mut self, ino: Ino, off: u64, end: u64) {
        let from = off.saturating_sub(PAGE + 17);
        let len = end.saturating_sub(from).min(1 << 20) + 2 * PAGE;
        let got = match self.fs.read(ino, from, len) {
            Ok(v) => v,
            Err(e) => self.fail(format!("read({ino}, {from}, {len}): {e}")),
        };
        let want = self.model.content(ino).read(from, len);
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            self.fail(format!(
                "file {ino} after the op: byte {} is {:?}, model {:?} (read {} bytes, model {})",
                from + at as u64,
                got.get(at),
                want.get(at),
                got.len(),
                want.len()
            ));
        }
        let size = self.fs.getattr(ino).map(|a| a.size);
        if size != Ok(self.model.content(ino).size) {
            self.fail(format!("file {ino}: size {size:?}, model {}", self.model.content(ino).size));
        }
    }

    /// A data op failed with ENOSPC: allowed only if the op might need more pages than
    /// were free; the model stays as it was.
    fn enospc(&mut self, what: &str, needed: u64, free_before: u64) {
        if needed <= free_before {
            self.fail(format!("{what}: ENOSPC although it needs at most {needed} pages and {free_before} were free"));
        }
        self.counts.enospc += 1;
        if let Some(l) = self.log.last_mut() {
            l.push_str(" = ENOSPC");
        }
    }

    fn op_write(&mut self) {
        let Some(ino) = self.file() else {
            return self.op_create();
        };
        let size = self.model.content(ino).size;
        let append = self.rng.chance(10);
        let off = self.offset(size);
        let len = self.length() as usize;
        let data = self.rng.bytes(len);
        let at = if append { size } else { off };
        self.note(format!("write {ino} at {at} len {len}{}", if append { " (append)" } else { "" }));
        let n = len.min(MAX_FILE.saturating_sub(at) as usize);
        let free = self.fs.statfs().bfree;
        let got = self.fs.write(ino, off, &data, append);
        if let Err(Error::NoSpace) = got {
            // Plus the page holding the old EOF, which a gap may have to copy first.
            self.enospc("write", Self::spanned(at, at + n as u64) + 1, free);
        } else {
            let want = if at >= MAX_FILE { err(libc::EFBIG) } else { Ok(()) };
            self.expect("write", &got, want);
            if let Ok(k) = got {
                if k != n as u64 {
                    self.fail(format!("write returned {k}, expected {n}"));
                }
                self.model.content_mut(ino).write(at, &data[..n]);
            }
        }
        self.verify_range(ino, at, at + n as u64);
    }

    fn op_truncate(&mut self) {
        let Some(ino) = self.file() else {
            return self.op_create();
        };
        let size = self.model.content(ino).size;
        let new = match self.rng.below(10) {
            0 => 0,
            1 => size / 2,
            2..=3 => size.saturating_sub(self.rng.range(1, 9000)),
            4..=5 => size + self.rng.range(1, 9000),
            6 => size + self.rng.range(1, 32 << 20),
            7 => self.rng.range(0, 1 << 20),
            8 => self.rng.range(0, 2 << 40),
            _ => {
                if self.rng.chance(50) {
                    MAX_FILE + self.rng.range(1, 4096)
                } else {
                    MAX_FILE - self.rng.range(0, 4096)
                }
            }
        };
        self.note(format!("truncate {ino} from {size} to {new}"));
        let want = if new > MAX_FILE { err(libc::EFBIG) } else { Ok(()) };
        let free = self.fs.statfs().bfree;
        let got = self.fs.setattr(ino, SetAttr { size: Some(new), ..Default::default() });
        if let (Err(Error::NoSpace), Ok(())) = (&got, &want) {
            // Growing zeroes the old EOF page's tail, copying it first if it is shared.
            self.enospc("truncate", 1, free);
            return self.verify_range(ino, new.min(size), new.max(size).min(new.min(size) + (256 << 10)));
        }
        self.expect("truncate", &got, want);
        if let Ok(a) = &got {
            if a.size != new {
                self.fail(format!("truncate to {new} left size {}", a.size));
            }
            self.model.content_mut(ino).truncate(new);
        }
        self.verify_range(ino, new.min(size), new.max(size).min(new.min(size) + (256 << 10)));
    }

    fn op_fallocate(&mut self) {
        let Some(ino) = self.file() else {
            return self.op_create();
        };
        let size = self.model.content(ino).size;
        let modes = [
            0,
            FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_ZERO_RANGE,
            FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_PUNCH_HOLE,
        ];
        let mode = self.rng.pick(&modes).expect("modes");
        let mut off = match self.rng.below(10) {
            0..=5 => self.rng.range(0, size + 8192),
            6..=7 => self.offset(size),
            _ => self.rng.range(0, size) / PAGE * PAGE,
        };
        let mut len = match self.rng.below(20) {
            0 => 0,
            1..=12 => self.length(),
            13..=17 => self.rng.range(1, 1 << 20),
            _ => self.rng.range(1, 4 << 20),
        };
        if self.rng.chance(2) {
            off = MAX_FILE - self.rng.range(1, 8192);
            len = self.rng.range(1, 16384);
        }
        self.note(format!("fallocate {ino} mode {mode:#x} off {off} len {len}"));
        let end = off + len;
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        let mut errs = Vec::new();
        if len == 0 {
            errs.push(libc::EINVAL);
        }
        if mode == FALLOC_FL_PUNCH_HOLE {
            errs.push(libc::EOPNOTSUPP);
        }
        if end > MAX_FILE {
            errs.push(libc::EFBIG);
        }
        let want = first_of(errs);
        let valid = want.is_ok();
        let free = self.fs.statfs().bfree;
        let got = self.fs.fallocate(ino, mode, off, len);
        if let (Err(Error::NoSpace), Ok(())) = (&got, &want) {
            // Holes of the range, plus the shared pages holding the range's ends and EOF.
            let fill = if mode & FALLOC_FL_PUNCH_HOLE == 0 { Self::spanned(off, end) } else { 0 };
            self.enospc("fallocate", fill + 3, free);
        } else {
            self.expect("fallocate", &got, want);
            if got.is_ok() {
                let c = self.model.content_mut(ino);
                if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) != 0 {
                    c.zero(off, end);
                }
                if !keep && end > c.size {
                    c.size = end;
                }
            }
        }
        if valid {
            self.verify_range(ino, off, end.min(off + (2 << 20)));
        }
    }

    fn op_unlink(&mut self) {
        let (p, n) = self.entry();
        self.note(format!("unlink {p}/{}", name(&n)));
        let target = self.lookup_model(p, &n);
        let want = match target {
            None => err(libc::ENOENT),
            Some(i) if self.model.is_dir(i) => err(libc::EISDIR),
            Some(_) => Ok(()),
        };
        let got = self.fs.unlink(p, &n);
        self.expect("unlink", &got, want);
        if got.is_ok() {
            let i = self.model.entries_mut(p).remove(&n).expect("checked");
            self.model.drop_name(i);
        }
    }

    fn op_rmdir(&mut self) {
        let (p, n) = self.entry();
        self.note(format!("rmdir {p}/{}", name(&n)));
        let want = match self.lookup_model(p, &n) {
            None => err(libc::ENOENT),
            Some(i) if !self.model.is_dir(i) => err(libc::ENOTDIR),
            Some(i) if !self.model.entries(i).is_empty() => err(libc::ENOTEMPTY),
            Some(_) => Ok(()),
        };
        let got = self.fs.rmdir(p, &n);
        self.expect("rmdir", &got, want);
        if got.is_ok() {
            let i = self.model.entries_mut(p).remove(&n).expect("checked");
            self.model.drop_name(i);
        }
    }

    /// renameat2(2): the error conditions of fs/namei.c `do_renameat2` and `vfs_rename`
    /// that hold, in the order Linux checks them.
    fn rename_want(&self, sp: Ino, sn: &[u8], dp: Ino, dn: &[u8], flags: u32) -> Want {
        let m = &self.model;
        let Some(src) = m.entries(sp).get(sn).copied() else {
            return err(libc::ENOENT);
        };
        let dst = m.entries(dp).get(dn).copied();
        let exchange = flags & RENAME_EXCHANGE != 0;
        let mut errs = Vec::new();
        if flags & RENAME_NOREPLACE != 0 && dst.is_some() {
            errs.push(libc::EEXIST);
        }
        if exchange && dst.is_none() {
            errs.push(libc::ENOENT);
        }
        if dst == Some(src) {
            // Two names of one inode (or one name twice): nothing to do.
            return first_of(errs);
        }
        // The source an ancestor of the target.
        if m.is_dir(src) && m.is_within(dp, src) {
            errs.push(libc::EINVAL);
        }
        // The target an ancestor of the source.
        if let Some(d) = dst
            && m.is_dir(d)
            && m.is_within(sp, d)
        {
            errs.push(if exchange { libc::EINVAL } else { libc::ENOTEMPTY });
        }
        if let Some(d) = dst
            && !exchange
        {
            match (m.is_dir(src), m.is_dir(d)) {
                (true, false) => errs.push(libc::ENOTDIR),
                (false, true) => errs.push(libc::EISDIR),
                (true, true) if !m.entries(d).is_empty() => errs.push(libc::ENOTEMPTY),
                _ => {}
            }
        }
        first_of(errs)
    }

    fn op_rename(&mut self) {
        let (sp, sn) = self.entry();
        let (dp, dn) = if self.rng.chance(25) { self.entry() } else { (self.dir(), self.name()) };
        let flags = match self.rng.below(10) {
            0..=5 => 0,
            6..=7 => RENAME_NOREPLACE,
            _ => RENAME_EXCHANGE,
        };
        self.note(format!("rename {sp}/{} -> {dp}/{} flags {flags}", name(&sn), name(&dn)));
        let want = self.rename_want(sp, &sn, dp, &dn, flags);
        let got = self.fs.rename(ROOT, sp, &sn, dp, &dn, flags);
        self.expect("rename", &got, want);
        if got.is_err() {
            return;
        }
        let src = self.lookup_model(sp, &sn).expect("checked");
        let dst = self.lookup_model(dp, &dn);
        if dst == Some(src) {
            return;
        }
        if flags & RENAME_EXCHANGE != 0 {
            let dst = dst.expect("checked");
            self.model.entries_mut(sp).insert(sn.clone(), dst);
            self.model.entries_mut(dp).insert(dn.clone(), src);
            if self.model.is_dir(dst) {
                self.model.set_parent(dst, sp);
            }
            if self.model.is_dir(src) {
                self.model.set_parent(src, dp);
            }
            return;
        }
        self.model.entries_mut(sp).remove(&sn);
        if let Some(d) = self.model.entries_mut(dp).insert(dn.clone(), src) {
            self.model.drop_name(d);
        }
        if self.model.is_dir(src) {
            self.model.set_parent(src, dp);
        }
    }

    fn op_link(&mut self) {
        // Mostly named non-directories; now and then a directory or an unlinked open file.
        let all: Vec<Ino> = self.model.nodes.keys().copied().filter(|i| *i != Ino::ROOT).collect();
        let non_dirs: Vec<Ino> = all.iter().copied().filter(|i| !self.model.is_dir(*i)).collect();
        let ino = if self.rng.chance(90) { self.rng.pick(&non_dirs) } else { self.rng.pick(&all) };
        let Some(ino) = ino else {
            return self.op_create();
        };
        let (p, n) = (self.dir(), self.name());
        self.note(format!("link {ino} -> {p}/{}", name(&n)));
        // linkat(2): an existing name (EEXIST), a directory (EPERM), an inode with no
        // links left (ENOENT).
        let mut errs = Vec::new();
        if self.lookup_model(p, &n).is_some() {
            errs.push(libc::EEXIST);
        }
        if self.model.is_dir(ino) {
            errs.push(libc::EPERM);
        }
        if self.model.nodes[&ino].nlink == 0 {
            errs.push(libc::ENOENT);
        }
        let want = first_of(errs);
        let got = self.fs.link(ino, p, &n);
        self.expect("link", &got, want);
        if let Ok(a) = got {
            let node = self.model.nodes.get_mut(&ino).expect("checked");
            node.nlink += 1;
            let nlink = node.nlink;
            self.model.entries_mut(p).insert(n, ino);
            if a.nlink != nlink {
                self.fail(format!("link returned nlink {}, model {nlink}", a.nlink));
            }
        }
    }

    fn op_open(&mut self) {
        let Some(ino) = self.file() else {
            return self.op_create();
        };
        self.note(format!("open {ino}"));
        let got = self.fs.open_inode(ino);
        self.expect("open", &got, Ok(()));
        *self.model.open.entry(ino).or_default() += 1;
    }

    fn op_release(&mut self) {
        let open: Vec<Ino> = self.model.open.keys().copied().collect();
        let Some(ino) = self.rng.pick(&open) else {
            return self.op_open();
        };
        self.note(format!("release {ino}"));
        let got = self.fs.release(ino);
        self.expect("release", &got, Ok(()));
        let n = self.model.open.get_mut(&ino).expect("open");
        *n -= 1;
        if *n == 0 {
            self.model.open.remove(&ino);
            if self.model.nodes[&ino].nlink == 0 {
                self.model.nodes.remove(&ino);
            }
        }
    }

    fn op_setxattr(&mut self) {
        let ino = self.any_inode();
        let n = self.rng.pick(&XATTR_NAMES).expect("names").to_vec();
        let len = if self.rng.chance(5) { self.rng.range(0, 16 << 10) } else { self.rng.range(0, 300) } as usize;
        let value = self.rng.bytes(len);
        let flags = [0, 0, XATTR_CREATE, XATTR_REPLACE][self.rng.below(4) as usize];
        self.note(format!("setxattr {ino} {} len {len} flags {flags}", name(&n)));
        let node = &self.model.nodes[&ino];
        let exists = node.xattrs.contains_key(&n);
        let want = if n.starts_with(b"user.") && node.kind() == Kind::Symlink {
            err(libc::EPERM)
        } else if flags == XATTR_CREATE && exists {
            err(libc::EEXIST)
        } else if flags == XATTR_REPLACE && !exists {
            err(libc::ENODATA)
        } else {
            Ok(())
        };
        let got = self.fs.setxattr(ino, &n, &value, flags);
        self.expect("setxattr", &got, want);
        if got.is_ok() {
            self.model.nodes.get_mut(&ino).expect("node").xattrs.insert(n, value);
        }
    }

    fn op_removexattr(&mut self) {
        let ino = self.any_inode();
        let n = self.rng.pick(&XATTR_NAMES).expect("names").to_vec();
        self.note(format!("removexattr {ino} {}", name(&n)));
        let node = &self.model.nodes[&ino];
        // xattr_permission: writes of user.* on anything but files and directories.
        let want = if n.starts_with(b"user.") && node.kind() == Kind::Symlink {
            err(libc::EPERM)
        } else if node.xattrs.contains_key(&n) {
            Ok(())
        } else {
            err(libc::ENODATA)
        };
        let got = self.fs.removexattr(ino, &n);
        self.expect("removexattr", &got, want);
        if got.is_ok() {
            self.model.nodes.get_mut(&ino).expect("node").xattrs.remove(&n);
        }
    }

    fn op_read_check(&mut self) {
        let Some(ino) = self.file() else { return };
        let size = self.model.content(ino).size;
        let off = self.offset(size);
        let len = self.length();
        self.note(format!("read {ino} at {off} len {len}"));
        let got = self.fs.read(ino, off, len);
        let want = self.model.content(ino).read(off, len);
        match got {
            Ok(v) if v == want => {}
            Ok(v) => self.fail(format!(
                "read {ino} at {off} len {len}: {} bytes differ from the model's {}",
                v.len(),
                want.len()
            )),
            Err(e) => self.fail(format!("read {ino} at {off} len {len}: {e}")),
        }
    }

    /// SEEK_DATA/SEEK_HOLE: the fs decides what is allocated, but holes read as zeros,
    /// so whatever it skips must be zero in the model.
    fn op_seek(&mut self) {
        let Some(ino) = self.file() else { return };
        let c = self.model.content(ino).clone();
        let off = if self.rng.chance(80) { self.rng.range(0, c.size) } else { self.offset(c.size) };
        let data = self.rng.chance(50);
        let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
        self.note(format!("seek {ino} {} from {off} (size {})", if data { "DATA" } else { "HOLE" }, c.size));
        let got = self.fs.seek(ino, off, whence);
        if off >= c.size {
            return self.expect("seek past EOF", &got, err(libc::ENXIO));
        }
        match (data, got) {
            (true, Ok(r)) if r >= off && r < c.size && c.is_zero(off, r) => {}
            (true, Err(e)) if e.errno() == libc::ENXIO && c.is_zero(off, c.size) => {}
            (false, Ok(r)) if r >= off && r <= c.size && (r == c.size || c.is_zero(r, (r / PAGE + 1) * PAGE)) => {}
            (_, got) => self.fail(format!("seek gave {}, which the model contradicts", show(&got))),
        }
        self.counts.ok += 1;
    }

    fn op_efbig(&mut self) {
        let Some(ino) = self.file() else { return };
        let off = MAX_FILE - self.rng.range(0, 3000);
        let len = self.rng.range(1, 6000) as usize;
        let data = self.rng.bytes(len);
        self.note(format!("write {ino} near 8 TiB at {off} len {}", data.len()));
        let n = data.len().min((MAX_FILE - off) as usize);
        let free = self.fs.statfs().bfree;
        let got = self.fs.write(ino, off, &data, false);
        if let Err(Error::NoSpace) = got {
            return self.enospc("write near 8 TiB", Self::spanned(off, off + n as u64) + 1, free);
        }
        self.expect("write near 8 TiB", &got, if n == 0 { err(libc::EFBIG) } else { Ok(()) });
        if let Ok(k) = got {
            if k != n as u64 {
                self.fail(format!("write near 8 TiB wrote {k}, expected {n}"));
            }
            self.model.content_mut(ino).write(off, &data[..n]);
        }
        self.verify_range(ino, off, off + n as u64);
    }

    // -- Sharing: clone, copy_file_range, dedupe, unshare. Only requests the
    // VFS rules allow are generated, apart from the rules' own EINVAL cases.

    /// Two files (maybe the same one).
    fn two_files(&mut self) -> Option<(Ino, Ino)> {
        let files = self.model.files();
        let src = self.rng.pick(&files)?;
        let dst = if self.rng.chance(15) { src } else { self.rng.pick(&files)? };
        Some((src, dst))
    }

    fn op_clone(&mut self) {
        let Some((src, dst)) = self.two_files() else { return self.op_create() };
        let (size_in, size_out) = (self.model.content(src).size, self.model.content(dst).size);
        if size_in == 0 {
            return self.op_write();
        }
        let soff = self.rng.range(0, (size_in - 1) / PAGE) * PAGE;
        let whole = (size_in - soff) / PAGE;
        let (len, count) = if whole == 0 || self.rng.chance(40) {
            // To the source's EOF: len 0, exactly, or past it.
            let len = match self.rng.below(3) {
                0 => 0,
                1 => size_in - soff,
                _ => size_in - soff + self.rng.range(1, 3 * PAGE),
            };
            (len, size_in - soff)
        } else {
            let k = self.rng.range(1, whole.min(64)) * PAGE;
            (k, k)
        };
        // Now and then past the destination's EOF: the gap must read zeros.
        let mut doff = match self.rng.below(4) {
            0 => soff,
            1 => size_out / PAGE * PAGE,
            _ => self.rng.range(0, (size_out + 16 * PAGE) / PAGE) * PAGE,
        };
        if doff > MAX_FILE {
            doff = size_out / PAGE * PAGE;
        }
        self.note(format!("clone {src}@{soff} -> {dst}@{doff} len {len} (sizes {size_in}/{size_out})"));
        // generic_remap_checks: the count stops at 8 TiB in the destination; the block
        // count covers the source's EOF page when the count reaches it.
        let mut errs = Vec::new();
        if doff >= MAX_FILE {
            errs.push(libc::EFBIG);
        }
        let count = count.min(MAX_FILE.saturating_sub(doff));
        let bcount = if soff + count == size_in { size_in.div_ceil(PAGE) * PAGE - soff } else { count / PAGE * PAGE };
        if src == dst && doff < soff + bcount && soff < doff + bcount {
            errs.push(libc::EINVAL);
        }
        // generic_remap_check_len: an unaligned tail must end at the destination's EOF.
        if !count.is_multiple_of(PAGE) && doff + count < size_out {
            errs.push(libc::EINVAL);
        }
        let want = first_of(errs);
        let free = self.fs.statfs().bfree;
        let got = self.fs.clone_range(src, soff, dst, doff, len);
        if let (Err(Error::NoSpace), Ok(())) = (&got, &want) {
            // Only the pages holding the two EOFs may need copying first.
            return self.enospc("clone", 2, free);
        }
        self.expect("clone_range", &got, want);
        if let Ok(n) = got {
            if n != count {
                self.fail(format!("clone_range returned {n}, expected {count}"));
            }
            let srcc = self.model.content(src).clone();
            self.model.content_mut(dst).copy_from(&srcc, soff, doff, count);
            self.verify_range(dst, doff, doff + count.min(1 << 20));
            self.verify_range(src, soff, soff + count.min(1 << 20));
        }
    }

    fn op_copy_range(&mut self) {
        let Some((src, dst)) = self.two_files() else { return self.op_create() };
        let (size_in, size_out) = (self.model.content(src).size, self.model.content(dst).size);
        let soff = match self.rng.below(3) {
            0 => self.rng.range(0, size_in / PAGE) * PAGE,
            _ => self.rng.range(0, size_in + 100),
        };
        let doff = match self.rng.below(4) {
            0 => soff,
            1 => size_out,
            _ => self.rng.range(0, size_out + (64 << 10)),
        };
        let len = if self.rng.chance(30) { u64::MAX / 4 } else { self.length() };
        // generic_copy_file_checks: to the source's EOF, and to 8 TiB in the destination.
        let count = if soff >= size_in { 0 } else { len.min(size_in - soff) };
        let mut errs = Vec::new();
        if count > 0 && doff >= MAX_FILE {
            errs.push(libc::EFBIG);
        }
        let count = count.min(MAX_FILE.saturating_sub(doff));
        self.note(format!("copy_range {src}@{soff} -> {dst}@{doff} len {len} (count {count})"));
        if src == dst && count > 0 && doff < soff + count && soff < doff + count {
            errs.push(libc::EINVAL);
        }
        let want = first_of(errs);
        let free = self.fs.statfs().bfree;
        let got = self.fs.copy_range(src, soff, dst, doff, len);
        if let (Err(Error::NoSpace), Ok(())) = (&got, &want) {
            self.enospc("copy_range", Self::spanned(doff, doff + count) + 2, free);
            // Head, body and tail are separate steps: any of them may have landed.
            return self.adopt_partial(src, soff, dst, doff, count);
        }
        self.expect("copy_range", &got, want);
        if let Ok(n) = got {
            if n != count {
                self.fail(format!("copy_range returned {n}, expected {count}"));
            }
            let srcc = self.model.content(src).clone();
            self.model.content_mut(dst).copy_from(&srcc, soff, doff, count);
            self.verify_range(dst, doff, doff + count.min(1 << 20));
        }
    }

    /// After a copy that failed part-way: every byte of the destination range is either
    /// its old value or the source's; the model takes what the fs has.
    fn adopt_partial(&mut self, src: Ino, soff: u64, dst: Ino, doff: u64, count: u64) {
        let old = self.model.content(dst).clone();
        let srcc = self.model.content(src).clone();
        let size = match self.fs.getattr(dst) {
            Ok(a) => a.size,
            Err(e) => self.fail(format!("getattr({dst}): {e}")),
        };
        if size < old.size || size > old.size.max(doff + count) {
            self.fail(format!("failed copy left size {size}, was {}, copy to {}", old.size, doff + count));
        }
        // A gap the copy opened past the old EOF reads zeros.
        if size > old.size && doff > old.size {
            let gap_end = doff.min(size).min(old.size + (4 << 20));
            match self.fs.read(dst, old.size, gap_end - old.size) {
                Ok(v) => {
                    if let Some(i) = v.iter().position(|b| *b != 0) {
                        self.fail(format!(
                            "failed copy exposed byte {} = {:#x} in the gap past the old EOF {}",
                            old.size + i as u64,
                            v[i],
                            old.size
                        ));
                    }
                }
                Err(e) => self.fail(format!("read({dst}): {e}")),
            }
        }
        // Pages that may hold anything but zeros, before or after.
        let end = (doff + count).min(size);
        if doff >= end {
            return self.model.content_mut(dst).truncate(size);
        }
        let (first, last) = (doff / PAGE, (end - 1) / PAGE);
        let mut idxs: BTreeSet<u64> = old.pages.range(first..=last).map(|(i, _)| *i).collect();
        match self.fs.extents(dst) {
            Ok(xs) => {
                for x in xs {
                    let (s, e) = (x.fblock.0.max(first), (x.fblock.0 + x.len).min(last + 1));
                    idxs.extend(s..e);
                }
            }
            Err(e) => self.fail(format!("extents({dst}): {e}")),
        }
        let mut adopted = old.clone();
        adopted.truncate(size.max(old.size));
        adopted.size = size;
        for idx in idxs {
            let (ps, pe) = ((idx * PAGE).max(doff), ((idx + 1) * PAGE).min(end));
            let got = match self.fs.read(dst, ps, pe - ps) {
                Ok(v) => v,
                Err(e) => self.fail(format!("read({dst}, {ps}): {e}")),
            };
            let was = old.read(ps, pe - ps);
            let new = srcc.read(soff + (ps - doff), pe - ps);
            for (i, b) in got.iter().enumerate() {
                if *b != was.get(i).copied().unwrap_or(0) && *b != new.get(i).copied().unwrap_or(0) {
                    self.fail(format!(
                        "failed copy left byte {} = {b:#x}: neither the old {:?} nor the source's {:?}",
                        ps + i as u64,
                        was.get(i),
                        new.get(i)
                    ));
                }
            }
            adopted.write(ps, &got);
            adopted.size = size;
        }
        *self.model.content_mut(dst) = adopted;
    }

    fn op_dedupe(&mut self) {
        let Some((src, dst)) = self.two_files() else { return self.op_create() };
        let (size_in, size_out) = (self.model.content(src).size, self.model.content(dst).size);
        let (wi, wo) = (size_in / PAGE, size_out / PAGE);
        if wi == 0 || wo == 0 {
            return self.op_write();
        }
        let soff = self.rng.range(0, wi - 1) * PAGE;
        let doff = if self.rng.chance(30) && soff < wo * PAGE { soff } else { self.rng.range(0, wo - 1) * PAGE };
        let max = (size_in - soff).min(size_out - doff) / PAGE;
        if max == 0 {
            return;
        }
        let len = self.rng.range(1, max.min(32)) * PAGE;
        self.note(format!("dedupe {src}@{soff} -> {dst}@{doff} len {len}"));
        let overlap = src == dst && doff < soff + len && soff < doff + len;
        let same = self.model.content(src).read(soff, len) == self.model.content(dst).read(doff, len);
        let got = self.fs.dedupe_range(src, soff, dst, doff, len);
        if overlap {
            return self.expect("dedupe_range", &got, err(libc::EINVAL));
        }
        self.expect("dedupe_range", &got, Ok(()));
        let want = if same { Dedupe::Same { bytes: len } } else { Dedupe::Differs };
        if got != Ok(want) {
            self.fail(format!("dedupe_range gave {}, expected {want:?}", show(&got)));
        }
        self.verify_range(dst, doff, doff + len);
    }

    fn op_unshare(&mut self) {
        let Some(ino) = self.file() else { return self.op_create() };
        let size = self.model.content(ino).size;
        let off = self.rng.range(0, size);
        let len = if self.rng.chance(30) { u64::MAX / 4 } else { self.length() };
        self.note(format!("unshare {ino} at {off} len {len}"));
        let free = self.fs.statfs().bfree;
        let got = self.fs.unshare(ino, off, len);
        if let Err(Error::NoSpace) = got {
            self.enospc("unshare", Self::spanned(off, off.saturating_add(len).min(size)) + 1, free);
        } else {
            self.expect("unshare", &got, Ok(()));
        }
        self.verify_range(ino, off, off.saturating_add(len).min(size).min(off + (1 << 20)));
    }

    fn op_sync(&mut self) {
        self.note("sync".into());
        if let Err(e) = self.fs.sync() {
            self.fail(format!("sync: {e}"));
        }
        self.counts.syncs += 1;
        self.candidates = vec![self.model.clone()];
    }

    fn reopen(&mut self, bytes: Vec<u8>, what: &str) {
        let media = Arc::new(MemMedia::from_bytes(bytes));
        let fs = match Fs::open(media.clone(), Options::default()) {
            Ok(fs) => fs,
            Err(e) => self.fail(format!("{what}: open failed: {e}")),
        };
        self.media = media;
        self.fs = fs;
        if let Err(e) = self.fs.check() {
            self.fail(format!("{what}: check after reopen: {e}"));
        }
    }

    fn op_remount(&mut self) {
        self.note("unmount + mount".into());
        if let Err(e) = self.fs.unmount() {
            self.fail(format!("unmount: {e}"));
        }
        let bytes = self.media.snapshot();
        self.reopen(bytes, "remount");
        self.model.after_remount();
        if let Err(e) = compare(&self.fs, &self.model) {
            self.fail(format!("after a clean remount: {e}"));
        }
        self.counts.remounts += 1;
        self.candidates = vec![self.model.clone()];
    }

    fn op_crash_after_sync(&mut self) {
        self.note("sync + crash".into());
        if let Err(e) = self.fs.sync() {
            self.fail(format!("sync: {e}"));
        }
        let bytes = self.media.snapshot();
        self.reopen(bytes, "crash after sync");
        self.model.after_remount();
        if let Err(e) = compare(&self.fs, &self.model) {
            self.fail(format!("after sync and a crash (log replay): {e}"));
        }
        self.counts.crashes += 1;
        self.candidates = vec![self.model.clone()];
    }

    /// A crash with no sync: the recovered state must be the model at some op since
    /// the last durable point (newest first: with in-memory media nothing is lost).
    fn op_crash_anywhere(&mut self) {
        self.note(format!("crash ({} states since the last sync)", self.candidates.len()));
        let bytes = self.media.snapshot();
        self.reopen(bytes, "crash");
        let mut first_err = None;
        for cand in self.candidates.iter().rev() {
            let mut m = cand.clone();
            m.after_remount();
            match compare(&self.fs, &m) {
                Ok(()) => {
                    self.model = m;
                    self.counts.crashes += 1;
                    self.candidates = vec![self.model.clone()];
                    return;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.fail(format!(
            "after a crash the fs matches none of the {} states since the last sync; against the newest: {}",
            self.candidates.len(),
            first_err.unwrap_or_default()
        ));
    }

    fn full_check(&mut self, when: &str) {
        if let Err(e) = self.fs.check() {
            self.fail(format!("check() {when}: {e}"));
        }
        let w = self.fs.stats().warnings;
        if w != 0 {
            self.fail(format!("{w} page-table warnings fired {when}"));
        }
    }

    fn run(&mut self, ops: usize) {
        for op in 0..ops {
            self.op = op;
            self.step();
            if self.candidates.len() >= MAX_CANDIDATES {
                self.op_sync();
            } else {
                self.candidates.push(self.model.clone());
            }
            if op % CHECK_EVERY == CHECK_EVERY - 1 {
                self.full_check("during the run");
            }
            if op % COMPARE_EVERY == COMPARE_EVERY - 1
                && let Err(e) = compare(&self.fs, &self.model)
            {
                self.fail(format!("full comparison: {e}"));
            }
        }
        self.op = ops;
        self.full_check("at the end");
        if let Err(e) = compare(&self.fs, &self.model) {
            self.fail(format!("final comparison: {e}"));
        }
        self.cleanup();
    }

    /// Removes everything: every page must come back.
    fn cleanup(&mut self) {
        self.note("cleanup".into());
        for (ino, n) in std::mem::take(&mut self.model.open) {
            for _ in 0..n {
                if let Err(e) = self.fs.release(ino) {
                    self.fail(format!("release({ino}): {e}"));
                }
            }
        }
        self.model.nodes.retain(|_, n| n.nlink > 0);
        self.remove_tree(Ino::ROOT);
        if let Err(e) = self.fs.sync() {
            self.fail(format!("sync: {e}"));
        }
        self.full_check("after removing everything");
        let (st, sf) = (self.fs.stats(), self.fs.statfs());
        if st.pages_used != 0 || st.inodes != 1 || sf.bfree != sf.blocks {
            self.fail(format!("after removing everything: {st:?}, statfs {sf:?}"));
        }
        self.op_remount();
        let st = self.fs.stats();
        if st.pages_used != 0 || st.inodes != 1 || st.pages_free != st.pages_total {
            self.fail(format!("after removing everything and remounting: {st:?}"));
        }
    }

    fn remove_tree(&mut self, dir: Ino) {
        let entries: Vec<(Vec<u8>, Ino)> = self.model.entries(dir).iter().map(|(n, i)| (n.clone(), *i)).collect();
        for (n, i) in entries {
            let r = if self.model.is_dir(i) {
                self.remove_tree(i);
                self.fs.rmdir(dir, &n)
            } else {
                self.fs.unlink(dir, &n)
            };
            if let Err(e) = r {
                self.fail(format!("cleanup: removing {dir}/{}: {e}", name(&n)));
            }
            self.model.entries_mut(dir).remove(&n);
            self.model.drop_name(i);
        }
    }
}

fn ops() -> usize {
    std::env::var("DAXLINK_MODEL_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_OPS)
}

fn run_seed(seed: u64) {
    eprintln!("model seed {seed}");
    let mut r = Run::new(seed);
    r.run(ops());
    eprintln!("model seed {seed}: {:?}, {} model pages at the end", r.counts, r.model.pages());
}

#[test]
fn model_seed_1() {
    run_seed(1);
}

#[test]
fn model_seed_2() {
    run_seed(2);
}

#[test]
fn model_seed_3() {
    run_seed(3);
}

#[test]
fn model_seed_4() {
    run_seed(0xdead_beef);
}

#[test]
fn model_seed_5() {
    run_seed(20240601);
}

/// A fresh seed each run (printed), or `DAXLINK_MODEL_SEED`.
#[test]
fn model_clock_seed() {
    let seed = std::env::var("DAXLINK_MODEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(42)
    });
    run_seed(seed);
}
