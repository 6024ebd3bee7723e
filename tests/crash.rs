//! Crash tests over a deterministic workload that touches every metadata operation
//! (files, directories, symlinks, renames and exchanges of files and directories,
//! links, orphans, xattrs large enough to fill the log and checkpoint inside an op,
//! clones, dedupe, memory failures, syncs).
//!
//! Power loss: the workload runs on a media that can lose power. At every flush it
//! makes, the image a crash would leave (unflushed stores dropped, a random subset
//! kept, or the last one torn) is recovered and checked: it mounts, `check()` passes
//! (refcounts, reverse map, free space, page table rebuilt consistent), the namespace
//! is that of some operation between the last completed sync and the one running, and
//! every byte fsync'd and untouched since holds exactly its synced value.
//!
//! Killed daemon: every store made before a kill is in the shared mapping, none after
//! it. After stores spread over the whole workload the running image is recovered and
//! checked the same way, and every byte of a file must be one some state it may show
//! had.
//!
//! `DAXLINK_CRASH_OPS=N` runs a longer sweep; `DAXLINK_CRASH_SEED` picks the workload;
//! `DAXLINK_CRASH_KILL_EVERY=N` recovers after every Nth store in the kill test;
//! `DAXLINK_CRASH_SHOW=FROM,TO` prints those ops of the workload (to read a failure).

mod common;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use daxlink::arena::MemMedia;
use daxlink::arena::crash::{Crash, CrashMedia, crash_image};
use daxlink::fs::{
    FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, Fs, Options, RENAME_EXCHANGE, SetAttr,
};
use daxlink::types::{Ino, PAGE_SIZE};

use common::crash::{Stores, recover, recovered_prefix};
use common::tree::{Tree, walk};
use common::{MIB, ROOT, Rng, mkfs_image, pattern};

const POOL: u64 = 16 * MIB;

#[derive(Clone, Debug)]
enum Op {
    Create(String),
    Mkdir(String),
    Write(String, u64, u64, u8),
    Truncate(String, u64),
    Fallocate(String, i32, u64, u64),
    Rename(String, String, u32),
    Link(String, String),
    Unlink(String),
    Rmdir(String),
    SetXattr(String, u8),
    RemoveXattr(String),
    Clone(String, String),
    Dedupe(String, String),
    Fail(String, u64),
    Symlink(String),
    /// Opened, then unlinked and never released: an orphan.
    OpenUnlink(String),
    /// 16 KiB: a few of them fill the log, which checkpoints inside the op.
    BigXattr(String, u8),
    Sync,
    Checkpoint,
}

const NAMES: [&str; 10] = ["f0", "f1", "f2", "f3", "d0/f4", "d0/f5", "d1/f6", "d0/d2/f7", "f8", "d1/f9"];
const DIRS: [&str; 3] = ["d0", "d1", "d0/d2"];

fn workload(seed: u64, n: usize) -> Vec<Op> {
    let mut r = Rng::new(seed);
    let mut ops: Vec<Op> = DIRS.iter().map(|d| Op::Mkdir(d.to_string())).collect();
    let name = |r: &mut Rng| NAMES[r.below(NAMES.len() as u64) as usize].to_string();
    while ops.len() < n {
        let op = match r.below(28) {
            0..=1 => Op::Create(name(&mut r)),
            2..=4 => Op::Write(name(&mut r), r.below(48 * 1024), 1 + r.below(24 * 1024), r.next() as u8),
            5 => Op::Truncate(name(&mut r), r.below(64 * 1024)),
            6 => {
                let modes = [0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE];
                Op::Fallocate(name(&mut r), modes[r.below(4) as usize], r.below(48 * 1024), 1 + r.below(16 * 1024))
            }
            7 => Op::Rename(name(&mut r), name(&mut r), if r.below(3) == 0 { RENAME_EXCHANGE } else { 0 }),
            8 => Op::Link(name(&mut r), name(&mut r)),
            9 => Op::Unlink(name(&mut r)),
            10 => {
                let d = DIRS[r.below(3) as usize].to_string();
                if r.below(2) == 0 { Op::Rmdir(d) } else { Op::Mkdir(d) }
            }
            11 => Op::SetXattr(name(&mut r), r.next() as u8),
            12 => Op::RemoveXattr(name(&mut r)),
            13..=14 => Op::Clone(name(&mut r), name(&mut r)),
            15 => Op::Dedupe(name(&mut r), name(&mut r)),
            16 if r.below(4) == 0 => Op::Fail(name(&mut r), r.below(32 * 1024)),
            16 => Op::Checkpoint,
            17 => Op::Symlink(name(&mut r)),
            18 => Op::OpenUnlink(name(&mut r)),
            19..=20 => Op::BigXattr(name(&mut r), r.next() as u8),
            // A directory moved, or exchanged with a file, symlink or directory.
            21 if r.below(3) == 0 => {
                let d = DIRS[r.below(3) as usize].to_string();
                let to = if r.below(2) == 0 { DIRS[r.below(3) as usize].to_string() } else { name(&mut r) };
                Op::Rename(d, to, if r.below(2) == 0 { RENAME_EXCHANGE } else { 0 })
            }
            _ => Op::Sync,
        };
        ops.push(op);
    }
    ops
}

fn resolve(fs: &Fs, path: &str) -> Option<(Ino, Ino, Vec<u8>)> {
    let mut parent = Ino::ROOT;
    let parts: Vec<&str> = path.split('/').collect();
    for d in &parts[..parts.len() - 1] {
        parent = fs.lookup(parent, d.as_bytes()).ok()?.ino;
    }
    let name = parts.last()?.as_bytes().to_vec();
    let ino = fs.lookup(parent, &name).map(|a| a.ino).unwrap_or(Ino(0));
    Some((parent, ino, name))
}

/// Runs one op; errors are part of the workload (both runs see the same ones).
fn run(fs: &Fs, op: &Op) {
    let file = |p: &str| resolve(fs, p).filter(|r| r.1 != Ino(0));
    let _ = match op {
        Op::Create(p) => resolve(fs, p).map(|(d, _, n)| fs.mknod(ROOT, d, &n, libc::S_IFREG | 0o644, 0).map(|_| ())),
        Op::Mkdir(p) => resolve(fs, p).map(|(d, _, n)| fs.mkdir(ROOT, d, &n, 0o755).map(|_| ())),
        Op::Write(p, off, len, s) => {
            file(p).map(|f| fs.write(f.1, *off, &pattern(*s, *len as usize), false).map(|_| ()))
        }
        Op::Truncate(p, size) => {
            file(p).map(|f| fs.setattr(f.1, SetAttr { size: Some(*size), ..Default::default() }).map(|_| ()))
        }
        Op::Fallocate(p, mode, off, len) => file(p).map(|f| fs.fallocate(f.1, *mode, *off, *len)),
        Op::Rename(a, b, flags) => match (file(a), resolve(fs, b)) {
            (Some(s), Some(d)) => Some(fs.rename(ROOT, s.0, &s.2, d.0, &d.2, *flags)),
            _ => None,
        },
        Op::Link(a, b) => match (file(a), resolve(fs, b)) {
            (Some(s), Some(d)) => Some(fs.link(s.1, d.0, &d.2).map(|_| ())),
            _ => None,
        },
        Op::Unlink(p) => file(p).map(|f| fs.unlink(f.0, &f.2)),
        Op::Rmdir(p) => file(p).map(|f| fs.rmdir(f.0, &f.2)),
        Op::SetXattr(p, v) => file(p).map(|f| fs.setxattr(f.1, b"user.crash", &[*v; 40], 0)),
        Op::RemoveXattr(p) => file(p).map(|f| fs.removexattr(f.1, b"user.crash")),
        Op::Clone(a, b) => match (file(a), file(b)) {
            (Some(s), Some(d)) => Some(fs.clone_range(s.1, 0, d.1, 0, 0).map(|_| ())),
            _ => None,
        },
        Op::Dedupe(a, b) => match (file(a), file(b)) {
            (Some(s), Some(d)) => Some(fs.dedupe_range(s.1, 0, d.1, 0, 8 * PAGE_SIZE).map(|_| ())),
            _ => None,
        },
        Op::Fail(p, off) => file(p).and_then(|f| {
            let b = off / PAGE_SIZE;
            let m = fs.extents(f.1).ok()?.into_iter().find(|m| m.fblock.0 <= b && b < m.fblock.0 + m.pages)?;
            Some(fs.memory_failure(m.pfn.plus(b - m.fblock.0), 1).map(|_| ()))
        }),
        Op::Symlink(p) => resolve(fs, p).map(|(d, _, n)| fs.symlink(ROOT, d, &n, b"f0").map(|_| ())),
        Op::OpenUnlink(p) => file(p).map(|f| fs.open_inode(f.1).and_then(|_| fs.unlink(f.0, &f.2))),
        Op::BigXattr(p, v) => file(p).map(|f| fs.setxattr(f.1, b"user.big", &[*v; 16 << 10], 0)),
        Op::Sync => Some(fs.sync()),
        Op::Checkpoint => Some(fs.unmount()),
    };
}

/// The workload of `DAXLINK_CRASH_SEED`/`DAXLINK_CRASH_OPS` (`ops` by default), a fresh
/// pool, and the tree after each op of a run on media that never crashes.
fn prepare(ops: usize) -> (Vec<Op>, Vec<u8>, Vec<Tree>) {
    let seed: u64 = std::env::var("DAXLINK_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let n: usize = std::env::var("DAXLINK_CRASH_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(ops);
    eprintln!("crash workload: seed {seed}, {n} ops");
    let ops = workload(seed, n);
    if let Ok(r) = std::env::var("DAXLINK_CRASH_SHOW") {
        let (a, b) = r.split_once(',').expect("DAXLINK_CRASH_SHOW=FROM,TO");
        let (a, b) = (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap());
        for (i, op) in ops.iter().enumerate().take(b + 1).skip(a) {
            eprintln!("op {i}: {op:?}");
        }
    }
    let image = mkfs_image(POOL);
    let fs = Fs::open(Arc::new(MemMedia::from_bytes(image.clone())), Options::default()).unwrap();
    let mut states = vec![walk(&fs)];
    for op in &ops {
        run(&fs, op);
        states.push(walk(&fs));
    }
    fs.check().unwrap();
    (ops, image, states)
}

/// Shared between the workload and the media's hooks.
struct Sweep {
    states: Vec<Tree>,
    /// Index into `states` of the state before the running op.
    running: AtomicUsize,
    /// Index into `states` of the state the last completed sync made durable.
    synced: AtomicI64,
    points: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Sweep {
    fn new(states: Vec<Tree>) -> Arc<Sweep> {
        Arc::new(Sweep {
            states,
            running: AtomicUsize::new(0),
            synced: AtomicI64::new(0),
            points: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
        })
    }

    /// Recovers `image` and checks it against the states since the last sync.
    fn check(&self, image: Vec<u8>, stores: Stores, what: impl FnOnce() -> String) {
        self.points.fetch_add(1, Ordering::Relaxed);
        let before = self.running.load(Ordering::Relaxed);
        let synced = self.synced.load(Ordering::Relaxed) as usize;
        let checked = recover(image).and_then(|got| recovered_prefix(&got, &self.states[synced..=before + 1], stores));
        if let Err(e) = checked {
            self.failures.lock().unwrap().push(format!("{}, op {before}, synced {synced}: {e}", what()));
        }
    }

    /// A power loss at a flush: the unflushed stores dropped, a subset of them kept,
    /// or the last one torn, in turn.
    fn power_loss(&self, durable: &[u8], pending: &[(u64, Vec<u8>)]) {
        let point = self.points.load(Ordering::Relaxed);
        let crash = match point % 3 {
            0 => Crash::DropAll,
            1 => Crash::Keep(0x9e37_79b9_7f4a_7c15u64.rotate_left(point as u32)),
            _ => Crash::TearLast(point % 7),
        };
        self.check(crash_image(durable, pending, crash), Stores::AnySubset, || format!("point {point} ({crash:?})"));
    }

    /// The daemon killed right after a store.
    fn kill(&self, current: &[u8], store: u64) {
        self.check(current.to_vec(), Stores::InOrder, || format!("kill after store {store}"));
    }

    /// Runs `ops` on `fs`, noting the running op and the last sync for the hooks;
    /// returns the points checked, having failed on any failure.
    fn run(&self, fs: &Fs, ops: &[Op], what: &str) -> usize {
        let start = std::time::Instant::now();
        for (i, op) in ops.iter().enumerate() {
            self.running.store(i, Ordering::Relaxed);
            run(fs, op);
            if matches!(op, Op::Sync | Op::Checkpoint) {
                self.synced.store(i as i64 + 1, Ordering::Relaxed);
            }
        }
        let points = self.points.load(Ordering::Relaxed);
        let failures = self.failures.lock().unwrap();
        eprintln!("{what}: {points} points in {:?}, {} failures", start.elapsed(), failures.len());
        assert!(
            failures.is_empty(),
            "{} of {points} {what} points failed; first ones:\n{}",
            failures.len(),
            failures[..failures.len().min(10)].join("\n")
        );
        points
    }
}

#[test]
fn every_crash_point_recovers_to_a_consistent_prefix() {
    let (ops, image, states) = prepare(3000);
    let sweep = Sweep::new(states);
    let media = Arc::new(CrashMedia::new(image));
    let fs = Fs::open(media.clone(), Options::default()).unwrap();
    let s2 = sweep.clone();
    media.set_hook(Box::new(move |durable, pending| s2.power_loss(durable, pending)));
    let points = sweep.run(&fs, &ops, "crash sweep");
    // The CI sweep (3,000 ops) must cover 1,000 points; a shorter one a third of its ops.
    let least = (ops.len() / 3).min(1000);
    assert!(points >= least, "only {points} crash points: a sweep of {} ops must cover {least}", ops.len());
}

#[test]
fn a_kill_after_any_store_recovers_a_prefix_in_store_order() {
    let (ops, image, states) = prepare(1000);
    let every: u64 = std::env::var("DAXLINK_CRASH_KILL_EVERY").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let sweep = Sweep::new(states);
    let media = Arc::new(CrashMedia::new(image));
    let fs = Fs::open(media.clone(), Options::default()).unwrap();
    let s2 = sweep.clone();
    media.set_store_hook(Box::new(move |current, store| {
        if store % every == 0 {
            s2.kill(current, store)
        }
    }));
    let points = sweep.run(&fs, &ops, "kill sweep");
    let least = (ops.len() / 3).min(300);
    assert!(points >= least, "only {points} kill points: a sweep of {} ops must cover {least}", ops.len());
}
