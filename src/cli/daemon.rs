//! `daxlink mount`: the daemon. Without `-f` it forks first (before any thread exists),
//! and the parent exits only once the child reports the filesystem mounted or failed,
//! so `mount -t fuse.daxlink` returns with the filesystem ready.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use super::{LOCK_WAIT, fail};
use crate::arena::{Access, Pool, fault};
use crate::fs::Fs;
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
    if foreground {
        return match serve(&cfg, |_| {}) {
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
            let r = serve(&cfg, |msg| {
                // Dropping the pipe's write end lets the parent see EOF and exit.
                if let Some(mut t) = tx.take() {
                    let _ = t.write_all(msg.as_bytes());
                }
                detach_stdio(cfg.log.as_deref());
            });
            if let (Err(e), Some(mut t)) = (&r, tx.take()) {
                let _ = t.write_all(format!("daxlink: {}: {e}", cfg.pool.display()).as_bytes());
            }
            std::process::exit(r.is_err() as i32)
        }
        _child => {
            drop(tx);
            let mut msg = String::new();
            let _ = File::from(rx).read_to_string(&mut msg);
            if msg == "ok" {
                ExitCode::SUCCESS
            } else {
                eprintln!("{}", if msg.is_empty() { "daxlink: the daemon died before mounting" } else { &msg });
                ExitCode::FAILURE
            }
        }
    }
}

/// Opens the pool, mounts, calls `ready("ok")`, and serves until unmounted.
fn serve(cfg: &MountConfig, ready: impl FnOnce(&str)) -> Result<(), String> {
    let access = if cfg.fs.read_only { Access::Read } else { Access::Write };
    let pool = Pool::open(&cfg.pool, access, LOCK_WAIT)?;
    let fs = Arc::new(Fs::open(pool.media.clone(), cfg.fs).map_err(|e| e.to_string())?);
    watch_memory_failures(&fs)?;
    let session = fuse_mount(fs, cfg).map_err(|e| format!("mount on {}: {e}", cfg.mountpoint.display()))?;
    ready("ok");
    // `run` calls `destroy` (the final checkpoint) when the kernel ends the session.
    session.run().map_err(|e| format!("session: {e}"))?;
    drop(pool);
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

/// The daemon's stdio must not hold the caller's terminal or pipes open; its log
/// (stderr) goes to `log` when given (`-o log=PATH`), else nowhere.
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
