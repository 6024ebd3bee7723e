//! fsck on pools damaged on purpose: each problem is reported, `--repair` fixes the
//! safe ones, and a second fsck finds the pool clean.

mod common;

use std::process::Command;
use std::sync::Arc;

use daxlink::arena::{Geometry, Media, MemMedia};
use daxlink::fs::fsck::{Problem, fsck};
use daxlink::fs::journal::Journal;
use daxlink::fs::record::{Record, encode_all};
use daxlink::fs::{Attr, Ctx, Error, Fs, Options, PoolError};
use daxlink::types::{FileBlock, Ino};

use common::mkfs_image;

const CTX: Ctx = Ctx { uid: 0, gid: 0 };

/// Appends `recs` to the pool's log as one valid transaction, as a buggy daxlink would.
fn append_raw(m: &dyn Media, recs: &[Record]) {
    let geo = Geometry::read(m).unwrap();
    let mut j = Journal::recover(m, &geo).unwrap().journal;
    j.append(m, &encode_all(recs), 0).unwrap();
}

fn damaged_pool() -> (Arc<MemMedia>, Attr, Attr) {
    let m = Arc::new(MemMedia::from_bytes(mkfs_image(32 << 20)));
    let fs = Fs::open(m.clone(), Options::default()).unwrap();
    let a = fs.mknod(CTX, Ino::ROOT, b"a", libc::S_IFREG | 0o644, 0).unwrap();
    fs.write(a.ino, 0, &[1; 8192], false).unwrap();
    let b = fs.mknod(CTX, Ino::ROOT, b"b", libc::S_IFREG | 0o644, 0).unwrap();
    fs.write(b.ino, 0, &[2; 4096], false).unwrap();
    let pfn = fs.extents(b.ino).unwrap()[0].pfn;
    fs.sync().unwrap();
    drop(fs);
    let a = Attr { nlink: 3, ..a };
    // A wrong link count, a file no directory names, an orphan holding a page, and a
    // page claimed by two files as their own.
    let lost = Attr { ino: Ino(900), nlink: 1, size: 4096, ..b };
    let orphan = Attr { ino: Ino(901), nlink: 0, size: 4096, ..b };
    let free_pfn = pfn.plus(100);
    append_raw(
        &*m,
        &[
            Record::SetInode(a),
            Record::SetInode(lost),
            Record::SetInode(orphan),
            Record::Map { ino: Ino(901), fblock: FileBlock(0), pfn: free_pfn, pages: 1, cloned: false },
            Record::Map { ino: Ino(900), fblock: FileBlock(0), pfn, pages: 1, cloned: true },
            // A second sole claim on b's page: not a clone, a doubly owned page.
            Record::Map { ino: a.ino, fblock: FileBlock(4), pfn, pages: 1, cloned: false },
        ],
    );
    (m, a, b)
}

#[test]
fn damaged_pool_refuses_to_mount_and_fsck_names_each_problem() {
    let (m, a, _) = damaged_pool();
    let e = Fs::open(m.clone(), Options::default()).err().expect("a damaged pool mounted");
    assert!(matches!(e, Error::Pool(PoolError::LogApply(..))), "the doubly owned page stops replay: {e:?}");
    assert!(e.to_string().contains("fsck"), "the message says what to run: {e}");
    let r = fsck(m.clone(), false).unwrap();
    assert_eq!(
        r.problems,
        vec![
            Problem::LinkCount { ino: a.ino, recorded: 3, counted: 1 },
            Problem::Unreachable { ino: Ino(900) },
            Problem::Orphan { ino: Ino(901), pages: 1 },
            Problem::DoublyOwned { ino: a.ino, fblock: FileBlock(4) },
        ]
    );
    assert_eq!(r.left, r.problems, "a check without --repair must change nothing");
}

#[test]
fn repair_fixes_links_lost_files_and_orphans_then_the_pool_is_clean() {
    let (m, a, _) = damaged_pool();
    let r = fsck(m.clone(), true).unwrap();
    assert_eq!(r.repairs.len(), 4, "{:?}", r.repairs);
    assert!(r.left.is_empty(), "left: {:?}", r.left);
    let again = fsck(m.clone(), false).unwrap();
    assert!(again.problems.is_empty(), "second fsck: {:?}", again.problems);
    let fs = Fs::open(m.clone(), Options::default()).unwrap();
    assert_eq!(fs.getattr(a.ino).unwrap().nlink, 1);
    let lf = fs.lookup(Ino::ROOT, b"lost+found").unwrap().ino;
    let lost = fs.lookup(lf, b"#900").unwrap();
    assert!(fs.read(lost.ino, 0, 4096).unwrap() == vec![2; 4096], "the lost file's data was not kept");
    assert!(fs.getattr(Ino(901)).is_err(), "the orphan was not freed");
    let own = fs.extents(a.ino).unwrap().into_iter().find(|m| m.fblock == FileBlock(4)).unwrap();
    assert!(!own.co_owned, "the doubly owned block still shares its page");
    assert!(fs.read(lost.ino, 0, 4096).unwrap() == vec![2; 4096], "the other owner's data changed");
    fs.check().unwrap();
}

#[test]
fn cli_fsck_exit_codes_follow_fsck_8() {
    let (m, _, _) = damaged_pool();
    let dir = std::env::temp_dir().join(format!("daxlink-fsck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pool = dir.join("p.pool");
    std::fs::write(&pool, m.snapshot()).unwrap();
    let bin = env!("CARGO_BIN_EXE_daxlink");
    let run = |args: &[&str]| Command::new(bin).args(args).arg(&pool).output().unwrap();
    let check = run(&["fsck"]);
    assert_eq!(check.status.code(), Some(4), "{}", String::from_utf8_lossy(&check.stdout));
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(out.lines().count(), 4, "one line per problem: {out}");
    let repair = run(&["fsck", "--repair", "--json"]);
    assert_eq!(repair.status.code(), Some(1));
    let json = String::from_utf8_lossy(&repair.stdout);
    assert!(json.contains("\"kind\":\"link_count\"") && json.contains("\"left\":[]"), "{json}");
    assert_eq!(run(&["fsck"]).status.code(), Some(0));
    let missing = Command::new(bin).args(["fsck", "/nonexistent/pool"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(8));
    std::fs::remove_dir_all(&dir).unwrap();
}
