//! The kernel's early memory-failure signal, end to end without FUSE: a pool mapped
//! from a file, the SIGBUS handler installed, and `SIGBUS` with `BUS_MCEERR_AO` queued
//! to this thread at a singly owned page and at a page three files share, as
//! `mm/memory-failure.c` (`kill_proc`) sends it to a process that asked for early kill.
//! The outcome must be `inject-error`'s: the owners, EIO for each, one holder call for
//! the shared page, the pages bad.
//!
//! `rt_tgsigqueueinfo` lets a thread queue a kernel `si_code` (>= 0) only to itself, and
//! only as its process's main thread: hence `harness = false` and a `main` of its own.

use std::sync::Arc;

use daxlink::arena::{Media, MmapMedia, fault};
use daxlink::dax::Owner;
use daxlink::fs::{Ctx, Error, Fs, Options};
use daxlink::types::{FileBlock, Ino, PAGE_SIZE, Pfn};

const PS: u64 = PAGE_SIZE;
const CTX: Ctx = Ctx { uid: 0, gid: 0 };

/// Queues SIGBUS with `code` at `addr` to this thread, which must be the main thread.
fn queue_sigbus(code: i32, addr: usize) {
    fault::queue_to_self(code, addr).expect("rt_tgsigqueueinfo (must run on the main thread)");
}

struct Pool {
    path: std::path::PathBuf,
    media: Arc<MmapMedia>,
    fs: Fs,
}

impl Pool {
    fn new(name: &str) -> Pool {
        let path = std::env::temp_dir().join(format!("daxlink-sigbus-{}-{name}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.set_len(32 << 20).unwrap();
        let media = Arc::new(MmapMedia::new(&file, 32 << 20, true).unwrap());
        Fs::mkfs(&*media, CTX, [3; 16]).unwrap();
        let fs = Fs::open(media.clone(), Options::default()).unwrap();
        Pool { path, media, fs }
    }

    fn file(&self, name: &str, len: u64) -> Ino {
        let ino = self.fs.mknod(CTX, Ino::ROOT, name.as_bytes(), libc::S_IFREG | 0o644, 0).unwrap().ino;
        self.fs.write(ino, 0, &vec![7u8; len as usize], false).unwrap();
        ino
    }

    fn pfn_at(&self, ino: Ino, off: u64) -> Pfn {
        let m = self.fs.extents(ino).unwrap().into_iter().find(|m| m.fblock.0 == 0).unwrap();
        m.pfn.plus(off / PS)
    }

    fn sigbus_at(&self, code: i32, p: Pfn) {
        queue_sigbus(code, self.media.address(p.offset()) + 123);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn an_early_warning_at_a_singly_owned_page_fails_it_from_the_page_record() {
    let p = Pool::new("solo");
    let a = p.file("a", 4 * PS);
    let page = p.pfn_at(a, PS);
    p.sigbus_at(libc::BUS_MCEERR_AO, page);
    let found = p.fs.take_media_failures();
    assert_eq!(found.len(), 1, "one report, one failure: {found:?}");
    assert_eq!(found[0].failed, vec![page]);
    assert_eq!(found[0].owners, vec![Owner { pfn: page, ino: a, index: FileBlock(1) }]);
    assert_eq!(found[0].holder_calls, 0, "a singly owned page names its owner without the holder");
    assert_eq!(p.fs.read(a, PS, 10), Err(Error::HwPoison));
    assert_eq!(p.fs.read(a, 0, 4 * PS).unwrap().len() as u64, PS, "a read stops before the failed page");
    assert!(p.fs.page_is_bad(page).unwrap());
    p.fs.check().unwrap();
}

fn an_early_warning_at_a_shared_page_asks_the_holder_once() {
    let p = Pool::new("shared");
    let a = p.file("a", 4 * PS);
    let b = p.file("b", 0);
    let c = p.file("c", 0);
    p.fs.clone_range(a, 0, b, 0, 0).unwrap();
    p.fs.clone_range(a, 0, c, 0, 0).unwrap();
    let page = p.pfn_at(a, 2 * PS);
    p.sigbus_at(libc::BUS_MCEERR_AO, page);
    let found = p.fs.take_media_failures();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].holder_calls, 1, "a shared page's owners come from one holder call");
    assert_eq!(p.fs.stats().holder_calls, 1);
    let want: Vec<Owner> = [a, b, c].iter().map(|&ino| Owner { pfn: page, ino, index: FileBlock(2) }).collect();
    assert_eq!(found[0].owners, want);
    for ino in [a, b, c] {
        assert_eq!(p.fs.read(ino, 2 * PS, PS), Err(Error::HwPoison), "inode {ino} still reads the failed page");
        assert_eq!(p.fs.read(ino, 3 * PS, PS).unwrap(), vec![7u8; PS as usize], "the next page is unharmed");
    }
    p.fs.check().unwrap();
}

fn a_report_for_a_copy_the_kernel_made_is_recorded_too() {
    // BUS_MCEERR_AR outside daxlink's copy routines: the kernel's own copy from the
    // mapping consumed poison (its system call failed with EFAULT); nothing to skip.
    let p = Pool::new("kernel-copy");
    let a = p.file("a", 2 * PS);
    let page = p.pfn_at(a, 0);
    p.sigbus_at(libc::BUS_MCEERR_AR, page);
    let found = p.fs.take_media_failures();
    assert_eq!(found.iter().map(|f| f.failed.clone()).collect::<Vec<_>>(), vec![vec![page]]);
    assert_eq!(p.fs.read(a, 0, PS), Err(Error::HwPoison));
}

fn a_report_outside_the_pool_is_ignored() {
    let p = Pool::new("elsewhere");
    let a = p.file("a", PS);
    let elsewhere = vec![0u8; 2 * PS as usize];
    queue_sigbus(libc::BUS_MCEERR_AO, elsewhere.as_ptr() as usize);
    assert!(p.fs.take_media_failures().is_empty());
    assert_eq!(p.fs.read(a, 0, PS).unwrap(), vec![7u8; PS as usize]);
    assert_eq!(p.media.len(), 32 << 20);
}

fn main() {
    let tests: [(&str, fn()); 4] = [
        (
            "an_early_warning_at_a_singly_owned_page_fails_it_from_the_page_record",
            an_early_warning_at_a_singly_owned_page_fails_it_from_the_page_record,
        ),
        (
            "an_early_warning_at_a_shared_page_asks_the_holder_once",
            an_early_warning_at_a_shared_page_asks_the_holder_once,
        ),
        ("a_report_for_a_copy_the_kernel_made_is_recorded_too", a_report_for_a_copy_the_kernel_made_is_recorded_too),
        ("a_report_outside_the_pool_is_ignored", a_report_outside_the_pool_is_ignored),
    ];
    let mut failed = 0;
    println!("\nrunning {} tests", tests.len());
    for (name, t) in tests {
        let ok = std::panic::catch_unwind(t).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += !ok as usize;
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out\n",
        tests.len() - failed
    );
    std::process::exit((failed > 0) as i32);
}
