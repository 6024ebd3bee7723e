//! daxlink: a reflink filesystem on a pmem-backed arena, with fs/dax.c-style page
//! ownership tracking. Layers, each using only the ones below it:
//!
//! ```text
//! cli -> fuse -> fs -> dax -> arena
//! ```

pub mod arena;
pub mod cli;
pub mod dax;
pub mod fs;
pub mod fuse;
pub mod types;

pub use fs::{Ctx, Error, Fs, Options, Result};
pub use types::{FileBlock, Ino, PAGE_SIZE, Pfn};
