//! `daxlink mount`: the daemon. Without `-f` it forks first (before any thread exists),
//! and the parent exits only once the child reports the filesystem mounted or failed,
//! so `mount -t fuse.daxlink` returns with the filesystem ready. A detached daemon logs
//! to the system log (and to `-o log=PATH`); `-f` logs to stderr.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use super::reflink::ioctl_rw;
use super::{LOCK_WAIT, fail, logging};
use crate::arena::pool::{mounted_at, mounts};
use crate::arena::{Access, Pool, fault};
use crate::fs::Fs;
use crate::fuse::ioctl;
use crate::fuse::{MountConfig, mount as fuse_mount};

pub fn mount(pool: &Path, mountpoint: &Path, foreground: bool, opts: &str) -> ExitCode {
    let pool_abs = match std::fs::canonicalize(pool) {
        Ok(p) => p,
        Err(e) => return fail(pool, format!("cannot open: {e}")),
    };
    let mnt_abs = match std::fs::canonicalize(mountpoint) {
        Ok(p) if p.is_dir() => p,
        Ok(_) => return fail(mountpoint, "mount point is not a directory"),
        Err(e) => return fail(mountpoint, format!("mount point: {e}")),
    };
    let mut cfg = MountConfig::new(pool_abs, mnt_abs);
    if let Err(e) = cfg.parse_options(opts) {
        return fail(pool, e);
    }
    if cfg.remount {
        return match remount(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(mountpoint, e),
        };
    }
    if let Some(first) = mounted_at(&cfg.pool) {
        return match bind(&first, &cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(mountpoint, e),
        };
    }
    if foreground {
        return match serve(&cfg, opts, false, |_| {}) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(pool, e),
        };
    }
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return fail(pool, format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the descriptors are fresh and owned once each.
    let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (clap and env_logger start none).
    match unsafe { libc::fork() } {
        -1 => fail(pool, format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(rx);
            // SAFETY: setsid in the fresh child detaches it from the caller's session.
            unsafe { libc::setsid() };
            let mut tx = Some(File::from(tx));
            let r = serve(&cfg, opts, true, |msg| {
                // Connected before the caller goes, so that it can say if nothing is.
                let logged = logging::to_syslog() || cfg.log.is_some();
                // Dropping the pipe's write end lets the parent see EOF and exit.
                if let Some(mut t) = tx.take() {
                    let _ = t.write_all(if logged { msg } else { NO_LOG }.as_bytes());
                }
                detach_stdio(cfg.log.as_deref());
            });
            match (&r, tx.take()) {
                (Err(e), Some(mut t)) => {
                    let _ = t.write_all(format!("daxlink: {}: {e}", cfg.pool.display()).as_bytes());
                }
                // Mounted, then failed: the caller is gone, the log is all there is.
                (Err(e), None) => log::error!("{}: {e}", cfg.pool.display()),
                (Ok(()), _) => {}
            }
            std::process::exit(r.is_err() as i32)
        }
        _child => {
            drop(tx);
            let mut msg = String::new();
            let _ = File::from(rx).read_to_string(&mut msg);
            if msg == "ok" {
                ExitCode::SUCCESS
            } else if msg == NO_LOG {
                eprintln!(
                    "daxlink: no system log ({}): the daemon's log goes nowhere; use -o log=PATH",
                    logging::SOCKET
                );
                ExitCode::SUCCESS
            } else {
                eprintln!("{}", if msg.is_empty() { "daxlink: the daemon died before mounting" } else { &msg });
                ExitCode::FAILURE
            }
        }
    }
}

/// What the daemon tells the caller instead of "ok" when it mounted but has nowhere to
/// log: no system log and no `-o log=PATH`.
const NO_LOG: &str = "ok, no log";

/// Opens the pool, mounts, calls `ready("ok")`, and serves until unmounted. A read-only
/// mount still opens the pool for writing when it can (and writes nothing), so that
/// `mount -o remount,rw` can resume writes; a pool it cannot write stays read-only.
/// `opts` (the `-o` list) is for the log's mount line.
fn serve(cfg: &MountConfig, opts: &str, detached: bool, ready: impl FnOnce(&str)) -> Result<(), String> {
    let writable = !cfg.fs.read_only || may_write(&cfg.pool);
    let pool = Pool::open(&cfg.pool, if writable { Access::Write } else { Access::Read }, LOCK_WAIT)?;
    let fs = Arc::new(Fs::open(pool.media.clone(), cfg.fs).map_err(|e| e.to_string())?);
    watch_memory_failures(&fs)?;
    let session = fuse_mount(fs, cfg, writable).map_err(|e| format!("mount on {}: {e}", cfg.mountpoint.display()))?;
    ready("ok");
    // The system log records every mount of a detached daemon (its target passes the
    // default filter); in the foreground, stderr is the caller's terminal, which sees
    // the line only with RUST_LOG=info, as before.
    let target = if detached { logging::MOUNTS } else { module_path!() };
    let (pool_path, mnt) = (cfg.pool.display(), cfg.mountpoint.display());
    let opts = if opts.is_empty() { "defaults" } else { opts };
    log::info!(target: target, "mounted {pool_path} at {mnt} ({opts})");
    // `run` calls `destroy` (the final checkpoint) when the kernel ends the session.
    session.run().map_err(|e| format!("session: {e}"))?;
    drop(pool);
    log::info!(target: target, "unmounted {pool_path} from {mnt}");
    Ok(())
}

/// Whether this process may open `path` for writing (access(2) W_OK: permissions and a
/// read-only filesystem under it).
fn may_write(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: access(2) reads the NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// One mount(2) call; `None` arguments are passed as NULL.
fn sys_mount(src: Option<&Path>, target: &Path, flags: libc::c_ulong) -> std::io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (src, target) = (src.map(c).transpose()?, c(target)?);
    let src_ptr = src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: NUL-terminated strings that outlive the call; no filesystem type and no
    // data (FUSE ignores remount data from the old mount API anyway).
    if unsafe { libc::mount(src_ptr, target.as_ptr(), std::ptr::null(), flags, std::ptr::null()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `mount -o remount,...`: mount(8) runs the helper with `remount` and the mount's
/// current options merged with the new ones. The kernel's flags and the daemon's
/// options change together: for read-only the kernel first (it refuses while files are
/// open for writing, and then nothing changes), for read-write the daemon first.
fn remount(cfg: &MountConfig) -> Result<(), String> {
    let entry = mounts()
        .into_iter()
        .rfind(|m| m.target == cfg.mountpoint)
        .filter(|m| m.source == cfg.pool)
        .ok_or_else(|| format!("not a mount of {}", cfg.pool.display()))?;
    let root = File::open(&cfg.mountpoint).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; ioctl::MOUNT_INFO_LEN];
    ioctl_rw(&root, ioctl::DAXLINK_IOC_MOUNT_INFO, &mut buf).map_err(|e| format!("asking the daemon: {e}"))?;
    let (pid, now) = ioctl::decode_mount_info(&buf).ok_or("malformed reply from the daemon")?;
    // mount(8) adds an fstab entry's options to a remount: the daemon's own command
    // line says which of them it started with, so only a changed one is refused.
    let mut fixed = cfg.fixed_changes(&started_with(pid, cfg));
    if cfg.allow_other && !entry.options.split(',').any(|o| o == "allow_other") {
        fixed.push("allow_other".into());
    }
    if !fixed.is_empty() {
        return Err(format!("{} cannot change on a remount: unmount, then mount again", fixed.join(", ")));
    }
    // Atime options not named keep the mount's (the kernel does the same with its
    // flags); /proc/mounts cannot say, as it shows nothing for strictatime.
    let mut cfg = cfg.clone();
    if !cfg.atime_given {
        cfg.fs.atime = now.atime;
    }
    if !cfg.dir_atime_given {
        cfg.fs.dir_atime = now.dir_atime;
    }
    let daemon = || {
        let mut buf = ioctl::encode_remount(&cfg.fs);
        ioctl_rw(&root, ioctl::DAXLINK_IOC_REMOUNT, &mut buf).map_err(|e| match e.raw_os_error() {
            Some(libc::EROFS) => {
                "the daemon cannot write the pool (it opened it read-only): unmount, then mount rw".into()
            }
            Some(libc::EPERM) => "remount needs root (Operation not permitted)".into(),
            _ => format!("the daemon refused: {e}"),
        })
    };
    let kernel = || {
        sys_mount(None, &cfg.mountpoint, cfg.remount_flags()).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => "files are open for writing (Device or resource busy)".into(),
            _ => format!("remount: {e}"),
        })
    };
    if cfg.fs.read_only {
        kernel()?;
        daemon()
    } else {
        daemon()?;
        kernel()
    }
}

/// The mount options daemon `pid` was started with, from its command line (`-o LIST`,
/// as mount.fuse3 and `daxlink mount` pass them); the defaults if it cannot be read.
fn started_with(pid: u32, cfg: &MountConfig) -> MountConfig {
    let mut running = MountConfig::new(cfg.pool.clone(), cfg.mountpoint.clone());
    let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = args.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    for (i, a) in args.iter().enumerate() {
        let list = match a.strip_prefix("-o") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(rest) => Some(rest),
            None => None,
        };
        if let Some(l) = list {
            let _ = running.parse_options(l);
        }
    }
    running
}

/// A second mount of a mounted pool: as the kernel gives a second mount of a block
/// device the same superblock, this is a bind mount of the first one (same daemon,
/// same state), with the mount flags asked for (ro, nosuid, nodev, noexec, atime).
fn bind(first: &Path, cfg: &MountConfig) -> Result<(), String> {
    // do_add_mount refuses one filesystem mounted twice on one mount point.
    if mounts().iter().any(|m| m.target == cfg.mountpoint && m.source == cfg.pool) {
        return Err(format!("{} is already mounted there (Device or resource busy)", cfg.pool.display()));
    }
    sys_mount(Some(first), &cfg.mountpoint, libc::MS_BIND)
        .map_err(|e| format!("bind mount of {}: {e}", first.display()))?;
    let per_mount = libc::MS_RDONLY
        | libc::MS_NODEV
        | libc::MS_NOSUID
        | libc::MS_NOEXEC
        | libc::MS_NOATIME
        | libc::MS_NODIRATIME
        | libc::MS_RELATIME
        | libc::MS_STRICTATIME;
    let flags = cfg.remount_flags() & per_mount;
    if let Err(e) = sys_mount(None, &cfg.mountpoint, libc::MS_REMOUNT | libc::MS_BIND | flags) {
        let _ = std::process::Command::new("umount").arg(&cfg.mountpoint).status();
        return Err(format!("mount flags on the bind mount: {e}"));
    }
    Ok(())
}

/// Starts the thread that the kernel tells at once about failed pages of the pool
/// (`BUS_MCEERR_AO`: it asks for early kill), and that fails them, as `inject-error`
/// would. Failures that a request's own access meets are failed by that request.
fn watch_memory_failures(fs: &Arc<Fs>) -> Result<(), String> {
    let fs = Arc::downgrade(fs);
    std::thread::Builder::new()
        .name("daxlink-mce".into())
        .spawn(move || {
            if let Err(e) = fault::early_kill() {
                log::warn!("memory failures will be seen only when an access meets them: {e}");
            }
            loop {
                fault::wait();
                let Some(fs) = fs.upgrade() else { return };
                fs.take_media_failures();
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the memory-failure thread: {e}"))
}

/// The daemon's stdio must not hold the caller's terminal or pipes open; its stderr
/// (the log's copy beside the system log's, and panics) goes to `log` when given
/// (`-o log=PATH`), else nowhere.
fn detach_stdio(log: Option<&Path>) {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null");
    let err = log.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
    if let Ok(null) = &null {
        for fd in 0..2 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    if let Some(f) = err.as_ref().map(|f| f.as_raw_fd()).or(null.as_ref().ok().map(|n| n.as_raw_fd())) {
        // SAFETY: as above.
        unsafe { libc::dup2(f, 2) };
    }
}
