//! The namespace through the core API: mkdir/rmdir, unlink, name rules, readdir
//! cookies, rename in every flavour (NOREPLACE, WHITEOUT, EXCHANGE), hard links,
//! symlinks.

mod common;

use daxlink::fs::{Ctx, Kind, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT};
use daxlink::types::Ino;

use common::{MIB, PAGE, Pool, ROOT, errno, pattern, used_pages};

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
