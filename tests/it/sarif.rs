//! `fwc check --format sarif`: logs that validate against the SARIF 2.1.0
//! schema (tests/sarif), with the parts GitHub code scanning reads.

use crate::kernel::support::TempDir;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `fwc check --format sarif ARGS` in `directory`: exit code and the log.
fn sarif(directory: &Path, args: &[&str]) -> (i32, String, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_fwc"))
        .arg("check")
        .args(args)
        .args(["--format", "sarif"])
        .current_dir(directory)
        .output()
        .expect("fwc runs");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let log = serde_json::from_str(&stdout).unwrap_or_else(|error| {
        panic!("not JSON ({error}): {stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    (output.status.code().expect("an exit code"), stdout, log)
}

/// Validates JSON files against a schema with Python's jsonschema; the
/// problems found, one a line.
fn validate(schema: &Path, files: &[PathBuf]) -> String {
    const SCRIPT: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
validator = jsonschema.validators.validator_for(schema)
validator.check_schema(schema)
for path in sys.argv[2:]:
    for error in sorted(validator(schema).iter_errors(json.load(open(path))), key=str):
        print(path, "/".join(map(str, error.absolute_path)), error.message)
"#;
    // The Python on PATH, else Debian's (python3-jsonschema).
    let python = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|python| Command::new(python).args(["-c", "import jsonschema"]).output().is_ok_and(|output| output.status.success()))
        .expect("a python3 with jsonschema: apt-get install python3-jsonschema (tests/run-all.sh does)");
    let output = Command::new(python).args(["-c", SCRIPT]).arg(schema).args(files).output().expect("python runs");
    assert!(output.status.success(), "the validator failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

const POLICY_WITH_ALL_KINDS: &str = "\
# A policy with a warning in a stdlib module, a related location and a note.
param public = eth0
deny in tcp 22
use ssh-in
allow in tcp 80 from 192.0.2.1/24
";

#[test]
fn sarif_logs_validate_against_the_sarif_2_1_0_schema() {
    let directory = TempDir::new("schema");
    let cases = repo().join("tests/cases");
    let mut logs = Vec::new();
    for (case, expected_code) in [
        ("err/deny-warnings.fw", 0),
        ("err/unknown-service.fw", 1),
        ("err/syntax-error-port.fw", 1),
        ("err/include-cycle.fw", 1),
        ("err/unset-param.fw", 1),
        ("ok/stateful.fw", 0),
    ] {
        let (code, stdout, _) = sarif(&cases, &[case]);
        assert_eq!(code, expected_code, "{case}: {stdout}");
        logs.push((case.to_string(), stdout));
    }
    std::fs::write(directory.path().join("all kinds.fw"), POLICY_WITH_ALL_KINDS).expect("write");
    let (_, stdout, _) = sarif(directory.path(), &["all kinds.fw", "-W", "conflicting-rules"]);
    logs.push(("all kinds.fw".to_string(), stdout));

    let mut files = Vec::new();
    for (index, (_, text)) in logs.iter().enumerate() {
        let path = directory.path().join(format!("{index}.sarif"));
        std::fs::write(&path, text).expect("write");
        files.push(path);
    }
    // An invalid log is caught: the validation can fail.
    let broken = directory.path().join("broken.sarif");
    std::fs::write(&broken, logs[0].1.replacen("\"level\": \"warning\"", "\"level\": \"fatal\"", 1)).expect("write");
    let schema = repo().join("tests/sarif/sarif-schema-2.1.0.json");
    let broken_problems = validate(&schema, &[broken]);
    assert!(broken_problems.contains("'fatal' is not one of"), "{broken_problems}");
    let problems = validate(&schema, &files);
    assert!(problems.is_empty(), "{problems}\n{}", logs.iter().map(|(case, log)| format!("{case}:\n{log}")).collect::<String>());
}

#[test]
fn sarif_results_have_rules_with_help_relative_paths_and_fingerprints() {
    let directory = TempDir::new("results");
    std::fs::create_dir_all(directory.path().join("policies")).expect("mkdir");
    std::fs::write(directory.path().join("policies/all kinds.fw"), POLICY_WITH_ALL_KINDS).expect("write");
    let (code, _, log) = sarif(directory.path(), &["./policies/all kinds.fw"]);
    assert_eq!(code, 0);
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "fwc");
    assert_eq!(run["automationDetails"]["id"], "fwc/policies/all%20kinds.fw/");
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let results = run["results"].as_array().expect("results");
    let codes: Vec<&str> = results.iter().map(|result| result["ruleId"].as_str().expect("ruleId")).collect();
    assert!(codes.contains(&"shadowed-rule") && codes.contains(&"host-bits-set"), "{codes:?}");
    for result in results {
        let rule = &rules[result["ruleIndex"].as_u64().expect("ruleIndex") as usize];
        assert_eq!(rule["id"], result["ruleId"]);
        let help = rule["help"]["markdown"].as_str().expect("help");
        assert!(help.starts_with("**Warning.**") || help.starts_with("**Error.**"), "{help}");
        assert!(help.contains("```fw"), "the help shows an example: {help}");
        let location = &result["locations"][0]["physicalLocation"];
        // Relative to the directory fwc ran in, `./` gone, percent-encoded.
        assert_eq!(location["artifactLocation"]["uri"], "policies/all%20kinds.fw");
        assert_eq!(location["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert!(location["region"]["startLine"].as_u64().expect("startLine") >= 1);
        assert!(result["partialFingerprints"]["fwcResultHash/v1"].as_str().is_some_and(|hash| hash.len() == 16));
    }
    // The rule from the stdlib cannot be pointed at: the message says where
    // it is, and the result stands at the `use` line.
    let shadowed = results.iter().find(|result| result["ruleId"] == "shadowed-rule").expect("shadowed-rule");
    let message = shadowed["message"]["text"].as_str().expect("message");
    assert!(message.contains("<stdlib/baseline/ssh-in.fw>:6:1: this rule"), "{message}");
    assert_eq!(shadowed["locations"][0]["physicalLocation"]["region"]["startLine"], 4);
    assert_eq!(shadowed["relatedLocations"][0]["physicalLocation"]["region"]["startLine"], 3);
    // The note is in the message too.
    let host_bits = results.iter().find(|result| result["ruleId"] == "host-bits-set").expect("host-bits-set");
    assert!(host_bits["message"]["text"].as_str().expect("message").contains("\n= write 192.0.2.0/24"), "{host_bits}");
    assert_eq!(host_bits["locations"][0]["physicalLocation"]["region"]["startColumn"], 22);

    // Fingerprints survive lines moving; editing the line changes them.
    let fingerprints = |log: &Value| -> Vec<String> {
        log["runs"][0]["results"].as_array().expect("results").iter().map(|result| result["partialFingerprints"]["fwcResultHash/v1"].to_string()).collect()
    };
    std::fs::write(directory.path().join("policies/all kinds.fw"), format!("\n\n{POLICY_WITH_ALL_KINDS}")).expect("write");
    let (_, _, moved) = sarif(directory.path(), &["policies/all kinds.fw"]);
    assert_eq!(fingerprints(&moved), fingerprints(&log));
    let moved_lines: Vec<&Value> = moved["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|result| &result["locations"][0]["physicalLocation"]["region"]["startLine"])
        .collect();
    let lines: Vec<&Value> = results.iter().map(|result| &result["locations"][0]["physicalLocation"]["region"]["startLine"]).collect();
    assert!(moved_lines.iter().zip(&lines).all(|(moved, line)| moved.as_u64() == line.as_u64().map(|line| line + 2)), "{moved_lines:?} {lines:?}");
    std::fs::write(directory.path().join("policies/all kinds.fw"), POLICY_WITH_ALL_KINDS.replace("192.0.2.1/24", "192.0.2.3/24")).expect("write");
    let (_, _, edited) = sarif(directory.path(), &["policies/all kinds.fw"]);
    let (before, after) = (fingerprints(&log), fingerprints(&edited));
    assert_eq!(before.len(), after.len());
    for ((before, after), line) in before.iter().zip(&after).zip(&lines) {
        assert_eq!(before != after, line.as_u64() == Some(5), "only the results on the edited line change");
    }
}

#[test]
fn sarif_is_for_check_only() {
    let output = Command::new(env!("CARGO_BIN_EXE_fwc"))
        .args(["build", "ok/stateful.fw", "--format", "sarif", "--emit", "rules.v4"])
        .current_dir(repo().join("tests/cases"))
        .output()
        .expect("fwc runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--format sarif is for `fwc check`"));
}
