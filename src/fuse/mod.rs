//! The FUSE adapter: translates kernel requests into `fs::Fs` calls.

mod adapter;
pub mod ioctl;
mod mount;

pub use adapter::DaxFuse;
pub use mount::{MountConfig, mount};
