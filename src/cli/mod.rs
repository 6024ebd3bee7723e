//! The `daxlink` command line.

mod daemon;
mod docs;
mod failure;
mod inspect;
mod logging;
mod reflink;
mod tree;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::arena::Pool;
use crate::arena::pool::random_uuid;
use crate::fs::{Ctx, Fs};
use crate::types::PAGE_SIZE;

#[derive(Parser)]
#[command(name = "daxlink", version, about = "A reflink filesystem on a pmem-backed arena")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make a pool on a file (preallocated) or a device.
    Mkfs {
        /// Pool size for a regular file, e.g. 512M, 4G (a device keeps its size).
        #[arg(long, default_value = "1G", value_parser = parse_size)]
        size: u64,
        /// Overwrite an existing daxlink pool.
        #[arg(long)]
        force: bool,
        pool: PathBuf,
    },
    /// Mount a pool (also what `mount -t fuse.daxlink POOL MNT` runs, as `daxlink POOL MNT -o OPTS`).
    Mount {
        pool: PathBuf,
        mountpoint: PathBuf,
        /// Stay in the foreground.
        #[arg(short)]
        foreground: bool,
        /// Comma-separated mount options.
        #[arg(short, value_name = "OPTS")]
        o: Vec<String>,
    },
    /// Show page usage of a mounted filesystem.
    Stat {
        mountpoint: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check a pool that is not mounted: exit 0 clean, 1 errors corrected, 4 errors left, 8 could not check.
    Fsck {
        pool: PathBuf,
        /// Fix what is safe: link counts, unreachable inodes (to /lost+found), orphans.
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// Clone SRC into DST sharing every page (`cp --reflink=always`); fails if any page was copied.
    /// With -r (or -a): a whole tree, with what `cp -a` preserves.
    #[command(group(clap::ArgGroup::new("tree").args(["recursive", "archive"]).multiple(true)))]
    Clone {
        src: PathBuf,
        dst: PathBuf,
        /// Clone a directory tree as `cp -a` copies it (into DST/NAME when DST is a directory).
        #[arg(short, long, conflicts_with_all = ["src_offset", "dst_offset", "len"])]
        recursive: bool,
        /// The same as -r: `cp -a`'s attributes are always kept.
        #[arg(short, long, conflicts_with_all = ["src_offset", "dst_offset", "len"])]
        archive: bool,
        /// With -r: say what would be cloned, and change nothing.
        #[arg(long, requires = "tree")]
        dry_run: bool,
        /// With -r: name every entry cloned.
        #[arg(short, long, requires = "tree")]
        verbose: bool,
        /// With -r: clone file by file from here, never in batches inside the daemon
        /// (what a caller other than root gets).
        #[arg(long, requires = "tree")]
        per_file: bool,
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Share DST's range with SRC's if their bytes are identical (FIDEDUPERANGE).
    Dedupe {
        src: PathBuf,
        dst: PathBuf,
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Give FILE private copies of its shared pages in a range.
    Unshare {
        file: PathBuf,
        #[arg(long, default_value_t = 0, value_parser = parse_size)]
        offset: u64,
        /// 0: to EOF.
        #[arg(long, default_value_t = 0, value_parser = parse_size)]
        len: u64,
    },
    /// List a file's extents: file offset, length, first arena page, shared.
    Extents {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Make arena pages fail as a memory error would (root only).
    InjectError {
        mountpoint: PathBuf,
        #[arg(long, conflicts_with_all = ["file", "offset"], required_unless_present = "file")]
        pfn: Option<u64>,
        #[arg(long, requires = "offset")]
        file: Option<PathBuf>,
        #[arg(long, value_parser = parse_size)]
        offset: Option<u64>,
        /// Bytes to fail (default one page).
        #[arg(long, default_value_t = PAGE_SIZE, value_parser = parse_size)]
        len: u64,
    },
    /// List failed pages and the files that own them.
    Poison {
        mountpoint: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show the owner state of arena page PFN, from a mount or an unmounted pool.
    Page {
        target: PathBuf,
        pfn: u64,
        #[arg(long)]
        json: bool,
    },
    /// Write daxlink.8 or a shell's completions into DIR (`make install` runs it).
    #[command(hide = true)]
    Generate { what: docs::Doc, dir: PathBuf },
}

#[derive(clap::Args)]
struct RangeArgs {
    #[arg(long, value_parser = parse_size)]
    src_offset: Option<u64>,
    #[arg(long, value_parser = parse_size)]
    dst_offset: Option<u64>,
    /// 0 or absent: to the source's EOF.
    #[arg(long, value_parser = parse_size)]
    len: Option<u64>,
}

impl RangeArgs {
    fn is_whole(&self) -> bool {
        self.src_offset.is_none() && self.dst_offset.is_none() && self.len.is_none()
    }
    fn range(&self) -> reflink::Range {
        reflink::Range {
            src_offset: self.src_offset.unwrap_or(0),
            dst_offset: self.dst_offset.unwrap_or(0),
            len: self.len.unwrap_or(0),
        }
    }
}

/// Parses `4096`, `512K`, `64M`, `2G`, `1T`.
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown size suffix '{c}' (use K, M, G or T)")),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size '{s}' is too large"))
}

/// How long a verb waits for a daemon that is finishing its unmount to let go of the
/// pool (its last checkpoint takes milliseconds; this bounds a stuck one).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Prints a one-line error and gives the exit code.
fn fail(what: &std::path::Path, why: impl std::fmt::Display) -> ExitCode {
    eprintln!("daxlink: {}: {why}", what.display());
    ExitCode::FAILURE
}

/// mount.fuse3 runs `daxlink POOL MNT -o OPTS`: without a verb, it is a mount.
fn with_verb(mut args: Vec<OsString>) -> Vec<OsString> {
    let cmd = <Cli as clap::CommandFactory>::command();
    if let Some(first) = args.get(1).map(|a| a.to_string_lossy().into_owned())
        && !first.starts_with('-')
        && first != "help"
        && cmd.find_subcommand(&first).is_none()
    {
        args.insert(1, "mount".into());
    }
    args
}

pub fn main() -> ExitCode {
    logging::init();
    let cli = match Cli::try_parse_from(with_verb(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // One line: clap's first, without its "error: " prefix.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("daxlink: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    if !matches!(cli.cmd, Cmd::Mount { .. }) {
        // A listing piped into `head` ends quietly when the reader goes, as ls does,
        // instead of failing to print. (Not the daemon: its writes must never kill it.)
        // SAFETY: setting a signal's disposition to its default.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.cmd {
        Cmd::Mkfs { size, force, pool } => mkfs(&pool, size, force),
        Cmd::Mount { pool, mountpoint, foreground, o } => daemon::mount(&pool, &mountpoint, foreground, &o.join(",")),
        Cmd::Stat { mountpoint, json } => inspect::stat(&mountpoint, json),
        Cmd::Fsck { pool, repair, json } => inspect::fsck(&pool, repair, json),
        Cmd::Clone { src, dst, recursive, archive, dry_run, verbose, per_file, range } => {
            if recursive || archive {
                tree::clone_tree(&src, &dst, tree::Opts { dry_run, verbose, per_file })
            } else {
                reflink::clone(&src, &dst, range.range(), range.is_whole())
            }
        }
        Cmd::Dedupe { src, dst, range } => reflink::dedupe(&src, &dst, range.range()),
        Cmd::Unshare { file, offset, len } => reflink::unshare(&file, offset, len),
        Cmd::Extents { file, json } => reflink::extents(&file, json),
        Cmd::Page { target, pfn, json } => reflink::page(&target, pfn, json),
        Cmd::InjectError { mountpoint, pfn, file, offset, len } => {
            let target = match (pfn, file, offset) {
                (Some(p), _, _) => failure::Target::Pfn(p),
                (None, Some(f), Some(o)) => failure::Target::File(f, o),
                _ => return fail(&mountpoint, "give --pfn N, or --file F --offset O"),
            };
            failure::inject(&mountpoint, target, len)
        }
        Cmd::Poison { mountpoint, json } => failure::poison(&mountpoint, json),
        Cmd::Generate { what, dir } => docs::generate(what, &dir),
    }
}

fn mkfs(path: &std::path::Path, size: u64, force: bool) -> ExitCode {
    let pool = match Pool::create(path, size, force, LOCK_WAIT) {
        Ok(p) => p,
        Err(e) => return fail(path, e),
    };
    // SAFETY: getuid/getgid cannot fail.
    let ctx = unsafe { Ctx { uid: libc::getuid(), gid: libc::getgid() } };
    if let Err(e) = Fs::mkfs(&*pool.media, ctx, random_uuid()) {
        return fail(path, e);
    }
    println!("daxlink: made a {} MiB pool at {}", crate::arena::Media::len(&*pool.media) >> 20, pool.path.display());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_refuse_garbage() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn a_verbless_command_line_is_a_mount() {
        let a = with_verb(vec!["daxlink".into(), "p.pool".into(), "/m".into()]);
        assert_eq!(a[1], "mount");
        let b = with_verb(vec!["daxlink".into(), "stat".into(), "/m".into()]);
        assert_eq!(b[1], "stat");
    }
}
