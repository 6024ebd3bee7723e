//! The core from several threads: requests in parallel, and reads and writes that
//! copy without the core lock racing truncates, reuse of freed pages and clones.

mod common;

use std::sync::{Arc, Mutex};

use daxlink::arena::MemMedia;
use daxlink::fs::{Fs, Options, SetAttr};
use daxlink::types::{ArenaOffset, Ino};

use common::{MIB, PAGE, Pool, ROOT, pattern};

#[test]
fn fs_is_usable_from_several_threads() {
    let p = Arc::new(Pool::new(32 * MIB));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let f = p.create(Ino::ROOT, &format!("t{t}"));
                for i in 0..50u64 {
                    p.write_all(f, i * 1000, &pattern(t as u8, 1000));
                }
                f
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        let f = h.join().expect("thread panicked");
        let got = p.read_all(f);
        assert_eq!(got.len(), 50_000);
        assert!(got.chunks(1000).all(|c| c == pattern(t as u8, 1000).as_slice()));
    }
    p.assert_consistent();
}

/// Reads copy file data after dropping the fs lock; a page a truncate freed must not
/// be reused (here: by another file) while a reader that planned it still copies.
#[test]
fn lock_free_reads_never_see_another_files_bytes() {
    let p = Pool::new(16 * MIB);
    let c = p.create(Ino::ROOT, "c");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let len = 256 * PAGE as usize;
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = p.fs.read(c, 0, len as u64).unwrap();
                if let Some(i) = got.iter().position(|b| *b != 0xcc) {
                    panic!("read of c gave {:#x} at byte {i}: another file's data", got[i]);
                }
                reads += 1;
            }
            reads
        });
        for round in 0..1500 {
            p.write_all(c, 0, &vec![0xcc; len]);
            p.fs.sync().unwrap();
            p.fs.setattr(c, SetAttr { size: Some(0), ..Default::default() }).unwrap();
            p.fs.sync().unwrap();
            let d = p.create(Ino::ROOT, &format!("d{round}"));
            p.write_all(d, 0, &vec![0xdd; len]);
            p.fs.unlink(Ino::ROOT, format!("d{round}").as_bytes()).unwrap();
            p.fs.sync().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    p.assert_consistent();
}

/// A media that holds the first write of `len` bytes after `arm` until `go`, telling
/// `entered` when it is there: a write caught after the fs lock was dropped.
struct GateMedia {
    inner: MemMedia,
    len: std::sync::atomic::AtomicUsize,
    entered: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    go: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl daxlink::arena::Media for GateMedia {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read(&self, off: ArenaOffset, buf: &mut [u8]) -> daxlink::arena::MediaResult {
        self.inner.read(off, buf)
    }
    fn write(&self, off: ArenaOffset, data: &[u8]) -> daxlink::arena::MediaResult {
        if data.len() == self.len.load(std::sync::atomic::Ordering::SeqCst) {
            self.len.store(0, std::sync::atomic::Ordering::SeqCst);
            self.entered.lock().unwrap().take().unwrap().send(()).unwrap();
            let go = self.go.lock().unwrap().take().unwrap();
            go.recv().unwrap();
        }
        self.inner.write(off, data)
    }
    fn fill(&self, off: ArenaOffset, len: u64, byte: u8) -> daxlink::arena::MediaResult {
        self.inner.fill(off, len, byte)
    }
    fn flush(&self, off: ArenaOffset, len: u64) -> std::io::Result<()> {
        self.inner.flush(off, len)
    }
}

/// In-place writes copy after dropping the fs lock: a clone must wait for such a
/// write to land, or the write would land in pages the clone shares by then.
#[test]
fn a_clone_waits_for_a_write_copying_without_the_lock() {
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let len = 16 * PAGE as usize;
    let (entered_tx, entered) = channel();
    let (go, go_rx) = channel();
    let media = Arc::new(GateMedia {
        inner: MemMedia::new(32 * MIB),
        len: 0.into(),
        entered: Mutex::new(Some(entered_tx)),
        go: Mutex::new(Some(go_rx)),
    });
    Fs::mkfs(&*media, ROOT, [5; 16]).unwrap();
    let fs = Fs::open(media.clone(), Options::default()).unwrap();
    let f = fs.mknod(ROOT, Ino::ROOT, b"f", libc::S_IFREG | 0o644, 0).unwrap().ino;
    let c = fs.mknod(ROOT, Ino::ROOT, b"c", libc::S_IFREG | 0o644, 0).unwrap().ino;
    fs.write(f, 0, &vec![1; len], false).unwrap();
    media.len.store(len, std::sync::atomic::Ordering::SeqCst);
    let fs = &fs;
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(fs.write(f, 0, &vec![2; len], false).unwrap(), len as u64));
        entered.recv().unwrap();
        let (done_tx, done) = channel();
        s.spawn(move || {
            fs.clone_range(f, 0, c, 0, 0).unwrap();
            done_tx.send(()).unwrap();
        });
        // The clone must not finish while the write is held. (On a slow machine a
        // broken clone might not finish within the wait either: the check can only
        // miss a bug then, never fail a correct build.)
        let early = done.recv_timeout(std::time::Duration::from_millis(300));
        go.send(()).unwrap();
        assert!(
            matches!(early, Err(RecvTimeoutError::Timeout)),
            "clone_range returned while a write was still copying"
        );
        done.recv().unwrap();
    });
    assert_eq!(fs.read(c, 0, len as u64).unwrap(), vec![2; len], "the clone took the whole write");
    assert_eq!(fs.read(f, 0, len as u64).unwrap(), vec![2; len]);
    fs.check().unwrap();
}
