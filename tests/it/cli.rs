//! The `fwc` binary as a user runs it: exit codes, levels, JSON output.

use std::path::Path;
use std::process::Command;

fn fwc(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_fwc"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases"))
        .output()
        .expect("fwc runs");
    (
        output.status.code().expect("exit code"),
        String::from_utf8(output.stdout).expect("utf-8"),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

#[test]
fn exit_codes_say_ok_errors_or_usage() {
    assert_eq!(fwc(&["check", "ok/stateful.fw"]).0, 0);
    assert_eq!(fwc(&["check", "err/unknown-service.fw"]).0, 1);
    assert_eq!(fwc(&["check", "no/such/file.fw"]).0, 2);
    assert_eq!(fwc(&["check", "ok/stateful.fw", "-D", "no-such-code"]).0, 2);
    // Warnings pass, unless denied.
    let (code, _, stderr) = fwc(&["check", "err/deny-warnings.fw"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("warning[shadowed-rule]"), "{stderr}");
    assert_eq!(fwc(&["check", "err/deny-warnings.fw", "--deny", "warnings"]).0, 1);
    assert_eq!(fwc(&["check", "err/deny-warnings.fw", "-D", "shadowed-rule"]).0, 1);
    let (code, _, stderr) = fwc(&["check", "err/deny-warnings.fw", "-A", "shadowed-rule", "-A", "no-neighbour-discovery"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
}

#[test]
fn query_exit_code_is_the_verdict() {
    assert_eq!(fwc(&["query", "ok/tests.fw", "in tcp 9100 from 198.18.7.7"]).0, 0);
    assert_eq!(fwc(&["query", "ok/tests.fw", "in tcp 9100 from 198.18.8.1"]).0, 1);
    let (code, _, stderr) = fwc(&["query", "ok/tests.fw", "in tcp 99999"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = fwc(&["query", "ok/tests.fw", "sideways tcp 22"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("error[syntax-error]"), "{stderr}");
}

#[test]
fn json_diagnostics_follow_the_documented_schema() {
    let (code, stdout, stderr) = fwc(&["check", "err/test-failed.fw", "--format", "json", "-W", "conflicting-rules"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "json goes to stdout alone: {stderr}");
    let (code, stdout_errors, _) = fwc(&["check", "err/unknown-service.fw", "--format", "json"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().chain(stdout_errors.lines()).collect();
    assert!(lines.len() >= 3, "{stdout}{stdout_errors}");
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).expect("each line is one JSON object");
        for key in ["code", "severity", "message", "file", "line", "column", "end_line", "end_column", "start_byte", "end_byte", "labels", "notes"] {
            assert!(value.get(key).is_some(), "`{key}` missing in {line}");
        }
        assert!(fwc::Code::from_name(value["code"].as_str().unwrap()).is_some());
        assert!(["error", "warning"].contains(&value["severity"].as_str().unwrap()));
        let labels = value["labels"].as_array().unwrap();
        assert_eq!(labels.iter().filter(|label| label["primary"] == true).count(), 1, "{line}");
        // Byte offsets point at the text the label underlines.
        let file = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(value["file"].as_str().unwrap()),
        )
        .unwrap();
        let (start, end) = (value["start_byte"].as_u64().unwrap() as usize, value["end_byte"].as_u64().unwrap() as usize);
        assert!(start < end && end <= file.len(), "{line}");
        let line_number = file[..start].matches('\n').count() + 1;
        assert_eq!(value["line"].as_u64().unwrap() as usize, line_number, "{line}");
    }
}

#[test]
fn build_stats_count_rules_before_and_after_consolidation() {
    let out = std::env::temp_dir().join(format!("fwc-stats-{}", std::process::id()));
    let out_text = out.to_string_lossy().into_owned();
    // address-sets.fw: 9 IPv4 blocks become one ipset rule, three port
    // rules one multiport rule per family; nft also pairs the families.
    let (code, _, stderr) = fwc(&["build", "ok/address-sets.fw", "--stats", "-o", &out_text]);
    assert_eq!(code, 0, "{stderr}");
    let line = stderr.lines().find(|line| line.starts_with("rules: ")).unwrap_or_else(|| panic!("no stats line:\n{stderr}"));
    assert_eq!(
        line,
        "rules: 23 before consolidation; iptables 11 (IPv4 6, IPv6 5, 9 blocks in ipsets); nft 6 (16 values in named sets)"
    );
    // Without consolidation every lowered rule is one iptables rule.
    let (code, _, stderr) = fwc(&["build", "ok/address-sets.fw", "--stats", "--no-consolidate", "-o", &out_text]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("rules: 23 before consolidation; iptables 23 (IPv4 16, IPv6 7); nft 18"), "{stderr}");
    let sets = std::fs::read_to_string(out.join("ipsets.restore")).expect("ipsets.restore written");
    assert!(sets.lines().all(|line| line.starts_with('#')), "no sets without consolidation:\n{sets}");
    let _ = std::fs::remove_dir_all(&out);
}

/// The outputs are written while the checks run: when the checks find an
/// error, nothing is left behind, not even the directory made for them;
/// files already in place stay as they were.
#[test]
fn build_writes_nothing_when_the_checks_fail() {
    let root = std::env::temp_dir().join(format!("fwc-nothing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let out = root.join("a/b");
    let out_text = out.to_string_lossy().into_owned();
    let (code, _, stderr) = fwc(&["build", "err/deny-warnings.fw", "-D", "shadowed-rule", "-o", &out_text]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error[shadowed-rule]"), "{stderr}");
    assert!(!root.exists(), "a failed build made {}", root.display());
    // Over an earlier build: its files stay, and no temporary is left.
    let (code, _, stderr) = fwc(&["build", "ok/stateful.fw", "-o", &out_text]);
    assert_eq!(code, 0, "{stderr}");
    let before = std::fs::read(out.join("rules.v4")).expect("rules.v4 written");
    let (code, _, stderr) = fwc(&["build", "err/deny-warnings.fw", "--deny", "warnings", "-o", &out_text]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(std::fs::read(out.join("rules.v4")).unwrap(), before, "a failed build changed rules.v4");
    let mut names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, fwc::emit::OUTPUT_NAMES.iter().map(|name| name.to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&root);
}

/// A check whose every code is switched off does not run, and an `ignore`
/// of one of its codes is then not called unused: nobody can tell.
#[test]
fn switched_off_checks_do_not_run_and_their_ignores_stay_quiet() {
    let directory = std::env::temp_dir().join(format!("fwc-cli-ignores-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temporary directory");
    let policy = directory.join("p.fw");
    std::fs::write(
        &policy,
        "policy in drop\npolicy out drop\nignore lockout \"no sshd here\"\nuse icmpv6\nallow in tcp 80 stateful\nallow in tcp 80 from 198.18.0.1 stateful ignore shadowed-rule\n",
    )
    .expect("policy written");
    let path = policy.to_str().expect("utf-8 path");
    // Both ignores silence something.
    let (code, _, stderr) = fwc(&["check", path]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    // The host checks off: the lockout ignore is not called unused.
    let host_off = ["-A", "lockout", "-A", "no-neighbour-discovery", "-A", "unused-chain", "-A", "return-path", "-A", "ipv6-gap", "-A", "ipv4-gap"];
    let (code, _, stderr) = fwc(&[&["check", path][..], &host_off].concat());
    assert_eq!((code, stderr.as_str()), (0, ""));
    // The order analysis off: nor is the rule's.
    let (code, _, stderr) = fwc(&["check", path, "-A", "shadowed-rule", "-A", "redundant-rule"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    // With one of its codes still on, a check runs, and an ignore that
    // silences nothing is reported.
    let (code, _, stderr) = fwc(&[&["check", path][..], &host_off[..10]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "ipv4-gap is on, the host checks run, the lockout ignore is used: {stderr}");
    std::fs::write(&policy, "policy in drop\nignore lockout \"no sshd here\"\nuse ssh-in\nuse icmpv6\n").expect("policy written");
    let (_, _, stderr) = fwc(&["check", path]);
    assert!(stderr.contains("warning[unused-ignore]"), "{stderr}");
    let (_, _, stderr) = fwc(&[&["check", path][..], &host_off].concat());
    assert!(!stderr.contains("unused-ignore"), "{stderr}");
    std::fs::remove_dir_all(&directory).ok();
}

/// The lockout and neighbour-discovery checks answer exactly however many
/// rules stand before the answer: 4,000 host denies, each its own class of
/// source addresses, then the rule that decides.
#[test]
fn host_checks_answer_on_large_policies() {
    let directory = std::env::temp_dir().join(format!("fwc-cli-host-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temporary directory");
    let policy = directory.join("p.fw");
    let denies: String = (0..4000).map(|host| format!("deny in from 198.18.{}.{}\ndeny in from fd00::{:x}\n", host / 250, host % 250 + 1, host + 1)).collect();
    let write = |last: &str| std::fs::write(&policy, format!("policy in drop\npolicy out drop\nuse established\n{denies}{last}")).expect("policy written");
    let path = policy.to_str().expect("utf-8 path");
    let quiet = ["-A", "shadowed-rule", "-A", "redundant-rule"];
    // Nothing lets SSH or neighbour discovery in.
    write("allow in tcp 80 stateful\n");
    let (_, _, stderr) = fwc(&[&["check", path][..], &quiet].concat());
    assert!(stderr.contains("warning[lockout]"), "{stderr}");
    assert_eq!(stderr.matches("warning[no-neighbour-discovery]").count(), 2, "{stderr}");
    // SSH from one block, after all the denies; neighbour discovery both ways.
    write("allow in tcp 22 from 198.19.0.0/16 stateful\nuse icmpv6\n");
    let (_, _, stderr) = fwc(&[&["check", path][..], &quiet].concat());
    assert!(!stderr.contains("lockout") && !stderr.contains("neighbour"), "{stderr}");
    // SSH only from a host denied before: locked out all the same.
    write("allow in tcp 22 from 198.18.3.1 stateful\nuse icmpv6\n");
    let (_, _, stderr) = fwc(&[&["check", path][..], &quiet].concat());
    assert!(!stderr.contains("neighbour"), "{stderr}");
    assert!(stderr.contains("warning[lockout]"), "{stderr}");
    // From a block with hosts denied before, but not all of it: not.
    write("allow in tcp 22 from 198.18.3.0/24 stateful\nuse icmpv6\n");
    let (_, _, stderr) = fwc(&[&["check", path][..], &quiet].concat());
    assert!(!stderr.contains("warning[lockout]"), "198.18.3.251 is not denied: {stderr}");
    std::fs::remove_dir_all(&directory).ok();
}
