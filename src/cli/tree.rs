//! `daxlink clone -r SRC DST`: a copy of a tree with what `cp -a` preserves (modes,
//! owners, atime and mtime, xattrs, symlinks, hard links within the tree, device nodes,
//! FIFOs, sockets, empty directories) in which every regular file's data is shared
//! with the source, holes and all.
//!
//! coreutils 9.1 `cp --reflink=auto` reaches `copy_file_range`, the one reflink path a
//! FUSE server gets, only for files without holes: a sparse file's data segments are
//! copied with read and write (`lseek_copy`). Here every file is a clone of its extents.
//!
//! Two ways, with the same result. As root, the children of each directory that are
//! not directories are cloned inside the daemon, a batch of them per transaction
//! (`DAXLINK_IOC_CLONE_DIR`): a few requests per directory instead of 13 per
//! file. The rest, and everything for other callers (whose permissions the kernel must
//! check), goes file by file: `copy_file_range` of the whole file, which daxlink turns
//! into a clone of every extent, then owner, xattrs, mode and times, in `cp -a`'s order.
//! Directories are always made here, and their attributes set once their children are
//! in (a child changes its directory's mtime).
//!
//! Every call on a name is relative to an open directory (`openat`, `mkdirat`, ...), as
//! `cp` does through fts: no path is resolved twice, and depth is not bounded by
//! `PATH_MAX`.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::io::{self, IsTerminal, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::fail;
use super::reflink::{extents_of, ioctl_rw, not_daxlink, shared_everywhere, write_back_all};
use crate::fuse::ioctl;

/// What `clone -r` was asked to do besides cloning.
#[derive(Clone, Copy, Debug, Default)]
pub struct Opts {
    /// Walk and count; change nothing.
    pub dry_run: bool,
    /// One line per entry, as `cp -v` prints.
    pub verbose: bool,
    /// Never use the daemon's batch clone (what a caller other than root gets).
    pub per_file: bool,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn cname(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn open_at(dir: &OwnedFd, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is an open descriptor and `name` is NUL-terminated.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_path(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let p = cname(path.as_os_str())?;
    // SAFETY: `p` is NUL-terminated.
    let fd = cvt(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir_at(dir: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
}

fn stat_at(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` has room for a stat; fstatat fills it when it returns 0.
    cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    // SAFETY: fstatat returned 0, so it wrote the whole struct.
    Ok(unsafe { st.assume_init() })
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` has room for a stat; fstat fills it when it returns 0.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so it wrote the whole struct.
    Ok(unsafe { st.assume_init() })
}

/// A directory entry: name, `d_type`, inode number.
struct Entry {
    name: CString,
    dtype: u8,
    ino: u64,
}

/// Every entry of an open directory but `.` and `..`, sorted by name (so that what is
/// printed does not depend on the order a directory happens to keep).
fn read_dir(dir: &OwnedFd) -> io::Result<Vec<Entry>> {
    // fdopendir takes the descriptor over: give it a copy of ours.
    let dup = dir.try_clone()?;
    // SAFETY: `dup` is an open directory descriptor whose ownership passes to the stream.
    let d = unsafe { libc::fdopendir(dup.as_raw_fd()) };
    if d.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(dup);
    let mut out = Vec::new();
    let result = loop {
        // readdir returns NULL at the end and on error; errno tells which.
        // SAFETY: writing errno, then reading the open stream `d`.
        let e = unsafe {
            *libc::__errno_location() = 0;
            libc::readdir64(d)
        };
        if e.is_null() {
            let err = io::Error::last_os_error();
            break if err.raw_os_error() == Some(0) { Ok(()) } else { Err(err) };
        }
        // SAFETY: a non-NULL dirent from readdir stays valid until the next call on `d`,
        // and its d_name is NUL-terminated.
        let (name, dtype, ino) = unsafe { (CStr::from_ptr((*e).d_name.as_ptr()), (*e).d_type, (*e).d_ino) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            out.push(Entry { name: name.to_owned(), dtype, ino });
        }
    };
    // SAFETY: `d` is open and closed once (with the descriptor it took).
    unsafe { libc::closedir(d) };
    result?;
    // Which entries are directories decides who copies them: where the type is not
    // given, it is looked up.
    for e in out.iter_mut().filter(|e| e.dtype == libc::DT_UNKNOWN) {
        if stat_at(dir, &e.name).is_ok_and(|st| kind(st.st_mode) == libc::S_IFDIR) {
            e.dtype = libc::DT_DIR;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn times(st: &libc::stat) -> [libc::timespec; 2] {
    [
        libc::timespec { tv_sec: st.st_atime, tv_nsec: st.st_atime_nsec },
        libc::timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec },
    ]
}

fn kind(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

/// Where an entry's attributes are set: an open descriptor (regular files and
/// directories), or a name in an open directory (symlinks and special files, which
/// are never opened: opening a device has effects, and a FIFO blocks).
enum Node<'a> {
    Fd(&'a OwnedFd),
    At(&'a OwnedFd, &'a CStr),
}

impl Node<'_> {
    /// The xattr calls have no `*at` form: a name in an open directory is reached
    /// through the directory's /proc/self/fd link, and not followed (`l*xattr`).
    fn proc_path(dir: &OwnedFd, name: &CStr) -> io::Result<CString> {
        let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        p.extend_from_slice(name.to_bytes());
        CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// The names of every xattr the caller may read (`trusted.*` only root lists).
    fn list_xattrs(&self, buf: &mut [u8]) -> io::Result<Vec<CString>> {
        let p = buf.as_mut_ptr().cast();
        let n = match self {
            // SAFETY: the buffer is `buf.len()` bytes; the descriptor or path is open/valid.
            Node::Fd(fd) => unsafe { libc::flistxattr(fd.as_raw_fd(), p, buf.len()) },
            // SAFETY: the buffer is `buf.len()` bytes; the descriptor or path is open/valid.
            Node::At(dir, name) => unsafe { libc::llistxattr(Self::proc_path(dir, name)?.as_ptr(), p, buf.len()) },
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let list = buf.get(..n as usize).unwrap_or_default();
        Ok(list.split(|b| *b == 0).filter(|s| !s.is_empty()).filter_map(|s| CString::new(s).ok()).collect())
    }

    fn get_xattr(&self, name: &CStr, buf: &mut [u8]) -> io::Result<Vec<u8>> {
        let p = buf.as_mut_ptr().cast();
        let n = match self {
            // SAFETY: the buffer is `buf.len()` bytes; `name` is NUL-terminated.
            Node::Fd(fd) => unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), p, buf.len()) },
            // SAFETY: the buffer is `buf.len()` bytes; `name` is NUL-terminated.
            Node::At(dir, at) => unsafe {
                libc::lgetxattr(Self::proc_path(dir, at)?.as_ptr(), name.as_ptr(), p, buf.len())
            },
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(buf.get(..n as usize).unwrap_or_default().to_vec())
    }

    fn set_xattr(&self, name: &CStr, value: &[u8]) -> io::Result<()> {
        let v = value.as_ptr().cast();
        cvt(match self {
            // SAFETY: `value` is `value.len()` bytes; `name` is NUL-terminated.
            Node::Fd(fd) => unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), v, value.len(), 0) },
            // SAFETY: `value` is `value.len()` bytes; `name` is NUL-terminated.
            Node::At(dir, at) => unsafe {
                libc::lsetxattr(Self::proc_path(dir, at)?.as_ptr(), name.as_ptr(), v, value.len(), 0)
            },
        })
        .map(drop)
    }

    fn remove_xattr(&self, name: &CStr) -> io::Result<()> {
        cvt(match self {
            // SAFETY: `name` is NUL-terminated; the descriptor or path is open/valid.
            Node::Fd(fd) => unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) },
            // SAFETY: `name` is NUL-terminated; the descriptor or path is open/valid.
            Node::At(dir, at) => unsafe { libc::lremovexattr(Self::proc_path(dir, at)?.as_ptr(), name.as_ptr()) },
        })
        .map(drop)
    }

    fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        cvt(match self {
            // SAFETY: plain system calls on an open descriptor / a NUL-terminated name.
            Node::Fd(fd) => unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) },
            // SAFETY: plain system calls on an open descriptor / a NUL-terminated name.
            Node::At(dir, name) => unsafe {
                libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
            },
        })
        .map(drop)
    }

    /// Not for symlinks, whose mode Linux neither keeps nor lets be set.
    fn chmod(&self, mode: u32) -> io::Result<()> {
        cvt(match self {
            // SAFETY: plain system calls on an open descriptor / a NUL-terminated name.
            Node::Fd(fd) => unsafe { libc::fchmod(fd.as_raw_fd(), mode) },
            // SAFETY: plain system calls on an open descriptor / a NUL-terminated name.
            Node::At(dir, name) => unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) },
        })
        .map(drop)
    }

    fn set_times(&self, st: &libc::stat) -> io::Result<()> {
        let ts = times(st);
        cvt(match self {
            // SAFETY: `ts` holds the two timespecs the calls read.
            Node::Fd(fd) => unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) },
            // SAFETY: `ts` holds the two timespecs the calls read.
            Node::At(dir, name) => unsafe {
                libc::utimensat(dir.as_raw_fd(), name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
            },
        })
        .map(drop)
    }
}

/// What failed, on which path.
struct Fail {
    path: PathBuf,
    why: String,
    errno: Option<i32>,
}

impl Fail {
    fn new(path: PathBuf, what: &str, e: io::Error) -> Fail {
        Fail { path, why: format!("{what}: {e}"), errno: e.raw_os_error() }
    }

    /// Errors after which nothing more can be made: the walk stops, as it would only
    /// print the same error for every entry left.
    fn is_fatal(&self) -> bool {
        matches!(self.errno, Some(libc::ENOSPC | libc::EDQUOT | libc::EROFS))
    }
}

/// An entry being copied: its source (a name in an open directory), the directory of its
/// copy (none in a dry run) and the copy's name, and its path below the two roots.
#[derive(Clone, Copy)]
struct Place<'a> {
    sdir: &'a OwnedFd,
    sname: &'a CStr,
    ddir: Option<&'a OwnedFd>,
    dname: &'a CStr,
    rel: &'a Path,
    /// The copy's directory has a default ACL, which a new entry inherits.
    inherit: bool,
}

/// What a new copy has before `finish`: its mode (none for a symlink, whose mode Linux
/// neither keeps nor lets be set), its owner, and whether it may carry POSIX ACLs
/// inherited from its directory's default ACL, which `cp -a` would not give it.
struct Made {
    mode: Option<u32>,
    uid: u32,
    gid: u32,
    inherited: bool,
}

impl Made {
    fn of(st: &libc::stat, mode: bool, inherited: bool) -> Made {
        Made { mode: mode.then_some(st.st_mode), uid: st.st_uid, gid: st.st_gid, inherited }
    }
}

const ACL_ACCESS: &CStr = c"system.posix_acl_access";
const ACL_DEFAULT: &CStr = c"system.posix_acl_default";

/// Whether a directory has a default ACL, which its new entries inherit (acl(5)).
fn has_default_acl(dir: &OwnedFd) -> bool {
    // SAFETY: a size query (NULL buffer, size 0) on an open descriptor.
    unsafe { libc::fgetxattr(dir.as_raw_fd(), ACL_DEFAULT.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    files: u64,
    bytes: u64,
    dirs: u64,
    symlinks: u64,
    links: u64,
    special: u64,
    errors: u64,
}

struct Walk {
    opts: Opts,
    src: PathBuf,
    dst: PathBuf,
    /// The destination's parent, and the destination's name in it.
    top: OwnedFd,
    top_name: CString,
    root: bool,
    euid: u32,
    egid: u32,
    /// The daemon's batch clone is there (root, a daxlink that knows it).
    batch: bool,
    /// First destination path of every source inode with more than one link.
    links: HashMap<(u64, u64), PathBuf>,
    counts: Counts,
    stopped: Option<Fail>,
    xbuf: Vec<u8>,
    tty: bool,
    last_progress: Instant,
    progress_shown: bool,
}

impl Walk {
    fn src_path(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() { self.src.clone() } else { self.src.join(rel) }
    }

    fn dst_path(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() { self.dst.clone() } else { self.dst.join(rel) }
    }

    /// Reports an error; the walk goes on, unless nothing more can be made.
    fn report(&mut self, f: Fail) {
        self.clear_progress();
        let _ = fail(&f.path, &f.why);
        self.counts.errors += 1;
        if f.is_fatal() && self.stopped.is_none() {
            self.stopped = Some(f);
        }
    }

    fn verbose(&mut self, rel: &Path, what: &str) {
        if self.opts.verbose {
            self.clear_progress();
            let would = if self.opts.dry_run { "would clone " } else { "" };
            println!("{would}'{}' -> '{}'{what}", self.src_path(rel).display(), self.dst_path(rel).display());
        }
    }

    /// The progress line, on a terminal, at most five times a second.
    fn progress(&mut self) {
        if !self.tty || self.opts.verbose || self.last_progress.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last_progress = Instant::now();
        let c = self.counts;
        eprint!(
            "\rdaxlink: {} files, {} directories, {} MiB shared so far\x1b[K",
            c.files + c.links,
            c.dirs,
            c.bytes >> 20
        );
        let _ = io::stderr().flush();
        self.progress_shown = true;
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            eprint!("\r\x1b[K");
            self.progress_shown = false;
        }
    }

    /// Copies one entry (a whole subtree for a directory) from `sname` in `sdir` to
    /// `dname` in `ddir` (absent in a dry run).
    fn entry(&mut self, p: &Place) {
        let Place { sdir, sname, ddir, dname, rel, .. } = *p;
        if self.stopped.is_some() {
            return;
        }
        let st = match stat_at(sdir, sname) {
            Ok(st) => st,
            Err(e) => return self.report(Fail::new(self.src_path(rel), "cannot stat", e)),
        };
        if kind(st.st_mode) == libc::S_IFDIR {
            return self.dir(p, &st);
        }
        // A later name of an inode copied already becomes a hard link to its copy.
        if st.st_nlink > 1 && self.link(&st, ddir, dname, rel) {
            return self.progress();
        }
        let r = match kind(st.st_mode) {
            libc::S_IFREG => self.file(p, &st),
            _ => self.node(p, &st),
        };
        if let Err(f) = r {
            self.report(f);
        }
        self.progress();
    }

    /// Links `dname` to the copy of an inode met before under another name; false (and
    /// the name remembered) the first time.
    fn link(&mut self, st: &libc::stat, ddir: Option<&OwnedFd>, dname: &CStr, rel: &Path) -> bool {
        let key = (st.st_dev, st.st_ino);
        let Some(first) = self.links.get(&key).cloned() else {
            self.links.insert(key, rel.to_path_buf());
            return false;
        };
        if let Some(ddir) = ddir {
            let target = self.top_rel(&first);
            let r = target.and_then(|t| {
                // SAFETY: both descriptors are open directories, both names NUL-terminated.
                cvt(unsafe { libc::linkat(self.top.as_raw_fd(), t.as_ptr(), ddir.as_raw_fd(), dname.as_ptr(), 0) })
            });
            if let Err(e) = r {
                self.report(Fail::new(self.dst_path(rel), "cannot create hard link", e));
                return true;
            }
        }
        self.counts.links += 1;
        self.verbose(rel, " (hard link)");
        true
    }

    /// A destination path relative to `top`.
    fn top_rel(&self, rel: &Path) -> io::Result<CString> {
        let mut p = self.top_name.as_bytes().to_vec();
        if !rel.as_os_str().is_empty() {
            p.push(b'/');
            p.extend_from_slice(rel.as_os_str().as_bytes());
        }
        CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// The source's xattrs, by name.
    fn xattrs(&mut self, node: &Node, rel: &Path) -> Result<Vec<(CString, Vec<u8>)>, Fail> {
        let mut buf = std::mem::take(&mut self.xbuf);
        let r = (|| {
            let names = match node.list_xattrs(&mut buf) {
                Ok(names) => names,
                // Nothing to copy where xattrs are not supported at all.
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            names
                .into_iter()
                .filter_map(|name| match node.get_xattr(&name, &mut buf) {
                    Ok(v) => Some(Ok((name, v))),
                    // Gone between the listing and the read.
                    Err(e) if e.raw_os_error() == Some(libc::ENODATA) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect()
        })();
        self.xbuf = buf;
        r.map_err(|e| Fail::new(self.src_path(rel), "cannot read extended attributes", e))
    }

    /// Owner, xattrs, mode and times of a copy, in that order: a chown drops
    /// set-user-ID bits and file capabilities (`chown(2)`, `security.capability`), so
    /// the mode and the xattrs come after it, and the times last, as nothing after
    /// them may change them. `made` says what the copy has now.
    /// is left alone for symlinks (`None`).
    fn finish(
        &mut self,
        node: &Node,
        st: &libc::stat,
        xattrs: &[(CString, Vec<u8>)],
        made: Made,
        rel: &Path,
    ) -> Result<(), Fail> {
        let path = self.dst_path(rel);
        let mut mode = st.st_mode & 0o7777;
        let chown = (made.uid, made.gid) != (st.st_uid, st.st_gid);
        if chown {
            match node.chown(st.st_uid, st.st_gid) {
                Ok(()) => {}
                // cp -a: a caller who may not give files away keeps them, with the
                // group if it may, and without set-user-ID, set-group-ID and sticky bits.
                Err(e) if !self.root && matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => {
                    let _ = node.chown(u32::MAX, st.st_gid);
                    mode &= !(libc::S_ISUID | libc::S_ISGID | libc::S_ISVTX);
                }
                Err(e) => return Err(Fail::new(path, "cannot preserve ownership", e)),
            }
        }
        if made.inherited {
            let acls = if kind(st.st_mode) == libc::S_IFDIR { &[ACL_ACCESS, ACL_DEFAULT][..] } else { &[ACL_ACCESS] };
            for acl in acls.iter().filter(|acl| xattrs.iter().all(|(n, _)| n.as_c_str() != **acl)) {
                match node.remove_xattr(acl) {
                    Err(e) if e.raw_os_error() != Some(libc::ENODATA) => {
                        return Err(Fail::new(path, "cannot remove an inherited ACL", e));
                    }
                    _ => {}
                }
            }
        }
        for (name, value) in xattrs {
            if let Err(e) = node.set_xattr(name, value) {
                let what = format!("cannot set extended attribute {}", name.to_string_lossy());
                return Err(Fail::new(path, &what, e));
            }
        }
        if let Some(have) = made.mode
            && (have & 0o7777 != mode || chown || made.inherited)
            && let Err(e) = node.chmod(mode)
        {
            return Err(Fail::new(path, "cannot set permissions", e));
        }
        node.set_times(st).map_err(|e| Fail::new(path, "cannot set times", e))
    }

    /// A regular file: a clone of every extent through copy_file_range, then
    /// verified to share every page with the source.
    fn file(&mut self, p: &Place, st: &libc::stat) -> Result<(), Fail> {
        let Place { sdir, sname, ddir, dname, rel, .. } = *p;
        let Some(ddir) = ddir else {
            self.counts.files += 1;
            self.counts.bytes += st.st_blocks as u64 * 512;
            self.verbose(rel, "");
            return Ok(());
        };
        let s = open_at(sdir, sname, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
            .map_err(|e| Fail::new(self.src_path(rel), "cannot open", e))?;
        let st = fstat(&s).map_err(|e| Fail::new(self.src_path(rel), "cannot stat", e))?;
        let xattrs = self.xattrs(&Node::Fd(&s), rel)?;
        let s = std::fs::File::from(s);
        let smaps = extents_of(&s).map_err(|why| Fail { path: self.src_path(rel), why, errno: None })?;
        // A damaged page cannot be read (cp -a reports an I/O error there): no copy.
        if let Some(m) = smaps.iter().find(|m| m.poisoned) {
            let why = format!("cannot read: damaged page at offset {} (EIO)", m.fblock.byte());
            return Err(Fail { path: self.src_path(rel), why, errno: Some(libc::EIO) });
        }
        // Until the owner is set, nobody but the caller reads the copy (cp -a does the
        // same): the group and other bits come with the final chmod.
        let mine = (st.st_uid, st.st_gid) == (self.euid, self.egid);
        let create = st.st_mode & if mine { 0o777 } else { 0o700 };
        let d = open_at(ddir, dname, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, create)
            .map_err(|e| Fail::new(self.dst_path(rel), "cannot create regular file", e))?;
        let r = self.clone_data(&s, d, &smaps, &st, &xattrs, p);
        remove_if_failed(ddir, dname, r)?;
        self.counts.files += 1;
        self.counts.bytes += st.st_blocks as u64 * 512;
        self.verbose(rel, "");
        Ok(())
    }

    /// The data of a new copy `d`, then its attributes.
    fn clone_data(
        &mut self,
        s: &std::fs::File,
        d: OwnedFd,
        smaps: &[crate::fs::FileExtent],
        st: &libc::stat,
        xattrs: &[(CString, Vec<u8>)],
        p: &Place,
    ) -> Result<(), Fail> {
        let (rel, inherit) = (p.rel, p.inherit);
        // What the create made (its attributes are cached from the reply: no request).
        let made = fstat(&d).map_err(|e| Fail::new(self.dst_path(rel), "cannot stat", e))?;
        let size = st.st_size as u64;
        let (mut soff, mut doff, mut left) = (0i64, 0i64, size);
        while left > 0 {
            // SAFETY: both descriptors are open; the offsets are ours.
            let r =
                unsafe { libc::copy_file_range(s.as_raw_fd(), &mut soff, d.as_raw_fd(), &mut doff, left as usize, 0) };
            if r < 0 {
                return Err(Fail::new(self.dst_path(rel), "cannot clone", io::Error::last_os_error()));
            }
            if r == 0 {
                break;
            }
            left -= r as u64;
        }
        let d = std::fs::File::from(d);
        if size > 0 {
            extents_of(&d).and_then(|dmaps| shared_everywhere(smaps, &dmaps, 0, 0, size)).map_err(|why| Fail {
                path: self.dst_path(rel),
                why,
                errno: None,
            })?;
        }
        let d = OwnedFd::from(d);
        self.finish(&Node::Fd(&d), st, xattrs, Made::of(&made, true, inherit), rel)
    }

    /// Symlinks, FIFOs, sockets and device nodes: made by name (a symlink with
    /// symlinkat, the rest with mknod, as cp -a does), never opened (see `Node`).
    fn node(&mut self, p: &Place, st: &libc::stat) -> Result<(), Fail> {
        let Place { sdir, sname, ddir, dname, rel, inherit } = *p;
        let link = kind(st.st_mode) == libc::S_IFLNK;
        if let Some(ddir) = ddir {
            let target = if link { Some(self.read_link(sdir, sname, rel)?) } else { None };
            let xattrs = self.xattrs(&Node::At(sdir, sname), rel)?;
            let made = match &target {
                // SAFETY: `ddir` is an open directory; both strings are NUL-terminated.
                Some(t) => cvt(unsafe { libc::symlinkat(t.as_ptr(), ddir.as_raw_fd(), dname.as_ptr()) }),
                None => {
                    let mine = (st.st_uid, st.st_gid) == (self.euid, self.egid);
                    let mode = kind(st.st_mode) | (st.st_mode & if mine { 0o777 } else { 0o700 });
                    // SAFETY: `ddir` is an open directory and `dname` NUL-terminated.
                    cvt(unsafe { libc::mknodat(ddir.as_raw_fd(), dname.as_ptr(), mode, st.st_rdev) })
                }
            };
            let what = if link { "cannot create symbolic link" } else { "cannot create special file" };
            made.map_err(|e| Fail::new(self.dst_path(rel), what, e))?;
            // A symlink's mode is neither kept nor set by Linux.
            let r = stat_at(ddir, dname).map_err(|e| Fail::new(self.dst_path(rel), "cannot stat", e)).and_then(|m| {
                self.finish(&Node::At(ddir, dname), st, &xattrs, Made::of(&m, !link, inherit && !link), rel)
            });
            remove_if_failed(ddir, dname, r)?;
        }
        if link {
            self.counts.symlinks += 1;
        } else {
            self.counts.special += 1;
        }
        self.verbose(rel, "");
        Ok(())
    }

    fn read_link(&self, sdir: &OwnedFd, sname: &CStr, rel: &Path) -> Result<CString, Fail> {
        let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
        // SAFETY: the buffer is `buf.len()` bytes; readlinkat writes at most that.
        let len = unsafe { libc::readlinkat(sdir.as_raw_fd(), sname.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if len < 0 {
            return Err(Fail::new(self.src_path(rel), "cannot read symbolic link", io::Error::last_os_error()));
        }
        buf.truncate(len as usize);
        CString::new(buf).map_err(|_| {
            Fail::new(self.src_path(rel), "cannot read symbolic link", io::Error::from_raw_os_error(libc::EINVAL))
        })
    }

    fn dir(&mut self, p: &Place, st: &libc::stat) {
        let Place { sdir, sname, ddir, dname, rel, inherit } = *p;
        let s = match open_dir_at(sdir, sname) {
            Ok(s) => s,
            Err(e) => return self.report(Fail::new(self.src_path(rel), "cannot open directory", e)),
        };
        let xattrs = match self.xattrs(&Node::Fd(&s), rel) {
            Ok(x) => x,
            Err(f) => return self.report(f),
        };
        let d = match ddir {
            None => None,
            Some(ddir) => {
                // Writable and searchable by us until its children are in; its own
                // mode comes last (cp -a does the same).
                // SAFETY: `ddir` is an open directory and `dname` NUL-terminated.
                if let Err(e) = cvt(unsafe { libc::mkdirat(ddir.as_raw_fd(), dname.as_ptr(), 0o700) }) {
                    return self.report(Fail::new(self.dst_path(rel), "cannot create directory", e));
                }
                match open_dir_at(ddir, dname) {
                    Ok(d) => Some(d),
                    Err(e) => return self.report(Fail::new(self.dst_path(rel), "cannot open directory", e)),
                }
            }
        };
        self.counts.dirs += 1;
        self.verbose(rel, "");
        self.children(&s, st, d.as_ref(), rel);
        if let Some(d) = &d {
            // Even after a fatal error the directories made so far get their owner, mode
            // and times; what fails then has been said already.
            let stopped = self.stopped.is_some();
            let r = fstat(d)
                .map_err(|e| Fail::new(self.dst_path(rel), "cannot stat", e))
                .and_then(|m| self.finish(&Node::Fd(d), st, &xattrs, Made::of(&m, true, inherit), rel));
            if let Err(f) = r
                && !stopped
            {
                self.report(f);
            }
        }
    }

    fn children(&mut self, s: &OwnedFd, st: &libc::stat, d: Option<&OwnedFd>, rel: &Path) {
        let entries = match read_dir(s) {
            Ok(e) => e,
            Err(e) => return self.report(Fail::new(self.src_path(rel), "cannot read directory", e)),
        };
        let child = |e: &Entry| rel.join(OsStr::from_bytes(e.name.to_bytes()));
        // Entries made here (not by the daemon, which copies xattrs as they are) take
        // the directory's default ACL, if it has one: `finish` drops what they inherit.
        let inherit = d.is_some_and(has_default_acl);
        // As root, the daemon clones what is not a directory, a batch at a time; the
        // entries it leaves (several links, damaged pages, anything it cannot do in a
        // batch) come here, and so does everything when it is not there.
        let mut leftover: Option<HashSet<u64>> = None;
        if let Some(d) = d
            && self.batch
            && entries.iter().any(|e| e.dtype != libc::DT_DIR)
        {
            match self.batch_clone(st.st_ino, d) {
                Ok(skipped) => leftover = Some(skipped),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EPERM)) => self.batch = false,
                // A batch that failed changed nothing; what the earlier ones cloned is
                // there, and the rest goes one by one, where the error has a name.
                Err(_) => {
                    let missing = entries.iter().filter(|e| e.dtype != libc::DT_DIR && stat_at(d, &e.name).is_err());
                    leftover = Some(missing.map(|e| e.ino).collect());
                }
            }
        }
        for e in &entries {
            let c = child(e);
            let by_daemon = e.dtype != libc::DT_DIR && leftover.as_ref().is_some_and(|l| !l.contains(&e.ino));
            if by_daemon {
                self.verbose(&c, "");
                continue;
            }
            self.entry(&Place { sdir: s, sname: &e.name, ddir: d, dname: &e.name, rel: &c, inherit });
            if self.stopped.is_some() {
                return;
            }
        }
    }

    /// Clones the non-directories of source directory `sino` into `d` in the daemon;
    /// returns the inode numbers it left to us.
    fn batch_clone(&mut self, sino: u64, d: &OwnedFd) -> io::Result<HashSet<u64>> {
        let (mut cursor, mut skipped) = (0, HashSet::new());
        loop {
            let mut buf = ioctl::bytes(&[sino, cursor], ioctl::CLONE_DIR_LEN);
            ioctl_rw(d, ioctl::DAXLINK_IOC_CLONE_DIR, &mut buf)?;
            let r = ioctl::decode_clone_dir(&buf).ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTO))?;
            self.counts.files += r.files;
            self.counts.symlinks += r.symlinks;
            self.counts.special += r.special;
            self.counts.bytes += r.bytes;
            skipped.extend(r.skipped);
            self.progress();
            match r.next {
                Some(next) => cursor = next,
                None => return Ok(skipped),
            }
        }
    }
}

/// A copy that could not be finished goes, so that a run that fails leaves whole copies
/// only: a half-made one would have the caller's owner, the wrong times, no xattrs.
fn remove_if_failed(ddir: &OwnedFd, dname: &CStr, r: Result<(), Fail>) -> Result<(), Fail> {
    if r.is_err() {
        // SAFETY: `ddir` is an open directory and `dname` NUL-terminated.
        unsafe { libc::unlinkat(ddir.as_raw_fd(), dname.as_ptr(), 0) };
    }
    r
}

/// `daxlink stat`'s pages_used of the mount holding `dir`.
fn pages_used(dir: &OwnedFd) -> io::Result<u64> {
    let mut buf = [0u8; ioctl::STATS_LEN];
    ioctl_rw(dir, ioctl::DAXLINK_IOC_STATS, &mut buf)?;
    ioctl::decode_stats(&buf).map(|s| s.pages_used).ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTO))
}

/// Splits a path into the directory that holds it (canonical) and its name there; a
/// path without a last name (`/`, `.`, `..`) is made canonical first.
fn split(path: &Path) -> io::Result<(PathBuf, CString)> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (if p.as_os_str().is_empty() { Path::new(".") } else { p }.to_path_buf(), n.to_owned()),
        _ => {
            let full = path.canonicalize()?;
            match (full.parent(), full.file_name()) {
                (Some(p), Some(n)) => (p.to_path_buf(), n.to_owned()),
                // `/` itself: never on a daxlink mount.
                _ => return Err(io::Error::from_raw_os_error(libc::EXDEV)),
            }
        }
    };
    Ok((parent.canonicalize()?, cname(&name)?))
}

/// What `cp -a SRC DST` would make: `DST/name-of-SRC` when DST is a directory, else
/// DST; refused when that exists.
fn target(src: &Path, dst: &Path, src_name: &CStr) -> Result<PathBuf, String> {
    match std::fs::metadata(dst) {
        Ok(m) if m.is_dir() => {
            let t = dst.join(OsStr::from_bytes(src_name.to_bytes()));
            if std::fs::symlink_metadata(&t).is_ok() {
                return Err(format!("{} exists; clone -r makes a new tree and merges into none (EEXIST)", t.display()));
            }
            Ok(t)
        }
        Ok(_) => Err(format!("exists and is not a directory; cannot clone {} over it (EEXIST)", src.display())),
        Err(_) if std::fs::symlink_metadata(dst).is_ok() => {
            Err("exists (a symbolic link to nothing); not followed (EEXIST)".into())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(dst.to_path_buf()),
        Err(e) => Err(e.to_string()),
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn clone_tree(src: &Path, dst: &Path, opts: Opts) -> ExitCode {
    // Modes are set as asked: the umask applies to neither cp -a nor this.
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };
    let (sparent, sname) = match split(src) {
        Ok(s) => s,
        Err(e) => return fail(src, e),
    };
    let sdir = match open_path(&sparent, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(d) => d,
        Err(e) => return fail(src, e),
    };
    let st = match stat_at(&sdir, &sname) {
        Ok(st) => st,
        Err(e) => return fail(src, e),
    };
    let tpath = match target(src, dst, &sname) {
        Ok(t) => t,
        Err(e) => return fail(dst, e),
    };
    let (tparent, tname) = match split(&tpath) {
        Ok(t) => t,
        Err(e) => return fail(dst, e),
    };
    let top = match open_path(&tparent, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(d) => d,
        Err(e) => return fail(dst, e),
    };
    // Everything is checked before anything is made.
    let tdev = match fstat(&top) {
        Ok(t) => t.st_dev,
        Err(e) => return fail(dst, e),
    };
    if tdev != st.st_dev {
        return fail(dst, "source and destination are on different filesystems (EXDEV)");
    }
    // The daemon clones what it holds: cached writes to the source go first.
    write_back_all(&sdir);
    let before = match pages_used(&top) {
        Ok(p) => p,
        Err(e) => return fail(dst, not_daxlink(e)),
    };
    if kind(st.st_mode) == libc::S_IFDIR {
        let s = sparent.join(OsStr::from_bytes(sname.to_bytes()));
        if tparent.starts_with(&s) {
            return fail(dst, format!("cannot clone a directory, {}, into itself (EINVAL)", src.display()));
        }
    }
    let mut w = Walk {
        opts,
        src: src.to_path_buf(),
        dst: tpath.clone(),
        top,
        top_name: tname.clone(),
        // SAFETY: geteuid cannot fail.
        root: unsafe { libc::geteuid() } == 0,
        // SAFETY: geteuid cannot fail.
        euid: unsafe { libc::geteuid() },
        // SAFETY: getegid cannot fail.
        egid: unsafe { libc::getegid() },
        batch: !opts.per_file && !opts.dry_run,
        links: HashMap::new(),
        counts: Counts::default(),
        stopped: None,
        xbuf: vec![0; 1 << 16],
        tty: io::stderr().is_terminal(),
        last_progress: Instant::now(),
        progress_shown: false,
    };
    w.batch &= w.root;
    let top = w.top.try_clone();
    let top = match top {
        Ok(t) => t,
        Err(e) => return fail(dst, e),
    };
    let ddir = (!opts.dry_run).then_some(&top);
    let inherit = has_default_acl(&top);
    w.entry(&Place { sdir: &sdir, sname: &sname, ddir, dname: &tname, rel: Path::new(""), inherit });
    w.clear_progress();
    let c = w.counts;
    let what = [
        count(c.files, "file", "files"),
        count(c.dirs, "directory", "directories"),
        count(c.symlinks, "symlink", "symlinks"),
        count(c.links, "hard link", "hard links"),
        count(c.special, "special file", "special files"),
    ]
    .join(", ");
    if opts.dry_run {
        println!("daxlink: would clone {} to {}: {what}; {} bytes to share", src.display(), tpath.display(), c.bytes);
    } else {
        let used = match pages_used(&top) {
            Ok(after) => format!("{} pages newly used", after as i64 - before as i64),
            Err(e) => format!("pages used unknown ({e})"),
        };
        let how = match &w.stopped {
            Some(f) => format!("stopped at {} ({}) after cloning", f.path.display(), f.why),
            None => "cloned".into(),
        };
        let errors = if c.errors > 0 { format!("; {}", count(c.errors, "error", "errors")) } else { String::new() };
        println!(
            "daxlink: {how} {} to {}: {what}; {} bytes shared, {used}{errors}",
            src.display(),
            tpath.display(),
            c.bytes
        );
    }
    if c.errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
