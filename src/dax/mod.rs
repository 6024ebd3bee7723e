//! The dax layer: page ownership records, after Linux fs/dax.c.

pub mod page;

pub use page::{PageRecord, PageState, PageTable};
