//! Comparing daxlink with the model: a file's bytes and holes, xattrs, the whole
//! namespace; and how results and errnos are shown in a failure.

use super::*;

pub(crate) fn errno_name(e: i32) -> String {
    let names = [
        (libc::ENOENT, "ENOENT"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EFBIG, "EFBIG"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENODATA, "ENODATA"),
        (libc::EPERM, "EPERM"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::ENXIO, "ENXIO"),
        (libc::EIO, "EIO"),
    ];
    names.iter().find(|(n, _)| *n == e).map_or(format!("errno {e}"), |(_, s)| s.to_string())
}

pub(crate) fn show<T: std::fmt::Debug>(r: &Result<T, Error>) -> String {
    match r {
        Ok(v) => {
            let v = format!("{v:?}");
            if v.len() > 40 { "Ok(..)".into() } else { format!("Ok({v})") }
        }
        Err(e) => format!("Err({} {e})", errno_name(e.errno())),
    }
}

pub(crate) fn name(n: &[u8]) -> String {
    String::from_utf8_lossy(n).into_owned()
}

/// Compares one file's contents and size.
pub(crate) fn compare_file(fs: &Fs, ino: Ino, c: &Content) -> Result<(), String> {
    let a = fs.getattr(ino).map_err(|e| format!("getattr({ino}): {e}"))?;
    if a.size != c.size {
        return Err(format!("file {ino}: size {} , model {}", a.size, c.size));
    }
    let npages = c.size.div_ceil(PAGE);
    let mut idxs: BTreeSet<u64> = c.pages.keys().copied().filter(|i| *i < npages).collect();
    for x in fs.extents(ino).map_err(|e| format!("extents({ino}): {e}"))? {
        idxs.extend((x.fblock.0..x.fblock.0 + x.pages).take_while(|b| *b < npages));
    }
    // Read runs of interesting pages; everything else is a hole in both.
    let idxs: Vec<u64> = idxs.into_iter().collect();
    let mut i = 0;
    while i < idxs.len() {
        let mut j = i;
        while j + 1 < idxs.len() && idxs[j + 1] == idxs[j] + 1 && j - i < 255 {
            j += 1;
        }
        let (off, len) = (idxs[i] * PAGE, (idxs[j] - idxs[i] + 1) * PAGE);
        let got = fs.read(ino, off, len).map_err(|e| format!("read({ino}, {off}, {len}): {e}"))?;
        let want = c.read(off, len);
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            return Err(format!(
                "file {ino}: contents differ at byte {} (fs {:?}, model {:?}; read of {len} at {off} gave {} bytes, model {})",
                off + at as u64,
                got.get(at),
                want.get(at),
                got.len(),
                want.len()
            ));
        }
        i = j + 1;
    }
    // Nothing readable at or past EOF.
    let past = fs.read(ino, c.size, 4096).map_err(|e| format!("read at EOF of {ino}: {e}"))?;
    if !past.is_empty() {
        return Err(format!("file {ino}: read at EOF {} returned {} bytes", c.size, past.len()));
    }
    Ok(())
}

pub(crate) fn compare_xattrs(fs: &Fs, ino: Ino, want: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), String> {
    let list = fs.listxattr(ino).map_err(|e| format!("listxattr({ino}): {e}"))?;
    let names: BTreeSet<Vec<u8>> = list.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| n.to_vec()).collect();
    let expect: BTreeSet<Vec<u8>> = want.keys().cloned().collect();
    if names != expect {
        let show = |s: &BTreeSet<Vec<u8>>| s.iter().map(|n| name(n)).collect::<Vec<_>>();
        return Err(format!("inode {ino}: xattrs {:?}, model {:?}", show(&names), show(&expect)));
    }
    for (n, v) in want {
        let got = fs.getxattr(ino, n).map_err(|e| format!("getxattr({ino}, {}): {e}", name(n)))?;
        if &got != v {
            return Err(format!(
                "inode {ino}: xattr {} is {} bytes, model {} bytes (or differs)",
                name(n),
                got.len(),
                v.len()
            ));
        }
    }
    Ok(())
}

/// The whole filesystem against the model.
pub(crate) fn compare(fs: &Fs, m: &Model) -> Result<(), String> {
    let st = fs.stats();
    if st.inodes != m.nodes.len() as u64 {
        return Err(format!("fs has {} inodes, model {}", st.inodes, m.nodes.len()));
    }
    for (ino, node) in &m.nodes {
        let a = fs.getattr(*ino).map_err(|e| format!("getattr({ino}): {e} (model has a {:?})", node.kind()))?;
        if a.kind() != node.kind() {
            return Err(format!("inode {ino} is a {:?}, model {:?}", a.kind(), node.kind()));
        }
        match &node.body {
            Body::Dir { entries, parent } => {
                let want_nlink = m.dir_nlink(*ino);
                if a.nlink != want_nlink {
                    return Err(format!("directory {ino}: nlink {}, model {want_nlink}", a.nlink));
                }
                let mut got = BTreeMap::new();
                let mut cookie = 0;
                let mut dots = Vec::new();
                loop {
                    let batch = fs.readdir(*ino, cookie, 7).map_err(|e| format!("readdir({ino}, {cookie}): {e}"))?;
                    let Some(last) = batch.last() else { break };
                    cookie = last.offset;
                    for e in batch {
                        if e.name == b"." || e.name == b".." {
                            dots.push((e.name.clone(), e.ino));
                            continue;
                        }
                        let kind = m.nodes.get(&e.ino).map(|n| n.kind());
                        if kind != Some(e.kind) {
                            return Err(format!(
                                "directory {ino}: entry {} is a {:?}, model {kind:?}",
                                name(&e.name),
                                e.kind
                            ));
                        }
                        if got.insert(e.name.clone(), e.ino).is_some() {
                            return Err(format!("directory {ino}: readdir returned {} twice", name(&e.name)));
                        }
                    }
                }
                let want_dots = vec![(b".".to_vec(), *ino), (b"..".to_vec(), *parent)];
                if dots != want_dots {
                    return Err(format!("directory {ino}: dot entries {dots:?}, model {want_dots:?}"));
                }
                if &got != entries {
                    let fmt = |e: &BTreeMap<Vec<u8>, Ino>| {
                        e.iter().map(|(n, i)| format!("{}={i}", name(n))).collect::<Vec<_>>()
                    };
                    return Err(format!("directory {ino}: entries {:?}, model {:?}", fmt(&got), fmt(entries)));
                }
                for (n, child) in entries {
                    let l = fs.lookup(*ino, n).map_err(|e| format!("lookup({ino}, {}): {e}", name(n)))?;
                    if l.ino != *child {
                        return Err(format!("lookup({ino}, {}) = {}, model {child}", name(n), l.ino));
                    }
                }
                let dd = fs.lookup(*ino, b"..").map_err(|e| format!("lookup({ino}, ..): {e}"))?;
                if dd.ino != *parent {
                    return Err(format!("directory {ino}: .. is {}, model {parent}", dd.ino));
                }
            }
            Body::File(c) => {
                if a.nlink != node.nlink {
                    return Err(format!("file {ino}: nlink {}, model {}", a.nlink, node.nlink));
                }
                compare_file(fs, *ino, c)?;
            }
            Body::Symlink(t) => {
                if a.nlink != node.nlink || a.size != t.len() as u64 {
                    return Err(format!(
                        "symlink {ino}: nlink {} size {}, model {} {}",
                        a.nlink,
                        a.size,
                        node.nlink,
                        t.len()
                    ));
                }
                let got = fs.readlink(*ino).map_err(|e| format!("readlink({ino}): {e}"))?;
                if &got != t {
                    return Err(format!("symlink {ino}: target {:?}, model {:?}", name(&got), name(t)));
                }
            }
        }
        compare_xattrs(fs, *ino, &node.xattrs)?;
    }
    Ok(())
}
