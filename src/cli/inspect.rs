//! Read-only verbs: `stat` (through the mount's ioctl) and `fsck`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;

use super::fail;
use crate::arena::{Access, Pool};
use crate::fs::{Fs, Options};
use crate::fuse::ioctl;

pub fn stat(mnt: &Path, json: bool) -> ExitCode {
    let f = match File::open(mnt) {
        Ok(f) => f,
        Err(e) => return fail(mnt, e),
    };
    let mut buf = [0u8; ioctl::STATS_LEN];
    // SAFETY: the buffer is as long as the size encoded in the ioctl number.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), ioctl::DAXLINK_IOC_STATS as _, buf.as_mut_ptr()) };
    if r != 0 {
        return fail(mnt, format!("not a daxlink mount ({})", std::io::Error::last_os_error()));
    }
    let Some(s) = ioctl::decode_stats(&buf) else {
        return fail(mnt, "malformed statistics");
    };
    let rows = [
        ("block_size", s.block_size),
        ("pages_total", s.pages_total),
        ("pages_used", s.pages_used),
        ("pages_free", s.pages_free),
        ("pages_shared", s.pages_shared),
        ("warnings", s.warnings),
        ("inodes", s.inodes),
        ("log_bytes", s.log_bytes),
        ("generation", s.generation),
        ("pages_bad", s.pages_bad),
        ("holder_calls", s.holder_calls),
    ];
    if json {
        let body: Vec<String> = rows.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        println!("{{{}}}", body.join(","));
    } else {
        for (k, v) in rows {
            println!("{k:<13} {v}");
        }
    }
    ExitCode::SUCCESS
}

/// fsck(8) exit codes.
const FSCK_ERRORS_LEFT: u8 = 4;
const FSCK_OPERATIONAL: u8 = 8;

pub fn fsck(path: &Path) -> ExitCode {
    let pool = match Pool::open(path, Access::Read, super::LOCK_WAIT) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("daxlink: {}: {e}", path.display());
            return ExitCode::from(FSCK_OPERATIONAL);
        }
    };
    let opts = Options { read_only: true, ..Options::default() };
    let fs = match Fs::open(pool.media.clone(), opts) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("daxlink: {}: {e}", path.display());
            return ExitCode::from(FSCK_ERRORS_LEFT);
        }
    };
    match fs.check() {
        Ok(()) => {
            let s = fs.stats();
            println!(
                "{}: clean, {} inodes, {}/{} pages used",
                pool.path.display(),
                s.inodes,
                s.pages_used,
                s.pages_total
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("daxlink: {}: {e}", path.display());
            ExitCode::from(FSCK_ERRORS_LEFT)
        }
    }
}
