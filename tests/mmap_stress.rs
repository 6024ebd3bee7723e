//! Lock-free copies on the real media: readers and in-place writers of one file run
//! together, without the fs lock, on an mmapped pool (not the memory media, whose
//! mutex serialises every access), while the file is cut and regrown and other files
//! come and go on the pages it freed. A reader may see any mix of the bytes written to
//! its file (and zeros where a cut left a hole), never another file's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use daxlink::arena::MmapMedia;
use daxlink::fs::{Ctx, Fs, Options};
use daxlink::types::{Ino, PAGE_SIZE};

const CTX: Ctx = Ctx { uid: 0, gid: 0 };
const POOL: u64 = 64 << 20;

#[test]
fn racing_readers_and_in_place_writers_see_only_their_files_bytes() {
    let path = std::env::temp_dir().join(format!("daxlink-mmap-stress-{}", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    file.set_len(POOL).unwrap();
    let media = Arc::new(MmapMedia::new(&file, POOL, true).unwrap());
    std::fs::remove_file(&path).unwrap();
    Fs::mkfs(&*media, CTX, [4; 16]).unwrap();
    let fs = Fs::open(media, Options::default()).unwrap();
    let len = 64 * PAGE_SIZE as usize;
    let c = fs.mknod(CTX, Ino::ROOT, b"c", libc::S_IFREG | 0o644, 0).unwrap().ino;
    fs.write(c, 0, &vec![0xa0; len], false).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut reads = 0u64;
                    while !stop.load(Relaxed) {
                        let got = fs.read(c, 0, len as u64).unwrap();
                        // c's writes, or zeros where a truncate left a hole.
                        if let Some(i) = got.iter().position(|b| b & 0xf0 != 0xa0 && *b != 0) {
                            panic!("read of c gave {:#x} at byte {i}: not c's", got[i]);
                        }
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let writer = s.spawn(|| {
            for round in 0..3000u32 {
                // In place: c owns its pages, so these copy without the fs lock.
                let off = (round as u64 * 7919 * 61) % (len as u64 - 3 * PAGE_SIZE);
                fs.write(c, off, &vec![0xa0 | (round % 16) as u8; 3 * PAGE_SIZE as usize], false).unwrap();
            }
        });
        for round in 0..300 {
            if round % 10 == 0 {
                // c gives its pages back; d below may get them while c's copies race.
                fs.setattr(c, daxlink::fs::SetAttr { size: Some(0), ..Default::default() }).unwrap();
                fs.sync().unwrap();
                fs.write(c, 0, &vec![0xa0; len], false).unwrap();
            }
            let name = format!("d{round}");
            let d = fs.mknod(CTX, Ino::ROOT, name.as_bytes(), libc::S_IFREG | 0o644, 0).unwrap().ino;
            fs.write(d, 0, &vec![0xdd; len], false).unwrap();
            fs.unlink(Ino::ROOT, name.as_bytes()).unwrap();
            fs.sync().unwrap();
        }
        writer.join().unwrap();
        stop.store(true, Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0, "a reader never ran");
        }
    });
    fs.check().unwrap();
}
