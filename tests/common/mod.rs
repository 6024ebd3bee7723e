//! The one harness of the integration tests: the pool fixture (`pool`), the random
//! generator (`rng`), tree snapshots (`tree`) and recovery of crash images (`crash`,
//! over `arena::crash`).
#![allow(dead_code)]

pub mod crash;
pub mod pool;
pub mod rng;
pub mod tree;

use daxlink::dax::PageState;
use daxlink::fs::Ctx;
use daxlink::types::{PAGE_SIZE, Pfn};

#[allow(unused_imports)]
pub use pool::{Pool, mkfs_image};
#[allow(unused_imports)]
pub use rng::Rng;

pub const ROOT: Ctx = Ctx { uid: 0, gid: 0 };
pub const MIB: u64 = 1 << 20;
pub const PAGE: u64 = PAGE_SIZE;

/// `len` bytes of a pattern that differs per `seed` and per position.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32 * 7 + 1) as u8).collect()
}

/// The errno of a call that must fail.
pub fn errno<T: std::fmt::Debug>(r: daxlink::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.errno(),
    }
}

/// `page_state` reports the owner state (and, where supported, whether the page failed);
/// the tests look at the owner state only.
pub trait OwnerState {
    fn owner(self) -> PageState;
}
impl OwnerState for PageState {
    fn owner(self) -> PageState {
        self
    }
}
impl OwnerState for (PageState, bool) {
    fn owner(self) -> PageState {
        self.0
    }
}

pub fn page_state(p: &Pool, pfn: Pfn) -> daxlink::Result<PageState> {
    p.fs.page_state(pfn).map(OwnerState::owner)
}

/// Data pages of the pool whose state is not `Free`.
pub fn used_pages(p: &Pool) -> u64 {
    p.fs.stats().pages_used
}
