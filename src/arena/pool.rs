//! A pool on a file or device: creation, exclusive opening, mapping.
//!
//! A daemon holds an exclusive `flock` on its pool for as long as it runs, so a second
//! mount, a mkfs or an fsck cannot touch a pool in use, and a remount right after
//! `umount` waits until the old daemon has written its last checkpoint.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::Geometry;
use super::media::MmapMedia;
use crate::types::PAGE_SIZE;

pub struct Pool {
    /// Absolute path.
    pub path: PathBuf,
    pub media: Arc<MmapMedia>,
    /// Holds the lock for the life of the pool.
    _file: File,
}

/// How to lock a pool.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Exclusive and writable: a mount, mkfs, fsck --repair.
    Write,
    /// Shared and read-only: fsck, inspection; excluded by any writer.
    Read,
}

fn lock(file: &File, access: Access, wait: Duration) -> Result<(), String> {
    let op = match access {
        Access::Write => libc::LOCK_EX,
        Access::Read => libc::LOCK_SH,
    } | libc::LOCK_NB;
    let start = Instant::now();
    loop {
        // SAFETY: flock on an open descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(format!("cannot lock: {err}"));
        }
        if start.elapsed() >= wait {
            return Err("pool is in use (mounted, or another daxlink holds it)".into());
        }
        // The holder is a daemon finishing its unmount; poll until it lets go.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A line of /proc/self/mounts.
pub struct MountEntry {
    pub source: PathBuf,
    pub target: PathBuf,
    pub options: String,
}

/// A field of /proc/self/mounts or mountinfo: spaces, tabs, newlines and backslashes
/// are octal escapes.
fn unescape(f: &str) -> PathBuf {
    let b = f.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mounts of this process's namespace.
pub fn mounts() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (src, dst, _fstype, opts) = (f.next()?, f.next()?, f.next()?, f.next()?);
            Some(MountEntry { source: unescape(src), target: unescape(dst), options: opts.to_string() })
        })
        .collect()
}

/// The device number (`major:minor`) of the filesystem mounted at `target`, from
/// /proc/self/mountinfo: what a stat of the mount point would say, without asking the
/// filesystem (a daemon must not stat its own mount before it serves it).
pub fn mount_device(target: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.splitn(6, ' ').collect();
        (f.len() == 6 && unescape(f[4]) == target).then(|| f[2].to_string())
    })
}

/// Where `path` is mounted, if it is the source of a mount.
pub fn mounted_at(path: &Path) -> Option<PathBuf> {
    let abs = absolute(path);
    mounts().into_iter().find(|m| m.source == abs).map(|m| m.target)
}

fn media_len(file: &mut File) -> Result<u64, String> {
    file.seek(SeekFrom::End(0)).map_err(|e| format!("cannot size: {e}"))
}

/// Whether `path` already holds a daxlink superblock.
fn has_superblock(file: &mut File) -> bool {
    let mut sb = vec![0u8; PAGE_SIZE as usize];
    let Ok(len) = media_len(file) else {
        return false;
    };
    file.seek(SeekFrom::Start(0)).is_ok() && file.read_exact(&mut sb).is_ok() && Geometry::decode(&sb, len).is_ok()
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Pool {
    /// Creates (or, with `force`, reformats) a pool. A regular file is sized to `size`
    /// and preallocated (`preallocate`: a store into a hole could find the filesystem
    /// under it full); a device keeps its own size. Nothing is changed, and no file
    /// is left behind, when the pool cannot be made.
    pub fn create(path: &Path, size: u64, force: bool, wait: Duration) -> Result<Pool, String> {
        let existed = path.exists();
        let r = Pool::create_inner(path, size, force, wait);
        if r.is_err() && !existed {
            let _ = std::fs::remove_file(path);
        }
        r
    }

    fn create_inner(path: &Path, size: u64, force: bool, wait: Duration) -> Result<Pool, String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot open: {e}"))?;
        if let Some(at) = mounted_at(path) {
            return Err(format!("pool is mounted at {}", at.display()));
        }
        lock(&file, Access::Write, wait)?;
        if has_superblock(&mut file) && !force {
            return Err("already holds a daxlink pool (use --force to overwrite it)".into());
        }
        let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
        let device = meta.file_type().is_block_device();
        let len = if device { media_len(&mut file)? } else { size / PAGE_SIZE * PAGE_SIZE };
        // Refuse a bad size before touching the file.
        Geometry::for_size(len, [0; 16]).map_err(|e| e.to_string())?;
        if !device {
            file.set_len(0).map_err(|e| format!("cannot truncate: {e}"))?;
            file.set_len(len).map_err(|e| format!("cannot size to {len} bytes: {e}"))?;
            preallocate(&file, len)?;
        }
        let media = MmapMedia::new(&file, len, true).map_err(|e| format!("cannot map: {e}"))?;
        Ok(Pool { path: absolute(path), media: Arc::new(media), _file: file })
    }

    /// Opens an existing pool that is not mounted, waiting up to `wait` for a daemon
    /// that is finishing its unmount to let go of it.
    pub fn open(path: &Path, access: Access, wait: Duration) -> Result<Pool, String> {
        if let Some(at) = mounted_at(path) {
            return Err(format!("pool is mounted at {}", at.display()));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(access == Access::Write)
            .open(path)
            .map_err(|e| format!("cannot open: {e}"))?;
        lock(&file, access, wait)?;
        let len = media_len(&mut file)?;
        if len < PAGE_SIZE {
            return Err(format!("pool is truncated: {len} bytes, smaller than a superblock"));
        }
        let media = MmapMedia::new(&file, len, access == Access::Write).map_err(|e| format!("cannot map: {e}"))?;
        Ok(Pool { path: absolute(path), media: Arc::new(media), _file: file })
    }
}

/// 16 random bytes for a pool's uuid.
pub fn random_uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    if File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut u)).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        u = t.to_le_bytes();
    }
    u
}

/// Gives a pool file all its blocks now. A store into a hole of a mapped file makes a
/// block on the spot: should the filesystem under the pool be full then, the store
/// faults with SIGBUS and a good page is failed (`fault`); preallocated, it cannot run
/// out. It also
/// spares each first write to a page the filesystem's block allocation. Filesystems
/// without fallocate keep the file sparse (said in the log).
fn preallocate(file: &File, len: u64) -> Result<(), String> {
    // SAFETY: fallocate on an open descriptor; it touches no memory of ours.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => {
            log::warn!("the pool file stays sparse: its filesystem cannot preallocate ({e})");
            Ok(())
        }
        _ => Err(format!("cannot preallocate {len} bytes: {e}")),
    }
}
