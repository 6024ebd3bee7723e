//! Page ownership and space through the core API: the page table's owner of a
//! written page, free space after unlink, reuse of freed pages, statfs, ENOSPC.

mod common;

use daxlink::dax::PageState;
use daxlink::fs::{FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE};
use daxlink::types::{FileBlock, Ino, Pfn};

use common::{MIB, PAGE, Pool, errno, page_state, pattern, used_pages};

#[test]
fn page_of_new_write_is_owned_by_file_at_its_index() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    p.write_all(f, 5 * PAGE, &pattern(2, 3 * PAGE as usize));
    let ext = p.fs.extents(f).unwrap();
    assert_eq!(ext.iter().map(|x| x.pages).sum::<u64>(), 3);
    let mut pfns = Vec::new();
    for x in &ext {
        for i in 0..x.pages {
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
