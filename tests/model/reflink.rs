//! Reflink ops of the model run: clone, copy_file_range, dedupe, unshare.

use super::*;

impl Run {
    /// Two files (maybe the same one).
    pub(super) fn two_files(&mut self) -> Option<(Ino, Ino)> {
        let files = self.model.files();
        let src = self.rng.pick(&files)?;
        let dst = if self.rng.chance(15) { src } else { self.rng.pick(&files)? };
        Some((src, dst))
    }

    pub(super) fn op_clone(&mut self) {
        let Some((src, dst)) = self.two_files() else { return self.op_create() };
        let (size_in, size_out) = (self.model.content(src).size, self.model.content(dst).size);
        if size_in == 0 {
            return self.op_write();
        }
        let soff = self.rng.range(0, (size_in - 1) / PAGE) * PAGE;
        let whole = (size_in - soff) / PAGE;
        let (len, count) = if whole == 0 || self.rng.chance(40) {
            // To the source's EOF: len 0, exactly, or past it.
            let len = match self.rng.below(3) {
                0 => 0,
                1 => size_in - soff,
                _ => size_in - soff + self.rng.range(1, 3 * PAGE),
            };
            (len, size_in - soff)
        } else {
            let k = self.rng.range(1, whole.min(64)) * PAGE;
            (k, k)
        };
        // Now and then past the destination's EOF: the gap must read zeros.
        let mut doff = match self.rng.below(4) {
            0 => soff,
            1 => size_out / PAGE * PAGE,
            _ => self.rng.range(0, (size_out + 16 * PAGE) / PAGE) * PAGE,
        };
        if doff > MAX_FILE {
            doff = size_out / PAGE * PAGE;
        }
        self.note(format!("clone {src}@{soff} -> {dst}@{doff} len {len} (sizes {size_in}/{size_out})"));
        // generic_remap_checks: the count stops at 8 TiB in the destination; the block
        // count covers the source's EOF page when the count reaches it.
        let mut errs = Vec::new();
        if doff >= MAX_FILE {
            errs.push(libc::EFBIG);
        }
        let count = count.min(MAX_FILE.saturating_sub(doff));
        let bcount = if soff + count == size_in { size_in.div_ceil(PAGE) * PAGE - soff } else { count / PAGE * PAGE };
        if src == dst && doff < soff + bcount && soff < doff + bcount {
            errs.push(libc::EINVAL);
        }
        // generic_remap_check_len: an unaligned tail must end at the destination's EOF.
        if !count.is_multiple_of(PAGE) && doff + count < size_out {
            errs.push(libc::EINVAL);
        }
        let want = first_of(errs);
        let free = self.fs.statfs().bfree;
        let got = self.fs.clone_range(src, soff, dst, doff, len);
        if let (Err(Error::NoSpace), Ok(())) = (&got, &want) {
            // Only the pages holding the two EOFs may need copying first.
            return self.enospc("clone", 2, free);
        }
        self.expect("clone_range", &got, want);
        if let Ok(n) = got {
            if n != count {
                self.fail(format!("clone_range returned {n}, expected {count}"));
            }
            let srcc = self.model.content(src).clone();
            self.model.content_mut(dst).copy_from(&srcc, soff, doff, count);
            self.verify_range(dst, doff, doff + count.min(1 << 20));
            self.verify_range(src, soff, soff + count.min(1 << 20));
        }
    }

    pub(super) fn op_copy_range(&mut self) {
        let Some((src, dst)) = self.two_files() else { return self.op_create() };
        let (size_in, size_out) = (self.model.content(src).size, self.model.content(dst).size);
        let soff = match self.rng.below(3) {
            0 => self.rng.range(0, size_in / PAGE) * PAGE,
            _ => self.rng.range(0, size_in + 100),
        };
        let doff = match self.rng.below(4) {
            0 => soff,
            1 => size_out,
            _ => self.rng.range(0, size_out + (64 << 10)),
        };
        let len = if self.rng.chance(30) { u64::MAX / 4 } else { self.length() };
        // generic_copy_file_checks: to the source's EOF, and to 8 TiB in the destination.
        let count = if soff >= size_in { 0 } else { len.min(size_in - soff) };
        let mut errs = Vec::new();
        if count > 0 && doff >= MAX_FILE {
            errs.push(libc::EFBIG);
        }
        let count = count.min(MAX_FILE.saturating_sub(doff));
        self.note(format!("copy_range {src}@{soff} -> {dst}@{doff} len {len} (count {count})"));
        if src == dst && count > 0 && doff < soff + count && soff < doff + count {
            errs.push(libc::EINVAL);
        }
        let want = first_of(errs);
        let free = self.fs.statfs().bfree;
        let got = self.fs.copy_range(src, soff, dst, doff, len);
        if let (Err(Error::NoSpace), Ok(())) = (&got, &want) {
            self.enospc("copy_range", Self::spanned(doff, doff + count) + 2, free);
            // Head, body and tail are separate steps: any of them may have landed.
            return self.adopt_partial(src, soff, dst, doff, count);
        }
        self.expect("copy_range", &got, want);
        if let Ok(n) = got {
            if n != count {
                self.fail(format!("copy_range returned {n}, expected {count}"));
            }
            let srcc = self.model.content(src).clone();
            self.model.content_mut(dst).copy_from(&srcc, soff, doff, count);
            self.verify_range(dst, doff, doff + count.min(1 << 20));
        }
    }

    /// After a copy that failed part-way: every byte of the destination range is either
    /// its old value or the source's; the model takes what the fs has.
    pub(super) fn adopt_partial(&mut self, src: Ino, soff: u64, dst: Ino, doff: u64, count: u64) {
        let old = self.model.content(dst).clone();
        let srcc = self.model.content(src).clone();
        let size = match self.fs.getattr(dst) {
            Ok(a) => a.size,
            Err(e) => self.fail(format!("getattr({dst}): {e}")),
        };
        if size < old.size || size > old.size.max(doff + count) {
            self.fail(format!("failed copy left size {size}, was {}, copy to {}", old.size, doff + count));
        }
        // A gap the copy opened past the old EOF reads zeros.
        if size > old.size && doff > old.size {
            let gap_end = doff.min(size).min(old.size + (4 << 20));
            match self.fs.read(dst, old.size, gap_end - old.size) {
                Ok(v) => {
                    if let Some(i) = v.iter().position(|b| *b != 0) {
                        self.fail(format!(
                            "failed copy exposed byte {} = {:#x} in the gap past the old EOF {}",
                            old.size + i as u64,
                            v[i],
                            old.size
                        ));
                    }
                }
                Err(e) => self.fail(format!("read({dst}): {e}")),
            }
        }
        // Pages that may hold anything but zeros, before or after.
        let end = (doff + count).min(size);
        if doff >= end {
            return self.model.content_mut(dst).truncate(size);
        }
        let (first, last) = (doff / PAGE, (end - 1) / PAGE);
        let mut idxs: BTreeSet<u64> = old.pages.range(first..=last).map(|(i, _)| *i).collect();
        match self.fs.extents(dst) {
            Ok(xs) => {
                for x in xs {
                    let (s, e) = (x.fblock.0.max(first), (x.fblock.0 + x.pages).min(last + 1));
                    idxs.extend(s..e);
                }
            }
            Err(e) => self.fail(format!("extents({dst}): {e}")),
        }
        let mut adopted = old.clone();
        adopted.truncate(size.max(old.size));
        adopted.size = size;
        for idx in idxs {
            let (ps, pe) = ((idx * PAGE).max(doff), ((idx + 1) * PAGE).min(end));
            let got = match self.fs.read(dst, ps, pe - ps) {
                Ok(v) => v,
                Err(e) => self.fail(format!("read({dst}, {ps}): {e}")),
            };
            let was = old.read(ps, pe - ps);
            let new = srcc.read(soff + (ps - doff), pe - ps);
            for (i, b) in got.iter().enumerate() {
                if *b != was.get(i).copied().unwrap_or(0) && *b != new.get(i).copied().unwrap_or(0) {
                    self.fail(format!(
                        "failed copy left byte {} = {b:#x}: neither the old {:?} nor the source's {:?}",
                        ps + i as u64,
                        was.get(i),
                        new.get(i)
                    ));
                }
            }
            adopted.write(ps, &got);
            adopted.size = size;
        }
        *self.model.content_mut(dst) = adopted;
    }

    pub(super) fn op_dedupe(&mut self) {
        let Some((src, dst)) = self.two_files() else { return self.op_create() };
        let (size_in, size_out) = (self.model.content(src).size, self.model.content(dst).size);
        let (wi, wo) = (size_in / PAGE, size_out / PAGE);
        if wi == 0 || wo == 0 {
            return self.op_write();
        }
        let soff = self.rng.range(0, wi - 1) * PAGE;
        let doff = if self.rng.chance(30) && soff < wo * PAGE { soff } else { self.rng.range(0, wo - 1) * PAGE };
        let max = (size_in - soff).min(size_out - doff) / PAGE;
        if max == 0 {
            return;
        }
        let len = self.rng.range(1, max.min(32)) * PAGE;
        self.note(format!("dedupe {src}@{soff} -> {dst}@{doff} len {len}"));
        let overlap = src == dst && doff < soff + len && soff < doff + len;
        let same = self.model.content(src).read(soff, len) == self.model.content(dst).read(doff, len);
        let got = self.fs.dedupe_range(src, soff, dst, doff, len);
        if overlap {
            return self.expect("dedupe_range", &got, err(libc::EINVAL));
        }
        self.expect("dedupe_range", &got, Ok(()));
        let want = if same { Dedupe::Same { bytes: len } } else { Dedupe::Differs };
        if got != Ok(want) {
            self.fail(format!("dedupe_range gave {}, expected {want:?}", show(&got)));
        }
        self.verify_range(dst, doff, doff + len);
    }

    pub(super) fn op_unshare(&mut self) {
        let Some(ino) = self.file() else { return self.op_create() };
        let size = self.model.content(ino).size;
        let off = self.rng.range(0, size);
        let len = if self.rng.chance(30) { u64::MAX / 4 } else { self.length() };
        self.note(format!("unshare {ino} at {off} len {len}"));
        let free = self.fs.statfs().bfree;
        let got = self.fs.unshare(ino, off, len);
        if let Err(Error::NoSpace) = got {
            self.enospc("unshare", Self::spanned(off, off.saturating_add(len).min(size)) + 1, free);
        } else {
            self.expect("unshare", &got, Ok(()));
        }
        self.verify_range(ino, off, off.saturating_add(len).min(size).min(off + (1 << 20)));
    }
}
