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

/// Whether two entries agree in everything but file data (a symlink's target counts).
pub fn same_entry_meta(a: &Seen, b: &Seen) -> bool {
    (a.ino, a.kind, a.nlink, a.size) == (b.ino, b.kind, b.nlink, b.size)
        && a.xattrs == b.xattrs
        && (a.kind == Kind::File || a.bytes == b.bytes)
}

/// Whether two trees have the same paths and agree in everything but file data,
/// without copying either.
pub fn same_meta(a: &Tree, b: &Tree) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((pa, sa), (pb, sb))| pa == pb && same_entry_meta(sa, sb))
}

/// The paths of `t` that `other` lacks or shows otherwise, file data aside.
pub fn meta_differences<'t>(t: &'t Tree, other: Option<&Tree>) -> Vec<&'t String> {
    let matched = |p: &String, s: &Seen| other.and_then(|o| o.get(p)).is_some_and(|o| same_entry_meta(s, o));
    t.iter().filter(|(p, s)| !matched(p, s)).map(|(p, _)| p).collect()
}
