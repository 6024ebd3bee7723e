//! Memory failure through the core: owners from the page or from the holder, poison
//! containment, healing by a whole-page write, persistence, metadata pages; and the
//! same outcome when an access meets a failed page of the media (a machine check, a
//! pool file cut short) or the media reports one, as the kernel's early SIGBUS does.

mod common;

use std::sync::Arc;

use daxlink::arena::{MediaError, MemMedia};
use daxlink::dax::{Failure, Owner};
use daxlink::fs::{Ctx, Error, Fs, Options};
use daxlink::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

use common::{MIB, Pool};

const PS: u64 = PAGE_SIZE;
const CTX: Ctx = Ctx { uid: 0, gid: 0 };

fn mkfs() -> (Arc<MemMedia>, Fs) {
    let p = Pool::new(64 * MIB);
    (p.media, p.fs)
}

fn file(fs: &Fs, name: &str, data: &[u8]) -> Ino {
    let ino = fs.mknod(CTX, Ino::ROOT, name.as_bytes(), libc::S_IFREG | 0o644, 0).unwrap().ino;
    fs.write(ino, 0, data, false).unwrap();
    ino
}

fn pfn_at(fs: &Fs, ino: Ino, off: u64) -> Pfn {
    let b = off / PS;
    let m = fs.extents(ino).unwrap().into_iter().find(|m| m.fblock.0 <= b && b < m.fblock.0 + m.pages).unwrap();
    m.pfn.plus(b - m.fblock.0)
}

fn data(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn shared_page_failure_asks_the_holder_once_and_poisons_every_owner() {
    let (_m, fs) = mkfs();
    let d = data(8 * PS);
    let a = file(&fs, "a", &d);
    let b = file(&fs, "b", &[]);
    let c = file(&fs, "c", &[]);
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    fs.clone_range(a, 0, c, 0, 0).unwrap();
    let p = pfn_at(&fs, a, 3 * PS);
    let before = fs.stats().holder_calls;
    let f = fs.memory_failure(p, 1).unwrap();
    assert_eq!(fs.stats().holder_calls, before + 1);
    let want: Vec<Owner> = [a, b, c].iter().map(|&ino| Owner { pfn: p, ino, index: FileBlock(3) }).collect();
    assert_eq!(f.owners, want);
    for ino in [a, b, c] {
        assert_eq!(fs.read(ino, 3 * PS, PS), Err(Error::HwPoison), "inode {ino} read the failed page");
        assert_eq!(fs.read(ino, 2 * PS, PS).unwrap(), d[2 * PS as usize..3 * PS as usize], "neighbour before");
        assert_eq!(fs.read(ino, 4 * PS, PS).unwrap(), d[4 * PS as usize..5 * PS as usize], "neighbour after");
        // A read that runs into the failed page returns the bytes before it.
        assert_eq!(fs.read(ino, PS, 4 * PS).unwrap().len() as u64, 2 * PS);
    }
    assert!(fs.page_is_bad(p).unwrap());
    fs.check().unwrap();
}

#[test]
fn singly_owned_page_failure_does_not_ask_the_holder() {
    let (_m, fs) = mkfs();
    let a = file(&fs, "a", &data(4 * PS));
    let p = pfn_at(&fs, a, PS);
    let f = fs.memory_failure(p, 1).unwrap();
    assert_eq!(f.owners, vec![Owner { pfn: p, ino: a, index: FileBlock(1) }]);
    assert_eq!(f.holder_calls, 0);
    assert_eq!(fs.stats().holder_calls, 0);
    assert_eq!(fs.read(a, PS, 10), Err(Error::HwPoison));
}

#[test]
fn poison_survives_remount_and_a_whole_page_write_heals_one_file_only() {
    let (m, fs) = mkfs();
    let a = file(&fs, "a", &data(4 * PS));
    let b = file(&fs, "b", &[]);
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    let p = pfn_at(&fs, a, 2 * PS);
    fs.memory_failure(p, 1).unwrap();
    fs.unmount().unwrap();
    let fs = Fs::open(Arc::new(MemMedia::from_bytes(m.snapshot())), Options::default()).unwrap();
    assert_eq!(fs.read(a, 2 * PS, PS), Err(Error::HwPoison), "poison lost across remount");
    assert_eq!(fs.read(b, 2 * PS, PS), Err(Error::HwPoison));
    assert!(fs.page_is_bad(p).unwrap());
    assert_eq!(fs.write(b, 2 * PS + 1, b"x", false), Err(Error::HwPoison), "a partial write must fail");
    fs.write(b, 2 * PS, &[9u8; PS as usize], false).unwrap();
    assert_eq!(fs.read(b, 2 * PS, PS).unwrap(), vec![9u8; PS as usize]);
    assert_ne!(pfn_at(&fs, b, 2 * PS), p, "the healed block must move to a fresh page");
    assert_eq!(fs.read(a, 2 * PS, PS), Err(Error::HwPoison), "healing b must not heal a");
    fs.check().unwrap();
}

#[test]
fn a_failed_free_page_is_never_allocated_and_stays_bad_after_its_owners_go() {
    let (m, fs) = mkfs();
    let a = file(&fs, "a", &data(2 * PS));
    let p = pfn_at(&fs, a, 0);
    fs.memory_failure(p, 1).unwrap();
    fs.unlink(Ino::ROOT, b"a").unwrap();
    fs.sync().unwrap();
    let free = p.plus(100);
    assert!(fs.memory_failure(free, 1).unwrap().owners.is_empty());
    // Fill the pool: no file may land on either bad page.
    let big = file(&fs, "big", &[]);
    let mut off = 0;
    let chunk = vec![1u8; 1 << 20];
    while fs.write(big, off, &chunk, false).is_ok() {
        off += chunk.len() as u64;
    }
    let pages: Vec<Pfn> =
        fs.extents(big).unwrap().iter().flat_map(|m| (0..m.pages).map(move |i| m.pfn.plus(i))).collect();
    assert!(!pages.contains(&p) && !pages.contains(&free), "a bad page was allocated");
    assert_eq!(fs.stats().pages_bad, 2);
    fs.unmount().unwrap();
    let fs = Fs::open(Arc::new(MemMedia::from_bytes(m.snapshot())), Options::default()).unwrap();
    assert_eq!(fs.stats().pages_bad, 2);
    fs.check().unwrap();
}

#[test]
fn a_page_shared_by_twenty_files_names_all_twenty() {
    let (_m, fs) = mkfs();
    let a = file(&fs, "a", &data(2 * PS));
    let mut all = vec![a];
    for i in 0..19 {
        let c = file(&fs, &format!("c{i}"), &[]);
        fs.clone_range(a, 0, c, 0, 0).unwrap();
        all.push(c);
    }
    let f = fs.memory_failure(pfn_at(&fs, a, PS), 1).unwrap();
    assert_eq!(f.holder_calls, 1);
    let mut got: Vec<Ino> = f.owners.iter().map(|o| o.ino).collect();
    got.sort();
    all.sort();
    assert_eq!(got, all);
    assert_eq!(fs.path_of(all[3]).unwrap(), format!("/c{}", 2));
}

#[test]
fn truncating_away_a_poisoned_block_clears_the_poison() {
    let (_m, fs) = mkfs();
    let a = file(&fs, "a", &data(4 * PS));
    fs.memory_failure(pfn_at(&fs, a, 3 * PS), 1).unwrap();
    fs.setattr(a, daxlink::fs::SetAttr { size: Some(3 * PS), ..Default::default() }).unwrap();
    fs.setattr(a, daxlink::fs::SetAttr { size: Some(4 * PS), ..Default::default() }).unwrap();
    assert_eq!(fs.read(a, 3 * PS, PS).unwrap(), vec![0; PS as usize]);
    fs.check().unwrap();
}

#[test]
fn a_failed_metadata_page_makes_the_filesystem_read_only_and_keeps_the_data() {
    let (m, fs) = mkfs();
    let a = file(&fs, "a", &data(PS));
    // Page 1 is the first page of the metadata log.
    fs.memory_failure(Pfn(1), 1).unwrap();
    assert_eq!(fs.write(a, 0, b"x", false), Err(Error::ReadOnly));
    let fs = Fs::open(Arc::new(MemMedia::from_bytes(m.snapshot())), Options::default()).unwrap();
    assert_eq!(fs.read(a, 0, PS).unwrap(), data(PS), "the metadata rewrite lost the file");
    fs.check().unwrap();
}

#[test]
fn out_of_range_failures_are_refused() {
    let (_m, fs) = mkfs();
    assert_eq!(fs.memory_failure(Pfn(u64::MAX), 1), Err(Error::Invalid));
    assert_eq!(fs.memory_failure(Pfn(1 << 40), 1), Err(Error::Invalid));
    assert_eq!(fs.memory_failure(Pfn(20), 0), Err(Error::Invalid));
}

/// Failures the core found by itself and handed on for cache invalidation.
fn sink(fs: &Fs) -> std::sync::mpsc::Receiver<Failure> {
    let (tx, rx) = std::sync::mpsc::channel();
    fs.set_failure_sink(tx);
    rx
}

fn pages_of(fs: &Fs, ino: Ino) -> Vec<Pfn> {
    fs.extents(ino).unwrap().iter().flat_map(|m| (0..m.pages).map(move |i| m.pfn.plus(i))).collect()
}

#[test]
fn a_read_that_meets_a_failed_page_fails_it_and_returns_the_bytes_before() {
    let (m, fs) = mkfs();
    let rx = sink(&fs);
    let d = data(4 * PS);
    let a = file(&fs, "a", &d);
    let p = pfn_at(&fs, a, 2 * PS);
    m.fail(p.offset(), PS);
    assert_eq!(fs.read(a, 0, 4 * PS).unwrap(), d[..2 * PS as usize], "the read must stop before the failed page");
    assert!(fs.page_is_bad(p).unwrap(), "the page the read met must be failed");
    assert_eq!(fs.read(a, 2 * PS, 10), Err(Error::HwPoison));
    assert_eq!(fs.read_whole(a, 0, 4 * PS), Err(Error::HwPoison), "a page-cache read is all or nothing");
    assert_eq!(fs.read(a, 3 * PS, PS).unwrap(), d[3 * PS as usize..], "the page after stays readable");
    let f = rx.try_recv().expect("the failure must reach the sink");
    assert_eq!(f.owners, vec![Owner { pfn: p, ino: a, index: FileBlock(2) }]);
    assert_eq!(fs.stats().pages_bad, 1);
    fs.check().unwrap();
}

#[test]
fn a_cow_write_that_meets_a_failed_shared_page_poisons_every_owner() {
    let (m, fs) = mkfs();
    let rx = sink(&fs);
    let d = data(4 * PS);
    let a = file(&fs, "a", &d);
    let (b, c) = (file(&fs, "b", &[]), file(&fs, "c", &[]));
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    fs.clone_range(a, 0, c, 0, 0).unwrap();
    let p = pfn_at(&fs, a, PS);
    m.fail(p.offset(), PS);
    assert_eq!(fs.write(b, PS + 100, b"x", false), Err(Error::HwPoison), "the COW copy of a failed page must fail");
    assert_eq!(fs.stats().holder_calls, 1, "a shared page's owners come from one holder call");
    let mut owners: Vec<Ino> = rx.try_recv().unwrap().owners.iter().map(|o| o.ino).collect();
    owners.sort();
    assert_eq!(owners, vec![a, b, c]);
    for ino in [a, b, c] {
        assert_eq!(fs.read(ino, PS, PS), Err(Error::HwPoison), "inode {ino} still reads the failed page");
    }
    // A whole-page write replaces the lost bytes: it moves b's block to a good page.
    fs.write(b, PS, &[4u8; PS as usize], false).unwrap();
    assert_eq!(fs.read(b, PS, PS).unwrap(), vec![4u8; PS as usize]);
    assert_eq!(fs.read(a, PS, PS), Err(Error::HwPoison));
    assert_eq!(fs.read(c, 0, 4 * PS).unwrap(), d[..PS as usize]);
    fs.check().unwrap();
}

#[test]
fn an_in_place_write_that_meets_a_failed_page_fails_and_a_whole_page_one_heals() {
    let (m, fs) = mkfs();
    let a = file(&fs, "a", &data(4 * PS));
    let p = pfn_at(&fs, a, 3 * PS);
    m.fail(p.offset(), PS);
    assert_eq!(fs.write(a, 3 * PS + 1, b"yz", false), Err(Error::HwPoison));
    assert!(fs.page_is_bad(p).unwrap());
    fs.write(a, 2 * PS, &[6u8; 2 * PS as usize], false).unwrap();
    assert_eq!(fs.read(a, 2 * PS, 2 * PS).unwrap(), vec![6u8; 2 * PS as usize]);
    assert!(!pages_of(&fs, a).contains(&p));
    fs.check().unwrap();
}

#[test]
fn a_fresh_page_that_fails_is_skipped_and_never_allocated_again() {
    let (m, fs) = mkfs();
    let a = file(&fs, "a", &data(PS));
    // The next pages the allocator hands out follow a's.
    let next = pfn_at(&fs, a, 0).plus(1);
    m.fail(next.offset(), 3 * PS);
    let b = file(&fs, "b", &data(8 * PS));
    assert_eq!(fs.read(b, 0, 8 * PS).unwrap(), data(8 * PS), "the write must land whole on good pages");
    let got = pages_of(&fs, b);
    assert!((0..3).all(|i| !got.contains(&next.plus(i))), "a failed page was used: {got:?}");
    assert!(fs.page_is_bad(next).unwrap());
    fs.check().unwrap();
}

#[test]
fn a_cut_pool_fails_every_page_past_the_end_and_the_rest_keeps_working() {
    let (m, fs) = mkfs();
    let rx = sink(&fs);
    let low = file(&fs, "low", &data(4 * PS));
    let high = file(&fs, "high", &[]);
    // Put `high` well above `low`, then cut the pool between them.
    file(&fs, "pad", &data(64 * PS));
    fs.write(high, 0, &data(4 * PS), false).unwrap();
    fs.unlink(Ino::ROOT, b"pad").unwrap();
    fs.sync().unwrap();
    let cut = pfn_at(&fs, high, 0);
    let total = fs.stats().pages_total;
    m.cut(cut.offset().0);
    assert_eq!(fs.read(high, 0, PS), Err(Error::HwPoison));
    let f = rx.try_recv().unwrap();
    assert_eq!(f.failed.first(), Some(&cut), "the first page past the cut must fail");
    assert_eq!(f.failed.len() as u64, fs.stats().pages_bad, "every page past the cut fails at once");
    assert!(fs.stats().pages_bad >= total - cut.0 - 1);
    assert_eq!(fs.read(low, 0, 4 * PS).unwrap(), data(4 * PS));
    fs.write(low, PS, b"still writable", false).unwrap();
    let new = file(&fs, "new", &data(16 * PS));
    assert!(pages_of(&fs, new).iter().all(|p| *p < cut), "a new file landed past the cut");
    fs.check().unwrap();
}

#[test]
fn a_cut_through_the_metadata_log_shuts_the_filesystem_down() {
    let (m, fs) = mkfs();
    let a = file(&fs, "a", &data(PS));
    m.cut(PS);
    assert_eq!(fs.mkdir(CTX, Ino::ROOT, b"d", 0o755).map(drop), Err(Error::HwPoison), "the request that met it");
    assert_eq!(fs.mkdir(CTX, Ino::ROOT, b"e", 0o755).map(drop), Err(Error::ReadOnly), "every later change");
    assert_eq!(fs.read(a, 0, PS), Err(Error::HwPoison), "the data pages are gone too");
    assert_eq!(fs.getattr(a).unwrap().size, PS, "what is in memory still answers");
    fs.unmount().unwrap();
}

#[test]
fn failures_the_media_reports_are_failed_like_injected_ones() {
    let (m, fs) = mkfs();
    let rx = sink(&fs);
    let a = file(&fs, "a", &data(4 * PS));
    let b = file(&fs, "b", &[]);
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    let solo = file(&fs, "solo", &data(2 * PS));
    let (shared, own) = (pfn_at(&fs, a, 2 * PS), pfn_at(&fs, solo, PS));
    m.report(MediaError::Failed { off: shared.offset(), bytes: PS });
    m.report(MediaError::Failed { off: own.offset(), bytes: PS });
    let found = fs.take_media_failures();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].holder_calls, 1, "the shared page asks the holder once");
    assert_eq!(found[1].holder_calls, 0, "the solo page names its owner itself");
    assert_eq!(found[1].owners, vec![Owner { pfn: own, ino: solo, index: FileBlock(1) }]);
    assert_eq!(rx.try_iter().count(), 2, "both go to the sink");
    for (ino, off) in [(a, 2 * PS), (b, 2 * PS), (solo, PS)] {
        assert_eq!(fs.read(ino, off, PS), Err(Error::HwPoison));
    }
    assert!(fs.take_media_failures().is_empty(), "a report is taken once");
    fs.check().unwrap();
}

#[test]
fn a_clone_of_a_failed_page_reads_eio_in_the_copy_too() {
    let (_m, fs) = mkfs();
    let d = data(4 * PS);
    let a = file(&fs, "a", &d);
    fs.memory_failure(pfn_at(&fs, a, PS), 1).unwrap();
    let b = file(&fs, "b", &[]);
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    let c = file(&fs, "c", &[]);
    assert_eq!(fs.copy_range(a, 0, c, 0, 4 * PS).unwrap(), 4 * PS, "whole blocks are shared, poison and all");
    for ino in [b, c] {
        assert_eq!(fs.read(ino, PS, PS), Err(Error::HwPoison), "inode {ino}: a copy must not read a failed page");
        assert_eq!(fs.read(ino, 2 * PS, PS).unwrap(), d[2 * PS as usize..3 * PS as usize]);
    }
    fs.write(b, PS, &[1u8; PS as usize], false).unwrap();
    assert_eq!(fs.read(b, PS, PS).unwrap(), vec![1u8; PS as usize], "a whole-page write heals the copy");
    assert_eq!(fs.read(a, PS, PS), Err(Error::HwPoison), "and only the copy");
    fs.check().unwrap();
}
