//! Micro-benchmarks of the core without FUSE (`fs-tests/bench/run` runs them): the page
//! table's associate/disassociate, extent lookup in maps of 10k and 1M extents, clone by
//! extent count and by bytes, and the memory-failure owner lookup in the reverse map.
//! Prints a Markdown table of medians; `--json PATH` writes the figures too, `--quick`
//! takes fewer samples.
//!
//! `cargo run --release --example core_bench -- [--quick] [--json PATH]`
//!
//! What to look for: a cold reverse-map lookup is O(log n), within 2x from 10k to 1M
//! extents; warm lookups (reverse map and extent map) grow more, because the 10k maps
//! fit in the cache and the 1M ones do not, so each level of the tree is a miss. A
//! clone's time grows with its extents; a clone of one extent grows with its pages only
//! through the page table, which takes one associate per page (as fs/dax.c does per
//! `struct page`).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use daxlink::arena::MmapMedia;
use daxlink::dax::{HolderOps, PageTable};
use daxlink::fs::extent::{Extent, ExtentMap};
use daxlink::fs::rmap::Rmap;
use daxlink::fs::{Ctx, Fs, Options};
use daxlink::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

/// One line of the table: the median of `ns` per `per`.
struct Row {
    bench: &'static str,
    case: String,
    ns: f64,
    per: &'static str,
    note: String,
}

/// How many samples each benchmark takes.
struct Samples {
    /// Passes over the whole page table.
    table: usize,
    /// Batches of `LOOKUP_BATCH` extent lookups.
    lookups: usize,
    /// Clones of one size (the 100k-extent clone takes a fifth of these).
    clones: usize,
    rmap_warm: usize,
    rmap_cold: usize,
}

const FULL: Samples = Samples { table: 5, lookups: 501, clones: 21, rmap_warm: 20_001, rmap_cold: 301 };
const QUICK: Samples = Samples { table: 3, lookups: 101, clones: 6, rmap_warm: 2_001, rmap_cold: 61 };
const LOOKUP_BATCH: u64 = 1000;

/// Median of the durations `sample` returns, each divided by `ops`, in nanoseconds.
fn median_ns(samples: usize, ops: u64, mut sample: impl FnMut() -> Result<Duration, String>) -> Result<f64, String> {
    let mut v = Vec::with_capacity(samples);
    for _ in 0..samples {
        v.push(sample()?.as_nanos() as f64 / ops as f64);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// A xorshift generator: the same sequence every run, and no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The page table in the order a mount or an unlink walks it: every page of a 1M-page
/// table (16 MiB, larger than a last-level cache) in turn.
fn page_table(s: &Samples, rows: &mut Vec<Row>) -> Result<(), String> {
    const PAGES: u64 = 1 << 20;
    let (a, b) = (Ino(10), Ino(11));
    let mut t = PageTable::new(Pfn(0), PAGES);
    let mut times: [Vec<f64>; 4] = Default::default();
    for _ in 0..s.table {
        let per = |d: Duration| d.as_nanos() as f64 / PAGES as f64;
        times[0].push(per(timed(|| (0..PAGES).for_each(|p| t.associate(Pfn(p), a, FileBlock(p), false)))));
        times[1].push(per(timed(|| (0..PAGES).for_each(|p| t.disassociate(Pfn(p), a)))));
        (0..PAGES).for_each(|p| t.associate(Pfn(p), a, FileBlock(p), false));
        times[2].push(per(timed(|| (0..PAGES).for_each(|p| t.associate(Pfn(p), b, FileBlock(p), true)))));
        if t.counts() != (0, PAGES) {
            return Err(format!("page table: after the shared associates, (owned, shared) = {:?}", t.counts()));
        }
        times[3].push(per(timed(|| (0..PAGES).for_each(|p| t.disassociate(Pfn(p), b)))));
        (0..PAGES).for_each(|p| t.disassociate(Pfn(p), a));
    }
    if t.counts() != (0, 0) || t.warnings() != 0 {
        return Err(format!("page table: left {:?} (owned, shared), {} warnings", t.counts(), t.warnings()));
    }
    let cases = [
        "associate: free -> owned",
        "disassociate: owned -> free",
        "associate(shared): owned -> shared, share 2",
        "disassociate: shared, share 2 -> 1",
    ];
    for (case, mut v) in cases.into_iter().zip(times) {
        v.sort_by(f64::total_cmp);
        rows.push(Row {
            bench: "page table",
            case: format!("{case} ({} pages in turn)", count(PAGES)),
            ns: v[v.len() / 2],
            per: "page",
            note: String::new(),
        });
    }
    Ok(())
}

/// `n` one-page extents at every other block, as `examples/populate` lays out a file.
fn extent_map(n: u64) -> ExtentMap {
    let mut m = ExtentMap::default();
    for k in 0..n {
        m.insert(Extent { fblock: FileBlock(2 * k), pfn: Pfn(1000 + k), pages: 1 });
    }
    m
}

fn extent_lookup(s: &Samples, rows: &mut Vec<Row>) -> Result<(), String> {
    let mut first = None;
    for n in [10_000u64, 1_000_000] {
        let m = extent_map(n);
        if m.len() as u64 != n {
            return Err(format!("extent map: {} extents, want {n}", m.len()));
        }
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let ns = median_ns(s.lookups, LOOKUP_BATCH, || {
            let keys: Vec<u64> = (0..LOOKUP_BATCH).map(|_| rng.below(n)).collect();
            let t = Instant::now();
            for &k in &keys {
                if black_box(m.lookup(FileBlock(2 * k))) != Some(Pfn(1000 + k)) {
                    return Err(format!("extent map of {n}: block {} maps elsewhere", 2 * k));
                }
            }
            Ok(t.elapsed())
        })?;
        let note = first.map_or(String::new(), |f: f64| format!("{:.2}x the 10,000-extent map", ns / f));
        first.get_or_insert(ns);
        rows.push(Row {
            bench: "extent lookup",
            case: format!("{} extents, a random mapped block", count(n)),
            ns,
            per: "lookup",
            note,
        });
    }
    Ok(())
}

/// A pool file, removed when dropped. Sparse, unlike one `daxlink mkfs` makes (which
/// preallocates): only the pages the benchmark writes cost memory.
struct TempPool(PathBuf);

impl Drop for TempPool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bytes an unprivileged user may still write under `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; all zeros is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the path is NUL-terminated and `st` is a statvfs to fill.
    (unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0).then(|| st.f_bavail * st.f_frsize)
}

/// What a clone benchmark's source file holds.
#[derive(Clone, Copy)]
enum Source {
    /// This many one-page extents.
    Extents(u64),
    /// One extent of this many MiB.
    Mib(u64),
}

/// Clones whole files through `Fs::clone_range`: `n` one-page extents for growing `n`,
/// then one extent of 64 MiB and of 1 GiB.
fn clone(s: &Samples, rows: &mut Vec<Row>) -> Result<(), String> {
    const POOL: u64 = 4 << 30;
    // The sources write 1.5 GiB; a store into a hole of a full filesystem is a SIGBUS.
    const NEEDS: u64 = 2 << 30;
    let dir = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let free = free_bytes(&dir).unwrap_or(0);
    if free < NEEDS {
        return Err(format!("clone bench: {} has {} MiB free, {} MiB needed", dir.display(), free >> 20, NEEDS >> 20));
    }
    let tmp = TempPool(dir.join(format!("daxlink-core-bench.{}.pool", std::process::id())));
    let io = |e: std::io::Error| format!("clone bench: {}: {e}", tmp.0.display());
    let pool_file = OpenOptions::new().read(true).write(true).create_new(true).open(&tmp.0).map_err(io)?;
    pool_file.set_len(POOL).map_err(io)?;
    let media = Arc::new(MmapMedia::new(&pool_file, POOL, true).map_err(io)?);
    let ctx = Ctx { uid: 0, gid: 0 };
    let e = |what: &'static str| move |e: daxlink::Error| format!("clone bench: {what}: {e}");
    Fs::mkfs(&*media, ctx, [0; 16]).map_err(e("mkfs"))?;
    let fs = Fs::open(media, Options::default()).map_err(e("open"))?;
    let file = |name: &str| {
        fs.mknod(ctx, Ino::ROOT, name.as_bytes(), libc::S_IFREG | 0o644, 0).map(|a| a.ino).map_err(e("mknod"))
    };
    let page = vec![0x5au8; PAGE_SIZE as usize];
    let mut sources = Vec::new();
    for kind in
        [Source::Extents(1), Source::Extents(1_000), Source::Extents(100_000), Source::Mib(64), Source::Mib(1024)]
    {
        let (src, case) = match kind {
            Source::Extents(n) => {
                let src = file(&format!("extents{n}"))?;
                for k in 0..n {
                    fs.write(src, 2 * k * PAGE_SIZE, &page, false).map_err(e("write"))?;
                }
                (src, format!("{} one-page extent{}", count(n), if n == 1 { "" } else { "s" }))
            }
            Source::Mib(mib) => {
                let src = file(&format!("mib{mib}"))?;
                fs.fallocate(src, 0, 0, mib << 20).map_err(e("fallocate"))?;
                let size = if mib >= 1024 { format!("{} GiB", mib >> 10) } else { format!("{mib} MiB") };
                (src, format!("1 extent of {size}"))
            }
        };
        sources.push((kind, src, case));
    }
    let mut per_extent_1k = f64::NAN;
    let mut whole_64m = f64::NAN;
    for (kind, src, case) in sources {
        let map = fs.extents(src).map_err(e("extents"))?;
        let want = match kind {
            Source::Extents(n) => n,
            Source::Mib(_) => 1,
        };
        if map.len() as u64 != want {
            return Err(format!("clone bench: the source of '{case}' has {} extents, want {want}", map.len()));
        }
        let pages: u64 = map.iter().map(|m| m.pages).sum();
        let size = fs.getattr(src).map_err(e("getattr"))?.size;
        // A page stays shared at share 1 once its clone is gone (fs/dax.c), so the
        // earlier sources' pages still count.
        let shared_before = fs.stats().pages_shared;
        let samples = if want >= 100_000 { s.clones.div_ceil(5) } else { s.clones };
        let ns = median_ns(samples, 1, || {
            let dst = file("dst")?;
            let t = Instant::now();
            let cloned = fs.clone_range(src, 0, dst, 0, 0).map_err(e("clone_range"))?;
            let took = t.elapsed();
            let shared = fs.stats().pages_shared - shared_before;
            if cloned != size || shared != pages {
                return Err(format!(
                    "clone bench: '{case}': {cloned} of {size} bytes cloned, {shared} of {pages} pages shared"
                ));
            }
            fs.unlink(Ino::ROOT, b"dst").map_err(e("unlink"))?;
            Ok(took)
        })?;
        let note = match kind {
            Source::Extents(1_000) => {
                per_extent_1k = ns / 1e3;
                format!("{} per extent", human(per_extent_1k))
            }
            Source::Extents(n) if n > 1_000 => {
                format!(
                    "{} per extent, {:.2}x the 1,000-extent clone's",
                    human(ns / n as f64),
                    ns / n as f64 / per_extent_1k
                )
            }
            Source::Mib(64) => {
                whole_64m = ns;
                String::new()
            }
            Source::Mib(mib) => format!("{:.2}x the 64 MiB clone ({}x the pages)", ns / whole_64m, mib / 64),
            Source::Extents(_) => String::new(),
        };
        rows.push(Row { bench: "clone_range", case, ns, per: "clone", note });
    }
    Ok(())
}

/// `n` extents of 4 pages each: every 100th is cloned into 4 more files (5 owners).
fn rmap(n: u64) -> Rmap {
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

/// Median nanoseconds of a shared-page owner lookup, and the owners it found. `cold`:
/// the caches are flushed before each lookup (by streaming through a buffer larger than
/// the last-level cache), as they are when a rare memory failure arrives; warm lookups
/// measure how much of the map the cache happens to hold, not the algorithm.
fn rmap_lookup(r: &Rmap, n: u64, samples: usize, cold: bool) -> (f64, usize) {
    let mut flush = vec![0u8; if cold { 64 << 20 } else { 0 }];
    let mut times = Vec::with_capacity(samples);
    let mut owners = 0;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for s in 0..samples {
        let i = rng.below(n / 100) * 100; // a cloned extent
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
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], owners)
}

fn rmap_lookups(s: &Samples, rows: &mut Vec<Row>) -> Result<(), String> {
    let mut first = [None, None];
    for n in [10_000u64, 1_000_000] {
        let t = Instant::now();
        let r = rmap(n);
        let built = t.elapsed();
        for (c, cold) in [false, true].into_iter().enumerate() {
            let (ns, owners) = rmap_lookup(&r, n, if cold { s.rmap_cold } else { s.rmap_warm }, cold);
            if owners != 5 {
                return Err(format!("rmap of {n} extents: a shared page has {owners} owners, want 5"));
            }
            let mut note = format!("{owners} owners; {} segments built in {built:.2?}", count(r.segments() as u64));
            if let Some(f) = first[c] {
                let ratio = ns / f;
                note += &format!("; {ratio:.2}x the 10,000-extent map");
                if cold {
                    note += if ratio <= 2.0 { " (O(log n): within 2x)" } else { " (NOT within 2x)" };
                }
            }
            first[c].get_or_insert(ns);
            rows.push(Row {
                bench: "rmap owner lookup (notify_failure)",
                case: format!("{} extents, shared page, {} cache", count(n), if cold { "cold" } else { "warm" }),
                ns,
                per: "lookup",
                note,
            });
        }
    }
    Ok(())
}

fn human(ns: f64) -> String {
    let (v, unit) = match ns {
        x if x >= 1e9 => (x / 1e9, "s"),
        x if x >= 1e6 => (x / 1e6, "ms"),
        x if x >= 1e3 => (x / 1e3, "µs"),
        x => (x, "ns"),
    };
    match v {
        v if v >= 100.0 => format!("{v:.0} {unit}"),
        v if v >= 10.0 => format!("{v:.1} {unit}"),
        v => format!("{v:.2} {unit}"),
    }
}

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn run(s: &Samples) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    page_table(s, &mut rows)?;
    extent_lookup(s, &mut rows)?;
    clone(s, &mut rows)?;
    rmap_lookups(s, &mut rows)?;
    Ok(rows)
}

fn main() -> ExitCode {
    let mut samples = &FULL;
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => samples = &QUICK,
            "--json" => match args.next() {
                Some(p) => json = Some(PathBuf::from(p)),
                None => {
                    eprintln!("core_bench: --json needs a PATH");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("core_bench: unknown argument '{a}' (use --quick, --json PATH)");
                return ExitCode::from(2);
            }
        }
    }
    let rows = match run(samples) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("core_bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("| benchmark | case | median | per | note |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} | {} | {} |", r.bench, r.case, human(r.ns), r.per, r.note);
    }
    if let Some(path) = json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "  {{\"benchmark\": {}, \"case\": {}, \"median_ns\": {:.1}, \"per\": {}, \"note\": {}}}",
                    json_str(r.bench),
                    json_str(&r.case),
                    r.ns,
                    json_str(r.per),
                    json_str(&r.note)
                )
            })
            .collect();
        if let Err(e) = std::fs::write(&path, format!("[\n{}\n]\n", items.join(",\n"))) {
            eprintln!("core_bench: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
