//! The core's one error type; `errno` is the only place it meets Linux error numbers.

use std::fmt;

use crate::arena::codec::CodecError;
use crate::arena::{LayoutError, MediaError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    NameTooLong,
    NoSpace,
    FileTooBig,
    Invalid,
    NoData,
    Range,
    TooBig,
    Perm,
    Access,
    ReadOnly,
    NotSupported,
    NoDeviceOrAddress,
    CrossDevice,
    BadFile,
    TooManyLinks,
    /// The data lives on a failed arena page.
    HwPoison,
    /// An access to the arena met a failed page; `Fs` fails the page and retries.
    Media(MediaError),
    /// Making stores durable failed (`msync`), with the OS error number.
    Flush(Flushed, i32),
    /// A record that was validated and logged did not apply: a bug; the filesystem
    /// turned read-only. `record` and `why` are for the message.
    Shutdown {
        record: String,
        why: String,
    },
    /// `fsck --repair` finished and the structure checks still fail.
    RepairIncomplete(CheckError),
    /// The pool cannot be opened.
    Pool(PoolError),
}

/// What a failed flush was making durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    Superblock,
    /// The whole pool (sync, unmount).
    Pool,
    Checkpoint,
    /// Freshly allocated data pages, before the log names them.
    NewPages,
}

/// Why a pool cannot be opened; each shows as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// The superblock (or the pool's size) is unusable.
    Layout(LayoutError),
    /// Neither checkpoint slot holds a valid checkpoint; why, per slot.
    NoCheckpoint([SlotError; 2]),
    /// Reading the metadata log met a failed page.
    LogUnreadable(MediaError),
    /// The checkpoint's records do not decode.
    CheckpointRecords(CodecError),
    /// A checkpoint record does not fit the state built so far (`why`: the message).
    CheckpointApply(String),
    /// Log transaction `n` does not decode.
    LogRecords(usize, CodecError),
    /// A record of log transaction `n` does not fit the state.
    LogApply(usize, String),
    /// The metadata loaded but a structure check fails.
    Inconsistent(CheckError),
}

/// Why a checkpoint slot is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotError {
    Unreadable(MediaError),
    ShortHeader,
    NoMagic,
    /// The recorded length exceeds the slot.
    TooLong(u64),
    Checksum,
}

/// A structure check that failed, by structure (one verifier each, see
/// `State::check`); the text is for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// Inodes, directories, names, parents, link counts.
    Namespace(String),
    /// A file's extent map on its own (order, overlap, bounds, data region).
    Extents(String),
    /// The page table against the extent maps.
    PageTable(String),
    /// The reverse map against the extent maps and the page table's share counts.
    Rmap(String),
    /// The allocator against the page table, and the page count.
    Space(String),
    /// Poisoned blocks that no extent maps.
    Poison(String),
    /// The log's accounting: the checkpoint outgrew the bound log admission assumed.
    Journal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn errno(&self) -> i32 {
        use Error::*;
        match self {
            NotFound => libc::ENOENT,
            Exists => libc::EEXIST,
            NotDir => libc::ENOTDIR,
            IsDir => libc::EISDIR,
            NotEmpty => libc::ENOTEMPTY,
            NameTooLong => libc::ENAMETOOLONG,
            NoSpace => libc::ENOSPC,
            FileTooBig => libc::EFBIG,
            Invalid => libc::EINVAL,
            NoData => libc::ENODATA,
            Range => libc::ERANGE,
            TooBig => libc::E2BIG,
            Perm => libc::EPERM,
            Access => libc::EACCES,
            ReadOnly => libc::EROFS,
            NotSupported => libc::EOPNOTSUPP,
            NoDeviceOrAddress => libc::ENXIO,
            CrossDevice => libc::EXDEV,
            BadFile => libc::EBADF,
            TooManyLinks => libc::EMLINK,
            HwPoison | Media(_) | Flush(..) | Shutdown { .. } | RepairIncomplete(_) | Pool(_) => libc::EIO,
        }
    }

    /// A flush of `what` that failed with `e`.
    pub(crate) fn flush(what: Flushed, e: &std::io::Error) -> Error {
        Error::Flush(what, e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// A failure of the media or of daxlink itself, which the daemon logs, as opposed
    /// to an error the request itself earned.
    pub fn is_failure(&self) -> bool {
        matches!(self, Error::Flush(..) | Error::Shutdown { .. } | Error::RepairIncomplete(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Flush(what, errno) => {
                let what = match what {
                    Flushed::Superblock => "writing the superblock",
                    Flushed::Pool => "flushing the pool",
                    Flushed::Checkpoint => "flushing a checkpoint",
                    Flushed::NewPages => "flushing new pages",
                };
                write!(f, "{what}: {}", std::io::Error::from_raw_os_error(*errno))
            }
            Error::Shutdown { record, why } => {
                write!(f, "internal inconsistency applying {record}: {why}; filesystem is now read-only")
            }
            Error::RepairIncomplete(e) => write!(f, "repair left the pool inconsistent: {e}"),
            Error::Pool(e) => e.fmt(f),
            Error::Media(e) => e.fmt(f),
            e => write!(f, "{}", std::io::Error::from_raw_os_error(e.errno())),
        }
    }
}

impl std::error::Error for Error {}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Layout(e) => e.fmt(f),
            PoolError::NoCheckpoint([a, b]) => write!(f, "no valid checkpoint (slot 0: {a}, slot 1: {b})"),
            PoolError::LogUnreadable(e) => write!(f, "the metadata log is unreadable: {e}; run daxlink fsck"),
            PoolError::CheckpointRecords(e) => write!(f, "checkpoint: {e}"),
            PoolError::CheckpointApply(why) => write!(f, "checkpoint: {why}; run daxlink fsck"),
            PoolError::LogRecords(n, e) => write!(f, "log transaction {n}: {e}"),
            PoolError::LogApply(n, why) => write!(f, "log transaction {n}: {why}; run daxlink fsck"),
            PoolError::Inconsistent(e) => write!(f, "inconsistent metadata: {e}; run daxlink fsck --repair"),
        }
    }
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::Unreadable(e) => write!(f, "unreadable: {e}"),
            SlotError::ShortHeader => f.write_str("short header"),
            SlotError::NoMagic => f.write_str("no checkpoint magic"),
            SlotError::TooLong(len) => write!(f, "length {len} exceeds the slot"),
            SlotError::Checksum => f.write_str("checksum mismatch"),
        }
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Namespace(s)
            | CheckError::Extents(s)
            | CheckError::PageTable(s)
            | CheckError::Rmap(s)
            | CheckError::Space(s)
            | CheckError::Poison(s)
            | CheckError::Journal(s) => f.write_str(s),
        }
    }
}

impl From<PoolError> for Error {
    fn from(e: PoolError) -> Error {
        Error::Pool(e)
    }
}

impl From<LayoutError> for Error {
    fn from(e: LayoutError) -> Error {
        Error::Pool(PoolError::Layout(e))
    }
}

impl From<MediaError> for Error {
    fn from(e: MediaError) -> Error {
        Error::Media(e)
    }
}
