//! fsck: what is wrong with a pool's namespace, and the repairs that are safe.
//!
//! Free space, refcounts, the reverse map and the page table are derived from the
//! extent maps at every mount, so they cannot leak or disagree on the media; what can
//! be wrong is what the records say: link counts, inodes no directory names (moved to
//! `lost+found`), orphans (unlinked while open, then a crash: freed with their pages),
//! a directory named twice. Anything else `check()` finds is reported and left alone.

use std::collections::HashMap;
use std::fmt;

use super::Ctx;
use super::core::Core;
use super::error::{CheckError, Error, Result};
use super::inode::{Body, Inode, Kind};
use super::record::Record;
use super::state::Mode;
use super::tx::Tx;
use crate::types::{FileBlock, Ino};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The inode records `recorded` links, the directories hold `counted`.
    LinkCount { ino: Ino, recorded: u32, counted: u32 },
    /// No directory names the inode though it records links.
    Unreachable { ino: Ino },
    /// An unlinked inode no one can open any more, holding `pages` pages.
    Orphan { ino: Ino, pages: u64 },
    /// A directory with more than one name.
    DirNamedTwice { ino: Ino },
    /// The block sits on a page another file also claims as its own (not a clone).
    DoublyOwned { ino: Ino, fblock: FileBlock },
    /// Anything else `check()` found (not repaired).
    Inconsistent(CheckError),
}

impl Problem {
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::LinkCount { .. } => "link_count",
            Problem::Unreachable { .. } => "unreachable",
            Problem::Orphan { .. } => "orphan",
            Problem::DirNamedTwice { .. } => "dir_named_twice",
            Problem::DoublyOwned { .. } => "doubly_owned",
            Problem::Inconsistent(_) => "inconsistent",
        }
    }

    /// Whether `--repair` fixes it.
    pub fn repairable(&self) -> bool {
        matches!(
            self,
            Problem::LinkCount { .. }
                | Problem::Unreachable { .. }
                | Problem::Orphan { .. }
                | Problem::DoublyOwned { .. }
        )
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::LinkCount { ino, recorded, counted } => {
                write!(f, "inode {ino} records {recorded} links but {counted} names point to it")
            }
            Problem::Unreachable { ino } => write!(f, "inode {ino} is in no directory"),
            Problem::Orphan { ino, pages } => write!(f, "orphan inode {ino} holds {pages} pages"),
            Problem::DirNamedTwice { ino } => write!(f, "directory {ino} has more than one name"),
            Problem::DoublyOwned { ino, fblock } => {
                write!(f, "block {fblock} of inode {ino} is on a page another file also claims as its own")
            }
            Problem::Inconsistent(e) => e.fmt(f),
        }
    }
}

const LOST_FOUND: &[u8] = b"lost+found";

impl Core {
    /// Every problem with the namespace, in inode order.
    pub fn problems(&self) -> Vec<Problem> {
        let mut names: HashMap<Ino, u32> = HashMap::new();
        let mut subdirs: HashMap<Ino, u32> = HashMap::new();
        for (ino, i) in self.st.inodes() {
            if let Body::Dir(d) = &i.body {
                for (_, _, child) in d.after(0) {
                    *names.entry(child).or_default() += 1;
                    if self.st.inode(child).is_some_and(|c| c.attr.kind() == Kind::Dir) {
                        *subdirs.entry(ino).or_default() += 1;
                    }
                }
            }
        }
        let mut inodes: Vec<(Ino, &Inode)> = self.st.inodes().collect();
        inodes.sort_by_key(|(ino, _)| *ino);
        let mut out = Vec::new();
        for (ino, i) in inodes {
            let counted = names.get(&ino).copied().unwrap_or(0);
            let pages = i.extents().map_or(0, |m| m.mapped_pages());
            if i.attr.kind() == Kind::Dir {
                if ino == Ino::ROOT {
                    continue;
                }
                if counted == 0 && i.attr.nlink == 0 {
                    out.push(Problem::Orphan { ino, pages: 0 });
                    continue;
                }
                match counted {
                    0 => out.push(Problem::Unreachable { ino }),
                    1 => {}
                    _ => out.push(Problem::DirNamedTwice { ino }),
                }
                let want = 2 + subdirs.get(&ino).copied().unwrap_or(0);
                if i.attr.nlink != want {
                    out.push(Problem::LinkCount { ino, recorded: i.attr.nlink, counted: want });
                }
            } else if counted == 0 && i.attr.nlink == 0 {
                out.push(Problem::Orphan { ino, pages });
            } else if counted == 0 {
                out.push(Problem::Unreachable { ino });
            } else if i.attr.nlink != counted {
                out.push(Problem::LinkCount { ino, recorded: i.attr.nlink, counted });
            }
        }
        for &(ino, fblock) in self.st.double_claims() {
            if self.st.inode(ino).and_then(|i| i.extents()).and_then(|m| m.lookup(fblock)).is_some() {
                out.push(Problem::DoublyOwned { ino, fblock });
            }
        }
        if out.iter().all(Problem::repairable)
            && let Err(e) = self.st.check()
        {
            // Only what the namespace problems above do not already explain.
            if out.is_empty() {
                out.push(Problem::Inconsistent(e));
            }
        }
        out
    }

    /// Fixes the repairable problems, one transaction each, then checkpoints.
    pub fn repair(&mut self, problems: &[Problem]) -> Result<Vec<String>> {
        // A new generation first: whatever lies past the replayed log can never replay.
        self.checkpoint()?;
        let mut done = Vec::new();
        for p in problems.iter().filter(|p| p.repairable()) {
            let mut tx = Tx::new();
            match p {
                Problem::LinkCount { ino, counted, .. } => tx.attr(&self.st, *ino)?.nlink = *counted,
                Problem::Orphan { ino, .. } => tx.free(*ino),
                Problem::DoublyOwned { ino, fblock } => {
                    // A private copy for this claimant: the other keeps the page.
                    self.unshare_block(*ino, *fblock)?;
                    done.push(format!("gave inode {ino} its own copy of block {fblock}"));
                    continue;
                }
                Problem::Unreachable { ino } => {
                    let lf = self.lost_and_found()?;
                    let name = format!("#{ino}").into_bytes();
                    tx.push(Record::Link { dir: lf, name, ino: *ino });
                    let is_dir = self.inode(*ino)?.attr.kind() == Kind::Dir;
                    if !is_dir {
                        tx.attr(&self.st, *ino)?.nlink = 1;
                    }
                    if is_dir {
                        tx.attr(&self.st, lf)?.nlink += 1;
                    }
                }
                _ => continue,
            }
            self.commit_tx(tx)?;
            done.push(match p {
                Problem::Unreachable { ino } => format!("moved inode {ino} to /lost+found/#{ino}"),
                Problem::Orphan { ino, pages } => format!("freed orphan inode {ino} and its {pages} pages"),
                Problem::LinkCount { ino, counted, .. } => format!("set the link count of inode {ino} to {counted}"),
                _ => String::new(),
            });
        }
        self.checkpoint()?;
        Ok(done)
    }

    /// `/lost+found`, made if missing.
    fn lost_and_found(&mut self) -> Result<Ino> {
        if let Some(ino) = self.inode(Ino::ROOT)?.dir().and_then(|d| d.get(LOST_FOUND)) {
            return Ok(ino);
        }
        Ok(self.mkdir(Ctx { uid: 0, gid: 0 }, Ino::ROOT, LOST_FOUND, 0o700)?.ino)
    }
}

/// What `daxlink fsck` found and did.
#[derive(Clone, Debug)]
pub struct FsckReport {
    pub problems: Vec<Problem>,
    pub repairs: Vec<String>,
    /// Problems still there at the end.
    pub left: Vec<Problem>,
    pub stats: super::Stats,
}

/// Checks (and with `repair`, fixes) a pool that is not mounted.
pub fn fsck(media: std::sync::Arc<dyn crate::arena::Media>, repair: bool) -> Result<FsckReport> {
    let opts = super::Options { read_only: !repair, ..Default::default() };
    let mut core = Core::load(media, opts, Mode::Fsck)?;
    let problems = core.problems();
    let mut report =
        FsckReport { problems: problems.clone(), repairs: Vec::new(), left: Vec::new(), stats: core.stats() };
    if repair && !problems.is_empty() {
        report.repairs = core.repair(&problems)?;
        core.st.clear_double_claims();
        report.left = core.problems();
        report.stats = core.stats();
    } else {
        report.left = problems;
    }
    if report.left.is_empty()
        && let Err(e) = core.st.check()
    {
        return Err(Error::RepairIncomplete(e));
    }
    Ok(report)
}
