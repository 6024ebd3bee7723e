//! The metadata log and the two checkpoint slots.
//!
//! A transaction is `[magic, len, generation, seq, crc][payload]`, 8-byte aligned, appended at
//! the log head; `crc` covers `len, generation, seq` and the payload. Recovery loads the valid
//! checkpoint with the highest generation `g`, then replays transactions of generation
//! `g` with consecutive sequence numbers from the log start, stopping at the first one
//! that is torn, stale or invalid. A checkpoint of generation `g + 1` goes to the other
//! slot and is made durable before any transaction of that generation is written, so a
//! crash while checkpointing falls back to the old slot and its intact log.
//!
//! On the media (little-endian; the payloads are `fs::record` streams):
//!
//! ```text
//! log transaction   magic u32 0x58544c44 ("DLTX"), len u32 (payload bytes),
//!                   generation u64, seq u64, crc u32    (28 bytes)
//!                   then the payload, padded to 8 bytes
//! checkpoint slot   magic u32 0x50434c44 ("DLCP"), generation u64,
//!                   len u64 (payload bytes), crc u32    (24 bytes)
//!                   then the payload: the whole namespace
//! ```
//!
//! Each `crc` is CRC32 (IEEE) of the header fields after the magic, then the payload.
//! The payload is stored before its header, so a torn append has no valid header and
//! replay stops there. mkfs zeroes both slot headers and the first log header, then
//! writes generation 1 into a slot. Why a slot is not valid is a `SlotError`.

use super::error::{Error, Flushed, PoolError, Result, SlotError};
use crate::arena::codec::{Dec, Enc};
use crate::arena::{Geometry, Media};
use crate::types::{ArenaOffset, PAGE_SIZE};

const TX_MAGIC: u32 = 0x5854_4c44; // "DLTX"
const CP_MAGIC: u32 = 0x5043_4c44; // "DLCP"
const TX_HEADER: u64 = 4 + 4 + 8 + 8 + 4;
const CP_HEADER: u64 = 4 + 8 + 8 + 4;

fn align8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// What recovery found on the media.
pub struct Recovered {
    pub journal: Journal,
    pub checkpoint: Vec<u8>,
    pub transactions: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Journal {
    log_off: ArenaOffset,
    /// Bytes of the log region.
    log_len: u64,
    cp_off: [ArenaOffset; 2],
    /// Bytes of a checkpoint slot.
    cp_len: u64,
    generation: u64,
    seq: u64,
    head: u64,
    /// Payload bytes of the last checkpoint.
    cp_size: u64,
    /// Bound on how much the checkpoint has grown since (see `Record::growth_bound`).
    growth: u64,
}

impl Journal {
    fn empty(geo: &Geometry) -> Journal {
        Journal {
            log_off: geo.log_start.offset(),
            log_len: geo.log_pages * PAGE_SIZE,
            cp_off: [geo.cp_start[0].offset(), geo.cp_start[1].offset()],
            cp_len: geo.cp_pages * PAGE_SIZE,
            generation: 0,
            seq: 0,
            head: 0,
            cp_size: 0,
            growth: 0,
        }
    }

    /// Capacity of a checkpoint payload.
    pub fn checkpoint_capacity(&self) -> u64 {
        self.cp_len - CP_HEADER
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes of log in use.
    pub fn log_used(&self) -> u64 {
        self.head
    }

    /// Whether a transaction of `len` payload bytes growing the checkpoint by at most
    /// `growth` fits without a checkpoint first.
    pub fn fits(&self, len: u64, growth: u64) -> bool {
        self.head + align8(TX_HEADER + len) <= self.log_len
            && self.cp_size + self.growth + growth <= self.checkpoint_capacity()
    }

    /// Whether a transaction could fit right after a checkpoint of `cp_size` bytes.
    pub fn fits_after_checkpoint(&self, cp_size: u64, len: u64, growth: u64) -> bool {
        align8(TX_HEADER + len) <= self.log_len && cp_size + growth <= self.checkpoint_capacity()
    }

    /// mkfs: writes the first checkpoint (generation 1) into an empty pool.
    pub fn format(media: &dyn Media, geo: &Geometry, payload: &[u8]) -> Result<Journal> {
        let mut j = Journal::empty(geo);
        for off in j.cp_off {
            media.fill(off, CP_HEADER, 0)?;
        }
        media.fill(j.log_off, TX_HEADER, 0)?;
        j.checkpoint(media, payload)?;
        Ok(j)
    }

    /// Appends a transaction (not yet durable: see `flush`). A failed log page leaves
    /// the log as it was: the header, written last, never lands.
    pub fn append(&mut self, media: &dyn Media, payload: &[u8], growth: u64) -> Result<()> {
        let len = payload.len() as u64;
        debug_assert!(self.fits(len, growth));
        let mut h = Enc::new();
        h.u32(TX_MAGIC);
        h.u32(len as u32);
        h.u64(self.generation);
        h.u64(self.seq);
        let mut sum = crc32fast::Hasher::new();
        sum.update(&h.buf[4..]);
        sum.update(payload);
        h.u32(sum.finalize());
        let at = self.log_off.plus(self.head);
        media.write(at.plus(TX_HEADER), payload)?;
        media.write(at, &h.buf)?;
        self.head += align8(TX_HEADER + len);
        self.seq += 1;
        self.growth += growth;
        Ok(())
    }

    /// Makes the log (and every store before it) durable.
    pub fn flush(&self, media: &dyn Media) -> Result<()> {
        media.flush(ArenaOffset(0), media.len()).map_err(|e| Error::flush(Flushed::Pool, &e))
    }

    /// Writes `payload` (the whole namespace) as the next generation's checkpoint and
    /// empties the log.
    pub fn checkpoint(&mut self, media: &dyn Media, payload: &[u8]) -> Result<()> {
        let len = payload.len() as u64;
        if len > self.checkpoint_capacity() {
            return Err(Error::NoSpace);
        }
        // Everything the checkpoint refers to must be durable before it is.
        self.flush(media)?;
        let generation = self.generation + 1;
        let off = self.cp_off[(generation % 2) as usize];
        let mut h = Enc::new();
        h.u32(CP_MAGIC);
        h.u64(generation);
        h.u64(len);
        let mut sum = crc32fast::Hasher::new();
        sum.update(&h.buf[4..]);
        sum.update(payload);
        h.u32(sum.finalize());
        media.write(off.plus(CP_HEADER), payload)?;
        media.write(off, &h.buf)?;
        media.flush(off, CP_HEADER + len).map_err(|e| Error::flush(Flushed::Checkpoint, &e))?;
        self.generation = generation;
        self.seq = 0;
        self.head = 0;
        self.cp_size = len;
        self.growth = 0;
        Ok(())
    }

    /// The checkpoint in a slot: its generation and payload, or why it is not valid.
    fn read_slot(media: &dyn Media, off: ArenaOffset, cp_len: u64) -> std::result::Result<(u64, Vec<u8>), SlotError> {
        let mut h = vec![0u8; CP_HEADER as usize];
        media.read(off, &mut h).map_err(SlotError::Unreadable)?;
        let mut d = Dec::new(&h);
        let (Ok(magic), Ok(generation), Ok(len), Ok(crc)) = (d.u32(), d.u64(), d.u64(), d.u32()) else {
            return Err(SlotError::ShortHeader);
        };
        if magic != CP_MAGIC {
            return Err(SlotError::NoMagic);
        }
        if len > cp_len - CP_HEADER {
            return Err(SlotError::TooLong(len));
        }
        let mut payload = vec![0u8; len as usize];
        media.read(off.plus(CP_HEADER), &mut payload).map_err(SlotError::Unreadable)?;
        let mut sum = crc32fast::Hasher::new();
        sum.update(&h[4..CP_HEADER as usize - 4]);
        sum.update(&payload);
        if sum.finalize() != crc {
            return Err(SlotError::Checksum);
        }
        Ok((generation, payload))
    }

    /// Finds the newest valid checkpoint and the valid prefix of its log.
    pub fn recover(media: &dyn Media, geo: &Geometry) -> Result<Recovered> {
        let mut j = Journal::empty(geo);
        let slots = [0, 1].map(|i| Journal::read_slot(media, j.cp_off[i], j.cp_len));
        let (generation, payload) = match slots {
            [Ok(a), Ok(b)] => {
                if a.0 > b.0 {
                    a
                } else {
                    b
                }
            }
            [Ok(a), Err(_)] | [Err(_), Ok(a)] => a,
            [Err(a), Err(b)] => return Err(PoolError::NoCheckpoint([a, b]).into()),
        };
        j.generation = generation;
        j.cp_size = payload.len() as u64;
        let checkpoint = payload;
        let mut transactions = Vec::new();
        loop {
            if j.head + TX_HEADER > j.log_len {
                break;
            }
            let at = j.log_off.plus(j.head);
            let unreadable = |e| Error::Pool(PoolError::LogUnreadable(e));
            let mut h = vec![0u8; TX_HEADER as usize];
            media.read(at, &mut h).map_err(unreadable)?;
            let mut d = Dec::new(&h);
            let (Ok(magic), Ok(len), Ok(tgen), Ok(seq), Ok(crc)) = (d.u32(), d.u32(), d.u64(), d.u64(), d.u32()) else {
                break;
            };
            let len = len as u64;
            if magic != TX_MAGIC || tgen != generation || seq != j.seq || j.head + align8(TX_HEADER + len) > j.log_len {
                break;
            }
            let mut payload = vec![0u8; len as usize];
            media.read(at.plus(TX_HEADER), &mut payload).map_err(unreadable)?;
            let mut sum = crc32fast::Hasher::new();
            sum.update(&h[4..TX_HEADER as usize - 4]);
            sum.update(&payload);
            if sum.finalize() != crc {
                break;
            }
            j.head += align8(TX_HEADER + len);
            j.seq += 1;
            transactions.push(payload);
        }
        Ok(Recovered { journal: j, checkpoint, transactions })
    }

    /// Upper bound of the next checkpoint's size.
    pub fn checkpoint_bound(&self) -> u64 {
        self.cp_size + self.growth
    }

    /// Records that a replayed transaction grew the checkpoint by at most `growth`.
    pub fn account_replayed(&mut self, growth: u64) {
        self.growth += growth;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::MemMedia;

    fn setup() -> (MemMedia, Geometry) {
        let g = Geometry::for_size(32 << 20, [1; 16]).unwrap();
        let m = MemMedia::new(g.pool_size);
        g.write(&m).unwrap();
        (m, g)
    }

    #[test]
    fn transactions_replay_in_order_after_the_checkpoint() {
        let (m, g) = setup();
        let mut j = Journal::format(&m, &g, b"cp1").unwrap();
        j.append(&m, b"one", 3).unwrap();
        j.append(&m, b"two", 3).unwrap();
        let r = Journal::recover(&m, &g).unwrap();
        assert_eq!(r.checkpoint, b"cp1");
        assert_eq!(r.transactions, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(r.journal.log_used(), j.log_used());
    }

    #[test]
    fn replay_stops_at_a_torn_transaction() {
        let (m, g) = setup();
        let mut j = Journal::format(&m, &g, b"cp").unwrap();
        j.append(&m, b"first", 5).unwrap();
        let second_at = g.log_start.offset().0 + j.log_used();
        j.append(&m, b"second", 6).unwrap();
        j.append(&m, b"third", 5).unwrap();
        m.write(ArenaOffset(second_at + TX_HEADER + 2), b"X").unwrap();
        let r = Journal::recover(&m, &g).unwrap();
        assert_eq!(r.transactions, vec![b"first".to_vec()]);
    }

    #[test]
    fn old_generation_records_are_ignored_after_a_checkpoint() {
        let (m, g) = setup();
        let mut j = Journal::format(&m, &g, b"cp1").unwrap();
        j.append(&m, b"old", 3).unwrap();
        j.checkpoint(&m, b"cp2").unwrap();
        let r = Journal::recover(&m, &g).unwrap();
        assert_eq!(r.checkpoint, b"cp2");
        assert!(r.transactions.is_empty(), "stale log replayed");
    }

    #[test]
    fn damaged_newest_checkpoint_falls_back_to_the_older_slot() {
        let (m, g) = setup();
        let mut j = Journal::format(&m, &g, b"cp1").unwrap();
        j.append(&m, b"tx", 2).unwrap();
        // A checkpoint torn half-way: header written, payload damaged.
        j.checkpoint(&m, b"cp2").unwrap();
        m.write(g.cp_start[0].offset().plus(CP_HEADER), b"Z").unwrap();
        let r = Journal::recover(&m, &g).unwrap();
        assert_eq!(r.checkpoint, b"cp1");
        assert_eq!(r.transactions, vec![b"tx".to_vec()], "the old log must still replay");
    }

    #[test]
    fn both_checkpoints_damaged_is_an_error() {
        let (m, g) = setup();
        Journal::format(&m, &g, b"cp1").unwrap();
        m.write(g.cp_start[1].offset(), b"\0\0\0\0").unwrap();
        let e = Journal::recover(&m, &g).err().unwrap();
        // format wrote slot 0 only: slot 1 never held a checkpoint.
        assert_eq!(e, Error::Pool(PoolError::NoCheckpoint([SlotError::NoMagic, SlotError::NoMagic])), "{e}");
    }
}
