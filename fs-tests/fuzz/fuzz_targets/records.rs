//! Log replay of arbitrary record streams: decoding and applying never panic; what
//! applies cleanly leaves the page table, allocator and reverse map consistent.
#![no_main]

use daxlink::arena::Geometry;
use daxlink::fs::record::{Record, decode_all};
use daxlink::fs::state::{Mode, State};
use daxlink::fs::{Attr, CheckError, Timespec};
use daxlink::types::Ino;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(recs) = decode_all(data) else { return };
    let geo = Geometry::for_size(16 << 20, [0; 16]).unwrap();
    let mut st = State::new(geo);
    let t = Timespec::default();
    let root = Attr {
        ino: Ino::ROOT,
        mode: libc::S_IFDIR | 0o755,
        uid: 0,
        gid: 0,
        nlink: 2,
        size: 0,
        atime: t,
        mtime: t,
        ctime: t,
        btime: t,
        rdev: 0,
        flags: 0,
        blocks: 0,
    };
    st.apply(&Record::SetInode(root), Mode::Replay).unwrap();
    for r in &recs {
        if st.apply(r, Mode::Replay).is_err() {
            return;
        }
    }
    st.derive_free_space();
    // The namespace may be wrong (that is fsck's business); what is derived from the
    // extent maps (page table, free space, reverse map) may not.
    // Each file's extent map is built by `apply` alone, and the rest is derived from
    // the extent maps; only the namespace and the poison list can be left wrong.
    if let Err(e) = st.check() {
        let built =
            matches!(e, CheckError::Extents(_) | CheckError::PageTable(_) | CheckError::Rmap(_) | CheckError::Space(_));
        assert!(!built, "structures apply builds disagree after a clean replay: {e:?}");
    }
});
