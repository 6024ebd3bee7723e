//! Surviving memory errors in the pool mapping.
//!
//! On pmem, CXL memory or a file on a DAX filesystem a failed page reaches a process
//! as `SIGBUS` (`mm/memory-failure.c`, `kill_proc`): `BUS_MCEERR_AR` to the thread whose
//! load consumed poison, `BUS_MCEERR_AO` at once to a thread that asked for early kill
//! (`prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY)`), with `si_addr` and
//! `si_addr_lsb` naming the range. A page of a pool file that shrank under the
//! mapping raises `BUS_ADRERR`. The default action kills the daemon, and with it every
//! file of the mount.
//!
//! daxlink does what the kernel does for its own accesses to pmem (`copy_mc_to_kernel`
//! and the exception tables of `arch/x86/mm/extable.c`): every access of the daemon to
//! the mapping goes through `copy` or `fill`, two assembly routines with one string
//! instruction each. When that instruction faults, the `SIGBUS` handler moves the
//! instruction pointer to the routine's fix-up label and hands it the faulting address;
//! the routine returns it, and the caller fails the page instead of dying. No Rust frame
//! is unwound or skipped (no `longjmp`): the fault happens inside the routine, and the
//! routine returns normally. No Rust reference ever covers mapped bytes, so a store by
//! another thread, or a page that vanishes, is never undefined behaviour.
//!
//! Failures that arrive without an access of ours (`BUS_MCEERR_AO`, or an `_AR` for a
//! kernel copy from the mapping) are recorded by the handler in preallocated slots and
//! announced on an eventfd: the handler allocates nothing and takes no lock. The
//! owner of the mapping collects them with `take` after `wait` returns.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering::SeqCst};

// rdi = destination, rsi = source (or the byte, for fill), rdx = length. Returns rax =
// bytes not done (0 on success) and rdx = the faulting address. On a fault the handler
// sets rip to the fix-up label and rdx to the address; `rep movsb`/`rep stosb` leave
// rcx = bytes still to go, which is what the fix-up returns.
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.daxlink_mc,\"ax\",@progbits",
    ".globl daxlink_copy_mc",
    ".hidden daxlink_copy_mc",
    "daxlink_copy_mc:",
    "    mov rcx, rdx",
    "    xor edx, edx",
    ".globl daxlink_copy_mc_insn",
    ".hidden daxlink_copy_mc_insn",
    "daxlink_copy_mc_insn:",
    "    rep movsb",
    ".globl daxlink_copy_mc_fixup",
    ".hidden daxlink_copy_mc_fixup",
    "daxlink_copy_mc_fixup:",
    "    mov rax, rcx",
    "    ret",
    ".globl daxlink_fill_mc",
    ".hidden daxlink_fill_mc",
    "daxlink_fill_mc:",
    "    mov eax, esi",
    "    mov rcx, rdx",
    "    xor edx, edx",
    ".globl daxlink_fill_mc_insn",
    ".hidden daxlink_fill_mc_insn",
    "daxlink_fill_mc_insn:",
    "    rep stosb",
    ".globl daxlink_fill_mc_fixup",
    ".hidden daxlink_fill_mc_fixup",
    "daxlink_fill_mc_fixup:",
    "    mov rax, rcx",
    "    ret",
    ".popsection",
);

#[cfg(not(target_arch = "x86_64"))]
compile_error!("daxlink's machine-check-safe copy (arena::fault) is written for x86_64 only");

/// What a routine returns: bytes not done, and the faulting address when that is not 0.
#[repr(C)]
struct Done {
    left: usize,
    addr: usize,
}

unsafe extern "C" {
    fn daxlink_copy_mc(dst: *mut u8, src: *const u8, len: usize) -> Done;
    fn daxlink_fill_mc(dst: *mut u8, byte: u32, len: usize) -> Done;
    static daxlink_copy_mc_insn: u8;
    static daxlink_copy_mc_fixup: u8;
    static daxlink_fill_mc_insn: u8;
    static daxlink_fill_mc_fixup: u8;
}

/// Copies `len` bytes; `Err(addr)`: the access to `addr` failed and the bytes from
/// there on may not have been copied.
///
/// # Safety
/// Both ranges must be mapped (or be inside a registered mapping, whose pages may
/// vanish) for the whole call, and must not overlap.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> Result<(), usize> {
    debug_assert!(installed(), "arena::fault::install must run before the first protected copy");
    // SAFETY: the caller vouches for the ranges; a fault inside the routine returns
    // through its fix-up label instead of killing the process.
    let d = unsafe { daxlink_copy_mc(dst, src, len) };
    if d.left == 0 { Ok(()) } else { Err(d.addr) }
}

/// Sets `len` bytes to `byte`; `Err(addr)` as for `copy`.
///
/// # Safety
/// As for `copy`.
pub unsafe fn fill(dst: *mut u8, byte: u8, len: usize) -> Result<(), usize> {
    debug_assert!(installed(), "arena::fault::install must run before the first protected fill");
    // SAFETY: as in `copy`.
    let d = unsafe { daxlink_fill_mc(dst, byte as u32, len) };
    if d.left == 0 { Ok(()) } else { Err(d.addr) }
}

/// A memory failure reported to the process, not met by an access of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// First failed address (aligned to the failed size).
    pub addr: usize,
    /// Failed bytes: `1 << si_addr_lsb`.
    pub len: usize,
}

/// Mappings the handler answers for: (base, length); base 0 is a free slot.
const REGIONS: usize = 16;
static REGION_BASE: [AtomicUsize; REGIONS] = [const { AtomicUsize::new(0) }; REGIONS];
static REGION_LEN: [AtomicUsize; REGIONS] = [const { AtomicUsize::new(0) }; REGIONS];

/// Reports not yet taken. A slot goes EMPTY -> WRITING (the handler owns it) -> FULL
/// -> TAKING (a taker owns it) -> EMPTY.
const SLOTS: usize = 128;
const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const FULL: u8 = 2;
const TAKING: u8 = 3;
static SLOT_STATE: [AtomicU8; SLOTS] = [const { AtomicU8::new(EMPTY) }; SLOTS];
static SLOT_ADDR: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static SLOT_LEN: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// Reports dropped because every slot was full.
static LOST: AtomicUsize = AtomicUsize::new(0);
/// The eventfd `wait` blocks on; -1 until `install`.
static WAKE: AtomicI32 = AtomicI32::new(-1);
/// The instruction pointer and address of the last fault outside our routines that
/// the handler let run again: a second identical one is a load that cannot complete.
static LAST_FOREIGN: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];

/// The action before ours, for the signals that are not daxlink's business.
static PREVIOUS: OnceLock<Result<Previous, String>> = OnceLock::new();

struct Previous(libc::sigaction);
// SAFETY: a sigaction is plain data (a handler address, flags and a mask).
unsafe impl Send for Previous {}
// SAFETY: as above; it is only read after it is set.
unsafe impl Sync for Previous {}

/// The fault fields of a `SIGBUS` siginfo (`_sigfault` in `<asm-generic/siginfo.h>`).
#[repr(C)]
struct SigFault {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    addr: usize,
    addr_lsb: i16,
}

/// Queues this thread `SIGBUS` with `code` at `addr` (`si_addr_lsb` 12), as
/// `kill_proc` in mm/memory-failure.c sends it: the test double of a memory failure the
/// kernel reports. The kernel lets a thread queue a kernel `si_code` only to itself and
/// only as its process's main thread (`rt_tgsigqueueinfo`); elsewhere this is EPERM.
pub fn queue_to_self(code: i32, addr: usize) -> io::Result<()> {
    // SAFETY: a zeroed siginfo_t (128 bytes) with its fault fields set through the
    // kernel's layout; getpid/gettid and rt_tgsigqueueinfo take plain integers and it.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let f = &mut *(&raw mut info).cast::<SigFault>();
        (f.signo, f.code, f.addr, f.addr_lsb) = (libc::SIGBUS, code, addr, 12);
        let r =
            libc::syscall(libc::SYS_rt_tgsigqueueinfo, libc::getpid(), libc::gettid(), libc::SIGBUS, &raw const info);
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn installed() -> bool {
    matches!(PREVIOUS.get(), Some(Ok(_)))
}

/// Installs the `SIGBUS` handler (once per process). Every `copy` and `fill` needs it.
pub fn install() -> io::Result<()> {
    match PREVIOUS.get_or_init(|| install_once().map_err(|e| e.to_string())) {
        Ok(_) => Ok(()),
        Err(e) => Err(io::Error::other(format!("cannot install the SIGBUS handler: {e}"))),
    }
}

fn install_once() -> io::Result<Previous> {
    // SAFETY: eventfd creates a descriptor we own for the life of the process.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    WAKE.store(fd, SeqCst);
    // SAFETY: sigaction with a zeroed struct filled in below; `on_sigbus` has the
    // SA_SIGINFO signature and is async-signal-safe (atomics and write(2) only).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_sigbus as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut act.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &act, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Previous(old))
    }
}

/// Makes the handler answer for faults in `[base, base + len)`; `None` if every slot is
/// taken (the mapping then still works, but asynchronous reports about it are ignored).
pub fn register(base: usize, len: usize) -> Option<usize> {
    (0..REGIONS).find(|&i| {
        REGION_LEN[i].compare_exchange(0, len, SeqCst, SeqCst).is_ok() && {
            REGION_BASE[i].store(base, SeqCst);
            true
        }
    })
}

pub fn unregister(slot: usize) {
    REGION_BASE[slot].store(0, SeqCst);
    REGION_LEN[slot].store(0, SeqCst);
}

/// Asks the kernel to tell this thread at once about failed pages of its mappings
/// (`BUS_MCEERR_AO`), rather than only when a load consumes one. The flag is per
/// thread: the kernel (`find_early_kill_thread`) picks a thread that set it.
pub fn early_kill() -> io::Result<()> {
    // <linux/prctl.h>: PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY.
    const PR_MCE_KILL: libc::c_int = 33;
    const PR_MCE_KILL_SET: libc::c_ulong = 1;
    const PR_MCE_KILL_EARLY: libc::c_ulong = 1;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0 as libc::c_ulong, 0 as libc::c_ulong) }
        != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks until a report may be waiting (or returns at once if one came since the
/// last call).
pub fn wait() {
    let fd = WAKE.load(SeqCst);
    if fd < 0 {
        return;
    }
    let mut n = 0u64;
    // SAFETY: reads 8 bytes into `n`, as eventfd requires.
    unsafe { libc::read(fd, (&raw mut n).cast(), 8) };
}

/// Takes the reports inside `[base, base + len)`, and the count of reports lost
/// because the slots were full.
pub fn take(base: usize, len: usize) -> (Vec<Report>, usize) {
    let mut out = Vec::new();
    for i in 0..SLOTS {
        if SLOT_STATE[i].compare_exchange(FULL, TAKING, SeqCst, SeqCst).is_err() {
            continue;
        }
        let (addr, l) = (SLOT_ADDR[i].load(SeqCst), SLOT_LEN[i].load(SeqCst));
        if addr >= base && addr - base < len {
            out.push(Report { addr, len: l });
            SLOT_STATE[i].store(EMPTY, SeqCst);
        } else {
            SLOT_STATE[i].store(FULL, SeqCst);
        }
    }
    (out, LOST.swap(0, SeqCst))
}

fn in_region(addr: usize) -> bool {
    (0..REGIONS).any(|i| {
        let base = REGION_BASE[i].load(SeqCst);
        base != 0 && addr >= base && addr - base < REGION_LEN[i].load(SeqCst)
    })
}

/// Records a report and wakes `wait`. Async-signal-safe.
fn record(addr: usize, len: usize) {
    let Some(i) = (0..SLOTS).find(|&i| SLOT_STATE[i].compare_exchange(EMPTY, WRITING, SeqCst, SeqCst).is_ok()) else {
        LOST.fetch_add(1, SeqCst);
        return wake();
    };
    SLOT_ADDR[i].store(addr, SeqCst);
    SLOT_LEN[i].store(len, SeqCst);
    SLOT_STATE[i].store(FULL, SeqCst);
    wake();
}

fn wake() {
    let fd = WAKE.load(SeqCst);
    let one = 1u64;
    // SAFETY: write(2) of 8 bytes to our eventfd; async-signal-safe.
    unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel hands a SA_SIGINFO handler a valid siginfo (128 bytes, of
    // which SigFault reads the first 26) and a valid ucontext for this thread.
    let (f, uc) = unsafe { (&*(info as *const SigFault), &mut *(uctx as *mut libc::ucontext_t)) };
    let gregs = &mut uc.uc_mcontext.gregs;
    let rip = gregs[libc::REG_RIP as usize] as usize;
    let fixups = [
        (&raw const daxlink_copy_mc_insn as usize, &raw const daxlink_copy_mc_fixup as usize),
        (&raw const daxlink_fill_mc_insn as usize, &raw const daxlink_fill_mc_fixup as usize),
    ];
    if let Some(&(_, fixup)) = fixups.iter().find(|(insn, _)| *insn == rip) {
        gregs[libc::REG_RIP as usize] = fixup as i64;
        gregs[libc::REG_RDX as usize] = f.addr as i64;
        return;
    }
    let mce = f.code == libc::BUS_MCEERR_AO || f.code == libc::BUS_MCEERR_AR;
    if mce && in_region(f.addr) {
        let len = 1usize << f.addr_lsb.clamp(12, 30);
        record(f.addr & !(len - 1), len);
    }
    if f.code == libc::BUS_MCEERR_AO {
        // Action optional: nothing has to be skipped, whoever's memory it is.
        return;
    }
    // An action-required report for a copy the kernel made from the mapping (its
    // system call already failed with EFAULT) needs nothing skipped either. A load of
    // ours outside the routines would fault again at the same place: that second
    // time, it falls to the previous action.
    let again = (LAST_FOREIGN[0].swap(rip, SeqCst) == rip) & (LAST_FOREIGN[1].swap(f.addr, SeqCst) == f.addr);
    if mce && in_region(f.addr) && !again {
        return;
    }
    chain(sig, info, uctx);
}

/// Hands a signal that is not ours to the action installed before us: its handler, or
/// the default action (restored, so the faulting instruction meets it when it runs
/// again on return).
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let Some(Ok(Previous(old))) = PREVIOUS.get() else { return };
    let h = old.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN || old.sa_flags & libc::SA_SIGINFO == 0 {
        // SAFETY: sigaction is async-signal-safe; `old` is a valid action.
        unsafe { libc::sigaction(sig, old, std::ptr::null_mut()) };
        return;
    }
    // SAFETY: the previous SA_SIGINFO handler has exactly this signature.
    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { std::mem::transmute(h) };
    f(sig, info, uctx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_and_fill_work_on_plain_memory() {
        install().unwrap();
        let src: Vec<u8> = (0..=255).collect();
        let mut dst = vec![0u8; 256];
        // SAFETY: both buffers are 256 bytes and distinct.
        unsafe { copy(dst.as_mut_ptr(), src.as_ptr(), 256) }.unwrap();
        assert_eq!(dst, src);
        // SAFETY: inside `dst`.
        unsafe { fill(dst.as_mut_ptr().add(10), 7, 100) }.unwrap();
        assert!(dst[10..110].iter().all(|b| *b == 7) && dst[110] == 110 && dst[9] == 9);
    }

    #[test]
    fn a_copy_from_a_vanished_page_returns_its_address() {
        install().unwrap();
        let path = std::env::temp_dir().join(format!("daxlink-fault-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.set_len(3 * 4096).unwrap();
        let map = memmap2::MmapOptions::new().len(3 * 4096).map_raw(&file).unwrap();
        // SAFETY: inside the mapping.
        unsafe { fill(map.as_mut_ptr(), 5, 3 * 4096) }.unwrap();
        file.set_len(4096 + 100).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut buf = vec![0u8; 3 * 4096];
        // SAFETY: the mapping is live; its last page is gone, which the routine survives.
        let r = unsafe { copy(buf.as_mut_ptr(), map.as_ptr(), 3 * 4096) };
        assert_eq!(r, Err(map.as_ptr() as usize + 2 * 4096), "the fault must name the first vanished page");
        // The cut zeroes the rest of its page, as truncate(2) does.
        assert!(buf[..4096 + 100].iter().all(|b| *b == 5), "bytes before the cut must be copied");
        // SAFETY: as above, now storing.
        let w = unsafe { fill(map.as_mut_ptr().add(4096), 1, 2 * 4096) };
        assert_eq!(w, Err(map.as_ptr() as usize + 2 * 4096));
    }
}
