//! Every policy loads into the kernel — with iptables-restore and
//! ip6tables-restore, and again with rules.sh — without an error or a
//! warning, and the live tables then print exactly as saved.v4 / saved.v6.

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
    for (program, output) in [("iptables-restore", "rules.v4"), ("ip6tables-restore", "rules.v6")] {
        let rules = built.read(output)?;
        let command = restored.command(program);
        loaded &= load(command, Some(rules.as_bytes()), &format!("{program} < {output}"), &mut problems)?;
    }
    if loaded {
        compare(&restored, &built, "iptables-restore < rules.v4 and ip6tables-restore < rules.v6", &mut problems)?;
    }
    drop(restored);

    let scripted = Netns::new("script");
    let mut command = scripted.command("sh");
    command.arg(built.path("rules.sh"));
    if load(command, None, "sh rules.sh", &mut problems)? {
        compare(&scripted, &built, "sh rules.sh", &mut problems)?;
    }

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
    input: Option<&[u8]>,
    shown: &str,
    problems: &mut Vec<String>,
) -> Result<bool, String> {
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
