//! Inode attributes through the core API: setattr, lazily logged mtime, set-group-ID
//! directories, dropping set-ID bits on change, immutable and append-only inodes.

mod common;

use daxlink::fs::{Changer, SetAttr, SetTime, Timespec};
use daxlink::types::Ino;

use common::{MIB, Pool, ROOT, errno};

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
