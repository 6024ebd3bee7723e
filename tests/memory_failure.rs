//! Memory failure through the core (SPEC §4): owners from the page or from the holder,
//! poison containment, healing by a whole-page write, persistence, metadata pages.

use std::sync::Arc;

use daxlink::arena::MemMedia;
use daxlink::dax::Owner;
use daxlink::fs::{Ctx, Error, Fs, Options};
use daxlink::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

const PS: u64 = PAGE_SIZE;
const CTX: Ctx = Ctx { uid: 0, gid: 0 };

fn mkfs() -> (Arc<MemMedia>, Fs) {
    let media = Arc::new(MemMedia::new(64 << 20));
    Fs::mkfs(&*media, CTX, [2; 16]).unwrap();
    let fs = Fs::open(media.clone(), Options::default()).unwrap();
    (media, fs)
}

fn file(fs: &Fs, name: &str, data: &[u8]) -> Ino {
    let ino = fs.mknod(CTX, Ino::ROOT, name.as_bytes(), libc::S_IFREG | 0o644, 0).unwrap().ino;
    fs.write(ino, 0, data, false).unwrap();
    ino
}

fn pfn_at(fs: &Fs, ino: Ino, off: u64) -> Pfn {
    let b = off / PS;
    let m = fs.extents(ino).unwrap().into_iter().find(|m| m.fblock.0 <= b && b < m.fblock.0 + m.len).unwrap();
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
        fs.extents(big).unwrap().iter().flat_map(|m| (0..m.len).map(move |i| m.pfn.plus(i))).collect();
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
