//! The process's one logger (the `log` crate allows one): env_logger's filter and
//! stderr format as before, plus the system log once a mount daemon detaches.
//!
//! A detached daemon has no terminal: its stderr is the `-o log=PATH` file or
//! /dev/null, so memory failures, I/O errors and mounts would go unseen without the
//! system log. Every other verb, and `mount -f`, logs to stderr only.

use std::sync::{Mutex, OnceLock};

use log::{Level, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LogFormat, Severity};

/// The target of the "mounted" and "unmounted" lines of a detached daemon. The default
/// filter lets it through at info, so a stock `journalctl -t daxlink` shows every mount
/// while other info lines stay off unless `RUST_LOG` asks for them.
pub const MOUNTS: &str = "daxlink::mounts";

/// The filter when `RUST_LOG` is unset. fuser warns when it finds its mount already
/// gone after a normal umount, hence its own level.
const DEFAULT_FILTER: &str = "warn,daxlink::mounts=info,fuser::session=error";

/// The name the daemon's lines carry, by which `journalctl -t daxlink` finds them.
const IDENT: &str = "daxlink";

/// The standard socket of the local system log.
pub const SOCKET: &str = "/dev/log";

struct Fanout {
    /// Filters every line and writes it to stderr in env_logger's format.
    stderr: env_logger::Logger,
    syslog: Mutex<Option<Syslog>>,
}

/// A connection to the system log, lines in RFC 3164 form.
type Syslog = syslog::Logger<syslog::LoggerBackend, Formatter3164>;

fn connect() -> Option<Syslog> {
    let fmt = Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: IDENT.into(),
        pid: std::process::id(),
    };
    let s = syslog::unix_custom(fmt, SOCKET).ok()?;
    // A log daemon that stops reading must not stall the filesystem: lines are logged
    // from requests, some under the core lock. A full queue drops the line instead.
    let set = match &s.backend {
        syslog::LoggerBackend::Unix(d) => d.set_nonblocking(true),
        syslog::LoggerBackend::UnixStream(w) => w.get_ref().set_write_timeout(Some(STREAM_TIMEOUT)),
        _ => Ok(()),
    };
    set.ok().map(|()| s)
}

/// How long a line may wait on a stream socket (rare for /dev/log), which would garble
/// lines if it were non-blocking: every write there would risk being partial.
const STREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

fn send(s: &mut Syslog, record: &Record) -> syslog::Result<()> {
    s.formatter.format(&mut s.backend, severity(record.level()), record.args())
}

static LOGGER: OnceLock<Fanout> = OnceLock::new();

/// Installs the logger: stderr only, until `to_syslog`.
pub fn init() {
    let fanout = LOGGER.get_or_init(|| Fanout {
        stderr: env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_FILTER)).build(),
        syslog: Mutex::new(None),
    });
    // Fails only if a logger is already installed, which then keeps logging.
    if log::set_logger(fanout).is_ok() {
        log::set_max_level(fanout.stderr.filter());
    }
}

/// Connects the system log for a daemon about to detach (after its fork, so that the
/// lines carry its own pid). Returns false when there is none to connect to.
pub fn to_syslog() -> bool {
    let Some(fanout) = LOGGER.get() else { return false };
    let Some(s) = connect() else { return false };
    *fanout.syslog.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    true
}

fn severity(level: Level) -> Severity {
    match level {
        Level::Error => Severity::LOG_ERR,
        Level::Warn => Severity::LOG_WARNING,
        Level::Info => Severity::LOG_INFO,
        Level::Debug | Level::Trace => Severity::LOG_DEBUG,
    }
}

impl Log for Fanout {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.stderr.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.stderr.matches(record) {
            return;
        }
        self.stderr.log(record);
        let mut guard = self.syslog.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = guard.as_mut() else { return };
        match send(s, record) {
            Ok(()) => return,
            // Its queue is full: this line is lost, the connection is fine.
            Err(syslog::Error::Write(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {}
        }
        // The log daemon restarted (its old socket refuses): connect to the new one and
        // send again; with no log daemon at all, the line goes nowhere.
        *guard = connect();
        if let Some(s) = guard.as_mut() {
            let _ = send(s, record);
        }
    }

    fn flush(&self) {
        self.stderr.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_rfc3164_from_the_daemon_facility() {
        let fmt = Formatter3164 { facility: Facility::LOG_DAEMON, hostname: None, process: IDENT.into(), pid: 42 };
        let mut line = Vec::new();
        fmt.format(&mut line, severity(Level::Error), "memory failure: page 9 failed").unwrap();
        let line = String::from_utf8(line).unwrap();
        // daemon (3) * 8 + err (3)
        assert!(line.starts_with("<27>"), "{line}");
        assert!(line.ends_with(" daxlink[42]: memory failure: page 9 failed"), "{line}");
    }

    #[test]
    fn the_default_filter_passes_mount_lines_and_holds_back_other_info() {
        let l = env_logger::Builder::new().parse_filters(DEFAULT_FILTER).build();
        let rec = |target: &'static str, level| Record::builder().target(target).level(level).build();
        assert!(l.matches(&rec(MOUNTS, Level::Info)));
        assert!(!l.matches(&rec("daxlink::fs::core", Level::Info)));
        assert!(l.matches(&rec("daxlink::fs::poison", Level::Error)));
        assert!(!l.matches(&rec("fuser::session", Level::Warn)));
    }
}
