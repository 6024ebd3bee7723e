//! The core's one error type; `errno` is the only place it meets Linux error numbers.

use std::fmt;

use crate::arena::MediaError;

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
    /// Media or metadata failure; the text says what.
    Io(String),
    /// The pool cannot be opened; the text says why, in one line.
    Pool(String),
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
            HwPoison | Media(_) | Io(_) | Pool(_) => libc::EIO,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(s) | Error::Pool(s) => f.write_str(s),
            Error::Media(e) => e.fmt(f),
            e => write!(f, "{}", std::io::Error::from_raw_os_error(e.errno())),
        }
    }
}

impl std::error::Error for Error {}

impl From<MediaError> for Error {
    fn from(e: MediaError) -> Error {
        Error::Media(e)
    }
}
