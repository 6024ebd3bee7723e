//! On-media layout of a pool:
//!
//! ```text
//! page 0             superblock (geometry, checksummed; written once by mkfs)
//! log_start..        metadata log (checksummed transactions, see fs::journal)
//! cp_start[0]..      checkpoint slot 0 \ alternate; the valid one with the
//! cp_start[1]..      checkpoint slot 1 / higher generation wins
//! data_start..end    data pages, owned by files through their extent maps
//! ```
//!
//! The superblock (the first 100 bytes of page 0, the rest zero; little-endian):
//!
//! ```text
//! offset  size  field
//!      0     8  magic "DAXLINK\0"
//!      8     4  version (1)
//!     12     4  page size (4096)
//!     16     8  pool size in bytes (a whole number of pages)
//!     24     8  pages in the pool
//!     32     8  first page of the log          40  8  pages of the log
//!     48     8  first page of checkpoint slot 0
//!     56     8  first page of checkpoint slot 1
//!     64     8  pages of each checkpoint slot  72  8  first data page
//!     80    16  uuid
//!     96     4  CRC32 (crc32fast, IEEE) of bytes 0..96
//! ```
//!
//! mkfs writes it once and never again. A reader checks the magic, the checksum, the
//! version and page size, that the media holds the recorded size, and that the
//! regions are exactly those `Geometry::for_size` gives that size: the log 1/64 of the
//! pool, each checkpoint slot 1/32 (each at least 1024 pages), the data pages after
//! them. Any failure is a `LayoutError` naming it.

use std::fmt;

use super::codec::{CodecError, Dec, Enc, checksum};
use super::media::{Media, MediaError};
use crate::types::{ArenaOffset, PAGE_SIZE, Pfn};

pub const MAGIC: &[u8; 8] = b"DAXLINK\0";
pub const VERSION: u32 = 1;
/// Smallest pool mkfs accepts: room for the metadata regions and some data.
pub const MIN_POOL_SIZE: u64 = 16 << 20;
const SB_LEN: usize = 8 + 4 + 4 + 8 * 8 + 16 + 4;

/// Why a pool cannot be used; each shows as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Below `MIN_POOL_SIZE`.
    TooSmall {
        size: u64,
    },
    /// The metadata regions leave no data pages.
    NoRoomForData {
        size: u64,
    },
    /// No daxlink magic in the superblock.
    NotAPool,
    Checksum,
    /// A superblock field does not decode.
    Superblock(CodecError),
    Version(u32),
    PageSize(u32),
    /// The superblock records a larger pool than the media holds.
    Truncated {
        recorded: u64,
        len: u64,
    },
    /// The media is smaller than the superblock page.
    NoSuperblock {
        len: u64,
    },
    /// The recorded size admits no layout.
    Geometry(Box<LayoutError>),
    /// The recorded regions are not the layout mkfs gives the recorded size.
    Inconsistent,
    /// Reading the superblock met a failed page.
    Unreadable(MediaError),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::TooSmall { size } => {
                write!(f, "pool size {size} is below the minimum of {MIN_POOL_SIZE} bytes")
            }
            LayoutError::NoRoomForData { size } => write!(f, "pool size {size} leaves no room for data"),
            LayoutError::NotAPool => f.write_str("not a daxlink pool (no daxlink magic in the superblock)"),
            LayoutError::Checksum => f.write_str("superblock checksum mismatch (damaged superblock)"),
            LayoutError::Superblock(e) => write!(f, "superblock: {e}"),
            LayoutError::Version(v) => write!(f, "unsupported pool version {v} (this daxlink reads {VERSION})"),
            LayoutError::PageSize(b) => write!(f, "unsupported page size {b}"),
            LayoutError::Truncated { recorded, len } => {
                write!(f, "pool is truncated: superblock says {recorded} bytes, the pool has {len}")
            }
            LayoutError::NoSuperblock { len } => {
                write!(f, "pool is truncated: {len} bytes, smaller than a superblock page")
            }
            LayoutError::Geometry(e) => write!(f, "superblock geometry invalid: {e}"),
            LayoutError::Inconsistent => f.write_str("superblock geometry is inconsistent"),
            LayoutError::Unreadable(e) => write!(f, "cannot read the superblock: {e}"),
        }
    }
}

/// The pool's geometry, as recorded in its superblock. All regions are in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub pool_size: u64,
    pub pages_total: u64,
    pub log_start: Pfn,
    pub log_pages: u64,
    pub cp_start: [Pfn; 2],
    pub cp_pages: u64,
    pub data_start: Pfn,
    pub uuid: [u8; 16],
}

impl Geometry {
    /// The layout mkfs gives a pool of `size` bytes: the log gets 1/64 of the pool
    /// (at least 4 MiB), each checkpoint slot 1/32 (at least 4 MiB).
    pub fn for_size(size: u64, uuid: [u8; 16]) -> Result<Geometry, LayoutError> {
        if size < MIN_POOL_SIZE {
            return Err(LayoutError::TooSmall { size });
        }
        let pages_total = size / PAGE_SIZE;
        let log_pages = (pages_total / 64).max(1024);
        let cp_pages = (pages_total / 32).max(1024);
        let log_start = Pfn(1);
        let cp0 = log_start.plus(log_pages);
        let cp1 = cp0.plus(cp_pages);
        let data_start = cp1.plus(cp_pages);
        if data_start.0 + 16 > pages_total {
            return Err(LayoutError::NoRoomForData { size });
        }
        Ok(Geometry {
            pool_size: pages_total * PAGE_SIZE,
            pages_total,
            log_start,
            log_pages,
            cp_start: [cp0, cp1],
            cp_pages,
            data_start,
            uuid,
        })
    }

    pub fn data_pages(&self) -> u64 {
        self.pages_total - self.data_start.0
    }

    pub fn is_data(&self, pfn: Pfn) -> bool {
        pfn >= self.data_start && pfn.0 < self.pages_total
    }

    /// Whether `[pfn, pfn + pages)` lies inside the data region.
    pub fn is_data_range(&self, pfn: Pfn, pages: u64) -> bool {
        pages > 0 && self.is_data(pfn) && pfn.0.checked_add(pages).is_some_and(|end| end <= self.pages_total)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.raw(MAGIC);
        e.u32(VERSION);
        e.u32(PAGE_SIZE as u32);
        for v in [
            self.pool_size,
            self.pages_total,
            self.log_start.0,
            self.log_pages,
            self.cp_start[0].0,
            self.cp_start[1].0,
            self.cp_pages,
            self.data_start.0,
        ] {
            e.u64(v);
        }
        e.raw(&self.uuid);
        let sum = checksum(&e.buf);
        e.u32(sum);
        debug_assert_eq!(e.len(), SB_LEN);
        e.buf
    }

    /// Decodes and verifies a superblock read from a pool of `media_len` bytes.
    pub fn decode(bytes: &[u8], media_len: u64) -> Result<Geometry, LayoutError> {
        if bytes.len() < SB_LEN || &bytes[..8] != MAGIC {
            return Err(LayoutError::NotAPool);
        }
        let stored = u32::from_le_bytes(bytes[SB_LEN - 4..SB_LEN].try_into().unwrap_or_default());
        if checksum(&bytes[..SB_LEN - 4]) != stored {
            return Err(LayoutError::Checksum);
        }
        let codec = LayoutError::Superblock;
        let mut d = Dec::new(&bytes[8..SB_LEN - 4]);
        let version = d.u32().map_err(codec)?;
        if version != VERSION {
            return Err(LayoutError::Version(version));
        }
        let block = d.u32().map_err(codec)?;
        if block as u64 != PAGE_SIZE {
            return Err(LayoutError::PageSize(block));
        }
        let mut v = [0u64; 8];
        for x in &mut v {
            *x = d.u64().map_err(codec)?;
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(d.take(16).map_err(codec)?);
        let g = Geometry {
            pool_size: v[0],
            pages_total: v[1],
            log_start: Pfn(v[2]),
            log_pages: v[3],
            cp_start: [Pfn(v[4]), Pfn(v[5])],
            cp_pages: v[6],
            data_start: Pfn(v[7]),
            uuid,
        };
        if g.pool_size > media_len {
            return Err(LayoutError::Truncated { recorded: g.pool_size, len: media_len });
        }
        let expect = Geometry::for_size(g.pool_size, uuid).map_err(|e| LayoutError::Geometry(Box::new(e)))?;
        if expect != g {
            return Err(LayoutError::Inconsistent);
        }
        Ok(g)
    }

    /// Reads and verifies the superblock of `media`.
    pub fn read(media: &dyn Media) -> Result<Geometry, LayoutError> {
        if media.len() < PAGE_SIZE {
            return Err(LayoutError::NoSuperblock { len: media.len() });
        }
        let mut sb = vec![0u8; SB_LEN];
        media.read(ArenaOffset(0), &mut sb).map_err(LayoutError::Unreadable)?;
        Geometry::decode(&sb, media.len())
    }

    /// Writes the superblock (mkfs only) and makes it durable.
    pub fn write(&self, media: &dyn Media) -> std::io::Result<()> {
        let failed = |e| std::io::Error::other(e);
        media.fill(ArenaOffset(0), PAGE_SIZE, 0).map_err(failed)?;
        media.write(ArenaOffset(0), &self.encode()).map_err(failed)?;
        media.flush(ArenaOffset(0), PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> Geometry {
        Geometry::for_size(64 << 20, [7; 16]).unwrap()
    }

    #[test]
    fn superblock_roundtrips() {
        let g = geo();
        assert_eq!(Geometry::decode(&g.encode(), g.pool_size).unwrap(), g);
    }

    #[test]
    fn every_flipped_superblock_byte_is_refused() {
        let g = geo();
        let good = g.encode();
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x5a;
            assert!(Geometry::decode(&b, g.pool_size).is_err(), "byte {i} flip accepted");
        }
    }

    #[test]
    fn truncated_pool_is_refused() {
        let g = geo();
        let e = Geometry::decode(&g.encode(), g.pool_size - PAGE_SIZE).unwrap_err();
        assert_eq!(e, LayoutError::Truncated { recorded: g.pool_size, len: g.pool_size - PAGE_SIZE });
    }

    #[test]
    fn regions_are_ordered_and_disjoint() {
        let g = geo();
        assert!(g.log_start.0 >= 1);
        assert_eq!(g.cp_start[0], g.log_start.plus(g.log_pages));
        assert_eq!(g.cp_start[1], g.cp_start[0].plus(g.cp_pages));
        assert_eq!(g.data_start, g.cp_start[1].plus(g.cp_pages));
        assert!(g.data_pages() > 0);
        assert!(Geometry::for_size(MIN_POOL_SIZE - 1, [0; 16]).is_err());
    }
}
