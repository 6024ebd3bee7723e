//! Identities that must not mix. Every layer speaks these; none of them owns them.

use std::fmt;

/// Size of an arena page and of a file block.
pub const PAGE_SIZE: u64 = 4096;

macro_rules! id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// Arena page frame number: page `n` of the pool, counted from its first byte.
    Pfn
);
id!(
    /// Byte offset into the pool.
    ArenaOffset
);
id!(
    /// Inode number; also the id of the inode's address space (`mapping`) in the page table.
    Ino
);
id!(
    /// Page-sized block number within a file (`index` in the page table).
    FileBlock
);

impl Pfn {
    pub fn offset(self) -> ArenaOffset {
        ArenaOffset(self.0 * PAGE_SIZE)
    }
    pub fn plus(self, n: u64) -> Pfn {
        Pfn(self.0 + n)
    }
}

impl ArenaOffset {
    pub fn plus(self, bytes: u64) -> ArenaOffset {
        ArenaOffset(self.0 + bytes)
    }
    /// The page holding this byte.
    pub fn pfn(self) -> Pfn {
        Pfn(self.0 / PAGE_SIZE)
    }
}

impl FileBlock {
    pub fn plus(self, n: u64) -> FileBlock {
        FileBlock(self.0 + n)
    }
    /// The block holding byte `off` of a file.
    pub fn of(off: u64) -> FileBlock {
        FileBlock(off / PAGE_SIZE)
    }
    pub fn byte(self) -> u64 {
        self.0 * PAGE_SIZE
    }
}

impl Ino {
    pub const ROOT: Ino = Ino(1);
}
