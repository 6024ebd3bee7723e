//! Names: lookup, create, link, unlink, rename, readdir.

use super::acl::{ACL_ACCESS, ACL_DEFAULT, Acl};
use super::core::Core;
use super::error::{Error, Result};
use super::inode::{Attr, Body, Kind, LINK_MAX, NAME_MAX, SYMLINK_MAX, Timespec};
use super::record::Record;
use super::tx::Tx;
use super::{Ctx, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT};
use crate::types::Ino;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Cookie to resume after this entry.
    pub offset: u64,
    pub ino: Ino,
    pub kind: Kind,
    pub name: Vec<u8>,
}

/// What `readdir_each` hands each entry to: (cookie, inode, kind, name); true when the
/// reply is full.
pub type DirFill<'a> = dyn FnMut(u64, Ino, Kind, &[u8]) -> bool + 'a;

/// Whether `name` may be a directory entry: not empty, not `.` or `..`, no `/` or
/// NUL, at most `NAME_MAX` bytes (`ENAMETOOLONG` beyond, `EINVAL` for the rest).
/// Replay applies the same rule to a logged name (`State::apply`).
pub(super) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::Invalid);
    }
    Ok(())
}

impl Core {
    fn dir_of(&self, ino: Ino) -> Result<&super::inode::Dir> {
        self.inode(ino)?.dir().ok_or(Error::NotDir)
    }

    fn child(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        if name.len() > NAME_MAX {
            return Err(Error::NameTooLong);
        }
        self.dir_of(parent)?.get(name).ok_or(Error::NotFound)
    }

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        let ino = match name {
            b"." => parent,
            b".." => self.dir_of(parent)?.parent,
            _ => self.child(parent, name)?,
        };
        self.getattr(ino)
    }

    /// A new inode's attributes under `parent`: the caller's ids, but the group of a
    /// set-group-ID directory (and its bit, for a directory).
    fn new_attr(&self, ctx: Ctx, parent: Ino, mode: u32, now: Timespec) -> Result<Attr> {
        let pattr = self.inode(parent)?.attr;
        let setgid_dir = pattr.mode & libc::S_ISGID != 0;
        let mut mode = mode;
        if setgid_dir && Kind::from_mode(mode) == Some(Kind::Dir) {
            mode |= libc::S_ISGID;
        }
        let gid = if setgid_dir { pattr.gid } else { ctx.gid };
        Ok(Attr::new(Ino(self.st.next_ino()), mode, ctx.uid, gid, now))
    }

    /// The ACLs a new inode takes from `parent`'s default ACL, its mode masked by it
    /// (`posix_acl_create`: the umask is not applied where a default ACL is, which is
    /// why the FUSE layer asks `create_mode` first). Directories inherit the default
    /// ACL itself too; symlinks take nothing.
    fn inherit_acls(&self, parent: Ino, attr: &mut Attr) -> Result<Vec<Record>> {
        let Some(v) = self.inode(parent)?.xattrs.get(ACL_DEFAULT) else { return Ok(Vec::new()) };
        if attr.kind() == Kind::Symlink {
            return Ok(Vec::new());
        }
        let default = Acl::decode(v)?;
        let (mode, access) = default.create_masq(attr.mode);
        attr.mode = mode;
        let ino = attr.ino;
        let mut recs: Vec<Record> = access
            .map(|a| Record::SetXattr { ino, name: ACL_ACCESS.to_vec(), value: a.encode() })
            .into_iter()
            .collect();
        if attr.kind() == Kind::Dir {
            recs.push(Record::SetXattr { ino, name: ACL_DEFAULT.to_vec(), value: default.encode() });
        }
        Ok(recs)
    }

    /// The mode to create an inode with under `parent`, from the `mode` a caller asked
    /// for and its `umask`: the umask applies unless `parent` has a default ACL, whose
    /// entries mask the mode instead (`mode_strip_umask`, `posix_acl_create`).
    pub fn create_mode(&self, parent: Ino, mode: u32, umask: u32) -> Result<u32> {
        let has_default = self.inode(parent)?.xattrs.contains_key(ACL_DEFAULT);
        Ok(if has_default { mode } else { mode & !umask })
    }

    /// Commits a `plan_create` of `ino`; the new inode's attributes.
    fn commit_create(&mut self, tx: Tx, ino: Ino) -> Result<Attr> {
        self.commit_tx(tx)?;
        self.getattr(ino)
    }

    /// The transaction that creates an inode of any kind under `parent`, and the new
    /// inode's number.
    fn plan_create(
        &self,
        ctx: Ctx,
        parent: Ino,
        name: &[u8],
        mode: u32,
        rdev: u32,
        target: Option<&[u8]>,
    ) -> Result<(Tx, Ino)> {
        self.writable()?;
        check_name(name)?;
        let kind = Kind::from_mode(mode).ok_or(Error::Invalid)?;
        self.may_change_entries(parent, false)?;
        let pattr = self.inode(parent)?.attr;
        if self.dir_of(parent)?.get(name).is_some() {
            return Err(Error::Exists);
        }
        if pattr.nlink == 0 {
            // A removed directory takes no new entries (IS_DEADDIR).
            return Err(Error::NotFound);
        }
        if kind == Kind::Dir && pattr.nlink >= LINK_MAX {
            return Err(Error::TooManyLinks);
        }
        let now = Timespec::now();
        let mut attr =
            Attr { size: target.map_or(0, |t| t.len() as u64), rdev, ..self.new_attr(ctx, parent, mode, now)? };
        let acls = self.inherit_acls(parent, &mut attr)?;
        let mut tx = Tx::new();
        tx.create(attr);
        acls.into_iter().for_each(|r| tx.push(r));
        if let Some(t) = target {
            tx.push(Record::SetSymlink { ino: attr.ino, target: t.to_vec() });
        }
        tx.push(Record::Link { dir: parent, name: name.to_vec(), ino: attr.ino });
        let p = tx.attr(&self.st, parent)?;
        p.mtime = now;
        p.ctime = now;
        if kind == Kind::Dir {
            p.nlink += 1;
        }
        Ok((tx, attr.ino))
    }

    pub fn mknod(&mut self, ctx: Ctx, parent: Ino, name: &[u8], mode: u32, rdev: u32) -> Result<Attr> {
        match Kind::from_mode(mode) {
            Some(Kind::Dir | Kind::Symlink) | None => Err(Error::Invalid),
            Some(_) => {
                let (tx, ino) = self.plan_create(ctx, parent, name, mode, rdev, None)?;
                self.commit_create(tx, ino)
            }
        }
    }

    pub fn mkdir(&mut self, ctx: Ctx, parent: Ino, name: &[u8], mode: u32) -> Result<Attr> {
        let (tx, ino) = self.plan_create(ctx, parent, name, libc::S_IFDIR | (mode & 0o7777), 0, None)?;
        self.commit_create(tx, ino)
    }

    pub fn symlink(&mut self, ctx: Ctx, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr> {
        if target.len() > SYMLINK_MAX {
            return Err(Error::NameTooLong);
        }
        if target.is_empty() || target.contains(&0) {
            return Err(Error::Invalid);
        }
        let (tx, ino) = self.plan_create(ctx, parent, name, libc::S_IFLNK | 0o777, 0, Some(target))?;
        self.commit_create(tx, ino)
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        match &self.inode(ino)?.body {
            Body::Symlink(t) => Ok(t.clone()),
            _ => Err(Error::Invalid),
        }
    }

    pub fn link(&mut self, ino: Ino, parent: Ino, name: &[u8]) -> Result<Attr> {
        let tx = self.plan_link(ino, parent, name)?;
        self.commit_tx(tx)?;
        self.getattr(ino)
    }

    fn plan_link(&self, ino: Ino, parent: Ino, name: &[u8]) -> Result<Tx> {
        self.writable()?;
        check_name(name)?;
        // linkat looks the new name up before vfs_link refuses a directory.
        if self.dir_of(parent)?.get(name).is_some() {
            return Err(Error::Exists);
        }
        let a = self.inode(ino)?.attr;
        if a.kind() == Kind::Dir {
            return Err(Error::Perm);
        }
        self.may_change_entries(parent, false)?;
        self.may_modify(ino)?;
        if a.nlink == 0 {
            return Err(Error::NotFound);
        }
        if a.nlink >= LINK_MAX {
            return Err(Error::TooManyLinks);
        }
        let now = Timespec::now();
        let mut tx = Tx::new();
        tx.push(Record::Link { dir: parent, name: name.to_vec(), ino });
        let t = tx.attr(&self.st, ino)?;
        t.nlink += 1;
        t.ctime = now;
        let p = tx.attr(&self.st, parent)?;
        p.mtime = now;
        p.ctime = now;
        Ok(tx)
    }

    /// Drops one name of `ino` in `tx`; frees the inode when it was the last name of a
    /// file nobody has open, or a directory.
    /// An open (or, through FUSE, still referenced) inode outlives its last name: it
    /// becomes an orphan until its last `release`.
    fn drop_name(&self, tx: &mut Tx, ino: Ino, now: Timespec) -> Result<()> {
        let open = self.is_open(ino);
        let a = tx.attr(&self.st, ino)?;
        a.ctime = now;
        a.nlink = if a.kind() == Kind::Dir { 0 } else { a.nlink.saturating_sub(1) };
        if a.nlink == 0 && !open {
            tx.free(ino);
        }
        Ok(())
    }

    fn touch_dir(&self, tx: &mut Tx, dir: Ino, now: Timespec, nlink_delta: i32) -> Result<()> {
        let p = tx.attr(&self.st, dir)?;
        p.mtime = now;
        p.ctime = now;
        p.nlink = p.nlink.saturating_add_signed(nlink_delta);
        Ok(())
    }

    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let tx = self.plan_unlink(parent, name)?;
        self.commit_tx(tx)
    }

    fn plan_unlink(&self, parent: Ino, name: &[u8]) -> Result<Tx> {
        self.writable()?;
        let ino = self.child(parent, name)?;
        self.may_change_entries(parent, true)?;
        self.may_modify(ino)?;
        if self.inode(ino)?.attr.kind() == Kind::Dir {
            return Err(Error::IsDir);
        }
        let now = Timespec::now();
        let mut tx = Tx::new();
        tx.push(Record::Unlink { dir: parent, name: name.to_vec() });
        self.drop_name(&mut tx, ino, now)?;
        self.touch_dir(&mut tx, parent, now, 0)?;
        Ok(tx)
    }

    pub fn rmdir(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let tx = self.plan_rmdir(parent, name)?;
        self.commit_tx(tx)
    }

    fn plan_rmdir(&self, parent: Ino, name: &[u8]) -> Result<Tx> {
        self.writable()?;
        if name == b"." {
            return Err(Error::Invalid);
        }
        if name == b".." {
            return Err(Error::NotEmpty);
        }
        let ino = self.child(parent, name)?;
        self.may_change_entries(parent, true)?;
        self.may_modify(ino)?;
        if !self.dir_of(ino)?.is_empty() {
            return Err(Error::NotEmpty);
        }
        let now = Timespec::now();
        let mut tx = Tx::new();
        tx.push(Record::Unlink { dir: parent, name: name.to_vec() });
        self.drop_name(&mut tx, ino, now)?;
        self.touch_dir(&mut tx, parent, now, -1)?;
        Ok(tx)
    }

    /// Whether `dir` is `ancestor` or lies below it.
    fn is_within(&self, mut dir: Ino, ancestor: Ino) -> bool {
        loop {
            if dir == ancestor {
                return true;
            }
            match self.st.inode(dir).and_then(|i| i.dir()) {
                Some(d) if dir != Ino::ROOT => dir = d.parent,
                _ => return false,
            }
        }
    }

    /// rename(2)/renameat2(2), with RENAME_NOREPLACE, RENAME_EXCHANGE and
    /// RENAME_WHITEOUT: with the last, the source name becomes a whiteout (a character
    /// device 0:0 owned by `ctx`, what overlayfs takes for a deleted lower entry) in
    /// the same transaction, as `vfs_rename` expects of the filesystem.
    pub fn rename(
        &mut self,
        ctx: Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
    ) -> Result<()> {
        let tx = self.plan_rename(ctx, parent, name, new_parent, new_name, flags)?;
        self.commit_tx(tx)
    }

    fn plan_rename(
        &self,
        ctx: Ctx,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
    ) -> Result<Tx> {
        self.writable()?;
        // do_renameat2 refuses these combinations before the filesystem sees them;
        // renameat2(2): EINVAL for an unknown flag or an invalid combination.
        let exchange = flags & RENAME_EXCHANGE != 0;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0
            || exchange && flags & (RENAME_NOREPLACE | RENAME_WHITEOUT) != 0
        {
            return Err(Error::Invalid);
        }
        check_name(new_name)?;
        let src = self.child(parent, name)?;
        let dst = self.dir_of(new_parent)?.get(new_name);
        // may_delete of the source (and of the target, which goes or moves), may_create
        // in the target directory.
        self.may_change_entries(parent, true)?;
        self.may_modify(src)?;
        self.may_change_entries(new_parent, dst.is_some())?;
        if let Some(d) = dst {
            self.may_modify(d)?;
        }
        let src_dir = self.inode(src)?.attr.kind() == Kind::Dir;
        let now = Timespec::now();
        let mut tx = Tx::new();
        if flags & RENAME_EXCHANGE != 0 {
            let dst = dst.ok_or(Error::NotFound)?;
            if src == dst {
                return Ok(tx);
            }
            let dst_dir = self.inode(dst)?.attr.kind() == Kind::Dir;
            if (src_dir && self.is_within(new_parent, src)) || (dst_dir && self.is_within(parent, dst)) {
                return Err(Error::Invalid);
            }
            tx.push(Record::Unlink { dir: parent, name: name.to_vec() });
            tx.push(Record::Unlink { dir: new_parent, name: new_name.to_vec() });
            tx.push(Record::Link { dir: parent, name: name.to_vec(), ino: dst });
            tx.push(Record::Link { dir: new_parent, name: new_name.to_vec(), ino: src });
            let delta = src_dir as i32 - dst_dir as i32;
            self.touch_dir(&mut tx, parent, now, if parent == new_parent { 0 } else { -delta })?;
            self.touch_dir(&mut tx, new_parent, now, if parent == new_parent { 0 } else { delta })?;
            tx.attr(&self.st, src)?.ctime = now;
            tx.attr(&self.st, dst)?.ctime = now;
            return Ok(tx);
        }
        // do_renameat2's order: NOREPLACE, then the two ancestry traps, then vfs_rename.
        if dst.is_some() && flags & RENAME_NOREPLACE != 0 {
            return Err(Error::Exists);
        }
        if src_dir && self.is_within(new_parent, src) {
            return Err(Error::Invalid);
        }
        if let Some(d) = dst
            && self.inode(d)?.dir().is_some()
            && self.is_within(parent, d)
        {
            return Err(Error::NotEmpty);
        }
        let mut new_parent_delta = 0;
        if let Some(dst) = dst {
            if dst == src {
                // Two names of one inode: rename(2) does nothing.
                return Ok(tx);
            }
            let dst_attr = self.inode(dst)?.attr;
            match (src_dir, dst_attr.kind() == Kind::Dir) {
                (true, false) => return Err(Error::NotDir),
                (false, true) => return Err(Error::IsDir),
                (true, true) if !self.dir_of(dst)?.is_empty() => return Err(Error::NotEmpty),
                (true, true) => new_parent_delta -= 1,
                _ => {}
            }
            tx.push(Record::Unlink { dir: new_parent, name: new_name.to_vec() });
            self.drop_name(&mut tx, dst, now)?;
        }
        tx.push(Record::Unlink { dir: parent, name: name.to_vec() });
        tx.push(Record::Link { dir: new_parent, name: new_name.to_vec(), ino: src });
        if src_dir {
            new_parent_delta += 1;
        }
        if parent == new_parent {
            self.touch_dir(&mut tx, parent, now, new_parent_delta - src_dir as i32)?;
        } else {
            self.touch_dir(&mut tx, parent, now, -(src_dir as i32))?;
            self.touch_dir(&mut tx, new_parent, now, new_parent_delta)?;
        }
        tx.attr(&self.st, src)?.ctime = now;
        if flags & RENAME_WHITEOUT != 0 {
            // WHITEOUT_MODE and WHITEOUT_DEV are 0; the owner is the caller, as for
            // any new inode (ext4_whiteout_for_rename).
            let mut whiteout = self.new_attr(ctx, parent, libc::S_IFCHR, now)?;
            let acls = self.inherit_acls(parent, &mut whiteout)?;
            tx.create(whiteout);
            acls.into_iter().for_each(|r| tx.push(r));
            tx.push(Record::Link { dir: parent, name: name.to_vec(), ino: whiteout.ino });
        }
        Ok(tx)
    }

    /// Calls `add` with each entry after readdir cookie `offset` until it says the
    /// reply is full (returns true); the entry it refused is the next call's first.
    pub fn readdir_each(&mut self, ino: Ino, offset: u64, add: &mut DirFill) -> Result<()> {
        let d = self.dir_of(ino)?;
        let dots = [(1, ino, b".".as_slice()), (2, d.parent, b"..".as_slice())];
        let dots = dots.into_iter().filter(|(cookie, _, _)| offset < *cookie).map(|(c, i, n)| (c, i, Kind::Dir, n));
        let children = d.after(offset).map(|(cookie, name, child)| {
            (cookie, child, self.st.inode(child).map_or(Kind::File, |i| i.attr.kind()), name)
        });
        for (cookie, child, kind, name) in dots.chain(children) {
            if add(cookie, child, kind, name) {
                break;
            }
        }
        if self.options().dir_atime {
            self.note_access(ino);
        }
        Ok(())
    }

    pub fn readdir(&mut self, ino: Ino, offset: u64, max: usize) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        if max > 0 {
            self.readdir_each(ino, offset, &mut |offset, ino, kind, name| {
                out.push(DirEntry { offset, ino, kind, name: name.to_vec() });
                out.len() >= max
            })?;
        }
        Ok(out)
    }
}
