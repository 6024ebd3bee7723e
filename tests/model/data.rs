//! Data ops of the model run: write, truncate, fallocate in every mode, reads checked
//! against the model, SEEK_DATA/SEEK_HOLE, EFBIG; ENOSPC must change nothing.

use super::*;

impl Run {
    /// An offset for a data op on a file of `size` bytes.
    pub(super) fn offset(&mut self, size: u64) -> u64 {
        match self.rng.below(100) {
            0..=29 => self.rng.range(0, size),
            30..=49 => size,
            50..=74 => size + self.rng.range(1, 64 << 10),
            75..=89 => self.rng.range(0, 4 << 20),
            90..=96 => self.rng.range(0, 64 << 20),
            _ => self.rng.range(0, 1 << 40),
        }
    }

    pub(super) fn length(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=39 => self.rng.range(1, 4096),
            40..=79 => self.rng.range(1, 64 << 10),
            _ => self.rng.range(1, 200 << 10),
        }
    }

    /// Pages a data op on `[off, end)` could need at most.
    pub(super) fn spanned(off: u64, end: u64) -> u64 {
        if end <= off { 0 } else { (end - 1) / PAGE - off / PAGE + 1 }
    }

    /// After an op on `[off, end)` of `ino`: the neighbourhood reads as the model says.
    pub(super) fn verify_range(&mut self, ino: Ino, off: u64, end: u64) {
        let from = off.saturating_sub(PAGE + 17);
        let len = end.saturating_sub(from).min(1 << 20) + 2 * PAGE;
        let got = match self.fs.read(ino, from, len) {
            Ok(v) => v,
            Err(e) => self.fail(format!("read({ino}, {from}, {len}): {e}")),
        };
        let want = self.model.content(ino).read(from, len);
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            self.fail(format!(
                "file {ino} after the op: byte {} is {:?}, model {:?} (read {} bytes, model {})",
                from + at as u64,
                got.get(at),
                want.get(at),
                got.len(),
                want.len()
            ));
        }
        let size = self.fs.getattr(ino).map(|a| a.size);
        if size != Ok(self.model.content(ino).size) {
            self.fail(format!("file {ino}: size {size:?}, model {}", self.model.content(ino).size));
        }
    }

    /// A data op failed with ENOSPC: allowed only if the op might need more pages than
    /// were free; the model stays as it was.
    pub(super) fn enospc(&mut self, what: &str, needed: u64, free_before: u64) {
        if needed <= free_before {
            self.fail(format!("{what}: ENOSPC although it needs at most {needed} pages and {free_before} were free"));
        }
        self.counts.enospc += 1;
        if let Some(l) = self.log.last_mut() {
            l.push_str(" = ENOSPC");
        }
    }

    pub(super) fn op_write(&mut self) {
        let Some(ino) = self.file() else {
            return self.op_create();
        };
        let size = self.model.content(ino).size;
        let append = self.rng.chance(10);
        let off = self.offset(size);
        let len = self.length() as usize;
        let data = self.rng.bytes(len);
        let at = if append { size } else { off };
        self.note(format!("write {ino} at {at} len {len}{}", if append { " (append)" } else { "" }));
        let n = len.min(MAX_FILE.saturating_sub(at) as usize);
        let free = self.fs.statfs().bfree;
        let got = self.fs.write(ino, off, &data, append);
        if let Err(Error::NoSpace) = got {
            // Plus the page holding the old EOF, which a gap may have to copy first.
            self.enospc("write", Self::spanned(at, at + n as u64) + 1, free);
        } else {
            let want = if at >= MAX_FILE { err(libc::EFBIG) } else { Ok(()) };
            self.expect("write", &got, want);
            if let Ok(k) = got {
                if k != n as u64 {
                    self.fail(format!("write returned {k}, expected {n}"));
                }
                self.model.content_mut(ino).write(at, &data[..n]);
            }
        }
        self.verify_range(ino, at, at + n as u64);
    }

    pub(super) fn op_truncate(&mut self) {
        let Some(ino) = self.file() else {
            return self.op_create();
        };
        let size = self.model.content(ino).size;
        let new = match self.rng.below(10) {
            0 => 0,
            1 => size / 2,
            2..=3 => size.saturating_sub(self.rng.range(1, 9000)),
            4..=5 => size + self.rng.range(1, 9000),
            6 => size + self.rng.range(1, 32 << 20),
            7 => self.rng.range(0, 1 << 20),
            8 => self.rng.range(0, 2 << 40),
            _ => {
                if self.rng.chance(50) {
                    MAX_FILE + self.rng.range(1, 4096)
                } else {
                    MAX_FILE - self.rng.range(0, 4096)
                }
            }
        };
        self.note(format!("truncate {ino} from {size} to {new}"));
        let want = if new > MAX_FILE { err(libc::EFBIG) } else { Ok(()) };
        let free = self.fs.statfs().bfree;
        let got = self.fs.setattr(ino, SetAttr { size: Some(new), ..Default::default() });
        if let (Err(Error::NoSpace), Ok(())) = (&got, &want) {
            // Growing zeroes the old EOF page's tail, copying it first if it is shared.
            self.enospc("truncate", 1, free);
            return self.verify_range(ino, new.min(size), new.max(size).min(new.min(size) + (256 << 10)));
        }
        self.expect("truncate", &got, want);
        if let Ok(a) = &got {
            if a.size != new {
                self.fail(format!("truncate to {new} left size {}", a.size));
            }
            self.model.content_mut(ino).truncate(new);
        }
        self.verify_range(ino, new.min(size), new.max(size).min(new.min(size) + (256 << 10)));
    }

    pub(super) fn op_fallocate(&mut self) {
        let Some(ino) = self.file() else {
            return self.op_create();
        };
        let size = self.model.content(ino).size;
        let modes = [
            0,
            FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_ZERO_RANGE,
            FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_PUNCH_HOLE,
        ];
        let mode = self.rng.pick(&modes).expect("modes");
        let mut off = match self.rng.below(10) {
            0..=5 => self.rng.range(0, size + 8192),
            6..=7 => self.offset(size),
            _ => self.rng.range(0, size) / PAGE * PAGE,
        };
        let mut len = match self.rng.below(20) {
            0 => 0,
            1..=12 => self.length(),
            13..=17 => self.rng.range(1, 1 << 20),
            _ => self.rng.range(1, 4 << 20),
        };
        if self.rng.chance(2) {
            off = MAX_FILE - self.rng.range(1, 8192);
            len = self.rng.range(1, 16384);
        }
        self.note(format!("fallocate {ino} mode {mode:#x} off {off} len {len}"));
        let end = off + len;
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        let mut errs = Vec::new();
        if len == 0 {
            errs.push(libc::EINVAL);
        }
        if mode == FALLOC_FL_PUNCH_HOLE {
            errs.push(libc::EOPNOTSUPP);
        }
        if end > MAX_FILE {
            errs.push(libc::EFBIG);
        }
        let want = first_of(errs);
        let valid = want.is_ok();
        let free = self.fs.statfs().bfree;
        let got = self.fs.fallocate(ino, mode, off, len);
        if let (Err(Error::NoSpace), Ok(())) = (&got, &want) {
            // Holes of the range, plus the shared pages holding the range's ends and EOF.
            let fill = if mode & FALLOC_FL_PUNCH_HOLE == 0 { Self::spanned(off, end) } else { 0 };
            self.enospc("fallocate", fill + 3, free);
        } else {
            self.expect("fallocate", &got, want);
            if got.is_ok() {
                let c = self.model.content_mut(ino);
                if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) != 0 {
                    c.zero(off, end);
                }
                if !keep && end > c.size {
                    c.size = end;
                }
            }
        }
        if valid {
            self.verify_range(ino, off, end.min(off + (2 << 20)));
        }
    }

    pub(super) fn op_read_check(&mut self) {
        let Some(ino) = self.file() else { return };
        let size = self.model.content(ino).size;
        let off = self.offset(size);
        let len = self.length();
        self.note(format!("read {ino} at {off} len {len}"));
        let got = self.fs.read(ino, off, len);
        let want = self.model.content(ino).read(off, len);
        match got {
            Ok(v) if v == want => {}
            Ok(v) => self.fail(format!(
                "read {ino} at {off} len {len}: {} bytes differ from the model's {}",
                v.len(),
                want.len()
            )),
            Err(e) => self.fail(format!("read {ino} at {off} len {len}: {e}")),
        }
    }

    /// SEEK_DATA/SEEK_HOLE: the fs decides what is allocated, but holes read as zeros,
    /// so whatever it skips must be zero in the model.
    pub(super) fn op_seek(&mut self) {
        let Some(ino) = self.file() else { return };
        let c = self.model.content(ino).clone();
        let off = if self.rng.chance(80) { self.rng.range(0, c.size) } else { self.offset(c.size) };
        let data = self.rng.chance(50);
        let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
        self.note(format!("seek {ino} {} from {off} (size {})", if data { "DATA" } else { "HOLE" }, c.size));
        let got = self.fs.seek(ino, off, whence);
        if off >= c.size {
            return self.expect("seek past EOF", &got, err(libc::ENXIO));
        }
        match (data, got) {
            (true, Ok(r)) if r >= off && r < c.size && c.is_zero(off, r) => {}
            (true, Err(e)) if e.errno() == libc::ENXIO && c.is_zero(off, c.size) => {}
            (false, Ok(r)) if r >= off && r <= c.size && (r == c.size || c.is_zero(r, (r / PAGE + 1) * PAGE)) => {}
            (_, got) => self.fail(format!("seek gave {}, which the model contradicts", show(&got))),
        }
        self.counts.ok += 1;
    }

    pub(super) fn op_efbig(&mut self) {
        let Some(ino) = self.file() else { return };
        let off = MAX_FILE - self.rng.range(0, 3000);
        let len = self.rng.range(1, 6000) as usize;
        let data = self.rng.bytes(len);
        self.note(format!("write {ino} near 8 TiB at {off} len {}", data.len()));
        let n = data.len().min((MAX_FILE - off) as usize);
        let free = self.fs.statfs().bfree;
        let got = self.fs.write(ino, off, &data, false);
        if let Err(Error::NoSpace) = got {
            return self.enospc("write near 8 TiB", Self::spanned(off, off + n as u64) + 1, free);
        }
        self.expect("write near 8 TiB", &got, if n == 0 { err(libc::EFBIG) } else { Ok(()) });
        if let Ok(k) = got {
            if k != n as u64 {
                self.fail(format!("write near 8 TiB wrote {k}, expected {n}"));
            }
            self.model.content_mut(ino).write(off, &data[..n]);
        }
        self.verify_range(ino, off, off + n as u64);
    }

    // -- Sharing: clone, copy_file_range, dedupe, unshare. Only requests the
    // VFS rules allow are generated, apart from the rules' own EINVAL cases.
}
