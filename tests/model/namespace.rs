//! Namespace ops of the model run: create, mkdir, symlink, unlink, rmdir, rename in
//! every flavour, link, open and release, xattrs.

use super::*;

impl Run {
    pub(super) fn op_create(&mut self) {
        let (p, n) = (self.dir(), self.name());
        self.note(format!("create {p}/{}", name(&n)));
        let want = if self.lookup_model(p, &n).is_some() { err(libc::EEXIST) } else { Ok(()) };
        let got = self.fs.mknod(ROOT, p, &n, libc::S_IFREG | 0o644, 0);
        self.expect("mknod", &got, want);
        if let Ok(a) = got {
            if a.nlink != 1 || a.size != 0 || a.kind() != Kind::File {
                self.fail(format!("new file has {a:?}"));
            }
            self.add_node(p, &n, a.ino, Body::File(Rc::new(Content::default())));
        }
    }

    pub(super) fn op_mkdir(&mut self) {
        let (p, n) = (self.dir(), self.name());
        self.note(format!("mkdir {p}/{}", name(&n)));
        let want = if self.lookup_model(p, &n).is_some() { err(libc::EEXIST) } else { Ok(()) };
        let got = self.fs.mkdir(ROOT, p, &n, 0o755);
        self.expect("mkdir", &got, want);
        if let Ok(a) = got {
            self.add_node(p, &n, a.ino, Body::Dir { entries: BTreeMap::new(), parent: p });
        }
    }

    pub(super) fn op_symlink(&mut self) {
        let (p, n) = (self.dir(), self.name());
        let len = if self.rng.chance(5) { 4096 } else { self.rng.range(1, 120) as usize };
        let target: Vec<u8> = self.rng.bytes(len).iter().map(|b| b'a' + b % 26).collect();
        self.note(format!("symlink {p}/{} -> {len} bytes", name(&n)));
        let want = if self.lookup_model(p, &n).is_some() { err(libc::EEXIST) } else { Ok(()) };
        let got = self.fs.symlink(ROOT, p, &n, &target);
        self.expect("symlink", &got, want);
        if let Ok(a) = got {
            self.add_node(p, &n, a.ino, Body::Symlink(target));
        }
    }

    pub(super) fn op_unlink(&mut self) {
        let (p, n) = self.entry();
        self.note(format!("unlink {p}/{}", name(&n)));
        let target = self.lookup_model(p, &n);
        let want = match target {
            None => err(libc::ENOENT),
            Some(i) if self.model.is_dir(i) => err(libc::EISDIR),
            Some(_) => Ok(()),
        };
        let got = self.fs.unlink(p, &n);
        self.expect("unlink", &got, want);
        if got.is_ok() {
            let i = self.model.entries_mut(p).remove(&n).expect("checked");
            self.model.drop_name(i);
        }
    }

    pub(super) fn op_rmdir(&mut self) {
        let (p, n) = self.entry();
        self.note(format!("rmdir {p}/{}", name(&n)));
        let want = match self.lookup_model(p, &n) {
            None => err(libc::ENOENT),
            Some(i) if !self.model.is_dir(i) => err(libc::ENOTDIR),
            Some(i) if !self.model.entries(i).is_empty() => err(libc::ENOTEMPTY),
            Some(_) => Ok(()),
        };
        let got = self.fs.rmdir(p, &n);
        self.expect("rmdir", &got, want);
        if got.is_ok() {
            let i = self.model.entries_mut(p).remove(&n).expect("checked");
            self.model.drop_name(i);
        }
    }

    /// renameat2(2): the error conditions of fs/namei.c `do_renameat2` and `vfs_rename`
    /// that hold, in the order Linux checks them.
    pub(super) fn rename_want(&self, sp: Ino, sn: &[u8], dp: Ino, dn: &[u8], flags: u32) -> Want {
        let m = &self.model;
        let Some(src) = m.entries(sp).get(sn).copied() else {
            return err(libc::ENOENT);
        };
        let dst = m.entries(dp).get(dn).copied();
        let exchange = flags & RENAME_EXCHANGE != 0;
        let mut errs = Vec::new();
        if flags & RENAME_NOREPLACE != 0 && dst.is_some() {
            errs.push(libc::EEXIST);
        }
        if exchange && dst.is_none() {
            errs.push(libc::ENOENT);
        }
        if dst == Some(src) {
            // Two names of one inode (or one name twice): nothing to do.
            return first_of(errs);
        }
        // The source an ancestor of the target.
        if m.is_dir(src) && m.is_within(dp, src) {
            errs.push(libc::EINVAL);
        }
        // The target an ancestor of the source.
        if let Some(d) = dst
            && m.is_dir(d)
            && m.is_within(sp, d)
        {
            errs.push(if exchange { libc::EINVAL } else { libc::ENOTEMPTY });
        }
        if let Some(d) = dst
            && !exchange
        {
            match (m.is_dir(src), m.is_dir(d)) {
                (true, false) => errs.push(libc::ENOTDIR),
                (false, true) => errs.push(libc::EISDIR),
                (true, true) if !m.entries(d).is_empty() => errs.push(libc::ENOTEMPTY),
                _ => {}
            }
        }
        first_of(errs)
    }

    pub(super) fn op_rename(&mut self) {
        let (sp, sn) = self.entry();
        let (dp, dn) = if self.rng.chance(25) { self.entry() } else { (self.dir(), self.name()) };
        let flags = match self.rng.below(10) {
            0..=5 => 0,
            6..=7 => RENAME_NOREPLACE,
            _ => RENAME_EXCHANGE,
        };
        self.note(format!("rename {sp}/{} -> {dp}/{} flags {flags}", name(&sn), name(&dn)));
        let want = self.rename_want(sp, &sn, dp, &dn, flags);
        let got = self.fs.rename(ROOT, sp, &sn, dp, &dn, flags);
        self.expect("rename", &got, want);
        if got.is_err() {
            return;
        }
        let src = self.lookup_model(sp, &sn).expect("checked");
        let dst = self.lookup_model(dp, &dn);
        if dst == Some(src) {
            return;
        }
        if flags & RENAME_EXCHANGE != 0 {
            let dst = dst.expect("checked");
            self.model.entries_mut(sp).insert(sn.clone(), dst);
            self.model.entries_mut(dp).insert(dn.clone(), src);
            if self.model.is_dir(dst) {
                self.model.set_parent(dst, sp);
            }
            if self.model.is_dir(src) {
                self.model.set_parent(src, dp);
            }
            return;
        }
        self.model.entries_mut(sp).remove(&sn);
        if let Some(d) = self.model.entries_mut(dp).insert(dn.clone(), src) {
            self.model.drop_name(d);
        }
        if self.model.is_dir(src) {
            self.model.set_parent(src, dp);
        }
    }

    pub(super) fn op_link(&mut self) {
        // Mostly named non-directories; now and then a directory or an unlinked open file.
        let all: Vec<Ino> = self.model.nodes.keys().copied().filter(|i| *i != Ino::ROOT).collect();
        let non_dirs: Vec<Ino> = all.iter().copied().filter(|i| !self.model.is_dir(*i)).collect();
        let ino = if self.rng.chance(90) { self.rng.pick(&non_dirs) } else { self.rng.pick(&all) };
        let Some(ino) = ino else {
            return self.op_create();
        };
        let (p, n) = (self.dir(), self.name());
        self.note(format!("link {ino} -> {p}/{}", name(&n)));
        // linkat(2): an existing name (EEXIST), a directory (EPERM), an inode with no
        // links left (ENOENT).
        let mut errs = Vec::new();
        if self.lookup_model(p, &n).is_some() {
            errs.push(libc::EEXIST);
        }
        if self.model.is_dir(ino) {
            errs.push(libc::EPERM);
        }
        if self.model.nodes[&ino].nlink == 0 {
            errs.push(libc::ENOENT);
        }
        let want = first_of(errs);
        let got = self.fs.link(ino, p, &n);
        self.expect("link", &got, want);
        if let Ok(a) = got {
            let node = self.model.nodes.get_mut(&ino).expect("checked");
            node.nlink += 1;
            let nlink = node.nlink;
            self.model.entries_mut(p).insert(n, ino);
            if a.nlink != nlink {
                self.fail(format!("link returned nlink {}, model {nlink}", a.nlink));
            }
        }
    }

    pub(super) fn op_open(&mut self) {
        let Some(ino) = self.file() else {
            return self.op_create();
        };
        self.note(format!("open {ino}"));
        let got = self.fs.open_inode(ino);
        self.expect("open", &got, Ok(()));
        *self.model.open.entry(ino).or_default() += 1;
    }

    pub(super) fn op_release(&mut self) {
        let open: Vec<Ino> = self.model.open.keys().copied().collect();
        let Some(ino) = self.rng.pick(&open) else {
            return self.op_open();
        };
        self.note(format!("release {ino}"));
        let got = self.fs.release(ino);
        self.expect("release", &got, Ok(()));
        let n = self.model.open.get_mut(&ino).expect("open");
        *n -= 1;
        if *n == 0 {
            self.model.open.remove(&ino);
            if self.model.nodes[&ino].nlink == 0 {
                self.model.nodes.remove(&ino);
            }
        }
    }

    pub(super) fn op_setxattr(&mut self) {
        let ino = self.any_inode();
        let n = self.rng.pick(&XATTR_NAMES).expect("names").to_vec();
        let len = if self.rng.chance(5) { self.rng.range(0, 16 << 10) } else { self.rng.range(0, 300) } as usize;
        let value = self.rng.bytes(len);
        let flags = [0, 0, XATTR_CREATE, XATTR_REPLACE][self.rng.below(4) as usize];
        self.note(format!("setxattr {ino} {} len {len} flags {flags}", name(&n)));
        let node = &self.model.nodes[&ino];
        let exists = node.xattrs.contains_key(&n);
        let want = if n.starts_with(b"user.") && node.kind() == Kind::Symlink {
            err(libc::EPERM)
        } else if flags == XATTR_CREATE && exists {
            err(libc::EEXIST)
        } else if flags == XATTR_REPLACE && !exists {
            err(libc::ENODATA)
        } else {
            Ok(())
        };
        let got = self.fs.setxattr(ino, &n, &value, flags);
        self.expect("setxattr", &got, want);
        if got.is_ok() {
            self.model.nodes.get_mut(&ino).expect("node").xattrs.insert(n, value);
        }
    }

    pub(super) fn op_removexattr(&mut self) {
        let ino = self.any_inode();
        let n = self.rng.pick(&XATTR_NAMES).expect("names").to_vec();
        self.note(format!("removexattr {ino} {}", name(&n)));
        let node = &self.model.nodes[&ino];
        // xattr_permission: writes of user.* on anything but files and directories.
        let want = if n.starts_with(b"user.") && node.kind() == Kind::Symlink {
            err(libc::EPERM)
        } else if node.xattrs.contains_key(&n) {
            Ok(())
        } else {
            err(libc::ENODATA)
        };
        let got = self.fs.removexattr(ino, &n);
        self.expect("removexattr", &got, want);
        if got.is_ok() {
            self.model.nodes.get_mut(&ino).expect("node").xattrs.remove(&n);
        }
    }
}
