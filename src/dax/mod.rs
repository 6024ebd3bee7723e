//! The dax layer: page ownership records, the holder interface and memory failure,
//! after Linux fs/dax.c and mm/memory-failure.c.

pub mod failure;
pub mod holder;
pub mod page;

pub use failure::{Failure, memory_failure};
pub use holder::{HolderOps, Owner};
pub use page::{PageRecord, PageState, PageTable};
