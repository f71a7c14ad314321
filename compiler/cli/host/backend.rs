//! The programs that read and load the kernel's rules, one backend each.
//!
//! A backend loads its rules in [`Part`]s: each iptables family's tables
//! with one `*-restore` each, or nftables' `table inet fwc` with one
//! `nft -f`. Of each part, apply and diff need: the live rules (`live`),
//! a build or a rollback file in the normal form they are compared in
//! (`normalise`), the file that loads a plan's target (`load_text`), a
//! backup of the live rules and the file that brings them back
//! (`back_up`), the load itself (`restore`), and a load into a scratch
//! network namespace first (`preflight`). Everything else works on
//! the normal form.

use fwc::host::ruleset::Rules;
use fwc::ir::Family;
use std::io::Write;
use std::process::{Command, Stdio};

/// Which programs to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// `iptables-save`, `iptables-restore`, …: whatever the system's
    /// alternatives point at.
    Iptables,
    /// `iptables-nft-save`, …: the nf_tables backend.
    IptablesNft,
    /// `iptables-legacy-save`, …: the legacy x_tables backend.
    IptablesLegacy,
    /// `nft`: rules.nft's `table inet fwc`, both families in one
    /// transaction; no other table is read or written.
    Nft,
}

/// What one load replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// One family's iptables tables.
    Family(Family),
    /// nftables' `table inet fwc`.
    Nft,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Family(family) => family.name(),
            Part::Nft => "nftables",
        }
    }

    /// The suffix of its files in the state directory (`backup.v4`,
    /// `rollback.nft`).
    pub fn suffix(self) -> &'static str {
        match self {
            Part::Family(Family::V4) => "v4",
            Part::Family(Family::V6) => "v6",
            Part::Nft => "nft",
        }
    }
}

/// A part's live rules before a load, kept in the state directory.
pub struct Backup {
    /// iptables: the live rules' normal form as a restore file; nft: `nft
    /// list table inet fwc`, empty when there is no such table.
    pub text: String,
    /// The input that brings them back after a load.
    pub rollback: String,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::IptablesNft => "iptables-nft",
            Backend::IptablesLegacy => "iptables-legacy",
            Backend::Nft => "nft",
        }
    }

    /// The parts a build loads, in order.
    pub fn parts(self) -> &'static [Part] {
        match self {
            Backend::Nft => &[Part::Nft],
            _ => &[Part::Family(Family::V4), Part::Family(Family::V6)],
        }
    }

    /// Whether the rules match ipsets (`ipsets.restore`); rules.nft has
    /// named sets of its own table instead.
    pub fn uses_ipsets(self) -> bool {
        self != Backend::Nft
    }

    fn program(self, family: Family, tool: &str) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        match self {
            // nft loads no family of its own: its part is the table.
            Backend::Iptables | Backend::Nft => format!("{base}-{tool}"),
            Backend::IptablesNft => format!("{base}-nft-{tool}"),
            Backend::IptablesLegacy => format!("{base}-legacy-{tool}"),
        }
    }

    /// A dump, a build or a rollback file in normal form. nft's normal
    /// form is its listing, so an nft file is loaded into a scratch network
    /// namespace (created for it and gone with it) and listed there: which
    /// also checks that the kernel takes it.
    pub fn normalise(self, part: Part, text: &str) -> Result<Rules, String> {
        match part {
            Part::Family(_) => Rules::parse(text).map_err(|error| error.to_string()),
            Part::Nft => {
                let mut command = Command::new("unshare");
                command.args(["--net", "sh", "-c", "nft -f - && exec nft -j list ruleset", "fwc-scratch"]);
                let listing = run(command, Some(text), "unshare --net nft -f -")
                    .map_err(|error| format!("the kernel refuses the rules in a scratch namespace: {error}"))?;
                fwc::host::nft::from_json(&listing)
            }
        }
    }

    /// Whether [`normalise`](Backend::normalise) loads a file into a
    /// scratch namespace, so that a build it read needs no pre-flight.
    pub fn normalise_loads(self, part: Part) -> bool {
        part == Part::Nft
    }

    /// The live rules of a part in normal form.
    pub fn live(self, part: Part) -> Result<Rules, String> {
        let unreadable = |error: String| format!("cannot read the live {} rules ({}): {error}", part.name(), self.name());
        match part {
            Part::Family(family) => {
                let program = self.program(family, "save");
                let text = run(Command::new(&program), None, &program).map_err(unreadable)?;
                self.normalise(part, &text).map_err(unreadable)
            }
            Part::Nft => match nft_list(true).map_err(unreadable)? {
                Some(listing) => fwc::host::nft::from_json(&listing).map_err(unreadable),
                None => Ok(Rules::default()),
            },
        }
    }

    /// The input that loads `target`, the normal form of `built` (the
    /// build's file) with what other programs own spliced in.
    pub fn load_text(self, part: Part, target: &Rules, built: &str) -> String {
        match part {
            Part::Family(_) => target.restore_text(&[]),
            // The table is replaced whole: nothing is spliced in.
            Part::Nft => built.to_string(),
        }
    }

    /// The backup of the live rules (`live`, read when planning), and the
    /// input that brings them back, undoing a load of `target`: iptables
    /// resets the tables the target loads and the live rules lack; nft
    /// lists the table (as `nft -f` input: its JSON is for comparing) and
    /// replaces the table with it, or deletes it when there was none.
    pub fn back_up(self, part: Part, live: &Rules, target: &Rules) -> Result<Backup, String> {
        match part {
            Part::Family(_) => Ok(Backup {
                text: live.restore_text(&[]),
                rollback: live.restore_text(&target.tables_missing_from(live)),
            }),
            Part::Nft => {
                let listing = nft_list(false)
                    .map_err(|error| format!("cannot read the live {} rules ({}): {error}", part.name(), self.name()))?;
                Ok(Backup { rollback: fwc::host::nft::restore_text(listing.as_deref()), text: listing.unwrap_or_default() })
            }
        }
    }

    /// A rollback file written by an earlier apply still waiting for
    /// confirmation, made to also reset the tables `target` loads: none
    /// for nft, whose rollback replaces the whole table anyway.
    pub fn widen_rollback(self, part: Part, rollback: &str, target: &Rules) -> Option<String> {
        let Part::Family(_) = part else { return None };
        let old = Rules::parse(rollback).ok()?;
        let dump = fwc::import::parse::parse_dump(rollback).ok()?;
        let mut extra: Vec<String> = dump.tables.into_iter().map(|table| table.name).collect();
        extra.extend(target.tables.keys().cloned());
        Some(old.restore_text(&extra))
    }

    /// Loads a file, waiting at most `wait` seconds for the xtables lock.
    /// Each table the file names is replaced whole.
    pub fn restore(self, part: Part, text: &str, wait: u32) -> Result<(), String> {
        match part {
            Part::Family(family) => {
                let program = self.program(family, "restore");
                let mut command = Command::new(&program);
                command.arg("-w").arg(wait.to_string());
                run(command, Some(text), &program).map(drop).map_err(|error| explain_lock(error, wait))
            }
            Part::Nft => {
                let mut command = Command::new("nft");
                command.args(["-f", "-"]);
                run(command, Some(text), "nft -f -").map(drop)
            }
        }
    }

    /// Loads a file into a network namespace of its own, created for
    /// this load and gone with it: the kernel checks every rule, which
    /// `--test` alone does not on the nf_tables backend.
    /// The legacy backend's lock is a file, not a namespace's: the scratch
    /// load waits for it like the real one.
    /// Address sets are per network namespace: `ipsets` (an `ipset restore`
    /// file, possibly empty) is loaded into the scratch namespace first.
    pub fn preflight(self, part: Part, ipsets: &str, text: &str, wait: u32) -> Result<(), String> {
        let Part::Family(family) = part else {
            return self.normalise(part, text).map(drop);
        };
        let program = self.program(family, "restore");
        let mut command = Command::new("unshare");
        command.arg("--net");
        let _sets_file;
        if has_sets(ipsets) {
            let file = TemporaryFile::write(ipsets)
                .map_err(|error| format!("cannot write the address sets for the scratch namespace: {error}"))?;
            command.args(["sh", "-c", "ipset restore -file \"$1\" && exec \"$2\" -w \"$3\"", "fwc-preflight"]);
            command.arg(&file.0).arg(&program).arg(wait.to_string());
            _sets_file = file;
        } else {
            command.arg(&program).arg("-w").arg(wait.to_string());
        }
        run(command, Some(text), &format!("unshare --net {program}")).map(drop).map_err(|error| {
            if error.contains("xtables lock") {
                explain_lock(error, wait)
            } else {
                format!("the kernel refuses the rules in a scratch namespace: {error}")
            }
        })
    }
}

/// `nft list table inet fwc` (`-j`: as JSON); none when there is no such
/// table. A failed listing is told from a missing table by `nft list
/// tables`, so that an nft that cannot run is never "no table".
fn nft_list(json: bool) -> Result<Option<String>, String> {
    let mut command = Command::new("nft");
    if json {
        command.arg("-j");
    }
    command.args(["list", "table", "inet", "fwc"]);
    match run(command, None, "nft list table inet fwc") {
        Ok(listing) => Ok(Some(listing)),
        Err(error) => {
            let mut tables = Command::new("nft");
            tables.args(["-j", "list", "tables"]);
            match fwc::host::nft::has_table(&run(tables, None, "nft -j list tables")?)? {
                false => Ok(None),
                true => Err(error),
            }
        }
    }
}

/// Creates, fills and swaps in the address sets of an `ipset restore`
/// file. Sets are never destroyed: rules loaded before may still use them.
pub fn load_sets(ipsets: &str) -> Result<(), String> {
    if !has_sets(ipsets) {
        return Ok(());
    }
    let mut command = Command::new("ipset");
    command.arg("restore");
    run(command, Some(ipsets), "ipset restore").map(drop)
}

/// The live address sets, as `ipset save` prints them; none when there is
/// no `ipset` program and the build needs none.
pub fn live_sets(needed: bool) -> Result<String, String> {
    let mut command = Command::new("ipset");
    command.arg("save");
    match run(command, None, "ipset save") {
        Ok(text) => Ok(text),
        Err(_) if !needed => Ok(String::new()),
        Err(error) => Err(format!("cannot read the live address sets: {error}")),
    }
}

/// A file only this process reads, removed when dropped.
struct TemporaryFile(std::path::PathBuf);

impl TemporaryFile {
    fn write(text: &str) -> std::io::Result<TemporaryFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir().join(format!("fwc-preflight-{}.ipsets", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        let removed_when_dropped = TemporaryFile(path);
        file.write_all(text.as_bytes())?;
        Ok(removed_when_dropped)
    }
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether an `ipset restore` file does anything.
pub fn has_sets(ipsets: &str) -> bool {
    ipsets.lines().any(|line| !line.trim().is_empty() && !line.starts_with('#'))
}

/// The xtables lock held too long gets a message that says so.
fn explain_lock(error: String, wait: u32) -> String {
    if error.contains("xtables lock") {
        format!("another program held the xtables lock for more than {wait} s (--wait): {error}")
    } else {
        error
    }
}

/// Runs a program with `input` on stdin; its stdout, or its stderr as the
/// error.
fn run(mut command: Command, input: Option<&str>, shown: &str) -> Result<String, String> {
    command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|error| format!("cannot run {shown}: {error}"))?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        // A program that fails early closes its input: its exit says why.
        let _ = stdin.write_all(input.as_bytes());
    }
    let output = child.wait_with_output().map_err(|error| format!("cannot wait for {shown}: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("{shown} failed ({}): {}", output.status, stderr.trim()))
    }
}
