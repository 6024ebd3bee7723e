//! Copies that copy file data after dropping the fs lock, and the wait that keeps
//! the pages they copy from being reused under them (an RCU grace period in
//! miniature). A reader pins the current epoch while it still holds the lock; a page
//! freed since the last commit becomes free for reuse only after `synchronize`, which
//! flips the epoch and waits for every reader pinned before the flip. Copies copy at
//! most a request (1 MiB), so the wait is short; it never needs the lock the waiter
//! holds, so it cannot deadlock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use crate::arena::{OneFileRange, Pinned};
use crate::types::ArenaOffset;

#[derive(Default)]
pub struct Copies {
    epoch: AtomicUsize,
    active: [AtomicUsize; 2],
}

/// A pinned copier; unpins when dropped.
pub struct Pin {
    copies: Arc<Copies>,
    slot: usize,
}

impl Copies {
    /// Pins the current epoch: call with the fs lock held, before dropping it. (Both
    /// `pin` and `synchronize` run under that lock, so no pin can miss two flips.)
    pub fn pin(self: &Arc<Self>) -> Pin {
        loop {
            let slot = self.epoch.load(SeqCst) & 1;
            self.active[slot].fetch_add(1, SeqCst);
            // A flip between the load and the increment: this pin might be missed by
            // the waiter, so retry in the new epoch.
            if self.epoch.load(SeqCst) & 1 == slot {
                return Pin { copies: self.clone(), slot };
            }
            self.active[slot].fetch_sub(1, SeqCst);
        }
    }

    /// Waits until every copier pinned before now has finished.
    pub fn synchronize(&self) {
        let old = self.epoch.fetch_add(1, SeqCst) & 1;
        while self.active[old].load(SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}

impl Pin {
    /// The token the arena's pinned copies take: `[off, off + bytes)` is one file's,
    /// planned under the lock this pin was taken under, and stays that file's (or
    /// unused) while the pin is held.
    pub fn range(&self, off: ArenaOffset, bytes: u64) -> OneFileRange<'_> {
        OneFileRange::new(self, off, bytes)
    }
}

impl Pinned for Pin {}

impl Drop for Pin {
    fn drop(&mut self) {
        self.copies.active[self.slot].fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn synchronize_waits_for_earlier_copiers_only() {
        let r = Arc::new(Copies::default());
        let done = Arc::new(AtomicBool::new(false));
        let pin = r.pin();
        let (r2, done2) = (r.clone(), done.clone());
        let waiter = std::thread::spawn(move || {
            r2.synchronize();
            done2.store(true, SeqCst);
        });
        // A copier pinned after the flip must not hold the waiter up.
        while r.epoch.load(SeqCst) == 0 {
            std::thread::yield_now();
        }
        let later = r.pin();
        assert!(!done.load(SeqCst), "synchronize returned while an earlier copier was active");
        drop(pin);
        waiter.join().unwrap();
        assert!(done.load(SeqCst));
        drop(later);
        r.synchronize();
    }
}
