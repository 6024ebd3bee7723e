//! daxlink's ioctls. FUSE forwards ioctls on regular files and directories only in
//! restricted mode, so every argument is fixed-size and its size is encoded in the
//! ioctl number (`_IOR`/`_IOW`/`_IOWR`).

use crate::fs::Stats;

/// The ioctl "type" byte of daxlink.
pub const IOC_TYPE: u32 = b'X' as u32;

const IOC_READ: u32 = 2;

/// `_IOR(type, nr, size)`.
pub const fn ior(nr: u32, size: u32) -> u32 {
    (IOC_READ << 30) | (size << 16) | (IOC_TYPE << 8) | nr
}

/// Bytes of the `STATS` reply: nine little-endian u64s.
pub const STATS_LEN: usize = 9 * 8;
/// Filesystem statistics (`daxlink stat`), on any file or directory of the mount.
pub const DAXLINK_IOC_STATS: u32 = ior(1, STATS_LEN as u32);

pub fn encode_stats(s: &Stats) -> Vec<u8> {
    [
        s.block_size,
        s.pages_total,
        s.pages_used,
        s.pages_free,
        s.pages_shared,
        s.warnings,
        s.inodes,
        s.log_bytes,
        s.generation,
    ]
    .iter()
    .flat_map(|v| v.to_le_bytes())
    .collect()
}

pub fn decode_stats(b: &[u8]) -> Option<Stats> {
    if b.len() != STATS_LEN {
        return None;
    }
    let v: Vec<u64> = b
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    Some(Stats {
        block_size: v[0],
        pages_total: v[1],
        pages_used: v[2],
        pages_free: v[3],
        pages_shared: v[4],
        warnings: v[5],
        inodes: v[6],
        log_bytes: v[7],
        generation: v[8],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_roundtrip_and_size_is_in_the_number() {
        let s = Stats {
            block_size: 4096,
            pages_total: 1,
            pages_used: 2,
            pages_free: 3,
            pages_shared: 4,
            warnings: 5,
            inodes: 6,
            log_bytes: 7,
            generation: 8,
        };
        assert_eq!(decode_stats(&encode_stats(&s)), Some(s));
        assert_eq!((DAXLINK_IOC_STATS >> 16) & 0x3fff, STATS_LEN as u32);
        assert!(decode_stats(&[0; 8]).is_none());
    }
}
