//! Crash-point sweep: a deterministic workload that touches every metadata
//! operation runs on a media that can lose power. At every flush it makes, the image a
//! crash would leave (unflushed stores dropped, a random subset kept, or the last one
//! torn) is recovered and checked: it mounts, `check()` passes (refcounts, reverse map,
//! free space, page table rebuilt consistent), the namespace is that of some operation
//! between the last completed sync and the one running, and every file untouched since
//! that sync holds exactly its synced bytes.
//!
//! `DAXLINK_CRASH_OPS=N` runs a longer sweep; `DAXLINK_CRASH_SEED` picks the workload;
//! `DAXLINK_CRASH_SHOW=FROM,TO` prints those ops of the workload (to read a failure).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use daxlink::arena::MemMedia;
use daxlink::arena::crash::{Crash, CrashMedia, crash_image};
use daxlink::fs::{
    Ctx, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, Fs, Kind, Options, RENAME_EXCHANGE, SetAttr,
};
use daxlink::types::{Ino, PAGE_SIZE};

const CTX: Ctx = Ctx { uid: 0, gid: 0 };
const POOL: u64 = 16 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

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
    Sync,
    Checkpoint,
}

const NAMES: [&str; 10] = ["f0", "f1", "f2", "f3", "d0/f4", "d0/f5", "d1/f6", "d0/d2/f7", "f8", "d1/f9"];
const DIRS: [&str; 3] = ["d0", "d1", "d0/d2"];

fn workload(seed: u64, n: usize) -> Vec<Op> {
    let mut r = Rng(seed | 1);
    let mut ops: Vec<Op> = DIRS.iter().map(|d| Op::Mkdir(d.to_string())).collect();
    let name = |r: &mut Rng| NAMES[r.below(NAMES.len() as u64) as usize].to_string();
    while ops.len() < n {
        let op = match r.below(24) {
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

fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

/// Runs one op; errors are part of the workload (both runs see the same ones).
fn run(fs: &Fs, op: &Op) {
    let file = |p: &str| resolve(fs, p).filter(|r| r.1 != Ino(0));
    let _ = match op {
        Op::Create(p) => resolve(fs, p).map(|(d, _, n)| fs.mknod(CTX, d, &n, libc::S_IFREG | 0o644, 0).map(|_| ())),
        Op::Mkdir(p) => resolve(fs, p).map(|(d, _, n)| fs.mkdir(CTX, d, &n, 0o755).map(|_| ())),
        Op::Write(p, off, len, s) => file(p).map(|f| fs.write(f.1, *off, &pattern(*len, *s), false).map(|_| ())),
        Op::Truncate(p, size) => {
            file(p).map(|f| fs.setattr(f.1, SetAttr { size: Some(*size), ..Default::default() }).map(|_| ()))
        }
        Op::Fallocate(p, mode, off, len) => file(p).map(|f| fs.fallocate(f.1, *mode, *off, *len)),
        Op::Rename(a, b, flags) => match (file(a), resolve(fs, b)) {
            (Some(s), Some(d)) => Some(fs.rename(CTX, s.0, &s.2, d.0, &d.2, *flags)),
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
            let m = fs.extents(f.1).ok()?.into_iter().find(|m| m.fblock.0 <= b && b < m.fblock.0 + m.len)?;
            Some(fs.memory_failure(m.pfn.plus(b - m.fblock.0), 1).map(|_| ()))
        }),
        Op::Sync => Some(fs.sync()),
        Op::Checkpoint => Some(fs.unmount()),
    };
}

/// What a path holds: kind, size, link count; and its bytes (None: unreadable).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    ino: Ino,
    kind: Kind,
    size: u64,
    nlink: u32,
    data: Option<Vec<u8>>,
}

type Snapshot = BTreeMap<String, Entry>;

fn snapshot(fs: &Fs) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![(Ino::ROOT, String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for e in fs.readdir(dir, 2, usize::MAX).unwrap() {
            let path = format!("{prefix}{}", String::from_utf8_lossy(&e.name));
            let a = fs.getattr(e.ino).unwrap();
            let data = (a.kind() == Kind::File).then(|| fs.read(e.ino, 0, a.size).ok()).flatten();
            if a.kind() == Kind::Dir {
                stack.push((e.ino, format!("{path}/")));
            }
            out.insert(path, Entry { ino: e.ino, kind: a.kind(), size: a.size, nlink: a.nlink, data });
        }
    }
    out
}

fn shape(s: &Snapshot) -> Vec<(&String, Kind, u64, u32)> {
    s.iter().map(|(p, e)| (p, e.kind, e.size, e.nlink)).collect()
}

/// Shared between the workload and the flush hook.
struct Sweep {
    snapshots: Vec<Snapshot>,
    /// Index into `snapshots` of the state before the running op.
    running: AtomicUsize,
    /// Index into `snapshots` of the state the last completed sync made durable.
    synced: AtomicI64,
    points: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Sweep {
    fn verify(&self, durable: &[u8], pending: &[(u64, Vec<u8>)]) {
        let point = self.points.fetch_add(1, Ordering::Relaxed);
        let crash = match point % 3 {
            0 => Crash::DropAll,
            1 => Crash::Keep(0x9e37_79b9_7f4a_7c15u64.rotate_left(point as u32)),
            _ => Crash::TearLast(point % 7),
        };
        let img = crash_image(durable, pending, crash);
        let before = self.running.load(Ordering::Relaxed);
        let synced = self.synced.load(Ordering::Relaxed) as usize;
        let fail =
            |msg: String| self.failures.lock().unwrap().push(format!("point {point} ({crash:?}), op {before}: {msg}"));
        let fs = match Fs::open(Arc::new(MemMedia::from_bytes(img)), Options::default()) {
            Ok(fs) => fs,
            Err(e) => return fail(format!("recovery failed: {e}")),
        };
        if let Err(e) = fs.check() {
            return fail(format!("check: {e}"));
        }
        let got = snapshot(&fs);
        // The namespace must be that after some op between the last sync and the running one.
        let Some(m) =
            (synced..=before + 1).rev().find(|&m| self.snapshots.get(m).is_some_and(|s| shape(s) == shape(&got)))
        else {
            return fail(format!("namespace matches no state between {synced} and {}: {:?}", before + 1, shape(&got)));
        };
        // Bytes fsync'd must survive: a file (inode) whose data is the same in every state
        // from the sync to the running op must read exactly those bytes.
        let durable = &self.snapshots[synced];
        for (path, e) in &got {
            let Some(d) = durable.get(path).filter(|d| d.ino == e.ino && e.kind == Kind::File) else { continue };
            let stable = self.snapshots[synced..=before + 1]
                .iter()
                .all(|s| s.values().filter(|x| x.ino == e.ino).all(|x| x.data == d.data));
            if stable && e.data != d.data {
                let hist: Vec<String> = self.snapshots[synced..=before + 1]
                    .iter()
                    .map(|s| {
                        let v: Vec<String> = s
                            .iter()
                            .filter(|(_, x)| x.ino == e.ino)
                            .map(|(p, x)| {
                                format!(
                                    "{p}:{}:{}",
                                    x.size,
                                    x.data.as_ref().map_or(0, |d| d.iter().map(|b| *b as u64).sum::<u64>())
                                )
                            })
                            .collect();
                        v.join(" ")
                    })
                    .collect();
                let gs = e.data.as_ref().map_or(0, |d| d.iter().map(|b| *b as u64).sum::<u64>());
                fail(format!(
                    "{path} (ino {}): synced bytes changed (state {m}); got size {} sum {gs}; history {hist:?}",
                    e.ino, e.size
                ));
            }
        }
    }
}

#[test]
fn every_crash_point_recovers_to_a_consistent_prefix() {
    let seed: u64 = std::env::var("DAXLINK_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let n: usize = std::env::var("DAXLINK_CRASH_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    eprintln!("crash sweep: seed {seed}, {n} ops");
    let ops = workload(seed, n);
    if let Ok(r) = std::env::var("DAXLINK_CRASH_SHOW") {
        let (a, b) = r.split_once(',').unwrap();
        let (a, b) = (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap());
        for (i, op) in ops.iter().enumerate().take(b + 1).skip(a) {
            eprintln!("op {i}: {op:?}");
        }
    }
    let fresh = MemMedia::new(POOL);
    Fs::mkfs(&fresh, CTX, [3; 16]).unwrap();
    let image = fresh.snapshot();

    // Pass 1: the state after every op.
    let fs = Fs::open(Arc::new(MemMedia::from_bytes(image.clone())), Options::default()).unwrap();
    let mut snapshots = vec![snapshot(&fs)];
    for op in &ops {
        run(&fs, op);
        snapshots.push(snapshot(&fs));
    }
    fs.check().unwrap();
    drop(fs);

    // Pass 2: the same ops on a media that checks every flush.
    let sweep = Arc::new(Sweep {
        snapshots,
        running: AtomicUsize::new(0),
        synced: AtomicI64::new(0),
        points: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
    });
    let media = Arc::new(CrashMedia::new(image));
    let fs = Fs::open(media.clone(), Options::default()).unwrap();
    let s2 = sweep.clone();
    media.set_hook(Box::new(move |durable, pending| s2.verify(durable, pending)));
    let start = std::time::Instant::now();
    for (i, op) in ops.iter().enumerate() {
        sweep.running.store(i, Ordering::Relaxed);
        run(&fs, op);
        if matches!(op, Op::Sync | Op::Checkpoint) {
            sweep.synced.store(i as i64 + 1, Ordering::Relaxed);
        }
    }
    let points = sweep.points.load(Ordering::Relaxed);
    let failures = sweep.failures.lock().unwrap();
    eprintln!("crash sweep: {points} crash points in {:?}, {} failures", start.elapsed(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {points} crash points failed; first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    assert!(points >= 1000, "only {points} crash points: the sweep must cover at least 1000");
}
