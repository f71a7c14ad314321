//! The programs that read and load the kernel's rules, one backend each.
//!
//! A backend is what apply and diff need of the kernel's rules: dump the
//! live rules of a family (`save`), read a dump or a build into the normal
//! form they are compared in (`normalise`), write the normal form back as
//! the backend's input (`render`), load it (`restore`), and load it into a
//! scratch network namespace first (`preflight`). Everything else works on
//! the normal form. Another backend (nftables) is another variant here.

use fwc::host::ruleset::Rules;
use fwc::ir::Family;
use std::io::Write;
use std::process::{Command, Stdio};

/// Which iptables programs to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// `iptables-save`, `iptables-restore`, …: whatever the system's
    /// alternatives point at.
    Iptables,
    /// `iptables-nft-save`, …: the nf_tables backend.
    IptablesNft,
    /// `iptables-legacy-save`, …: the legacy x_tables backend.
    IptablesLegacy,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::IptablesNft => "iptables-nft",
            Backend::IptablesLegacy => "iptables-legacy",
        }
    }

    fn program(self, family: Family, tool: &str) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        match self {
            Backend::Iptables => format!("{base}-{tool}"),
            Backend::IptablesNft => format!("{base}-nft-{tool}"),
            Backend::IptablesLegacy => format!("{base}-legacy-{tool}"),
        }
    }

    /// The live rules of one family, as `iptables-save` prints them.
    pub fn save(self, family: Family) -> Result<String, String> {
        let program = self.program(family, "save");
        run(Command::new(&program), None, &program)
    }

    /// A dump, a build or a backup in normal form.
    pub fn normalise(self, text: &str) -> Result<Rules, String> {
        Rules::parse(text).map_err(|error| error.to_string())
    }

    /// The live rules of one family in normal form.
    pub fn live(self, family: Family) -> Result<Rules, String> {
        let text = self.save(family)?;
        self.normalise(&text).map_err(|error| format!("cannot read the live {} rules ({}): {error}", family.name(), self.name()))
    }

    /// The input that loads exactly `rules`, resetting `empty_tables` too
    /// (tables to leave empty and accepting).
    pub fn render(self, rules: &Rules, empty_tables: &[String]) -> String {
        rules.restore_text(empty_tables)
    }

    /// Loads a restore file, waiting at most `wait` seconds for the xtables
    /// lock. Each table the file names is replaced whole.
    pub fn restore(self, family: Family, text: &str, wait: u32) -> Result<(), String> {
        let program = self.program(family, "restore");
        let mut command = Command::new(&program);
        command.arg("-w").arg(wait.to_string());
        run(command, Some(text), &program).map(drop).map_err(|error| explain_lock(error, wait))
    }

    /// Loads a restore file into a network namespace of its own, created for
    /// this load and gone with it: the kernel checks every rule, which
    /// `--test` alone does not on the nf_tables backend.
    /// The legacy backend's lock is a file, not a namespace's: the scratch
    /// load waits for it like the real one.
    /// Address sets are per network namespace: `ipsets` (an `ipset restore`
    /// file, possibly empty) is loaded into the scratch namespace first.
    pub fn preflight(self, family: Family, ipsets: &str, text: &str, wait: u32) -> Result<(), String> {
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
