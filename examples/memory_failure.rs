//! Memory failure with the library alone: make a pool, write a file, clone it twice,
//! fail one of the shared pages, and print what the holder (the reverse map) found.
//!
//! `cargo run --example memory_failure`

use std::sync::Arc;

use daxlink::arena::MemMedia;
use daxlink::fs::{Ctx, Fs, Options};
use daxlink::types::{Ino, PAGE_SIZE};

fn main() -> Result<(), daxlink::Error> {
    let media = Arc::new(MemMedia::new(64 << 20));
    let ctx = Ctx { uid: 0, gid: 0 };
    Fs::mkfs(&*media, ctx, [0; 16])?;
    let fs = Fs::open(media, Options::default())?;

    let a = fs.mknod(ctx, Ino::ROOT, b"a", libc::S_IFREG | 0o644, 0)?.ino;
    fs.write(a, 0, &vec![0xab; 4 * PAGE_SIZE as usize], false)?;
    for name in ["b", "c"] {
        let c = fs.mknod(ctx, Ino::ROOT, name.as_bytes(), libc::S_IFREG | 0o644, 0)?.ino;
        fs.clone_range(a, 0, c, 0, 0)?;
    }
    let pfn = fs.extents(a)?[0].pfn.plus(2);
    println!("page {pfn} before the failure: {:?}", fs.page_state(pfn)?);

    let f = fs.memory_failure(pfn, 1)?;
    println!("the holder was consulted {} time(s); owners:", f.holder_calls);
    for o in &f.owners {
        let path = fs.path_of(o.ino).unwrap_or_default();
        println!("  {path} (inode {}) at offset {}", o.ino, o.index.byte());
    }
    for name in ["a", "b", "c"] {
        let ino = fs.lookup(Ino::ROOT, name.as_bytes())?.ino;
        println!("read of /{name} at the failed page: {:?}", fs.read(ino, 2 * PAGE_SIZE, 16).map(|d| d.len()));
    }
    Ok(())
}
