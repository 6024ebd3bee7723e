//! The filesystem core: inodes, directories, extent maps, durability. No FUSE here:
//! everything a FUSE request can do, a caller of `Fs` can do.
//!
//! Lock order: `Fs::core` is the only lock; a request holds it for its whole duration,
//! but for the data copy of a read or of an in-place write, made after it (see
//! `copies`).
//!
//! Every access to the arena can meet a failed page (`arena::MediaError`). The core
//! never handles that itself: the error travels up to `Fs`, which fails the page
//! (`Core::media_failed`) and retries the request (`Fs::run`), so one mechanism turns
//! every such access into the memory-failure outcome, whatever the operation.

pub mod acl;
mod copies;
mod core;
pub mod error;
pub mod extent;
mod file;
pub mod fsck;
pub mod inode;
pub mod journal;
mod namespace;
mod poison;
pub mod record;
mod reflink;
pub mod rmap;
pub mod state;
mod tx;
mod xattr;

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

use self::core::Core;
pub use self::core::{AtimeMode, Changer, FileExtent, Options, SetAttr, SetTime, StatFs, Stats};
pub use error::{CheckError, Error, Flushed, PoolError, Result, SlotError};
pub use inode::{Attr, Kind, Timespec};
pub use namespace::{DirEntry, DirFill};
pub use poison::{BadPage, FAILURE_MAX_PAGES};
pub use reflink::{DEDUPE_MAX, Dedupe};

use crate::arena::{Media, MediaError};
use crate::dax::{Failure, PageState};
use crate::types::{FileBlock, Ino, Pfn};

/// Who is asking: the ids new inodes get.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
}

/// `renameat2` flags.
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;
pub const RENAME_WHITEOUT: u32 = 4;

/// `setxattr` flags.
pub const XATTR_CREATE: i32 = 1;
pub const XATTR_REPLACE: i32 = 2;

/// `fallocate` modes FUSE forwards.
pub const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
pub const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
pub const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

/// A mounted daxlink filesystem.
pub struct Fs {
    core: Mutex<Core>,
}

/// Rounds of failing a page and trying again before a request gives up with EIO.
const MEDIA_RETRIES: usize = 8;

/// Methods that lock the core and call its namesake: through `run` (which fails the
/// pages an access met failed) for those that return a `Result`, plainly for the rest.
macro_rules! delegate {
    ($( $(#[$m:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> Result<$ret:ty>; )*) => {
        $( $(#[$m])* pub fn $name(&self $(, $arg: $ty)*) -> Result<$ret> { self.run(|c| c.$name($($arg),*)) } )*
    };
}

macro_rules! delegate_plain {
    ($( $(#[$m:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        $( $(#[$m])* pub fn $name(&self $(, $arg: $ty)*) -> $ret { self.lock().$name($($arg),*) } )*
    };
}

impl Fs {
    /// Formats `media` as an empty daxlink pool whose root belongs to `ctx`.
    pub fn mkfs(media: &dyn Media, ctx: Ctx, uuid: [u8; 16]) -> Result<()> {
        Core::mkfs(media, ctx, uuid)
    }

    /// Opens a pool: verifies the superblock, loads the newest checkpoint, replays the
    /// log, frees orphans and checkpoints (unless read-only).
    pub fn open(media: Arc<dyn Media>, opts: Options) -> Result<Fs> {
        Ok(Fs { core: Mutex::new(Core::open(media, opts)?) })
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` under the lock. An access that met a failed arena page fails the page
    /// (every owner's block is poisoned, the bad page recorded) and runs `op` again,
    /// which then meets the poison the way the kernel defines it: a whole-page write
    /// moves the block to a fresh page, a partial write or a read of it gets EIO, and a
    /// fresh page that failed is never allocated again. Each round fails at least one
    /// page, or gives up with EIO.
    fn run<T>(&self, mut op: impl FnMut(&mut Core) -> Result<T>) -> Result<T> {
        let mut core = self.lock();
        for _ in 0..MEDIA_RETRIES {
            match op(&mut core) {
                Err(Error::Media(e)) => {
                    core.media_failed(e);
                    // A failed metadata page shut the filesystem down: the request
                    // that met it fails with EIO, later changes with EROFS.
                    if core.is_shut_down() {
                        return Err(Error::HwPoison);
                    }
                }
                r => return r,
            }
        }
        Err(Error::HwPoison)
    }

    /// Fails the pages of a media failure (one an access met outside the lock, or one
    /// the kernel reported) and hands what was found to the failure sink.
    fn media_failed(&self, e: MediaError) {
        self.lock().media_failed(e);
    }

    /// Bytes up to EOF; a read running into a failed page stops before it.
    pub fn read(&self, ino: Ino, off: u64, len: u64) -> Result<Vec<u8>> {
        self.read_inner(ino, off, len, false)
    }

    /// Bytes up to EOF, all of them or EIO if any is on a failed page (what the kernel's
    /// page cache needs: a short read would tell it the file ends there).
    pub fn read_whole(&self, ino: Ino, off: u64, len: u64) -> Result<Vec<u8>> {
        self.read_inner(ino, off, len, true)
    }

    /// Plans under the lock, copies without it; a copy that meets a failed page fails
    /// it and plans again, and the new plan stops before the poison.
    fn read_inner(&self, ino: Ino, off: u64, len: u64, whole: bool) -> Result<Vec<u8>> {
        for _ in 0..MEDIA_RETRIES {
            let (plan, media, pin) = {
                let mut core = self.lock();
                let plan = core.read_plan(ino, off, len, whole)?;
                (plan, core.media.clone(), core.copies.pin())
            };
            match plan.read(&*media, &pin) {
                Err(Error::Media(e)) => {
                    drop(pin);
                    self.media_failed(e);
                }
                r => return r,
            }
        }
        Err(Error::HwPoison)
    }

    /// Writes at `off` (at the end of file when `append`); returns the bytes written. A
    /// write inside EOF into pages the file alone owns copies without the lock; if the
    /// copy meets a failed page, the page is failed and the write runs again under the
    /// lock (whole pages then move to fresh ones, partial ones fail with EIO).
    pub fn write(&self, ino: Ino, off: u64, data: &[u8], append: bool) -> Result<u64> {
        self.store(ino, off, data, append, true)
    }

    /// `write` of pages a cache in front of the filesystem wrote back (the kernel's
    /// writeback cache): mtime and ctime stay as they are, since that cache keeps them
    /// and sets them itself (a write-back may come after the times it belongs before).
    pub fn write_back(&self, ino: Ino, off: u64, data: &[u8]) -> Result<u64> {
        self.store(ino, off, data, false, false)
    }

    fn store(&self, ino: Ino, off: u64, data: &[u8], append: bool, stamp: bool) -> Result<u64> {
        let mut core = self.lock();
        let Some(plan) = core.plan_in_place(ino, off, data.len() as u64, append, stamp)? else {
            drop(core);
            return self.run(|c| c.write(ino, off, data, append, stamp));
        };
        let (media, pin) = (core.media.clone(), core.copies.pin());
        drop(core);
        match plan.write(&*media, &pin, data) {
            Err(Error::Media(e)) => {
                drop(pin);
                self.media_failed(e);
                self.run(|c| c.write(ino, off, data, append, stamp))
            }
            r => r.map(|()| data.len() as u64),
        }
    }

    /// Gives every failure found by an access from now on to `sink` (the FUSE layer
    /// drops the kernel's cached copies of the owners' pages).
    pub fn set_failure_sink(&self, sink: Sender<Failure>) {
        self.lock().failure_sink = Some(sink);
    }

    /// Fails the pages the media reported failed without an access meeting them (the
    /// kernel's early `SIGBUS`); returns what was found. Each failure also goes to the
    /// failure sink.
    pub fn take_media_failures(&self) -> Vec<Failure> {
        let mut core = self.lock();
        let reported = core.media.take_failures();
        reported.into_iter().map(|e| core.media_failed(e)).collect()
    }

    delegate! {
        fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr>;
        fn getattr(&self, ino: Ino) -> Result<Attr>;
        fn setattr(&self, ino: Ino, set: SetAttr) -> Result<Attr>;
        /// Drops file capabilities, set-user-ID and set-group-ID as a write, truncate,
        /// fallocate, copy or chown by `who` does; returns whether anything changed.
        fn kill_privs(&self, ino: Ino, who: Changer<'_>) -> Result<bool>;
        fn mknod(&self, ctx: Ctx, parent: Ino, name: &[u8], mode: u32, rdev: u32) -> Result<Attr>;
        fn mkdir(&self, ctx: Ctx, parent: Ino, name: &[u8], mode: u32) -> Result<Attr>;
        fn symlink(&self, ctx: Ctx, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr>;
        fn readlink(&self, ino: Ino) -> Result<Vec<u8>>;
        fn link(&self, ino: Ino, parent: Ino, name: &[u8]) -> Result<Attr>;
        fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()>;
        fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()>;
        fn rename(&self, ctx: Ctx, parent: Ino, name: &[u8], new_parent: Ino, new_name: &[u8], flags: u32) -> Result<()>;
        /// Entries after readdir cookie `offset` ("." is 1, ".." is 2), at most `max`.
        fn readdir(&self, ino: Ino, offset: u64, max: usize) -> Result<Vec<DirEntry>>;
        /// The same entries, each handed to `add` (cookie, inode, kind, name) without a
        /// copy, until it returns true: full.
        fn readdir_each(&self, ino: Ino, offset: u64, add: &mut DirFill) -> Result<()>;
        /// Counts an open handle: an unlinked inode lives until its last `release`.
        fn open_inode(&self, ino: Ino) -> Result<()>;
        fn release(&self, ino: Ino) -> Result<()>;
        fn fallocate(&self, ino: Ino, mode: i32, off: u64, len: u64) -> Result<()>;
        /// `SEEK_DATA` / `SEEK_HOLE`.
        fn seek(&self, ino: Ino, off: u64, whence: i32) -> Result<u64>;
        /// Makes every change before it durable (fsync, fdatasync and syncfs alike).
        fn sync(&self) -> Result<()>;
        fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<()>;
        /// `setxattr` by a given changer: an access ACL set by one outside the file's
        /// group drops set-group-ID.
        fn setxattr_by(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32, who: Changer<'_>) -> Result<()>;
        fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>>;
        /// Names, each followed by a NUL, as listxattr(2) returns them.
        fn listxattr(&self, ino: Ino) -> Result<Vec<u8>>;
        fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()>;
        /// FICLONERANGE: shares blocks; returns the bytes cloned.
        fn clone_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> Result<u64>;
        /// FIDEDUPERANGE for one destination.
        fn dedupe_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> Result<Dedupe>;
        /// copy_file_range(2): shares whole blocks, copies the rest; returns bytes copied.
        fn copy_range(&self, src: Ino, src_off: u64, dst: Ino, dst_off: u64, len: u64) -> Result<u64>;
        /// Gives the file private copies of its shared pages in the range.
        fn unshare(&self, ino: Ino, off: u64, len: u64) -> Result<()>;
        fn extents(&self, ino: Ino) -> Result<Vec<FileExtent>>;
        /// At most `max` mapped ranges from block `from` on, and whether more follow.
        fn extents_from(&self, ino: Ino, from: FileBlock, max: usize) -> Result<(Vec<FileExtent>, bool)>;
        /// Fails `count` arena pages from `pfn`, as a machine check would; returns what
        /// was found.
        fn memory_failure(&self, pfn: Pfn, count: u64) -> Result<crate::dax::Failure>;
        fn page_state(&self, pfn: Pfn) -> Result<PageState>;
        /// Whether the page failed (memory failure).
        fn page_is_bad(&self, pfn: Pfn) -> Result<bool>;
        /// Checkpoints and flushes: the clean-unmount path.
        fn unmount(&self) -> Result<()>;
        /// The mode to create an inode with under `parent`: `mode & !umask`, or `mode`
        /// where `parent` has a default ACL (which masks it instead).
        fn create_mode(&self, parent: Ino, mode: u32, umask: u32) -> Result<u32>;
        /// `chattr`: the file attribute flags (`inode::FL_*`).
        fn set_flags(&self, ino: Ino, flags: u32) -> Result<Attr>;
        /// `may_open` for a write: refused (EPERM) for an immutable file, and for an
        /// append-only one unless the open appends and does not truncate.
        fn may_open_for_write(&self, ino: Ino, append: bool, truncate: bool) -> Result<()>;
        /// Takes new mount options (`mount -o remount`).
        fn reconfigure(&self, opts: Options) -> Result<()>;
    }

    delegate_plain! {
        /// Whether a read of `ino` now would update its atime.
        fn atime_due(&self, ino: Ino) -> bool;
        /// The options the filesystem runs with (they change on a remount).
        fn options(&self) -> Options;
        fn statfs(&self) -> StatFs;
        fn stats(&self) -> Stats;
        /// Every bad page and the file blocks still on it.
        fn bad_pages(&self) -> Vec<BadPage>;
        /// One path of `ino`, for messages.
        fn path_of(&self, ino: Ino) -> Option<String>;
        /// Checks every structure against every other (tests and fsck call it).
        fn check(&self) -> std::result::Result<(), CheckError>;
    }
}
