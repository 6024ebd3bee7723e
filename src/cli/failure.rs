//! Memory-failure verbs: `inject-error` (root only) and `poison`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::fail;
use super::reflink::{extents_of, ioctl_rw, not_daxlink, write_back_all};
use crate::fuse::ioctl;
use crate::types::{PAGE_SIZE, Pfn};

/// What to fail: arena pages, or the pages under a file's byte range.
pub enum Target {
    Pfn(u64),
    File(PathBuf, u64),
}

/// The pfn runs under `[off, off + len)` of an open file.
fn file_pages(f: &File, off: u64, len: u64) -> Result<Vec<(Pfn, u64)>, String> {
    let maps = extents_of(f)?;
    let mut runs: Vec<(Pfn, u64)> = Vec::new();
    let mut b = off / PAGE_SIZE;
    let last = (off + len.max(1)).div_ceil(PAGE_SIZE);
    while b < last {
        let Some(m) = maps.iter().find(|m| m.fblock.0 <= b && b < m.fblock.0 + m.pages) else {
            return Err(format!("offset {} is in a hole: there is no page to fail", b * PAGE_SIZE));
        };
        let n = (m.fblock.0 + m.pages).min(last) - b;
        runs.push((m.pfn.plus(b - m.fblock.0), n));
        b += n;
    }
    Ok(runs)
}

pub fn inject(mnt: &Path, target: Target, len: u64) -> ExitCode {
    let run = || -> Result<[u64; 3], String> {
        let (f, runs) = match &target {
            Target::Pfn(p) => {
                (File::open(mnt).map_err(|e| e.to_string())?, vec![(Pfn(*p), len.max(1).div_ceil(PAGE_SIZE))])
            }
            Target::File(path, off) => {
                let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let runs = file_pages(&f, *off, len)?;
                (f, runs)
            }
        };
        let mut total = [0u64; 3];
        for (pfn, n) in runs {
            let mut buf = ioctl::bytes(&[pfn.0, n], ioctl::INJECT_LEN);
            ioctl_rw(&f, ioctl::DAXLINK_IOC_INJECT, &mut buf).map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) => "inject-error needs root (Operation not permitted)".to_string(),
                Some(libc::EINVAL) => format!("pfn {pfn} (+{n}) is not inside the pool"),
                _ => not_daxlink(e),
            })?;
            let w = ioctl::words(&buf);
            for i in 0..3 {
                total[i] += w[i];
            }
        }
        Ok(total)
    };
    match run() {
        Ok([pages, owners, calls]) => {
            println!("daxlink: failed {pages} page(s); {owners} owner(s) found; holder consulted {calls} time(s)");
            ExitCode::SUCCESS
        }
        Err(e) => fail(mnt, e),
    }
}

/// The error of a verb that reads the reverse map, which only root may.
pub(super) fn needs_root(verb: &str, e: std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => {
            format!("{verb} reads which file owns which page: it needs root (Operation not permitted)")
        }
        _ => not_daxlink(e),
    }
}

/// Inode number -> one path under `dir` (symlinks are not followed).
fn paths_by_inode(dir: &Path, out: &mut HashMap<u64, PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        out.entry(meta.ino()).or_insert_with(|| e.path());
        if meta.is_dir() {
            paths_by_inode(&e.path(), out);
        }
    }
}

/// A JSON string literal.
pub(super) fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub fn poison(mnt: &Path, json: bool) -> ExitCode {
    let run = || -> Result<Vec<(Pfn, u64, u64)>, String> {
        let f = File::open(mnt).map_err(|e| e.to_string())?;
        // Cached writes may yet heal a bad page or move a block off it.
        write_back_all(&f);
        let mut rows = Vec::new();
        let mut at = ioctl::PoisonCursor::default();
        loop {
            let mut buf = ioctl::bytes(&[at.pfn.0, at.owner], ioctl::POISON_LEN);
            ioctl_rw(&f, ioctl::DAXLINK_IOC_POISON, &mut buf).map_err(|e| needs_root("poison", e))?;
            let (batch, next) = ioctl::decode_poison(&buf).ok_or("malformed poison reply")?;
            rows.extend(batch.into_iter().map(|(p, i, o)| (p, i.0, o)));
            match next {
                Some(n) => at = n,
                None => return Ok(rows),
            }
        }
    };
    let rows = match run() {
        Ok(r) => r,
        Err(e) => return fail(mnt, e),
    };
    let mut paths = HashMap::new();
    paths_by_inode(mnt, &mut paths);
    let path = |ino: u64| paths.get(&ino).map_or(format!("(unlinked inode {ino})"), |p| p.display().to_string());
    let mut pages: Vec<(Pfn, Vec<(String, u64)>)> = Vec::new();
    for (pfn, ino, off) in rows {
        if pages.last().is_none_or(|p| p.0 != pfn) {
            pages.push((pfn, Vec::new()));
        }
        if ino != 0
            && let Some(p) = pages.last_mut()
        {
            p.1.push((path(ino), off));
        }
    }
    if json {
        let items: Vec<String> = pages
            .iter()
            .map(|(pfn, owners)| {
                let o: Vec<String> =
                    owners.iter().map(|(p, off)| format!("{{\"path\":{},\"offset\":{off}}}", json_str(p))).collect();
                format!("{{\"pfn\":{pfn},\"owners\":[{}]}}", o.join(","))
            })
            .collect();
        println!("[{}]", items.join(","));
    } else {
        // One owner a line: a page shared by thousands of files stays readable.
        for (pfn, owners) in &pages {
            match owners.len() {
                0 => println!("pfn {pfn}: no owners"),
                n => println!("pfn {pfn}: {n} owner(s)"),
            }
            for (p, off) in owners {
                println!("  {p}@{off}");
            }
        }
    }
    ExitCode::SUCCESS
}
