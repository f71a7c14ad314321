//! The same policy and params give the same bytes: every build of a policy,
//! each in a process of its own (so with its own hash seeds), writes five
//! identical files.

use super::policies;
use super::support::{build, diff, header_args, policy_files, repo_root, TempDir, OUTPUTS};
use std::path::Path;

#[test]
fn every_form_policy_builds_to_the_same_bytes_every_time() {
    let directory = TempDir::new("every-form");
    let path = policies::write_every_form(&directory);
    if let Err(problem) = builds_identically(&path, &policies::every_form_args(), 4) {
        panic!("the every-form policy (tests/it/kernel/policies.rs): {problem}");
    }
}

#[test]
fn example_policies_and_ok_cases_build_to_the_same_bytes_twice() {
    let root = repo_root();
    let mut paths = policy_files(&root.join("policies"), Some(".test.fw"));
    paths.extend(policy_files(&root.join("tests/cases/ok"), None));
    let problems: Vec<String> = paths
        .iter()
        .filter_map(|path| {
            let args = header_args(&std::fs::read_to_string(path).unwrap_or_default());
            builds_identically(path, &args, 2)
                .err()
                .map(|problem| format!("{}: {problem}", path.strip_prefix(&root).unwrap_or(path).display()))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} policies build differently:\n{}",
        problems.len(),
        paths.len(),
        problems.join("\n\n")
    );
}

/// Builds `times` times into separate directories; the first difference.
fn builds_identically(path: &Path, args: &[String], times: usize) -> Result<(), String> {
    let first = build(path, args)?;
    for attempt in 2..=times {
        let again = build(path, args)?;
        for output in OUTPUTS {
            let (expected, actual) = (first.read(output)?, again.read(output)?);
            if expected != actual {
                return Err(format!(
                    "build 1 and build {attempt} differ in {output}:\n{}",
                    diff(&format!("{output} (build 1)"), &expected, &format!("{output} (build {attempt})"), &actual)
                ));
            }
        }
    }
    Ok(())
}
