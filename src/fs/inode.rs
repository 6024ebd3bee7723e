//! In-memory inodes. Their on-media form is the record stream of `fs::record`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use super::extent::ExtentMap;
use crate::types::Ino;

/// Longest name in a directory (NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Longest symlink target (PATH_MAX).
pub const SYMLINK_MAX: usize = 4096;
/// Largest file: 8 TiB (`s_maxbytes`).
pub const MAX_FILE_SIZE: u64 = 8 << 40;
/// Most hard links to one inode.
pub const LINK_MAX: u32 = 65000;

/// Seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    pub fn now() -> Timespec {
        Timespec::from_system(SystemTime::now())
    }
    fn from_parts(sec: i64, nsec: u32) -> Timespec {
        if nsec == 0 { Timespec { sec, nsec } } else { Timespec { sec: sec - 1, nsec: 1_000_000_000 - nsec } }
    }
    pub fn from_system(t: SystemTime) -> Timespec {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec { sec: d.as_secs() as i64, nsec: d.subsec_nanos() },
            Err(e) => Timespec::from_parts(-(e.duration().as_secs() as i64), e.duration().subsec_nanos()),
        }
    }
    pub fn to_system(self) -> SystemTime {
        let base = if self.sec >= 0 {
            UNIX_EPOCH + std::time::Duration::from_secs(self.sec as u64)
        } else {
            UNIX_EPOCH - std::time::Duration::from_secs(self.sec.unsigned_abs())
        };
        base + std::time::Duration::from_nanos(self.nsec as u64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            _ => return None,
        })
    }
}

/// What `stat` shows, and what a `SetInode` record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    /// Full `st_mode`: file type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Timespec,
    pub rdev: u32,
    pub flags: u32,
    /// 512-byte blocks held; derived from the extent map, not persisted.
    pub blocks: u64,
}

/// File attribute flags (`chattr`), as the Linux `FS_*_FL` bits of `FS_IOC_GETFLAGS`,
/// kept in `Attr::flags`. The kernel leaves enforcing them to a FUSE server
/// (`IS_IMMUTABLE`/`IS_APPEND` never hold for a FUSE inode), so the core does, where
/// the VFS would (`may_delete`, `may_open`, `notify_change`, `vfs_link`, ...).
pub const FL_IMMUTABLE: u32 = 0x10;
pub const FL_APPEND: u32 = 0x20;
pub const FL_NODUMP: u32 = 0x40;
pub const FL_NOATIME: u32 = 0x80;
/// Every flag daxlink keeps; any other is refused with EOPNOTSUPP, as ext4 refuses the
/// flags it does not know.
pub const FL_SUPPORTED: u32 = FL_IMMUTABLE | FL_APPEND | FL_NODUMP | FL_NOATIME;

impl Attr {
    pub fn immutable(&self) -> bool {
        self.flags & FL_IMMUTABLE != 0
    }

    pub fn append_only(&self) -> bool {
        self.flags & FL_APPEND != 0
    }

    /// The inode's generation, for file handles: a handle names an inode number and a
    /// generation, and an inode number used again after its inode was freed must not
    /// answer the old handle. The birth time, fixed for the inode's life and later for
    /// every inode that reuses the number, folded to the 32 bits the kernel keeps
    /// (`i_generation`).
    pub fn generation(&self) -> u64 {
        let ns = (self.btime.sec as u64).wrapping_mul(1_000_000_000).wrapping_add(self.btime.nsec as u64);
        (ns ^ (ns >> 32)) & 0xffff_ffff
    }

    /// A new inode's attributes: all times `now`, one link (two for a directory).
    pub fn new(ino: Ino, mode: u32, uid: u32, gid: u32, now: Timespec) -> Attr {
        let nlink = if Kind::from_mode(mode) == Some(Kind::Dir) { 2 } else { 1 };
        Attr {
            ino,
            mode,
            uid,
            gid,
            nlink,
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            rdev: 0,
            flags: 0,
            blocks: 0,
        }
    }

    pub fn kind(&self) -> Kind {
        Kind::from_mode(self.mode).unwrap_or(Kind::File)
    }
}

/// A directory: entries under stable readdir cookies, which are slots.
///
/// Cookies 1 and 2 are "." and ".."; entries take slots from 3. An entry keeps its
/// slot while it stays, so a readdir resumed at a cookie neither repeats nor skips
/// entries that stayed in place (POSIX readdir under concurrent change). A new name
/// takes the lowest slot a removal freed, else a new one at the end, as XFS fills the
/// free space of its directory blocks: a rename removes the old name first, so the new
/// one lands in the slot it left, behind a reader that just read it. A reader that
/// renames every entry it reads therefore sees each once and ends; with new slots at
/// the end for every name it would see its own renames again, without end.
#[derive(Clone, Debug)]
pub struct Dir {
    pub parent: Ino,
    entries: BTreeMap<u64, (Vec<u8>, Ino)>,
    names: HashMap<Vec<u8>, u64>,
    /// Slots below `next_cookie` that removals freed.
    free: BTreeSet<u64>,
    next_cookie: u64,
}

pub const FIRST_COOKIE: u64 = 3;

impl Dir {
    pub fn new(parent: Ino) -> Dir {
        Dir {
            parent,
            entries: BTreeMap::new(),
            names: HashMap::new(),
            free: BTreeSet::new(),
            next_cookie: FIRST_COOKIE,
        }
    }
    pub fn get(&self, name: &[u8]) -> Option<Ino> {
        self.names.get(name).map(|c| self.entries[c].1)
    }
    pub fn insert(&mut self, name: &[u8], ino: Ino) {
        let cookie = self.free.pop_first().unwrap_or_else(|| {
            self.next_cookie += 1;
            self.next_cookie - 1
        });
        if let Some(old) = self.names.insert(name.to_vec(), cookie) {
            self.entries.remove(&old);
            self.free.insert(old);
        }
        self.entries.insert(cookie, (name.to_vec(), ino));
    }
    pub fn remove(&mut self, name: &[u8]) -> Option<Ino> {
        let c = self.names.remove(name)?;
        self.free.insert(c);
        self.entries.remove(&c).map(|(_, i)| i)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Entries after `cookie`, in cookie order.
    pub fn after(&self, cookie: u64) -> impl Iterator<Item = (u64, &[u8], Ino)> {
        self.entries.range(cookie.saturating_add(1).max(FIRST_COOKIE)..).map(|(c, (n, i))| (*c, n.as_slice(), *i))
    }
    pub fn check(&self) -> Result<(), String> {
        if self.entries.len() != self.names.len() {
            return Err("directory name index out of step with its entries".into());
        }
        if self.entries.len() + self.free.len() != (self.next_cookie - FIRST_COOKIE) as usize
            || self.free.iter().any(|c| self.entries.contains_key(c) || *c >= self.next_cookie)
        {
            return Err("directory slots: a slot is both free and used, or neither".into());
        }
        for (n, c) in &self.names {
            if self.entries.get(c).map(|e| &e.0) != Some(n) {
                return Err(format!("directory index names {:?} at a wrong cookie", String::from_utf8_lossy(n)));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub enum Body {
    File(ExtentMap),
    Dir(Dir),
    Symlink(Vec<u8>),
    Special,
}

#[derive(Clone, Debug)]
pub struct Inode {
    pub attr: Attr,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub body: Body,
}

impl Inode {
    pub fn new(attr: Attr) -> Inode {
        let body = match attr.kind() {
            Kind::File => Body::File(ExtentMap::default()),
            Kind::Dir => Body::Dir(Dir::new(Ino(0))),
            Kind::Symlink => Body::Symlink(Vec::new()),
            _ => Body::Special,
        };
        Inode { attr, xattrs: BTreeMap::new(), body }
    }
    pub fn dir(&self) -> Option<&Dir> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }
    pub fn dir_mut(&mut self) -> Option<&mut Dir> {
        match &mut self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }
    pub fn extents(&self) -> Option<&ExtentMap> {
        match &self.body {
            Body::File(m) => Some(m),
            _ => None,
        }
    }
    /// The attributes with derived fields filled in.
    pub fn stat(&self) -> Attr {
        let mut a = self.attr;
        a.blocks = match &self.body {
            Body::File(m) => m.mapped_pages() * (crate::types::PAGE_SIZE / 512),
            Body::Symlink(t) if !t.is_empty() => 0,
            _ => 0,
        };
        if let Body::Dir(d) = &self.body {
            a.size = (d.len() as u64 + 2) * 32;
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespec_roundtrips_through_system_time_including_before_epoch() {
        for t in [
            Timespec { sec: 0, nsec: 0 },
            Timespec { sec: 1_700_000_000, nsec: 123_456_789 },
            Timespec { sec: -5, nsec: 999_999_999 },
        ] {
            assert_eq!(Timespec::from_system(t.to_system()), t);
        }
    }

    #[test]
    fn dir_cookies_are_stable_and_freed_slots_are_reused_lowest_first() {
        let mut d = Dir::new(Ino(1));
        for (i, n) in [b"a", b"b", b"c"].iter().enumerate() {
            d.insert(*n, Ino(i as u64 + 2));
        }
        let first: Vec<u64> = d.after(0).map(|e| e.0).collect();
        assert_eq!(first, vec![3, 4, 5]);
        d.remove(b"c");
        d.remove(b"a");
        d.insert(b"x", Ino(9));
        assert_eq!(
            d.after(0).map(|e| (e.0, e.1.to_vec())).collect::<Vec<_>>(),
            vec![(3, b"x".to_vec()), (4, b"b".to_vec())]
        );
        let resumed: Vec<&[u8]> = d.after(3).map(|e| e.1).collect();
        assert_eq!(resumed, vec![b"b".as_slice()], "b kept its slot");
        d.insert(b"y", Ino(10));
        d.insert(b"z", Ino(11));
        assert_eq!(d.after(4).map(|e| e.0).collect::<Vec<_>>(), vec![5, 6]);
        d.check().unwrap();
    }

    #[test]
    fn a_reader_that_renames_what_it_reads_sees_each_entry_once() {
        let mut d = Dir::new(Ino(1));
        for i in 0..1000u64 {
            d.insert(format!("f{i}").as_bytes(), Ino(i + 2));
        }
        let (mut at, mut seen) = (0, 0);
        loop {
            let Some((c, name, ino)) = d.after(at).next().map(|(c, n, i)| (c, n.to_vec(), i)) else { break };
            seen += 1;
            // rename(2) within the directory: the old name goes, the new one comes.
            d.remove(&name);
            d.insert(format!("r{seen}").as_bytes(), ino);
            at = c;
        }
        assert_eq!(seen, 1000);
        d.check().unwrap();
    }
}
