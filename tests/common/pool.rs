//! The pool fixture: a filesystem on in-memory media, clean remounts and "crashes"
//! (reopening a copy of the media as it is, without an unmount).

use std::sync::Arc;

use daxlink::arena::MemMedia;
use daxlink::fs::{Fs, Options};
use daxlink::types::Ino;

use super::ROOT;

/// A filesystem on in-memory media.
pub struct Pool {
    pub media: Arc<MemMedia>,
    pub fs: Fs,
}

impl Pool {
    /// mkfs + open a pool of `size` bytes.
    pub fn new(size: u64) -> Pool {
        Pool::from_bytes(mkfs_image(size), Options::default()).expect("open of a fresh pool")
    }

    /// Opens a copy of `bytes` as a pool.
    pub fn from_bytes(bytes: Vec<u8>, opts: Options) -> daxlink::Result<Pool> {
        let media = Arc::new(MemMedia::from_bytes(bytes));
        let fs = Fs::open(media.clone(), opts)?;
        Ok(Pool { media, fs })
    }

    /// Clean unmount, then mount again.
    pub fn remount(self) -> Pool {
        self.fs.unmount().expect("unmount");
        let bytes = self.media.snapshot();
        drop(self.fs);
        Pool::from_bytes(bytes, Options::default()).expect("reopen after a clean unmount")
    }

    /// What the next mount sees if the daemon died right now (no unmount).
    pub fn crash(&self) -> Pool {
        Pool::from_bytes(self.media.snapshot(), Options::default()).expect("reopen after a crash")
    }

    /// Creates a regular file `name` in `parent`.
    pub fn create(&self, parent: Ino, name: &str) -> Ino {
        self.fs
            .mknod(ROOT, parent, name.as_bytes(), libc::S_IFREG | 0o644, 0)
            .unwrap_or_else(|e| panic!("create {name}: {e}"))
            .ino
    }

    /// Creates a regular file `name` in the root holding `data`.
    pub fn file(&self, name: &str, data: &[u8]) -> Ino {
        let ino = self.create(Ino::ROOT, name);
        self.write_all(ino, 0, data);
        ino
    }

    pub fn mkdir(&self, parent: Ino, name: &str) -> Ino {
        self.fs.mkdir(ROOT, parent, name.as_bytes(), 0o755).unwrap_or_else(|e| panic!("mkdir {name}: {e}")).ino
    }

    /// Looks `path` ("a/b/c") up from the root.
    pub fn resolve(&self, path: &str) -> daxlink::Result<Ino> {
        let mut at = Ino::ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at = self.fs.lookup(at, part.as_bytes())?.ino;
        }
        Ok(at)
    }

    pub fn write_all(&self, ino: Ino, off: u64, data: &[u8]) {
        let n = self
            .fs
            .write(ino, off, data, false)
            .unwrap_or_else(|e| panic!("write of {} bytes at {off}: {e}", data.len()));
        assert_eq!(n, data.len() as u64, "short write at {off}");
    }

    /// The whole file.
    pub fn read_all(&self, ino: Ino) -> Vec<u8> {
        let size = self.fs.getattr(ino).expect("getattr").size;
        self.fs.read(ino, 0, size).expect("read")
    }

    /// Names in a directory, without "." and "..", in readdir order.
    pub fn names(&self, dir: Ino) -> Vec<String> {
        let mut out = Vec::new();
        let mut cookie = 0;
        loop {
            let batch = self.fs.readdir(dir, cookie, 3).expect("readdir");
            let Some(last) = batch.last() else { break };
            cookie = last.offset;
            out.extend(
                batch
                    .iter()
                    .filter(|e| e.name != b"." && e.name != b"..")
                    .map(|e| String::from_utf8_lossy(&e.name).into_owned()),
            );
        }
        out
    }

    pub fn assert_consistent(&self) {
        if let Err(e) = self.fs.check() {
            panic!("fs.check() failed: {e}");
        }
        assert_eq!(self.fs.stats().warnings, 0, "page-table ownership warnings fired");
    }
}

/// The bytes of a freshly made pool of `size` bytes.
pub fn mkfs_image(size: u64) -> Vec<u8> {
    let media = MemMedia::new(size);
    Fs::mkfs(&media, ROOT, [0x5a; 16]).expect("mkfs of an in-memory pool");
    media.snapshot()
}
