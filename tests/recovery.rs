//! Durability and recovery through the core API: fsync'd data after a crash, orphans,
//! log replay across checkpoints, torn and damaged metadata refused with a reason,
//! read-only mounts, a full metadata log.

mod common;

use std::sync::Arc;

use daxlink::arena::{Geometry, LayoutError, MemMedia};
use daxlink::fs::{Error, Fs, Options, PoolError, SetAttr, SlotError, XATTR_CREATE};
use daxlink::types::Ino;

use common::{MIB, PAGE, Pool, ROOT, errno, pattern, used_pages};

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
    assert_eq!(e, Error::Pool(PoolError::Layout(LayoutError::Checksum)));

    let mut nomagic = good.clone();
    nomagic[..8].fill(0);
    let e = open(nomagic).expect("no magic must be refused");
    assert_eq!(e, Error::Pool(PoolError::Layout(LayoutError::NotAPool)));

    let e = open(good[..(8 * MIB) as usize].to_vec()).expect("a truncated pool must be refused");
    assert_eq!(e, Error::Pool(PoolError::Layout(LayoutError::Truncated { recorded: 16 * MIB, len: 8 * MIB })));

    let e = open(vec![0; 100]).expect("a tiny pool must be refused");
    assert_eq!(e, Error::Pool(PoolError::Layout(LayoutError::NoSuperblock { len: 100 })));

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
    assert_eq!(e, Error::Pool(PoolError::NoCheckpoint([SlotError::Checksum, SlotError::Checksum])));
    assert!(!e.to_string().contains('\n'), "one line: {e}");
}

#[test]
fn mkfs_refuses_pool_below_minimum() {
    let media = MemMedia::new(8 * MIB);
    let e = Fs::mkfs(&media, ROOT, [0; 16]).expect_err("8 MiB is below the minimum");
    assert_eq!(e, Error::Pool(PoolError::Layout(LayoutError::TooSmall { size: 8 * MIB })));
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
