//! Micro-benchmark of the memory-failure owner lookup (`make bench` runs it): the time
//! `notify_failure` takes to find every owner of a shared page in a reverse map of
//! 10,000 and of 1,000,000 extents. The lookup must be O(log n + owners): the two medians
//! should be within 2x.
//!
//! `cargo run --release --example rmap_bench`

use std::hint::black_box;
use std::time::Instant;

use daxlink::dax::HolderOps;
use daxlink::fs::rmap::Rmap;
use daxlink::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

/// `n` extents of 4 pages each: every 100th is cloned into 4 more files (5 owners).
fn build(n: u64) -> Rmap {
    let mut r = Rmap::default();
    for i in 0..n {
        let pfn = Pfn(1000 + i * 8);
        r.add(pfn, 4, Ino(10 + i / 64), FileBlock((i % 64) * 4));
        if i % 100 == 0 {
            for c in 0..4 {
                r.add(pfn, 4, Ino(1_000_000 + i * 4 + c), FileBlock(0));
            }
        }
    }
    r
}

/// Median nanoseconds of a shared-page lookup, and the owners it found. `cold`: the
/// caches are flushed before each lookup (by streaming through a buffer larger than the
/// last-level cache), as they are when a rare memory failure arrives; warm lookups
/// measure how much of the map the cache happens to hold, not the algorithm.
fn measure(r: &Rmap, n: u64, cold: bool) -> (f64, usize) {
    let mut flush = vec![0u8; if cold { 64 << 20 } else { 0 }];
    let samples = if cold { 301 } else { 20_001 };
    let mut times = Vec::new();
    let mut owners = 0;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for s in 0..samples {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % (n / 100)) * 100; // a cloned extent
        let pfn = Pfn(1000 + i * 8 + 2);
        if cold {
            for b in flush.iter_mut().step_by(64) {
                *b = b.wrapping_add(s as u8);
            }
            black_box(&flush);
        }
        let t = Instant::now();
        let found = black_box(r.notify_failure(pfn.offset(), PAGE_SIZE, 0));
        times.push(t.elapsed().as_nanos() as f64);
        owners = found.len();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (times[times.len() / 2], owners)
}

fn main() {
    let mut cold = Vec::new();
    for n in [10_000u64, 1_000_000] {
        let t = Instant::now();
        let r = build(n);
        let built = t.elapsed();
        for c in [false, true] {
            let (median, owners) = measure(&r, n, c);
            println!(
                "rmap lookup, {n:>9} extents ({} segments, built in {built:.2?}), {}: median {median:.0} ns for {owners} owners ({:.0} ns per owner)",
                r.segments(),
                if c { "cold cache" } else { "warm cache" },
                median / owners as f64
            );
            if c {
                cold.push(median);
            }
        }
    }
    let ratio = cold[1] / cold[0];
    println!(
        "cold lookups, 1,000,000 vs 10,000 extents: {ratio:.2}x ({})",
        if ratio <= 2.0 { "O(log n): within 2x" } else { "NOT within 2x" }
    );
}
