//! What every kernel test needs: the tools, network namespaces that clean
//! up after themselves, the fwc binary, commands that cannot hang, and a
//! line diff for failure messages.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every namespace and temporary directory these tests create starts with
/// this, followed by the test process's id.
pub const PREFIX: &str = "fwct-";

/// How long a single iproute2 or iptables command may take.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// The programs the kernel tests run, and the Debian package of each.
const TOOLS: [(&str, &str); 11] = [
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    ("iptables-restore", "iptables"),
    ("ip6tables-restore", "iptables"),
    ("iptables-save", "iptables"),
    ("ip6tables-save", "iptables"),
    ("nft", "nftables"),
    ("ipset", "ipset"),
    ("sh", "dash"),
    ("python3", "python3"),
];

/// Where to look for programs besides `PATH`: root's tools live in sbin,
/// which a non-login `PATH` may lack.
const EXTRA_PATH: [&str; 4] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"];

pub struct Tools {
    pub ip: PathBuf,
    pub python: PathBuf,
    /// `PATH` for every command run, sbin included, so that `ip netns exec`
    /// and rules.sh find iptables.
    pub path: OsString,
}

/// The tools, checked once per test process. Panics — failing the test —
/// when not root or when a tool is missing, naming the packages to install.
/// The first call also deletes namespaces left by test processes that were
/// killed before they could clean up.
pub fn tools() -> &'static Tools {
    static TOOLS_FOUND: OnceLock<Result<Tools, String>> = OnceLock::new();
    match TOOLS_FOUND.get_or_init(find_tools) {
        Ok(tools) => tools,
        Err(message) => panic!("{message}"),
    }
}

fn find_tools() -> Result<Tools, String> {
    if !is_root() {
        return Err("the kernel tests must run as root: they create network namespaces and load \
                    iptables rules into them (CI runs them as root)"
            .to_string());
    }
    let mut directories: Vec<PathBuf> =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default();
    for extra in EXTRA_PATH {
        if !directories.iter().any(|directory| directory == Path::new(extra)) {
            directories.push(PathBuf::from(extra));
        }
    }
    let find = |name: &str| directories.iter().map(|directory| directory.join(name)).find(|path| path.is_file());
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(name, _)| find(name).is_none())
        .map(|(name, package)| format!("`{name}` (Debian package {package})"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the kernel tests need programs that are not installed: {}; searched {}",
            missing.join(", "),
            std::env::join_paths(&directories).map(|path| path.to_string_lossy().into_owned()).unwrap_or_default()
        ));
    }
    // Debian's own python3 starts faster than a version manager's shim.
    let python = [PathBuf::from("/usr/bin/python3")]
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| find("python3").expect("checked above"));
    let tools = Tools {
        ip: find("ip").expect("checked above"),
        python,
        path: std::env::join_paths(&directories).map_err(|error| format!("PATH: {error}"))?,
    };
    remove_stale_namespaces(&tools);
    Ok(tools)
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|line| line.strip_prefix("Uid:")).and_then(|uids| uids.split_whitespace().nth(1))
        == Some("0")
}

/// Deletes `fwct-PID-…` namespaces whose test process no longer exists.
fn remove_stale_namespaces(tools: &Tools) {
    let Ok(listing) =
        run_ok(Command::new(&tools.ip).args(["netns", "list"]).env("PATH", &tools.path), None, COMMAND_LIMIT)
    else {
        return;
    };
    for name in listing.lines().filter_map(|line| line.split_whitespace().next()) {
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.bytes().all(|byte| byte.is_ascii_digit()) && !Path::new("/proc").join(pid).exists() {
            let _ = run(Command::new(&tools.ip).args(["netns", "del", name]), None, COMMAND_LIMIT);
        }
    }
}

/// A name no other test in any process uses: `fwct-PID-N-ROLE`.
pub fn unique_name(role: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("{PREFIX}{}-{}-{role}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------- commands

/// A finished command.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with `input` on its standard input, killing it if it has
/// not finished within `limit`.
pub fn run(command: &mut Command, input: Option<&[u8]>, limit: Duration) -> Result<Ran, String> {
    let shown = format!("{command:?}");
    command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|error| format!("cannot start {shown}: {error}"))?;
    let mut stdin = child.stdin.take();
    let input = input.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        if let (Some(stdin), Some(input)) = (stdin.as_mut(), input) {
            let _ = stdin.write_all(&input);
        }
    });
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} did not finish within {} s and was killed", limit.as_secs()));
            }
            Err(error) => return Err(format!("cannot wait for {shown}: {error}")),
        }
    };
    let _ = writer.join();
    Ok(Ran { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Like [`run`], but a non-zero exit is an error too; gives the stdout.
pub fn run_ok(command: &mut Command, input: Option<&[u8]>, limit: Duration) -> Result<String, String> {
    let shown = format!("{command:?}");
    let ran = run(command, input, limit)?;
    if ran.status.success() {
        Ok(ran.stdout)
    } else {
        Err(format!("{shown} failed ({}):\n{}{}", ran.status, ran.stderr, ran.stdout))
    }
}

// ---------------------------------------------------------------- namespaces

/// A network namespace of its own, with `lo` up, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `fwct-PID-N-ROLE`. Panics if it cannot.
    pub fn new(role: &str) -> Netns {
        let name = unique_name(role);
        if let Err(error) = run_ok(ip_command().args(["netns", "add", &name]), None, COMMAND_LIMIT) {
            panic!("cannot create network namespace {name}: {error}");
        }
        let namespace = Netns { name };
        namespace.ip(&["link", "set", "lo", "up"]);
        namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`, with sbin on the `PATH`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = ip_command();
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a program inside the namespace; its stdout, or what went wrong.
    pub fn exec(&self, args: &[&str], input: Option<&[u8]>) -> Result<String, String> {
        let mut command = self.command(args[0]);
        command.args(&args[1..]);
        run_ok(&mut command, input, COMMAND_LIMIT)
    }

    /// `ip -n NAME ARGS…`; panics if it fails (setting up the lab).
    pub fn ip(&self, args: &[&str]) {
        let mut command = ip_command();
        command.args(["-n", &self.name]).args(args);
        if let Err(error) = run_ok(&mut command, None, COMMAND_LIMIT) {
            panic!("setting up namespace {}: {error}", self.name);
        }
    }

    /// What `iptables-save` (IPv4) or `ip6tables-save` prints in here.
    pub fn save(&self, program: &str) -> Result<String, String> {
        self.exec(&[program], None)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(error) = run_ok(ip_command().args(["netns", "del", &self.name]), None, COMMAND_LIMIT) {
            eprintln!("warning: could not delete network namespace {}: {error}", self.name);
        }
    }
}

/// The `ip` binary, with the tests' `PATH`.
fn ip_command() -> Command {
    let tools = tools();
    let mut command = Command::new(&tools.ip);
    command.env("PATH", &tools.path);
    command
}

// ---------------------------------------------------------------- files and fwc

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(role: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(role));
        std::fs::create_dir_all(&path).unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to `relative` inside the directory, creating folders.
    pub fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|error| panic!("cannot create {}: {error}", parent.display()));
        }
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The files `fwc build` writes.
pub const OUTPUTS: [&str; 7] = ["rules.v4", "rules.v6", "rules.sh", "saved.v4", "saved.v6", "rules.nft", "ipsets.restore"];

/// The outputs of one `fwc build`, in a directory of their own.
pub struct Built {
    directory: TempDir,
}

impl Built {
    pub fn path(&self, output: &str) -> PathBuf {
        self.directory.path().join(output)
    }

    pub fn read(&self, output: &str) -> Result<String, String> {
        let path = self.path(output);
        std::fs::read_to_string(&path).map_err(|error| format!("fwc build wrote no readable {output}: {error}"))
    }
}

/// `fwc build POLICY ARGS… -o DIR` into a fresh temporary directory.
pub fn build(policy: &Path, args: &[String]) -> Result<Built, String> {
    let directory = TempDir::new("build");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fwc"));
    command.arg("build").arg(policy).args(args).arg("-o").arg(directory.path());
    let ran = run(&mut command, None, Duration::from_secs(120))?;
    if !ran.status.success() {
        return Err(format!(
            "`fwc build {} {}` failed ({}):\n{}",
            policy.display(),
            args.join(" "),
            ran.status,
            ran.stderr
        ));
    }
    Ok(Built { directory })
}

/// The extra `fwc build` arguments a policy asks for in its header: the
/// words of every `# args:` line among the comment lines it starts with.
pub fn header_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else { break };
        if let Some(words) = comment.trim_start().strip_prefix("args:") {
            args.extend(words.split_whitespace().map(str::to_string));
        }
    }
    args
}

/// The `.fw` files directly in `directory`, sorted; `skip_suffix` names
/// files that are not policies of their own (`.test.fw`).
pub fn policy_files(directory: &Path, skip_suffix: Option<&str>) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(directory) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .filter(|path| {
            let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            name.ends_with(".fw") && !skip_suffix.is_some_and(|suffix| name.ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

// ---------------------------------------------------------------- comparing

/// An `iptables-save` dump as saved.v4 / saved.v6 spell it: without the
/// `#` lines and without the ` [packets:bytes]` counters of `:CHAIN` lines.
pub fn saved_form(dump: &str) -> String {
    let mut out = String::new();
    for line in dump.lines().filter(|line| !line.starts_with('#')) {
        let line = match line.strip_prefix(':').and_then(|_| line.rsplit_once(" [")) {
            Some((chain, counters)) if is_counters(counters) => chain,
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `N:M]`, the tail of a counter.
fn is_counters(text: &str) -> bool {
    text.strip_suffix(']').and_then(|inner| inner.split_once(':')).is_some_and(|(packets, bytes)| {
        [packets, bytes].iter().all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()))
    })
}

/// A unified-style line diff: `-` lines only in `expected`, `+` only in
/// `actual`, three lines of context, `@@` between distant changes.
pub fn diff(expected_name: &str, expected: &str, actual_name: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    // Longest common subsequence, filled from the end.
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] =
                if old[i] == new[j] { common[i + 1][j + 1] + 1 } else { common[i + 1][j].max(common[i][j + 1]) };
        }
    }
    let mut lines: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            lines.push((' ', old[i]));
            i += 1;
            j += 1;
        } else if i < old.len() && (j == new.len() || common[i + 1][j] >= common[i][j + 1]) {
            lines.push(('-', old[i]));
            i += 1;
        } else {
            lines.push(('+', new[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..lines.len()).filter(|&index| lines[index].0 != ' ').collect();
    let near_change = |index: usize| changed.iter().any(|&change| change.abs_diff(index) <= 3);
    let mut out = format!("--- {expected_name}\n+++ {actual_name}\n");
    let mut skipped = false;
    for (index, (mark, line)) in lines.iter().enumerate() {
        if near_change(index) {
            if skipped {
                out.push_str("@@\n");
                skipped = false;
            }
            out.push_str(&format!("{mark}{line}\n"));
        } else {
            skipped = true;
        }
    }
    if changed.is_empty() {
        out.push_str("(the texts differ only in line endings)\n");
    }
    out
}
