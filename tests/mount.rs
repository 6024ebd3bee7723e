//! Mount tests: the real binary, a real FUSE mount, real syscalls.
//!
//! Under `CI=true` a missing /dev/fuse fails these tests; elsewhere they are skipped
//! with a message.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_daxlink");

fn fuse_available() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ok = Path::new("/dev/fuse").exists() && unsafe { libc::geteuid() } == 0;
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but FUSE (root + /dev/fuse) is unavailable");
        // Straight to stderr: the harness captures eprintln! of a passing test, and a
        // skip must be seen.
        let _ = writeln!(std::io::stderr(), "SKIPPED (FUSE needs root and /dev/fuse): this mount test checked nothing");
    }
    ok
}

fn daxlink(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run daxlink")
}

/// A scratch pool and mount point, unmounted on drop.
struct Scratch {
    dir: PathBuf,
    pool: PathBuf,
    mnt: PathBuf,
}

impl Scratch {
    fn new(name: &str, size: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("daxlink-mount-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("m")).unwrap();
        let s = Scratch { pool: dir.join("p.pool"), mnt: dir.join("m"), dir };
        let out = daxlink(&["mkfs", "--size", size, s.pool.to_str().unwrap()]);
        assert!(out.status.success(), "mkfs: {}", String::from_utf8_lossy(&out.stderr));
        s
    }

    fn mount(&self) {
        self.mount_with(&[]);
    }

    fn mount_with(&self, opts: &[&str]) {
        let mut args = vec!["mount", self.pool.to_str().unwrap(), self.mnt.to_str().unwrap()];
        for o in opts {
            args.extend(["-o", o]);
        }
        let out = daxlink(&args);
        assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn umount(&self) {
        let st = Command::new("umount").arg(&self.mnt).status().unwrap();
        assert!(st.success(), "umount failed");
    }

    fn path(&self, p: &str) -> PathBuf {
        self.mnt.join(p)
    }

    /// The pid of the daemon serving this pool.
    fn daemon_pid(&self) -> i32 {
        let pool = self.pool.canonicalize().unwrap();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            let names_pool = args
                .iter()
                .any(|a| Path::new(std::str::from_utf8(a).unwrap_or("")).canonicalize().ok().as_deref() == Some(&pool));
            if args.first().is_some_and(|a| a.ends_with(b"daxlink")) && names_pool {
                return pid;
            }
        }
        panic!("no daemon found for {}", pool.display());
    }

    fn fsck(&self) -> Output {
        daxlink(&["fsck", self.pool.to_str().unwrap()])
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).stderr(std::process::Stdio::null()).status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn mount_is_listed_as_fuse_daxlink_with_the_pool_as_source() {
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("listed", "64M");
    s.mount();
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let pool = s.pool.canonicalize().unwrap();
    let mnt = s.mnt.canonicalize().unwrap();
    let line = format!("{} {} fuse.daxlink ", pool.display(), mnt.display());
    assert!(mounts.contains(&line), "no line `{line}` in /proc/mounts:\n{mounts}");
    s.umount();
}

#[test]
fn data_survives_umount_and_remount() {
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("remount", "64M");
    s.mount();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(s.path("f"), &data).unwrap();
    fs::create_dir(s.path("d")).unwrap();
    std::os::unix::fs::symlink("../f", s.path("d/l")).unwrap();
    s.umount();
    s.mount();
    assert_eq!(fs::read(s.path("f")).unwrap(), data, "file content changed across remount");
    assert_eq!(fs::read_link(s.path("d/l")).unwrap(), Path::new("../f"));
    assert_eq!(fs::read(s.path("d/l")).unwrap(), data);
    s.umount();
    let out = s.fsck();
    assert!(out.status.success(), "fsck after umount: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn fsynced_data_survives_kill_9_of_the_daemon() {
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("kill9", "64M");
    s.mount();
    let synced: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let mut f = fs::File::create(s.path("synced")).unwrap();
    f.write_all(&synced).unwrap();
    f.sync_all().unwrap();
    // An unsynced file too: it may or may not survive, but must not break recovery.
    fs::write(s.path("unsynced"), b"maybe").unwrap();
    let pid = s.daemon_pid();
    // SAFETY: kill(2) takes no memory; pid is the daemon's, found above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // The dead connection's mount is removed by hand; the pool needs nothing.
    let st = Command::new("umount").arg("-l").arg(&s.mnt).status().unwrap();
    assert!(st.success());
    s.mount();
    let mut got = Vec::new();
    fs::File::open(s.path("synced")).unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(got, synced, "fsync'd data lost after kill -9");
    s.umount();
    let out = s.fsck();
    assert!(out.status.success(), "fsck after kill -9: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_pools_are_refused_in_one_line_and_left_untouched() {
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("badpool", "64M");
    let good = fs::read(&s.pool).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", (0..(64u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("damaged superblock", {
            let mut b = good.clone();
            b[20] ^= 0xff;
            b
        }),
        ("tiny", vec![0u8; 100]),
    ];
    for (what, bytes) in cases {
        fs::write(&s.pool, &bytes).unwrap();
        let out = daxlink(&["mount", s.pool.to_str().unwrap(), s.mnt.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: mount succeeded");
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: not one line: {err}");
        assert!(err.contains(s.pool.file_name().unwrap().to_str().unwrap()), "{what}: pool not named: {err}");
        assert!(!err.contains("panicked"), "{what}: panic: {err}");
        assert!(fs::read(&s.pool).unwrap() == bytes, "{what}: the pool was written");
        let fsck = s.fsck();
        assert!(!fsck.status.success(), "{what}: fsck passed a bad pool");
    }
}

#[test]
fn readdir_of_a_large_directory_is_complete() {
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("readdir", "64M");
    s.mount();
    fs::create_dir(s.path("big")).unwrap();
    for i in 0..3000 {
        fs::File::create(s.path(&format!("big/entry-{i:05}-with-a-longish-name"))).unwrap();
    }
    let mut names: Vec<String> =
        fs::read_dir(s.path("big")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names.len(), 3000, "readdir lost or repeated entries");
    names.dedup();
    assert_eq!(names.len(), 3000, "readdir repeated entries");
    assert_eq!(fs::metadata(s.path("big")).unwrap().nlink(), 2);
    s.umount();
}

#[test]
fn positional_writes_and_holes_read_back_through_the_kernel() {
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("pwrite", "64M");
    s.mount();
    let f = fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(s.path("sparse")).unwrap();
    f.write_all_at(b"tail", 10 << 20).unwrap();
    f.write_all_at(b"head", 1).unwrap();
    let mut buf = vec![1u8; 8192];
    f.read_exact_at(&mut buf, 5 << 20).unwrap();
    assert!(buf.iter().all(|b| *b == 0), "hole read non-zero bytes");
    assert_eq!(f.metadata().unwrap().len(), (10 << 20) + 4);
    // Blocks are the daemon's count, and under the writeback cache the kernel may hold
    // the pages yet: st_blocks counts them once written back.
    f.sync_data().unwrap();
    assert_eq!(f.metadata().unwrap().blocks(), 16, "two 4 KiB pages should be allocated");
    drop(f);
    s.umount();
}

/// First arena page of a file's first extent, from `daxlink extents --json`.
fn first_pfn(path: &Path) -> u64 {
    let out = daxlink(&["extents", "--json", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("\"pfn\":").unwrap_or_else(|| panic!("no extents for {}: {text}", path.display())) + 6;
    text[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// Every arena page of a file, from `daxlink extents --json`.
fn all_pfns(path: &Path) -> Vec<u64> {
    let out = daxlink(&["extents", "--json", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let num = |obj: &str, key: &str| -> u64 {
        let at = obj.find(key).unwrap() + key.len();
        obj[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    text.split('{')
        .skip(1)
        .flat_map(|obj| {
            let (pfn, len) = (num(obj, "\"pfn\":"), num(obj, "\"length\":"));
            (0..len.div_ceil(4096)).map(move |i| pfn + i)
        })
        .collect()
}

/// Reads the whole file past the kernel's page cache; the errno on failure.
fn read_direct(path: &Path) -> Result<Vec<u8>, i32> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path).unwrap();
    let mut out = Vec::new();
    f.read_to_end(&mut out).map_err(|e| e.raw_os_error().unwrap_or(0))?;
    Ok(out)
}

/// The pool file cut short under a running daemon: every page past the cut fails at
/// once, the files on them read EIO, a 1-byte COW write into a lost shared page fails
/// with EIO instead of killing the daemon, and everything below the cut keeps working;
/// the bad pages and the poison survive a remount once the file is grown back.
#[test]
fn a_pool_cut_under_the_daemon_fails_the_lost_pages_and_keeps_serving() {
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("cut", "64M");
    s.mount();
    let low: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 249) as u8).collect();
    fs::write(s.path("low"), &low).unwrap();
    fs::write(s.path("pad"), vec![1u8; 8 << 20]).unwrap();
    fs::write(s.path("high"), vec![2u8; 1 << 20]).unwrap();
    let out = daxlink(&["clone", s.path("high").to_str().unwrap(), s.path("clone").to_str().unwrap()]);
    assert!(out.status.success(), "clone: {}", String::from_utf8_lossy(&out.stderr));
    fs::remove_file(s.path("pad")).unwrap();
    Command::new("sync").arg("-f").arg(s.path("low")).status().unwrap();
    let cut = first_pfn(&s.path("high"));
    let pid = s.daemon_pid();

    fs::OpenOptions::new().write(true).open(&s.pool).unwrap().set_len(cut * 4096).unwrap();
    assert_eq!(read_direct(&s.path("high")), Err(libc::EIO), "a file past the cut must read EIO");
    assert_eq!(read_direct(&s.path("clone")), Err(libc::EIO), "its clone too");
    let f = fs::OpenOptions::new().write(true).open(s.path("clone")).unwrap();
    assert_eq!(f.write_at(b"x", 100).map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)), "COW of a lost page");
    drop(f);
    assert_eq!(read_direct(&s.path("low")).unwrap(), low, "a file below the cut must read intact");
    fs::OpenOptions::new().write(true).open(s.path("low")).unwrap().write_all_at(b"still here", 4096).unwrap();
    fs::write(s.path("new"), vec![3u8; 512 * 1024]).unwrap();
    assert_eq!(read_direct(&s.path("new")).unwrap(), vec![3u8; 512 * 1024]);
    let new_pages = all_pfns(&s.path("new"));
    assert!(!new_pages.is_empty() && new_pages.iter().all(|p| *p < cut), "new file past the cut: {new_pages:?}");
    assert_eq!(s.daemon_pid(), pid, "the daemon must survive");

    let poison = |what: &str| {
        let out = daxlink(&["poison", s.mnt.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for name in ["/high@", "/clone@"] {
            assert!(text.contains(name), "{what}: daxlink poison does not name {name}:\n{text}");
        }
        assert!(!text.contains("/low@") && !text.contains("/new@"), "{what}: files below the cut listed:\n{text}");
        let stat = String::from_utf8_lossy(&daxlink(&["stat", s.mnt.to_str().unwrap()]).stdout).into_owned();
        stat.lines().find(|l| l.starts_with("pages_bad")).unwrap().split_whitespace().nth(1).unwrap().to_string()
    };
    let bad = poison("after the cut");
    assert_ne!(bad, "0");
    s.umount();
    fs::OpenOptions::new().write(true).open(&s.pool).unwrap().set_len(64 << 20).unwrap();
    let out = s.fsck();
    assert!(out.status.success(), "fsck after the cut: {}", String::from_utf8_lossy(&out.stdout));
    s.mount();
    assert_eq!(poison("after a remount"), bad, "the bad pages must survive a remount");
    assert_eq!(read_direct(&s.path("high")), Err(libc::EIO));
    assert_eq!(&read_direct(&s.path("low")).unwrap()[4096..4106], b"still here");
    s.umount();
}

/// A clone through the kernel: copy_file_range of the whole of `src` into a new `dst`.
fn reflink(src: &Path, dst: &Path) {
    use std::os::fd::AsRawFd;
    let (s, d) = (fs::File::open(src).unwrap(), fs::File::create(dst).unwrap());
    let len = s.metadata().unwrap().len() as usize;
    // SAFETY: two open descriptors and null offsets (the files' own).
    let n = unsafe {
        libc::copy_file_range(s.as_raw_fd(), std::ptr::null_mut(), d.as_raw_fd(), std::ptr::null_mut(), len, 0)
    };
    assert_eq!(n, len as isize, "copy_file_range into {}", dst.display());
}

/// A page shared by 2,000 files fails: `daxlink poison` names all 2,000 owners (the
/// listing continues within a page across ioctl batches), and the other failed page.
#[test]
fn poison_names_every_owner_of_a_page_shared_by_two_thousand_files() {
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("owners", "64M");
    s.mount();
    fs::write(s.path("src"), vec![5u8; 8192]).unwrap();
    fs::create_dir(s.path("clones")).unwrap();
    for i in 0..1999 {
        reflink(&s.path("src"), &s.path(&format!("clones/c{i}")));
    }
    fs::write(s.path("solo"), vec![6u8; 4096]).unwrap();
    let mnt = s.mnt.to_str().unwrap();
    for (file, off) in [("src", "4096"), ("solo", "0")] {
        let out = daxlink(&["inject-error", mnt, "--file", s.path(file).to_str().unwrap(), "--offset", off]);
        assert!(out.status.success(), "inject-error: {}", String::from_utf8_lossy(&out.stderr));
    }
    let json = String::from_utf8(daxlink(&["poison", "--json", mnt]).stdout).unwrap();
    let pages: Vec<&str> = json.split("{\"pfn\":").skip(1).collect();
    let owners: Vec<usize> = pages.iter().map(|p| p.matches("\"path\":").count()).collect();
    assert_eq!(owners, vec![2000, 1], "owners per failed page in `daxlink poison --json`");
    let plain = String::from_utf8(daxlink(&["poison", mnt]).stdout).unwrap();
    let lines: std::collections::HashSet<&str> = plain.lines().collect();
    let mut want: Vec<String> = (0..1999).map(|i| format!("  {mnt}/clones/c{i}@4096")).collect();
    want.extend([format!("  {mnt}/src@4096"), format!("  {mnt}/solo@0")]);
    let missing: Vec<&String> = want.iter().filter(|w| !lines.contains(w.as_str())).collect();
    assert!(missing.is_empty(), "plain `daxlink poison` misses {} owners, e.g. {:?}", missing.len(), &missing[..1]);
    assert!(plain.contains(": 2000 owner(s)") && plain.contains(": 1 owner(s)"), "{}", &plain[..200]);
    s.umount();
}

/// Which file owns which page is root's to know (as XFS keeps GETFSMAP to
/// CAP_SYS_ADMIN): `page` and `poison` on a mount refuse other users in one line;
/// `stat` (counts only) stays open.
#[test]
fn reverse_map_queries_need_root_and_stat_does_not() {
    use std::os::unix::process::CommandExt;
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("root-only", "64M");
    s.mount_with(&["allow_other"]);
    fs::write(s.path("a"), vec![1u8; 4096]).unwrap();
    let pfn = first_pfn(&s.path("a")).to_string();
    let mnt = s.mnt.to_str().unwrap();
    let as_nobody = |args: &[&str]| Command::new(BIN).args(args).uid(65534).gid(65534).output().unwrap();
    for args in [vec!["page", mnt, &pfn], vec!["poison", mnt], vec!["poison", "--json", mnt]] {
        let out = as_nobody(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded for nobody: {}", String::from_utf8_lossy(&out.stdout));
        assert!(err.lines().count() == 1 && err.contains("Operation not permitted"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed something for nobody");
    }
    let out = as_nobody(&["stat", mnt]);
    assert!(out.status.success(), "stat as nobody: {}", String::from_utf8_lossy(&out.stderr));
    assert!(daxlink(&["page", mnt, &pfn]).status.success(), "root must still read the page state");
    s.umount();
}

/// The test's own system log: a datagram socket bound at /dev/log, drained by a thread
/// (the kernel queues only a few datagrams per socket, and other tests' daemons send
/// theirs here too while it exists). The socket file goes on drop.
struct SyslogListener {
    lines: std::sync::mpsc::Receiver<String>,
}

impl SyslogListener {
    /// `None` when /dev/log exists: a real system log owns it, and where it keeps its
    /// lines (the journal, files, another host) is its own business.
    fn bind() -> Option<SyslogListener> {
        let sock = match std::os::unix::net::UnixDatagram::bind("/dev/log") {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return None,
            Err(e) => panic!("bind /dev/log: {e}"),
        };
        let (tx, lines) = std::sync::mpsc::channel();
        // The timeout lets the thread see that the test has gone.
        sock.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        if tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                            return;
                        }
                    }
                    Err(_) if Path::new("/dev/log").exists() => {}
                    Err(_) => return,
                }
            }
        });
        Some(SyslogListener { lines })
    }

    /// The first line from `pid` that holds every one of `want`; fails after 10 s.
    fn wait_for(&self, pid: i32, want: &[&str]) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let tag = format!(" daxlink[{pid}]: ");
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(&tag) && want.iter().all(|w| l.contains(w)) => return l,
                Ok(l) if l.contains(&tag) => seen.push(l),
                Ok(_) => {}
                Err(_) => panic!("no line with {want:?} from daxlink[{pid}] in the system log; its lines: {seen:#?}"),
            }
        }
    }
}

impl Drop for SyslogListener {
    fn drop(&mut self) {
        let _ = fs::remove_file("/dev/log");
    }
}

/// A detached daemon logs to the system log: its mount, each memory failure with the
/// owner's path, and its unmount, as daemon-facility lines tagged daxlink[PID], while
/// `-o log=PATH` still gets them too. With no /dev/log at all, mount says so once and
/// mounts.
#[test]
fn the_detached_daemon_logs_to_the_system_log() {
    if !fuse_available() {
        return;
    }
    // Only this test touches /dev/log. Where a real system log owns it, this test
    // cannot read what the daemon sends there, and says so.
    let Some(syslog) = SyslogListener::bind() else {
        eprintln!("skipping: /dev/log exists (a real system log), and this test reads only its own");
        return;
    };
    let s = Scratch::new("syslog", "64M");
    let file_log = s.dir.join("daemon.log");
    let opt = format!("log={}", file_log.display());
    let out = daxlink(&["mount", s.pool.to_str().unwrap(), s.mnt.to_str().unwrap(), "-o", &opt]);
    assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "mount with a system log said: {}", String::from_utf8_lossy(&out.stderr));
    let pid = s.daemon_pid();
    let (pool, mnt) = (s.pool.canonicalize().unwrap(), s.mnt.canonicalize().unwrap());
    let mounted = format!("mounted {} at {} ({opt})", pool.display(), mnt.display());
    let line = syslog.wait_for(pid, &[&mounted]);
    // <PRI> is facility * 8 + severity: daemon (3), info (6).
    assert!(line.starts_with("<30>"), "not daemon.info: {line}");

    fs::write(s.path("witness"), vec![7u8; 4096]).unwrap();
    let w = s.path("witness");
    let pfn = format!("page {} failed", first_pfn(&w));
    let out = daxlink(&["inject-error", mnt.to_str().unwrap(), "--file", w.to_str().unwrap(), "--offset", "0"]);
    assert!(out.status.success(), "inject-error: {}", String::from_utf8_lossy(&out.stderr));
    let line = syslog.wait_for(pid, &["memory failure: ", &pfn, "1 owner(s): /witness at offset 0"]);
    assert!(line.starts_with("<27>"), "not daemon.err: {line}");
    // The file gets each line before the system log does.
    let text = fs::read_to_string(&file_log).unwrap();
    assert!(text.contains(&mounted) && text.contains("/witness at offset 0"), "-o log= file: {text}");

    s.umount();
    syslog.wait_for(pid, &[&format!("unmounted {} from {}", pool.display(), mnt.display())]);
    drop(syslog);

    assert!(!Path::new("/dev/log").exists(), "the test's /dev/log was not removed");
    let out = daxlink(&["mount", s.pool.to_str().unwrap(), s.mnt.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mount without a system log: {err}");
    assert_eq!(
        err, "daxlink: no system log (/dev/log): the daemon's log goes nowhere; use -o log=PATH\n",
        "mount without a system log"
    );
    s.umount();
}

/// The share of the dirty limit the kernel gives the mount at `mnt`: its writeback
/// device (bdi) is named by the mount point's device number.
fn bdi_max_ratio(mnt: &Path) -> u32 {
    let dev = fs::metadata(mnt).unwrap().dev();
    let knob = format!("/sys/class/bdi/{}:{}/max_ratio", libc::major(dev), libc::minor(dev));
    fs::read_to_string(&knob).unwrap_or_else(|e| panic!("{knob}: {e}")).trim().parse().unwrap()
}

#[test]
fn the_writeback_cache_mount_takes_half_the_dirty_limit_and_nowriteback_leaves_fuses_one_percent() {
    if !fuse_available() {
        return;
    }
    let s = Scratch::new("bdi", "64M");
    s.mount();
    assert_eq!(bdi_max_ratio(&s.mnt), 50, "the daemon did not raise its mount's dirty share");
    // A buffered write is cached: the daemon has no page of it until close writes it
    // back. (The descriptor asking is opened first: an open that drops the kernel's
    // cache for atime's sake writes dirty pages back.)
    let mut f = fs::File::create(s.path("f")).unwrap();
    let ask = fs::File::open(s.path("f")).unwrap();
    f.write_all(&[7u8; 8192]).unwrap();
    assert_eq!(first_pfn_or_none(&ask), None, "the write reached the daemon at once: no writeback cache");
    drop(f);
    assert!(first_pfn_or_none(&ask).is_some(), "close did not write the file back");
    drop(ask);
    s.umount();
    s.mount_with(&["nowriteback"]);
    assert_eq!(bdi_max_ratio(&s.mnt), 1, "nowriteback should keep FUSE's own share");
    let mut f = fs::File::create(s.path("g")).unwrap();
    f.write_all(&[7u8; 8192]).unwrap();
    assert!(first_pfn_or_none(&f).is_some(), "nowriteback: the write should reach the daemon at once");
    drop(f);
    s.umount();
}

/// The first arena page of an open file as the daemon sees it now, through the extents
/// ioctl without writing anything back first (as `daxlink extents` would).
fn first_pfn_or_none(f: &fs::File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut buf = daxlink::fuse::ioctl::bytes(&[0], daxlink::fuse::ioctl::EXTENTS_LEN);
    // SAFETY: the buffer is exactly the size the ioctl number encodes.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), daxlink::fuse::ioctl::DAXLINK_IOC_EXTENTS as _, buf.as_mut_ptr()) };
    assert_eq!(r, 0, "extents ioctl: {}", std::io::Error::last_os_error());
    let (batch, _) = daxlink::fuse::ioctl::decode_extents(&buf).unwrap();
    batch.first().map(|m| m.pfn.0)
}
