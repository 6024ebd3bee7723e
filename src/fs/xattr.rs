//! Extended attributes, with Linux's namespaces, limits and errors (xattr(7)).

use super::acl::{ACL_ACCESS, ACL_DEFAULT, Acl};
use super::core::{Changer, Core};
use super::error::{Error, Result};
use super::inode::{Kind, Timespec};
use super::record::{Record, XATTR_NAME_MAX, XATTR_VALUE_MAX};
use super::tx::Tx;
use super::{XATTR_CREATE, XATTR_REPLACE};
use crate::types::Ino;

/// Total bytes of names and values one inode may carry.
pub const XATTR_INODE_MAX: usize = 1 << 20;

fn check_xattr_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Error::Range);
    }
    if name == ACL_ACCESS || name == ACL_DEFAULT {
        return Ok(());
    }
    let known = [b"user.".as_slice(), b"trusted.", b"security."];
    match known.iter().find(|p| name.starts_with(p)) {
        Some(p) if name.len() > p.len() => Ok(()),
        Some(_) => Err(Error::Invalid),
        // Other system.* names and unknown namespaces are not supported.
        None => Err(Error::NotSupported),
    }
}

impl Core {
    /// `xattr_permission`: user.* may be written only on regular files and directories.
    fn check_user_write(&self, ino: Ino, name: &[u8]) -> Result<()> {
        if name.starts_with(b"user.") && !matches!(self.inode(ino)?.attr.kind(), Kind::File | Kind::Dir) {
            return Err(Error::Perm);
        }
        Ok(())
    }

    pub fn setxattr(&mut self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        self.setxattr_by(ino, name, value, flags, Changer::Privileged)
    }

    /// `setxattr` by `who`, which matters for an access ACL: it drops set-group-ID
    /// for a changer outside the file's group (`posix_acl_update_mode`).
    pub fn setxattr_by(&mut self, ino: Ino, name: &[u8], value: &[u8], flags: i32, who: Changer<'_>) -> Result<()> {
        let tx = self.plan_setxattr(ino, name, value, flags, who)?;
        self.commit_tx(tx)
    }

    fn plan_setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32, who: Changer<'_>) -> Result<Tx> {
        self.writable()?;
        check_xattr_name(name)?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(Error::TooBig);
        }
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
            return Err(Error::Invalid);
        }
        self.check_user_write(ino, name)?;
        self.may_modify(ino)?;
        let inode = self.inode(ino)?;
        let old = inode.xattrs.get(name);
        match (old.is_some(), flags) {
            (true, XATTR_CREATE) => return Err(Error::Exists),
            (false, XATTR_REPLACE) => return Err(Error::NoData),
            _ => {}
        }
        let used: usize = inode.xattrs.iter().map(|(n, v)| n.len() + v.len()).sum();
        let freed = old.map_or(0, |v| name.len() + v.len());
        if used - freed + name.len() + value.len() > XATTR_INODE_MAX {
            return Err(Error::NoSpace);
        }
        let mut tx = Tx::new();
        match name {
            ACL_ACCESS | ACL_DEFAULT => self.set_acl(&mut tx, ino, name, value, who)?,
            _ => tx.push(Record::SetXattr { ino, name: name.to_vec(), value: value.to_vec() }),
        }
        tx.attr(&self.st, ino)?.ctime = Timespec::now();
        Ok(tx)
    }

    /// Sets a POSIX ACL, validated: the access ACL sets the mode's permission bits,
    /// and one the mode says all of is not stored (`posix_acl_update_mode`); a default
    /// ACL is for directories only (EACCES, as `set_posix_acl`).
    fn set_acl(&self, tx: &mut Tx, ino: Ino, name: &[u8], value: &[u8], who: Changer<'_>) -> Result<()> {
        let acl = Acl::decode(value)?;
        let inode = self.inode(ino)?;
        if name == ACL_DEFAULT {
            if inode.attr.kind() != Kind::Dir {
                return Err(Error::Access);
            }
            tx.push(Record::SetXattr { ino, name: name.to_vec(), value: acl.encode() });
            return Ok(());
        }
        if acl.is_equiv_mode() {
            if inode.xattrs.contains_key(name) {
                tx.push(Record::RemoveXattr { ino, name: name.to_vec() });
            }
        } else {
            tx.push(Record::SetXattr { ino, name: name.to_vec(), value: acl.encode() });
        }
        let a = tx.attr(&self.st, ino)?;
        a.mode = (a.mode & !0o777) | acl.mode_bits();
        if let Changer::Unprivileged(in_group) = who
            && !in_group(a.gid)
        {
            a.mode &= !libc::S_ISGID;
        }
        Ok(())
    }

    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        check_xattr_name(name)?;
        self.inode(ino)?.xattrs.get(name).cloned().ok_or(Error::NoData)
    }

    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for n in self.inode(ino)?.xattrs.keys() {
            out.extend_from_slice(n);
            out.push(0);
        }
        Ok(out)
    }

    pub fn removexattr(&mut self, ino: Ino, name: &[u8]) -> Result<()> {
        let tx = self.plan_removexattr(ino, name)?;
        self.commit_tx(tx)
    }

    fn plan_removexattr(&self, ino: Ino, name: &[u8]) -> Result<Tx> {
        self.writable()?;
        check_xattr_name(name)?;
        self.check_user_write(ino, name)?;
        self.may_modify(ino)?;
        if !self.inode(ino)?.xattrs.contains_key(name) {
            // Removing an ACL that is not there succeeds, as on ext4 and XFS (setfacl
            // -b and -k count on it; the kernel turns an empty ACL into a removal).
            return if name == ACL_ACCESS || name == ACL_DEFAULT { Ok(Tx::new()) } else { Err(Error::NoData) };
        }
        let mut tx = Tx::new();
        tx.push(Record::RemoveXattr { ino, name: name.to_vec() });
        tx.attr(&self.st, ino)?.ctime = Timespec::now();
        Ok(tx)
    }
}
