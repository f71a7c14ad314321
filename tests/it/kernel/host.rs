//! `fwc apply`, `fwc confirm`, `fwc diff` and `fwc apply --boot`, run with
//! `ip netns exec` inside namespaces these tests create, so every
//! iptables-save and -restore fwc runs sees only that namespace's tables.
//! Each test gives fwc a temporary state directory (`FWC_STATE_DIR`);
//! shims put in front of `PATH` make a restore program fail or stall where
//! a test needs it to.

mod nft;

use super::support::{run, tools, Netns, Ran, TempDir};
use fwc::host::ruleset::Rules;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FWC: &str = env!("CARGO_BIN_EXE_fwc");

/// Exit codes of `fwc apply` (compiler/cli/host/mod.rs).
const APPLIED: i32 = 0;
const NO_CHANGE: i32 = 3;
const REFUSED: i32 = 4;
const ROLLED_BACK: i32 = 5;

/// A namespace, a state directory and the backend to use.
struct Host {
    netns: Netns,
    state: TempDir,
    backend: &'static str,
    /// Directories put in front of `PATH` (shims).
    shims: Option<PathBuf>,
}

impl Host {
    fn new(backend: &'static str) -> Host {
        Host { netns: Netns::new("host"), state: TempDir::new("state"), backend, shims: None }
    }

    fn path(&self) -> std::ffi::OsString {
        let mut paths: Vec<PathBuf> = self.shims.iter().cloned().collect();
        paths.extend(std::env::split_paths(&tools().path));
        std::env::join_paths(paths).expect("paths without colons")
    }

    /// `ip netns exec NS fwc ARGS…` with this host's state and backend.
    fn fwc_command(&self, args: &[&str]) -> Command {
        let mut command = self.netns.command(FWC);
        command
            .args(args)
            .env("FWC_STATE_DIR", self.state.path())
            .env("FWC_BACKEND", self.backend)
            .env("PATH", self.path())
            .env_remove("SSH_CONNECTION");
        command
    }

    fn fwc(&self, args: &[&str]) -> Ran {
        run(&mut self.fwc_command(args), None, Duration::from_secs(60)).unwrap_or_else(|error| panic!("{error}"))
    }

    fn program(&self, family: &str, tool: &str) -> String {
        let base = if family == "v4" { "iptables" } else { "ip6tables" };
        match self.backend {
            "iptables" => format!("{base}{tool}"),
            other => format!("{base}{}{tool}", other.strip_prefix("iptables").unwrap_or("")),
        }
    }

    /// The live rules of a family, as the backend prints them.
    fn save(&self, family: &str) -> String {
        let program = self.program(family, "-save");
        self.netns.exec(&[&program], None).unwrap_or_else(|error| panic!("{error}"))
    }

    fn live(&self, family: &str) -> Rules {
        Rules::parse(&self.save(family)).expect("iptables-save output parses")
    }

    /// Runs an iptables command (`iptables` or `ip6tables` of the backend).
    fn iptables(&self, family: &str, args: &[&str]) {
        let program = self.program(family, "");
        let mut command = self.netns.command(&program);
        command.args(args);
        if let Err(error) = super::support::run_ok(&mut command, None, Duration::from_secs(30)) {
            panic!("{error}");
        }
    }

    fn restore(&self, family: &str, text: &str) {
        let program = self.program(family, "-restore");
        self.netns.exec(&[&program], Some(text.as_bytes())).unwrap_or_else(|error| panic!("{error}"));
    }

    /// A path in a directory of the test's own beside the state directory
    /// (shims, counters, logs), removed with the host.
    fn scratch(&self, name: &str) -> PathBuf {
        let directory = self.state.path().with_extension("scratch");
        std::fs::create_dir_all(&directory).expect("scratch directory");
        directory.join(name)
    }

    /// Puts a shell script named `name` in front of `PATH`.
    /// Shims `program` so that its second call (the real load, after the
    /// scratch-namespace check) runs `action` (`$real` is the real program)
    /// and every other call the real program. Gives the call counter file.
    fn shim_second_call(&mut self, program: &str, action: &str) -> PathBuf {
        let counter = self.scratch("count");
        self.shim(
            program,
            &format!(
                "#!/bin/sh\nreal={real}\nn=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\nif [ $n -eq 2 ]; then {action}; fi\nexec $real \"$@\"\n",
                c = counter.display(),
                real = real(program)
            ),
        );
        counter
    }

    fn shim(&mut self, name: &str, script: &str) {
        let directory = self.scratch("bin");
        std::fs::create_dir_all(&directory).expect("shim directory");
        let path = directory.join(name);
        std::fs::write(&path, script).expect("shim written");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("shim executable");
        self.shims = Some(directory);
    }

    fn state_file(&self, name: &str) -> PathBuf {
        self.state.path().join(name)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.state.path().with_extension("scratch"));
    }
}

/// Where the real restore program lives, for shims to call.
fn real(program: &str) -> String {
    std::env::split_paths(&tools().path)
        .map(|directory| directory.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} not found"))
        .display()
        .to_string()
}

fn code(ran: &Ran) -> i32 {
    ran.status.code().unwrap_or(-1)
}

fn show(ran: &Ran) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", ran.status.code(), ran.stdout, ran.stderr)
}

/// Rules a test loads itself, standing for what was there before fwc.
const BEFORE_V4: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:old - [0:0]\n-A INPUT -p tcp -m tcp --dport 7 -j old\n-A old -s 198.18.9.9/32 -j DROP\nCOMMIT\n";
const BEFORE_V6: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s fd00::99/128 -j DROP\nCOMMIT\n";

const POLICY: &str = "use baseline\nallow in tcp 80, 443 stateful\nallow in udp 60000-61000 stateful\n";
const OTHER_POLICY: &str = "use baseline\nallow in tcp 8080 stateful\n";

fn policy(directory: &TempDir, name: &str, text: &str) -> String {
    directory.write(name, text).display().to_string()
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {} s", limit.as_secs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn apply_loads_both_families_then_reports_no_change() {
    let host = Host::new("iptables");
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let built = super::support::build(Path::new(&web), &[]).expect("builds");

    let dry = host.fwc(&["apply", &web, "--dry-run"]);
    assert_eq!(code(&dry), APPLIED, "{}", show(&dry));
    assert!(dry.stdout.contains("+-A INPUT -p tcp -m multiport --dports 80,443 -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT"), "{}", show(&dry));
    assert_eq!(host.live("v4"), Rules::default(), "--dry-run changed nothing");

    let applied = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&applied), APPLIED, "{}", show(&applied));
    for family in ["v4", "v6"] {
        let saved = built.read(&format!("saved.{family}")).expect("saved file");
        assert_eq!(host.live(family), Rules::parse(&saved).unwrap(), "{family} live = saved.{family}");
        assert!(host.state_file(&format!("confirmed/rules.{family}")).is_file());
    }
    let again = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&again), NO_CHANGE, "{}", show(&again));
    assert!(again.stdout.contains("no change"), "{}", show(&again));
    // A built directory applies the same way.
    let from_directory = host.fwc(&["apply", &built.path("rules.v4").parent().unwrap().display().to_string(), "--confirm", "0"]);
    assert_eq!(code(&from_directory), NO_CHANGE, "{}", show(&from_directory));
    let mode = std::fs::metadata(host.state_file("backup.v4")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_failing_ip6tables_restore_leaves_both_families_as_before() {
    let mut host = Host::new("iptables");
    host.restore("v4", BEFORE_V4);
    host.restore("v6", BEFORE_V6);
    let before = (host.live("v4"), host.live("v6"));
    // Call 1 is the scratch-namespace check, call 2 the real load: it loads
    // the rules, then reports failure, the worst case. Later calls (the
    // rollback) work.
    let counter = host.shim_second_call("ip6tables-restore", LOAD_THEN_FAIL);
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let ran = host.fwc(&["apply", &web, "--confirm", "0"]);
    let _ = std::fs::remove_file(&counter);
    assert_eq!(code(&ran), ROLLED_BACK, "{}", show(&ran));
    assert!(ran.stderr.contains("shim: failing on purpose"), "{}", show(&ran));
    assert_eq!((host.live("v4"), host.live("v6")), before, "both families are as before");
    assert!(!host.state_file("confirmed/rules.v4").exists(), "nothing confirmed");
}

#[test]
fn a_policy_the_kernel_refuses_is_refused_before_anything_changes() {
    let host = Host::new("iptables");
    host.restore("v4", BEFORE_V4);
    let before = host.live("v4");
    let build = TempDir::new("build");
    build.write("rules.v4", "*filter\n:INPUT DROP [0:0]\n-A INPUT -m nosuchmatch --x 1 -j ACCEPT\nCOMMIT\n");
    build.write("rules.v6", "*filter\n:INPUT DROP [0:0]\nCOMMIT\n");
    let ran = host.fwc(&["apply", &build.path().display().to_string(), "--confirm", "0", "--force"]);
    assert_eq!(code(&ran), REFUSED, "{}", show(&ran));
    assert!(ran.stderr.contains("scratch namespace"), "{}", show(&ran));
    assert_eq!(host.live("v4"), before);
    assert_eq!(host.live("v6"), Rules::default());
}

#[test]
fn two_applies_at_once_take_turns() {
    let mut host = Host::new("iptables");
    let log = host.scratch("log");
    // Each restore records when it starts and ends; the loads of two
    // applies must not interleave.
    for program in ["iptables-restore", "ip6tables-restore"] {
        host.shim(
            program,
            &format!(
                "#!/bin/sh\necho start >> {log}\nsleep 0.3\n{real} \"$@\"\nrc=$?\necho end >> {log}\nexit $rc\n",
                log = log.display(),
                real = real(program)
            ),
        );
    }
    let files = TempDir::new("policies");
    let first = policy(&files, "a.fw", POLICY);
    let second = policy(&files, "b.fw", OTHER_POLICY);
    let mut children: Vec<std::process::Child> = [&first, &second]
        .iter()
        .map(|path| {
            host.fwc_command(&["apply", path, "--confirm", "0", "--wait", "60"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("fwc starts")
        })
        .collect();
    let codes: Vec<i32> = children.iter_mut().map(|child| child.wait().expect("fwc ends").code().unwrap_or(-1)).collect();
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert_eq!(codes, [APPLIED, APPLIED]);
    let lines: Vec<&str> = lines.lines().collect();
    assert!(lines.len() >= 8, "both applies ran their checks and loads: {lines:?}");
    for pair in lines.chunks(2) {
        assert_eq!(pair, ["start", "end"], "restores interleaved: {lines:?}");
    }
}

/// The lab for the lockout tests: `host` and `client` joined by a veth pair,
/// a TCP server on port 22 in `host`, and a connection from `client` held
/// open.
struct Session {
    _client: Netns,
    server: std::process::Child,
    holder: std::process::Child,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.server.kill();
        let _ = self.holder.wait();
        let _ = self.server.wait();
    }
}

fn ssh_session(host: &Host) -> Session {
    let client = Netns::new("client");
    let link = format!("fh{}", std::process::id() % 100000);
    let tools = tools();
    let ip = |args: &[&str]| {
        super::support::run_ok(Command::new(&tools.ip).args(args), None, Duration::from_secs(30)).unwrap_or_else(|error| panic!("{error}"))
    };
    ip(&["link", "add", &link, "netns", host.netns.name(), "type", "veth", "peer", "name", "eth0", "netns", client.name()]);
    ip(&["-n", host.netns.name(), "link", "set", &link, "name", "eth0"]);
    for (namespace, address) in [(host.netns.name(), "198.18.0.1/24"), (client.name(), "198.18.0.2/24")] {
        ip(&["-n", namespace, "addr", "add", address, "dev", "eth0"]);
        ip(&["-n", namespace, "link", "set", "eth0", "up"]);
    }
    let server = host
        .netns
        .command(&tools.python)
        .args(["-c", "import socket,time\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('198.18.0.1', 22)); s.listen(5)\nc=s.accept()\ntime.sleep(600)\n"])
        .stdin(Stdio::null())
        .spawn()
        .expect("server starts");
    let holder = client
        .command(&tools.python)
        .args(["-c", "import socket,time\nfor i in range(100):\n    try:\n        s=socket.create_connection(('198.18.0.1', 22), 1); break\n    except OSError: time.sleep(0.05)\nprint('connected', flush=True)\ntime.sleep(600)\n"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("client starts");
    let mut holder = holder;
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(holder.stdout.take().expect("piped")).read_line(&mut line).expect("client says");
    assert_eq!(line.trim(), "connected");
    Session { _client: client, server, holder }
}

const CUTS_SSH: &str = "policy in drop\npolicy out drop\nallow in on lo\nallow out on lo\nallow in tcp 80 stateful\n";

#[test]
fn a_policy_that_cuts_the_ssh_session_is_refused() {
    let host = Host::new("iptables");
    let _session = ssh_session(&host);
    let files = TempDir::new("policies");
    let cutting = policy(&files, "cut.fw", &format!("{CUTS_SSH}ignore lockout \"the test has no sshd\"\n"));
    let dry = host.fwc(&["apply", &cutting, "--dry-run"]);
    assert_eq!(code(&dry), APPLIED, "{}", show(&dry));
    assert!(dry.stderr.contains("would refuse these rules"), "the dry run warns: {}", show(&dry));
    let ran = host.fwc(&["apply", &cutting, "--confirm", "0"]);
    assert_eq!(code(&ran), REFUSED, "{}", show(&ran));
    assert!(ran.stderr.contains("would cut the SSH session from 198.18.0.2"), "{}", show(&ran));
    assert!(ran.stderr.contains("policy of INPUT"), "names what decided: {}", show(&ran));
    assert_eq!(host.live("v4"), Rules::default(), "nothing loaded");
    // A rule that drops it is named with its line.
    let denying = policy(&files, "deny.fw", "deny in tcp 22 from 198.18.0.0/24\nuse baseline\n");
    let ran = host.fwc(&["apply", &denying, "--confirm", "0"]);
    assert_eq!(code(&ran), REFUSED, "{}", show(&ran));
    assert!(ran.stderr.contains("deny.fw:1"), "points at the rule: {}", show(&ran));
    // The baseline keeps SSH: no refusal, and the built directory is
    // checked the same way (through its imported rules).
    let fine = policy(&files, "fine.fw", POLICY);
    let ran = host.fwc(&["apply", &fine, "--confirm", "0"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    let built = super::support::build(Path::new(&cutting), &[]).expect("builds");
    let ran = host.fwc(&["apply", &built.path("rules.v4").parent().unwrap().display().to_string(), "--confirm", "0"]);
    assert_eq!(code(&ran), REFUSED, "{}", show(&ran));
}

#[test]
fn the_session_in_ssh_connection_is_checked_too() {
    let host = Host::new("iptables");
    let files = TempDir::new("policies");
    let cutting = policy(&files, "cut.fw", &format!("{CUTS_SSH}ignore lockout \"the test has no sshd\"\n"));
    let mut command = host.fwc_command(&["apply", &cutting, "--confirm", "0"]);
    command.env("SSH_CONNECTION", "198.18.0.5 40000 198.18.0.1 2222");
    let ran = run(&mut command, None, Duration::from_secs(60)).expect("fwc runs");
    assert_eq!(code(&ran), REFUSED, "{}", show(&ran));
    assert!(ran.stderr.contains("198.18.0.5 port 40000 to 198.18.0.1 port 2222"), "{}", show(&ran));
    let ran = host.fwc(&["apply", &cutting, "--confirm", "0"]);
    assert_eq!(code(&ran), APPLIED, "no session, no refusal: {}", show(&ran));
}

/// A shim action: load the rules, then report failure, the worst case.
const LOAD_THEN_FAIL: &str = "$real \"$@\"; echo 'shim: failing on purpose' >&2; exit 1";

/// `--force --confirm 2`, the applying process killed by `signal` (to its
/// whole process group, as a dying SSH session does) in the middle of its
/// load, IPv4 loaded and IPv6 not: both families come back.
fn rollback_survives(signal: i32) {
    let mut host = Host::new("iptables");
    let _session = ssh_session(&host);
    host.restore("v4", BEFORE_V4);
    host.restore("v6", BEFORE_V6);
    let before = (host.live("v4"), host.live("v6"));
    // The real IPv6 load (the second ip6tables-restore) hangs.
    host.shim_second_call("ip6tables-restore", "sleep 60; exit 1");
    let files = TempDir::new("policies");
    let cutting = policy(&files, "cut.fw", &format!("{CUTS_SSH}ignore lockout \"the test has no sshd\"\n"));
    let mut command = host.fwc_command(&["apply", &cutting, "--force", "--confirm", "2"]);
    // Like a login shell's job: a process group of its own, stdout to a
    // pipe nobody reads after the kill.
    command.process_group(0).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut apply = command.spawn().expect("fwc starts");
    let started = Instant::now();
    wait_until(Duration::from_secs(20), "the new IPv4 rules load", || host.live("v4") != before.0);
    // SAFETY: a signal to the process group this test created.
    unsafe { libc::kill(-(apply.id() as i32), signal) };
    let _ = apply.wait();
    wait_until(Duration::from_secs(2 + 6), "the previous rules come back", || {
        (host.live("v4"), host.live("v6")) == before
    });
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the deadline");
    wait_until(Duration::from_secs(5), "the rollback is logged", || {
        std::fs::read_to_string(host.state_file("rollback.log")).unwrap_or_default().contains("previous rules are back")
    });
    assert!(!host.state_file("confirmed/rules.v4").exists(), "an unconfirmed apply is never the boot rules");
}

#[test]
fn without_confirmation_the_rules_come_back_after_sighup_mid_load() {
    rollback_survives(libc::SIGHUP);
}

#[test]
fn without_confirmation_the_rules_come_back_after_sigkill_mid_load() {
    rollback_survives(libc::SIGKILL);
}

#[test]
fn confirm_keeps_the_rules_and_makes_them_the_boot_rules() {
    let host = Host::new("iptables");
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let ran = host.fwc(&["apply", &web, "--confirm", "2"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    let applied = host.live("v4");
    assert!(!host.state_file("confirmed/rules.v4").exists(), "not before confirmation");
    let confirmed = host.fwc(&["confirm"]);
    assert_eq!(code(&confirmed), APPLIED, "{}", show(&confirmed));
    assert!(host.state_file("confirmed/rules.v4").is_file());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(host.live("v4"), applied, "no rollback after confirmation");
    let again = host.fwc(&["confirm"]);
    assert_eq!(code(&again), REFUSED, "nothing waits: {}", show(&again));
}

#[test]
fn kept_and_foreign_chains_survive_an_apply() {
    let host = Host::new("iptables");
    let files = TempDir::new("policies");
    let head = "keep chain \"f2b-*\"\nchain fail2ban-ssh keep {\n    return\n}\njump in tcp 22 to fail2ban-ssh\n";
    let first = policy(&files, "a.fw", &format!("{head}{POLICY}"));
    let second = policy(&files, "b.fw", &format!("{head}{OTHER_POLICY}"));
    let ran = host.fwc(&["apply", &first, "--confirm", "0"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    // fail2ban's bans, and a chain of its own with a jump into it.
    host.iptables("v4", &["-I", "fail2ban-ssh", "-s", "198.18.0.7", "-j", "DROP"]);
    host.iptables("v4", &["-N", "f2b-sshd"]);
    host.iptables("v4", &["-A", "f2b-sshd", "-s", "198.18.0.9", "-j", "REJECT"]);
    host.iptables("v4", &["-I", "INPUT", "-p", "tcp", "--dport", "22", "-j", "f2b-sshd"]);
    // Docker's nat rules, in a table the policy does not use.
    host.iptables("v4", &["-t", "nat", "-N", "DOCKER"]);
    host.iptables("v4", &["-t", "nat", "-A", "PREROUTING", "-j", "DOCKER"]);
    host.iptables("v4", &["-t", "nat", "-A", "POSTROUTING", "-s", "198.19.0.0/16", "-j", "MASQUERADE"]);
    let nat_before = host.live("v4").tables["nat"].clone();
    let diff = host.fwc(&["diff"]);
    assert_eq!(code(&diff), 0, "bans and foreign chains are not drift: {}", show(&diff));
    assert!(diff.stderr.contains("filter/f2b-sshd: unmanaged"), "{}", show(&diff));
    let ran = host.fwc(&["apply", &second, "--confirm", "0"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    let live = host.save("v4");
    assert!(live.contains("-A fail2ban-ssh -s 198.18.0.7/32 -j DROP"), "{live}");
    assert!(live.contains("-A f2b-sshd -s 198.18.0.9/32 -j REJECT"), "{live}");
    assert!(live.contains("-A INPUT -p tcp -m tcp --dport 22 -j f2b-sshd"), "{live}");
    assert!(live.contains("--dport 8080"), "{live}");
    assert_eq!(host.live("v4").tables["nat"], nat_before, "nat is not the policy's: untouched");
    assert!(diff.stderr.contains("table nat: unmanaged"), "{}", show(&diff));
    let diff = host.fwc(&["diff", &second]);
    assert_eq!(code(&diff), 0, "{}", show(&diff));
}

/// A tiny deterministic generator: the mutations are the same every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound
    }
}

/// 100 random changes of the live rules (insert, delete, replace a rule),
/// each undone before the next: `fwc diff` sees every one, and nothing
/// after each undo.
fn diff_detects_mutations(backend: &'static str) {
    let host = Host::new(backend);
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let ran = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    let clean = host.fwc(&["diff"]);
    assert_eq!(code(&clean), 0, "an untouched host is in sync: {}", show(&clean));
    let clean = host.fwc(&["diff", &web]);
    assert_eq!(code(&clean), 0, "{}", show(&clean));
    let saved = [host.save("v4"), host.save("v6")];
    let mut random = Lcg(0x5eed);
    for round in 0..100 {
        let (family, family_index) = if random.below(2) == 0 { ("v4", 0) } else { ("v6", 1) };
        let chain = ["INPUT", "OUTPUT"][random.below(2)];
        let count = host.live(family).tables["filter"].chains[chain].rules.len();
        let position = (random.below(count) + 1).to_string();
        let port = (1000 + random.below(5000)).to_string();
        let kind = random.below(3);
        let mutation: Vec<&str> = match kind {
            0 => vec!["-I", chain, &position, "-p", "tcp", "--dport", &port, "-j", "ACCEPT"],
            1 => vec!["-D", chain, &position],
            _ => vec!["-R", chain, &position, "-p", "udp", "--dport", &port, "-j", "DROP"],
        };
        host.iptables(family, &mutation);
        let drift = host.fwc(&["diff"]);
        assert_eq!(code(&drift), 1, "round {round}: `{}` on {family} not seen: {}", mutation.join(" "), show(&drift));
        assert!(drift.stdout.contains(&format!("filter/{chain}")), "round {round}: {}", show(&drift));
        host.restore(family, &saved[family_index]);
        if round % 10 == 0 {
            let clean = host.fwc(&["diff"]);
            assert_eq!(code(&clean), 0, "round {round}: undone, in sync: {}", show(&clean));
        }
    }
}

#[test]
fn diff_detects_every_mutation_on_nf_tables() {
    diff_detects_mutations("iptables-nft");
}

#[test]
fn diff_detects_every_mutation_on_legacy() {
    diff_detects_mutations("iptables-legacy");
}

#[test]
fn apply_works_on_the_legacy_backend() {
    let host = Host::new("iptables-legacy");
    host.restore("v4", BEFORE_V4);
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let ran = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    let ran = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&ran), NO_CHANGE, "{}", show(&ran));
}

#[test]
fn boot_loads_the_confirmed_build_or_falls_back() {
    let host = Host::new("iptables");
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let other = policy(&files, "other.fw", OTHER_POLICY);
    for path in [&other, &web] {
        let ran = host.fwc(&["apply", path, "--confirm", "0"]);
        assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    }
    let web_rules = (host.live("v4"), host.live("v6"));
    host.restore("v4", "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n");
    let ran = host.fwc(&["apply", "--boot"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    assert_eq!((host.live("v4"), host.live("v6")), web_rules);

    // A corrupt confirmed build: the previous one loads, and boot says so.
    std::fs::write(host.state_file("confirmed/rules.v4"), "*filter\n-A INPUT -j NOWHERE\nCOMMIT\n").unwrap();
    let ran = host.fwc(&["apply", "--boot"]);
    assert_eq!(code(&ran), ROLLED_BACK, "{}", show(&ran));
    assert!(host.save("v4").contains("--dport 8080"), "the previous build: {}", show(&ran));

    // Neither: the emergency rules, which drop all but SSH.
    std::fs::write(host.state_file("previous/rules.v6"), "garbage\n").unwrap();
    let ran = host.fwc(&["apply", "--boot"]);
    assert_eq!(code(&ran), ROLLED_BACK, "{}", show(&ran));
    assert!(ran.stderr.contains("emergency"), "{}", show(&ran));
    let live = host.live("v4");
    assert_eq!(live.tables["filter"].chains["INPUT"].policy.as_deref(), Some("DROP"));
    assert_eq!(live, Rules::parse(fwc::host::emergency::restore_text(fwc::ir::Family::V4)).unwrap());
}

#[test]
fn a_held_xtables_lock_refuses_after_the_wait_with_a_clear_message() {
    // The legacy backend's lock is a file; a private one (XTABLES_LOCKFILE)
    // keeps the machine's other iptables users out of this test.
    let host = Host::new("iptables-legacy");
    let lockfile = host.scratch("xtables.lock");
    std::fs::write(&lockfile, "").expect("lock file");
    let mut holder = hold_lock(&lockfile);
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let started = Instant::now();
    let ran = run(
        host.fwc_command(&["apply", &web, "--confirm", "0", "--wait", "1"]).env("XTABLES_LOCKFILE", &lockfile),
        None,
        Duration::from_secs(60),
    )
    .expect("fwc runs");
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = std::fs::remove_file(&lockfile);
    assert_eq!(code(&ran), REFUSED, "{}", show(&ran));
    assert!(ran.stderr.contains("held the xtables lock for more than 1 s"), "{}", show(&ran));
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    assert_eq!(host.live("v4"), Rules::default(), "nothing loaded");
}

/// A process holding `lock` (flock) for five seconds, holding it already.
fn hold_lock(lock: &Path) -> std::process::Child {
    let holder = Command::new("flock")
        .arg(lock)
        .args(["sleep", "5"])
        .env("PATH", &tools().path)
        .spawn()
        .expect("flock (util-linux) runs");
    std::thread::sleep(Duration::from_millis(300));
    holder
}

#[test]
fn a_busy_state_lock_and_a_missing_build_are_reported() {
    let host = Host::new("iptables");
    let diff = host.fwc(&["diff"]);
    assert_eq!(code(&diff), 2, "no applied build: cannot tell: {}", show(&diff));
    std::fs::write(host.state_file("lock"), "").expect("lock file");
    let mut holder = hold_lock(&host.state_file("lock"));
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let ran = host.fwc(&["apply", &web, "--confirm", "0", "--wait", "1"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code(&ran), REFUSED, "{}", show(&ran));
    assert!(ran.stderr.contains("another fwc"), "{}", show(&ran));
}

/// dist/if-pre-up.d/fwc: loads the confirmed rules once per boot, lets
/// the interface come up on a fallback, and refuses it when nothing loads.
#[test]
fn the_if_pre_up_hook_loads_once_and_never_fails_open() {
    let mut host = Host::new("iptables");
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let ran = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    let confirmed = host.live("v4");
    host.restore("v4", "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n");
    let hook = super::support::repo_root().join("dist/if-pre-up.d/fwc");
    let mark = host.scratch("booted");
    let run_hook = |host: &Host| {
        let mut command = host.netns.command("sh");
        command
            .arg(&hook)
            .env("FWC", FWC)
            .env("FWC_BOOT_MARK", &mark)
            .env("FWC_STATE_DIR", host.state.path())
            .env("PATH", host.path())
            .env("IFACE", "eth0");
        run(&mut command, None, Duration::from_secs(60)).expect("the hook runs")
    };
    let ran = run_hook(&host);
    assert_eq!(code(&ran), 0, "{}", show(&ran));
    assert_eq!(host.live("v4"), confirmed);
    // Once per boot: the next interface changes nothing.
    host.restore("v4", "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
    let ran = run_hook(&host);
    assert_eq!(code(&ran), 0, "{}", show(&ran));
    assert_eq!(host.live("v4"), Rules::default());
    // Nothing loads at all (every restore fails): the interface stays down.
    let _ = std::fs::remove_file(&mark);
    host.shim("iptables-restore", "#!/bin/sh\ncat >/dev/null\necho 'shim: no' >&2\nexit 1\n");
    let ran = run_hook(&host);
    let _ = std::fs::remove_file(&mark);
    assert_eq!(code(&ran), 1, "{}", show(&ran));
}

/// The policy whose nine-block deny list becomes the address set fwc-4-1.
fn address_sets_policy() -> String {
    super::support::repo_root().join("tests/cases/ok/address-sets.fw").display().to_string()
}

/// Whether `ipset test SET ADDRESS` finds the address in the namespace's set.
fn in_set(host: &Host, set: &str, address: &str) -> bool {
    let mut command = host.netns.command("ipset");
    command.args(["test", set, address]);
    run(&mut command, None, Duration::from_secs(30)).unwrap_or_else(|error| panic!("{error}")).status.success()
}

#[test]
fn apply_loads_address_sets_before_the_rules_and_diff_sees_their_members() {
    let host = Host::new("iptables");
    let policy = address_sets_policy();
    let built = super::support::build(Path::new(&policy), &[]).expect("builds");
    assert!(built.read("rules.v4").unwrap().contains("--match-set fwc-4-1 src -j DROP"), "the policy needs a set");

    let applied = host.fwc(&["apply", &policy, "--confirm", "0"]);
    assert_eq!(code(&applied), APPLIED, "{}", show(&applied));
    for family in ["v4", "v6"] {
        let saved = built.read(&format!("saved.{family}")).expect("saved file");
        assert_eq!(host.live(family), Rules::parse(&saved).unwrap(), "{family} live = saved.{family}");
    }
    assert!(host.state_file("confirmed/ipsets.restore").is_file(), "boot loads the sets too");
    // The deny list's addresses match the set the DROP rule matches; others
    // do not (and reach the later rules).
    assert!(in_set(&host, "fwc-4-1", "198.18.3.77"), "a listed /24");
    assert!(in_set(&host, "fwc-4-1", "198.18.16.7"), "a listed address");
    assert!(!in_set(&host, "fwc-4-1", "198.18.2.77"), "a block between the listed ones");
    assert!(!in_set(&host, "fwc-4-1", "198.18.16.8"), "the address beside the listed one");
    assert!(!host.netns.exec(&["ipset", "list", "-n"], None).unwrap().contains("-new"), "no temporary set is left");

    for target in [policy.clone(), built.path("rules.v4").parent().unwrap().display().to_string()] {
        let again = host.fwc(&["apply", &target, "--confirm", "0"]);
        assert_eq!(code(&again), NO_CHANGE, "{}", show(&again));
    }
    let in_sync = host.fwc(&["diff"]);
    assert_eq!(code(&in_sync), 0, "{}", show(&in_sync));

    // A member taken out of the live set is drift, and apply puts it back.
    host.netns.exec(&["ipset", "del", "fwc-4-1", "198.18.3.0/24"], None).unwrap();
    let drift = host.fwc(&["diff"]);
    assert_eq!(code(&drift), 1, "{}", show(&drift));
    assert!(drift.stdout.contains("+ set fwc-4-1 198.18.3.0/24"), "{}", show(&drift));
    let dry = host.fwc(&["apply", &policy, "--dry-run"]);
    assert!(dry.stdout.contains("+ set fwc-4-1 198.18.3.0/24"), "{}", show(&dry));
    let repaired = host.fwc(&["apply", &policy, "--confirm", "0"]);
    assert_eq!(code(&repaired), APPLIED, "{}", show(&repaired));
    assert!(in_set(&host, "fwc-4-1", "198.18.3.77"));

    // As after a reboot: no rules, no sets. Boot loads the sets first.
    host.restore("v4", "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n");
    host.netns.exec(&["ipset", "destroy", "fwc-4-1"], None).unwrap();
    let boot = host.fwc(&["apply", "--boot"]);
    assert_eq!(code(&boot), APPLIED, "{}", show(&boot));
    assert!(boot.stdout.contains("loaded the confirmed build"), "{}", show(&boot));
    let saved = built.read("saved.v4").unwrap();
    assert_eq!(host.live("v4"), Rules::parse(&saved).unwrap());
    assert!(in_set(&host, "fwc-4-1", "198.18.3.77"));
}

#[test]
fn a_failed_load_rolls_back_to_rules_that_use_an_address_set() {
    let mut host = Host::new("iptables");
    let sets_policy = address_sets_policy();
    let applied = host.fwc(&["apply", &sets_policy, "--confirm", "0"]);
    assert_eq!(code(&applied), APPLIED, "{}", show(&applied));
    let before = (host.live("v4"), host.live("v6"));
    // As in a_failing_ip6tables_restore_leaves_both_families_as_before:
    // call 2 (the real load) loads, then fails.
    host.shim_second_call("ip6tables-restore", LOAD_THEN_FAIL);
    let files = TempDir::new("policies");
    let other = policy(&files, "other.fw", OTHER_POLICY);
    let ran = host.fwc(&["apply", &other, "--confirm", "0"]);
    assert_eq!(code(&ran), ROLLED_BACK, "{}", show(&ran));
    assert!(ran.stderr.contains("shim: failing on purpose"), "{}", show(&ran));
    assert_eq!((host.live("v4"), host.live("v6")), before, "the rules using fwc-4-1 are back");
    assert!(in_set(&host, "fwc-4-1", "198.18.3.77"), "the set they use stays");
}
