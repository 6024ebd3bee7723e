//! The filesystem core: inodes, directories, extent maps, durability. No FUSE here:
//! everything a FUSE request can do, a caller of `Fs` can do.
//!
//! Lock order: `Fs::core` is the only lock; a request holds it for its whole duration,
//! but for the data copy of a read or of an in-place write, made after it (see
//! `copies`).

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

use std::sync::{Arc, Mutex, MutexGuard};

use self::copies::Pin;
use self::core::Core;
pub use self::core::{AtimeMode, Mapping, Options, SetAttr, SetTime, StatFs, Stats};
use self::file::ReadPlan;
pub use error::{Error, Result};
pub use inode::{Attr, Kind, Timespec};
pub use namespace::{DirEntry, DirFill};
pub use poison::{BadPage, FAILURE_MAX_PAGES};
pub use reflink::{DEDUPE_MAX, Dedupe};

use crate::arena::Media;
use crate::dax::PageState;
use crate::types::{Ino, Pfn};

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

macro_rules! delegate {
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

    /// Bytes up to EOF; a read running into a failed page stops before it.
    pub fn read(&self, ino: Ino, off: u64, len: u64) -> Result<Vec<u8>> {
        let (plan, media, _pin) = self.plan_read(ino, off, len, false)?;
        Ok(plan.read(&*media))
    }

    /// Hands the bytes up to EOF to `f` (straight from the arena when they are one
    /// extent); `whole`: all of the range, or EIO if any of it is on a failed page
    /// (what the kernel's page cache needs).
    pub fn read_with(&self, ino: Ino, off: u64, len: u64, whole: bool, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        let (plan, media, _pin) = self.plan_read(ino, off, len, whole)?;
        plan.with_bytes(&*media, f);
        Ok(())
    }

    /// Writes at `off` (at the end of file when `append`); returns the bytes written. A
    /// write inside EOF into pages the file alone owns copies without the lock.
    pub fn write(&self, ino: Ino, off: u64, data: &[u8], append: bool) -> Result<u64> {
        let mut core = self.lock();
        let Some(plan) = core.plan_in_place(ino, off, data.len() as u64, append)? else {
            return core.write(ino, off, data, append);
        };
        let (media, _pin) = (core.media.clone(), core.copies.pin());
        drop(core);
        plan.write(&*media, data);
        Ok(data.len() as u64)
    }

    /// A read's plan, made under the lock, and the pin that keeps its pages from
    /// reuse while the caller copies without the lock.
    fn plan_read(&self, ino: Ino, off: u64, len: u64, whole: bool) -> Result<(ReadPlan, Arc<dyn Media>, Pin)> {
        let mut core = self.lock();
        let plan = core.read_plan(ino, off, len, whole)?;
        Ok((plan, core.media.clone(), core.copies.pin()))
    }

    delegate! {
        fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr>;
        fn getattr(&self, ino: Ino) -> Result<Attr>;
        fn setattr(&self, ino: Ino, set: SetAttr) -> Result<Attr>;
        /// Drops file capabilities and, with `suid`, set-user-ID (and set-group-ID
        /// with group execute), as a write, truncate or chown does; returns whether
        /// anything changed.
        fn kill_privs(&self, ino: Ino, suid: bool) -> Result<bool>;
        fn mknod(&self, ctx: Ctx, parent: Ino, name: &[u8], mode: u32, rdev: u32) -> Result<Attr>;
        fn mkdir(&self, ctx: Ctx, parent: Ino, name: &[u8], mode: u32) -> Result<Attr>;
        fn symlink(&self, ctx: Ctx, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr>;
        fn readlink(&self, ino: Ino) -> Result<Vec<u8>>;
        fn link(&self, ino: Ino, parent: Ino, name: &[u8]) -> Result<Attr>;
        fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()>;
        fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()>;
        fn rename(&self, parent: Ino, name: &[u8], new_parent: Ino, new_name: &[u8], flags: u32) -> Result<()>;
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
        fn statfs(&self) -> StatFs;
        fn stats(&self) -> Stats;
        fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<()>;
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
        fn extents(&self, ino: Ino) -> Result<Vec<Mapping>>;
        /// Fails `count` arena pages from `pfn` (SPEC §4); returns what was found.
        fn memory_failure(&self, pfn: Pfn, count: u64) -> Result<crate::dax::Failure>;
        /// Every bad page and the file blocks still on it.
        fn bad_pages(&self) -> Vec<BadPage>;
        /// One path of `ino`, for messages.
        fn path_of(&self, ino: Ino) -> Option<String>;
        fn page_state(&self, pfn: Pfn) -> Result<PageState>;
        /// Whether the page failed (memory failure).
        fn page_is_bad(&self, pfn: Pfn) -> Result<bool>;
        /// Checks every structure against every other (tests and fsck call it).
        fn check(&self) -> std::result::Result<(), String>;
        /// Checkpoints and flushes: the clean-unmount path.
        fn unmount(&self) -> Result<()>;
    }
}
