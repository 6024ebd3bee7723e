//! Linux parity of the core where several errors apply at once.

mod common;

use daxlink::fs::{Error, FALLOC_FL_PUNCH_HOLE, RENAME_NOREPLACE};
use daxlink::types::Ino;

use common::{MIB, Pool, ROOT, errno};

const TIB8: u64 = 8 << 40;

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
