//! Read-only verbs: `stat` (through the mount's ioctl) and `fsck`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;

use super::fail;
use crate::arena::{Access, Pool};
use crate::fs::fsck;
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
const FSCK_CORRECTED: u8 = 1;
const FSCK_ERRORS_LEFT: u8 = 4;
const FSCK_OPERATIONAL: u8 = 8;

pub fn fsck(path: &Path, repair: bool, json: bool) -> ExitCode {
    let access = if repair { Access::Write } else { Access::Read };
    let pool = match Pool::open(path, access, super::LOCK_WAIT) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("daxlink: {}: {e}", path.display());
            return ExitCode::from(FSCK_OPERATIONAL);
        }
    };
    let report = match fsck::fsck(pool.media.clone(), repair) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("daxlink: {}: {e}", path.display());
            return ExitCode::from(FSCK_ERRORS_LEFT);
        }
    };
    if json {
        let list = |v: &[String]| v.iter().map(|s| super::failure::json_str(s)).collect::<Vec<_>>().join(",");
        let problems: Vec<String> = report
            .problems
            .iter()
            .map(|p| format!("{{\"kind\":\"{}\",\"detail\":{}}}", p.kind(), super::failure::json_str(&p.to_string())))
            .collect();
        let left: Vec<String> = report.left.iter().map(|p| p.to_string()).collect();
        println!(
            "{{\"pool\":{},\"problems\":[{}],\"repairs\":[{}],\"left\":[{}]}}",
            super::failure::json_str(&pool.path.display().to_string()),
            problems.join(","),
            list(&report.repairs),
            list(&left)
        );
    } else {
        for p in &report.problems {
            println!("{}: {p}", pool.path.display());
        }
        for r in &report.repairs {
            println!("{}: repaired: {r}", pool.path.display());
        }
        if report.left.is_empty() {
            let s = &report.stats;
            println!(
                "{}: clean, {} inodes, {}/{} pages used",
                pool.path.display(),
                s.inodes,
                s.pages_used,
                s.pages_total
            );
        }
    }
    if !report.left.is_empty() {
        ExitCode::from(FSCK_ERRORS_LEFT)
    } else if !report.problems.is_empty() {
        ExitCode::from(FSCK_CORRECTED)
    } else {
        ExitCode::SUCCESS
    }
}
