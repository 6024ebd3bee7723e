//! The daxlink library without FUSE: make a pool in memory, write a file, clone it,
//! copy-on-write one page, and watch the page table follow fs/dax.c's ownership rules.
//!
//! `cargo run --example reflink`

use std::sync::Arc;

use daxlink::arena::MemMedia;
use daxlink::fs::{Ctx, Fs, Options};
use daxlink::types::{Ino, PAGE_SIZE};

fn main() -> Result<(), daxlink::Error> {
    let media = Arc::new(MemMedia::new(64 << 20));
    let ctx = Ctx { uid: 0, gid: 0 };
    Fs::mkfs(&*media, ctx, [0; 16])?;
    let fs = Fs::open(media.clone(), Options::default())?;

    let a = fs.mknod(ctx, Ino::ROOT, b"a", libc::S_IFREG | 0o644, 0)?.ino;
    fs.write(a, 0, &vec![7u8; 4 * PAGE_SIZE as usize], false)?;
    let pfn = fs.extents(a)?[0].pfn;
    println!("after write:      page {pfn} is {:?}", fs.page_state(pfn)?);

    let b = fs.mknod(ctx, Ino::ROOT, b"b", libc::S_IFREG | 0o644, 0)?.ino;
    let n = fs.clone_range(a, 0, b, 0, 0)?;
    println!("after clone ({n} bytes): page {pfn} is {:?}", fs.page_state(pfn)?);

    fs.write(b, 0, b"new", false)?;
    let b0 = fs.extents(b)?[0];
    println!("after COW write:  b's first page is {} (shared: {}), a's is still {pfn}", b0.pfn, b0.co_owned);

    fs.unlink(Ino::ROOT, b"b")?;
    println!("after unlink b:   page {pfn} is {:?}", fs.page_state(pfn)?);

    fs.sync()?;
    let s = fs.stats();
    println!("pages used {} shared {} free {}, warnings {}", s.pages_used, s.pages_shared, s.pages_free, s.warnings);
    fs.check().map_err(|e| daxlink::Error::Pool(daxlink::fs::PoolError::Inconsistent(e)))?;
    Ok(())
}
