//! The arena: the pool's media, its on-media layout, and the data-page allocator.

pub mod alloc;
pub mod codec;
pub mod crash;
pub mod fault;
pub mod layout;
pub mod media;
pub mod pool;

pub use alloc::Allocator;
pub use layout::{Geometry, LayoutError};
pub use media::{Media, MediaError, MediaResult, MemMedia, MmapMedia, OneFileRange, Pinned};
pub use pool::{Access, Pool};
