//! Extended attributes and POSIX ACLs through the core API: the errno table, list,
//! replace, remove, the per-inode space limit, mode and ACL kept in step.

mod common;

use daxlink::fs::{Changer, SetAttr, XATTR_CREATE, XATTR_REPLACE};
use daxlink::types::Ino;

use common::{MIB, Pool, ROOT, errno};

#[test]
fn xattr_errno_table() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let s = p.fs.symlink(ROOT, Ino::ROOT, b"s", b"f").unwrap().ino;
    p.fs.setxattr(f, b"user.a", b"1", 0).unwrap();
    let long_name = [b"user.".as_slice(), &[b'n'; 251]].concat();
    let cases: Vec<(&str, daxlink::Result<()>, i32)> = vec![
        ("CREATE over an existing name", p.fs.setxattr(f, b"user.a", b"2", XATTR_CREATE), libc::EEXIST),
        ("REPLACE of a missing name", p.fs.setxattr(f, b"user.b", b"2", XATTR_REPLACE), libc::ENODATA),
        ("get of a missing name", p.fs.getxattr(f, b"user.b").map(|_| ()), libc::ENODATA),
        ("remove of a missing name", p.fs.removexattr(f, b"user.b"), libc::ENODATA),
        ("empty name", p.fs.setxattr(f, b"", b"v", 0), libc::ERANGE),
        ("name over 255 bytes", p.fs.setxattr(f, &long_name, b"v", 0), libc::ERANGE),
        ("value over 64 KiB", p.fs.setxattr(f, b"user.big", &vec![0; 65537], 0), libc::E2BIG),
        ("bare namespace prefix", p.fs.setxattr(f, b"user.", b"v", 0), libc::EINVAL),
        ("unknown namespace", p.fs.setxattr(f, b"foo.bar", b"v", 0), libc::EOPNOTSUPP),
        ("malformed POSIX ACL", p.fs.setxattr(f, b"system.posix_acl_access", b"v", 0), libc::EINVAL),
        ("system.* other than ACLs", p.fs.setxattr(f, b"system.sockprotoname", b"v", 0), libc::EOPNOTSUPP),
        ("unknown flags", p.fs.setxattr(f, b"user.c", b"v", 4), libc::EINVAL),
        ("user.* on a symlink", p.fs.setxattr(s, b"user.a", b"v", 0), libc::EPERM),
        ("get user.* on a symlink", p.fs.getxattr(s, b"user.a").map(|_| ()), libc::ENODATA),
        ("get on a missing inode", p.fs.getxattr(Ino(999_999), b"user.a").map(|_| ()), libc::ENOENT),
    ];
    let mut wrong = Vec::new();
    for (what, got, want) in cases {
        match got {
            Err(e) if e.errno() == want => {}
            other => wrong.push(format!("{what}: got {other:?}, expected errno {want}")),
        }
    }
    assert!(wrong.is_empty(), "xattr errnos:\n  {}", wrong.join("\n  "));
    assert_eq!(p.fs.getxattr(f, b"user.a").unwrap(), b"1", "failed calls must not change the value");
}

#[test]
fn xattrs_list_replace_remove_and_survive_remount() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let d = p.mkdir(Ino::ROOT, "d");
    let s = p.fs.symlink(ROOT, Ino::ROOT, b"s", b"f").unwrap().ino;
    p.fs.setxattr(f, b"user.a", b"", 0).unwrap();
    p.fs.setxattr(f, b"user.b", &vec![7; 65536], XATTR_CREATE).unwrap();
    p.fs.setxattr(f, b"user.a", b"again", XATTR_REPLACE).unwrap();
    p.fs.setxattr(d, b"trusted.t", b"dir", 0).unwrap();
    p.fs.setxattr(s, b"trusted.t", b"link", 0).unwrap();
    let mut names: Vec<Vec<u8>> =
        p.fs.listxattr(f).unwrap().split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| n.to_vec()).collect();
    names.sort();
    assert_eq!(names, vec![b"user.a".to_vec(), b"user.b".to_vec()]);
    assert!(p.fs.listxattr(f).unwrap().ends_with(&[0]), "listxattr names end in NUL");
    let p = p.crash();
    assert_eq!(p.fs.getxattr(f, b"user.a").unwrap(), b"again");
    assert_eq!(p.fs.getxattr(f, b"user.b").unwrap(), vec![7; 65536]);
    assert_eq!(p.fs.getxattr(d, b"trusted.t").unwrap(), b"dir");
    assert_eq!(p.fs.getxattr(s, b"trusted.t").unwrap(), b"link");
    p.fs.removexattr(f, b"user.b").unwrap();
    let p = p.remount();
    assert_eq!(p.fs.listxattr(f).unwrap(), b"user.a\0");
    p.assert_consistent();
}

#[test]
fn xattr_space_per_inode_is_limited_with_enospc() {
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let v = vec![1u8; 65536];
    let mut failed = None;
    for i in 0..20 {
        if let Err(e) = p.fs.setxattr(f, format!("user.{i:02}").as_bytes(), &v, 0) {
            failed = Some((i, e));
            break;
        }
    }
    let (i, e) = failed.expect("1 MiB of xattrs per inode must be the limit");
    assert_eq!(e.errno(), libc::ENOSPC, "xattr {i}: {e}");
    assert_eq!(i, 15, "16 values of 64 KiB plus names exceed 1 MiB");
    p.assert_consistent();
    p.remount().assert_consistent();
}

/// A POSIX ACL xattr: version 2, then (tag, perm, id) entries.
fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

/// POSIX ACLs: the access ACL and the mode stay in step both ways, an ACL the mode
/// says all of is not stored, a malformed one is EINVAL with nothing stored, and a
/// directory's default ACL masks new inodes' modes instead of the umask.
#[test]
fn posix_acls_keep_mode_and_acl_in_step_and_are_inherited() {
    const UNDEF: u32 = u32::MAX;
    let access = b"system.posix_acl_access";
    let default = b"system.posix_acl_default";
    let p = Pool::new(32 * MIB);
    let f = p.create(Ino::ROOT, "f");
    let mode = |p: &Pool, i| p.fs.getattr(i).unwrap().mode & 0o777;
    let named = acl_xattr(&[(1, 6, UNDEF), (2, 4, 1000), (4, 0, UNDEF), (0x10, 4, UNDEF), (0x20, 0, UNDEF)]);
    p.fs.setxattr(f, access, &named, 0).unwrap();
    assert_eq!(mode(&p, f), 0o640, "the mask stands for the group bits");
    assert_eq!(p.fs.getxattr(f, access).unwrap(), named);
    p.fs.setattr(f, SetAttr { mode: Some(0o600), ..Default::default() }).unwrap();
    let masked = acl_xattr(&[(1, 6, UNDEF), (2, 4, 1000), (4, 0, UNDEF), (0x10, 0, UNDEF), (0x20, 0, UNDEF)]);
    assert_eq!(p.fs.getxattr(f, access).unwrap(), masked, "chmod must set the mask");
    let plain = acl_xattr(&[(1, 7, UNDEF), (4, 5, UNDEF), (0x20, 1, UNDEF)]);
    p.fs.setxattr(f, access, &plain, 0).unwrap();
    assert_eq!(mode(&p, f), 0o751);
    assert_eq!(errno(p.fs.getxattr(f, access).map(drop)), libc::ENODATA, "an ACL equal to the mode is not kept");
    let no_mask = acl_xattr(&[(1, 6, UNDEF), (2, 4, 1000), (4, 0, UNDEF), (0x20, 0, UNDEF)]);
    assert_eq!(errno(p.fs.setxattr(f, access, &no_mask, 0)), libc::EINVAL);
    assert_eq!(errno(p.fs.setxattr(f, access, b"\x02\0\0\0\x01", 0)), libc::EINVAL);
    assert_eq!(mode(&p, f), 0o751, "a refused ACL changed the mode");
    assert_eq!(errno(p.fs.setxattr(f, default, &plain, 0)), libc::EACCES, "default ACLs are for directories");
    assert_eq!(errno(p.fs.setxattr(f, b"system.other", b"x", 0)), libc::EOPNOTSUPP);
    p.fs.removexattr(f, access).expect("removing an ACL that is not there succeeds");
    // posix_acl_update_mode: an ACL set by a changer outside the file's group drops
    // set-group-ID; a member or a privileged changer keeps it.
    let g = p.create(Ino::ROOT, "g");
    p.fs.setattr(g, SetAttr { mode: Some(0o2770), gid: Some(100), ..Default::default() }).unwrap();
    let outsider = |_| false;
    let member = |gid| gid == 100;
    p.fs.setxattr_by(g, access, &named, 0, Changer::Unprivileged(&member)).unwrap();
    assert_eq!(p.fs.getattr(g).unwrap().mode & 0o7777, 0o2640);
    p.fs.setxattr_by(g, access, &named, 0, Changer::Unprivileged(&outsider)).unwrap();
    assert_eq!(p.fs.getattr(g).unwrap().mode & 0o7777, 0o0640, "an outsider's ACL change keeps set-group-ID");
    assert_eq!(errno(p.fs.removexattr(f, b"user.none")), libc::ENODATA);

    let d = p.mkdir(Ino::ROOT, "d");
    let def = acl_xattr(&[(1, 7, UNDEF), (4, 5, UNDEF), (8, 7, 50), (0x10, 7, UNDEF), (0x20, 5, UNDEF)]);
    p.fs.setxattr(d, default, &def, 0).unwrap();
    assert_eq!(p.fs.create_mode(d, 0o666, 0o022).unwrap(), 0o666, "no umask under a default ACL");
    assert_eq!(p.fs.create_mode(Ino::ROOT, 0o666, 0o022).unwrap(), 0o644);
    let new = p.fs.mknod(ROOT, d, b"new", libc::S_IFREG | 0o666, 0).unwrap();
    assert_eq!(new.mode & 0o777, 0o664, "each of owner, mask, other: requested and allowed");
    let inherited = acl_xattr(&[(1, 6, UNDEF), (4, 5, UNDEF), (8, 7, 50), (0x10, 6, UNDEF), (0x20, 4, UNDEF)]);
    assert_eq!(p.fs.getxattr(new.ino, access).unwrap(), inherited);
    assert_eq!(errno(p.fs.getxattr(new.ino, default).map(drop)), libc::ENODATA, "files take no default ACL");
    let sub = p.fs.mkdir(ROOT, d, b"sub", 0o777).unwrap();
    assert_eq!(p.fs.getxattr(sub.ino, default).unwrap(), def, "directories inherit the default ACL");
    let link = p.fs.symlink(ROOT, d, b"l", b"new").unwrap();
    assert_eq!(errno(p.fs.getxattr(link.ino, access).map(drop)), libc::ENODATA);
    p.fs.sync().unwrap();
    let p = p.crash();
    assert_eq!(p.fs.getxattr(new.ino, access).unwrap(), inherited);
    p.assert_consistent();
}
