//! Metadata records: the unit of the log and of checkpoints. A checkpoint is the
//! record stream that rebuilds the whole namespace from nothing; a log transaction is
//! a group of records applied atomically. Both decode through `Record::decode`, which
//! refuses anything out of bounds.
//!
//! On the media a record is a tag byte, then its fields, little-endian and unaligned;
//! `ino`, `dir`, `fblock`, `pfn` and `pages` are u64, a byte string is a u32 length
//! then the bytes, a time is i64 seconds then u32 nanoseconds (below 10^9):
//!
//! ```text
//! tag  record        fields
//!   1  SetInode      ino, mode u32, uid u32, gid u32, nlink u32, size u64,
//!                    atime, mtime, ctime, btime, rdev u32, flags u32
//!   2  SetSymlink    ino, target (at most SYMLINK_MAX bytes)
//!   3  FreeInode     ino
//!   4  Link          dir, name (at most NAME_MAX bytes), ino
//!   5  Unlink        dir, name
//!   6  Map           ino, fblock, pfn, pages, cloned u8 (0 or 1)
//!   7  Unmap         ino, fblock, pages
//!   8  SetXattr      ino, name (at most XATTR_NAME_MAX), value (at most XATTR_VALUE_MAX)
//!   9  RemoveXattr   ino, name
//!  10  BadPage       pfn: a failed data page, never allocated again
//!  11  Poison        ino, fblock: that block reads EIO until a whole-page write
//! ```
//!
//! The poison list is these last two: `BadPage` records the failed pages (the page
//! table's bad marks), `Poison` the file blocks still on them. A checkpoint
//! (`State::encode_checkpoint`) is, for each inode in inode order: `SetInode`,
//! `SetSymlink`, its `SetXattr`s, its `Map`s (`cloned` where the pages are shared) and
//! its `Poison`s; then every `BadPage`; then every directory's `Link`s, so that each
//! link finds its inode. Replay and checkpoint load are the same `State::apply`.

use super::inode::{Attr, NAME_MAX, SYMLINK_MAX, Timespec};
use crate::arena::codec::{CodecError, Dec, Enc};
use crate::types::{FileBlock, Ino, Pfn};

/// Largest xattr value (XATTR_SIZE_MAX).
pub const XATTR_VALUE_MAX: usize = 65536;
/// Longest xattr name, namespace prefix included (XATTR_NAME_MAX).
pub const XATTR_NAME_MAX: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Create the inode, or replace its attributes (the kind must not change).
    SetInode(Attr),
    SetSymlink {
        ino: Ino,
        target: Vec<u8>,
    },
    /// Drop the inode and every page it maps.
    FreeInode {
        ino: Ino,
    },
    Link {
        dir: Ino,
        name: Vec<u8>,
        ino: Ino,
    },
    Unlink {
        dir: Ino,
        name: Vec<u8>,
    },
    /// Map pages into an unmapped file range. `cloned`: the pages may already belong
    /// to other files (a clone, or a checkpoint's map of shared pages); otherwise they
    /// must be free.
    Map {
        ino: Ino,
        fblock: FileBlock,
        pfn: Pfn,
        pages: u64,
        cloned: bool,
    },
    Unmap {
        ino: Ino,
        fblock: FileBlock,
        pages: u64,
    },
    SetXattr {
        ino: Ino,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    RemoveXattr {
        ino: Ino,
        name: Vec<u8>,
    },
    /// An arena page failed: never allocate it again.
    BadPage {
        pfn: Pfn,
    },
    /// A file block lives on a failed page: reads of it fail with EIO until the block
    /// is unmapped (a whole-page write remaps it to a fresh page).
    Poison {
        ino: Ino,
        fblock: FileBlock,
    },
}

const T_SET_INODE: u8 = 1;
const T_SET_SYMLINK: u8 = 2;
const T_FREE_INODE: u8 = 3;
const T_LINK: u8 = 4;
const T_UNLINK: u8 = 5;
const T_MAP: u8 = 6;
const T_UNMAP: u8 = 7;
const T_SET_XATTR: u8 = 8;
const T_REMOVE_XATTR: u8 = 9;
const T_BAD_PAGE: u8 = 10;
const T_POISON: u8 = 11;

/// Encoded size of a `Map` record: what splitting one extent in two can add to a
/// checkpoint.
const MAP_LEN: u64 = 1 + 8 * 4 + 1;

fn time(e: &mut Enc, t: Timespec) {
    e.i64(t.sec);
    e.u32(t.nsec);
}

fn dec_time(d: &mut Dec) -> Result<Timespec, CodecError> {
    let sec = d.i64()?;
    let nsec = d.u32()?;
    if nsec >= 1_000_000_000 {
        return Err(CodecError::Nanoseconds(nsec));
    }
    Ok(Timespec { sec, nsec })
}

impl Record {
    pub fn encode(&self, e: &mut Enc) {
        match self {
            Record::SetInode(a) => {
                e.u8(T_SET_INODE);
                e.u64(a.ino.0);
                e.u32(a.mode);
                e.u32(a.uid);
                e.u32(a.gid);
                e.u32(a.nlink);
                e.u64(a.size);
                for t in [a.atime, a.mtime, a.ctime, a.btime] {
                    time(e, t);
                }
                e.u32(a.rdev);
                e.u32(a.flags);
            }
            Record::SetSymlink { ino, target } => {
                e.u8(T_SET_SYMLINK);
                e.u64(ino.0);
                e.bytes(target);
            }
            Record::FreeInode { ino } => {
                e.u8(T_FREE_INODE);
                e.u64(ino.0);
            }
            Record::Link { dir, name, ino } => {
                e.u8(T_LINK);
                e.u64(dir.0);
                e.bytes(name);
                e.u64(ino.0);
            }
            Record::Unlink { dir, name } => {
                e.u8(T_UNLINK);
                e.u64(dir.0);
                e.bytes(name);
            }
            Record::Map { ino, fblock, pfn, pages, cloned } => {
                e.u8(T_MAP);
                e.u64(ino.0);
                e.u64(fblock.0);
                e.u64(pfn.0);
                e.u64(*pages);
                e.u8(*cloned as u8);
            }
            Record::Unmap { ino, fblock, pages } => {
                e.u8(T_UNMAP);
                e.u64(ino.0);
                e.u64(fblock.0);
                e.u64(*pages);
            }
            Record::SetXattr { ino, name, value } => {
                e.u8(T_SET_XATTR);
                e.u64(ino.0);
                e.bytes(name);
                e.bytes(value);
            }
            Record::RemoveXattr { ino, name } => {
                e.u8(T_REMOVE_XATTR);
                e.u64(ino.0);
                e.bytes(name);
            }
            Record::BadPage { pfn } => {
                e.u8(T_BAD_PAGE);
                e.u64(pfn.0);
            }
            Record::Poison { ino, fblock } => {
                e.u8(T_POISON);
                e.u64(ino.0);
                e.u64(fblock.0);
            }
        }
    }

    pub fn decode(d: &mut Dec) -> Result<Record, CodecError> {
        let ino = |d: &mut Dec| d.u64().map(Ino);
        Ok(match d.u8()? {
            T_SET_INODE => {
                let ino = ino(d)?;
                let mode = d.u32()?;
                let uid = d.u32()?;
                let gid = d.u32()?;
                let nlink = d.u32()?;
                let size = d.u64()?;
                let atime = dec_time(d)?;
                let mtime = dec_time(d)?;
                let ctime = dec_time(d)?;
                let btime = dec_time(d)?;
                let rdev = d.u32()?;
                let flags = d.u32()?;
                Record::SetInode(Attr {
                    ino,
                    mode,
                    uid,
                    gid,
                    nlink,
                    size,
                    atime,
                    mtime,
                    ctime,
                    btime,
                    rdev,
                    flags,
                    blocks: 0,
                })
            }
            T_SET_SYMLINK => Record::SetSymlink { ino: ino(d)?, target: d.bytes(SYMLINK_MAX)? },
            T_FREE_INODE => Record::FreeInode { ino: ino(d)? },
            T_LINK => Record::Link { dir: ino(d)?, name: d.bytes(NAME_MAX)?, ino: ino(d)? },
            T_UNLINK => Record::Unlink { dir: ino(d)?, name: d.bytes(NAME_MAX)? },
            T_MAP => Record::Map {
                ino: ino(d)?,
                fblock: FileBlock(d.u64()?),
                pfn: Pfn(d.u64()?),
                pages: d.u64()?,
                cloned: match d.u8()? {
                    0 => false,
                    1 => true,
                    x => return Err(CodecError::ClonedFlag(x)),
                },
            },
            T_UNMAP => Record::Unmap { ino: ino(d)?, fblock: FileBlock(d.u64()?), pages: d.u64()? },
            T_SET_XATTR => {
                Record::SetXattr { ino: ino(d)?, name: d.bytes(XATTR_NAME_MAX)?, value: d.bytes(XATTR_VALUE_MAX)? }
            }
            T_REMOVE_XATTR => Record::RemoveXattr { ino: ino(d)?, name: d.bytes(XATTR_NAME_MAX)? },
            T_BAD_PAGE => Record::BadPage { pfn: Pfn(d.u64()?) },
            T_POISON => Record::Poison { ino: ino(d)?, fblock: FileBlock(d.u64()?) },
            t => return Err(CodecError::UnknownRecord(t)),
        })
    }

    /// An upper bound of how much applying this record can grow the checkpoint (whose
    /// items are records too). Removals grow nothing, so a full filesystem can always
    /// delete; an unmap can split one extent in two; replacing the attributes of an
    /// inode that `exists` grows nothing either.
    pub fn growth_bound(&self, exists: &dyn Fn(Ino) -> bool) -> u64 {
        let own = || {
            let mut e = Enc::new();
            self.encode(&mut e);
            e.len() as u64
        };
        match self {
            Record::Unlink { .. } | Record::FreeInode { .. } | Record::RemoveXattr { .. } => 0,
            Record::Unmap { .. } => MAP_LEN,
            Record::SetInode(a) if exists(a.ino) => 0,
            _ => own(),
        }
    }
}

/// Encodes a group of records as one payload.
pub fn encode_all(recs: &[Record]) -> Vec<u8> {
    let mut e = Enc::new();
    for r in recs {
        r.encode(&mut e);
    }
    e.buf
}

/// Decodes a payload of records.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Record>, CodecError> {
    records(bytes).collect()
}

/// The records of `bytes` one by one (a checkpoint of a million extents need not be
/// decoded whole before it is applied); the first error ends them.
pub fn records(bytes: &[u8]) -> impl Iterator<Item = Result<Record, CodecError>> {
    let mut d = Dec::new(bytes);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || d.remaining() == 0 {
            return None;
        }
        let r = Record::decode(&mut d);
        failed = r.is_err();
        Some(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr() -> Attr {
        Attr {
            ino: Ino(9),
            mode: libc::S_IFREG | 0o644,
            uid: 1,
            gid: 2,
            nlink: 1,
            size: 12345,
            atime: Timespec { sec: 1, nsec: 2 },
            mtime: Timespec { sec: -3, nsec: 4 },
            ctime: Timespec { sec: 5, nsec: 6 },
            btime: Timespec { sec: 7, nsec: 8 },
            rdev: 0,
            flags: 0,
            blocks: 0,
        }
    }

    fn all() -> Vec<Record> {
        vec![
            Record::SetInode(attr()),
            Record::SetSymlink { ino: Ino(9), target: b"/x/y".to_vec() },
            Record::FreeInode { ino: Ino(9) },
            Record::Link { dir: Ino(1), name: b"n".to_vec(), ino: Ino(9) },
            Record::Unlink { dir: Ino(1), name: b"n".to_vec() },
            Record::Map { ino: Ino(9), fblock: FileBlock(3), pfn: Pfn(400), pages: 2, cloned: true },
            Record::Unmap { ino: Ino(9), fblock: FileBlock(3), pages: 1 },
            Record::SetXattr { ino: Ino(9), name: b"user.a".to_vec(), value: vec![1, 2] },
            Record::RemoveXattr { ino: Ino(9), name: b"user.a".to_vec() },
            Record::BadPage { pfn: Pfn(400) },
            Record::Poison { ino: Ino(9), fblock: FileBlock(3) },
        ]
    }

    #[test]
    fn every_record_roundtrips() {
        let recs = all();
        assert_eq!(decode_all(&encode_all(&recs)).unwrap(), recs);
    }

    #[test]
    fn truncated_payloads_never_decode_to_garbage_silently() {
        let bytes = encode_all(&all());
        for cut in 1..bytes.len() {
            if let Ok(r) = decode_all(&bytes[..cut]) {
                // A cut exactly at a record boundary is a valid shorter stream.
                assert_eq!(r, all()[..r.len()].to_vec(), "cut {cut}");
            }
        }
    }

    #[test]
    fn map_record_size_matches_its_bound_constant() {
        let mut e = Enc::new();
        all()[5].encode(&mut e);
        assert_eq!(e.len() as u64, MAP_LEN);
    }
}
