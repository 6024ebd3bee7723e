//! daxlink: a reflink filesystem on a pmem-backed arena, with fs/dax.c-style page
//! ownership tracking. Layers, each using only the ones below it:
//!
//! ```text
//! cli -> fuse -> fs -> dax -> arena
//! ```

// Every `unsafe` block says why it is sound; the core and the dax layer have none.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod arena;
pub mod cli;
#[forbid(unsafe_code)]
pub mod dax;
#[forbid(unsafe_code)]
pub mod fs;
pub mod fuse;
pub mod runs;
pub mod types;

pub use fs::{Ctx, Error, Fs, Options, Result};
pub use types::{FileBlock, Ino, PAGE_SIZE, Pfn};
