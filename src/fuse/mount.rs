//! Mount options and the FUSE session.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, mpsc};

use fuser::{Config, MountOption, Session, SessionACL};

use super::adapter::{DaxFuse, invalidate, invalidate_attr};
use crate::dax::Failure;
use crate::fs::{AtimeMode, Fs, Options};
use crate::types::Ino;

/// What `-o` asked for.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// Absolute path of the pool: the mount's source in /proc/mounts.
    pub pool: PathBuf,
    pub mountpoint: PathBuf,
    pub fs: Options,
    pub allow_other: bool,
    /// Mount as type `fuse.daxlink`; `nosubtype` gives plain `fuse` (xfstests'
    /// `FSTYP=fuse` wants that).
    pub subtype: bool,
    /// The kernel's writeback cache (`FUSE_WRITEBACK_CACHE`); `nowriteback` turns it off.
    pub writeback: bool,
    pub threads: usize,
    /// Where the detached daemon's log goes (memory failures, errors).
    pub log: Option<PathBuf>,
    /// `-o remount`: reconfigure the live mount at `mountpoint` instead of mounting.
    pub remount: bool,
    /// Options given that only a fresh mount can apply (named in a remount's refusal
    /// when they differ from the running mount's).
    pub fixed: Vec<String>,
    /// An atime option (`relatime`, `strictatime`, `noatime`) was given; a remount
    /// without one keeps the mount's, as the kernel's `path_mount` does.
    pub atime_given: bool,
    /// `diratime` or `nodiratime` was given.
    pub dir_atime_given: bool,
    kernel: Vec<MountOption>,
}

/// Options that only mean something to mount(8) or fstab; accepted and ignored.
const FSTAB_ONLY: &[&str] = &["defaults", "auto", "noauto", "nofail", "user", "nouser", "users", "owner", "_netdev"];

impl MountConfig {
    /// Every option `parse_options` accepts, with its meaning: the MOUNT OPTIONS of
    /// daxlink(8). `N`, `PATH` and `TEXT` stand for a value, `*` for any suffix.
    pub const OPTIONS: &[(&[&str], &str)] = &[
        (
            &["ro", "rw"],
            "read-only: nothing is written to the pool, not even log recovery; remount,ro and remount,rw switch a \
             live mount",
        ),
        (
            &["relatime", "strictatime", "atime", "noatime"],
            "when reads update atime; relatime is the default (/proc/mounts shows relatime for strictatime at \
             mount: fuser cannot pass MS_STRICTATIME; a remount can)",
        ),
        (&["nodiratime", "diratime"], "whether reading a directory updates its atime"),
        (&["lazytime", "nolazytime"], "accepted; daxlink logs timestamps lazily anyway"),
        (
            &["allow_other"],
            "let users other than the mounter in (permissions are always checked by the kernel: default_permissions)",
        ),
        (
            &["nosubtype"],
            "mount as type fuse instead of fuse.daxlink: for xfstests, which runs with FSTYP=fuse FUSE_SUBTYP=.daxlink",
        ),
        (
            &["writeback", "nowriteback"],
            "whether the kernel caches written data and writes it back later (default: it does); nowriteback \
             sends every write to the daemon as it is made: for programs that share a file with daxlink's own \
             ioctls without calling fsync or sync_file_range first, or to see ENOSPC at write(2) instead of at \
             fsync or close",
        ),
        (&["threads=N"], "FUSE worker threads, 1 to 64 (default 4)"),
        (
            &["log=PATH"],
            "append the detached daemon's log (memory failures, I/O errors, mounts) to PATH as well as to the \
             system log",
        ),
        (&["dev", "nodev", "suid", "nosuid", "exec", "noexec", "sync", "async", "dirsync"], "passed to the kernel"),
        (
            &[
                "defaults",
                "auto",
                "noauto",
                "nofail",
                "user",
                "nouser",
                "users",
                "owner",
                "_netdev",
                "x-*",
                "comment=TEXT",
            ],
            "fstab only, ignored",
        ),
        (
            &["remount"],
            "reconfigure the live mount at the mount point: ro and rw, the atime options, nodev, nosuid, noexec and \
             sync change, and atime options not given stay as they are; threads=, log=, nosubtype, writeback and a new \
             allow_other need a fresh mount, and a remount that would change them is refused by name",
        ),
        (
            &["user_id=N", "group_id=N", "default_permissions"],
            "the kernel's own FUSE options, which mount(8) hands back on a remount; ignored (the daemon sets them)",
        ),
    ];

    pub fn new(pool: PathBuf, mountpoint: PathBuf) -> MountConfig {
        MountConfig {
            pool,
            mountpoint,
            fs: Options::default(),
            allow_other: false,
            subtype: true,
            writeback: true,
            threads: 4,
            log: None,
            remount: false,
            fixed: Vec::new(),
            atime_given: false,
            dir_atime_given: false,
            kernel: Vec::new(),
        }
    }

    /// Applies a comma-separated `-o` list; the error names the offending option.
    pub fn parse_options(&mut self, list: &str) -> Result<(), String> {
        for opt in list.split(',').filter(|o| !o.is_empty()) {
            self.atime_given |= matches!(opt, "relatime" | "strictatime" | "atime" | "noatime");
            self.dir_atime_given |= matches!(opt, "diratime" | "nodiratime");
            let flag = match opt {
                "ro" => {
                    self.fs.read_only = true;
                    Some(MountOption::RO)
                }
                "rw" => {
                    self.fs.read_only = false;
                    Some(MountOption::RW)
                }
                "dev" => Some(MountOption::Dev),
                "nodev" => Some(MountOption::NoDev),
                "suid" => Some(MountOption::Suid),
                "nosuid" => Some(MountOption::NoSuid),
                "exec" => Some(MountOption::Exec),
                "noexec" => Some(MountOption::NoExec),
                "sync" => Some(MountOption::Sync),
                "async" => Some(MountOption::Async),
                "dirsync" => Some(MountOption::DirSync),
                "relatime" => {
                    self.fs.atime = AtimeMode::Relatime;
                    Some(MountOption::Atime)
                }
                "strictatime" | "atime" => {
                    self.fs.atime = AtimeMode::Strict;
                    Some(MountOption::Atime)
                }
                "noatime" => {
                    self.fs.atime = AtimeMode::Never;
                    Some(MountOption::NoAtime)
                }
                "nodiratime" => {
                    self.fs.dir_atime = false;
                    None
                }
                "diratime" => {
                    self.fs.dir_atime = true;
                    None
                }
                // daxlink logs timestamps lazily already.
                "lazytime" | "nolazytime" => None,
                "allow_other" => {
                    self.allow_other = true;
                    None
                }
                "nosubtype" => {
                    self.subtype = false;
                    self.fixed.push(opt.into());
                    None
                }
                "writeback" | "nowriteback" => {
                    self.writeback = opt == "writeback";
                    self.fixed.push(opt.into());
                    None
                }
                "remount" => {
                    self.remount = true;
                    None
                }
                // The kernel's own FUSE options, which mount(8) hands back from
                // /proc/mounts on a remount; the daemon always sets them itself.
                "default_permissions" => None,
                o if o.starts_with("user_id=") || o.starts_with("group_id=") => None,
                o if FSTAB_ONLY.contains(&o) || o.starts_with("x-") || o.starts_with("comment=") => None,
                o if o.starts_with("log=") && o.len() > 4 => {
                    self.log = Some(PathBuf::from(&o[4..]));
                    self.fixed.push(opt.into());
                    None
                }
                o if o.starts_with("threads=") => {
                    self.threads = o[8..]
                        .parse()
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or_else(|| format!("mount option '{o}': threads must be 1 to 64"))?;
                    self.fixed.push(opt.into());
                    None
                }
                o => return Err(format!("unknown mount option '{o}'")),
            };
            if let Some(f) = flag {
                self.kernel.retain(|k| !conflicts(k, &f));
                self.kernel.push(f);
            }
        }
        Ok(())
    }

    /// The options of `fixed` whose value differs from the `running` mount's.
    pub fn fixed_changes(&self, running: &MountConfig) -> Vec<String> {
        self.fixed
            .iter()
            .filter(|o| match o.split('=').next() {
                Some("threads") => self.threads != running.threads,
                Some("log") => self.log != running.log,
                Some("writeback" | "nowriteback") => self.writeback != running.writeback,
                _ => self.subtype != running.subtype,
            })
            .cloned()
            .collect()
    }

    /// The mount(2) flags of a remount to these options: the superblock's (read-only,
    /// sync) and the mount's (nodev, nosuid, noexec, atime), all in one call, as
    /// `do_remount` applies both.
    pub fn remount_flags(&self) -> libc::c_ulong {
        let mut f = libc::MS_REMOUNT;
        for k in &self.kernel {
            f |= match k {
                MountOption::NoDev => libc::MS_NODEV,
                MountOption::NoSuid => libc::MS_NOSUID,
                MountOption::NoExec => libc::MS_NOEXEC,
                MountOption::Sync => libc::MS_SYNCHRONOUS,
                MountOption::DirSync => libc::MS_DIRSYNC,
                _ => 0,
            };
        }
        if self.fs.read_only {
            f |= libc::MS_RDONLY;
        }
        f |= match self.fs.atime {
            AtimeMode::Relatime => libc::MS_RELATIME,
            AtimeMode::Strict => libc::MS_STRICTATIME,
            AtimeMode::Never => libc::MS_NOATIME,
        };
        if !self.fs.dir_atime {
            f |= libc::MS_NODIRATIME;
        }
        f
    }

    fn fuser_config(&self) -> Config {
        let mut cfg = Config::default();
        let mut opts = vec![MountOption::FSName(self.pool.display().to_string()), MountOption::DefaultPermissions];
        if self.subtype {
            opts.push(MountOption::CUSTOM("subtype=daxlink".into()));
        }
        opts.extend(self.kernel.iter().cloned());
        cfg.mount_options = opts;
        cfg.acl = if self.allow_other { SessionACL::All } else { SessionACL::Owner };
        cfg.n_threads = Some(self.threads);
        cfg.clone_fd = true;
        cfg
    }
}

fn conflicts(a: &MountOption, b: &MountOption) -> bool {
    use MountOption::*;
    matches!(
        (a, b),
        (RO, RW)
            | (RW, RO)
            | (Dev, NoDev)
            | (NoDev, Dev)
            | (Suid, NoSuid)
            | (NoSuid, Suid)
            | (Exec, NoExec)
            | (NoExec, Exec)
            | (Sync, Async)
            | (Async, Sync)
            | (Atime, NoAtime)
            | (NoAtime, Atime)
    ) || a == b
}

/// Mounts `fs` and returns the session, ready to run. `pool_writable`: the daemon holds
/// the pool open for writing, so a read-only mount may be remounted read-write.
pub fn mount(fs: Arc<Fs>, cfg: &MountConfig, pool_writable: bool) -> io::Result<Session<DaxFuse>> {
    let notifier = Arc::new(OnceLock::new());
    let (sink, failures) = mpsc::channel::<Failure>();
    fs.set_failure_sink(sink);
    let (stale_attrs, stale) = mpsc::channel::<Ino>();
    let fuse = DaxFuse::new(fs, pool_writable, cfg.writeback, notifier.clone(), stale_attrs);
    let session = Session::new(fuse, &cfg.mountpoint, &cfg.fuser_config())?;
    if cfg.writeback {
        share_dirty_limit(&cfg.mountpoint);
    }
    let n = session.notifier();
    let _ = notifier.set(n.clone());
    // Failures found by a request's own access, or reported by the kernel, are
    // contained here rather than in the request: a read's pages stay locked in the
    // kernel until its reply, and invalidating them before it would wait forever.
    // The thread ends with the filesystem, when the sink closes.
    let contain = n.clone();
    std::thread::Builder::new().name("daxlink-contain".into()).spawn(move || {
        for f in failures {
            invalidate(&contain, &f.owners);
        }
    })?;
    // Attributes the adapter asks to drop outside a request; ends with the session.
    std::thread::Builder::new().name("daxlink-attrs".into()).spawn(move || {
        for i in stale {
            invalidate_attr(&n, i);
        }
    })?;
    Ok(session)
}

/// The share of the system's dirty-page limit, in percent, that data written to the
/// mount may hold in the kernel's cache before the writer waits for write-back.
/// FUSE gives every mount 1% under a strict limit (fuse_bdi_init: a server that
/// stalls must not pin much memory), about 40 MiB on a 24 GiB machine: a program
/// writing at random across more than that waits for one write-back request per page.
/// daxlink's daemon runs as root and writes back at memory speed, so it takes half:
/// the strict limit still keeps it from the other half, which other devices keep.
const DIRTY_SHARE: u32 = 50;

/// Raises the mount's share of the dirty limit to `DIRTY_SHARE` (root only; sysfs
/// names the mount's writeback device by its device number).
fn share_dirty_limit(mountpoint: &std::path::Path) {
    let Some(dev) = crate::arena::pool::mount_device(mountpoint) else {
        return log::warn!("{}: not in /proc/self/mountinfo; the dirty limit stays at 1%", mountpoint.display());
    };
    let knob = format!("/sys/class/bdi/{dev}/max_ratio");
    if let Err(e) = std::fs::write(&knob, DIRTY_SHARE.to_string()) {
        log::warn!("{knob}: {e}; written data may hold only 1% of the dirty limit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MountConfig {
        MountConfig::new("/p".into(), "/m".into())
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let mut c = cfg();
        c.parse_options("ro,rw,noatime,nodev,dev").unwrap();
        assert!(!c.fs.read_only);
        assert_eq!(c.fs.atime, AtimeMode::Never);
        assert_eq!(c.kernel, vec![MountOption::RW, MountOption::NoAtime, MountOption::Dev]);
        c.parse_options("relatime").unwrap();
        assert_eq!(c.kernel, vec![MountOption::RW, MountOption::Dev, MountOption::Atime]);
    }

    #[test]
    fn fstab_only_options_are_accepted_and_unknown_ones_named() {
        let mut c = cfg();
        c.parse_options("defaults,noauto,x-systemd.automount,_netdev").unwrap();
        assert_eq!(c.parse_options("rw,bogus=1").unwrap_err(), "unknown mount option 'bogus=1'");
        assert!(c.parse_options("threads=0").is_err());
    }

    #[test]
    fn a_remount_refuses_only_fixed_options_that_change() {
        let mut running = cfg();
        running.parse_options("threads=2,log=/var/log/d").unwrap();
        let mut same = cfg();
        same.parse_options("remount,ro,threads=2,log=/var/log/d").unwrap();
        assert!(same.fixed_changes(&running).is_empty());
        let mut other = cfg();
        other.parse_options("remount,threads=3,log=/var/log/d,nosubtype,writeback,nowriteback").unwrap();
        assert_eq!(other.fixed_changes(&running), vec!["threads=3", "nosubtype", "writeback", "nowriteback"]);
        let mut off = cfg();
        off.parse_options("remount,writeback").unwrap();
        assert!(off.fixed_changes(&running).is_empty(), "writeback is the default");
        assert!(!same.atime_given);
        other.parse_options("noatime").unwrap();
        assert!(other.atime_given && !other.dir_atime_given);
    }

    #[test]
    fn nosubtype_drops_the_subtype() {
        let mut c = cfg();
        c.parse_options("nosubtype").unwrap();
        assert!(!c.fuser_config().mount_options.contains(&MountOption::CUSTOM("subtype=daxlink".into())));
    }
}
