//! `fwc apply`, `confirm`, `diff` and `apply --boot` with `--backend nft`:
//! rules.nft's `table inet fwc` loaded with `nft -f` into namespaces these
//! tests create, next to tables of other programs that must come out of
//! every apply, rollback and confirm byte for byte as they went in.

use super::{code, policy, real, show, wait_until, Host, APPLIED, CUTS_SSH, LOAD_THEN_FAIL, NO_CHANGE, OTHER_POLICY, POLICY, REFUSED, ROLLED_BACK};
use crate::kernel::lab::{allows, blocks, tcp, udp, Backend, Host as LabHost, Lab, Load, Neighbours, Peer};
use crate::kernel::policies::WEB_SERVER;
use crate::kernel::support::{Netns, TempDir};
use fwc::host::ruleset::Rules;
use std::path::Path;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Tables of other programs: Docker's or fail2ban's stand-ins, one inet
/// and one ip table with base chains, a set and rules.
const FOREIGN: &str = "table inet other {
\tset banned { type ipv4_addr; elements = { 198.18.9.9 }; }
\tchain input {
\t\ttype filter hook input priority 10; policy accept;
\t\tip saddr @banned drop
\t\ttcp dport 7 counter drop
\t}
}
table ip filter {
\tchain INPUT {
\t\ttype filter hook input priority 0; policy accept;
\t\tip saddr 198.18.9.8 drop
\t}
}
";

impl Host {
    fn nft_host() -> Host {
        Host::new("nft")
    }

    /// `nft ARGS…` in the namespace; its output.
    fn nft(&self, args: &[&str]) -> String {
        let mut all = vec!["nft"];
        all.extend_from_slice(args);
        self.netns.exec(&all, None).unwrap_or_else(|error| panic!("{error}"))
    }

    fn nft_load(&self, text: &str) {
        self.netns.exec(&["nft", "-f", "-"], Some(text.as_bytes())).unwrap_or_else(|error| panic!("{error}"));
    }

    /// `table inet fwc` in normal form; no tables when there is none.
    fn table(&self) -> Rules {
        fwc::host::nft::from_json(&self.nft(&["-j", "list", "ruleset"])).expect("nft's JSON reads")
    }

    /// What the other tables list as, counters included.
    fn foreign(&self) -> String {
        self.nft(&["list", "table", "inet", "other"]) + &self.nft(&["list", "table", "ip", "filter"])
    }

    /// Puts a shim named `nft` in front of `PATH`: its first load (`-f`)
    /// in the host's namespace — the real load, not the scratch
    /// namespace's — runs `action` (`$real` is the real nft); every other
    /// call runs the real nft.
    fn shim_nft_load(&mut self, action: &str) {
        let namespace = self.netns.exec(&["readlink", "/proc/self/ns/net"], None).expect("readlink").trim().to_string();
        let done = self.scratch("loaded");
        self.shim(
            "nft",
            &format!(
                "#!/bin/sh\nreal={real}\nif [ \"$1\" = -f ] && [ \"$(readlink /proc/self/ns/net)\" = '{namespace}' ] && [ ! -e {done} ]; then touch {done}; {action}; fi\nexec $real \"$@\"\n",
                real = real("nft"),
                done = done.display()
            ),
        );
    }
}

/// rules.nft of `policy`, loaded into a namespace of its own and listed:
/// what the live table should be, found without fwc.
fn expected_table(policy: &str) -> Rules {
    let built = crate::kernel::support::build(Path::new(policy), &[]).expect("builds");
    let text = built.read("rules.nft").unwrap();
    let scratch = Netns::new("expected");
    scratch.exec(&["nft", "-f", "-"], Some(text.as_bytes())).unwrap_or_else(|error| panic!("{error}"));
    let listing = scratch.exec(&["nft", "-j", "list", "ruleset"], None).unwrap();
    fwc::host::nft::from_json(&listing).unwrap()
}

#[test]
fn nft_apply_loads_the_table_then_reports_no_change_and_leaves_other_tables_alone() {
    let host = Host::nft_host();
    host.nft_load(FOREIGN);
    let (foreign, iptables) = (host.foreign(), host.live("v4"));
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let expected = expected_table(&web);

    let dry = host.fwc(&["apply", &web, "--dry-run"]);
    assert_eq!(code(&dry), APPLIED, "{}", show(&dry));
    assert!(dry.stdout.contains("+++ policy nftables inet fwc/INPUT"), "{}", show(&dry));
    assert!(dry.stdout.contains("+udp dport 60000-61000 ct state in { established, new } accept"), "{}", show(&dry));
    assert_eq!(host.table(), Rules::default(), "--dry-run loads nothing");

    let applied = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&applied), APPLIED, "{}", show(&applied));
    assert_eq!(host.table(), expected, "the live table is rules.nft's");
    assert_eq!(host.foreign(), foreign, "other tables are untouched");
    assert!(host.state_file("confirmed/rules.nft").is_file());
    assert_eq!(std::fs::read_to_string(host.state_file("backup.nft")).unwrap(), "", "there was no table before");

    let again = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&again), NO_CHANGE, "{}", show(&again));
    let built = crate::kernel::support::build(Path::new(&web), &[]).expect("builds");
    let directory = built.path("rules.nft").parent().unwrap().display().to_string();
    let again = host.fwc(&["apply", &directory, "--confirm", "0"]);
    assert_eq!(code(&again), NO_CHANGE, "a build directory is the same build: {}", show(&again));
    for target in [None, Some(web.as_str()), Some(directory.as_str())] {
        let args: Vec<&str> = std::iter::once("diff").chain(target).collect();
        let diff = host.fwc(&args);
        assert_eq!(code(&diff), 0, "{}", show(&diff));
    }
    // What iptables-nft sees of table ip filter is untouched too.
    assert_eq!(host.live("v4"), iptables);
    assert_eq!(host.foreign(), foreign);
}

#[test]
fn nft_diff_detects_live_changes_to_rules_sets_chains_and_the_table() {
    let host = Host::nft_host();
    host.nft_load(FOREIGN);
    let policy_path = super::address_sets_policy();
    let applied = host.fwc(&["apply", &policy_path, "--confirm", "0"]);
    assert_eq!(code(&applied), APPLIED, "{}", show(&applied));
    let saved = host.nft(&["list", "table", "inet", "fwc"]);
    let put_back = || host.nft_load(&format!("{}{saved}", fwc::host::nft::restore_text(None)));
    let in_sync = host.fwc(&["diff"]);
    assert_eq!(code(&in_sync), 0, "{}", show(&in_sync));

    let handle = |chain: &str, containing: &str| -> String {
        let listing = host.nft(&["-a", "list", "chain", "inet", "fwc", chain]);
        let line = listing.lines().find(|line| line.contains(containing)).unwrap_or_else(|| panic!("no `{containing}` in {listing}"));
        line.rsplit("# handle ").next().unwrap().trim().to_string()
    };
    // What is done, how, and a line of the diff that shows it.
    type Mutation<'a> = (&'static str, Box<dyn Fn() + 'a>, &'static str);
    let mutations: Vec<Mutation> = vec![
        ("a rule added", Box::new(|| drop(host.nft(&["add", "rule", "inet", "fwc", "INPUT", "tcp", "dport", "4444", "accept"]))), "+++ applied nftables inet fwc/INPUT"),
        ("a rule deleted", Box::new(|| drop(host.nft(&["delete", "rule", "inet", "fwc", "INPUT", "handle", &handle("INPUT", "dport 53")]))), "+udp dport 53 log prefix"),
        ("a set element deleted", Box::new(|| drop(host.nft(&["delete", "element", "inet", "fwc", "addr4-1", "{ 198.18.16.7 }"]))), "+198.18.16.7"),
        ("a set element added", Box::new(|| drop(host.nft(&["add", "element", "inet", "fwc", "addr4-2", "{ 198.19.9.0/24 }"]))), "-198.19.9.0/24"),
        ("a policy changed", Box::new(|| drop(host.nft(&["chain", "inet", "fwc", "FORWARD", "{ policy drop; }"]))), "policy accept;"),
        ("a chain added", Box::new(|| drop(host.nft(&["add", "chain", "inet", "fwc", "extra"]))), "inet fwc/extra"),
        ("the table deleted", Box::new(|| drop(host.nft(&["delete", "table", "inet", "fwc"]))), "+:INPUT type filter hook input"),
    ];
    for (what, mutate, shown) in &mutations {
        mutate();
        let drift = host.fwc(&["diff"]);
        assert_eq!(code(&drift), 1, "{what}: not seen: {}", show(&drift));
        assert!(drift.stdout.contains(shown), "{what}: the diff shows `{shown}`: {}", show(&drift));
        put_back();
        let clean = host.fwc(&["diff"]);
        assert_eq!(code(&clean), 0, "{what}: put back, in sync: {}", show(&clean));
    }
    // Other programs' tables are theirs to change: no drift.
    host.nft(&["add", "rule", "inet", "other", "input", "tcp", "dport", "4444", "drop"]);
    host.nft(&["add", "element", "inet", "other", "banned", "{ 198.18.9.10 }"]);
    let theirs = host.fwc(&["diff"]);
    assert_eq!(code(&theirs), 0, "{}", show(&theirs));
    let dry = host.fwc(&["apply", &policy_path, "--dry-run"]);
    assert_eq!(code(&dry), NO_CHANGE, "{}", show(&dry));
}

#[test]
fn nft_a_load_that_fails_leaves_the_previous_table_or_none() {
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let other = policy(&files, "other.fw", OTHER_POLICY);
    // A table before: it comes back exactly.
    let mut host = Host::nft_host();
    host.nft_load(FOREIGN);
    let applied = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&applied), APPLIED, "{}", show(&applied));
    let (before, foreign) = (host.table(), host.foreign());
    host.shim_nft_load(LOAD_THEN_FAIL);
    let ran = host.fwc(&["apply", &other, "--confirm", "0"]);
    assert_eq!(code(&ran), ROLLED_BACK, "{}", show(&ran));
    assert!(ran.stderr.contains("shim: failing on purpose"), "the real load was the one that failed: {}", show(&ran));
    assert_eq!(host.table(), before, "the previous table is back");
    assert_eq!(host.foreign(), foreign);
    assert!(std::fs::read_to_string(host.state_file("confirmed/rules.nft")).unwrap().contains("60000-61000"), "still web.fw's");

    // No table before: none after.
    let mut host = Host::nft_host();
    host.nft_load(FOREIGN);
    let foreign = host.foreign();
    host.shim_nft_load(LOAD_THEN_FAIL);
    let ran = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&ran), ROLLED_BACK, "{}", show(&ran));
    assert_eq!(host.table(), Rules::default(), "the table the failed load created is gone");
    assert_eq!(host.foreign(), foreign);
}

#[test]
fn nft_a_table_the_kernel_refuses_is_refused_before_anything_changes() {
    let host = Host::nft_host();
    host.nft_load(FOREIGN);
    let foreign = host.foreign();
    let build = TempDir::new("build");
    // Parses, but the kernel has no such chain to jump to.
    build.write("rules.nft", "table inet fwc {}\ndelete table inet fwc\ntable inet fwc {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tjump nowhere\n\t}\n}\n");
    build.write("rules.v4", "*filter\n:INPUT DROP [0:0]\nCOMMIT\n");
    build.write("rules.v6", "*filter\n:INPUT DROP [0:0]\nCOMMIT\n");
    let ran = host.fwc(&["apply", &build.path().display().to_string(), "--confirm", "0", "--force"]);
    assert_eq!(code(&ran), REFUSED, "{}", show(&ran));
    assert!(ran.stderr.contains("scratch namespace"), "{}", show(&ran));
    assert_eq!(host.table(), Rules::default());
    assert_eq!(host.foreign(), foreign);
    assert!(!host.state_file("backup.nft").exists(), "refused before the backup");
}

#[test]
fn nft_without_confirmation_the_previous_table_comes_back_and_confirm_keeps_the_new_one() {
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let other = policy(&files, "other.fw", OTHER_POLICY);
    // Not confirmed: web.fw's table comes back after the deadline.
    let host = Host::nft_host();
    host.nft_load(FOREIGN);
    let applied = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&applied), APPLIED, "{}", show(&applied));
    let (before, foreign) = (host.table(), host.foreign());
    let started = Instant::now();
    let ran = host.fwc(&["apply", &other, "--confirm", "2"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    assert_ne!(host.table(), before, "other.fw's table is loaded");
    // A second apply while the first waits: the rollback still goes back
    // to the confirmed table, not to the first apply's.
    let third = policy(&files, "third.fw", "use baseline\nallow in tcp 9090 stateful\n");
    let ran = host.fwc(&["apply", &third, "--confirm", "2"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    assert!(host.nft(&["list", "table", "inet", "fwc"]).contains("9090"), "third.fw's table is loaded");
    wait_until(Duration::from_secs(10), "the previous table comes back", || host.table() == before);
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the deadline");
    assert_eq!(host.foreign(), foreign);
    wait_until(Duration::from_secs(5), "the rollback is logged", || {
        std::fs::read_to_string(host.state_file("rollback.log")).unwrap_or_default().contains("previous rules are back, table inet fwc")
    });

    // Not confirmed, no table before: none comes back.
    let fresh = Host::nft_host();
    fresh.nft_load(FOREIGN);
    let ran = fresh.fwc(&["apply", &web, "--confirm", "1"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    assert_ne!(fresh.table(), Rules::default());
    wait_until(Duration::from_secs(10), "the table is deleted again", || fresh.table() == Rules::default());
    assert_eq!(fresh.foreign(), foreign);

    // Confirmed: other.fw's table stays, and is the boot table.
    let ran = host.fwc(&["apply", &other, "--confirm", "2"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    let loaded = host.table();
    let confirmed = host.fwc(&["confirm"]);
    assert_eq!(code(&confirmed), APPLIED, "{}", show(&confirmed));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(host.table(), loaded, "no rollback after confirmation");
    assert_eq!(host.foreign(), foreign);
    assert!(std::fs::read_to_string(host.state_file("confirmed/rules.nft")).unwrap().contains("dport 8080"));
}

#[test]
fn nft_boot_loads_the_confirmed_table_or_falls_back_to_the_emergency_one() {
    let host = Host::nft_host();
    host.nft_load(FOREIGN);
    let foreign = host.foreign();
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let other = policy(&files, "other.fw", OTHER_POLICY);
    for path in [&other, &web] {
        let ran = host.fwc(&["apply", path, "--confirm", "0"]);
        assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    }
    let web_table = host.table();
    host.nft(&["delete", "table", "inet", "fwc"]);
    let ran = host.fwc(&["apply", "--boot"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    assert_eq!(host.table(), web_table);
    // Told no backend (the boot unit and hook name none), boot and diff go
    // on with the one the build was applied with.
    host.nft(&["delete", "table", "inet", "fwc"]);
    let untold = |args: &[&str]| {
        let mut command = host.fwc_command(args);
        command.env_remove("FWC_BACKEND");
        crate::kernel::support::run(&mut command, None, Duration::from_secs(60)).unwrap()
    };
    let ran = untold(&["apply", "--boot"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    assert_eq!(host.table(), web_table);
    assert_eq!(std::fs::read_to_string(host.state_file("confirmed/backend")).unwrap(), "nft\n");
    let ran = untold(&["diff"]);
    assert_eq!(code(&ran), 0, "{}", show(&ran));

    std::fs::write(host.state_file("confirmed/rules.nft"), "table inet fwc { chain INPUT { jump nowhere; } }\n").unwrap();
    let ran = host.fwc(&["apply", "--boot"]);
    assert_eq!(code(&ran), ROLLED_BACK, "{}", show(&ran));
    assert!(host.nft(&["list", "table", "inet", "fwc"]).contains("tcp dport 8080"), "the previous build: {}", show(&ran));

    std::fs::write(host.state_file("previous/rules.nft"), "garbage\n").unwrap();
    let ran = host.fwc(&["apply", "--boot"]);
    assert_eq!(code(&ran), ROLLED_BACK, "{}", show(&ran));
    assert!(ran.stderr.contains("emergency"), "{}", show(&ran));
    let emergency = Netns::new("emergency");
    emergency.exec(&["nft", "-f", "-"], Some(fwc::host::emergency::nft_text().as_bytes())).unwrap();
    let expected = fwc::host::nft::from_json(&emergency.exec(&["nft", "-j", "list", "ruleset"], None).unwrap()).unwrap();
    assert_eq!(host.table(), expected);
    let input = &host.table().tables["inet fwc"].chains["INPUT"];
    assert!(input.policy.as_deref().unwrap().ends_with("policy drop;"), "{input:?}");
    assert!(input.rules.iter().any(|rule| rule.contains("tcp dport 22")), "{input:?}");
    assert_eq!(host.foreign(), foreign);
}

#[test]
fn nft_a_policy_that_cuts_the_ssh_session_is_refused() {
    let host = Host::nft_host();
    let _session = super::ssh_session(&host);
    let files = TempDir::new("policies");
    let cutting = policy(&files, "cut.fw", &format!("{CUTS_SSH}ignore lockout \"the test has no sshd\"\n"));
    let ran = host.fwc(&["apply", &cutting, "--confirm", "0"]);
    assert_eq!(code(&ran), REFUSED, "{}", show(&ran));
    assert!(ran.stderr.contains("would cut the SSH session from 198.18.0.2"), "{}", show(&ran));
    assert_eq!(host.table(), Rules::default(), "nothing loaded");
}

#[test]
fn nft_applied_table_lets_through_what_the_policy_allows() {
    // As behaviour::web_server_serves_80_and_443_and_nothing_else, with the
    // table `fwc apply --backend nft` loaded.
    let lab = Lab::start_loaded(WEB_SERVER, &[], Neighbours::Discovered, Load::FwcApplyNft);
    lab.expect(&[
        allows(tcp(Peer, LabHost, 80)),
        allows(tcp(Peer, LabHost, 443)),
        allows(tcp(Backend, LabHost, 443)),
        allows(tcp(Peer, LabHost, 22)),
        blocks(tcp(Peer, LabHost, 8080)),
        blocks(tcp(Peer, LabHost, 23)),
        blocks(udp(Peer, LabHost, 443)),
        blocks(tcp(LabHost, Peer, 80)),
        allows(udp(LabHost, Peer, 53)),
    ]);
}

#[test]
fn nft_says_that_keep_has_no_effect() {
    let host = Host::nft_host();
    let files = TempDir::new("policies");
    let keeping = policy(&files, "keep.fw", &format!("chain fail2ban-ssh keep {{\n    return\n}}\njump in tcp 22 to fail2ban-ssh\n{POLICY}"));
    let ran = host.fwc(&["apply", &keeping, "--confirm", "0"]);
    assert_eq!(code(&ran), APPLIED, "{}", show(&ran));
    assert!(ran.stderr.contains("`keep` has no effect with --backend nft"), "{}", show(&ran));
    // The chain is the policy's, and a ban added to it is drift.
    host.nft(&["insert", "rule", "inet", "fwc", "user-fail2ban-ssh", "ip", "saddr", "198.18.0.7", "drop"]);
    let diff = host.fwc(&["diff"]);
    assert_eq!(code(&diff), 1, "{}", show(&diff));
    assert!(diff.stderr.contains("`keep` has no effect"), "{}", show(&diff));
}

#[test]
fn nft_the_previous_table_comes_back_after_sigkill_right_after_the_load() {
    let mut host = Host::nft_host();
    host.nft_load(FOREIGN);
    let files = TempDir::new("policies");
    let web = policy(&files, "web.fw", POLICY);
    let other = policy(&files, "other.fw", OTHER_POLICY);
    let applied = host.fwc(&["apply", &web, "--confirm", "0"]);
    assert_eq!(code(&applied), APPLIED, "{}", show(&applied));
    let (before, foreign) = (host.table(), host.foreign());
    // The real load loads, then hangs: apply is killed with the new table live.
    host.shim_nft_load("$real \"$@\"; sleep 60; exit 1");
    let mut command = host.fwc_command(&["apply", &other, "--confirm", "2"]);
    command.process_group(0).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut apply = command.spawn().expect("fwc starts");
    let started = Instant::now();
    wait_until(Duration::from_secs(20), "the new table loads", || host.table() != before);
    // SAFETY: a signal to the process group this test created.
    unsafe { libc::kill(-(apply.id() as i32), libc::SIGKILL) };
    let _ = apply.wait();
    wait_until(Duration::from_secs(2 + 8), "the previous table comes back", || host.table() == before);
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the deadline");
    assert_eq!(host.foreign(), foreign);
    assert!(std::fs::read_to_string(host.state_file("confirmed/rules.nft")).unwrap().contains("60000-61000"), "still web.fw's");
}

/// The rollback of `--backend nft` loads `nft list table inet fwc` back:
/// for every example policy and every case, the table it brings back is
/// the table that was listed (nft prints some things differently from how
/// rules.nft writes them: sets merged, priorities named), and the rollback
/// of no table leaves none.
#[test]
fn nft_every_table_comes_back_from_its_backup() {
    use crate::kernel::support::{build, header_args, policy_files, repo_root};
    let mut policies = policy_files(&repo_root().join("policies"), Some(".test.fw"));
    policies.extend(policy_files(&repo_root().join("tests/cases/ok"), None));
    assert!(policies.len() > 40, "{policies:?}");
    let (live, restored) = (Netns::new("live"), Netns::new("restored"));
    let nft = |namespace: &Netns, args: &[&str], input: Option<&str>| {
        let mut all = vec!["nft"];
        all.extend_from_slice(args);
        namespace.exec(&all, input.map(str::as_bytes)).unwrap_or_else(|error| panic!("{error}"))
    };
    let table = |namespace: &Netns| fwc::host::nft::from_json(&nft(namespace, &["-j", "list", "ruleset"], None)).unwrap();
    for path in &policies {
        let built = build(path, &header_args(&std::fs::read_to_string(path).unwrap())).unwrap_or_else(|error| panic!("{error}"));
        nft(&live, &["-f", "-"], Some(&built.read("rules.nft").unwrap()));
        let backup = nft(&live, &["list", "table", "inet", "fwc"], None);
        // Over whatever table the previous policy left there.
        nft(&restored, &["-f", "-"], Some(&fwc::host::nft::restore_text(Some(&backup))));
        assert_eq!(table(&restored), table(&live), "{}: the table from its backup:\n{backup}", path.display());
    }
    nft(&restored, &["-f", "-"], Some(&fwc::host::nft::restore_text(None)));
    assert_eq!(table(&restored), Rules::default(), "no table before: none after");
}
