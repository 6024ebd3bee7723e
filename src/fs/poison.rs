//! Memory failure in the filesystem: the dax layer finds the owners of a
//! failed page; here every owner's file block is poisoned (reads fail with EIO until a
//! whole-page write moves it to a fresh page), the failure is logged with the owners'
//! paths, and the bad page and the poison are recorded in the pool.
//!
//! A failed metadata page is handled as XFS handles a metadata I/O error: if the
//! metadata it held is still intact in memory and the other checkpoint slot is whole,
//! a fresh checkpoint goes there first (the redundant copy); then the filesystem is
//! shut down to read-only with a message saying why.

use super::core::Core;
use super::error::{Error, Result};
use super::inode::Body;
use super::record::Record;
use super::state::Mode;
use crate::arena::MediaError;
use crate::dax::{Failure, PageState};
use crate::types::{FileBlock, Ino, Pfn};

/// Most pages one injection may fail.
pub const FAILURE_MAX_PAGES: u64 = 1 << 16;

/// Owners a failure's log line names by path; the rest are counted.
const LOG_OWNERS: usize = 16;

/// A bad page and the file blocks that still live on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPage {
    pub pfn: Pfn,
    pub owners: Vec<(Ino, FileBlock)>,
}

impl Core {
    /// A path of `ino` (one of its names), for messages.
    pub fn path_of(&self, ino: Ino) -> Option<String> {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != Ino::ROOT {
            let (dir, name) = self.st.inodes().find_map(|(d, i)| match &i.body {
                Body::Dir(dir) => dir.after(0).find(|e| e.2 == at).map(|e| (d, e.1.to_vec())),
                _ => None,
            })?;
            parts.push(String::from_utf8_lossy(&name).into_owned());
            at = dir;
        }
        parts.reverse();
        Some(format!("/{}", parts.join("/")))
    }

    /// Fails `count` arena pages from `pfn` (what a machine check would report): the
    /// injection path, whose caller drops the kernel's caches of the owners.
    pub fn memory_failure(&mut self, pfn: Pfn, count: u64) -> Result<Failure> {
        let geo = *self.st.geo();
        if count == 0 || count > FAILURE_MAX_PAGES || pfn.0.checked_add(count).is_none_or(|e| e > geo.pages_total) {
            return Err(Error::Invalid);
        }
        Ok(self.fail_pages(pfn, count))
    }

    /// Fails the pages an access found failed, or the kernel reported failed, and hands
    /// what was found to the failure sink (no caller is there to drop the caches).
    pub fn media_failed(&mut self, e: MediaError) -> Failure {
        let (pfn, count) = e.pages(self.st.geo().pages_total);
        log::error!("memory failure: {e}");
        let f = self.fail_pages(pfn, count);
        if let Some(sink) = self.failure_sink.as_ref().filter(|_| !f.owners.is_empty()) {
            // A closed sink means nobody caches the files any more.
            let _ = sink.send(f.clone());
        }
        f
    }

    /// Fails arena pages: metadata pages by the metadata rule, data pages through the
    /// page table and the holder, poisoning every owner's block and recording it all
    /// in the pool.
    fn fail_pages(&mut self, pfn: Pfn, count: u64) -> Failure {
        let geo = *self.st.geo();
        let end = pfn.0 + count;
        if pfn < geo.data_start && count > 0 {
            self.metadata_failure(pfn);
        }
        let first = pfn.max(geo.data_start);
        if first.0 >= end {
            return Failure::default();
        }
        let f = self.st.fail_pages(first, end - first.0);
        let mut recs: Vec<Record> = f.failed.iter().map(|&pfn| Record::BadPage { pfn }).collect();
        let mut blocks: Vec<(Ino, FileBlock)> = f.owners.iter().map(|o| (o.ino, o.index)).collect();
        blocks.sort();
        blocks.dedup();
        recs.extend(blocks.iter().map(|&(ino, fblock)| Record::Poison { ino, fblock }));
        if let Err(e) = self.commit(recs.clone()) {
            if let Error::Media(m) = e {
                self.metadata_failure(m.pages(geo.pages_total).0);
            }
            // Not recordable in the pool (read-only, or no log space): contain the damage
            // in memory all the same.
            log::error!(
                "memory failure at page {first}: cannot record it in the pool ({e}); it will not survive a remount"
            );
            for r in &recs {
                if let Err(e) = self.st.apply(r, Mode::Live) {
                    log::error!("memory failure: {e}");
                }
            }
        }
        self.log_failure(&f);
        f
    }

    /// One log line per failure: the pages, and the owners' paths up to `LOG_OWNERS`
    /// (`daxlink poison` lists every one).
    fn log_failure(&self, f: &Failure) {
        let pages = match f.failed.as_slice() {
            [] => return,
            [p] => format!("page {p}"),
            [a, .., b] => format!("{} pages ({a} to {b})", f.failed.len()),
        };
        if f.owners.is_empty() {
            log::error!("memory failure: {pages} failed; it held no file data");
            return;
        }
        let named: Vec<String> = f
            .owners
            .iter()
            .take(LOG_OWNERS)
            .map(|o| {
                let path = self.path_of(o.ino).unwrap_or_else(|| format!("<inode {}>", o.ino));
                format!("{path} at offset {}", o.index.byte())
            })
            .collect();
        let more = match f.owners.len().saturating_sub(LOG_OWNERS) {
            0 => String::new(),
            n => format!(", and {n} more (daxlink poison lists them all)"),
        };
        let via = if f.holder_calls > 0 { " (shared pages: found by the holder)" } else { "" };
        log::error!("memory failure: {pages} failed{via}; {} owner(s): {}{more}", f.owners.len(), named.join(", "));
    }

    fn metadata_failure(&mut self, pfn: Pfn) {
        let geo = *self.st.geo();
        let in_slot = |i: usize| pfn >= geo.cp_start[i] && pfn.0 < geo.cp_start[i].0 + geo.cp_pages;
        let region = if pfn.0 == 0 {
            "the superblock"
        } else if pfn < geo.cp_start[0] {
            "the metadata log"
        } else {
            "a checkpoint"
        };
        // The next checkpoint goes to the slot the current one is not in.
        let next_slot = ((self.generation() + 1) % 2) as usize;
        let mut msg = format!("metadata page {pfn} ({region}) failed");
        if pfn.0 != 0 && !in_slot(next_slot) && self.writable().is_ok() {
            match self.checkpoint() {
                Ok(()) => msg.push_str("; the metadata was rewritten to the other checkpoint slot"),
                Err(e) => msg.push_str(&format!("; rewriting the metadata failed: {e}")),
            }
        }
        msg.push_str("; the filesystem is now read-only: unmount, then run daxlink fsck");
        log::error!("{msg}");
        self.shut_down(msg);
    }

    /// Every bad page with the file blocks still on it.
    pub fn bad_pages(&self) -> Vec<BadPage> {
        self.st
            .pages()
            .bad_pages()
            .map(|pfn| {
                let owners = match self.st.pages().state(pfn) {
                    PageState::Free => Vec::new(),
                    PageState::Owned { mapping, index } => vec![(mapping, index)],
                    PageState::Shared { .. } => {
                        self.st.rmap().owners(pfn, 1).iter().map(|o| (o.ino, o.index)).collect()
                    }
                };
                BadPage { pfn, owners }
            })
            .collect()
    }

    /// The first poisoned block of `ino` in `[first, last]`, if any.
    pub(super) fn first_poisoned(&self, ino: Ino, first: FileBlock, last: FileBlock) -> Option<FileBlock> {
        self.st.poisoned(ino, first..FileBlock(last.0.saturating_add(1))).next()
    }

    pub(super) fn is_poisoned(&self, ino: Ino, b: FileBlock) -> bool {
        self.st.is_poisoned(ino, b)
    }
}
