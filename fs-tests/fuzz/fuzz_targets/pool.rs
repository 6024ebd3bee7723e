//! Pool loading and log replay on damaged pools: the input patches bytes of the
//! superblock, log and checkpoint regions of a small pool with some history. Opening
//! must never panic or hang; when it succeeds, every structure check must pass.
#![no_main]

use std::sync::{Arc, OnceLock};

use daxlink::arena::{Geometry, MemMedia};
use daxlink::fs::{Ctx, Fs, Options};
use daxlink::types::{Ino, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;

const POOL: u64 = 16 << 20;

fn base() -> &'static (Vec<u8>, u64) {
    static BASE: OnceLock<(Vec<u8>, u64)> = OnceLock::new();
    BASE.get_or_init(|| {
        let ctx = Ctx { uid: 0, gid: 0 };
        let m = Arc::new(MemMedia::new(POOL));
        Fs::mkfs(&*m, ctx, [9; 16]).unwrap();
        let fs = Fs::open(m.clone(), Options::default()).unwrap();
        for i in 0..8u8 {
            let f = fs.mknod(ctx, Ino::ROOT, &[b'f', b'0' + i], libc::S_IFREG | 0o644, 0).unwrap().ino;
            fs.write(f, i as u64 * 700, &[i; 9000], false).unwrap();
            if i == 4 {
                fs.unmount().unwrap();
            }
        }
        fs.sync().unwrap();
        let img = m.snapshot();
        let g = Geometry::decode(&img[..PAGE_SIZE as usize], POOL).unwrap();
        (img, g.data_start.offset().0)
    })
}

fuzz_target!(|data: &[u8]| {
    let (img, meta_len) = base();
    let mut img = img.clone();
    // Each 5 bytes: a 4-byte offset into the metadata regions and the byte to store.
    for p in data.chunks_exact(5) {
        let off = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as u64 % meta_len;
        img[off as usize] = p[4];
    }
    let m = Arc::new(MemMedia::from_bytes(img));
    if let Ok(fs) = Fs::open(m, Options { read_only: true, ..Options::default() }) {
        fs.check().expect("a damaged pool mounted inconsistent");
    }
});
