//! The data path through the core API: writes past EOF, truncate, append, in-place
//! overwrite, EFBIG, fallocate in every mode, SEEK_DATA/SEEK_HOLE, the extent listing.

mod common;

use daxlink::fs::{FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, Kind, SetAttr};
use daxlink::types::{FileBlock, Ino};

use common::{MIB, PAGE, Pool, ROOT, errno, pattern, used_pages};

const TIB8: u64 = 8 << 40;

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
    let blocks: Vec<u64> = p.fs.extents(f).unwrap().iter().flat_map(|x| x.fblock.0..x.fblock.0 + x.pages).collect();
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
        from = batch.last().map_or(from, |m| m.fblock.plus(m.pages));
        got.extend(batch);
        if !more {
            break;
        }
    }
    assert_eq!(got, all);
    let (tail, more) = p.fs.extents_from(b, FileBlock(699), 256).unwrap();
    assert_eq!((tail.len(), more, tail[0].fblock), (1, false, FileBlock(699)));
}

/// The listing cuts a file's extents exactly where its pages' sharing or its blocks'
/// poison changes, and nowhere else: checked page by page against the page table and
/// the reads.
#[test]
fn the_extent_listing_cuts_where_sharing_or_poison_changes() {
    use daxlink::dax::PageState;
    use daxlink::fs::{Error, FileExtent};
    let p = Pool::new(32 * MIB);
    let a = p.file("a", &pattern(5, 64 * PAGE as usize));
    let b = p.create(Ino::ROOT, "b");
    p.fs.clone_range(a, 0, b, 0, 0).unwrap();
    for i in [3, 4, 5, 20, 40, 41] {
        p.fs.write(b, i * PAGE, b"private", false).unwrap();
    }
    // Writes to the source leave b's pages in place, now b's alone: the sharing
    // changes inside one of b's extents.
    for i in [30, 31, 50] {
        p.fs.write(a, i * PAGE, b"moved", false).unwrap();
    }
    let pfn_of = |ino, block: u64| {
        let m = p.fs.extents(ino).unwrap().into_iter().find(|m| m.fblock.0 <= block && block < m.fblock.0 + m.pages);
        m.unwrap().pfn.plus(block - m.unwrap().fblock.0)
    };
    // Poison shared pages (9, 10, 11: inside a shared run), a private one (4: inside a
    // private run), two across a boundary (20 and 21: private, then shared) and one
    // left alone by the source's write (31).
    for block in [9, 10, 11, 4, 20, 21, 31] {
        p.fs.memory_failure(pfn_of(b, block), 1).unwrap();
    }
    let listing = p.fs.extents(b).unwrap();
    let pages: Vec<(u64, FileExtent)> =
        listing.iter().flat_map(|m| (0..m.pages).map(move |i| (m.fblock.0 + i, *m))).collect();
    assert_eq!(pages.iter().map(|x| x.0).collect::<Vec<_>>(), (0..64).collect::<Vec<_>>(), "every block, once");
    for (block, m) in &pages {
        let pfn = m.pfn.plus(block - m.fblock.0);
        let co_owned = matches!(p.fs.page_state(pfn).unwrap(), PageState::Shared { share } if share > 1);
        let poisoned = p.fs.read(b, block * PAGE, PAGE) == Err(Error::HwPoison);
        assert_eq!((m.co_owned, m.poisoned), (co_owned, poisoned), "block {block}");
    }
    for w in listing.windows(2) {
        let touch = w[0].fblock.plus(w[0].pages) == w[1].fblock && w[0].pfn.plus(w[0].pages) == w[1].pfn;
        let same = (w[0].co_owned, w[0].poisoned) == (w[1].co_owned, w[1].poisoned);
        assert!(!(touch && same), "{:?} and {:?} should be one run", w[0], w[1]);
    }
    assert!(listing.iter().any(|m| m.co_owned && m.poisoned) && listing.iter().any(|m| !m.co_owned && m.poisoned));
    let cut_inside = |w: &[FileExtent]| {
        w[0].fblock.plus(w[0].pages) == w[1].fblock
            && w[0].pfn.plus(w[0].pages) == w[1].pfn
            && w[0].co_owned != w[1].co_owned
    };
    assert!(listing.windows(2).any(cut_inside), "the source's writes cut one of b's extents by sharing");
}
