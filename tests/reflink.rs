//! Reflink through the core API: the VFS range rules (fs/remap_range.c) as a table,
//! page ownership through clones, COW, space accounting, ENOSPC, remount.

mod common;

use std::sync::Arc;

use daxlink::arena::MemMedia;
use daxlink::dax::PageState;
use daxlink::fs::{Attr, Ctx, Dedupe, Error, Fs, Options};
use daxlink::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

use common::{Pool, pattern};

const PS: u64 = PAGE_SIZE;
const ROOT: Ino = Ino::ROOT;
const CTX: Ctx = Ctx { uid: 0, gid: 0 };

fn mkfs(size: u64) -> (Arc<MemMedia>, Fs) {
    let p = Pool::new(size);
    (p.media, p.fs)
}

fn reopen(media: &MemMedia) -> Fs {
    Fs::open(Arc::new(MemMedia::from_bytes(media.snapshot())), Options::default()).unwrap()
}

fn file(fs: &Fs, name: &str, data: &[u8]) -> Attr {
    let a = fs.mknod(CTX, ROOT, name.as_bytes(), libc::S_IFREG | 0o644, 0).unwrap();
    fs.write(a.ino, 0, data, false).unwrap();
    fs.getattr(a.ino).unwrap()
}

fn first_pfn(fs: &Fs, ino: Ino) -> Pfn {
    fs.extents(ino).unwrap()[0].pfn
}

fn shared_bytes(fs: &Fs, ino: Ino) -> u64 {
    fs.extents(ino).unwrap().iter().filter(|m| m.co_owned).map(|m| m.pages * PS).sum()
}

/// (what, src, src_off, dst, dst_off, len, expected)
type Case = (&'static str, Ino, u64, Ino, u64, u64, Result<u64, Error>);

#[test]
fn clone_range_follows_the_vfs_rules_for_every_error_case() {
    let (_m, fs) = mkfs(64 << 20);
    let a = file(&fs, "a", &pattern(1, (3 * PS + 100) as usize)).ino; // unaligned EOF
    let b = file(&fs, "b", &pattern(2, (8 * PS) as usize)).ino;
    let d = fs.mkdir(CTX, ROOT, b"d", 0o755).unwrap().ino;
    let fifo = fs.mknod(CTX, ROOT, b"f", libc::S_IFIFO | 0o644, 0).unwrap().ino;
    let tb8 = 8u64 << 40;
    let cases: Vec<Case> = vec![
        ("source is a directory", d, 0, b, 0, PS, Err(Error::IsDir)),
        ("destination is a directory", a, 0, d, 0, PS, Err(Error::IsDir)),
        ("source is a fifo", fifo, 0, b, 0, PS, Err(Error::Invalid)),
        ("destination is a fifo", a, 0, fifo, 0, PS, Err(Error::Invalid)),
        ("unaligned source offset", a, 1, b, 0, PS, Err(Error::Invalid)),
        ("unaligned destination offset", a, 0, b, 512, PS, Err(Error::Invalid)),
        ("source offset past EOF", a, 8 * PS, b, 0, PS, Err(Error::Invalid)),
        ("len 0 from EOF clones nothing", a, 3 * PS + 100, b, 0, 0, Ok(0)),
        ("len 0 past EOF", b, 9 * PS, a, 0, 0, Err(Error::Invalid)),
        ("source range wraps", a, PS, b, 0, u64::MAX - 10, Err(Error::Invalid)),
        ("destination at 8 TiB", a, 0, b, tb8, PS, Err(Error::FileTooBig)),
        ("same file, overlapping", b, 0, b, PS, 2 * PS, Err(Error::Invalid)),
        ("unaligned EOF tail into the middle of a longer file", a, 0, b, 0, 0, Err(Error::Invalid)),
        ("unaligned length before EOF is rounded down", b, 0, a, 0, PS + 5, Ok(PS)),
        ("same file, disjoint", b, 0, b, 4 * PS, 2 * PS, Ok(2 * PS)),
        ("unaligned EOF tail past the destination's EOF", a, 0, b, 8 * PS, 0, Ok(3 * PS + 100)),
    ];
    for (what, src, so, dst, dof, len, want) in cases {
        let got = fs.clone_range(src, so, dst, dof, len);
        assert_eq!(got, want, "{what}");
        fs.check().unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    assert_eq!(fs.getattr(b).unwrap().size, 11 * PS + 100, "EOF clone sets the destination size");
}

#[test]
fn clone_on_a_read_only_mount_is_erofs() {
    let (m, fs) = mkfs(32 << 20);
    let a = file(&fs, "a", &pattern(3, (PS) as usize)).ino;
    let b = file(&fs, "b", &[]).ino;
    fs.unmount().unwrap();
    let ro = Fs::open(Arc::new(MemMedia::from_bytes(m.snapshot())), Options { read_only: true, ..Options::default() })
        .unwrap();
    assert_eq!(ro.clone_range(a, 0, b, 0, 0), Err(Error::ReadOnly));
}

#[test]
fn page_states_through_clones_follow_the_seed_state_machine() {
    let (_m, fs) = mkfs(64 << 20);
    let a = file(&fs, "a", &pattern(5, (4 * PS) as usize));
    let p = fs.extents(a.ino).unwrap()[0].pfn.plus(2);
    assert_eq!(fs.page_state(p).unwrap(), PageState::Owned { mapping: a.ino, index: FileBlock(2) });
    let clones: Vec<Ino> = (0..3)
        .map(|i| {
            let c = file(&fs, &format!("c{i}"), &[]).ino;
            assert_eq!(fs.clone_range(a.ino, 0, c, 0, 0), Ok(4 * PS));
            c
        })
        .collect();
    assert_eq!(fs.page_state(p).unwrap(), PageState::Shared { share: 4 });
    fs.unlink(ROOT, b"c0").unwrap();
    fs.unlink(ROOT, b"c1").unwrap();
    assert_eq!(fs.page_state(p).unwrap(), PageState::Shared { share: 2 });
    fs.unlink(ROOT, b"c2").unwrap();
    assert_eq!(fs.page_state(p).unwrap(), PageState::Shared { share: 1 }, "share 1 must stay shared");
    fs.unlink(ROOT, b"a").unwrap();
    assert_eq!(fs.page_state(p).unwrap(), PageState::Free);
    assert_eq!(fs.stats().warnings, 0);
    assert_eq!(clones.len(), 3);
    fs.check().unwrap();
}

#[test]
fn writing_one_page_of_a_clone_unshares_exactly_that_page() {
    let (m, fs) = mkfs(64 << 20);
    let data = pattern(7, (64 * PS) as usize);
    let a = file(&fs, "a", &data).ino;
    let b = file(&fs, "b", &[]).ino;
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    assert_eq!(shared_bytes(&fs, b), 64 * PS);
    fs.write(b, 10 * PS, &[0xee; PS as usize], false).unwrap();
    assert_eq!(shared_bytes(&fs, b), 63 * PS, "exactly one page unshared");
    assert_eq!(fs.read(a, 0, 64 * PS).unwrap(), data, "the original changed");
    fs.sync().unwrap();
    let fs2 = reopen(&m);
    assert_eq!(fs2.read(a, 0, 64 * PS).unwrap(), data, "the original changed across remount");
    assert_eq!(fs2.read(b, 10 * PS, PS).unwrap(), vec![0xee; PS as usize]);
    assert_eq!(shared_bytes(&fs2, b), 63 * PS, "sharing lost across remount");
    fs2.check().unwrap();
}

#[test]
fn partial_page_write_into_a_clone_keeps_the_rest_of_the_page() {
    let (_m, fs) = mkfs(32 << 20);
    let data = pattern(9, (2 * PS) as usize);
    let a = file(&fs, "a", &data).ino;
    let b = file(&fs, "b", &[]).ino;
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    fs.write(b, 100, b"xyz", false).unwrap();
    let mut want = data.clone();
    want[100..103].copy_from_slice(b"xyz");
    assert_eq!(fs.read(b, 0, 2 * PS).unwrap(), want);
    assert_eq!(fs.read(a, 0, 2 * PS).unwrap(), data);
}

#[test]
fn statfs_counts_a_shared_page_once_and_clone_chains_free_everything() {
    let (_m, fs) = mkfs(64 << 20);
    let a = file(&fs, "a", &pattern(11, (100 * PS) as usize)).ino;
    fs.sync().unwrap();
    let before = fs.statfs().bfree;
    for i in 0..10 {
        let c = file(&fs, &format!("c{i}"), &[]).ino;
        let src = if i == 0 { a } else { fs.lookup(ROOT, format!("c{}", i - 1).as_bytes()).unwrap().ino };
        fs.clone_range(src, 0, c, 0, 0).unwrap();
    }
    assert_eq!(fs.statfs().bfree, before, "clones must not consume data pages");
    for i in [3, 7, 0, 9, 1, 5, 2, 8, 4, 6] {
        fs.unlink(ROOT, format!("c{i}").as_bytes()).unwrap();
    }
    fs.sync().unwrap();
    assert_eq!(fs.statfs().bfree, before);
    fs.unlink(ROOT, b"a").unwrap();
    fs.sync().unwrap();
    assert_eq!(fs.statfs().bfree, before + 100);
    fs.check().unwrap();
}

#[test]
fn enospc_during_cow_leaves_both_files_as_they_were() {
    let (_m, fs) = mkfs(24 << 20);
    let free = fs.statfs().bfree;
    let data = pattern(13, ((free - 8) * PS) as usize);
    let a = file(&fs, "a", &data).ino;
    let b = file(&fs, "b", &[]).ino;
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    let big = vec![0x42u8; 64 * PS as usize];
    assert_eq!(fs.write(b, 0, &big, false), Err(Error::NoSpace));
    assert_eq!(fs.read(a, 0, data.len() as u64).unwrap(), data);
    assert_eq!(fs.read(b, 0, data.len() as u64).unwrap(), data);
    assert_eq!(shared_bytes(&fs, b), data.len() as u64);
    fs.check().unwrap();
    // A smaller COW still fits.
    fs.write(b, 0, &big[..4 * PS as usize], false).unwrap();
    fs.check().unwrap();
}

#[test]
fn dedupe_shares_identical_ranges_and_reports_differences() {
    let (_m, fs) = mkfs(32 << 20);
    let data = pattern(17, (16 * PS) as usize);
    let a = file(&fs, "a", &data).ino;
    let b = file(&fs, "b", &data).ino;
    let mut other = data.clone();
    other[5 * PS as usize] ^= 1;
    let c = file(&fs, "c", &other).ino;
    assert_eq!(fs.dedupe_range(a, 0, b, 0, 16 * PS), Ok(Dedupe::Same { bytes: 16 * PS }));
    assert_eq!(first_pfn(&fs, a), first_pfn(&fs, b));
    assert_eq!(fs.dedupe_range(a, 0, c, 0, 16 * PS), Ok(Dedupe::Differs));
    assert_eq!(shared_bytes(&fs, c), 0);
    assert_eq!(fs.dedupe_range(a, 0, c, 0, 17 * PS), Err(Error::Invalid), "past EOF");
    assert_eq!(fs.dedupe_range(a, 0, c, 0, 0), Ok(Dedupe::Same { bytes: 0 }), "zero length does nothing");
    assert_eq!(fs.read(c, 0, 16 * PS).unwrap(), other);
    fs.check().unwrap();
}

#[test]
fn copy_range_shares_whole_blocks_and_copies_unaligned_ends() {
    let (_m, fs) = mkfs(32 << 20);
    let data = pattern(19, (10 * PS + 300) as usize);
    let a = file(&fs, "a", &data).ino;
    let b = file(&fs, "b", &[]).ino;
    // Same offset within a block: head bytes copied, whole blocks shared, EOF tail shared.
    assert_eq!(fs.copy_range(a, 100, b, 100, u64::MAX), Ok(data.len() as u64 - 100));
    assert_eq!(fs.read(b, 100, data.len() as u64).unwrap(), data[100..]);
    assert_eq!(shared_bytes(&fs, b), 10 * PS, "whole blocks after the head and the EOF block");
    // Different offsets within a block: nothing can be shared.
    let c = file(&fs, "c", &[]).ino;
    assert_eq!(fs.copy_range(a, 0, c, 1, 3 * PS), Ok(3 * PS));
    assert_eq!(fs.read(c, 1, 3 * PS).unwrap(), data[..3 * PS as usize]);
    assert_eq!(shared_bytes(&fs, c), 0);
    assert_eq!(fs.copy_range(a, 11 * PS, c, 0, PS), Ok(0), "from past EOF copies nothing");
    fs.check().unwrap();
}

#[test]
fn copy_range_over_4_gib_shares_every_mapped_block() {
    let (_m, fs) = mkfs(32 << 20);
    let a = fs.mknod(CTX, ROOT, b"a", libc::S_IFREG | 0o644, 0).unwrap().ino;
    for off in [0u64, 3 << 30, 5 << 30] {
        fs.write(a, off, &pattern(off as u8, (2 * PS) as usize), false).unwrap();
    }
    let b = file(&fs, "b", &[]).ino;
    let size = fs.getattr(a).unwrap().size;
    assert!(size > 4 << 30);
    assert_eq!(fs.copy_range(a, 0, b, 0, size), Ok(size));
    assert_eq!(fs.getattr(b).unwrap().size, size);
    assert_eq!(shared_bytes(&fs, b), 6 * PS);
    assert_eq!(fs.read(b, 5 << 30, 2 * PS).unwrap(), pattern((5u64 << 30) as u8, (2 * PS) as usize));
    fs.check().unwrap();
}

#[test]
fn unshare_gives_private_copies_with_the_same_bytes() {
    let (_m, fs) = mkfs(32 << 20);
    let data = pattern(23, (8 * PS) as usize);
    let a = file(&fs, "a", &data).ino;
    let b = file(&fs, "b", &[]).ino;
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    fs.unshare(b, 2 * PS, 3 * PS).unwrap();
    assert_eq!(shared_bytes(&fs, b), 5 * PS);
    fs.unshare(b, 0, u64::MAX).unwrap();
    assert_eq!(shared_bytes(&fs, b), 0);
    assert_eq!(shared_bytes(&fs, a), 0, "a is the last owner: no longer shared");
    assert_eq!(fs.read(b, 0, 8 * PS).unwrap(), data);
    fs.check().unwrap();
}

#[test]
fn clone_of_a_file_with_holes_keeps_the_holes() {
    let (_m, fs) = mkfs(32 << 20);
    let a = fs.mknod(CTX, ROOT, b"a", libc::S_IFREG | 0o644, 0).unwrap().ino;
    fs.write(a, 0, &pattern(1, (PS) as usize), false).unwrap();
    fs.write(a, 10 * PS, &pattern(2, (PS) as usize), false).unwrap();
    let b = file(&fs, "b", &pattern(3, (11 * PS) as usize)).ino;
    fs.clone_range(a, 0, b, 0, 0).unwrap();
    assert_eq!(fs.read(b, 5 * PS, PS).unwrap(), vec![0; PS as usize], "a hole must clone as a hole");
    assert_eq!(fs.extents(b).unwrap().len(), 2);
    assert_eq!(fs.seek(b, PS, libc::SEEK_DATA), Ok(10 * PS));
    fs.check().unwrap();
}

/// A pool with directories `src` and `dst` under the root.
fn src_and_dst(size: u64) -> (Arc<MemMedia>, Fs, Ino, Ino) {
    let (media, fs) = mkfs(size);
    let src = fs.mkdir(CTX, ROOT, b"src", 0o755).unwrap().ino;
    let dst = fs.mkdir(CTX, ROOT, b"dst", 0o755).unwrap().ino;
    (media, fs, src, dst)
}

/// Every entry `clone_entries` makes of `src`'s non-directories in `dst`, batch by batch.
fn clone_all_entries(fs: &Fs, src: Ino, dst: Ino) -> (u64, u64, Vec<Ino>) {
    let (mut cursor, mut made, mut bytes, mut skipped, mut calls) = (0, 0, 0, Vec::new(), 0);
    loop {
        let r = fs.clone_entries(src, dst, cursor, 1024).unwrap();
        made += r.files + r.symlinks + r.special;
        bytes += r.bytes;
        skipped.extend(r.skipped);
        calls += 1;
        assert!(calls < 100, "clone_entries does not come to an end");
        match r.next {
            Some(n) => cursor = n,
            None => return (made, bytes, skipped),
        }
    }
}

#[test]
fn clone_entries_copies_files_symlinks_and_nodes_with_their_attributes_in_one_go() {
    use daxlink::fs::{SetAttr, SetTime, Timespec};
    let (media, fs, src, dst) = src_and_dst(64 << 20);
    // A file with holes at the start, in the middle and at the end, and an unaligned EOF.
    let sparse = fs.mknod(CTX, src, b"sparse", libc::S_IFREG | 0o4751, 0).unwrap().ino;
    fs.write(sparse, 3 * PS, &pattern(7, (2 * PS) as usize), false).unwrap();
    fs.write(sparse, 9 * PS, &pattern(8, (PS + 10) as usize), false).unwrap();
    fs.setattr(sparse, SetAttr { size: Some(20 * PS + 100), ..SetAttr::default() }).unwrap();
    let when = |sec| Some(SetTime::At(Timespec { sec, nsec: 123 }));
    fs.setattr(
        sparse,
        SetAttr { uid: Some(7), gid: Some(8), atime: when(1_000_000), mtime: when(2_000_000), ..SetAttr::default() },
    )
    .unwrap();
    fs.setxattr(sparse, b"user.k", b"v", 0).unwrap();
    fs.setxattr(sparse, b"trusted.t", &pattern(9, 3000), 0).unwrap();
    let empty = fs.mknod(CTX, src, b"empty", libc::S_IFREG | 0o600, 0).unwrap().ino;
    fs.symlink(CTX, src, b"link", b"sparse").unwrap();
    fs.mknod(CTX, src, b"fifo", libc::S_IFIFO | 0o640, 0).unwrap();
    fs.mknod(CTX, src, b"null", libc::S_IFCHR | 0o666, 0x0103).unwrap();
    fs.mkdir(CTX, src, b"subdir", 0o700).unwrap();
    let multi = file(&fs, "multi", &pattern(3, (PS) as usize)).ino;
    fs.link(multi, src, b"two").unwrap();
    let used = fs.statfs().bfree;
    let (made, bytes, skipped) = clone_all_entries(&fs, src, dst);
    assert_eq!(made, 5, "sparse, empty, link, fifo, null");
    assert_eq!(bytes, 4 * PS, "the mapped pages of sparse, all shared");
    assert_eq!(skipped, vec![multi], "a file of several links is the caller's");
    assert_eq!(fs.statfs().bfree, used, "no data page is used");
    let check = |fs: &Fs| {
        let got = |name: &[u8]| fs.lookup(dst, name).unwrap();
        let (a, b) = (fs.getattr(sparse).unwrap(), got(b"sparse"));
        assert_eq!(
            (b.mode, b.uid, b.gid, b.size, b.atime, b.mtime, b.nlink, b.blocks),
            (a.mode, a.uid, a.gid, a.size, a.atime, a.mtime, 1, a.blocks)
        );
        assert_eq!(fs.read(b.ino, 0, 21 * PS).unwrap(), fs.read(sparse, 0, 21 * PS).unwrap());
        let (sm, dm) = (fs.extents(sparse).unwrap(), fs.extents(b.ino).unwrap());
        assert_eq!(
            dm.iter().map(|m| (m.fblock, m.pfn, m.pages)).collect::<Vec<_>>(),
            sm.iter().map(|m| (m.fblock, m.pfn, m.pages)).collect::<Vec<_>>()
        );
        assert!(dm.iter().all(|m| m.co_owned), "every page of the copy is shared");
        assert_eq!(fs.getxattr(b.ino, b"trusted.t").unwrap(), pattern(9, 3000));
        assert_eq!(fs.listxattr(b.ino).unwrap(), fs.listxattr(sparse).unwrap());
        assert_eq!(got(b"empty").mode, fs.getattr(empty).unwrap().mode);
        assert_eq!(fs.readlink(got(b"link").ino).unwrap(), b"sparse");
        assert_eq!(got(b"fifo").mode, libc::S_IFIFO | 0o640);
        assert_eq!((got(b"null").mode, got(b"null").rdev), (libc::S_IFCHR | 0o666, 0x0103));
        assert_eq!(fs.lookup(dst, b"subdir"), Err(Error::NotFound), "directories are the caller's");
        assert_eq!(fs.lookup(dst, b"multi"), Err(Error::NotFound));
        fs.check().unwrap();
    };
    check(&fs);
    check(&reopen(&media));
    // A second run finds every name taken and leaves each one to the caller.
    let (made, _, skipped) = clone_all_entries(&fs, src, dst);
    assert_eq!((made, skipped.len()), (0, 6));
    // A write to the copy unshares its page; the source keeps its bytes.
    let copy = fs.lookup(dst, b"sparse").unwrap().ino;
    fs.write(copy, 3 * PS, b"changed", false).unwrap();
    assert_eq!(fs.read(sparse, 3 * PS, PS).unwrap(), pattern(7, (PS) as usize));
    assert_eq!(shared_bytes(&fs, copy), 3 * PS);
    fs.check().unwrap();
}

#[test]
fn clone_entries_goes_on_from_its_cursor_over_large_directories() {
    let (media, fs, src, dst) = src_and_dst(64 << 20);
    for i in 0..1500 {
        let a = fs.mknod(CTX, src, format!("f{i}").as_bytes(), libc::S_IFREG | 0o644, 0).unwrap();
        if i % 100 == 0 {
            fs.write(a.ino, 0, &pattern(i as u8, (PS) as usize), false).unwrap();
            fs.mkdir(CTX, src, format!("d{i}").as_bytes(), 0o755).unwrap();
        }
    }
    let first = fs.clone_entries(src, dst, 0, 1024).unwrap();
    assert!(first.next.is_some() && first.files < 1500, "one call stops at its batch size");
    let (made, bytes, skipped) = clone_all_entries(&fs, src, dst);
    // The second pass starts over: the names of the first batch are taken.
    assert_eq!((first.files + made, first.bytes + bytes, skipped.len() as u64), (1500, 15 * PS, first.files));
    let names = |d| fs.readdir(d, 0, 10_000).unwrap().into_iter().filter(|e| e.name[0] == b'f').count();
    assert_eq!(names(dst), 1500);
    reopen(&media).check().unwrap();
}

#[test]
fn clone_entries_leaves_damaged_files_and_refuses_what_is_not_a_directory_or_immutable() {
    use daxlink::fs::inode::{FL_IMMUTABLE, FL_NODUMP};
    let (_m, fs, src, dst) = src_and_dst(32 << 20);
    let bad = fs.mknod(CTX, src, b"bad", libc::S_IFREG | 0o644, 0).unwrap().ino;
    fs.write(bad, 0, &pattern(1, (2 * PS) as usize), false).unwrap();
    let good = fs.mknod(CTX, src, b"good", libc::S_IFREG | 0o644, 0).unwrap().ino;
    fs.write(good, 0, &pattern(2, (PS) as usize), false).unwrap();
    let pfn = fs.extents(bad).unwrap()[0].pfn.plus(1);
    fs.memory_failure(pfn, 1).unwrap();
    let (made, _, skipped) = clone_all_entries(&fs, src, dst);
    assert_eq!((made, skipped), (1, vec![bad]), "a damaged file is left to the caller, which reports it");
    assert_eq!(fs.clone_entries(good, dst, 0, 1024).map(|_| ()), Err(Error::NotDir));
    assert_eq!(fs.clone_entries(src, good, 0, 1024).map(|_| ()), Err(Error::NotDir));
    // An immutable directory takes no new names; the copies keep no inode flags (cp -a).
    let locked = fs.mkdir(CTX, ROOT, b"locked", 0o755).unwrap().ino;
    fs.set_flags(locked, FL_IMMUTABLE).unwrap();
    assert_eq!(fs.clone_entries(src, locked, 0, 1024).map(|_| ()), Err(Error::Perm));
    fs.set_flags(good, FL_NODUMP).unwrap();
    let again = fs.mkdir(CTX, ROOT, b"again", 0o755).unwrap().ino;
    clone_all_entries(&fs, src, again);
    assert_eq!(fs.lookup(again, b"good").unwrap().flags, 0);
    fs.check().unwrap();
}

#[test]
fn clone_entries_at_a_full_inode_table_clones_what_fits_then_fails_with_enospc() {
    let (media, fs, src, dst) = src_and_dst(16 << 20);
    for i in 0..300 {
        let a = fs.mknod(CTX, src, format!("f{i:03}").as_bytes(), libc::S_IFREG | 0o644, 0).unwrap();
        fs.setxattr(a.ino, b"user.pad", &pattern(i as u8, 1000), 0).unwrap();
    }
    // Fill the metadata with big xattrs until nothing more fits, then free a few.
    let fill = fs.mkdir(CTX, ROOT, b"fill", 0o755).unwrap().ino;
    let mut n = 0;
    'full: loop {
        let a = fs.mknod(CTX, fill, format!("x{n}").as_bytes(), libc::S_IFREG | 0o644, 0).unwrap();
        for k in 0..16 {
            if fs.setxattr(a.ino, format!("user.{k}").as_bytes(), &[7u8; 60_000], 0) == Err(Error::NoSpace) {
                break 'full;
            }
        }
        n += 1;
    }
    let x0 = fs.lookup(fill, b"x0").unwrap().ino;
    fs.removexattr(x0, b"user.0").unwrap();
    // Batches go in, smaller and smaller, until not even one entry fits.
    let (mut cursor, mut made) = (0, 0);
    let err = loop {
        match fs.clone_entries(src, dst, cursor, 1024) {
            Ok(r) => {
                made += r.files;
                assert!(r.skipped.is_empty());
                cursor = r.next.expect("the directory ends before the table is full");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::NoSpace);
    assert!(made > 0 && made < 300, "some but not all fit: {made}");
    let fresh = reopen(&media);
    fresh.check().unwrap();
    let copies = fresh.readdir(dst, 0, 1000).unwrap().into_iter().filter(|e| e.name[0] == b'f').count();
    assert_eq!(copies as u64, made, "what was cloned is durable, the rest absent");
}
