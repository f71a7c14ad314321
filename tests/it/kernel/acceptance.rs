//! Every policy loads into the kernel — with iptables-restore and
//! ip6tables-restore (after `ipset restore < ipsets.restore`), and again
//! with rules.sh — without an error or a warning, and the live tables then
//! print exactly as saved.v4 / saved.v6. Its rules.nft loads with `nft -f`
//! next to a table of another program, twice: the second load replaces
//! the first, and the other table is left as it was.

use super::policies;
use super::support::{
    build, diff, header_args, policy_files, repo_root, run, saved_form, Netns, TempDir, COMMAND_LIMIT,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[test]
fn example_policies_load_exactly_as_saved() {
    let directory = repo_root().join("policies");
    // `NAME.test.fw` holds tests for a policy; conf.d folders hold drop-ins.
    let found = policy_files(&directory, Some(".test.fw"));
    assert!(
        !found.is_empty(),
        "no example policies (*.fw) in {}: the kernel acceptance test has nothing to load",
        directory.display()
    );
    assert_all_load_as_saved(&found);
}

#[test]
fn ok_cases_load_exactly_as_saved() {
    assert_all_load_as_saved(&policy_files(&repo_root().join("tests/cases/ok"), None));
}

#[test]
fn a_policy_using_every_form_loads_exactly_as_saved() {
    let directory = TempDir::new("every-form");
    let path = policies::write_every_form(&directory);
    if let Err(problems) = load_as_saved(&path, &policies::every_form_args()) {
        panic!("the every-form policy (tests/it/kernel/policies.rs):\n{problems}");
    }
}

/// More distinct short lists than rules.nft has room for as sets
/// (`fwc::emit::nft::SET_BUDGET`): the table holds that many sets, the
/// lists used first are sets, the others are one rule per port, and
/// rules.nft loads (twice, every rule in the kernel).
#[test]
fn more_short_lists_than_sets_allowed_load_with_nft() {
    let budget = fwc::emit::nft::SET_BUDGET;
    let lines = budget + 100;
    let directory = TempDir::new("short-lists");
    let mut policy = String::from("policy in drop\n");
    for line in 0..lines {
        // A source of its own: neighbours that differ only in ports would merge.
        let source = format!("198.18.{}.{}", line / 250, line % 250 + 1);
        policy.push_str(&format!("allow in tcp {}, {} from {source}\n", 1000 + line, 20000 + line));
    }
    let path = directory.write("lists.fw", &policy);
    let built = build(&path, &["--no-test".to_string()]).unwrap_or_else(|error| panic!("{error}"));
    let text = built.read("rules.nft").unwrap_or_else(|error| panic!("{error}"));
    let sets = text.lines().filter(|line| line.starts_with("\tset ports-")).count();
    assert_eq!(sets, budget, "one set for each list the budget has room for");
    assert_eq!(text.matches(" tcp dport @ports-").count(), budget);
    let last = lines - 1;
    for port in [1000 + last, 20000 + last] {
        let rule = format!("\t\tip saddr 198.18.{}.{} tcp dport {port} accept comment \"lists.fw:{}\"\n", last / 250, last % 250 + 1, last + 2);
        assert!(text.contains(&rule), "no rule {rule}");
    }
    let mut problems = Vec::new();
    nft_problems(&built, &mut problems).unwrap_or_else(|error| panic!("{error}"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Loads each policy (two at a time) and fails naming every one that does
/// not load as saved.
fn assert_all_load_as_saved(paths: &[PathBuf]) {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while let Some(path) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    if let Err(problems) = load_as_saved(path, &header_args(&text)) {
                        failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((path.clone(), problems));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    failures.sort();
    if !failures.is_empty() {
        let root = repo_root();
        let report: Vec<String> = failures
            .iter()
            .map(|(path, problems)| format!("=== {}\n{problems}", path.strip_prefix(&root).unwrap_or(path).display()))
            .collect();
        panic!("{} of {} policies do not load as saved:\n\n{}", failures.len(), paths.len(), report.join("\n\n"));
    }
}

/// Builds the policy, loads it both ways into fresh namespaces and compares
/// the live tables with saved.v4 / saved.v6. Gives every problem found.
fn load_as_saved(path: &Path, args: &[String]) -> Result<(), String> {
    let built = build(path, args)?;
    let mut problems = Vec::new();

    let restored = Netns::new("restore");
    let mut loaded = true;
    let sets = built.read("ipsets.restore")?;
    if sets.lines().any(|line| !line.starts_with('#')) {
        loaded &= load(restored.command("ipset"), Some(&["restore"]), Some(sets.as_bytes()), "ipset restore < ipsets.restore", &mut problems)?;
    }
    for (program, output) in [("iptables-restore", "rules.v4"), ("ip6tables-restore", "rules.v6")] {
        let rules = built.read(output)?;
        let command = restored.command(program);
        loaded &= load(command, None, Some(rules.as_bytes()), &format!("{program} < {output}"), &mut problems)?;
    }
    if loaded {
        compare(&restored, &built, "iptables-restore < rules.v4 and ip6tables-restore < rules.v6", &mut problems)?;
    }
    drop(restored);

    let scripted = Netns::new("script");
    let mut command = scripted.command("sh");
    command.arg(built.path("rules.sh"));
    if load(command, None, None, "sh rules.sh", &mut problems)? {
        compare(&scripted, &built, "sh rules.sh", &mut problems)?;
    }
    drop(scripted);

    nft_problems(&built, &mut problems)?;

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Runs a loading command; whether it succeeded. A failure, and anything
/// it prints on stderr, is a problem — iptables warns there about rules
/// that load but cannot work, such as "never matched protocol".
fn load(
    mut command: std::process::Command,
    args: Option<&[&str]>,
    input: Option<&[u8]>,
    shown: &str,
    problems: &mut Vec<String>,
) -> Result<bool, String> {
    command.args(args.unwrap_or_default());
    let ran = run(&mut command, input, COMMAND_LIMIT)?;
    if !ran.status.success() {
        problems.push(format!("`{shown}` failed ({}):\n{}{}", ran.status, ran.stderr, ran.stdout));
        return Ok(false);
    }
    if !ran.stderr.trim().is_empty() {
        problems.push(format!("`{shown}` loaded the rules but warned:\n{}", ran.stderr));
    }
    Ok(true)
}

/// Compares what iptables-save and ip6tables-save print in `namespace`
/// with saved.v4 and saved.v6.
fn compare(
    namespace: &Netns,
    built: &super::support::Built,
    how: &str,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    for (program, output) in [("iptables-save", "saved.v4"), ("ip6tables-save", "saved.v6")] {
        let expected = built.read(output)?;
        let live = saved_form(&namespace.save(program)?);
        if live != expected {
            problems.push(format!(
                "after `{how}`, {program} does not print {output}:\n{}",
                diff(output, &expected, &format!("{program} (without # lines and counters)"), &live)
            ));
        }
    }
    Ok(())
}

/// A table of another program, there before fwc's rules are loaded.
const FOREIGN: &str = "table ip other {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 9 drop\n\t}\n}\n";

/// Loads rules.nft twice into a namespace that has another program's table:
/// no error or warning, one `inet fwc` table holding every rule of the
/// file, the same after the second load, and the other table untouched.
fn nft_problems(built: &super::support::Built, problems: &mut Vec<String>) -> Result<(), String> {
    let namespace = Netns::new("nft");
    namespace.exec(&["nft", "-f", "-"], Some(FOREIGN.as_bytes()))?;
    let other_before = namespace.exec(&["nft", "list", "table", "ip", "other"], None)?;
    let path = built.path("rules.nft");
    let path = path.to_string_lossy();
    let mut listings = Vec::new();
    for attempt in ["first", "second"] {
        let mut command = namespace.command("nft");
        command.args(["-f", &path]);
        if !load(command, None, None, &format!("nft -f rules.nft ({attempt} time)"), problems)? {
            return Ok(());
        }
        listings.push(namespace.exec(&["nft", "list", "table", "inet", "fwc"], None)?);
    }
    if listings[0] != listings[1] {
        problems.push(format!(
            "loading rules.nft again changes table inet fwc:\n{}",
            diff("after the first load", &listings[0], "after the second", &listings[1])
        ));
    }
    let tables = namespace.exec(&["nft", "list", "tables"], None)?;
    if tables != "table ip other\ntable inet fwc\n" {
        problems.push(format!("after loading rules.nft twice, `nft list tables` prints:\n{tables}"));
    }
    let other_after = namespace.exec(&["nft", "list", "table", "ip", "other"], None)?;
    if other_after != other_before {
        problems.push(format!(
            "loading rules.nft changed another program's table:\n{}",
            diff("before", &other_before, "after", &other_after)
        ));
    }
    // Every rule of the file is in the kernel: count them in the JSON dump.
    let json = namespace.exec(&["nft", "-j", "list", "table", "inet", "fwc"], None)?;
    let dump: serde_json::Value = serde_json::from_str(&json).map_err(|error| format!("nft -j: {error}"))?;
    let live = dump["nftables"].as_array().map_or(0, |items| items.iter().filter(|item| item.get("rule").is_some()).count());
    let text = built.read("rules.nft")?;
    let written = text.lines().filter(|line| line.starts_with("\t\t") && !line.starts_with("\t\t\t") && !line.starts_with("\t\ttype ") && !line.starts_with("\t\tflags ") && !line.starts_with("\t\telements") && *line != "\t\t}").count();
    if live != written {
        problems.push(format!("rules.nft has {written} rules, the kernel holds {live}"));
    }
    Ok(())
}
