//! `fwc fmt`: the layout, and the two properties that make it safe to run
//! on any policy — formatting formatted text changes nothing, and a
//! formatted policy compiles to exactly what the original did.
//!
//! The properties are checked over every case (ok and err), every example
//! policy with its drop-ins, every stdlib module, and (robustness.rs)
//! mutated policies.

use crate::kernel::support::TempDir;
use fwc::fmt::format;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- properties

/// What a compilation says, less where it says it: each diagnostic's
/// code, severity, message and notes; the test outcomes; the outputs
/// (rules.nft without the policy line numbers in its comments).
fn meaning(fs: &dyn fwc::FileSystem, root: &Path, params: &[(String, String)]) -> String {
    let compilation = fwc::compile(fs, root, params).expect("the root is readable");
    let mut out = String::new();
    for diagnostic in &compilation.diagnostics {
        out.push_str(&format!(
            "{:?} {:?} {}\n{}\n",
            diagnostic.severity,
            diagnostic.code,
            diagnostic.message,
            diagnostic.notes.join("\n")
        ));
    }
    if !compilation.has_errors() {
        for outcome in compilation.run_tests() {
            out.push_str(&format!("test {} passed: {}\n", outcome.name, outcome.passed()));
            for failure in &outcome.failures {
                out.push_str(&format!("  {:?} {}\n", failure.code, failure.message));
            }
        }
    }
    for (file, text) in compilation.outputs("policy.fw").unwrap_or_default() {
        let text = if file == "rules.nft" { without_line_comments(&text) } else { text };
        out.push_str(&format!("--- {file}\n{text}"));
    }
    out
}

/// rules.nft with each rule's comment left out: it names the policy lines
/// the rule came from (`policy.fw:12,14: TEXT`, cut to what nft keeps), and
/// formatting moves lines. Nothing else is: the rules' own comments are
/// compared byte for byte in the iptables outputs.
fn without_line_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(" comment \"") {
        let quoted = &rest[start + " comment \"".len()..];
        let end = quoted.find('"').expect("nft comments are quoted and hold no quote");
        out.push_str(&rest[..start]);
        out.push_str(" comment <policy lines>");
        rest = &quoted[end + 1..];
    }
    out.push_str(rest);
    out
}

/// An in-memory copy of some files, as `include` reads them.
#[derive(Clone, Default)]
pub struct Files(pub BTreeMap<PathBuf, String>);

impl fwc::FileSystem for Files {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        let path: PathBuf = path.components().filter(|part| !matches!(part, std::path::Component::CurDir)).collect();
        self.0.get(&path).cloned().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let pattern = glob::Pattern::new(pattern.trim_start_matches("./")).map_err(|error| error.to_string())?;
        Ok(self.0.keys().filter(|path| pattern.matches_path(path)).cloned().collect())
    }
}

/// Checks both properties for `root` among `files`: every file that
/// parses is formatted, and formatting the result again changes nothing;
/// the policy compiled from the formatted files means what it meant.
/// `Err` says what broke.
pub fn check_formatting(files: &Files, root: &Path, params: &[(String, String)]) -> Result<(), String> {
    let mut formatted = files.clone();
    for (path, text) in formatted.0.iter_mut() {
        let Ok(once) = format(text) else { continue };
        let twice = format(&once).map_err(|error| format!("{}: formatted text does not parse: {error:?}\n{once}", path.display()))?;
        if twice != once {
            return Err(format!(
                "{}: formatting is not idempotent:\n{}",
                path.display(),
                fwc::fmt::diff(&path.display().to_string(), &once, &twice)
            ));
        }
        *text = once;
    }
    let (before, after) = (meaning(files, root, params), meaning(&formatted, root, params));
    if before != after {
        return Err(format!(
            "{}: the formatted policy compiles differently:\n{}",
            root.display(),
            fwc::fmt::diff("compilation", &before, &after)
        ));
    }
    Ok(())
}

/// Every `.fw` file under `directory`, by path relative to it.
fn files_under(directory: &Path) -> Files {
    let mut files = Files::default();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap_or_else(|error| panic!("{}: {error}", folder.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "fw") {
                let text = std::fs::read_to_string(&path).expect("a readable file");
                files.0.insert(path.strip_prefix(directory).expect("under the directory").to_path_buf(), text);
            }
        }
    }
    files
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn cases_examples_and_stdlib_format_idempotently_and_compile_alike() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for directory in ["tests/cases/ok", "tests/cases/err", "policies", "stdlib", "stdlib/baseline"] {
        let files = files_under(&repo().join(directory));
        // Each file of the directory itself is a policy (drop-ins are
        // compiled through the policies that include them).
        let roots: Vec<PathBuf> = files.0.keys().filter(|path| path.parent() == Some(Path::new(""))).cloned().collect();
        for root in roots {
            let params = super::cases::case_params(&files.0[&root]);
            checked += 1;
            if let Err(error) = check_formatting(&files, &root, &params) {
                failures.push(format!("{directory}/{error}"));
            }
        }
    }
    assert!(checked > 90, "too few policies checked: {checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// What users read first stays formatted: `fwc fmt --check policies stdlib`.
#[test]
fn the_stdlib_and_the_examples_are_formatted() {
    let mut unformatted = Vec::new();
    for directory in ["policies", "stdlib"] {
        for (path, text) in files_under(&repo().join(directory)).0 {
            let formatted = format(&text).unwrap_or_else(|error| panic!("{}: {error:?}", path.display()));
            if formatted != text {
                unformatted.push(fwc::fmt::diff(&format!("{directory}/{}", path.display()), &text, &formatted));
            }
        }
    }
    assert!(unformatted.is_empty(), "run `fwc fmt policies stdlib`:\n{}", unformatted.concat());
}

// ---------------------------------------------------------------- the layout

/// Formats `input` and checks the result, and that it is a fixed point.
fn formats_as(input: &str, expected: &str) {
    let output = format(input).unwrap_or_else(|error| panic!("does not format: {error:?}"));
    assert_eq!(output, expected, "formatting\n{input}");
    assert_eq!(format(&output).expect("formats again"), output, "not idempotent");
}

#[test]
fn spaces_are_one_between_words_and_none_before_commas_or_in_ranges() {
    formats_as(
        "allow   in tcp 80,443 ,8000 - 8080  from {10.0.0.0/8,fd00::/8 , }   stateful\n",
        "allow in tcp 80, 443, 8000-8080 from { 10.0.0.0/8, fd00::/8 } stateful\n",
    );
    formats_as("let empty={ }\n", "let empty = {}\n");
    formats_as("allow forward on eth0->eth1\n", "allow forward on eth0 -> eth1\n");
    // Atoms are kept as written: the flags list has no spaces to add.
    formats_as("allow in tcp flags FIN,SYN,RST,ACK syn limit 10/minute burst 5\n", "allow in tcp flags FIN,SYN,RST,ACK syn limit 10/minute burst 5\n");
}

#[test]
fn like_statements_in_a_row_line_up_by_clause() {
    formats_as(
        "allow in tcp 22 from $admins stateful\nallow out on eth2 tcp 4001 stateful\ndeny in tcp 23 log \"telnet: \"\n",
        "allow in          tcp 22   from $admins stateful\n\
         allow out on eth2 tcp 4001              stateful\n\
         deny  in          tcp 23                log \"telnet: \"\n",
    );
    // A blank line ends the table; a comment line does not.
    formats_as(
        "let a = 1\nlet long_name = 2\n\nlet b = 3\n# note\nlet cc = 4\n",
        "let a         = 1\nlet long_name = 2\n\nlet b  = 3\n# note\nlet cc = 4\n",
    );
    // The last cell of a line makes no column wider.
    formats_as(
        "allow in icmp echo-request stateful\nallow in icmp destination-unreachable, time-exceeded\n",
        "allow in icmp echo-request stateful\nallow in icmp destination-unreachable, time-exceeded\n",
    );
}

#[test]
fn comments_are_kept_and_trailing_ones_line_up() {
    formats_as(
        "use policies # drop\nuse established   # replies\n",
        "use policies     # drop\nuse established  # replies\n",
    );
    // A comment line further right than the code above continues its
    // trailing comment and stays lined up with it; one at the left margin
    // is a comment of its own.
    formats_as(
        "allow in tcp 22 # ssh,\n                # from anywhere\n# the next rule\nallow in tcp 80\n",
        "allow in tcp 22  # ssh,\n                 # from anywhere\n# the next rule\nallow in tcp 80\n",
    );
    formats_as("#!comment with trailing spaces   \n\n\n\n# two blank lines less\n", "#!comment with trailing spaces\n\n# two blank lines less\n");
}

#[test]
fn blocks_are_indented_and_opened_on_their_line() {
    formats_as(
        "chain web keep { allow in tcp 80 }\ntest \"t\" {\n\n  expect allow in tcp 80   # web\n\n\n expect deny in tcp 23\n\n}\nchain empty {\n}\n",
        "chain web keep {\n    allow in tcp 80\n}\ntest \"t\" {\n    expect allow in tcp 80  # web\n\n    expect deny in tcp 23\n}\nchain empty {}\n",
    );
}

#[test]
fn sets_over_several_lines_keep_their_lines_with_a_comma_after_each() {
    formats_as(
        "let nets = {  # ours\n  10.0.0.0/8, 172.16.0.0/12   # private\n192.168.0.0/16\n\n\n    fd00::/8 }\nallow in from $nets\n",
        "let nets = {  # ours\n    10.0.0.0/8, 172.16.0.0/12,  # private\n    192.168.0.0/16,\n\n    fd00::/8,\n}\nallow in from $nets\n",
    );
    formats_as(
        "chain c {\n  allow in from {\n198.51.100.1\n  } stateful\n}\n",
        "chain c {\n    allow in from {\n        198.51.100.1,\n    } stateful\n}\n",
    );
}

#[test]
fn continued_lines_stay_continued_one_level_in() {
    formats_as(
        "allow in tcp 22 \\\nfrom 198.51.100.0/24 \\\n          stateful  # ssh\n",
        "allow in tcp 22 \\\n    from 198.51.100.0/24 \\\n    stateful  # ssh\n",
    );
}

#[test]
fn files_end_with_one_newline_and_line_ends_become_newlines() {
    formats_as("\n\nallow in tcp 22", "allow in tcp 22\n");
    formats_as("allow in tcp 22\r\ndeny in tcp 23\r\n\r\n", "allow in  tcp 22\ndeny  in  tcp 23\n".replace("in  tcp", "in tcp").as_str());
    formats_as("", "");
    formats_as("# only a comment", "# only a comment\n");
}

#[test]
fn a_file_that_does_not_parse_is_refused_with_its_diagnostic() {
    let errors = format("allow in tcp 22 from\n").expect_err("a syntax error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, fwc::Code::SyntaxError);
    assert!(errors[0].message.contains("expected an address"), "{}", errors[0].message);
    assert_eq!(errors[0].primary_span().map(|span| span.start), Some(20));
}

// ---------------------------------------------------------------- the command

fn fwc_fmt(args: &[&str], directory: &Path, stdin: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fwc"))
        .arg("fmt")
        .args(args)
        .current_dir(directory)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("fwc runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect("fwc finishes");
    (
        output.status.code().expect("an exit code"),
        String::from_utf8(output.stdout).expect("utf-8"),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

#[test]
fn fmt_rewrites_files_checks_them_and_refuses_broken_ones() {
    let directory = TempDir::new("fmt");
    let root = directory.path();
    std::fs::create_dir_all(root.join("conf.d")).expect("mkdir");
    let messy = "allow  in tcp 22\n";
    std::fs::write(root.join("a.fw"), messy).expect("write");
    std::fs::write(root.join("conf.d/b.fw"), "deny in tcp 23\n").expect("write");
    std::fs::write(root.join("broken.fw"), "allow in tcp 22 from\n").expect("write");

    // --check: a diff for the file to format, exit 1, nothing written.
    let (code, stdout, stderr) = fwc_fmt(&["--check", "a.fw", "conf.d"], root, "");
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.contains("-allow  in tcp 22\n+allow in tcp 22\n"), "{stdout}");
    assert!(!stdout.contains("b.fw"), "b.fw is formatted: {stdout}");
    assert_eq!(std::fs::read_to_string(root.join("a.fw")).expect("read"), messy);

    // A syntax error: the diagnostic, exit 2, the file untouched.
    let (code, _, stderr) = fwc_fmt(&["broken.fw"], root, "");
    assert_eq!(code, 2);
    assert!(stderr.contains("error[syntax-error]") && stderr.contains("broken.fw:1:21"), "{stderr}");
    assert_eq!(std::fs::read_to_string(root.join("broken.fw")).expect("read"), "allow in tcp 22 from\n");

    // In place, a directory standing for its .fw files; then all is formatted.
    let (code, stdout, stderr) = fwc_fmt(&["a.fw", "conf.d"], root, "");
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
    assert_eq!(std::fs::read_to_string(root.join("a.fw")).expect("read"), "allow in tcp 22\n");
    assert_eq!(fwc_fmt(&["--check", "a.fw", "conf.d"], root, "").0, 0);

    // `-`: standard input to standard output.
    let (code, stdout, _) = fwc_fmt(&["-"], root, "deny in  tcp 23");
    assert_eq!((code, stdout.as_str()), (0, "deny in tcp 23\n"));
    let (code, stdout, _) = fwc_fmt(&["--check", "-"], root, "deny in  tcp 23");
    assert_eq!(code, 1);
    assert!(stdout.contains("+deny in tcp 23"), "{stdout}");
}
