//! Snapshots of a whole tree through the core API, to compare a recovered filesystem
//! with the states a run went through.

use std::collections::BTreeMap;

use daxlink::fs::{Fs, Kind};
use daxlink::types::Ino;

/// What a path shows: identity, kind, link count, size, bytes (file data or symlink
/// target; `None` if they cannot be read, e.g. a failed page) and xattrs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub ino: Ino,
    pub kind: Kind,
    pub nlink: u32,
    pub size: u64,
    pub bytes: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Path ("d/f", from the root) to what it shows.
pub type Tree = BTreeMap<String, Seen>;

/// Every path of `fs`.
pub fn walk(fs: &Fs) -> Tree {
    let mut out = Tree::new();
    let mut todo = vec![(String::new(), Ino::ROOT)];
    while let Some((prefix, dir)) = todo.pop() {
        let mut cookie = 0;
        loop {
            let batch = fs.readdir(dir, cookie, 64).expect("readdir");
            let Some(last) = batch.last() else { break };
            cookie = last.offset;
            for e in batch.iter().filter(|e| e.name != b"." && e.name != b"..") {
                let path = format!("{prefix}{}", String::from_utf8_lossy(&e.name));
                let a = fs.getattr(e.ino).expect("getattr of a listed entry");
                let bytes = match a.kind() {
                    Kind::File => fs.read(e.ino, 0, a.size).ok(),
                    Kind::Symlink => fs.readlink(e.ino).ok(),
                    _ => Some(Vec::new()),
                };
                let mut xattrs = Vec::new();
                for n in fs.listxattr(e.ino).expect("listxattr").split(|b| *b == 0).filter(|n| !n.is_empty()) {
                    xattrs.push((n.to_vec(), fs.getxattr(e.ino, n).expect("getxattr of a listed name")));
                }
                if a.kind() == Kind::Dir {
                    todo.push((format!("{path}/"), e.ino));
                }
                out.insert(path, Seen { ino: e.ino, kind: a.kind(), nlink: a.nlink, size: a.size, bytes, xattrs });
            }
        }
    }
    out
}

/// Whether two trees agree in everything but file data (what `meta` keeps), without
/// copying either.
pub fn same_meta(a: &Tree, b: &Tree) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((pa, sa), (pb, sb))| {
            pa == pb
                && (sa.ino, sa.kind, sa.nlink, sa.size) == (sb.ino, sb.kind, sb.nlink, sb.size)
                && sa.xattrs == sb.xattrs
                && (sa.kind == Kind::File || sa.bytes == sb.bytes)
        })
}

/// Everything but file data (a symlink's target stays).
pub fn meta(t: &Tree) -> Vec<(String, Seen)> {
    t.iter()
        .map(|(p, s)| {
            let bytes = if s.kind == Kind::File { None } else { s.bytes.clone() };
            (p.clone(), Seen { bytes, ..s.clone() })
        })
        .collect()
}
