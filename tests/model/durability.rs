//! Durability ops of the model run: sync, clean remount, a crash right after a sync
//! (exactly the model) and anywhere else (the model as at some op since the last sync).

use super::*;

impl Run {
    pub(super) fn op_sync(&mut self) {
        self.note("sync".into());
        if let Err(e) = self.fs.sync() {
            self.fail(format!("sync: {e}"));
        }
        self.counts.syncs += 1;
        self.candidates = vec![self.model.clone()];
    }

    pub(super) fn reopen(&mut self, bytes: Vec<u8>, what: &str) {
        let media = Arc::new(MemMedia::from_bytes(bytes));
        let fs = match Fs::open(media.clone(), Options::default()) {
            Ok(fs) => fs,
            Err(e) => self.fail(format!("{what}: open failed: {e}")),
        };
        self.media = media;
        self.fs = fs;
        if let Err(e) = self.fs.check() {
            self.fail(format!("{what}: check after reopen: {e}"));
        }
    }

    pub(super) fn op_remount(&mut self) {
        self.note("unmount + mount".into());
        if let Err(e) = self.fs.unmount() {
            self.fail(format!("unmount: {e}"));
        }
        let bytes = self.media.snapshot();
        self.reopen(bytes, "remount");
        self.model.after_remount();
        if let Err(e) = compare(&self.fs, &self.model) {
            self.fail(format!("after a clean remount: {e}"));
        }
        self.counts.remounts += 1;
        self.candidates = vec![self.model.clone()];
    }

    pub(super) fn op_crash_after_sync(&mut self) {
        self.note("sync + crash".into());
        if let Err(e) = self.fs.sync() {
            self.fail(format!("sync: {e}"));
        }
        let bytes = self.media.snapshot();
        self.reopen(bytes, "crash after sync");
        self.model.after_remount();
        if let Err(e) = compare(&self.fs, &self.model) {
            self.fail(format!("after sync and a crash (log replay): {e}"));
        }
        self.counts.crashes += 1;
        self.candidates = vec![self.model.clone()];
    }

    /// A crash with no sync: the recovered state must be the model at some op since
    /// the last durable point (newest first: with in-memory media nothing is lost).
    pub(super) fn op_crash_anywhere(&mut self) {
        self.note(format!("crash ({} states since the last sync)", self.candidates.len()));
        let bytes = self.media.snapshot();
        self.reopen(bytes, "crash");
        let mut first_err = None;
        for cand in self.candidates.iter().rev() {
            let mut m = cand.clone();
            m.after_remount();
            match compare(&self.fs, &m) {
                Ok(()) => {
                    self.model = m;
                    self.counts.crashes += 1;
                    self.candidates = vec![self.model.clone()];
                    return;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.fail(format!(
            "after a crash the fs matches none of the {} states since the last sync; against the newest: {}",
            self.candidates.len(),
            first_err.unwrap_or_default()
        ));
    }
}
