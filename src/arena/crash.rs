//! A media that can lose power: it remembers every store that no flush has made
//! durable yet, and can produce the image a crash would leave — all unflushed stores
//! dropped, an arbitrary subset kept, or the last one torn at 8-byte granularity.
//! Crash tests open those images and check what recovery makes of them.

use std::io;
use std::sync::Mutex;

use super::media::{Media, MediaResult};
use crate::types::ArenaOffset;

/// What a crash does to the stores no flush has covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// Every unflushed store is lost.
    DropAll,
    /// The unflushed stores whose bit is set in the mask survive (store `i` uses bit
    /// `i % 64`).
    Keep(u64),
    /// All unflushed stores survive but the last, of which only the first `n` 8-byte
    /// words land.
    TearLast(usize),
}

/// Called at the start of every flush with the durable image and the pending stores;
/// returns nothing and must not touch the media.
pub type FlushHook = Box<dyn FnMut(&[u8], &[(u64, Vec<u8>)]) + Send>;

/// Called after every store with the image the running filesystem sees and the number
/// of stores so far: what a killed daemon leaves (each store made before the kill is in
/// the shared mapping, none after it). Must not touch the media.
pub type StoreHook = Box<dyn FnMut(&[u8], u64) + Send>;

struct State {
    /// What the running filesystem sees.
    current: Vec<u8>,
    /// What survives a power loss now.
    durable: Vec<u8>,
    /// Stores not yet covered by a flush, oldest first.
    pending: Vec<(u64, Vec<u8>)>,
    hook: Option<FlushHook>,
    store_hook: Option<StoreHook>,
    flushes: u64,
    stores: u64,
}

pub struct CrashMedia {
    state: Mutex<State>,
}

/// Applies `pending` to `durable` as a crash of kind `crash` would.
pub fn crash_image(durable: &[u8], pending: &[(u64, Vec<u8>)], crash: Crash) -> Vec<u8> {
    let mut img = durable.to_vec();
    let mut put = |off: u64, d: &[u8]| img[off as usize..off as usize + d.len()].copy_from_slice(d);
    for (i, (off, d)) in pending.iter().enumerate() {
        match crash {
            Crash::DropAll => {}
            Crash::Keep(mask) => {
                if mask & (1 << (i % 64)) != 0 {
                    put(*off, d);
                }
            }
            Crash::TearLast(words) => {
                if i + 1 < pending.len() {
                    put(*off, d);
                } else {
                    put(*off, &d[..(words * 8).min(d.len())]);
                }
            }
        }
    }
    img
}

impl CrashMedia {
    /// A media whose every byte is already durable.
    pub fn new(image: Vec<u8>) -> CrashMedia {
        CrashMedia {
            state: Mutex::new(State {
                current: image.clone(),
                durable: image,
                pending: Vec::new(),
                hook: None,
                store_hook: None,
                flushes: 0,
                stores: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_hook(&self, hook: FlushHook) {
        self.lock().hook = Some(hook);
    }

    pub fn set_store_hook(&self, hook: StoreHook) {
        self.lock().store_hook = Some(hook);
    }

    pub fn flushes(&self) -> u64 {
        self.lock().flushes
    }

    /// The image a crash right now would leave.
    pub fn crash(&self, crash: Crash) -> Vec<u8> {
        let s = self.lock();
        crash_image(&s.durable, &s.pending, crash)
    }

    fn store(&self, off: u64, data: Vec<u8>) {
        let mut guard = self.lock();
        let s = &mut *guard;
        assert!(off as usize + data.len() <= s.current.len(), "store past the media end");
        s.current[off as usize..off as usize + data.len()].copy_from_slice(&data);
        s.pending.push((off, data));
        s.stores += 1;
        if let Some(hook) = s.store_hook.as_mut() {
            hook(&s.current, s.stores);
        }
    }
}

impl Media for CrashMedia {
    fn len(&self) -> u64 {
        self.lock().current.len() as u64
    }

    fn read(&self, off: ArenaOffset, buf: &mut [u8]) -> MediaResult {
        let s = self.lock();
        let at = off.0 as usize;
        buf.copy_from_slice(&s.current[at..at + buf.len()]);
        Ok(())
    }

    fn write(&self, off: ArenaOffset, data: &[u8]) -> MediaResult {
        self.store(off.0, data.to_vec());
        Ok(())
    }

    fn fill(&self, off: ArenaOffset, bytes: u64, byte: u8) -> MediaResult {
        self.store(off.0, vec![byte; bytes as usize]);
        Ok(())
    }

    /// Makes the part of every pending store inside `[off, off + len)` durable; the
    /// parts outside stay pending.
    fn flush(&self, off: ArenaOffset, bytes: u64) -> io::Result<()> {
        let off = off.0;
        let mut guard = self.lock();
        let s = &mut *guard;
        s.flushes += 1;
        if let Some(hook) = s.hook.as_mut() {
            hook(&s.durable, &s.pending);
        }
        let end = off + bytes;
        let mut still = Vec::new();
        for (o, d) in std::mem::take(&mut s.pending) {
            let e = o + d.len() as u64;
            let (lo, hi) = (o.max(off), e.min(end));
            if lo >= hi {
                still.push((o, d));
                continue;
            }
            s.durable[lo as usize..hi as usize].copy_from_slice(&d[(lo - o) as usize..(hi - o) as usize]);
            if o < lo {
                still.push((o, d[..(lo - o) as usize].to_vec()));
            }
            if hi < e {
                still.push((hi, d[(hi - o) as usize..].to_vec()));
            }
        }
        s.pending = still;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflushed_stores_are_lost_and_flushed_ones_kept() {
        let m = CrashMedia::new(vec![0; 64]);
        m.write(ArenaOffset(0), &[1; 8]).unwrap();
        m.flush(ArenaOffset(0), 8).unwrap();
        m.write(ArenaOffset(8), &[2; 8]).unwrap();
        let img = m.crash(Crash::DropAll);
        assert_eq!(&img[..8], &[1; 8]);
        assert_eq!(&img[8..16], &[0; 8]);
        let mut buf = [0u8; 8];
        m.read(ArenaOffset(8), &mut buf).unwrap();
        assert_eq!(buf, [2; 8], "the running side sees its own stores");
    }

    #[test]
    fn a_range_flush_keeps_the_rest_of_a_store_pending() {
        let m = CrashMedia::new(vec![0; 32]);
        m.write(ArenaOffset(0), &[7; 32]).unwrap();
        m.flush(ArenaOffset(8), 8).unwrap();
        let img = m.crash(Crash::DropAll);
        assert_eq!(&img[..8], &[0; 8]);
        assert_eq!(&img[8..16], &[7; 8]);
        assert_eq!(&img[16..], &[0; 16]);
    }

    #[test]
    fn subsets_and_tears() {
        let m = CrashMedia::new(vec![0; 32]);
        m.write(ArenaOffset(0), &[1; 8]).unwrap();
        m.write(ArenaOffset(8), &[2; 16]).unwrap();
        assert_eq!(&m.crash(Crash::Keep(0b10))[..24], [[0u8; 8].as_slice(), &[2; 16]].concat());
        let torn = m.crash(Crash::TearLast(1));
        assert_eq!(&torn[..24], [[1u8; 8].as_slice(), &[2; 8], &[0; 8]].concat());
    }

    #[test]
    fn the_hook_sees_each_flush_before_it_lands() {
        let m = CrashMedia::new(vec![0; 16]);
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        m.set_hook(Box::new(move |durable, pending| s2.lock().unwrap().push((durable[0], pending.len()))));
        m.write(ArenaOffset(0), &[5; 4]).unwrap();
        m.flush(ArenaOffset(0), 16).unwrap();
        m.flush(ArenaOffset(0), 16).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![(0, 1), (5, 0)]);
        assert_eq!(m.flushes(), 2);
    }

    #[test]
    fn the_store_hook_sees_every_store_as_it_lands() {
        let m = CrashMedia::new(vec![0; 16]);
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        m.set_store_hook(Box::new(move |current, n| s2.lock().unwrap().push((current[0], current[8], n))));
        m.write(ArenaOffset(0), &[5; 4]).unwrap();
        m.fill(ArenaOffset(8), 8, 6).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![(5, 0, 1), (5, 6, 2)]);
    }
}
