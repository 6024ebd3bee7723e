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
//!
//! Layout: `reference` (the model), `compare` (daxlink against it), one file per area
//! of ops (`namespace`, `data`, `reflink`, `durability`), and here the run itself.

#[path = "../common/mod.rs"]
mod common;
mod compare;
mod data;
mod durability;
mod namespace;
mod reference;
mod reflink;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use daxlink::arena::MemMedia;
use daxlink::fs::{
    Dedupe, Error, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, Fs, Kind, Options, RENAME_EXCHANGE,
    RENAME_NOREPLACE, SetAttr, XATTR_CREATE, XATTR_REPLACE,
};
use daxlink::types::{Ino, PAGE_SIZE};

use common::{ROOT, Rng};
use compare::*;
use reference::*;

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
