//! `daxlink generate man|bash|zsh DIR` (hidden; `make install` runs it): daxlink(8)
//! and the shell completions, made from the clap definitions that parse the command
//! line and from the table of mount options the parser keeps, so neither can drift
//! from what the binary accepts.

use std::path::Path;
use std::process::ExitCode;

use clap::{Command, CommandFactory};
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use super::{Cli, fail};
use crate::fuse::MountConfig;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Doc {
    /// daxlink.8
    Man,
    /// daxlink, for bash-completion's completions directory
    Bash,
    /// _daxlink, for zsh's site-functions
    Zsh,
}

/// Writes the page or the completion script into `dir`, created if missing.
pub fn generate(doc: Doc, dir: &Path) -> ExitCode {
    let cmd = public_command();
    let (name, text) = match doc {
        Doc::Man => ("daxlink.8", man_page(cmd)),
        Doc::Bash => ("daxlink", completion(clap_complete::Shell::Bash, cmd)),
        Doc::Zsh => ("_daxlink", completion(clap_complete::Shell::Zsh, cmd)),
    };
    let path = dir.join(name);
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&path, e),
    }
}

/// The command line as users see it: without the hidden verbs, which clap_complete
/// would offer too. Not built yet: the page leaves out each verb's --help.
fn public_command() -> Command {
    let full = Cli::command();
    // `#[command(version)]` is this version too.
    Command::new("daxlink")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

fn completion(shell: clap_complete::Shell, mut cmd: Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "daxlink", &mut out);
    out
}

/// Lines of a rendered clap_mangen section without its `.SH` heading, so that a verb's
/// synopsis and options sit under that verb's own heading.
fn without_heading(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = render(&mut out);
    String::from_utf8_lossy(&out).lines().filter(|l| !l.starts_with(".SH ")).map(|l| format!("{l}\n")).collect()
}

/// Text paragraphs as roff: one `.PP` before each.
fn paragraphs(r: &mut Roff, text: &[&str]) {
    for p in text {
        r.control("PP", []);
        r.text([roman(*p)]);
    }
}

fn man_page(cmd: Command) -> Vec<u8> {
    let man = Man::new(cmd.clone()).title("DAXLINK").section("8").manual("System Administration");
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);

    let mut r = Roff::new();
    r.control("SH", ["SYNOPSIS"]);
    r.text([
        bold("mount -t fuse.daxlink"),
        roman(" "),
        italic("POOL MNT"),
        roman(" [-o "),
        italic("OPTIONS"),
        roman("]"),
    ]);
    r.control("br", []);
    r.text([bold("daxlink"), roman(" "), italic("COMMAND"), roman(" ...")]);
    r.control("SH", ["DESCRIPTION"]);
    paragraphs(
        &mut r,
        &[
            "daxlink is a filesystem in user space (FUSE) that keeps every file's data as extents on a memory-mapped \
             pool (a file, a file on a DAX filesystem or tmpfs, or a pmem device) and tracks the owner of every page \
             of it, so that files can share pages (reflink clones, deduplication) and a failed page of memory is \
             traced to every file on it.",
            "mount(8) runs daxlink through mount.fuse3 as daxlink POOL MNT -o OPTIONS, which is daxlink mount. The \
             mount returns once the filesystem is ready; the daemon then detaches and serves until umount(8).",
        ],
    );
    r.control("SH", ["COMMANDS"]);
    let mut head = Vec::new();
    let _ = r.to_writer(&mut head);
    out.extend(head);

    for sub in cmd.get_subcommands() {
        let name = format!("daxlink {}", sub.get_name());
        let mut r = Roff::new();
        r.control("SS", [name.as_str()]);
        let _ = r.to_writer(&mut out);
        let verb = Man::new(sub.clone().bin_name(name).disable_help_flag(true));
        out.extend(without_heading(|w| verb.render_synopsis_section(w)).into_bytes());
        out.extend(b".PP\n");
        out.extend(without_heading(|w| verb.render_description_section(w)).into_bytes());
        out.extend(without_heading(|w| verb.render_options_section(w)).into_bytes());
    }

    let mut r = Roff::new();
    r.control("SH", ["MOUNT OPTIONS"]);
    r.text([roman(
        "Given to mount(8) with -o, in /etc/fstab, or to daxlink mount with -o, comma-separated. An unknown option \
         is an error naming it.",
    )]);
    for (names, meaning) in MountConfig::OPTIONS {
        r.control("TP", []);
        let mut header = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                header.push(roman(", "));
            }
            header.push(bold(*n));
        }
        r.text(header);
        r.text([roman(*meaning)]);
    }

    r.control("SH", ["LOGGING"]);
    paragraphs(
        &mut r,
        &[
            "A detached daemon logs to the system log (identifier daxlink, facility daemon), so journalctl -t daxlink \
             or /var/log/syslog shows its lines: each mount and unmount with the pool and mount point, each memory \
             failure with its pages and the paths of the files on them, each I/O error, and each switch to \
             read-only. With -o log=PATH the lines are appended to PATH as well. A machine without a system log \
             (no /dev/log) gets the lines only through -o log=PATH; mount says so when it detaches without either.",
            "daxlink mount -f logs to stderr instead. RUST_LOG sets which lines are logged, as env_logger reads it \
             (default: warn,daxlink::mounts=info,fuser::session=error; RUST_LOG=info for more).",
        ],
    );
    r.control("SH", ["EXIT STATUS"]);
    r.text([roman(
        "0 on success, 1 on failure, 2 for bad arguments; daxlink fsck: 0 clean, 1 errors corrected, 4 errors \
         left, 8 could not check.",
    )]);
    r.control("SH", ["EXAMPLES"]);
    r.control("nf", []);
    r.text([roman("daxlink mkfs --size 4G /srv/data.pool")]);
    r.text([roman("mount -t fuse.daxlink /srv/data.pool /srv/data -o noatime")]);
    r.text([roman("cp --reflink=auto /srv/data/big /srv/data/big.clone")]);
    r.text([roman("daxlink stat /srv/data")]);
    r.text([roman("umount /srv/data")]);
    r.control("fi", []);
    r.control("PP", []);
    r.text([roman("An /etc/fstab line:")]);
    r.control("nf", []);
    r.text([roman("/srv/data.pool  /srv/data  fuse.daxlink  defaults,noatime  0 0")]);
    r.control("fi", []);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman("mount(8), umount(8), fstab(5), mount.fuse3(8), fusermount3(1), journalctl(1), cp(1)")]);
    let _ = r.to_writer(&mut out);
    let _ = man.render_version_section(&mut out);
    once_preamble(&out)
}

/// Each piece rendered apart starts with roff's two lines that define the apostrophe
/// string; the page needs them once, at the top.
fn once_preamble(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut seen = [false; 2];
    let mut out = String::new();
    for line in text.lines() {
        let i = match line {
            l if l.starts_with(".ie \\n(.g .ds Aq") => Some(0),
            l if l.starts_with(".el .ds Aq") => Some(1),
            _ => None,
        };
        if let Some(i) = i {
            if seen[i] {
                continue;
            }
            seen[i] = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value a placeholder in `MountConfig::OPTIONS` stands for.
    fn example(name: &str) -> String {
        name.replace("=N", "=2").replace("=PATH", "=/tmp/daxlink.log").replace("=TEXT", "=x").replace('*', "test")
    }

    fn page() -> String {
        let dir = std::env::temp_dir().join(format!("daxlink-docs-{}", std::process::id()));
        assert_eq!(generate(Doc::Man, &dir), ExitCode::SUCCESS);
        let text = std::fs::read_to_string(dir.join("daxlink.8")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        text
    }

    #[test]
    fn the_man_page_has_every_verb_and_every_mount_option() {
        let text = page();
        assert!(text.contains("\n.TH DAXLINK 8 "), "no title");
        assert_eq!(text.matches(".ds Aq").count(), 2, "the apostrophe preamble is not once");
        for verb in Cli::command().get_subcommands().filter(|s| !s.is_hide_set()) {
            let heading = format!(".SS \"daxlink {}\"", verb.get_name());
            assert!(text.contains(&heading), "no {heading}");
            for arg in verb.get_arguments().filter(|a| a.get_long().is_some()) {
                let long = format!("\\-\\-{}", arg.get_long().unwrap_or_default().replace('-', "\\-"));
                assert!(text.contains(&long), "daxlink {}: no {long}", verb.get_name());
            }
        }
        assert!(!text.contains("generate"), "a hidden verb is in the page");
        for (names, _) in MountConfig::OPTIONS {
            for n in *names {
                let shown = n.replace('-', "\\-");
                assert!(text.contains(&format!("\\fB{shown}\\fR")), "mount option {n} missing");
            }
        }
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "\"MOUNT OPTIONS\"", "LOGGING", "VERSION"] {
            assert!(text.contains(&format!(".SH {section}\n")), "no section {section}");
        }
    }

    #[test]
    fn every_documented_mount_option_parses() {
        for (names, _) in MountConfig::OPTIONS {
            for n in *names {
                let mut c = MountConfig::new("/p".into(), "/m".into());
                assert_eq!(c.parse_options(&example(n)), Ok(()), "{n}");
            }
        }
    }

    /// The parser is a `match`: its literal options are read from its source, so that
    /// an option added there and not to the table fails here.
    #[test]
    fn every_option_the_parser_names_is_documented() {
        let src = include_str!("../fuse/mount.rs");
        let start = src.find("pub fn parse_options").unwrap();
        // Its body ends at the first closing brace at the method's indentation.
        let end = start + src[start..].find("\n    }\n").unwrap();
        let fstab = src.find("const FSTAB_ONLY").unwrap();
        let fstab_end = fstab + src[fstab..].find(';').unwrap();
        let mut named: Vec<&str> = Vec::new();
        for chunk in [&src[start..end], &src[fstab..fstab_end]] {
            // Every string literal there is an option or an option's prefix, but for
            // the error messages, which hold a quote or a space.
            named.extend(chunk.split('"').skip(1).step_by(2).filter(|s| !s.contains(['\'', ' ', '{'])));
        }
        assert!(named.len() > 30, "found only {named:?}");
        let documented: Vec<&str> = MountConfig::OPTIONS.iter().flat_map(|(n, _)| n.iter().copied()).collect();
        for opt in named {
            let ok = documented.iter().any(|d| *d == opt || (opt.ends_with(['=', '-']) && d.starts_with(opt)));
            assert!(ok, "the parser accepts {opt:?}; MountConfig::OPTIONS does not list it");
        }
    }

    #[test]
    fn completions_offer_the_verbs_and_not_the_hidden_one() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh] {
            let text = String::from_utf8(completion(shell, public_command())).unwrap();
            for verb in ["mkfs", "mount", "inject-error", "--src-offset"] {
                assert!(text.contains(verb), "{shell}: no {verb}");
            }
            assert!(!text.contains("generate"), "{shell}: offers the hidden verb");
        }
    }
}
