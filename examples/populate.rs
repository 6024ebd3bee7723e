//! Makes a pool full of files through the core API, without FUSE, for the scaling
//! benchmark (`fs-tests/bench/run` mounts, stats and fscks what it makes): `--files N`
//! regular files, each with `--extents M` one-page extents.
//!
//! `cargo run --release --example populate -- POOL --size 10G --files N --extents M`
//!
//! POOL is created or reformatted as `daxlink mkfs --force` does. The files are
//! `/dNNNN/fNNNNNN`: directory `d0000` holds files `f000000`..`f009999`, `d0001` the
//! next 10,000, and so on (the names `metaops stat DIR COUNT` expects). A file's extent
//! `k` is one page at file block `2k`: the hole between blocks keeps every write a
//! separate extent wherever the allocator puts its page.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use daxlink::arena::pool::random_uuid;
use daxlink::arena::{Geometry, Pool};
use daxlink::fs::{Ctx, Fs, Options};
use daxlink::types::{Ino, PAGE_SIZE};

/// Entries per directory: a directory of 100k entries is not what the benchmark asks
/// about, a namespace of 100k files is.
const DIR_ENTRIES: u64 = 10_000;

#[derive(Parser)]
#[command(name = "populate", about = "Fill a daxlink pool with files of many extents (no FUSE)")]
struct Args {
    /// Pool file to create (or reformat).
    pool: PathBuf,
    /// Pool size, e.g. 512M, 10G.
    #[arg(long, default_value = "10G", value_parser = parse_size)]
    size: u64,
    /// Regular files to make.
    #[arg(long)]
    files: u64,
    /// One-page extents per file.
    #[arg(long, default_value_t = 1)]
    extents: u64,
}

/// `4096`, `512K`, `64M`, `10G`, `1T`, as `daxlink mkfs --size` takes them.
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&s[..s.len() - 1], 10),
        Some(b'M') => (&s[..s.len() - 1], 20),
        Some(b'G') => (&s[..s.len() - 1], 30),
        Some(b'T') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size (a number, optionally with K, M, G or T)"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size '{s}' is too large"))
}

/// What `populate` made.
struct Made {
    dirs: u64,
    inodes: u64,
    pages_used: u64,
    pages_total: u64,
}

fn populate(path: &Path, size: u64, files: u64, extents: u64) -> Result<Made, String> {
    // Refuse what cannot fit before formatting anything.
    let geo = Geometry::for_size(size, [0; 16]).map_err(|e| e.to_string())?;
    let pages = files.checked_mul(extents).ok_or("--files x --extents is too large")?;
    if pages > geo.data_pages() {
        return Err(format!(
            "{files} files x {extents} extents need {pages} data pages; a pool of {size} bytes has {}",
            geo.data_pages()
        ));
    }
    // populate always reformats: never a device or anything else that is not a file.
    if path.symlink_metadata().is_ok_and(|m| !m.file_type().is_file()) {
        return Err("not a regular file".into());
    }
    let pool = Pool::create(path, size, true, Duration::from_secs(10))?;
    // SAFETY: getuid/getgid cannot fail.
    let ctx = unsafe { Ctx { uid: libc::getuid(), gid: libc::getgid() } };
    Fs::mkfs(&*pool.media, ctx, random_uuid()).map_err(|e| format!("mkfs: {e}"))?;
    let fs = Fs::open(pool.media.clone(), Options::default()).map_err(|e| format!("open: {e}"))?;
    let page = vec![0x5au8; PAGE_SIZE as usize];
    let dirs = files.div_ceil(DIR_ENTRIES);
    for d in 0..dirs {
        let dname = format!("d{d:04}");
        let dir = fs
            .mkdir(ctx, Ino::ROOT, dname.as_bytes(), libc::S_IFDIR | 0o755)
            .map_err(|e| format!("mkdir /{dname}: {e}"))?
            .ino;
        for f in 0..DIR_ENTRIES.min(files - d * DIR_ENTRIES) {
            let name = format!("f{f:06}");
            let at = |e| format!("/{dname}/{name}: {e}");
            let ino = fs.mknod(ctx, dir, name.as_bytes(), libc::S_IFREG | 0o644, 0).map_err(at)?.ino;
            for k in 0..extents {
                fs.write(ino, 2 * k * PAGE_SIZE, &page, false).map_err(at)?;
            }
        }
    }
    fs.unmount().map_err(|e| format!("unmount: {e}"))?;
    let s = fs.stats();
    Ok(Made { dirs, inodes: s.inodes, pages_used: s.pages_used, pages_total: geo.pages_total })
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if e.use_stderr() => {
            // One line, as daxlink's own command line reports a bad argument: clap's
            // message up to its usage, with a list of missing arguments folded in.
            let text = e.to_string();
            let msg = text.split("\n\n").next().unwrap_or("bad arguments");
            let msg: Vec<&str> = msg.lines().map(str::trim).collect();
            eprintln!("populate: {}", msg.join(" ").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let t = Instant::now();
    match populate(&args.pool, args.size, args.files, args.extents) {
        Ok(m) => {
            println!(
                "populate: {}: {} files in {} director{}, {} extents, {} inodes, {} of {} pool pages used as data, {:.1} s",
                args.pool.display(),
                args.files,
                m.dirs,
                if m.dirs == 1 { "y" } else { "ies" },
                args.files * args.extents,
                m.inodes,
                m.pages_used,
                m.pages_total,
                t.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("populate: {}: {e}", args.pool.display());
            ExitCode::FAILURE
        }
    }
}
