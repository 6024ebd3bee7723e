//! `fuser::Filesystem` over `fs::Fs`. Requests are translated, never interpreted: all
//! filesystem logic is in the core.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use dashmap::{DashMap, DashSet};
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::ioctl;
use crate::dax::Owner;
use crate::fs::{Attr, Changer, Ctx, Dedupe, Error, Fs, Kind, SetAttr, SetTime, Timespec};
use crate::types::{Ino, Pfn};

/// How long the kernel may cache names and attributes. Every change to them passes
/// through this mount, whose kernel side invalidates its own cache; the two it cannot
/// see are invalidated too: atime (the kernel marks it stale after each read) and
/// privileges daxlink drops (`invalidate_attr`). Long, then, as virtiofs's
/// cache=always: an unlink or stat a second after a lookup needs no second lookup.
const TTL: Duration = Duration::from_secs(60);
/// Largest write request: 1 MiB, what `fs.fuse.max_pages_limit` allows.
const MAX_WRITE: u32 = 1 << 20;

struct Handle {
    ino: Ino,
    append: bool,
    /// Opened for writing: what dedupe and unshare require of their target.
    write: bool,
    /// Opened `O_DIRECT`: served with `FOPEN_DIRECT_IO` (see `fopen_flags`).
    direct: bool,
}

pub struct DaxFuse {
    fs: Arc<Fs>,
    handles: DashMap<u64, Handle>,
    next_fh: AtomicU64,
    /// The daemon could open the pool for writing: a read-only mount may become
    /// read-write (`mount -o remount,rw`).
    pool_writable: bool,
    /// The kernel's lookup count of each directory it knows.
    dir_refs: DashMap<u64, u64>,
    /// Set once the session exists (it is made after the filesystem).
    notifier: Arc<OnceLock<Notifier>>,
    /// The kernel leaves dropping privileges on write, truncate and chown to us
    /// (`FUSE_HANDLE_KILLPRIV_V2`); see `kill_privs`.
    killpriv: bool,
    /// The kernel's writeback cache: asked for by the mount options, then whether the
    /// kernel granted it (`init`).
    writeback: bool,
    /// Files written back since their last fsync or close. The kernel refreshes a
    /// file's block count after a write it sends as made and at close (fuse_flush), not
    /// after it writes cached pages back; `fsync` drops the stale count (see there).
    written_back: DashSet<u64>,
    /// Files whose cached data met a full pool when written back (see `getattr`).
    out_of_space: DashSet<u64>,
    /// Inodes whose cached attributes are to be dropped outside any request: a
    /// notification sent from a write-back request could wait for the eviction of an
    /// inode that waits for that very request.
    stale_attrs: Sender<Ino>,
}

fn errno(e: Error) -> Errno {
    if e.is_failure() {
        log::error!("{e}");
    }
    Errno::from_i32(e.errno())
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime.to_system(),
        mtime: a.mtime.to_system(),
        ctime: a.ctime.to_system(),
        crtime: a.btime.to_system(),
        kind: kind(a.kind()),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: crate::types::PAGE_SIZE as u32,
        flags: 0,
    }
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(request_time(t)),
    }
}

/// A time from a request. fuser makes the kernel's `(sec, nsec)` before the epoch into
/// `EPOCH - (|sec| + nsec)` (its system_time_from_time), where the kernel means
/// `sec + nsec`: 1960-06-15 12:00:00.5 would be stored a second early.
fn request_time(t: SystemTime) -> Timespec {
    match std::time::UNIX_EPOCH.duration_since(t) {
        Ok(d) if !d.is_zero() => Timespec { sec: -(d.as_secs() as i64), nsec: d.subsec_nanos() },
        _ => Timespec::from_system(t),
    }
}

fn ctx(req: &Request) -> Ctx {
    Ctx { uid: req.uid(), gid: req.gid() }
}

fn ino(i: INodeNo) -> Ino {
    Ino(i.0)
}

impl DaxFuse {
    pub fn new(
        fs: Arc<Fs>,
        pool_writable: bool,
        writeback: bool,
        notifier: Arc<OnceLock<Notifier>>,
        stale_attrs: Sender<Ino>,
    ) -> DaxFuse {
        DaxFuse {
            writeback,
            written_back: DashSet::new(),
            out_of_space: DashSet::new(),
            stale_attrs,
            fs,
            handles: DashMap::new(),
            next_fh: AtomicU64::new(1),
            pool_writable,
            dir_refs: DashMap::new(),
            notifier,
            killpriv: false,
        }
    }

    fn entry(&self, r: crate::fs::Result<Attr>, reply: ReplyEntry) {
        match r {
            Ok(a) => {
                if a.kind() == Kind::Dir {
                    self.remember_dir(a.ino);
                }
                reply.entry(&self.ttl(&a), &file_attr(&a), Generation(a.generation()))
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    /// A directory the kernel knows (a cwd, say) must outlive an rmdir until the kernel
    /// forgets it, as a removed directory still answers fstat with nlink 0. Files need
    /// no such care: only open ones are used after unlink, and open files are held.
    fn remember_dir(&self, ino: Ino) {
        let mut n = self.dir_refs.entry(ino.0).or_insert(0);
        if *n == 0 && self.fs.open_inode(ino).is_err() {
            return;
        }
        *n += 1;
    }

    fn empty(r: crate::fs::Result<()>, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// A handle of `i` opened with `flags`, and how the kernel is to treat it.
    ///
    /// Without the writeback cache an `O_DIRECT` open gets `FOPEN_DIRECT_IO`, as
    /// passthrough_hp gives it: the kernel's direct path is shorter than the cached
    /// path's O_DIRECT branch, and direct writes to one file may run in parallel. Under
    /// the writeback cache it does not: the kernel then keeps mtime and ctime itself,
    /// and its direct path never updates them (fuse_direct_write_iter), so `stat` would
    /// show the time of the last cached write until the inode left its cache. A write
    /// open of an append-only file does get it there: the kernel does not know the flag,
    /// so only this handle's `O_APPEND`, kept here, holds its writes to the end of the
    /// file (a cached write would reach us as whole pages at their own offsets, and an
    /// `fcntl` could drop `O_APPEND`); its mtime is the price. A direct handle leaves
    /// dropping privileges to us (`write_kills_privs`).
    ///
    /// Other opens keep the kernel's page cache (`FOPEN_KEEP_CACHE`: every change to
    /// file data passes through this mount, whose kernel side updates or drops what it
    /// caches, except memory failures, which `invalidate` reports), unless a read now
    /// would update atime: the kernel never tells the server about reads it serves from
    /// its cache, so such an open drops the cache and its first read comes here
    /// (relatime's first read after a write; every open under strictatime). Always
    /// `FOPEN_NOFLUSH`: `flush` has nothing to do (no locks kept here), so close need
    /// not wait for it; under the writeback cache the kernel sends it anyway, once.
    fn open_handle(&self, i: Ino, flags: i32) -> (FileHandle, FopenFlags) {
        let write = matches!(flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR);
        let append = flags & libc::O_APPEND != 0;
        let direct = if self.writeback {
            write && self.fs.getattr(i).is_ok_and(|a| a.append_only())
        } else {
            flags & libc::O_DIRECT != 0
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.insert(fh, Handle { ino: i, append, write, direct });
        let open = if direct {
            FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES | FopenFlags::FOPEN_NOFLUSH
        } else if self.fs.atime_due(i) {
            FopenFlags::FOPEN_NOFLUSH
        } else {
            FopenFlags::FOPEN_NOFLUSH | FopenFlags::FOPEN_KEEP_CACHE
        };
        (FileHandle(fh), open)
    }
}

impl Filesystem for DaxFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            config.set_max_write(max).ok();
        }
        // Lets an O_DIRECT handle (FOPEN_DIRECT_IO) be mmapped too; older kernels lack it.
        config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP).ok();
        // Without it, every cached write costs a second round trip: FUSE never sets
        // SB_NOSEC, so the kernel asks for security.capability before each write.
        self.killpriv = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2).is_ok();
        // POSIX ACLs: the kernel caches and enforces them (default_permissions is
        // always on); the daemon keeps mode and ACL in step and gives new inodes their
        // directory's default ACL (`fs::acl`), for which it needs the mode before the
        // umask (FUSE_DONT_MASK: the kernel sends the umask separately).
        if config.add_capabilities(InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK).is_err() {
            log::warn!("the kernel does not offer FUSE_POSIX_ACL: ACLs are stored but not enforced");
        }
        // File handles that survive the kernel forgetting an inode (NFS export,
        // open_by_handle_at): the kernel then looks the inode up by number as "." (and
        // its parent as ".."), and refuses a handle whose generation differs. Inode
        // numbers are the pool's own, so any of them can be looked up at any time.
        if config.add_capabilities(InitFlags::FUSE_EXPORT_SUPPORT).is_err() {
            log::warn!("the kernel does not offer FUSE_EXPORT_SUPPORT: file handles go stale with the inode cache");
        }
        // The kernel keeps written data in its page cache and sends it later, page
        // ranges at a time (`FUSE_WRITE_CACHE` writes); it is then the truth for the
        // size, mtime and ctime of regular files, and sends them with a SETATTR when it
        // writes the inode back (fuse_write_inode).
        if self.writeback && config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE).is_err() {
            log::warn!("the kernel does not offer FUSE_WRITEBACK_CACHE: every write goes to the daemon as it is made");
            self.writeback = false;
        }
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.fs.unmount() {
            log::error!("unmount: {e}");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(self.fs.lookup(ino(parent), name.as_bytes()), reply)
    }

    /// Attributes, and under the writeback cache the last word on a cached write.
    ///
    /// The kernel takes a cached write(2) without asking the daemon, so what the daemon
    /// would refuse (an immutable file, a full pool) would be refused only at write-back,
    /// reported at fsync or close, and a program filling the pool would write on
    /// forever. But before each cached write whose file's attributes were dropped, the
    /// kernel refreshes the mode, asking with the writer's handle, and fails the write
    /// with the error (fuse_cache_write_iter; only a read past the end of the file or
    /// an expired TTL asks that way too). So where a writer may no longer write, the
    /// file's attributes are dropped (`set_flags`, a write-back that found the pool
    /// full), and a writable handle's question is answered with the error the write
    /// would get: the writer sees what ext4 or XFS would tell it, if one write late.
    /// `stat` asks without a handle and is answered.
    fn getattr(&self, _req: &Request, i: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let a = match self.fs.getattr(ino(i)) {
            Ok(a) => a,
            Err(e) => return reply.error(errno(e)),
        };
        if let Some(fh) = fh
            && let Err(e) = self.may_write_cached(fh, &a)
        {
            return reply.error(e);
        }
        reply.attr(&self.ttl(&a), &file_attr(&a))
    }

    fn setattr(
        &self,
        req: &Request,
        i: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Under HANDLE_KILLPRIV_V2 the kernel flags these (FATTR_KILL_SUIDGID), but
        // fuser does not pass the flag on: a chown always drops set-user-ID, a
        // truncate when the caller lacks CAP_FSETID, taken to mean is not root.
        let chown = uid.is_some() || gid.is_some();
        let in_group = |g| in_group(req, g);
        let who = if chown { Changer::Chown } else { changer(req, &in_group) };
        if self.killpriv
            && (chown || size.is_some())
            && let Err(e) = self.fs.kill_privs(ino(i), who)
        {
            return reply.error(errno(e));
        }
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ctime: ctime.map(request_time),
        };
        let times_only = mode.is_none() && uid.is_none() && gid.is_none() && size.is_none() && atime.is_none();
        match self.fs.setattr(ino(i), set) {
            Ok(a) => reply.attr(&self.ttl(&a), &file_attr(&a)),
            // Under the writeback cache the kernel writes a file's times back after an
            // unlink or a rename over it (fuse_update_ctime), when the last name and
            // handle, and with them the inode, may be gone. It discards the reply, but
            // keeps an error as a write-back error of the filesystem, which the next
            // syncfs(2) would report: the times of a file that no longer exists are
            // written, as far as anyone can tell.
            Err(Error::NotFound) if times_only => reply.attr(&TTL, &gone(i, mtime, ctime)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, i: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino(i)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let p = ino(parent);
        let r = self.fs.create_mode(p, mode, umask).and_then(|m| self.fs.mknod(ctx(req), p, name.as_bytes(), m, rdev));
        self.entry(r, reply)
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let p = ino(parent);
        self.entry(
            self.fs.create_mode(p, mode, umask).and_then(|m| self.fs.mkdir(ctx(req), p, name.as_bytes(), m)),
            reply,
        )
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.fs.unlink(ino(parent), name.as_bytes()), reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.fs.rmdir(ino(parent), name.as_bytes()), reply)
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.entry(self.fs.symlink(ctx(req), ino(parent), link_name.as_bytes(), target.as_os_str().as_bytes()), reply)
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        Self::empty(
            self.fs.rename(ctx(req), ino(parent), name.as_bytes(), ino(newparent), newname.as_bytes(), flags.bits()),
            reply,
        )
    }

    fn link(&self, _req: &Request, i: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.entry(self.fs.link(ino(i), ino(newparent), newname.as_bytes()), reply)
    }

    fn open(&self, _req: &Request, i: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let f = flags.0;
        if f & libc::O_ACCMODE != libc::O_RDONLY
            && let Err(e) = self.fs.may_open_for_write(ino(i), f & libc::O_APPEND != 0, f & libc::O_TRUNC != 0)
        {
            return reply.error(errno(e));
        }
        match self.fs.open_inode(ino(i)) {
            Ok(()) => {
                let (fh, open) = self.open_handle(ino(i), flags.0);
                reply.opened(fh, open)
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read_whole(ino(i), offset, size as u64) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        i: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (append, direct) = self.handles.get(&fh.0).map_or((false, false), |h| (h.append, h.direct));
        // Page-cache writeback names its offset exactly, through any writable handle
        // of the file. Under the writeback cache the kernel keeps the size and puts an
        // O_APPEND write at its end itself; a direct handle's write elsewhere had its
        // O_APPEND dropped by fcntl, which the kernel lets through for want of knowing
        // the file append-only (setfl): refused by the core (EPERM) rather than moved
        // to the end behind the kernel's back. Without it, handles append.
        let cached = write_flags.contains(WriteFlags::FUSE_WRITE_CACHE);
        let append = append && !cached && !self.writeback;
        if cached {
            self.written_back.insert(i.0);
        }
        if let Err(e) = self.write_kills_privs(req, ino(i), direct, write_flags) {
            return reply.error(errno(e));
        }
        let r =
            if cached { self.fs.write_back(ino(i), offset, data) } else { self.fs.write(ino(i), offset, data, append) };
        match r {
            Ok(n) => reply.written(n as u32),
            Err(Error::NoSpace) if cached => {
                if self.out_of_space.insert(i.0) {
                    let _ = self.stale_attrs.send(ino(i));
                }
                reply.error(Errno::ENOSPC)
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Nothing to do: locks are the kernel's own, and written data reaches the pool
    /// before close returns either way (under the writeback cache, fuse_flush writes the
    /// inode's pages back before it sends FLUSH, and reports their errors). The kernel
    /// asks only under the writeback cache (which makes it ignore `FOPEN_NOFLUSH`), and
    /// `ENOSYS` tells it never to ask again: a close then costs no request.
    fn flush(&self, _req: &Request, _i: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS)
    }

    fn release(
        &self,
        _req: &Request,
        _i: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.handles.remove(&fh.0) {
            Some((_, h)) => {
                // Its close (fuse_flush) dropped the block count after writing back.
                self.written_back.remove(&h.ino.0);
                Self::empty(self.fs.release(h.ino), reply)
            }
            None => reply.error(Errno::EBADF),
        }
    }

    /// Makes everything durable. A file written back since its last fsync also gets its
    /// cached attributes dropped, so that `stat` after `fsync` counts the blocks the
    /// write-back allocated: safe here, where the caller holds the file open (from a
    /// write-back request it would not be: an inode being evicted waits for its
    /// write-back, and the notification would wait for the eviction).
    fn fsync(&self, _req: &Request, i: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let r = self.fs.sync();
        if r.is_ok() && self.written_back.remove(&i.0).is_some() {
            self.invalidate_attr(ino(i));
        }
        Self::empty(r, reply)
    }

    fn forget(&self, _req: &Request, i: INodeNo, nlookup: u64) {
        let gone = match self.dir_refs.get_mut(&i.0) {
            Some(mut n) => {
                *n = n.saturating_sub(nlookup);
                *n == 0
            }
            None => false,
        };
        if gone {
            self.dir_refs.remove(&i.0);
            if let Err(e) = self.fs.release(ino(i)) {
                log::error!("forget of directory {}: {e}", i.0);
            }
        }
    }

    fn opendir(&self, _req: &Request, i: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.getattr(ino(i)) {
            Ok(a) if a.kind() == Kind::Dir => match self.fs.open_inode(ino(i)) {
                Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
                Err(e) => reply.error(errno(e)),
            },
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn releasedir(&self, _req: &Request, i: INodeNo, _fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        Self::empty(self.fs.release(ino(i)), reply)
    }

    fn readdir(&self, _req: &Request, i: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let r = self.fs.readdir_each(ino(i), offset, &mut |off, child, k, name| {
            reply.add(INodeNo(child.0), off, kind(k), OsStr::from_bytes(name))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsyncdir(&self, _req: &Request, _i: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        Self::empty(self.fs.sync(), reply)
    }

    fn statfs(&self, _req: &Request, _i: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, s.bsize)
    }

    fn setxattr(
        &self,
        req: &Request,
        i: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        // The kernel would flag an ACL change by a caller outside the file's group
        // (FUSE_SETXATTR_ACL_KILL_SGID) only in the extended request fuser does not
        // parse; the caller's groups say the same.
        let in_group = |g| in_group(req, g);
        Self::empty(self.fs.setxattr_by(ino(i), name.as_bytes(), value, flags, changer(req, &in_group)), reply)
    }

    fn getxattr(&self, _req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.getxattr(ino(i), name.as_bytes()) {
            Ok(v) => xattr_reply(&v, size, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.listxattr(ino(i)) {
            Ok(v) => xattr_reply(&v, size, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn removexattr(&self, _req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.fs.removexattr(ino(i), name.as_bytes()), reply)
    }

    fn access(&self, _req: &Request, i: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // `default_permissions`: the kernel has checked the mode bits already.
        Self::empty(self.fs.getattr(ino(i)).map(|_| ()), reply)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let p = ino(parent);
        let r = self
            .fs
            .create_mode(p, mode, umask)
            .and_then(|m| self.fs.mknod(ctx(req), p, name.as_bytes(), libc::S_IFREG | (m & 0o7777), 0))
            .and_then(|a| self.fs.open_inode(a.ino).map(|()| a));
        match r {
            Ok(a) => {
                let (fh, open) = self.open_handle(a.ino, flags);
                reply.created(&self.ttl(&a), &file_attr(&a), Generation(a.generation()), fh, open)
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn ioctl(
        &self,
        req: &Request,
        i: INodeNo,
        fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        match self.ioctl_inner(req, ino(i), fh, cmd, in_data, out_size as usize) {
            Ok(out) => reply.ioctl(0, &out),
            Err(e) => reply.error(e),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // The kernel caps a legacy COPY_FILE_RANGE at 0xfffff000 bytes; callers loop.
        let len = len.min(u32::MAX as u64 & !(crate::types::PAGE_SIZE - 1));
        if let Err(e) = self.modified_kills_privs(req, ino(ino_out)) {
            return reply.error(errno(e));
        }
        match self.fs.copy_range(ino(ino_in), offset_in, ino(ino_out), offset_out, len) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let r = self.modified_kills_privs(req, ino(i)).and_then(|()| self.fs.fallocate(ino(i), mode, offset, length));
        Self::empty(r, reply)
    }

    fn lseek(&self, _req: &Request, i: INodeNo, _fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        let Ok(off) = u64::try_from(offset) else {
            return reply.error(Errno::ENXIO);
        };
        match self.fs.seek(ino(i), off, whence) {
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl DaxFuse {
    /// Drops privileges before a write where the kernel does not: under
    /// HANDLE_KILLPRIV_V2 (always; it flags callers without CAP_FSETID), and on a
    /// FOPEN_DIRECT_IO handle otherwise (no flag then: a non-root caller is taken for
    /// one without CAP_FSETID, as FUSE does not say which capabilities it has).
    fn write_kills_privs(&self, req: &Request, i: Ino, direct: bool, flags: WriteFlags) -> crate::fs::Result<()> {
        if !self.killpriv && !direct {
            return Ok(());
        }
        let in_group = |g| in_group(req, g);
        let unprivileged = flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) || (!self.killpriv && req.uid() != 0);
        self.drop_privs(i, if unprivileged { Changer::Unprivileged(&in_group) } else { Changer::Privileged })
    }

    /// What the kernel's `file_modified` leaves to us under HANDLE_KILLPRIV_V2 before a
    /// copy_file_range or fallocate changes a file: it sends no flag, so a non-root
    /// caller is taken for one without CAP_FSETID.
    fn modified_kills_privs(&self, req: &Request, i: Ino) -> crate::fs::Result<()> {
        if !self.killpriv {
            return Ok(());
        }
        let in_group = |g| in_group(req, g);
        self.drop_privs(i, changer(req, &in_group))
    }

    /// `Fs::kill_privs`, and the kernel's cached mode with the bits, which it would
    /// otherwise show for TTL.
    fn drop_privs(&self, i: Ino, who: Changer<'_>) -> crate::fs::Result<()> {
        if self.fs.kill_privs(i, who)? {
            self.invalidate_attr(i);
        }
        Ok(())
    }

    /// How long the kernel may keep `a`: `TTL`, but not at all under the writeback
    /// cache for a file a writer may be refused at its next write (see `getattr`), so
    /// that the writer asks first whatever else refreshed the attributes meanwhile.
    fn ttl(&self, a: &Attr) -> Duration {
        if !self.writeback || a.kind() != Kind::File {
            return TTL;
        }
        let refusing = a.immutable() || a.append_only() || self.out_of_space.contains(&a.ino.0);
        if refusing { Duration::ZERO } else { TTL }
    }

    /// Whether the writer holding `fh` may go on writing into the kernel's cache (see
    /// `getattr`): not into an immutable file, nor into an append-only one through a
    /// handle opened before the flag without `O_APPEND` (the VFS's rules at write
    /// time), nor while a write-back of the file found the pool full and it still has
    /// less room than one write request.
    fn may_write_cached(&self, fh: FileHandle, a: &Attr) -> Result<(), Errno> {
        let Some(append) = self.handles.get(&fh.0).filter(|h| self.writeback && h.write).map(|h| h.append) else {
            return Ok(());
        };
        if a.immutable() || (a.append_only() && !append) {
            return Err(Errno::EPERM);
        }
        if self.out_of_space.contains(&a.ino.0) {
            if self.fs.statfs().bfree < (MAX_WRITE as u64).div_ceil(crate::types::PAGE_SIZE) {
                return Err(Errno::ENOSPC);
            }
            self.out_of_space.remove(&a.ino.0);
        }
        Ok(())
    }

    /// `invalidate_attr`, once the session exists.
    fn invalidate_attr(&self, ino: Ino) {
        if let Some(n) = self.notifier.get() {
            invalidate_attr(n, ino);
        }
    }

    /// `chattr`. The VFS has checked ownership and `CAP_LINUX_IMMUTABLE` already
    /// (`vfs_fileattr_set`); they are checked again here as FUSE lets us (the owner's
    /// uid, root for `i` and `a`), since nothing else stands between a forged request
    /// and an immutable file.
    fn set_flags(&self, req: &Request, i: Ino, flags: u32) -> Result<(), Errno> {
        let a = self.fs.getattr(i).map_err(errno)?;
        let guarded = crate::fs::inode::FL_IMMUTABLE | crate::fs::inode::FL_APPEND;
        if req.uid() != 0 && (req.uid() != a.uid || (a.flags ^ flags) & guarded != 0) {
            return Err(Errno::EPERM);
        }
        self.fs.set_flags(i, flags).map_err(errno)?;
        // Writers through earlier handles ask again before their next cached write.
        if (a.flags ^ flags) & guarded != 0 {
            self.invalidate_attr(i);
        }
        Ok(())
    }

    /// daxlink's ioctls (see `ioctl`); the reply must fit the caller's `out_size`.
    fn ioctl_inner(
        &self,
        req: &Request,
        i: Ino,
        fh: FileHandle,
        cmd: u32,
        input: &[u8],
        out_size: usize,
    ) -> Result<Vec<u8>, Errno> {
        let w = ioctl::words(input);
        let arg = |n: usize| w.get(n).copied().ok_or(Errno::EINVAL);
        let writable = || self.handles.get(&fh.0).is_some_and(|h| h.write);
        let out = match cmd {
            ioctl::DAXLINK_IOC_STATS => ioctl::encode_stats(&self.fs.stats()),
            ioctl::FS_IOC_GETFLAGS | ioctl::FS_IOC32_GETFLAGS => {
                self.fs.getattr(i).map_err(errno)?.flags.to_le_bytes().to_vec()
            }
            ioctl::FS_IOC_FSGETXATTR => ioctl::encode_fsxattr(self.fs.getattr(i).map_err(errno)?.flags),
            ioctl::FS_IOC_SETFLAGS | ioctl::FS_IOC32_SETFLAGS => {
                let flags = input.get(..4).ok_or(Errno::EINVAL)?;
                self.set_flags(req, i, u32::from_le_bytes([flags[0], flags[1], flags[2], flags[3]]))?;
                Vec::new()
            }
            ioctl::FS_IOC_FSSETXATTR => {
                self.set_flags(req, i, ioctl::decode_fsxattr(input).ok_or(Errno::EOPNOTSUPP)?)?;
                Vec::new()
            }
            ioctl::DAXLINK_IOC_EXTENTS => {
                let from = crate::types::FileBlock::of(arg(0)?);
                let (batch, more) = self.fs.extents_from(i, from, ioctl::EXTENTS_MAX).map_err(errno)?;
                ioctl::encode_extents(&batch, more)
            }
            // Who owns which page is the reverse map: root only, as XFS keeps GETFSMAP
            // to CAP_SYS_ADMIN (FUSE tells the caller's uid, not its capabilities).
            ioctl::DAXLINK_IOC_PAGE | ioctl::DAXLINK_IOC_POISON if req.uid() != 0 => return Err(Errno::EPERM),
            ioctl::DAXLINK_IOC_PAGE => {
                let pfn = Pfn(arg(0)?);
                let state = self.fs.page_state(pfn).map_err(errno)?;
                ioctl::encode_page(pfn, state, self.fs.page_is_bad(pfn).map_err(errno)?)
            }
            ioctl::DAXLINK_IOC_INJECT => {
                if req.uid() != 0 {
                    return Err(Errno::EPERM);
                }
                let f = self.fs.memory_failure(Pfn(arg(0)?), arg(1)?).map_err(errno)?;
                if let Some(n) = self.notifier.get() {
                    invalidate(n, &f.owners);
                }
                ioctl::bytes(&[f.failed.len() as u64, f.owners.len() as u64, f.holder_calls], ioctl::INJECT_LEN)
            }
            ioctl::DAXLINK_IOC_MOUNT_INFO => ioctl::encode_mount_info(std::process::id(), &self.fs.options()),
            ioctl::DAXLINK_IOC_REMOUNT => {
                if req.uid() != 0 {
                    return Err(Errno::EPERM);
                }
                let opts = ioctl::decode_remount(input).ok_or(Errno::EINVAL)?;
                if !opts.read_only && !self.pool_writable {
                    return Err(Errno::EROFS);
                }
                self.fs.reconfigure(opts).map_err(errno)?;
                Vec::new()
            }
            ioctl::DAXLINK_IOC_POISON => {
                let at = ioctl::PoisonCursor { pfn: Pfn(arg(0)?), owner: arg(1)? };
                ioctl::encode_poison(&self.fs.bad_pages(), at)
            }
            ioctl::DAXLINK_IOC_DEDUPE => {
                if !writable() {
                    return Err(Errno::EBADF);
                }
                let src = Ino(arg(0)?);
                let a = self.fs.getattr(src).map_err(errno)?;
                if !may_read(&a, req.uid(), req.gid()) {
                    return Err(Errno::EACCES);
                }
                let r = self.fs.dedupe_range(src, arg(1)?, i, arg(2)?, arg(3)?).map_err(errno)?;
                let (bytes, status) = match r {
                    Dedupe::Same { bytes } => (bytes, ioctl::DEDUPE_SAME),
                    Dedupe::Differs => (0, ioctl::DEDUPE_DIFFERS),
                };
                ioctl::bytes(&[bytes, status], ioctl::DEDUPE_LEN)
            }
            ioctl::DAXLINK_IOC_UNSHARE => {
                if !writable() {
                    return Err(Errno::EBADF);
                }
                self.fs.unshare(i, arg(0)?, arg(1)?).map_err(errno)?;
                Vec::new()
            }
            // Root only: the daemon makes these copies itself, so it could neither check
            // each source against the caller's permissions nor drop what `cp -a` drops
            // for a caller who may not keep owners; anyone else clones file by file.
            ioctl::DAXLINK_IOC_CLONE_DIR if req.uid() != 0 => return Err(Errno::EPERM),
            ioctl::DAXLINK_IOC_CLONE_DIR => {
                let r = self.fs.clone_entries(Ino(arg(0)?), i, arg(1)?, ioctl::CLONE_DIR_MAX).map_err(errno)?;
                // The directory's times changed. Its new names need nothing dropped: a
                // lookup answered ENOENT leaves a negative dentry whose entry timeout is
                // zero (fuse_lookup), so the kernel asks again.
                if r.files + r.symlinks + r.special > 0 {
                    self.invalidate_attr(i);
                }
                let skipped = r.skipped.iter().map(|s| s.0).collect();
                let (files, symlinks, special, bytes, next) = (r.files, r.symlinks, r.special, r.bytes, r.next);
                ioctl::encode_clone_dir(&ioctl::CloneDir { files, symlinks, special, bytes, next, skipped })
            }
            _ => return Err(Errno::ENOTTY),
        };
        if out.len() > out_size {
            return Err(Errno::EINVAL);
        }
        Ok(out)
    }
}

/// Drops the kernel's cached copies of the failed file pages, so nothing stale is
/// served from the page cache: the next read comes here and fails with EIO.
pub fn invalidate(n: &Notifier, owners: &[Owner]) {
    let ps = crate::types::PAGE_SIZE as i64;
    for o in owners {
        if let Err(e) = n.inval_inode(INodeNo(o.ino.0), o.index.0 as i64 * ps, ps) {
            log::warn!("invalidating inode {} at block {}: {e}", o.ino, o.index);
        }
    }
}

/// The attributes of a deleted regular file: no links, no bytes, the times given.
fn gone(i: INodeNo, mtime: Option<TimeOrNow>, ctime: Option<SystemTime>) -> FileAttr {
    let now = Timespec::now();
    let mtime = match mtime {
        Some(TimeOrNow::SpecificTime(t)) => request_time(t),
        _ => now,
    };
    let ctime = ctime.map_or(now, request_time);
    let a = Attr::new(Ino(i.0), libc::S_IFREG, 0, 0, ctime);
    file_attr(&Attr { nlink: 0, atime: mtime, mtime, ..a })
}

/// Drops the kernel's cached attributes of `ino` (a negative offset leaves its pages
/// alone).
pub fn invalidate_attr(n: &Notifier, ino: Ino) {
    if let Err(e) = n.inval_inode(INodeNo(ino.0), -1, 0) {
        log::warn!("invalidating the attributes of inode {ino}: {e}");
    }
}

/// A caller as a changer of privileges: root is taken to hold `CAP_FSETID` (FUSE tells
/// the uid, not the capabilities).
fn changer<'a>(req: &Request, in_group: &'a dyn Fn(u32) -> bool) -> Changer<'a> {
    if req.uid() == 0 { Changer::Privileged } else { Changer::Unprivileged(in_group) }
}

/// Whether the caller is in group `gid`: its fsgid, or one of its supplementary groups
/// (`Groups:` in /proc/PID/status, which is all FUSE offers of them; a caller gone
/// since counts as outside), as `in_group_p` checks.
fn in_group(req: &Request, gid: u32) -> bool {
    req.gid() == gid
        || std::fs::read_to_string(format!("/proc/{}/status", req.pid())).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
        })
}

/// Whether `uid`/`gid` may read an inode with these attributes (primary group only).
fn may_read(a: &Attr, uid: u32, gid: u32) -> bool {
    uid == 0
        || (a.uid == uid && a.mode & 0o400 != 0)
        || (a.uid != uid && a.gid == gid && a.mode & 0o040 != 0)
        || (a.uid != uid && a.gid != gid && a.mode & 0o004 != 0)
}

/// getxattr/listxattr size protocol: 0 asks for the size; too small is ERANGE.
fn xattr_reply(v: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(v.len() as u32)
    } else if (size as usize) < v.len() {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// What fuser hands over for the kernel's `(sec, nsec)`.
    fn from_fuser(sec: i64, nsec: u32) -> SystemTime {
        if sec >= 0 {
            UNIX_EPOCH + Duration::new(sec as u64, nsec)
        } else {
            UNIX_EPOCH - Duration::new(sec.unsigned_abs(), nsec)
        }
    }

    #[test]
    fn request_times_before_the_epoch_keep_the_kernels_second() {
        for (sec, nsec) in [(-301233600, 500_000_000), (-2, 800_000_000), (-1, 0), (0, 0), (5, 7), (-1, 999_999_999)] {
            assert_eq!(request_time(from_fuser(sec, nsec)), Timespec { sec, nsec }, "({sec}, {nsec})");
        }
    }
}
