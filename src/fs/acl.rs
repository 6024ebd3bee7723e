//! POSIX ACLs (acl(5)), kept as the `system.posix_acl_access` and
//! `system.posix_acl_default` xattrs in the kernel's xattr format. With
//! `FUSE_POSIX_ACL` the kernel caches ACLs and checks access against them; keeping the
//! mode and the access ACL in step, and giving new inodes their directory's default
//! ACL, is the filesystem's work, done here as `fs/posix_acl.c` does it for ext4
//! (`posix_acl_update_mode`, `posix_acl_chmod`, `posix_acl_create`).

use super::error::{Error, Result};

pub const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
pub const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// `posix_acl_xattr_header.a_version`.
const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
/// The most entries one ACL may have (the xattr value limit: 4 + 8 * n bytes).
const MAX_ENTRIES: usize = 8191;

/// One entry: tag, permission bits (rwx), qualifier (uid or gid; none for the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A valid ACL, entries in the canonical order (`posix_acl_valid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl(Vec<Entry>);

impl Acl {
    /// Decodes and validates an xattr value: version 2, entries sorted by tag and
    /// qualifier, exactly one owner, owning group and other entry, a mask whenever a
    /// named user or group is there, permissions within rwx. Anything else is EINVAL.
    pub fn decode(v: &[u8]) -> Result<Acl> {
        let word = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) || (v.len() - 4) / 8 > MAX_ENTRIES || word(v, 0) != VERSION {
            return Err(Error::Invalid);
        }
        let entries: Vec<Entry> = v[4..]
            .chunks_exact(8)
            .map(|c| Entry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: word(c, 4),
            })
            .collect();
        let count = |t: u16| entries.iter().filter(|e| e.tag == t).count();
        let named = count(USER) + count(GROUP);
        let ordered = entries.windows(2).all(|w| {
            (w[0].tag, w[0].id) < (w[1].tag, w[1].id) || (w[0].tag == w[1].tag && !matches!(w[0].tag, USER | GROUP))
        });
        let known = entries.iter().all(|e| matches!(e.tag, USER_OBJ | USER | GROUP_OBJ | GROUP | MASK | OTHER));
        if !known
            || !ordered
            || entries.iter().any(|e| e.perm & !7 != 0)
            || count(USER_OBJ) != 1
            || count(GROUP_OBJ) != 1
            || count(OTHER) != 1
            || count(MASK) > 1
            || (named > 0 && count(MASK) == 0)
        {
            return Err(Error::Invalid);
        }
        Ok(Acl(entries))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for e in &self.0 {
            out.extend(e.tag.to_le_bytes());
            out.extend(e.perm.to_le_bytes());
            // Owner, owning group, mask and other carry no qualifier (ACL_UNDEFINED_ID).
            out.extend(if matches!(e.tag, USER | GROUP) { e.id } else { u32::MAX }.to_le_bytes());
        }
        out
    }

    fn perm(&self, tag: u16) -> Option<u32> {
        self.0.iter().find(|e| e.tag == tag).map(|e| e.perm as u32)
    }

    /// The permission bits the ACL implies (`posix_acl_equiv_mode`'s mode): owner,
    /// mask (or owning group), other.
    pub fn mode_bits(&self) -> u32 {
        let group = self.perm(MASK).or(self.perm(GROUP_OBJ)).unwrap_or(0);
        (self.perm(USER_OBJ).unwrap_or(0) << 6) | (group << 3) | self.perm(OTHER).unwrap_or(0)
    }

    /// Whether the mode alone says it all (no named entries, no mask): such an access
    /// ACL is not stored (`posix_acl_update_mode`).
    pub fn is_equiv_mode(&self) -> bool {
        self.0.iter().all(|e| matches!(e.tag, USER_OBJ | GROUP_OBJ | OTHER))
    }

    /// `posix_acl_chmod`: the owner, mask (or owning group) and other entries take the
    /// new permission bits.
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.perm(MASK).is_some();
        for e in &mut self.0 {
            let bits = match e.tag {
                USER_OBJ => mode >> 6,
                MASK => mode >> 3,
                GROUP_OBJ if !has_mask => mode >> 3,
                OTHER => mode,
                _ => continue,
            };
            e.perm = (bits & 7) as u16;
        }
    }

    /// `posix_acl_create_masq`: a directory's default ACL made the access ACL of a new
    /// inode with requested `mode`: each of owner, mask (or owning group) and other
    /// keeps only what both allow, and so does the mode, whose other bits stay.
    /// Returns the new mode, and the access ACL unless the mode says it all.
    pub fn create_masq(&self, mode: u32) -> (u32, Option<Acl>) {
        let mut acl = self.clone();
        let mut m = mode & 0o777;
        let has_mask = acl.perm(MASK).is_some();
        for e in &mut acl.0 {
            let shift = match e.tag {
                USER_OBJ => 6,
                MASK => 3,
                GROUP_OBJ if !has_mask => 3,
                OTHER => 0,
                _ => continue,
            };
            let p = e.perm as u32 & (m >> shift);
            e.perm = p as u16;
            m = (m & !(7 << shift)) | (p << shift);
        }
        let mode = (mode & !0o777) | m;
        (mode, (!acl.is_equiv_mode()).then_some(acl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        Acl(entries.iter().map(|&(tag, perm, id)| Entry { tag, perm, id }).collect()).encode()
    }

    #[test]
    fn valid_acls_round_trip_and_malformed_ones_are_einval() {
        let full =
            acl(&[(USER_OBJ, 7, 0), (USER, 5, 1000), (GROUP_OBJ, 5, 0), (GROUP, 1, 50), (MASK, 5, 0), (OTHER, 0, 0)]);
        assert_eq!(Acl::decode(&full).unwrap().encode(), full);
        let bad = [
            acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0)]), // no other
            acl(&[(USER_OBJ, 7, 0), (USER, 5, 1000), (GROUP_OBJ, 5, 0), (OTHER, 0, 0)]), // no mask
            acl(&[(GROUP_OBJ, 5, 0), (USER_OBJ, 7, 0), (OTHER, 0, 0)]), // out of order
            acl(&[(USER_OBJ, 7, 0), (USER, 5, 9), (USER, 4, 9), (GROUP_OBJ, 5, 0), (MASK, 7, 0), (OTHER, 0, 0)]),
            acl(&[(USER_OBJ, 8, 0), (GROUP_OBJ, 5, 0), (OTHER, 0, 0)]), // perm past rwx
            acl(&[(USER_OBJ, 7, 0), (0x40, 5, 0), (OTHER, 0, 0)]),      // unknown tag
            vec![1, 0, 0, 0],                                           // version 1
            vec![2, 0, 0, 0, 1],                                        // torn entry
            vec![],
        ];
        for (i, b) in bad.iter().enumerate() {
            assert_eq!(Acl::decode(b), Err(Error::Invalid), "malformed ACL {i} accepted");
        }
    }

    #[test]
    fn mode_and_acl_stay_in_step() {
        let mut a =
            Acl::decode(&acl(&[(USER_OBJ, 7, 0), (USER, 7, 1000), (GROUP_OBJ, 5, 0), (MASK, 7, 0), (OTHER, 4, 0)]))
                .unwrap();
        assert_eq!(a.mode_bits(), 0o774, "the mask stands for the group bits");
        assert!(!a.is_equiv_mode());
        a.chmod(0o750);
        assert_eq!(a.mode_bits(), 0o750);
        assert_eq!(a.perm(GROUP_OBJ), Some(5), "chmod changes the mask, not the owning group");
        assert_eq!(a.perm(USER), Some(7), "nor the named entries");
        let plain = Acl::decode(&acl(&[(USER_OBJ, 6, 0), (GROUP_OBJ, 4, 0), (OTHER, 0, 0)])).unwrap();
        assert!(plain.is_equiv_mode());
        assert_eq!(plain.mode_bits(), 0o640);
    }

    #[test]
    fn a_default_acl_masks_the_requested_mode_not_the_umask() {
        let def =
            Acl::decode(&acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 7, 0), (GROUP, 7, 50), (MASK, 7, 0), (OTHER, 5, 0)]))
                .unwrap();
        let (mode, access) = def.create_masq(libc::S_IFREG | 0o666);
        assert_eq!(mode, libc::S_IFREG | 0o664);
        let access = access.expect("named group entries need an access ACL");
        assert_eq!(access.perm(MASK), Some(6));
        assert_eq!(access.perm(GROUP), Some(7), "named entries are kept, the mask limits them");
        let plain = Acl::decode(&acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0), (OTHER, 0, 0)])).unwrap();
        assert_eq!(plain.create_masq(libc::S_IFDIR | 0o777), (libc::S_IFDIR | 0o750, None));
    }
}
