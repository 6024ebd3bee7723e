//! The byte-addressable media under the arena: an mmapped pool file or device, or
//! memory for tests. Offsets handed to a `Media` are computed from a validated
//! geometry, so an out-of-range access is a bug in daxlink, not bad input. A page of
//! the media may fail at any time (a memory error, or a pool file cut short): every
//! access says so with a `MediaError` instead of dying, and the filesystem fails the
//! page (`fs::Fs`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::sync::Mutex;

use memmap2::{MmapOptions, MmapRaw};

use super::fault;
use crate::types::{ArenaOffset, PAGE_SIZE, Pfn};

/// A failed access, or a failure reported without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaError {
    /// A memory error in `[off, off + bytes)` (whole pages).
    Failed { off: ArenaOffset, bytes: u64 },
    /// The media ends at `len` bytes now (the pool file shrank): every page from the
    /// one holding `len` on is gone.
    Shrunk { len: u64 },
}

impl MediaError {
    /// The first failed page and how many pages failed, of a media of `pages` pages.
    pub fn pages(&self, pages: u64) -> (Pfn, u64) {
        let (first, end) = match *self {
            MediaError::Failed { off, bytes } => (off.pfn().0, (off.0 + bytes.max(1)).div_ceil(PAGE_SIZE)),
            MediaError::Shrunk { len } => (len / PAGE_SIZE, pages),
        };
        let first = first.min(pages);
        (Pfn(first), end.min(pages) - first)
    }
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaError::Failed { off, bytes } => write!(f, "memory error in pool bytes [{off}, +{bytes})"),
            MediaError::Shrunk { len } => write!(f, "the pool file was cut to {len} bytes"),
        }
    }
}

impl std::error::Error for MediaError {}

pub type MediaResult = Result<(), MediaError>;

/// A copier's epoch pin (`fs::copies::Pin`): while one is held, no page freed since
/// it was taken is given to another file.
pub trait Pinned {}

/// The guarantee a copy made without the filesystem lock rests on, as a value: the
/// bytes `[off, off + bytes)` hold one file's data and stay that file's (or unused)
/// for as long as the pin it borrows is held. Only a pin holder makes one
/// (`fs::copies::Pin::range`), and the borrow keeps it from outliving the pin:
///
/// ```compile_fail
/// use daxlink::arena::{OneFileRange, Pinned};
/// use daxlink::types::ArenaOffset;
/// struct Pin;
/// impl Pinned for Pin {}
/// let range = {
///     let pin = Pin;
///     OneFileRange::new(&pin, ArenaOffset(0), 4096)
/// };
/// let _ = range.off(); // the pin is gone, so no range of it may be used
/// ```
#[derive(Clone, Copy)]
pub struct OneFileRange<'p> {
    off: ArenaOffset,
    bytes: u64,
    _pin: PhantomData<&'p dyn Pinned>,
}

impl<'p> OneFileRange<'p> {
    pub fn new(_pin: &'p dyn Pinned, off: ArenaOffset, bytes: u64) -> OneFileRange<'p> {
        OneFileRange { off, bytes, _pin: PhantomData }
    }
    pub fn off(&self) -> ArenaOffset {
        self.off
    }
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

pub trait Media: Send + Sync {
    /// Size in bytes, as mapped.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Loads bytes; under the filesystem lock, or see `read_pinned`.
    fn read(&self, off: ArenaOffset, buf: &mut [u8]) -> MediaResult;
    /// Stores bytes; under the filesystem lock, or see `write_pinned`.
    fn write(&self, off: ArenaOffset, data: &[u8]) -> MediaResult;
    /// A copy out of one file's pages without the filesystem lock (`fs::copies`).
    fn read_pinned(&self, range: OneFileRange<'_>, buf: &mut [u8]) -> MediaResult {
        assert_eq!(range.bytes(), buf.len() as u64, "a pinned read covers its range");
        self.read(range.off(), buf)
    }
    /// A copy into one file's pages without the filesystem lock (`fs::copies`): what
    /// may race it is another write of the same file's bytes, never another file's.
    fn write_pinned(&self, range: OneFileRange<'_>, data: &[u8]) -> MediaResult {
        assert_eq!(range.bytes(), data.len() as u64, "a pinned write covers its range");
        self.write(range.off(), data)
    }
    /// Stores `byte` into `bytes` bytes from `off`.
    fn fill(&self, off: ArenaOffset, bytes: u64, byte: u8) -> MediaResult;
    /// Makes every store to `[off, off + bytes)` durable.
    fn flush(&self, off: ArenaOffset, bytes: u64) -> io::Result<()>;
    /// A hint that `[off, off + bytes)` is about to be written: media whose pages are
    /// made on first touch (a sparse pool file) make them now, in one call, rather
    /// than in one page fault each.
    fn prepare_write(&self, off: ArenaOffset, bytes: u64) {
        let _ = (off, bytes);
    }
    /// Failures reported since the last call without an access meeting them (the
    /// kernel's early `SIGBUS`); `fault::wait` blocks until one may be there.
    fn take_failures(&self) -> Vec<MediaError> {
        Vec::new()
    }
}

fn check_range(media_len: u64, off: ArenaOffset, bytes: u64) {
    assert!(
        off.0.checked_add(bytes).is_some_and(|end| end <= media_len),
        "media access [{off}, +{bytes}) outside {media_len} bytes"
    );
}

/// A pool file or device mapped shared: stores reach the page cache (or the pmem)
/// directly, `flush` is `msync`. Every load and store goes through `fault::copy` or
/// `fault::fill`, so a failed page is an error, not a dead process, and no Rust
/// reference ever covers mapped bytes that another thread may store into.
pub struct MmapMedia {
    map: MmapRaw,
    len: u64,
    /// The mapped file: its size tells a vanished page from a memory error.
    file: File,
    /// The fault handler's slot for this mapping.
    region: Option<usize>,
}

impl MmapMedia {
    /// Maps `len` bytes of `file`, writable or read-only (a read-only pool is never
    /// written: the core refuses every change first).
    pub fn new(file: &File, len: u64, writable: bool) -> io::Result<Self> {
        fault::install()?;
        let opts = {
            let mut o = MmapOptions::new();
            o.len(len as usize);
            o
        };
        let map = if writable { opts.map_raw(file)? } else { opts.map_raw_read_only(file)? };
        let region = fault::register(map.as_ptr() as usize, len as usize);
        if region.is_none() {
            log::warn!("too many pools mapped: early memory-failure reports for this one are ignored");
        }
        Ok(MmapMedia { map, len, file: file.try_clone()?, region })
    }

    /// The address byte `off` of the pool is mapped at: what the kernel names in
    /// `si_addr` when that page fails.
    pub fn address(&self, off: ArenaOffset) -> usize {
        check_range(self.len, off, 0);
        self.map.as_ptr() as usize + off.0 as usize
    }

    /// What a fault at mapped address `addr` means: past the file's end now, the file
    /// shrank; else the page failed.
    fn fault(&self, addr: usize) -> MediaError {
        let off = (addr - self.map.as_ptr() as usize) as u64;
        match self.file.metadata() {
            Ok(m) if m.len() <= off => MediaError::Shrunk { len: m.len() },
            _ => MediaError::Failed { off: ArenaOffset(off).pfn().offset(), bytes: PAGE_SIZE },
        }
    }

    fn at(&self, off: ArenaOffset) -> *mut u8 {
        // SAFETY: callers check that `off` is inside the mapping first.
        unsafe { self.map.as_mut_ptr().add(off.0 as usize) }
    }
}

impl Drop for MmapMedia {
    fn drop(&mut self) {
        if let Some(r) = self.region {
            fault::unregister(r);
        }
    }
}

impl Media for MmapMedia {
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, off: ArenaOffset, buf: &mut [u8]) -> MediaResult {
        check_range(self.len, off, buf.len() as u64);
        // SAFETY: the range is inside the mapping (checked above), which lives as long
        // as `self`; `buf` cannot alias it. Stores by other threads into the range
        // (racing writes of the same file bytes, as write(2) may race read(2)) meet
        // no reference: the copy is raw.
        unsafe { fault::copy(buf.as_mut_ptr(), self.at(off), buf.len()) }.map_err(|a| self.fault(a))
    }
    fn write(&self, off: ArenaOffset, data: &[u8]) -> MediaResult {
        check_range(self.len, off, data.len() as u64);
        // SAFETY: as in `read`. Stores race only stores of the same file's bytes: one
        // under the filesystem lock races at most a `write_pinned` (or `read_pinned`),
        // and that one's `OneFileRange` vouches that the range is one file's, and no
        // other file's page, for as long as it lives (it borrows the copier's epoch
        // pin). Racing stores leave a mix of the two writes' bytes, as racing
        // write(2)s of one file may.
        unsafe { fault::copy(self.at(off), data.as_ptr(), data.len()) }.map_err(|a| self.fault(a))
    }
    fn fill(&self, off: ArenaOffset, bytes: u64, byte: u8) -> MediaResult {
        check_range(self.len, off, bytes);
        // SAFETY: as in `write`.
        unsafe { fault::fill(self.at(off), byte, bytes as usize) }.map_err(|a| self.fault(a))
    }
    fn flush(&self, off: ArenaOffset, bytes: u64) -> io::Result<()> {
        check_range(self.len, off, bytes);
        self.map.flush_range(off.0 as usize, bytes as usize)
    }
    fn prepare_write(&self, off: ArenaOffset, bytes: u64) {
        check_range(self.len, off, bytes);
        // Page-aligned: arena pages are. Failure (a kernel before 5.14, no memory now,
        // or pages past a shrunk file's end) only means the faults happen one by one,
        // as without the hint, and the stores then report what is gone.
        // SAFETY: the range is inside the mapping; MADV_POPULATE_WRITE changes no bytes.
        unsafe {
            libc::madvise(self.at(off).cast(), bytes as usize, libc::MADV_POPULATE_WRITE);
        }
    }
    fn take_failures(&self) -> Vec<MediaError> {
        let base = self.map.as_ptr() as usize;
        let (reports, lost) = fault::take(base, self.len as usize);
        if lost > 0 {
            log::error!("{lost} memory-failure report(s) were lost: too many arrived at once");
        }
        reports
            .into_iter()
            .map(|r| match self.fault(r.addr) {
                MediaError::Failed { off, .. } => MediaError::Failed { off, bytes: r.len as u64 },
                shrunk => shrunk,
            })
            .collect()
    }
}

/// Media in memory, for fast tests and examples. Pages can be made to fail (`fail`),
/// the media cut short (`cut`), and failures reported as the kernel would (`report`).
pub struct MemMedia {
    inner: Mutex<MemInner>,
}

struct MemInner {
    bytes: Vec<u8>,
    /// Page numbers whose accesses fail.
    failed: BTreeSet<u64>,
    /// Accesses at or past this offset fail as on a shrunk pool file.
    end: u64,
    reported: Vec<MediaError>,
}

impl MemMedia {
    pub fn new(len: u64) -> Self {
        MemMedia::from_bytes(vec![0; len as usize])
    }
    /// A copy of the whole media, e.g. to reopen it as if after a crash.
    pub fn snapshot(&self) -> Vec<u8> {
        self.lock().bytes.clone()
    }
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let end = bytes.len() as u64;
        MemMedia { inner: Mutex::new(MemInner { bytes, failed: BTreeSet::new(), end, reported: Vec::new() }) }
    }
    /// Makes every access to the pages of `[off, off + bytes)` fail, as poisoned memory.
    pub fn fail(&self, off: ArenaOffset, bytes: u64) {
        let mut m = self.lock();
        m.failed.extend(off.pfn().0..(off.0 + bytes).div_ceil(PAGE_SIZE));
    }
    /// Makes every access past `len` fail, as on a pool file cut to `len` bytes.
    pub fn cut(&self, len: u64) {
        self.lock().end = len;
    }
    /// Queues a failure for `take_failures`, as an early `SIGBUS` would.
    pub fn report(&self, e: MediaError) {
        self.lock().reported.push(e);
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MemInner {
    /// Checks `[off, off + len)` as the hardware would, first failed byte first.
    fn access(&self, off: ArenaOffset, len: u64) -> MediaResult {
        check_range(self.bytes.len() as u64, off, len);
        let off = off.0;
        if len == 0 {
            return Ok(());
        }
        let first_bad = self.failed.range(off / PAGE_SIZE..=(off + len - 1) / PAGE_SIZE).next();
        let cut = (off + len > self.end).then(|| self.end.max(off));
        match (first_bad.map(|p| p * PAGE_SIZE), cut) {
            (Some(p), c) if c.is_none_or(|c| p < c) => {
                Err(MediaError::Failed { off: ArenaOffset(p), bytes: PAGE_SIZE })
            }
            (_, Some(_)) => Err(MediaError::Shrunk { len: self.end }),
            _ => Ok(()),
        }
    }
}

impl Media for MemMedia {
    fn len(&self) -> u64 {
        self.lock().bytes.len() as u64
    }
    fn read(&self, off: ArenaOffset, buf: &mut [u8]) -> MediaResult {
        let m = self.lock();
        m.access(off, buf.len() as u64)?;
        let at = off.0 as usize;
        buf.copy_from_slice(&m.bytes[at..at + buf.len()]);
        Ok(())
    }
    fn write(&self, off: ArenaOffset, data: &[u8]) -> MediaResult {
        let mut m = self.lock();
        m.access(off, data.len() as u64)?;
        let at = off.0 as usize;
        m.bytes[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn fill(&self, off: ArenaOffset, bytes: u64, byte: u8) -> MediaResult {
        let mut m = self.lock();
        m.access(off, bytes)?;
        let at = off.0 as usize;
        m.bytes[at..at + bytes as usize].fill(byte);
        Ok(())
    }
    fn flush(&self, off: ArenaOffset, bytes: u64) -> io::Result<()> {
        check_range(self.len(), off, bytes);
        Ok(())
    }
    fn take_failures(&self) -> Vec<MediaError> {
        std::mem::take(&mut self.lock().reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_file(pages: u64) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("daxlink-media-{}-{pages}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.set_len(pages * PAGE_SIZE).unwrap();
        (path, file)
    }

    #[test]
    fn a_shrunk_pool_file_is_reported_not_fatal() {
        let (path, file) = pool_file(8);
        let m = MmapMedia::new(&file, 8 * PAGE_SIZE, true).unwrap();
        m.fill(ArenaOffset(0), 8 * PAGE_SIZE, 3).unwrap();
        file.set_len(5 * PAGE_SIZE).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut buf = vec![0u8; 2 * PAGE_SIZE as usize];
        assert_eq!(m.read(ArenaOffset(4 * PAGE_SIZE), &mut buf), Err(MediaError::Shrunk { len: 5 * PAGE_SIZE }));
        assert_eq!(m.write(ArenaOffset(6 * PAGE_SIZE), &[1; 10]), Err(MediaError::Shrunk { len: 5 * PAGE_SIZE }));
        m.read(ArenaOffset(3 * PAGE_SIZE), &mut buf).expect("pages below the cut still read");
        assert!(buf.iter().all(|b| *b == 3));
        assert_eq!(MediaError::Shrunk { len: 5 * PAGE_SIZE + 1 }.pages(8), (Pfn(5), 3));
    }

    #[test]
    fn mem_media_fails_the_first_bad_page_of_an_access() {
        let m = MemMedia::new(8 * PAGE_SIZE);
        m.fail(ArenaOffset(3 * PAGE_SIZE + 5), 1);
        m.cut(6 * PAGE_SIZE);
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        m.read(ArenaOffset(2 * PAGE_SIZE), &mut buf).unwrap();
        assert_eq!(
            m.fill(ArenaOffset(2 * PAGE_SIZE), 5 * PAGE_SIZE, 0),
            Err(MediaError::Failed { off: Pfn(3).offset(), bytes: PAGE_SIZE })
        );
        assert_eq!(m.write(ArenaOffset(5 * PAGE_SIZE), &[0; 5000]), Err(MediaError::Shrunk { len: 6 * PAGE_SIZE }));
        assert_eq!(MediaError::Failed { off: Pfn(3).offset(), bytes: PAGE_SIZE }.pages(8), (Pfn(3), 1));
    }
}
