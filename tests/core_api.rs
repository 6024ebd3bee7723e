//! Focused behaviour tests of the fs core through its public API (no FUSE): namespace,
//! data path, page ownership, space accounting, durability and recovery, errnos.

mod common;

use std::sync::{Arc, Mutex};

use daxlink::arena::{Geometry, MemMedia};
use daxlink::dax::PageState;
use daxlink::fs::{
    Changer, Ctx, Error, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, Fs, Kind, Options,
    RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, SetAttr, SetTime, Timespec, XATTR_CREATE, XATTR_REPLACE,
};
use daxlink::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

use common::{MIB, Pool, ROOT, pattern};

const PAGE: u64 = PAGE_SIZE;
const TIB8: u64 = 8 << 40;

fn errno<T: std::fmt::Debug>(r: daxlink::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.errno(),
    }
}

/// `page_state` reports the owner state (and, where supported, whether the page failed);
/// the tests here look at the owner state only.
trait OwnerState {
    fn owner(self) -> PageState;
}
impl OwnerState for PageState {
    fn owner(self) -> PageState {
        self
    }
}
impl OwnerState for (PageState, bool) {
    fn owner(self) -> PageState {
        self.0
    }
}

fn page_state(p: &Pool, pfn: Pfn) -> daxlink::Result<PageState> {
    p.fs.page_state(pfn).map(OwnerState::owner)
}

/// Data pages of the pool whose state is not `Free`.
fn used_pages(p: &Pool) -> u64 {
    p.fs.stats().pages_used
}

// ---------------------------------------------------------------------------------
// Files: data path.

#[test]
fn unlinked_open_file_keeps_data_until_release() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let data = pattern(1, 3 * PAGE as usize + 5);
    p.write_all(f, 0, &data);
    p.fs.open_inode(f).unwrap();
    p.fs.unlink(Ino::ROOT, b"f").unwrap();
    assert_eq!(errno(p.fs.lookup(Ino::ROOT, b"f")), libc::ENOENT, "the name must be gone");
    assert_eq!(p.fs.getattr(f).unwrap().nlink, 0);
    assert_eq!(p.read_all(f), data, "an open unlinked file must still read its data");
    p.write_all(f, data.len() as u64, b"more");
    assert_eq!(used_pages(&p), 4);
    p.assert_consistent();
    p.fs.release(f).unwrap();
    assert_eq!(errno(p.fs.getattr(f)), libc::ENOENT, "the inode must go with its last release");
    assert_eq!(used_pages(&p), 0, "its pages must go too");
    p.assert_consistent();
}

#[test]
fn second_open_handle_keeps_unlinked_file_alive_after_first_release() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, b"hello");
    p.fs.open_inode(f).unwrap();
    p.fs.open_inode(f).unwrap();
    p.fs.unlink(Ino::ROOT, b"f").unwrap();
    p.fs.release(f).unwrap();
    assert_eq!(p.read_all(f), b"hello", "one handle is still open");
    p.fs.release(f).unwrap();
    assert_eq!(errno(p.fs.getattr(f)), libc::ENOENT);
    p.assert_consistent();
}

#[test]
fn write_past_eof_zero_fills_gap_even_after_truncate_down() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, &vec![0xab; 10000]);
    // Shrink into the middle of page 0: the stale bytes stay on the media past EOF.
    p.fs.setattr(f, SetAttr { size: Some(100), ..Default::default() }).unwrap();
    p.write_all(f, 9000, b"x");
    let got = p.read_all(f);
    assert_eq!(got.len(), 9001);
    assert!(got[..100].iter().all(|&b| b == 0xab), "kept bytes changed");
    if let Some(i) = got[100..9000].iter().position(|&b| b != 0) {
        panic!("byte {} of the gap reads {:#x}, not 0 (stale data past the old EOF)", 100 + i, got[100 + i]);
    }
    assert_eq!(got[9000], b'x');

    // The same through truncate up and fallocate, after a remount in between.
    let g = p.create(Ino::ROOT, "g");
    p.write_all(g, 0, &vec![0xcd; 3 * PAGE as usize]);
    p.fs.setattr(g, SetAttr { size: Some(5000), ..Default::default() }).unwrap();
    let p = p.remount();
    p.fs.setattr(g, SetAttr { size: Some(8000), ..Default::default() }).unwrap();
    let got = p.read_all(g);
    assert!(got[..5000].iter().all(|&b| b == 0xcd));
    assert!(got[5000..].iter().all(|&b| b == 0), "truncate up must expose zeros, not old bytes");
    p.fs.setattr(g, SetAttr { size: Some(4500), ..Default::default() }).unwrap();
    p.fs.fallocate(g, 0, 0, 3 * PAGE).unwrap();
    let got = p.read_all(g);
    assert_eq!(got.len(), 3 * PAGE as usize);
    assert!(got[4500..].iter().all(|&b| b == 0), "fallocate growing the file must expose zeros");
    p.assert_consistent();
}

#[test]
fn truncate_down_then_up_reads_zeros_and_frees_pages() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, &pattern(3, 10 * PAGE as usize));
    assert_eq!(used_pages(&p), 10);
    p.fs.setattr(f, SetAttr { size: Some(PAGE + 1), ..Default::default() }).unwrap();
    assert_eq!(used_pages(&p), 2, "pages past the new EOF must be unmapped");
    p.fs.setattr(f, SetAttr { size: Some(10 * PAGE), ..Default::default() }).unwrap();
    let got = p.read_all(f);
    assert_eq!(&got[..PAGE as usize + 1], &pattern(3, PAGE as usize + 1)[..]);
    assert!(got[PAGE as usize + 1..].iter().all(|&b| b == 0));
    assert_eq!(p.fs.getattr(f).unwrap().blocks, 2 * PAGE / 512, "st_blocks counts mapped pages");
    p.assert_consistent();
}

#[test]
fn append_write_goes_to_eof_whatever_the_offset() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, b"abc");
    assert_eq!(p.fs.write(f, 0, b"def", true).unwrap(), 3);
    assert_eq!(p.fs.write(f, 1000, b"g", true).unwrap(), 1);
    assert_eq!(p.read_all(f), b"abcdefg");
}

#[test]
fn overwrite_in_place_keeps_the_same_page() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, &pattern(1, PAGE as usize));
    let before = p.fs.extents(f).unwrap();
    p.write_all(f, 10, b"overwrite");
    assert_eq!(p.fs.extents(f).unwrap(), before, "an unshared page is written in place");
    let got = p.read_all(f);
    assert_eq!(&got[10..19], b"overwrite");
}

#[test]
fn efbig_past_8tib() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    assert_eq!(errno(p.fs.write(f, TIB8, b"x", false)), libc::EFBIG);
    assert_eq!(errno(p.fs.write(f, TIB8 + 12345, b"x", false)), libc::EFBIG);
    // A write crossing the limit is cut short there (generic_write_checks).
    assert_eq!(p.fs.write(f, TIB8 - 10, &[7u8; 100], false).unwrap(), 10);
    assert_eq!(p.fs.getattr(f).unwrap().size, TIB8);
    assert_eq!(p.fs.read(f, TIB8 - 10, 100).unwrap(), vec![7u8; 10]);
    assert_eq!(errno(p.fs.setattr(f, SetAttr { size: Some(TIB8 + 1), ..Default::default() })), libc::EFBIG);
    assert_eq!(errno(p.fs.fallocate(f, 0, TIB8 - PAGE, 2 * PAGE)), libc::EFBIG);
    assert_eq!(errno(p.fs.fallocate(f, FALLOC_FL_KEEP_SIZE, u64::MAX - 10, 100)), libc::EFBIG);
    p.fs.setattr(f, SetAttr { size: Some(TIB8), ..Default::default() }).unwrap();
    // Appending to a file of the maximal size has nowhere to go.
    assert_eq!(errno(p.fs.write(f, 0, b"x", true)), libc::EFBIG);
    let p = p.remount();
    assert_eq!(p.fs.getattr(f).unwrap().size, TIB8, "a file of 8 TiB survives remount");
    p.assert_consistent();
}

#[test]
fn punch_hole_reads_zeros_frees_whole_pages_and_keeps_size() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let data = pattern(5, 4 * PAGE as usize);
    p.write_all(f, 0, &data);
    let end = 3 * PAGE + 50;
    p.fs.fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, end - 100).unwrap();
    let got = p.read_all(f);
    assert_eq!(got.len(), data.len(), "punch must keep the size");
    assert_eq!(&got[..100], &data[..100]);
    assert!(got[100..end as usize].iter().all(|&b| b == 0), "punched range must read zeros");
    assert_eq!(&got[end as usize..], &data[end as usize..]);
    let blocks: Vec<u64> = p.fs.extents(f).unwrap().iter().flat_map(|x| x.fblock.0..x.fblock.0 + x.len).collect();
    assert_eq!(blocks, vec![0, 3], "whole punched pages must be unmapped, partial ones kept");
    assert_eq!(used_pages(&p), 2);
    p.assert_consistent();
}

#[test]
fn zero_range_without_keep_size_extends_the_file() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, &[1u8; 1000]);
    p.fs.fallocate(f, FALLOC_FL_ZERO_RANGE, 500, 10000).unwrap();
    let got = p.read_all(f);
    assert_eq!(got.len(), 10500);
    assert!(got[..500].iter().all(|&b| b == 1));
    assert!(got[500..].iter().all(|&b| b == 0));
    p.fs.fallocate(f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 10000, 90000).unwrap();
    assert_eq!(p.fs.getattr(f).unwrap().size, 10500, "KEEP_SIZE must not grow the file");
    p.assert_consistent();
}

#[test]
fn fallocate_keep_size_allocates_without_growing() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, b"abc");
    p.fs.fallocate(f, FALLOC_FL_KEEP_SIZE, 0, 8 * PAGE).unwrap();
    let a = p.fs.getattr(f).unwrap();
    assert_eq!(a.size, 3);
    assert_eq!(a.blocks, 8 * PAGE / 512, "preallocated pages count in st_blocks");
    assert_eq!(used_pages(&p), 8);
    assert_eq!(p.read_all(f), b"abc", "preallocation must not change contents");
    p.fs.fallocate(f, 0, 0, 2 * PAGE).unwrap();
    assert_eq!(p.fs.getattr(f).unwrap().size, 2 * PAGE);
    assert_eq!(&p.read_all(f)[..3], b"abc");
    p.assert_consistent();
}

#[test]
fn fallocate_bad_arguments_are_refused() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let d = p.mkdir(Ino::ROOT, "d");
    assert_eq!(errno(p.fs.fallocate(f, FALLOC_FL_PUNCH_HOLE, 0, PAGE)), libc::EOPNOTSUPP, "punch needs KEEP_SIZE");
    assert_eq!(errno(p.fs.fallocate(f, 0x08, 0, PAGE)), libc::EOPNOTSUPP, "collapse range is not supported");
    assert_eq!(errno(p.fs.fallocate(f, 0, 0, 0)), libc::EINVAL, "len 0");
    assert_eq!(errno(p.fs.fallocate(d, 0, 0, PAGE)), libc::EISDIR);
}

#[test]
fn seek_data_and_hole_follow_the_extent_map() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 10 * PAGE, &[1u8; PAGE as usize]);
    p.fs.setattr(f, SetAttr { size: Some(20 * PAGE), ..Default::default() }).unwrap();
    let (data, hole) = (libc::SEEK_DATA, libc::SEEK_HOLE);
    assert_eq!(p.fs.seek(f, 0, data).unwrap(), 10 * PAGE);
    assert_eq!(p.fs.seek(f, 10 * PAGE + 100, data).unwrap(), 10 * PAGE + 100);
    assert_eq!(p.fs.seek(f, 0, hole).unwrap(), 0);
    assert_eq!(p.fs.seek(f, 10 * PAGE, hole).unwrap(), 11 * PAGE);
    assert_eq!(errno(p.fs.seek(f, 11 * PAGE, data)), libc::ENXIO, "no data after the last extent");
    assert_eq!(p.fs.seek(f, 11 * PAGE, hole).unwrap(), 11 * PAGE);
    assert_eq!(errno(p.fs.seek(f, 20 * PAGE, data)), libc::ENXIO, "at EOF");
    assert_eq!(errno(p.fs.seek(f, 20 * PAGE, hole)), libc::ENXIO, "at EOF");
    // Preallocation past EOF is not data below EOF, and the implicit hole is at EOF.
    p.fs.fallocate(f, FALLOC_FL_KEEP_SIZE, 20 * PAGE, 4 * PAGE).unwrap();
    p.fs.fallocate(f, FALLOC_FL_KEEP_SIZE, 11 * PAGE, 9 * PAGE).unwrap();
    assert_eq!(p.fs.seek(f, 10 * PAGE, hole).unwrap(), 20 * PAGE, "the hole at EOF");
    assert_eq!(errno(p.fs.seek(f, 0, libc::SEEK_SET)), libc::EINVAL);
}

#[test]
fn io_on_the_wrong_kind_of_inode_is_refused() {
    let p = Pool::new(32 * MIB);
    let d = p.mkdir(Ino::ROOT, "d");
    let f = p.create(Ino::ROOT, "f");
    let fifo = p.fs.mknod(ROOT, Ino::ROOT, b"fifo", libc::S_IFIFO | 0o644, 0).unwrap();
    assert_eq!(fifo.kind(), Kind::Fifo);
    let chr = p.fs.mknod(ROOT, Ino::ROOT, b"chr", libc::S_IFCHR | 0o644, 0x0103).unwrap();
    assert_eq!(p.fs.getattr(chr.ino).unwrap().rdev, 0x0103);
    assert_eq!(errno(p.fs.write(d, 0, b"x", false)), libc::EISDIR);
    assert_eq!(errno(p.fs.read(d, 0, 1)), libc::EISDIR);
    assert_eq!(errno(p.fs.setattr(d, SetAttr { size: Some(0), ..Default::default() })), libc::EISDIR);
    assert_eq!(errno(p.fs.readdir(f, 0, 10)), libc::ENOTDIR);
    assert_eq!(errno(p.fs.lookup(f, b"x")), libc::ENOTDIR);
    assert_eq!(errno(p.fs.mknod(ROOT, f, b"x", libc::S_IFREG | 0o644, 0)), libc::ENOTDIR);
    assert_eq!(errno(p.fs.readlink(f)), libc::EINVAL);
    assert_eq!(errno(p.fs.mknod(ROOT, Ino::ROOT, b"dir", libc::S_IFDIR | 0o755, 0)), libc::EINVAL);
    assert_eq!(errno(p.fs.getattr(Ino(999_999))), libc::ENOENT);
    let p = p.remount();
    assert_eq!(p.fs.getattr(chr.ino).unwrap().rdev, 0x0103, "rdev survives remount");
    assert_eq!(p.fs.getattr(fifo.ino).unwrap().kind(), Kind::Fifo);
}

/// A clone may land past the destination's EOF (FICLONERANGE allows it); the gap must
/// read zeros like any gap (XFS zeroes it in `xfs_reflink_remap_prep`), including the
/// bytes past the old EOF in its page, which a truncate left on the media.
#[test]
fn clone_past_eof_zero_fills_gap_even_after_truncate_down() {
    let p = Pool::new(32 * MIB);
    let d = p.create(Ino::ROOT, "d");
    p.write_all(d, 0, &[0xaa; 2 * PAGE as usize]);
    p.fs.setattr(d, SetAttr { size: Some(100), ..Default::default() }).unwrap();
    let s = p.create(Ino::ROOT, "s");
    p.write_all(s, 0, &[0x11; PAGE as usize]);
    assert_eq!(p.fs.clone_range(s, 0, d, 2 * PAGE, PAGE).unwrap(), PAGE);
    let got = p.read_all(d);
    assert_eq!(got.len(), 3 * PAGE as usize);
    assert!(got[..100].iter().all(|&b| b == 0xaa));
    if let Some(i) = got[100..2 * PAGE as usize].iter().position(|&b| b != 0) {
        panic!("gap byte {} reads {:#x}: stale data from before the truncate", 100 + i, got[100 + i]);
    }
    assert!(got[2 * PAGE as usize..].iter().all(|&b| b == 0x11));
    p.assert_consistent();

    // copy_file_range shares whole blocks the same way.
    let e = p.create(Ino::ROOT, "e");
    p.write_all(e, 0, &[0xbb; 2 * PAGE as usize]);
    p.fs.setattr(e, SetAttr { size: Some(200), ..Default::default() }).unwrap();
    assert_eq!(p.fs.copy_range(s, 0, e, 2 * PAGE, PAGE).unwrap(), PAGE);
    let got = p.read_all(e);
    if let Some(i) = got[200..2 * PAGE as usize].iter().position(|&b| b != 0) {
        panic!("copy_range: gap byte {} reads {:#x}: stale data from before the truncate", 200 + i, got[200 + i]);
    }
}

// ---------------------------------------------------------------------------------
// Page ownership and space.

#[test]
fn page_of_new_write_is_owned_by_file_at_its_index() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 5 * PAGE, &pattern(2, 3 * PAGE as usize));
    let ext = p.fs.extents(f).unwrap();
    assert_eq!(ext.iter().map(|x| x.len).sum::<u64>(), 3);
    let mut pfns = Vec::new();
    for x in &ext {
        for i in 0..x.len {
            let (b, pfn) = (FileBlock(x.fblock.0 + i), Pfn(x.pfn.0 + i));
            assert!((5..8).contains(&b.0), "block {b} mapped outside the write");
            assert_eq!(
                page_state(&p, pfn).unwrap(),
                PageState::Owned { mapping: f, index: b },
                "page {pfn} of block {b}"
            );
            pfns.push(pfn);
        }
    }
    let p = p.remount();
    for (i, pfn) in pfns.iter().enumerate() {
        assert_eq!(
            page_state(&p, *pfn).unwrap(),
            PageState::Owned { mapping: f, index: FileBlock(5 + i as u64) },
            "the page table is rebuilt at mount"
        );
    }
    p.fs.unlink(Ino::ROOT, b"f").unwrap();
    for pfn in &pfns {
        assert_eq!(page_state(&p, *pfn).unwrap(), PageState::Free, "page {pfn} after unlink");
    }
    assert_eq!(p.fs.stats().pages_shared, 0);
    p.assert_consistent();
}

#[test]
fn page_state_outside_the_data_region_is_einval() {
    let p = Pool::new(16 * MIB);
    assert_eq!(errno(page_state(&p, Pfn(0))), libc::EINVAL, "the superblock page");
    assert_eq!(errno(page_state(&p, Pfn(1))), libc::EINVAL, "a log page");
    assert_eq!(errno(page_state(&p, Pfn(16 * MIB / PAGE))), libc::EINVAL, "past the pool");
}

#[test]
fn free_space_returns_after_unlink_and_sync() {
    let p = Pool::new(32 * MIB);
    let sf0 = p.fs.statfs();
    assert_eq!(sf0.bfree, sf0.blocks, "a fresh pool is all free");
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, &pattern(9, MIB as usize));
    assert_eq!(p.fs.statfs().bfree, sf0.bfree - 256);
    assert_eq!(p.fs.stats().pages_used, 256);
    p.fs.unlink(Ino::ROOT, b"f").unwrap();
    p.fs.sync().unwrap();
    let st = p.fs.stats();
    assert_eq!((st.pages_used, st.pages_free), (0, st.pages_total), "{st:?}");
    assert_eq!(p.fs.statfs().bfree, sf0.bfree);
    let p = p.remount();
    assert_eq!(p.fs.statfs().bfree, sf0.bfree, "free space after remount");
    p.assert_consistent();
}

#[test]
fn freed_pages_are_reused_when_the_pool_is_full_without_an_explicit_sync() {
    let p = Pool::new(16 * MIB);
    let free = p.fs.statfs().bfree;
    let a = p.create(Ino::ROOT, "a");
    p.write_all(a, 0, &vec![1u8; ((free - 8) * PAGE) as usize]);
    p.fs.unlink(Ino::ROOT, b"a").unwrap();
    // The freed pages are busy until the unlink is durable; allocation must flush the
    // log to get them back rather than fail.
    let b = p.create(Ino::ROOT, "b");
    p.write_all(b, 0, &vec![2u8; ((free - 8) * PAGE) as usize]);
    p.assert_consistent();
    let q = p.crash();
    assert_eq!(errno(q.fs.lookup(Ino::ROOT, b"a")), libc::ENOENT);
    let b = q.fs.lookup(Ino::ROOT, b"b").unwrap().ino;
    assert!(q.read_all(b).iter().all(|&x| x == 2), "b's pages must hold b's data after replay");
    q.assert_consistent();
}

#[test]
fn statfs_reports_geometry_and_limits() {
    let p = Pool::new(32 * MIB);
    let sf = p.fs.statfs();
    let st = p.fs.stats();
    assert_eq!(sf.bsize, 4096);
    assert_eq!(sf.namelen, 255);
    assert_eq!(sf.blocks, st.pages_total);
    assert!(sf.files > 0 && sf.ffree < sf.files, "{sf:?}");
    let before = sf.ffree;
    p.create(Ino::ROOT, "f");
    assert_eq!(p.fs.statfs().ffree, before - 1);
}

#[test]
fn enospc_write_leaves_file_unchanged() {
    let p = Pool::new(16 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let data = pattern(4, 100 << 10);
    p.write_all(f, 0, &data);
    p.fs.sync().unwrap();
    let used = used_pages(&p);
    let free = p.fs.statfs().bfree;
    let too_big = vec![9u8; ((free + 50) * PAGE) as usize];

    let g = p.create(Ino::ROOT, "g");
    assert_eq!(errno(p.fs.write(g, 0, &too_big, false)), libc::ENOSPC);
    assert_eq!(p.fs.getattr(g).unwrap().size, 0, "a failed write must not grow the file");
    assert!(p.fs.extents(g).unwrap().is_empty(), "a failed write must not keep pages");

    // Overlapping existing data and extending: nothing of it may land.
    assert_eq!(errno(p.fs.write(f, 50 << 10, &too_big, false)), libc::ENOSPC);
    // Past EOF, leaving a gap.
    assert_eq!(errno(p.fs.write(f, 1 << 20, &too_big, false)), libc::ENOSPC);
    assert_eq!(p.read_all(f), data, "file changed by failed writes");
    assert_eq!(used_pages(&p), used, "failed writes leaked pages");
    // Preallocation fails the same way.
    assert_eq!(errno(p.fs.fallocate(f, 0, 0, (free + 200) * PAGE)), libc::ENOSPC);
    assert_eq!(errno(p.fs.fallocate(f, FALLOC_FL_KEEP_SIZE, 0, (free + 200) * PAGE)), libc::ENOSPC);
    assert_eq!(p.read_all(f), data);
    assert_eq!(used_pages(&p), used);
    p.assert_consistent();
    // And the space is all still there.
    p.write_all(g, 0, &too_big[..((free - 1) * PAGE) as usize]);
    p.assert_consistent();
}

/// On ENOSPC a request must leave the file as it was. ZERO_RANGE punches the range
/// before it allocates, so running out of space afterwards loses the data it zeroed.
#[test]
fn enospc_zero_range_leaves_file_unchanged() {
    let p = Pool::new(16 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let data = pattern(6, 64 << 10);
    p.write_all(f, 0, &data);
    let free = p.fs.statfs().bfree;
    let filler = p.create(Ino::ROOT, "filler");
    p.write_all(filler, 0, &vec![1u8; ((free - 2) * PAGE) as usize]);
    let r = p.fs.fallocate(f, FALLOC_FL_ZERO_RANGE, PAGE, MIB);
    assert_eq!(errno(r), libc::ENOSPC);
    let got = p.read_all(f);
    assert_eq!(got.len(), data.len(), "size changed by a failed ZERO_RANGE");
    if let Some(i) = got.iter().zip(&data).position(|(a, b)| a != b) {
        panic!("failed ZERO_RANGE changed the file: byte {i} is {:#x}, was {:#x}", got[i], data[i]);
    }
    p.assert_consistent();
}

// ---------------------------------------------------------------------------------
// Namespace.

#[test]
fn mkdir_and_rmdir_keep_parent_link_count() {
    let p = Pool::new(32 * MIB);
    assert_eq!(p.fs.getattr(Ino::ROOT).unwrap().nlink, 2);
    let a = p.mkdir(Ino::ROOT, "a");
    p.mkdir(a, "b");
    p.create(a, "f");
    assert_eq!(p.fs.getattr(Ino::ROOT).unwrap().nlink, 3);
    assert_eq!(p.fs.getattr(a).unwrap().nlink, 3, "a file does not count in nlink");
    assert_eq!(p.fs.lookup(a, b"..").unwrap().ino, Ino::ROOT);
    assert_eq!(p.fs.lookup(a, b".").unwrap().ino, a);
    assert_eq!(p.fs.lookup(Ino::ROOT, b"..").unwrap().ino, Ino::ROOT, "the root is its own parent");
    p.fs.rmdir(a, b"b").unwrap();
    assert_eq!(p.fs.getattr(a).unwrap().nlink, 2);
    let p = p.remount();
    assert_eq!(p.fs.getattr(a).unwrap().nlink, 2);
    assert_eq!(p.fs.getattr(Ino::ROOT).unwrap().nlink, 3);
    p.assert_consistent();
}

#[test]
fn rmdir_and_unlink_errnos() {
    let p = Pool::new(32 * MIB);
    let d = p.mkdir(Ino::ROOT, "d");
    p.create(d, "f");
    p.mkdir(Ino::ROOT, "empty");
    assert_eq!(errno(p.fs.rmdir(Ino::ROOT, b"d")), libc::ENOTEMPTY);
    assert_eq!(errno(p.fs.rmdir(d, b"f")), libc::ENOTDIR);
    assert_eq!(errno(p.fs.rmdir(Ino::ROOT, b"nope")), libc::ENOENT);
    assert_eq!(errno(p.fs.rmdir(d, b".")), libc::EINVAL);
    assert_eq!(errno(p.fs.rmdir(d, b"..")), libc::ENOTEMPTY);
    assert_eq!(errno(p.fs.unlink(Ino::ROOT, b"empty")), libc::EISDIR);
    assert_eq!(errno(p.fs.unlink(Ino::ROOT, b"nope")), libc::ENOENT);
    assert_eq!(errno(p.fs.mkdir(ROOT, Ino::ROOT, b"d", 0o755)), libc::EEXIST);
    assert_eq!(errno(p.fs.mknod(ROOT, Ino::ROOT, b"empty", libc::S_IFREG | 0o644, 0)), libc::EEXIST);
    p.fs.unlink(d, b"f").unwrap();
    p.fs.rmdir(Ino::ROOT, b"d").unwrap();
    p.fs.rmdir(Ino::ROOT, b"empty").unwrap();
    assert_eq!(p.fs.stats().inodes, 1);
    p.assert_consistent();
}

#[test]
fn enametoolong() {
    let p = Pool::new(32 * MIB);
    let long = vec![b'x'; 256];
    let max = vec![b'y'; 255];
    let r = Ino::ROOT;
    assert_eq!(errno(p.fs.mknod(ROOT, r, &long, libc::S_IFREG | 0o644, 0)), libc::ENAMETOOLONG);
    assert_eq!(errno(p.fs.mkdir(ROOT, r, &long, 0o755)), libc::ENAMETOOLONG);
    assert_eq!(errno(p.fs.symlink(ROOT, r, &long, b"t")), libc::ENAMETOOLONG);
    assert_eq!(errno(p.fs.lookup(r, &long)), libc::ENAMETOOLONG);
    assert_eq!(errno(p.fs.unlink(r, &long)), libc::ENAMETOOLONG);
    assert_eq!(errno(p.fs.rmdir(r, &long)), libc::ENAMETOOLONG);
    let f = p.fs.mknod(ROOT, r, &max, libc::S_IFREG | 0o644, 0).expect("255 bytes is allowed").ino;
    assert_eq!(errno(p.fs.link(f, r, &long)), libc::ENAMETOOLONG);
    assert_eq!(errno(p.fs.rename(ROOT, r, &max, r, &long, 0)), libc::ENAMETOOLONG);
    assert_eq!(errno(p.fs.rename(ROOT, r, &long, r, b"z", 0)), libc::ENAMETOOLONG);
    // PATH_MAX for symlink targets.
    assert_eq!(errno(p.fs.symlink(ROOT, r, b"s", &vec![b'a'; 4097])), libc::ENAMETOOLONG);
    let s = p.fs.symlink(ROOT, r, b"s", &vec![b'a'; 4096]).unwrap().ino;
    let p = p.remount();
    assert_eq!(p.fs.lookup(r, &max).unwrap().ino, f);
    assert_eq!(p.fs.readlink(s).unwrap().len(), 4096);
}

#[test]
fn names_with_slash_or_nul_are_einval_and_binary_names_survive() {
    let p = Pool::new(32 * MIB);
    let r = Ino::ROOT;
    for bad in [&b"a/b"[..], b"a\0b", b"", b".", b".."] {
        let e = errno(p.fs.mknod(ROOT, r, bad, libc::S_IFREG | 0o644, 0));
        assert!(e == libc::EINVAL || e == libc::EEXIST, "name {bad:?}: errno {e}");
    }
    let odd: Vec<u8> = (1u8..=255).filter(|b| *b != b'/').take(200).collect();
    let f = p.fs.mknod(ROOT, r, &odd, libc::S_IFREG | 0o644, 0).unwrap().ino;
    let p = p.remount();
    assert_eq!(p.fs.lookup(r, &odd).unwrap().ino, f);
}

#[test]
fn readdir_resumes_from_cookie_without_repeats_or_skips() {
    let p = Pool::new(32 * MIB);
    let d = p.mkdir(Ino::ROOT, "d");
    for i in 0..40 {
        p.create(d, &format!("f{i:02}"));
    }
    let first = p.fs.readdir(d, 0, 2).unwrap();
    assert_eq!(
        first.iter().map(|e| (e.name.as_slice(), e.ino, e.offset)).collect::<Vec<_>>(),
        vec![(&b"."[..], d, 1), (&b".."[..], Ino::ROOT, 2)]
    );
    // Read in small batches while entries before and after the cursor change.
    let mut seen = Vec::new();
    let mut cookie = 2;
    let mut round = 0;
    loop {
        let batch = p.fs.readdir(d, cookie, 5).unwrap();
        let Some(last) = batch.last() else { break };
        cookie = last.offset;
        seen.extend(batch.iter().map(|e| String::from_utf8(e.name.clone()).unwrap()));
        if round == 1 {
            p.fs.unlink(d, b"f00").unwrap(); // already returned
            p.create(d, "new"); // takes the slot f00 left, behind the cursor
        }
        round += 1;
    }
    let expect: Vec<String> = (0..40).map(|i| format!("f{i:02}")).collect();
    assert_eq!(seen, expect, "each entry that stayed exactly once, in creation order; new one not at all");
    let all = p.fs.readdir(d, 2, 100).unwrap();
    assert_eq!(all.first().map(|e| e.name.as_slice()), Some(&b"new"[..]), "a new name fills the lowest freed slot");
    assert_eq!(p.names(d).len(), 40);
    // The order survives remount.
    let before = p.names(d);
    let p = p.remount();
    assert_eq!(p.names(d), before);
}

#[test]
fn rename_over_existing_file_replaces_it_and_frees_its_pages() {
    let p = Pool::new(32 * MIB);
    let a = p.create(Ino::ROOT, "a");
    let b = p.create(Ino::ROOT, "b");
    p.write_all(a, 0, b"from a");
    p.write_all(b, 0, &pattern(1, 4 * PAGE as usize));
    p.fs.rename(ROOT, Ino::ROOT, b"a", Ino::ROOT, b"b", 0).unwrap();
    assert_eq!(p.fs.lookup(Ino::ROOT, b"b").unwrap().ino, a);
    assert_eq!(errno(p.fs.lookup(Ino::ROOT, b"a")), libc::ENOENT);
    assert_eq!(errno(p.fs.getattr(b)), libc::ENOENT, "the replaced inode must be freed");
    assert_eq!(used_pages(&p), 1);
    let q = p.crash();
    assert_eq!(q.names(Ino::ROOT), vec!["b"]);
    assert_eq!(q.read_all(a), b"from a");
    q.assert_consistent();
}

#[test]
fn rename_replacing_open_file_keeps_it_readable_until_release() {
    let p = Pool::new(32 * MIB);
    let a = p.create(Ino::ROOT, "a");
    let b = p.create(Ino::ROOT, "b");
    p.write_all(b, 0, b"old b");
    p.fs.open_inode(b).unwrap();
    p.fs.rename(ROOT, Ino::ROOT, b"a", Ino::ROOT, b"b", 0).unwrap();
    assert_eq!(p.read_all(b), b"old b");
    assert_eq!(p.fs.getattr(b).unwrap().nlink, 0);
    p.assert_consistent();
    p.fs.release(b).unwrap();
    assert_eq!(errno(p.fs.getattr(b)), libc::ENOENT);
    assert_eq!(p.fs.lookup(Ino::ROOT, b"b").unwrap().ino, a);
    p.assert_consistent();
}

#[test]
fn rename_noreplace_refuses_existing_target() {
    let p = Pool::new(32 * MIB);
    let a = p.create(Ino::ROOT, "a");
    let b = p.create(Ino::ROOT, "b");
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"a", Ino::ROOT, b"b", RENAME_NOREPLACE)), libc::EEXIST);
    assert_eq!(p.fs.lookup(Ino::ROOT, b"a").unwrap().ino, a);
    assert_eq!(p.fs.lookup(Ino::ROOT, b"b").unwrap().ino, b);
    p.fs.rename(ROOT, Ino::ROOT, b"a", Ino::ROOT, b"c", RENAME_NOREPLACE).unwrap();
    assert_eq!(p.fs.lookup(Ino::ROOT, b"c").unwrap().ino, a);
    assert_eq!(
        errno(p.fs.rename(ROOT, Ino::ROOT, b"c", Ino::ROOT, b"d", RENAME_NOREPLACE | RENAME_EXCHANGE)),
        libc::EINVAL
    );
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"c", Ino::ROOT, b"d", RENAME_EXCHANGE)), libc::ENOENT);
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"c", Ino::ROOT, b"d", 0x80)), libc::EINVAL);
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"zz", Ino::ROOT, b"d", 0)), libc::ENOENT);
}

/// RENAME_WHITEOUT (overlayfs): the source name becomes a character device 0:0 owned
/// by the caller, in the same transaction as the rename; with NOREPLACE onto an
/// existing name nothing changes; with EXCHANGE it is EINVAL, as renameat2(2) says.
#[test]
fn rename_whiteout_leaves_a_whiteout_device_at_the_source() {
    let p = Pool::new(32 * MIB);
    let d = p.mkdir(Ino::ROOT, "d");
    let a = p.create(d, "a");
    let b = p.create(d, "b");
    let user = Ctx { uid: 1000, gid: 1000 };
    assert_eq!(errno(p.fs.rename(user, d, b"a", d, b"b", RENAME_WHITEOUT | RENAME_NOREPLACE)), libc::EEXIST);
    assert_eq!(errno(p.fs.rename(user, d, b"a", d, b"b", RENAME_WHITEOUT | RENAME_EXCHANGE)), libc::EINVAL);
    assert_eq!(p.names(d), vec!["a", "b"], "a refused rename changed the directory");
    p.fs.rename(user, d, b"a", Ino::ROOT, b"moved", RENAME_WHITEOUT).unwrap();
    assert_eq!(p.fs.lookup(Ino::ROOT, b"moved").unwrap().ino, a);
    let w = p.fs.lookup(d, b"a").unwrap();
    assert_ne!(w.ino, a);
    assert_eq!((w.mode, w.rdev, w.uid, w.gid, w.nlink), (libc::S_IFCHR, 0, 1000, 1000, 1), "not a whiteout");
    p.fs.rename(user, d, b"b", d, b"c", RENAME_WHITEOUT).unwrap();
    assert_eq!(p.fs.lookup(d, b"c").unwrap().ino, b);
    assert_eq!(p.fs.lookup(d, b"b").unwrap().mode, libc::S_IFCHR);
    p.fs.sync().unwrap();
    let p = p.crash();
    let mut names = p.names(d);
    names.sort();
    assert_eq!(names, vec!["a", "b", "c"], "the whiteouts must be durable with their renames");
    p.assert_consistent();
}

#[test]
fn rename_directory_into_its_own_subtree_is_einval() {
    let p = Pool::new(32 * MIB);
    let a = p.mkdir(Ino::ROOT, "a");
    let b = p.mkdir(a, "b");
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"a", b, b"x", 0)), libc::EINVAL);
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"a", a, b"x", 0)), libc::EINVAL);
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"a", a, b"b", RENAME_EXCHANGE)), libc::EINVAL);
    assert_eq!(p.fs.lookup(Ino::ROOT, b"a").unwrap().ino, a);
    p.assert_consistent();
}

#[test]
fn rename_directory_types_and_emptiness_are_checked() {
    let p = Pool::new(32 * MIB);
    let d1 = p.mkdir(Ino::ROOT, "d1");
    let d2 = p.mkdir(Ino::ROOT, "d2");
    let full = p.mkdir(Ino::ROOT, "full");
    p.create(full, "x");
    p.create(Ino::ROOT, "f");
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"d1", Ino::ROOT, b"f", 0)), libc::ENOTDIR);
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"f", Ino::ROOT, b"d1", 0)), libc::EISDIR);
    assert_eq!(errno(p.fs.rename(ROOT, Ino::ROOT, b"d1", Ino::ROOT, b"full", 0)), libc::ENOTEMPTY);
    // Over an empty directory: replaces it, one subdirectory fewer in the root.
    let sub = p.mkdir(d1, "sub");
    p.fs.rename(ROOT, Ino::ROOT, b"d1", Ino::ROOT, b"d2", 0).unwrap();
    assert_eq!(errno(p.fs.getattr(d2)), libc::ENOENT);
    assert_eq!(p.fs.lookup(Ino::ROOT, b"d2").unwrap().ino, d1);
    assert_eq!(p.fs.getattr(Ino::ROOT).unwrap().nlink, 2 + 2, "root holds d2 and full");
    // Across directories: link counts move with the directory.
    p.fs.rename(ROOT, d1, b"sub", full, b"sub", 0).unwrap();
    assert_eq!(p.fs.getattr(d1).unwrap().nlink, 2);
    assert_eq!(p.fs.getattr(full).unwrap().nlink, 3);
    assert_eq!(p.fs.lookup(sub, b"..").unwrap().ino, full);
    let p = p.remount();
    assert_eq!(p.fs.lookup(sub, b"..").unwrap().ino, full);
    p.assert_consistent();
}

#[test]
fn rename_exchange_swaps_directories_and_fixes_dotdot() {
    let p = Pool::new(32 * MIB);
    let a = p.mkdir(Ino::ROOT, "a");
    p.mkdir(a, "inside_a");
    let d = p.mkdir(Ino::ROOT, "d");
    let e = p.mkdir(d, "e");
    p.create(e, "inside_e");
    p.fs.rename(ROOT, Ino::ROOT, b"a", d, b"e", RENAME_EXCHANGE).unwrap();
    let check = |p: &Pool| {
        assert_eq!(p.fs.lookup(Ino::ROOT, b"a").unwrap().ino, e);
        assert_eq!(p.fs.lookup(d, b"e").unwrap().ino, a);
        assert_eq!(p.fs.lookup(a, b"..").unwrap().ino, d, "a's .. must now be d");
        assert_eq!(p.fs.lookup(e, b"..").unwrap().ino, Ino::ROOT, "e's .. must now be the root");
        let dots = p.fs.readdir(a, 0, 2).unwrap();
        assert_eq!(dots[1].ino, d, "readdir's .. of a");
        assert_eq!(p.fs.getattr(Ino::ROOT).unwrap().nlink, 4);
        assert_eq!(p.fs.getattr(d).unwrap().nlink, 3);
        assert_eq!(p.names(a), vec!["inside_a"]);
        assert_eq!(p.names(e), vec!["inside_e"]);
        p.assert_consistent();
    };
    check(&p);
    check(&p.crash());
    check(&p.remount());
}

#[test]
fn rename_exchange_of_directory_and_file_moves_link_counts() {
    let p = Pool::new(32 * MIB);
    let a = p.mkdir(Ino::ROOT, "a");
    let d = p.mkdir(Ino::ROOT, "d");
    let f = p.create(d, "f");
    assert_eq!(p.fs.getattr(Ino::ROOT).unwrap().nlink, 4);
    p.fs.rename(ROOT, Ino::ROOT, b"a", d, b"f", RENAME_EXCHANGE).unwrap();
    assert_eq!(p.fs.lookup(Ino::ROOT, b"a").unwrap().ino, f);
    assert_eq!(p.fs.lookup(d, b"f").unwrap().ino, a);
    assert_eq!(p.fs.getattr(Ino::ROOT).unwrap().nlink, 3, "the root lost a subdirectory");
    assert_eq!(p.fs.getattr(d).unwrap().nlink, 3, "d gained one");
    assert_eq!(p.fs.lookup(a, b"..").unwrap().ino, d);
    p.assert_consistent();
    p.remount().assert_consistent();
}

#[test]
fn rename_between_hard_links_of_one_inode_does_nothing() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "a");
    p.fs.link(f, Ino::ROOT, b"b").unwrap();
    p.fs.rename(ROOT, Ino::ROOT, b"a", Ino::ROOT, b"b", 0).unwrap();
    assert_eq!(p.names(Ino::ROOT), vec!["a", "b"], "rename(2) between links of one inode is a no-op");
    assert_eq!(p.fs.getattr(f).unwrap().nlink, 2);
    p.fs.rename(ROOT, Ino::ROOT, b"a", Ino::ROOT, b"a", 0).unwrap();
    assert_eq!(p.names(Ino::ROOT), vec!["a", "b"]);
    p.assert_consistent();
}

#[test]
fn hard_link_shares_content_and_counts_links() {
    let p = Pool::new(32 * MIB);
    let d = p.mkdir(Ino::ROOT, "d");
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, b"shared");
    let a = p.fs.link(f, d, b"g").unwrap();
    assert_eq!((a.ino, a.nlink), (f, 2));
    p.write_all(p.fs.lookup(d, b"g").unwrap().ino, 6, b"!");
    assert_eq!(p.read_all(f), b"shared!");
    assert_eq!(errno(p.fs.link(f, d, b"g")), libc::EEXIST);
    assert_eq!(errno(p.fs.link(d, Ino::ROOT, b"dlink")), libc::EPERM, "hard links to directories");
    p.fs.unlink(Ino::ROOT, b"f").unwrap();
    assert_eq!(p.fs.getattr(f).unwrap().nlink, 1);
    assert_eq!(used_pages(&p), 1, "data stays while a name is left");
    let p = p.remount();
    assert_eq!(p.read_all(f), b"shared!");
    p.fs.unlink(d, b"g").unwrap();
    assert_eq!(used_pages(&p), 0);
    assert_eq!(errno(p.fs.getattr(f)), libc::ENOENT);
    p.assert_consistent();
}

#[test]
fn link_to_unlinked_open_file_is_enoent() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.fs.open_inode(f).unwrap();
    p.fs.unlink(Ino::ROOT, b"f").unwrap();
    assert_eq!(errno(p.fs.link(f, Ino::ROOT, b"again")), libc::ENOENT);
    p.fs.release(f).unwrap();
}

#[test]
fn symlink_target_is_kept_and_readlink_refuses_other_kinds() {
    let p = Pool::new(32 * MIB);
    let s = p.fs.symlink(ROOT, Ino::ROOT, b"s", b"../some/where").unwrap();
    assert_eq!(s.kind(), Kind::Symlink);
    assert_eq!(s.size, 13);
    assert_eq!(p.fs.readlink(s.ino).unwrap(), b"../some/where");
    assert_eq!(errno(p.fs.symlink(ROOT, Ino::ROOT, b"e", b"")), libc::EINVAL);
    assert_eq!(errno(p.fs.readlink(Ino::ROOT)), libc::EINVAL);
    let p = p.remount();
    assert_eq!(p.fs.readlink(s.ino).unwrap(), b"../some/where");
}

#[test]
fn setattr_changes_mode_owner_and_times_but_not_the_file_type() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let t = Timespec { sec: -86_400 * 365, nsec: 123_456_789 };
    let a =
        p.fs.setattr(
            f,
            SetAttr {
                mode: Some(libc::S_IFDIR | 0o4711),
                uid: Some(1000),
                gid: Some(100),
                atime: Some(SetTime::At(t)),
                mtime: Some(SetTime::At(Timespec { sec: 1, nsec: 2 })),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.mode, libc::S_IFREG | 0o4711, "setattr must not change the file type");
    assert_eq!((a.uid, a.gid), (1000, 100));
    assert_eq!(a.atime, t);
    let p = p.crash();
    let a = p.fs.getattr(f).unwrap();
    assert_eq!(a.mode, libc::S_IFREG | 0o4711);
    assert_eq!((a.uid, a.gid), (1000, 100));
    assert_eq!(a.atime, t, "a time before 1970 survives replay");
    assert_eq!(a.mtime, Timespec { sec: 1, nsec: 2 });
}

#[test]
fn in_place_write_mtime_is_durable_after_sync() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, &[1u8; 100]);
    let old = Timespec { sec: 1000, nsec: 0 };
    p.fs.setattr(f, SetAttr { mtime: Some(SetTime::At(old)), ..Default::default() }).unwrap();
    // Within the mapped page: no allocation, only the timestamp changes.
    p.write_all(f, 10, b"x");
    let mtime = p.fs.getattr(f).unwrap().mtime;
    assert!(mtime > old, "write must update mtime");
    p.fs.sync().unwrap();
    let q = p.crash();
    assert_eq!(q.fs.getattr(f).unwrap().mtime, mtime, "mtime of an in-place write lost despite sync");
    assert_eq!(q.read_all(f)[10], b'x');
}

#[test]
fn new_entries_in_a_setgid_directory_take_its_group() {
    let p = Pool::new(32 * MIB);
    let d = p.mkdir(Ino::ROOT, "d");
    p.fs.setattr(d, SetAttr { mode: Some(0o2775), gid: Some(50), ..Default::default() }).unwrap();
    let ctx = daxlink::fs::Ctx { uid: 1000, gid: 1000 };
    let sub = p.fs.mkdir(ctx, d, b"sub", 0o755).unwrap();
    assert_eq!(sub.gid, 50);
    assert_ne!(sub.mode & libc::S_ISGID, 0, "subdirectories inherit setgid");
    let f = p.fs.mknod(ctx, d, b"f", libc::S_IFREG | 0o644, 0).unwrap();
    assert_eq!((f.uid, f.gid), (1000, 50));
}

// ---------------------------------------------------------------------------------
// Extended attributes.

#[test]
fn xattr_errno_table() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let s = p.fs.symlink(ROOT, Ino::ROOT, b"s", b"f").unwrap().ino;
    p.fs.setxattr(f, b"user.a", b"1", 0).unwrap();
    let long_name = [b"user.".as_slice(), &[b'n'; 251]].concat();
    let cases: Vec<(&str, daxlink::Result<()>, i32)> = vec![
        ("CREATE over an existing name", p.fs.setxattr(f, b"user.a", b"2", XATTR_CREATE), libc::EEXIST),
        ("REPLACE of a missing name", p.fs.setxattr(f, b"user.b", b"2", XATTR_REPLACE), libc::ENODATA),
        ("get of a missing name", p.fs.getxattr(f, b"user.b").map(|_| ()), libc::ENODATA),
        ("remove of a missing name", p.fs.removexattr(f, b"user.b"), libc::ENODATA),
        ("empty name", p.fs.setxattr(f, b"", b"v", 0), libc::ERANGE),
        ("name over 255 bytes", p.fs.setxattr(f, &long_name, b"v", 0), libc::ERANGE),
        ("value over 64 KiB", p.fs.setxattr(f, b"user.big", &vec![0; 65537], 0), libc::E2BIG),
        ("bare namespace prefix", p.fs.setxattr(f, b"user.", b"v", 0), libc::EINVAL),
        ("unknown namespace", p.fs.setxattr(f, b"foo.bar", b"v", 0), libc::EOPNOTSUPP),
        ("malformed POSIX ACL", p.fs.setxattr(f, b"system.posix_acl_access", b"v", 0), libc::EINVAL),
        ("system.* other than ACLs", p.fs.setxattr(f, b"system.sockprotoname", b"v", 0), libc::EOPNOTSUPP),
        ("unknown flags", p.fs.setxattr(f, b"user.c", b"v", 4), libc::EINVAL),
        ("user.* on a symlink", p.fs.setxattr(s, b"user.a", b"v", 0), libc::EPERM),
        ("get user.* on a symlink", p.fs.getxattr(s, b"user.a").map(|_| ()), libc::ENODATA),
        ("get on a missing inode", p.fs.getxattr(Ino(999_999), b"user.a").map(|_| ()), libc::ENOENT),
    ];
    let mut wrong = Vec::new();
    for (what, got, want) in cases {
        match got {
            Err(e) if e.errno() == want => {}
            other => wrong.push(format!("{what}: got {other:?}, expected errno {want}")),
        }
    }
    assert!(wrong.is_empty(), "xattr errnos:\n  {}", wrong.join("\n  "));
    assert_eq!(p.fs.getxattr(f, b"user.a").unwrap(), b"1", "failed calls must not change the value");
}

#[test]
fn xattrs_list_replace_remove_and_survive_remount() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let d = p.mkdir(Ino::ROOT, "d");
    let s = p.fs.symlink(ROOT, Ino::ROOT, b"s", b"f").unwrap().ino;
    p.fs.setxattr(f, b"user.a", b"", 0).unwrap();
    p.fs.setxattr(f, b"user.b", &vec![7; 65536], XATTR_CREATE).unwrap();
    p.fs.setxattr(f, b"user.a", b"again", XATTR_REPLACE).unwrap();
    p.fs.setxattr(d, b"trusted.t", b"dir", 0).unwrap();
    p.fs.setxattr(s, b"trusted.t", b"link", 0).unwrap();
    let mut names: Vec<Vec<u8>> =
        p.fs.listxattr(f).unwrap().split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| n.to_vec()).collect();
    names.sort();
    assert_eq!(names, vec![b"user.a".to_vec(), b"user.b".to_vec()]);
    assert!(p.fs.listxattr(f).unwrap().ends_with(&[0]), "listxattr names end in NUL");
    let p = p.crash();
    assert_eq!(p.fs.getxattr(f, b"user.a").unwrap(), b"again");
    assert_eq!(p.fs.getxattr(f, b"user.b").unwrap(), vec![7; 65536]);
    assert_eq!(p.fs.getxattr(d, b"trusted.t").unwrap(), b"dir");
    assert_eq!(p.fs.getxattr(s, b"trusted.t").unwrap(), b"link");
    p.fs.removexattr(f, b"user.b").unwrap();
    let p = p.remount();
    assert_eq!(p.fs.listxattr(f).unwrap(), b"user.a\0");
    p.assert_consistent();
}

#[test]
fn xattr_space_per_inode_is_limited_with_enospc() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let v = vec![1u8; 65536];
    let mut failed = None;
    for i in 0..20 {
        if let Err(e) = p.fs.setxattr(f, format!("user.{i:02}").as_bytes(), &v, 0) {
            failed = Some((i, e));
            break;
        }
    }
    let (i, e) = failed.expect("1 MiB of xattrs per inode must be the limit");
    assert_eq!(e.errno(), libc::ENOSPC, "xattr {i}: {e}");
    assert_eq!(i, 15, "16 values of 64 KiB plus names exceed 1 MiB");
    p.assert_consistent();
    p.remount().assert_consistent();
}

// ---------------------------------------------------------------------------------
// Durability and recovery.

#[test]
fn fsynced_data_survives_reopen_without_unmount() {
    let p = Pool::new(32 * MIB);
    let d = p.mkdir(Ino::ROOT, "dir");
    let f = p.create(d, "file");
    let data = pattern(8, 300_000);
    p.write_all(f, 0, &data);
    p.write_all(f, 5 << 20, b"far");
    p.fs.link(f, Ino::ROOT, b"hard").unwrap();
    p.fs.symlink(ROOT, d, b"sym", b"file").unwrap();
    p.fs.setxattr(f, b"user.k", b"v", 0).unwrap();
    p.fs.sync().unwrap();
    assert!(p.fs.stats().log_bytes > 0, "the test must replay a non-empty log");
    let q = p.crash();
    let f2 = q.resolve("dir/file").unwrap();
    assert_eq!(f2, f);
    let got = q.read_all(f);
    assert_eq!(got.len(), (5 << 20) + 3);
    assert_eq!(&got[..data.len()], &data[..]);
    assert!(got[data.len()..5 << 20].iter().all(|&b| b == 0));
    assert_eq!(&got[5 << 20..], b"far");
    assert_eq!(q.fs.getattr(f).unwrap().nlink, 2);
    assert_eq!(q.resolve("hard").unwrap(), f);
    assert_eq!(q.fs.readlink(q.resolve("dir/sym").unwrap()).unwrap(), b"file");
    assert_eq!(q.fs.getxattr(f, b"user.k").unwrap(), b"v");
    q.assert_consistent();
    // The reopened pool takes new work and survives another crash.
    let g = q.create(Ino::ROOT, "g");
    q.write_all(g, 0, b"second life");
    q.fs.sync().unwrap();
    assert_eq!(q.crash().read_all(g), b"second life");
}

#[test]
fn orphan_unlinked_while_open_is_freed_at_next_mount() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, &pattern(1, 5 * PAGE as usize));
    p.fs.open_inode(f).unwrap();
    p.fs.unlink(Ino::ROOT, b"f").unwrap();
    p.fs.sync().unwrap();
    let q = p.crash();
    assert_eq!(errno(q.fs.getattr(f)), libc::ENOENT, "the orphan must be freed at mount");
    let st = q.fs.stats();
    assert_eq!((st.pages_used, st.inodes), (0, 1), "{st:?}");
    q.assert_consistent();
}

#[test]
fn log_replay_after_many_transactions_crosses_checkpoints() {
    // 16 MiB pool: a 4 MiB log. 60 KiB xattr values fill it every ~70 transactions.
    let p = Pool::new(16 * MIB);
    let gen0 = p.fs.stats().generation;
    let f = p.create(Ino::ROOT, "f");
    let mut last = Vec::new();
    for i in 0..200u32 {
        last = pattern(i as u8, 60 << 10);
        p.fs.setxattr(f, b"user.big", &last, 0).unwrap();
        if i % 10 == 0 {
            let g = p.create(Ino::ROOT, &format!("g{i}"));
            p.write_all(g, 0, &pattern(i as u8, i as usize * 100 + 1));
        }
        if i % 25 == 0 {
            p.fs.unlink(Ino::ROOT, format!("g{}", i.saturating_sub(20) / 10 * 10).as_bytes()).ok();
        }
    }
    let gens = p.fs.stats().generation - gen0;
    assert!(gens >= 2, "expected internal checkpoints, generation moved by {gens}");
    p.fs.sync().unwrap();
    assert!(p.fs.stats().log_bytes > 0, "the last part must come from the log");
    let expected_names = p.names(Ino::ROOT);
    p.assert_consistent();
    let q = p.crash();
    assert_eq!(q.names(Ino::ROOT), expected_names);
    assert_eq!(q.fs.getxattr(f, b"user.big").unwrap(), last);
    for n in expected_names.iter().filter(|n| n.starts_with('g')) {
        let i: usize = n[1..].parse().unwrap();
        let g = q.resolve(n).unwrap();
        assert_eq!(q.read_all(g), pattern(i as u8, i * 100 + 1), "{n}");
    }
    q.assert_consistent();
}

#[test]
fn torn_last_transaction_is_dropped_on_replay() {
    let p = Pool::new(32 * MIB);
    p.create(Ino::ROOT, "before");
    p.fs.sync().unwrap();
    let used = p.fs.stats().log_bytes;
    p.create(Ino::ROOT, "after");
    let mut bytes = p.media.snapshot();
    let geo = Geometry::read(&*p.media).unwrap();
    // Damage the payload of the last transaction (header is 28 bytes).
    let at = (geo.log_start.0 * PAGE + used + 40) as usize;
    bytes[at] ^= 0xff;
    let q = Pool::from_bytes(bytes, Options::default()).expect("a torn tail must not stop the mount");
    assert_eq!(q.names(Ino::ROOT), vec!["before"], "replay must stop at the damaged transaction");
    q.assert_consistent();
}

#[test]
fn corrupt_superblock_is_refused_with_reason() {
    let p = Pool::new(16 * MIB);
    p.fs.unmount().unwrap();
    let good = p.media.snapshot();
    let open = |bytes: Vec<u8>| Fs::open(Arc::new(MemMedia::from_bytes(bytes)), Options::default()).err();

    let mut flipped = good.clone();
    flipped[20] ^= 0x01;
    let e = open(flipped).expect("a damaged superblock must be refused");
    assert_eq!(e.errno(), libc::EIO);
    assert!(e.to_string().contains("checksum"), "reason should name the checksum: {e}");

    let mut nomagic = good.clone();
    nomagic[..8].fill(0);
    let e = open(nomagic).expect("no magic must be refused");
    assert!(e.to_string().contains("not a daxlink pool"), "{e}");

    let e = open(good[..(8 * MIB) as usize].to_vec()).expect("a truncated pool must be refused");
    assert!(e.to_string().contains("truncated"), "{e}");

    let e = open(vec![0; 100]).expect("a tiny pool must be refused");
    assert!(e.to_string().contains("truncated"), "{e}");

    assert!(open(good).is_none(), "the undamaged copy must still open");
}

#[test]
fn both_checkpoints_damaged_is_refused_with_reason() {
    let p = Pool::new(16 * MIB);
    p.fs.unmount().unwrap();
    let mut bytes = p.media.snapshot();
    let geo = Geometry::read(&*p.media).unwrap();
    for cp in geo.cp_start {
        bytes[(cp.0 * PAGE) as usize + 30] ^= 0xff;
    }
    let e = Fs::open(Arc::new(MemMedia::from_bytes(bytes)), Options::default()).err().expect("must be refused");
    assert!(e.to_string().contains("checkpoint"), "reason should name the checkpoints: {e}");
}

#[test]
fn mkfs_refuses_pool_below_minimum() {
    let media = MemMedia::new(8 * MIB);
    let e = Fs::mkfs(&media, ROOT, [0; 16]).expect_err("8 MiB is below the minimum");
    assert!(e.to_string().contains("minimum"), "{e}");
    assert!(Fs::open(Arc::new(media), Options::default()).is_err(), "nothing must have been formatted");
}

#[test]
fn read_only_mount_refuses_changes_with_erofs_and_writes_nothing() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 0, b"data");
    p.fs.sync().unwrap();
    // Not unmounted: the read-only mount must replay the log in memory only.
    let bytes = p.media.snapshot();
    let ro = Pool::from_bytes(bytes.clone(), Options { read_only: true, ..Default::default() }).unwrap();
    assert_eq!(ro.read_all(f), b"data");
    let r = Ino::ROOT;
    assert_eq!(errno(ro.fs.mknod(ROOT, r, b"g", libc::S_IFREG | 0o644, 0)), libc::EROFS);
    assert_eq!(errno(ro.fs.mkdir(ROOT, r, b"d", 0o755)), libc::EROFS);
    assert_eq!(errno(ro.fs.write(f, 0, b"x", false)), libc::EROFS);
    assert_eq!(errno(ro.fs.setattr(f, SetAttr { size: Some(0), ..Default::default() })), libc::EROFS);
    assert_eq!(errno(ro.fs.fallocate(f, 0, 0, 10)), libc::EROFS);
    assert_eq!(errno(ro.fs.unlink(r, b"f")), libc::EROFS);
    assert_eq!(errno(ro.fs.rename(ROOT, r, b"f", r, b"g", 0)), libc::EROFS);
    assert_eq!(errno(ro.fs.link(f, r, b"g")), libc::EROFS);
    assert_eq!(errno(ro.fs.setxattr(f, b"user.a", b"v", 0)), libc::EROFS);
    ro.fs.sync().unwrap();
    ro.fs.unmount().unwrap();
    assert!(ro.media.snapshot() == bytes, "a read-only mount wrote to the pool");
}

#[test]
fn clean_unmount_and_remount_keep_everything() {
    let p = Pool::new(32 * MIB);
    let d = p.mkdir(Ino::ROOT, "d");
    for i in 0..30 {
        let f = p.create(d, &format!("f{i}"));
        p.write_all(f, (i * 1000) as u64, &pattern(i as u8, i * 777 + 1));
    }
    let before: Vec<(String, Vec<u8>)> =
        p.names(d).into_iter().map(|n| (n.clone(), p.read_all(p.fs.lookup(d, n.as_bytes()).unwrap().ino))).collect();
    let used = used_pages(&p);
    let p = p.remount();
    assert_eq!(p.fs.stats().pages_used, used);
    let after: Vec<(String, Vec<u8>)> =
        p.names(d).into_iter().map(|n| (n.clone(), p.read_all(p.fs.lookup(d, n.as_bytes()).unwrap().ino))).collect();
    assert!(before == after, "contents differ after remount");
    p.assert_consistent();
}

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

// ---------------------------------------------------------------------------------
// Linux parity of the core where several errors apply at once.

/// When a request breaks several rules, Linux reports a fixed one (fs/namei.c
/// `do_renameat2`, `do_linkat`; fs/open.c `vfs_fallocate`; fs/xattr.c
/// `xattr_permission`). Through FUSE the kernel checks these before daxlink sees the
/// request; a program embedding the core gets daxlink's own order.
#[test]
fn errno_precedence_follows_linux_when_several_errors_apply() {
    let p = Pool::new(32 * MIB);
    let r = Ino::ROOT;
    let a = p.mkdir(r, "a");
    p.create(a, "f");
    p.mkdir(a, "sub");
    let d = p.mkdir(r, "d");
    p.create(r, "x");
    let s = p.fs.symlink(ROOT, r, b"s", b"x").unwrap().ino;
    let file = p.create(r, "file");
    let cases: Vec<(&str, i32, i32)> = vec![
        (
            "rename(a/f -> a): the target is an ancestor of the source (do_renameat2: ENOTEMPTY before vfs_rename's EISDIR)",
            errno(p.fs.rename(ROOT, a, b"f", r, b"a", 0)),
            libc::ENOTEMPTY,
        ),
        (
            "rename(a -> a/sub, NOREPLACE): an existing target is EEXIST before the subtree check",
            errno(p.fs.rename(ROOT, r, b"a", a, b"sub", RENAME_NOREPLACE)),
            libc::EEXIST,
        ),
        (
            "link(dir d -> x): linkat looks the new name up first (EEXIST) before vfs_link's EPERM",
            errno(p.fs.link(d, r, b"x")),
            libc::EEXIST,
        ),
        (
            "fallocate(PUNCH_HOLE without KEEP_SIZE, past 8 TiB): mode check (EOPNOTSUPP) before EFBIG",
            errno(p.fs.fallocate(file, FALLOC_FL_PUNCH_HOLE, TIB8 - 10, 100)),
            libc::EOPNOTSUPP,
        ),
        (
            "fallocate(PUNCH_HOLE without KEEP_SIZE, len 0): vfs_fallocate checks the range (EINVAL) before the mode",
            errno(p.fs.fallocate(file, FALLOC_FL_PUNCH_HOLE, 0, 0)),
            libc::EINVAL,
        ),
        (
            "removexattr(symlink, user.x): xattr_permission refuses writes of user.* on symlinks with EPERM",
            errno(p.fs.removexattr(s, b"user.x")),
            libc::EPERM,
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|c| c.1 != c.2)
        .map(|(what, got, want)| format!("{what}: got {got}, Linux gives {want}"))
        .collect();
    assert!(wrong.is_empty(), "{} of {} cases differ from Linux:\n  {}", wrong.len(), cases.len(), wrong.join("\n  "));
}

#[test]
fn noop_errors_leave_the_fs_consistent() {
    // Every refused request above must leave nothing half-done; spot-check with check().
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let _ = p.fs.write(f, TIB8, b"x", false);
    let _ = p.fs.rename(ROOT, Ino::ROOT, b"f", Ino::ROOT, b"f/x", 0);
    let _ = p.fs.setxattr(f, b"bad", b"v", 0);
    let _ = p.fs.rmdir(Ino::ROOT, b"f");
    assert!(matches!(p.fs.unlink(Ino::ROOT, b"nope"), Err(Error::NotFound)));
    p.assert_consistent();
    assert_eq!(p.fs.stats().inodes, 2);
}

/// Fills the metadata space (the checkpoint slot) with xattrs on new files until not
/// even a one-byte value fits; returns the files made, as (number in the name, inode).
fn fill_metadata(p: &Pool) -> Vec<(usize, Ino)> {
    let mut files = Vec::new();
    // Big values first, then ever smaller ones, until not even one byte fits.
    let mut size = 65536usize;
    let mut i = 0;
    while size > 0 {
        let f = match p.fs.mknod(ROOT, Ino::ROOT, format!("f{i}").as_bytes(), libc::S_IFREG | 0o644, 0) {
            Ok(a) => a.ino,
            Err(e) => {
                assert_eq!(e.errno(), libc::ENOSPC, "create on a full pool: {e}");
                size /= 2;
                continue;
            }
        };
        files.push((i, f));
        i += 1;
        // A few values per file: the per-inode limit (1 MiB) is not what should stop us.
        for k in 0..8 {
            match p.fs.setxattr(f, format!("user.{k}").as_bytes(), &vec![1; size], XATTR_CREATE) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e.errno(), libc::ENOSPC, "setxattr on a full pool: {e}");
                    size /= 2;
                    break;
                }
            }
        }
    }
    files
}

/// Metadata space (the checkpoint slot) can fill up; a full filesystem must still let
/// the user delete things to get out of it, as Linux filesystems reserve room for
/// unlink.
#[test]
fn full_metadata_space_still_allows_deleting() {
    let p = Pool::new(16 * MIB); // 4 MiB checkpoint slots
    p.mkdir(Ino::ROOT, "empty");
    let files = fill_metadata(&p);
    p.assert_consistent();
    p.fs.unmount().unwrap();
    let full = p.media.snapshot();
    // Every way of giving metadata space back must work on the full pool; each is
    // tried on its own copy of it.
    let (n, f) = *files.last().expect("some files were made");
    let (_, g) = files[0];
    type Attempt = Box<dyn Fn(&Pool) -> daxlink::Result<()>>;
    let attempts: Vec<(&str, Attempt)> = vec![
        ("unlink", Box::new(move |q: &Pool| q.fs.unlink(Ino::ROOT, format!("f{n}").as_bytes()))),
        ("removexattr", Box::new(move |q: &Pool| q.fs.removexattr(g, b"user.0"))),
        ("rmdir", Box::new(|q: &Pool| q.fs.rmdir(Ino::ROOT, b"empty"))),
    ];
    let mut failed = Vec::new();
    for (what, attempt) in &attempts {
        let q = Pool::from_bytes(full.clone(), Options::default()).expect("the full pool mounts");
        match attempt(&q) {
            Ok(()) => {
                q.assert_consistent();
                // And the room it gave back is usable.
                if let Err(e) = q.fs.mknod(ROOT, Ino::ROOT, b"after", libc::S_IFREG | 0o644, 0) {
                    failed.push(format!("create after {what}: {e:?}"));
                }
                q.remount().assert_consistent();
            }
            Err(e) => failed.push(format!("{what}: {e:?}")),
        }
    }
    assert!(failed.is_empty(), "on a full metadata space:\n  {}", failed.join("\n  "));
    let _ = f;
}

/// A crash can leave an orphan (unlinked while open) on a pool whose metadata space is
/// full; the next mount frees it and must not fail for lack of room to say so.
#[test]
fn full_metadata_pool_with_an_orphan_still_mounts() {
    let p = Pool::new(16 * MIB);
    let o = p.create(Ino::ROOT, "orphan");
    p.write_all(o, 0, b"data");
    p.fs.open_inode(o).unwrap();
    p.fs.unlink(Ino::ROOT, b"orphan").unwrap();
    fill_metadata(&p);
    p.fs.sync().unwrap();
    let q = Pool::from_bytes(p.media.snapshot(), Options::default());
    let q = match q {
        Ok(q) => q,
        Err(e) => panic!("a full pool with an orphan does not mount: {e}"),
    };
    assert_eq!(errno(q.fs.getattr(o)), libc::ENOENT, "the orphan must be freed");
    q.assert_consistent();
}

// ---------------------------------------------------------------------------------
// Crash at any instant: the daemon killed between any two stores. Every store
// made before the kill is on the media (a killed process's stores to a shared mapping
// persist), none after it.

/// Media that records every store, in order, with the op it belongs to. A flush is
/// recorded as an empty store, and in `flushes` as (its index, range).
struct Recorder {
    inner: MemMedia,
    op: std::sync::atomic::AtomicUsize,
    stores: std::sync::Mutex<Vec<(usize, u64, Vec<u8>)>>,
    flushes: std::sync::Mutex<Vec<(usize, u64, u64)>>,
}

impl daxlink::arena::Media for Recorder {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read(&self, off: u64, buf: &mut [u8]) -> daxlink::arena::MediaResult {
        self.inner.read(off, buf)
    }
    fn write(&self, off: u64, data: &[u8]) -> daxlink::arena::MediaResult {
        let op = self.op.load(std::sync::atomic::Ordering::Relaxed);
        self.stores.lock().unwrap().push((op, off, data.to_vec()));
        self.inner.write(off, data)
    }
    fn fill(&self, off: u64, len: u64, byte: u8) -> daxlink::arena::MediaResult {
        let op = self.op.load(std::sync::atomic::Ordering::Relaxed);
        self.stores.lock().unwrap().push((op, off, vec![byte; len as usize]));
        self.inner.fill(off, len, byte)
    }
    fn flush(&self, off: u64, len: u64) -> std::io::Result<()> {
        let op = self.op.load(std::sync::atomic::Ordering::Relaxed);
        self.stores.lock().unwrap().push((op, off, Vec::new()));
        self.flushes.lock().unwrap().push((self.stores.lock().unwrap().len() - 1, off, len));
        self.inner.flush(off, len)
    }
}

/// A crash image: shared base bytes plus the pages the next mount writes.
struct Overlay {
    base: Arc<Vec<u8>>,
    pages: std::sync::Mutex<std::collections::HashMap<u64, Vec<u8>>>,
}

impl Overlay {
    fn each_page(off: u64, len: u64, mut f: impl FnMut(u64, usize, usize, usize)) {
        let mut at = off;
        while at < off + len {
            let page = at / PAGE;
            let in_page = (at % PAGE) as usize;
            let n = ((PAGE - at % PAGE).min(off + len - at)) as usize;
            f(page, in_page, (at - off) as usize, n);
            at += n as u64;
        }
    }
    fn page_mut<'a>(&self, pages: &'a mut std::collections::HashMap<u64, Vec<u8>>, page: u64) -> &'a mut Vec<u8> {
        pages.entry(page).or_insert_with(|| self.base[(page * PAGE) as usize..((page + 1) * PAGE) as usize].to_vec())
    }
}

impl daxlink::arena::Media for Overlay {
    fn len(&self) -> u64 {
        self.base.len() as u64
    }
    fn read(&self, off: u64, buf: &mut [u8]) -> daxlink::arena::MediaResult {
        let pages = self.pages.lock().unwrap();
        Overlay::each_page(off, buf.len() as u64, |page, ip, bp, n| {
            let src = match pages.get(&page) {
                Some(p) => &p[ip..ip + n],
                None => &self.base[(page * PAGE) as usize + ip..(page * PAGE) as usize + ip + n],
            };
            buf[bp..bp + n].copy_from_slice(src);
        });
        Ok(())
    }
    fn write(&self, off: u64, data: &[u8]) -> daxlink::arena::MediaResult {
        let mut pages = self.pages.lock().unwrap();
        Overlay::each_page(off, data.len() as u64, |page, ip, bp, n| {
            self.page_mut(&mut pages, page)[ip..ip + n].copy_from_slice(&data[bp..bp + n]);
        });
        Ok(())
    }
    fn fill(&self, off: u64, len: u64, byte: u8) -> daxlink::arena::MediaResult {
        let mut pages = self.pages.lock().unwrap();
        Overlay::each_page(off, len, |page, ip, _, n| self.page_mut(&mut pages, page)[ip..ip + n].fill(byte));
        Ok(())
    }
    fn flush(&self, _: u64, _: u64) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a path shows: identity, kind, link count, size, bytes (file data or symlink
/// target), xattrs.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    ino: Ino,
    kind: Kind,
    nlink: u32,
    size: u64,
    bytes: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

type Tree = std::collections::BTreeMap<String, Seen>;

fn walk(fs: &Fs) -> Tree {
    let mut out = Tree::new();
    let mut todo = vec![(String::new(), Ino::ROOT)];
    while let Some((path, dir)) = todo.pop() {
        let mut cookie = 0;
        loop {
            let batch = fs.readdir(dir, cookie, 64).unwrap();
            let Some(last) = batch.last() else { break };
            cookie = last.offset;
            for e in batch.iter().filter(|e| e.name != b"." && e.name != b"..") {
                let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                let a = fs.getattr(e.ino).unwrap();
                let bytes = match a.kind() {
                    Kind::File => fs.read(e.ino, 0, a.size).unwrap(),
                    Kind::Symlink => fs.readlink(e.ino).unwrap(),
                    _ => Vec::new(),
                };
                let mut xattrs = Vec::new();
                for n in fs.listxattr(e.ino).unwrap().split(|b| *b == 0).filter(|n| !n.is_empty()) {
                    xattrs.push((n.to_vec(), fs.getxattr(e.ino, n).unwrap()));
                }
                if a.kind() == Kind::Dir {
                    todo.push((p.clone(), e.ino));
                }
                out.insert(p, Seen { ino: e.ino, kind: a.kind(), nlink: a.nlink, size: a.size, bytes, xattrs });
            }
        }
    }
    out
}

/// Everything but file data: for symlinks the target stays.
fn meta(t: &Tree) -> Vec<(String, Seen)> {
    t.iter()
        .map(|(p, s)| {
            let bytes = if s.kind == Kind::Symlink { s.bytes.clone() } else { Vec::new() };
            (
                p.clone(),
                Seen { ino: s.ino, kind: s.kind, nlink: s.nlink, size: s.size, bytes, xattrs: s.xattrs.clone() },
            )
        })
        .collect()
}

/// How much of an unsynced op's data a crash may leave.
#[derive(Clone, Copy, PartialEq)]
enum Stores {
    /// Killed daemon: every store up to the crash, in order. A byte may come from the
    /// states whose namespace the mount shows, or from the op in flight after them.
    InOrder,
    /// Power loss: any unflushed store may be missing. Only bytes that no op since the
    /// last durable state changed must be there (the fsync'd bytes).
    AnySubset,
}

/// The recovered tree must be one of `states` (the namespace exactly), and its
/// file bytes must fit `stores`.
fn recovered_prefix(got: &Tree, states: &[Tree], stores: Stores) -> Result<usize, String> {
    let gm = meta(got);
    let m: Vec<usize> = (0..states.len()).filter(|&j| meta(&states[j]) == gm).collect();
    let (Some(&lo), Some(&hi)) = (m.first(), m.last()) else {
        let newest = states.last().map(meta).unwrap_or_default();
        let extra: Vec<_> = gm.iter().filter(|x| !newest.contains(x)).collect();
        let missing: Vec<_> = newest.iter().filter(|x| !gm.contains(x)).collect();
        return Err(format!(
            "namespace matches no state since the last sync: vs the newest, has {extra:?}, lacks {missing:?}"
        ));
    };
    let window = match stores {
        Stores::InOrder => lo..=(hi + 1).min(states.len() - 1),
        Stores::AnySubset => 0..=states.len() - 1,
    };
    for (path, s) in got.iter().filter(|(_, s)| s.kind == Kind::File) {
        let versions: Vec<Option<&Vec<u8>>> =
            window.clone().map(|j| states[j].get(path).filter(|c| c.ino == s.ino).map(|c| &c.bytes)).collect();
        for (i, b) in s.bytes.iter().enumerate() {
            let at = |v: &Option<&Vec<u8>>| v.and_then(|bytes| bytes.get(i).copied());
            let ok = match stores {
                Stores::InOrder => versions.iter().any(|v| at(v) == Some(*b)),
                Stores::AnySubset => {
                    let first = at(&versions[0]);
                    first.is_none() || versions.iter().any(|v| at(v) != first) || first == Some(*b)
                }
            };
            if !ok {
                return Err(format!("{path}: byte {i} = {b:#x}, which no state since the last durable one has"));
            }
        }
    }
    Ok(lo)
}

type Op = Box<dyn Fn(&Fs)>;

/// A recorded run: the pool before it, every store and flush, and the tree after each op.
struct History {
    base: Vec<u8>,
    /// (op, offset, bytes); an empty store is a flush of (offset, `flushes`' len).
    stores: Vec<(usize, u64, Vec<u8>)>,
    flushes: Vec<(usize, u64, u64)>,
    /// `states[i]`: the tree after op `i` (0: after mount).
    states: Vec<Tree>,
    /// `synced[i]`: the newest state a sync had made durable when op `i` was done.
    synced: Vec<usize>,
    names: Vec<&'static str>,
    /// Ops of the xattr fill (they start after `fill_from`) and ops that checkpointed.
    fill_from: usize,
    checkpoint_ops: Vec<usize>,
}

impl History {
    fn name(&self, op: usize) -> &'static str {
        if op == 0 { "mount" } else { self.names[op - 1] }
    }

    /// Whether crash points in `op` are worth testing: everything but the bulk of the
    /// xattr fill, of which only the ops around a checkpoint count.
    fn interesting(&self, op: usize) -> bool {
        op <= self.fill_from || self.checkpoint_ops.iter().any(|c| op + 1 >= *c && op <= *c)
    }

    /// Mounts `image` as a crash left it; checks it and that it shows a state between
    /// the last durable one and the op in flight.
    fn verify(&self, image: Arc<Vec<u8>>, op: usize, stores: Stores, what: &str) {
        self.verify_media(Arc::new(Overlay { base: image, pages: Default::default() }), op, stores, what)
    }

    fn verify_media(&self, media: Arc<Overlay>, op: usize, stores: Stores, what: &str) {
        let (lo, hi) = (self.synced[op.saturating_sub(1)], op);
        let crashed = match Fs::open(media, Options::default()) {
            Ok(fs) => fs,
            Err(e) => panic!("{what} (op {op} {:?}): mount failed: {e}", self.name(op)),
        };
        if let Err(e) = crashed.check() {
            panic!("{what} (op {op} {:?}): check: {e}", self.name(op));
        }
        let got = walk(&crashed);
        if let Err(e) = recovered_prefix(&got, &self.states[lo..=hi], stores) {
            panic!("{what} (op {op} {:?}; last durable state {lo}): {e}", self.name(op));
        }
    }
}

/// Runs a fixed workload of single-call ops on a recording pool: files, links, renames,
/// truncate, fallocate, clone, an orphan, syncs, and enough big xattrs to checkpoint.
fn record_history() -> History {
    let mkfs = MemMedia::new(16 * MIB);
    Fs::mkfs(&mkfs, ROOT, [3; 16]).unwrap();
    let base = mkfs.snapshot();
    let rec = Arc::new(Recorder {
        inner: MemMedia::from_bytes(base.clone()),
        op: 0.into(),
        stores: Default::default(),
        flushes: Default::default(),
    });
    let fs = Fs::open(rec.clone(), Options::default()).unwrap();
    let r = Ino::ROOT;
    let file = move |fs: &Fs, path: &str| {
        let mut at = r;
        for part in path.split('/') {
            at = fs.lookup(at, part.as_bytes()).unwrap().ino;
        }
        at
    };
    let ops: Vec<(&str, Op)> = vec![
        (
            "mkdir d",
            Box::new(move |fs| {
                fs.mkdir(ROOT, r, b"d", 0o755).unwrap();
            }),
        ),
        (
            "create d/a",
            Box::new(move |fs| {
                fs.mknod(ROOT, file(fs, "d"), b"a", libc::S_IFREG | 0o644, 0).unwrap();
            }),
        ),
        (
            "write d/a",
            Box::new(move |fs| {
                fs.write(file(fs, "d/a"), 0, &pattern(1, 10000), false).unwrap();
            }),
        ),
        ("sync", Box::new(|fs| fs.sync().unwrap())),
        (
            "overwrite d/a in place",
            Box::new(move |fs| {
                fs.write(file(fs, "d/a"), 5000, &pattern(2, 3000), false).unwrap();
            }),
        ),
        (
            "truncate d/a",
            Box::new(move |fs| {
                fs.setattr(file(fs, "d/a"), SetAttr { size: Some(2000), ..Default::default() }).unwrap();
            }),
        ),
        (
            "write d/a past EOF",
            Box::new(move |fs| {
                fs.write(file(fs, "d/a"), 20000, b"tail", false).unwrap();
            }),
        ),
        (
            "create b",
            Box::new(move |fs| {
                fs.mknod(ROOT, r, b"b", libc::S_IFREG | 0o644, 0).unwrap();
            }),
        ),
        (
            "write b",
            Box::new(move |fs| {
                fs.write(file(fs, "b"), 0, &pattern(3, 50_000), false).unwrap();
            }),
        ),
        (
            "link b c",
            Box::new(move |fs| {
                fs.link(file(fs, "b"), r, b"c").unwrap();
            }),
        ),
        ("setxattr d/a", Box::new(move |fs| fs.setxattr(file(fs, "d/a"), b"user.x", b"value", 0).unwrap())),
        ("sync", Box::new(|fs| fs.sync().unwrap())),
        ("rename b -> d/bb", Box::new(move |fs| fs.rename(ROOT, r, b"b", file(fs, "d"), b"bb", 0).unwrap())),
        ("unlink c", Box::new(move |fs| fs.unlink(r, b"c").unwrap())),
        ("fallocate d/a", Box::new(move |fs| fs.fallocate(file(fs, "d/a"), FALLOC_FL_KEEP_SIZE, 0, 65536).unwrap())),
        (
            "punch d/a",
            Box::new(move |fs| {
                fs.fallocate(file(fs, "d/a"), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 9000).unwrap()
            }),
        ),
        (
            "mkdir e",
            Box::new(move |fs| {
                fs.mkdir(ROOT, r, b"e", 0o755).unwrap();
            }),
        ),
        ("rename d -> e/d", Box::new(move |fs| fs.rename(ROOT, r, b"d", file(fs, "e"), b"d", 0).unwrap())),
        (
            "symlink s",
            Box::new(move |fs| {
                fs.symlink(ROOT, r, b"s", b"e/d/a").unwrap();
            }),
        ),
        ("exchange s and e", Box::new(move |fs| fs.rename(ROOT, r, b"s", r, b"e", RENAME_EXCHANGE).unwrap())),
        (
            "create k",
            Box::new(move |fs| {
                fs.mknod(ROOT, r, b"k", libc::S_IFREG | 0o644, 0).unwrap();
            }),
        ),
        (
            "clone s/d/bb -> k",
            Box::new(move |fs| {
                fs.clone_range(file(fs, "s/d/bb"), 0, file(fs, "k"), 0, 0).unwrap();
            }),
        ),
        (
            "write into the clone",
            Box::new(move |fs| {
                fs.write(file(fs, "k"), 100, b"cow", false).unwrap();
            }),
        ),
        (
            "unlink k while open",
            Box::new(move |fs| {
                fs.open_inode(file(fs, "k")).unwrap();
                fs.unlink(r, b"k").unwrap();
            }),
        ),
        ("sync", Box::new(|fs| fs.sync().unwrap())),
        (
            "rmdir-able dir",
            Box::new(move |fs| {
                fs.mkdir(ROOT, r, b"gone", 0o755).unwrap();
            }),
        ),
        ("rmdir", Box::new(move |fs| fs.rmdir(r, b"gone").unwrap())),
        (
            "zero a range of s/d/a",
            Box::new(move |fs| fs.fallocate(file(fs, "s/d/a"), FALLOC_FL_ZERO_RANGE, 3000, 9000).unwrap()),
        ),
        (
            "create z",
            Box::new(move |fs| {
                fs.mknod(ROOT, r, b"z", libc::S_IFREG | 0o644, 0).unwrap();
            }),
        ),
        (
            "write z",
            Box::new(move |fs| assert_eq!(fs.write(file(fs, "z"), 0, &pattern(10, 9000), false).unwrap(), 9000)),
        ),
        (
            "write z past a hole",
            Box::new(move |fs| assert_eq!(fs.write(file(fs, "z"), 30000, &pattern(11, 5000), false).unwrap(), 5000)),
        ),
        ("sync", Box::new(|fs| fs.sync().unwrap())),
        (
            "truncate z",
            Box::new(move |fs| {
                fs.setattr(file(fs, "z"), SetAttr { size: Some(7000), ..Default::default() }).map(drop).unwrap()
            }),
        ),
    ];
    // The big xattrs make the 4 MiB log fill up: checkpoints happen inside these ops.
    let fill: Vec<(&str, Op)> = (0..80u8)
        .map(|i| {
            let op: Op =
                Box::new(move |fs| fs.setxattr(file(fs, "s/d/a"), b"user.big", &pattern(i, 60 << 10), 0).unwrap());
            ("setxattr 60 KiB", op)
        })
        .collect();
    let mut states = vec![walk(&fs)];
    let mut synced = vec![0usize]; // per state: the newest state made durable by then
    let mut checkpoint_ops = Vec::new();
    for (i, (what, op)) in ops.iter().chain(fill.iter()).enumerate() {
        rec.op.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        let generation = fs.stats().generation;
        op(&fs);
        if fs.stats().generation != generation {
            checkpoint_ops.push(i + 1);
        }
        let durable = if *what == "sync" { i + 1 } else { *synced.last().unwrap() };
        synced.push(durable);
        states.push(walk(&fs));
    }
    let (stores, flushes) =
        (std::mem::take(&mut *rec.stores.lock().unwrap()), std::mem::take(&mut *rec.flushes.lock().unwrap()));
    assert!(!checkpoint_ops.is_empty(), "the fill must force a checkpoint");
    History {
        base,
        stores,
        flushes,
        states,
        synced,
        names: ops.iter().chain(fill.iter()).map(|o| o.0).collect(),
        fill_from: ops.len(),
        checkpoint_ops,
    }
}

/// The daemon killed after any store: all stores before it are on the media.
#[test]
fn crash_after_any_store_recovers_a_prefix_of_the_history() {
    let h = record_history();
    let mut image = Arc::new(h.base.clone());
    let mut tested = 0;
    for (k, (op, off, data)) in h.stores.iter().enumerate() {
        Arc::get_mut(&mut image).expect("no mount holds the image")[*off as usize..*off as usize + data.len()]
            .copy_from_slice(data);
        if !h.interesting(*op) && k + 1 != h.stores.len() {
            continue;
        }
        h.verify(image.clone(), *op, Stores::InOrder, &format!("crash after store {k}"));
        tested += 1;
    }
    eprintln!("{tested} crash points of {} stores; checkpoints in ops {:?}", h.stores.len(), h.checkpoint_ops);
    assert!(tested > 100, "only {tested} crash points");
}

/// Power lost after any store: the stores a flush covered are on the media, of the
/// others any subset. Tried: none of them, every other one, all but the
/// newest.
#[test]
fn power_loss_after_any_store_recovers_a_prefix_of_the_history() {
    let h = record_history();
    let pool_len = h.base.len() as u64;
    // Everything up to the newest flush of the whole pool is durable for sure.
    let mut durable_img = Arc::new(h.base.clone());
    let mut durable_upto = 0; // stores before this index are in `durable_img`
    let mut tested = 0;
    for k in 0..h.stores.len() {
        let (op, off, data) = &h.stores[k];
        if data.is_empty() && *off == 0 && h.flushes.iter().any(|f| f.0 == k && f.2 == pool_len) {
            let img = Arc::get_mut(&mut durable_img).expect("no mount holds the image");
            for (_, o, d) in &h.stores[durable_upto..=k] {
                img[*o as usize..*o as usize + d.len()].copy_from_slice(d);
            }
            durable_upto = k + 1;
        }
        // Every third store, and every store of an op that checkpoints.
        if !h.interesting(*op) || (k % 3 != 0 && !h.checkpoint_ops.contains(op)) {
            continue;
        }
        // Store j is durable if a flush after it (up to k) covers it.
        let durable = |j: usize| {
            let (_, off, data) = &h.stores[j];
            h.flushes
                .iter()
                .any(|&(f, foff, flen)| f > j && f <= k && foff <= *off && off + data.len() as u64 <= foff + flen)
        };
        let pending: Vec<usize> = (durable_upto..=k).filter(|&j| !h.stores[j].2.is_empty() && !durable(j)).collect();
        if pending.is_empty() {
            continue;
        }
        /// Which of `n` unflushed stores survive: `keep(i, n)`.
        type Keep = fn(usize, usize) -> bool;
        let variants: [(&str, Keep); 3] = [
            ("none of the unflushed stores", |_, _| false),
            ("every other unflushed store", |i, _| i % 2 == 0),
            ("all unflushed stores but the newest", |i, n| i + 1 < n),
        ];
        let (what, keep) = variants[tested % 3];
        let image = Overlay { base: durable_img.clone(), pages: Default::default() };
        for j in durable_upto..=k {
            let (_, o, d) = &h.stores[j];
            let keep_it = match pending.iter().position(|&p| p == j) {
                Some(i) => keep(i, pending.len()),
                None => true,
            };
            if keep_it && !d.is_empty() {
                daxlink::arena::Media::write(&image, *o, d).unwrap();
            }
        }
        let what = format!("power loss after store {k}, keeping {what} ({} pending)", pending.len());
        h.verify_media(Arc::new(image), *op, Stores::AnySubset, &what);
        tested += 1;
    }
    eprintln!("{tested} power-loss points");
    assert!(tested > 25, "only {tested} power-loss points");
}

#[test]
fn kill_privs_drops_setuid_and_executable_setgid_durably() {
    let p = Pool::new(32 * MIB);
    let mode = |p: &Pool, f| p.fs.getattr(f).unwrap().mode & 0o7777;
    let f = p.create(Ino::ROOT, "f");
    let member = |_| true;
    for (before, after) in [(0o6777, 0o0777), (0o2777, 0o0777), (0o2767, 0o2767), (0o4755, 0o0755), (0o0644, 0o0644)] {
        p.fs.setattr(f, SetAttr { mode: Some(before), ..Default::default() }).unwrap();
        let changed = p.fs.kill_privs(f, Changer::Unprivileged(&member)).unwrap();
        assert_eq!(mode(&p, f), after, "mode {before:o}");
        assert_eq!(changed, before != after, "mode {before:o}: reported change");
    }
    p.fs.setattr(f, SetAttr { mode: Some(0o6755), ..Default::default() }).unwrap();
    assert!(p.fs.kill_privs(f, Changer::Unprivileged(&member)).unwrap());
    p.fs.sync().unwrap();
    let p = p.crash();
    assert_eq!(mode(&p, f), 0o0755, "the dropped bits are logged");
    assert_eq!(errno(p.fs.kill_privs(Ino(999_999), Changer::Chown)), libc::ENOENT);
    p.assert_consistent();
}

/// `setattr_should_drop_suidgid`: set-group-ID without group execute goes when the
/// changer is not in the file's group; a privileged changer keeps every bit; a chown
/// keeps a set-group-ID without group execute.
#[test]
fn set_group_id_goes_for_a_changer_outside_the_files_group() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.fs.setattr(f, SetAttr { gid: Some(100), ..Default::default() }).unwrap();
    let asked = std::cell::Cell::new(None);
    let outsider = |g| {
        asked.set(Some(g));
        false
    };
    for (who, before, after) in [
        (Changer::Unprivileged(&outsider), 0o6666, 0o0666),
        (Changer::Unprivileged(&outsider), 0o2640, 0o0640),
        (Changer::Unprivileged(&|g| g == 100), 0o2666, 0o2666),
        (Changer::Privileged, 0o6777, 0o6777),
        (Changer::Chown, 0o6666, 0o2666),
        (Changer::Chown, 0o6776, 0o0776),
    ] {
        p.fs.setattr(f, SetAttr { mode: Some(before), ..Default::default() }).unwrap();
        p.fs.kill_privs(f, who).unwrap();
        assert_eq!(p.fs.getattr(f).unwrap().mode & 0o7777, after, "mode {before:o}");
    }
    assert_eq!(asked.get(), Some(100), "membership is asked about the file's group");
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
    fn read(&self, off: u64, buf: &mut [u8]) -> daxlink::arena::MediaResult {
        self.inner.read(off, buf)
    }
    fn write(&self, off: u64, data: &[u8]) -> daxlink::arena::MediaResult {
        if data.len() == self.len.load(std::sync::atomic::Ordering::SeqCst) {
            self.len.store(0, std::sync::atomic::Ordering::SeqCst);
            self.entered.lock().unwrap().take().unwrap().send(()).unwrap();
            let go = self.go.lock().unwrap().take().unwrap();
            go.recv().unwrap();
        }
        self.inner.write(off, data)
    }
    fn fill(&self, off: u64, len: u64, byte: u8) -> daxlink::arena::MediaResult {
        self.inner.fill(off, len, byte)
    }
    fn flush(&self, off: u64, len: u64) -> std::io::Result<()> {
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

/// File attribute flags (`chattr +i`, `+a`): the core refuses with EPERM what the VFS
/// would refuse on ext4 or XFS, since the kernel leaves that to a FUSE server.
#[test]
fn immutable_and_append_only_inodes_refuse_what_the_vfs_refuses() {
    use daxlink::fs::inode::{FL_APPEND, FL_IMMUTABLE, FL_NOATIME, FL_NODUMP};
    let p = Pool::new(32 * MIB);
    let d = p.mkdir(Ino::ROOT, "d");
    let f = p.create(d, "f");
    p.write_all(f, 0, b"0123456789");
    let perm = |r: daxlink::Result<()>| assert_eq!(r.map_err(|e| e.errno()), Err(libc::EPERM));
    let set = |mode: u32| SetAttr { mode: Some(mode), ..Default::default() };
    assert_eq!(errno(p.fs.set_flags(f, 0x1000_0000).map(drop)), libc::EOPNOTSUPP, "unknown flags are refused");

    p.fs.set_flags(f, FL_IMMUTABLE | FL_NODUMP).unwrap();
    assert_eq!(p.fs.getattr(f).unwrap().flags, FL_IMMUTABLE | FL_NODUMP);
    perm(p.fs.write(f, 0, b"x", false).map(drop));
    perm(p.fs.write(f, 10, b"x", true).map(drop));
    perm(p.fs.setattr(f, set(0o600)).map(drop));
    perm(p.fs.setattr(f, SetAttr { size: Some(0), ..Default::default() }).map(drop));
    perm(p.fs.setattr(f, SetAttr { mtime: Some(SetTime::Now), ..Default::default() }).map(drop));
    perm(p.fs.setxattr(f, b"user.x", b"v", 0));
    perm(p.fs.fallocate(f, 0, 0, 4096));
    perm(p.fs.link(f, d, b"g").map(drop));
    perm(p.fs.unlink(d, b"f"));
    perm(p.fs.rename(ROOT, d, b"f", d, b"h", 0));
    perm(p.fs.may_open_for_write(f, false, false));
    let src = p.create(d, "src");
    p.write_all(src, 0, &[7u8; 8192]);
    perm(p.fs.clone_range(src, 0, f, 0, 0).map(drop));
    perm(p.fs.copy_range(src, 0, f, 0, 8192).map(drop));
    perm(p.fs.dedupe_range(src, 0, f, 0, 4096).map(drop));
    perm(p.fs.unshare(f, 0, 4096));
    assert_eq!(p.read_all(f), b"0123456789", "an immutable file changed");

    p.fs.set_flags(f, FL_APPEND).unwrap();
    perm(p.fs.write(f, 3, b"x", false).map(drop));
    assert_eq!(p.fs.write(f, 0, b"ab", true).unwrap(), 2, "an append-only file takes appends");
    assert_eq!(p.fs.write(f, 12, b"cd", false).unwrap(), 2, "a write at EOF is an append");
    perm(p.fs.setattr(f, SetAttr { size: Some(1), ..Default::default() }).map(drop));
    perm(p.fs.setattr(f, set(0o600)).map(drop));
    perm(p.fs.fallocate(f, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, 4096));
    perm(p.fs.may_open_for_write(f, false, false));
    perm(p.fs.may_open_for_write(f, true, true));
    p.fs.may_open_for_write(f, true, false).unwrap();
    p.fs.setattr(f, SetAttr { mtime: Some(SetTime::Now), ..Default::default() }).unwrap();
    perm(p.fs.unlink(d, b"f"));
    assert_eq!(p.read_all(f), b"0123456789abcd");

    // A directory: immutable takes no new or removed names; append-only takes new ones.
    p.fs.set_flags(f, 0).unwrap();
    p.fs.set_flags(d, FL_IMMUTABLE).unwrap();
    perm(p.fs.mknod(ROOT, d, b"n", libc::S_IFREG | 0o644, 0).map(drop));
    perm(p.fs.unlink(d, b"f"));
    perm(p.fs.rename(ROOT, Ino::ROOT, b"d", Ino::ROOT, b"e", 0));
    p.fs.set_flags(d, FL_APPEND).unwrap();
    p.fs.mknod(ROOT, d, b"n", libc::S_IFREG | 0o644, 0).unwrap();
    perm(p.fs.unlink(d, b"n"));
    perm(p.fs.rename(ROOT, d, b"n", Ino::ROOT, b"n", 0));
    p.fs.set_flags(d, 0).unwrap();
    p.fs.unlink(d, b"n").unwrap();

    // noatime: reads leave atime alone; every flag survives a crash.
    p.fs.set_flags(f, FL_NOATIME | FL_NODUMP).unwrap();
    let old = Timespec { sec: 1000, nsec: 0 };
    p.fs.setattr(f, SetAttr { atime: Some(SetTime::At(old)), ..Default::default() }).unwrap();
    p.fs.read(f, 0, 4).unwrap();
    assert_eq!(p.fs.getattr(f).unwrap().atime, old, "a noatime file's atime moved");
    p.fs.sync().unwrap();
    let p = p.crash();
    assert_eq!(p.fs.getattr(f).unwrap().flags, FL_NOATIME | FL_NODUMP);
    p.assert_consistent();
}

/// A POSIX ACL xattr: version 2, then (tag, perm, id) entries.
fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

/// POSIX ACLs: the access ACL and the mode stay in step both ways, an ACL the mode
/// says all of is not stored, a malformed one is EINVAL with nothing stored, and a
/// directory's default ACL masks new inodes' modes instead of the umask.
#[test]
fn posix_acls_keep_mode_and_acl_in_step_and_are_inherited() {
    const UNDEF: u32 = u32::MAX;
    let access = b"system.posix_acl_access";
    let default = b"system.posix_acl_default";
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let mode = |p: &Pool, i| p.fs.getattr(i).unwrap().mode & 0o777;
    let named = acl_xattr(&[(1, 6, UNDEF), (2, 4, 1000), (4, 0, UNDEF), (0x10, 4, UNDEF), (0x20, 0, UNDEF)]);
    p.fs.setxattr(f, access, &named, 0).unwrap();
    assert_eq!(mode(&p, f), 0o640, "the mask stands for the group bits");
    assert_eq!(p.fs.getxattr(f, access).unwrap(), named);
    p.fs.setattr(f, SetAttr { mode: Some(0o600), ..Default::default() }).unwrap();
    let masked = acl_xattr(&[(1, 6, UNDEF), (2, 4, 1000), (4, 0, UNDEF), (0x10, 0, UNDEF), (0x20, 0, UNDEF)]);
    assert_eq!(p.fs.getxattr(f, access).unwrap(), masked, "chmod must set the mask");
    let plain = acl_xattr(&[(1, 7, UNDEF), (4, 5, UNDEF), (0x20, 1, UNDEF)]);
    p.fs.setxattr(f, access, &plain, 0).unwrap();
    assert_eq!(mode(&p, f), 0o751);
    assert_eq!(errno(p.fs.getxattr(f, access).map(drop)), libc::ENODATA, "an ACL equal to the mode is not kept");
    let no_mask = acl_xattr(&[(1, 6, UNDEF), (2, 4, 1000), (4, 0, UNDEF), (0x20, 0, UNDEF)]);
    assert_eq!(errno(p.fs.setxattr(f, access, &no_mask, 0)), libc::EINVAL);
    assert_eq!(errno(p.fs.setxattr(f, access, b"\x02\0\0\0\x01", 0)), libc::EINVAL);
    assert_eq!(mode(&p, f), 0o751, "a refused ACL changed the mode");
    assert_eq!(errno(p.fs.setxattr(f, default, &plain, 0)), libc::EACCES, "default ACLs are for directories");
    assert_eq!(errno(p.fs.setxattr(f, b"system.other", b"x", 0)), libc::EOPNOTSUPP);
    p.fs.removexattr(f, access).expect("removing an ACL that is not there succeeds");
    // posix_acl_update_mode: an ACL set by a changer outside the file's group drops
    // set-group-ID; a member or a privileged changer keeps it.
    let g = p.create(Ino::ROOT, "g");
    p.fs.setattr(g, SetAttr { mode: Some(0o2770), gid: Some(100), ..Default::default() }).unwrap();
    let outsider = |_| false;
    let member = |gid| gid == 100;
    p.fs.setxattr_by(g, access, &named, 0, Changer::Unprivileged(&member)).unwrap();
    assert_eq!(p.fs.getattr(g).unwrap().mode & 0o7777, 0o2640);
    p.fs.setxattr_by(g, access, &named, 0, Changer::Unprivileged(&outsider)).unwrap();
    assert_eq!(p.fs.getattr(g).unwrap().mode & 0o7777, 0o0640, "an outsider's ACL change keeps set-group-ID");
    assert_eq!(errno(p.fs.removexattr(f, b"user.none")), libc::ENODATA);

    let d = p.mkdir(Ino::ROOT, "d");
    let def = acl_xattr(&[(1, 7, UNDEF), (4, 5, UNDEF), (8, 7, 50), (0x10, 7, UNDEF), (0x20, 5, UNDEF)]);
    p.fs.setxattr(d, default, &def, 0).unwrap();
    assert_eq!(p.fs.create_mode(d, 0o666, 0o022).unwrap(), 0o666, "no umask under a default ACL");
    assert_eq!(p.fs.create_mode(Ino::ROOT, 0o666, 0o022).unwrap(), 0o644);
    let new = p.fs.mknod(ROOT, d, b"new", libc::S_IFREG | 0o666, 0).unwrap();
    assert_eq!(new.mode & 0o777, 0o664, "each of owner, mask, other: requested and allowed");
    let inherited = acl_xattr(&[(1, 6, UNDEF), (4, 5, UNDEF), (8, 7, 50), (0x10, 6, UNDEF), (0x20, 4, UNDEF)]);
    assert_eq!(p.fs.getxattr(new.ino, access).unwrap(), inherited);
    assert_eq!(errno(p.fs.getxattr(new.ino, default).map(drop)), libc::ENODATA, "files take no default ACL");
    let sub = p.fs.mkdir(ROOT, d, b"sub", 0o777).unwrap();
    assert_eq!(p.fs.getxattr(sub.ino, default).unwrap(), def, "directories inherit the default ACL");
    let link = p.fs.symlink(ROOT, d, b"l", b"new").unwrap();
    assert_eq!(errno(p.fs.getxattr(link.ino, access).map(drop)), libc::ENODATA);
    p.fs.sync().unwrap();
    let p = p.crash();
    assert_eq!(p.fs.getxattr(new.ino, access).unwrap(), inherited);
    p.assert_consistent();
}

/// `extents_from` pages through a file's ranges, batch by batch, exactly as `extents`
/// lists them all (the extents ioctl's batches).
#[test]
fn extent_batches_concatenate_to_the_whole_listing() {
    let p = Pool::new(32 * MIB);
    let a = p.create(Ino::ROOT, "a");
    p.write_all(a, 0, &pattern(3, 700 * PAGE as usize));
    let b = p.create(Ino::ROOT, "b");
    p.fs.clone_range(a, 0, b, 0, 0).unwrap();
    // Every other page private again: 700 ranges alternating shared and private.
    for i in (0..700).step_by(2) {
        p.fs.write(b, i * PAGE, b"x", false).unwrap();
    }
    let all = p.fs.extents(b).unwrap();
    assert_eq!(all.len(), 700);
    let (mut got, mut from) = (Vec::new(), FileBlock(0));
    loop {
        let (batch, more) = p.fs.extents_from(b, from, 256).unwrap();
        assert!(batch.len() <= 256);
        from = batch.last().map_or(from, |m| m.fblock.plus(m.len));
        got.extend(batch);
        if !more {
            break;
        }
    }
    assert_eq!(got, all);
    let (tail, more) = p.fs.extents_from(b, FileBlock(699), 256).unwrap();
    assert_eq!((tail.len(), more, tail[0].fblock), (1, false, FileBlock(699)));
}
