//! The holder: the filesystem that can say who owns a shared page. The analogue of
//! `struct dax_holder_operations` (include/linux/dax.h), whose `notify_failure` XFS
//! implements by walking its reverse-map btree (`xfs_dax_notify_failure`).

use crate::types::{ArenaOffset, FileBlock, Ino, Pfn};

/// One file page that lives on a failed arena page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub pfn: Pfn,
    pub ino: Ino,
    pub index: FileBlock,
}

pub trait HolderOps {
    /// Every owner of the arena bytes `[offset, offset + bytes)`.
    fn notify_failure(&self, offset: ArenaOffset, bytes: u64, flags: u32) -> Vec<Owner>;
}
