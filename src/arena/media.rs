//! The byte-addressable media under the arena: an mmapped pool file or device, or
//! memory for tests. Offsets handed to a `Media` are computed from a validated
//! geometry, so an out-of-range access is a bug in daxlink, not bad input.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use memmap2::{MmapOptions, MmapRaw};

pub trait Media: Send + Sync {
    /// Size in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read(&self, off: u64, buf: &mut [u8]);
    fn write(&self, off: u64, data: &[u8]);
    fn fill(&self, off: u64, len: u64, byte: u8);
    /// Makes every store to `[off, off + len)` durable.
    fn flush(&self, off: u64, len: u64) -> io::Result<()>;
    /// Calls `f` with the bytes of `[off, off + len)`: in place where the media can
    /// lend them, else copied.
    fn with_slice(&self, off: u64, len: u64, f: &mut dyn FnMut(&[u8])) {
        let mut buf = vec![0u8; len as usize];
        self.read(off, &mut buf);
        f(&buf)
    }
    /// Writes whole pages just allocated, which nobody reads yet. Media whose pages are
    /// made on first touch can fill them without zeroing them first, as a store
    /// through the mapping must (a fault, zeroes, then the bytes).
    fn write_fresh(&self, off: u64, data: &[u8]) {
        self.write(off, data)
    }
    /// A hint that `[off, off + len)` is about to be written: media whose pages are
    /// made on first touch (a sparse pool file) make them now, in one call, rather
    /// than in one page fault each.
    fn prepare_write(&self, off: u64, len: u64) {
        let _ = (off, len);
    }
}

fn check_range(media_len: u64, off: u64, len: u64) {
    assert!(
        off.checked_add(len).is_some_and(|end| end <= media_len),
        "media access [{off}, +{len}) outside {media_len} bytes"
    );
}

/// A pool file or device mapped shared: stores reach the page cache (or the pmem)
/// directly, `flush` is `msync`.
pub struct MmapMedia {
    map: MmapRaw,
    len: u64,
    /// The mapped file, for `write_fresh`: its page cache is the mapping's.
    file: File,
}

impl MmapMedia {
    /// Maps `len` bytes of `file`, writable or read-only (a read-only pool is never
    /// written: the core refuses every change first).
    pub fn new(file: &File, len: u64, writable: bool) -> io::Result<Self> {
        let opts = {
            let mut o = MmapOptions::new();
            o.len(len as usize);
            o
        };
        let map = if writable { opts.map_raw(file)? } else { opts.map_raw_read_only(file)? };
        Ok(MmapMedia { map, len, file: file.try_clone()? })
    }
}

impl Media for MmapMedia {
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        check_range(self.len, off, buf.len() as u64);
        // SAFETY: the range is inside the mapping (checked above), the mapping lives as
        // long as `self`, and `buf` cannot alias the mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr().add(off as usize), buf.as_mut_ptr(), buf.len()) }
    }
    fn write(&self, off: u64, data: &[u8]) {
        check_range(self.len, off, data.len() as u64);
        // SAFETY: as in `read`. Stores into one file range may race (in-place writes
        // copy without the fs lock, as write(2)s to one file may race); they only
        // ever target pages of that file (`fs::copies`), so the bytes are a mix of the
        // racing writes', never a fault.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.as_mut_ptr().add(off as usize), data.len()) }
    }
    fn fill(&self, off: u64, len: u64, byte: u8) {
        check_range(self.len, off, len);
        // SAFETY: as in `write`.
        unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(off as usize), byte, len as usize) }
    }
    fn flush(&self, off: u64, len: u64) -> io::Result<()> {
        check_range(self.len, off, len);
        self.map.flush_range(off as usize, len as usize)
    }
    fn with_slice(&self, off: u64, len: u64, f: &mut dyn FnMut(&[u8])) {
        check_range(self.len, off, len);
        // SAFETY: the range is inside the mapping, which outlives the call. Writers of
        // the same file bytes may store into it meanwhile, as they may while `read`
        // copies: a reader racing a writer sees old bytes, new ones or a mix (as
        // read(2) racing write(2) may), never another file's (`fs::copies`).
        f(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off as usize), len as usize) })
    }
    fn write_fresh(&self, off: u64, data: &[u8]) {
        check_range(self.len, off, data.len() as u64);
        // pwrite fills a whole page cache page without zeroing it first; the file is
        // preallocated, so it cannot fail for space. Should it fail anyway, the
        // mapping takes the bytes.
        if self.file.write_all_at(data, off).is_err() {
            self.write(off, data);
        }
    }
    fn prepare_write(&self, off: u64, len: u64) {
        check_range(self.len, off, len);
        // Page-aligned: arena pages are. Failure (a kernel before 5.14, or no memory
        // now) only means the faults happen one by one, as without the hint.
        // SAFETY: the range is inside the mapping; MADV_POPULATE_WRITE changes no bytes.
        unsafe {
            libc::madvise(self.map.as_mut_ptr().add(off as usize).cast(), len as usize, libc::MADV_POPULATE_WRITE);
        }
    }
}

/// Media in memory, for fast tests and examples.
pub struct MemMedia {
    bytes: Mutex<Vec<u8>>,
}

impl MemMedia {
    pub fn new(len: u64) -> Self {
        MemMedia { bytes: Mutex::new(vec![0; len as usize]) }
    }
    /// A copy of the whole media, e.g. to reopen it as if after a crash.
    pub fn snapshot(&self) -> Vec<u8> {
        self.lock().clone()
    }
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        MemMedia { bytes: Mutex::new(bytes) }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Media for MemMedia {
    fn len(&self) -> u64 {
        self.lock().len() as u64
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        let b = self.lock();
        check_range(b.len() as u64, off, buf.len() as u64);
        buf.copy_from_slice(&b[off as usize..off as usize + buf.len()]);
    }
    fn write(&self, off: u64, data: &[u8]) {
        let mut b = self.lock();
        check_range(b.len() as u64, off, data.len() as u64);
        b[off as usize..off as usize + data.len()].copy_from_slice(data);
    }
    fn fill(&self, off: u64, len: u64, byte: u8) {
        let mut b = self.lock();
        check_range(b.len() as u64, off, len);
        b[off as usize..(off + len) as usize].fill(byte);
    }
    fn flush(&self, off: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), off, len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_fresh_and_the_mapping_see_the_same_bytes() {
        let path = std::env::temp_dir().join(format!("daxlink-media-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.set_len(4 * 4096).unwrap();
        let m = MmapMedia::new(&file, 4 * 4096, true).unwrap();
        m.write(4096, &[1; 16]);
        m.write_fresh(8192, &[7; 8192]);
        let mut got = vec![0; 3 * 4096];
        m.read(4096, &mut got);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&got[..16], &[1; 16]);
        assert!(got[4096..].iter().all(|b| *b == 7), "a write_fresh store not seen through the mapping");
        m.with_slice(8192, 4096, &mut |s| assert!(s.iter().all(|b| *b == 7)));
    }
}
