//! Recovery of crash images (made by `arena::crash::CrashMedia`, or a killed daemon's
//! stores) and the rule a recovered tree must follow.

use std::sync::Arc;

use daxlink::arena::MemMedia;
use daxlink::fs::{Fs, Kind, Options};

use super::tree::{Tree, meta_differences, same_meta, walk};

/// Mounts a copy of `image` as a crash left it and checks it: the tree it shows, or
/// what failed.
pub fn recover(image: Vec<u8>) -> Result<Tree, String> {
    let fs = Fs::open(Arc::new(MemMedia::from_bytes(image)), Options::default())
        .map_err(|e| format!("recovery failed: {e}"))?;
    fs.check().map_err(|e| format!("check: {e}"))?;
    Ok(walk(&fs))
}

/// How much of an unsynced op's data a crash may leave.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stores {
    /// Killed daemon: every store up to the crash, in order. A byte may come from the
    /// states whose namespace the mount shows, or from the op in flight after them.
    InOrder,
    /// Power loss: any unflushed store may be missing. Only bytes that no op since the
    /// last durable state changed must be there (the fsync'd bytes).
    AnySubset,
}

/// The recovered tree `got` must show the namespace of one of `states` (the states
/// from the last durable one to the one after the op in flight), and its file bytes
/// must fit `stores`. Returns the first state whose namespace it shows.
pub fn recovered_prefix(got: &Tree, states: &[Tree], stores: Stores) -> Result<usize, String> {
    let m: Vec<usize> = (0..states.len()).filter(|&j| same_meta(&states[j], got)).collect();
    let (Some(&lo), Some(&hi)) = (m.first(), m.last()) else {
        let newest = states.last();
        let extra = meta_differences(got, newest);
        let missing = newest.map(|n| meta_differences(n, Some(got))).unwrap_or_default();
        return Err(format!(
            "namespace matches none of the {} states since the last sync: vs the newest, differs in {extra:?}, lacks {missing:?}",
            states.len()
        ));
    };
    let window = match stores {
        Stores::InOrder => lo..=(hi + 1).min(states.len() - 1),
        Stores::AnySubset => 0..=states.len() - 1,
    };
    for (path, s) in got.iter().filter(|(_, s)| s.kind == Kind::File) {
        let versions: Vec<Option<&Vec<u8>>> = window
            .clone()
            .map(|j| states[j].get(path).filter(|c| c.ino == s.ino).and_then(|c| c.bytes.as_ref()))
            .collect();
        // A page that failed before the crash fails after it: nothing to compare.
        let Some(bytes) = &s.bytes else { continue };
        for (i, b) in bytes.iter().enumerate() {
            let at = |v: &Option<&Vec<u8>>| v.and_then(|bytes| bytes.get(i).copied());
            let ok = match stores {
                Stores::InOrder => versions.iter().any(|v| at(v) == Some(*b)),
                Stores::AnySubset => {
                    let first = at(&versions[0]);
                    first.is_none() || versions.iter().any(|v| at(v) != first) || first == Some(*b)
                }
            };
            if !ok {
                return Err(format!("{path}: byte {i} = {b:#x}, which no state since the last durable one has"));
            }
        }
    }
    Ok(lo)
}
