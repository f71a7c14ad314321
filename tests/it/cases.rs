//! Data-driven cases: every `.fw` file under tests/cases/ok and
//! tests/cases/err is compiled by one helper, [`check`], and its result —
//! source, rendered diagnostics, every output — compared with a reviewed
//! insta snapshot in tests/cases/snapshots. See tests/cases/README.md.

use fwc::{compile, Code, OsFileSystem};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

fn case_files(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir().join(kind))
        .unwrap_or_else(|error| panic!("cannot list tests/cases/{kind}: {error}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "fw"))
        .collect();
    files.sort();
    files
}

/// The `--set` pairs of a case: header lines `# args: --set NAME=VALUE …`.
pub fn case_params(text: &str) -> Vec<(String, String)> {
    case_args(text).0
}

/// A case's `# args:` header: `--set NAME=VALUE`, and `-A|-W|-D CODE` or
/// `-D warnings` as on the command line.
fn case_args(text: &str) -> (Vec<(String, String)>, fwc::Options) {
    let mut params = Vec::new();
    let mut options = fwc::Options::default();
    for line in text.lines().take_while(|line| line.starts_with('#')) {
        let Some(args) = line.strip_prefix("# args:") else { continue };
        let mut words = args.split_whitespace();
        while let Some(word) = words.next() {
            let value = words.next().expect("every option takes a value");
            let level = match word {
                "--set" => {
                    let (name, value) = value.split_once('=').expect("NAME=VALUE");
                    params.push((name.to_string(), value.to_string()));
                    continue;
                }
                "-A" => fwc::Level::Allow,
                "-W" => fwc::Level::Warn,
                "-D" => fwc::Level::Deny,
                other => panic!("`# args:` takes --set, -A, -W, -D; not {other}"),
            };
            let code = if value == "warnings" { None } else { Some(Code::from_name(value).expect("a code")) };
            options.levels.set(code, level);
        }
    }
    (params, options)
}

/// Compiles one case file and renders everything a reviewer needs to see.
/// Paths are shown relative to tests/cases so snapshots do not depend on
/// where the repository lives.
fn check(path: &Path) -> (String, BTreeSet<Code>, bool) {
    let text = std::fs::read_to_string(path).expect("case file");
    let relative = path.strip_prefix(cases_dir()).expect("under tests/cases");
    // Compile with the case directory as the working directory's stand-in:
    // give the relative path, resolved against tests/cases.
    let (params, options) = case_args(&text);
    let compilation =
        with_cases_dir(|| fwc::compile_with(&OsFileSystem, relative, &params, &options).expect("readable"));
    let mut out = format!("--- source\n{text}");
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("--- diagnostics\n");
    out.push_str(&compilation.render_diagnostics());
    let mut codes: BTreeSet<Code> = compilation.diagnostics.iter().map(|diagnostic| diagnostic.code).collect();
    let mut failed = false;
    if !compilation.has_errors() && !compilation.lowered.tests.is_empty() {
        out.push_str("--- tests\n");
        for outcome in compilation.run_tests() {
            out.push_str(&compilation.render(&outcome.failures));
            out.push_str(&format!("test {} ... {}\n", outcome.name, if outcome.passed() { "ok" } else { "FAILED" }));
            codes.extend(outcome.failures.iter().map(|failure| failure.code));
            failed |= !outcome.passed();
        }
    }
    let name = relative.display().to_string();
    if let Some(outputs) = compilation.outputs(&name) {
        for (file, content) in outputs {
            out.push_str(&format!("--- {file}\n{content}"));
        }
    }
    (out, codes, compilation.has_errors() || failed)
}

/// Runs `f` with tests/cases as the current directory. Cases run one at a
/// time under a lock, since the current directory is process-wide.
fn with_cases_dir<T>(f: impl FnOnce() -> T) -> T {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let previous = std::env::current_dir().expect("current dir");
    std::env::set_current_dir(cases_dir()).expect("cd tests/cases");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::env::set_current_dir(previous).expect("cd back");
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Snapshots every case of a kind; reports all mismatches, not just the first.
fn run_kind(kind: &str) -> BTreeSet<Code> {
    let files = case_files(kind);
    assert!(!files.is_empty(), "no cases in tests/cases/{kind}");
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for path in &files {
        let stem = path.file_stem().expect("file name").to_string_lossy().to_string();
        let (output, codes, has_errors) = check(path);
        seen.extend(codes);
        let expectation = match kind {
            "ok" if has_errors => Some("an ok/ case must compile without errors"),
            "err" if !has_errors => Some("an err/ case must produce at least one error"),
            _ => None,
        };
        if let Some(message) = expectation {
            failures.push(format!("{kind}/{stem}: {message}\n{output}"));
            continue;
        }
        let result = std::panic::catch_unwind(|| {
            let mut settings = insta::Settings::clone_current();
            settings.set_snapshot_path(cases_dir().join("snapshots"));
            settings.set_prepend_module_to_snapshot(false);
            settings.set_omit_expression(true);
            settings.bind(|| insta::assert_snapshot!(format!("{kind}__{stem}"), output));
        });
        if result.is_err() {
            failures.push(format!("{kind}/{stem}: snapshot differs"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    seen
}

#[test]
fn ok_cases() {
    run_kind("ok");
}

#[test]
fn err_cases() {
    run_kind("err");
}

/// Every diagnostic code is shown by at least one case, so each has a
/// reviewed example of its wording.
#[test]
fn every_code_has_a_case() {
    let mut seen = BTreeSet::new();
    for kind in ["ok", "err"] {
        for path in case_files(kind) {
            seen.extend(check(&path).1);
        }
    }
    // analysis-incomplete needs thousands of rules: tests/it/analysis.rs
    // shows it with a generated policy instead of a snapshot.
    let missing: Vec<&str> = Code::ALL
        .iter()
        .filter(|code| !seen.contains(code) && **code != Code::AnalysisIncomplete)
        .map(|code| code.name())
        .collect();
    assert!(missing.is_empty(), "codes without a case in tests/cases: {}", missing.join(", "));
}

/// Serves one file from memory and everything else from disk.
struct Overlay<'a> {
    path: &'a Path,
    text: &'a str,
}

impl fwc::FileSystem for Overlay<'_> {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path == self.path {
            Ok(self.text.to_string())
        } else {
            fwc::FileSystem::read(&OsFileSystem, path)
        }
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        fwc::FileSystem::glob(&OsFileSystem, pattern)
    }
}

/// Every prefix of every case — half-typed policies, as an editor sees
/// them — compiles to diagnostics without a panic.
#[test]
fn no_prefix_of_a_case_panics() {
    let mut failures = Vec::new();
    for kind in ["ok", "err"] {
        for path in case_files(kind) {
            let text = std::fs::read_to_string(&path).expect("case file");
            let params = case_params(&text);
            // Cut between tokens: wherever a word character meets another kind.
            let word = |c: char| c.is_alphanumeric() || c == '_';
            let cuts = text.char_indices().filter_map(|(index, c)| {
                let previous = text[..index].chars().next_back();
                (previous.is_none_or(|previous| word(previous) != word(c) || !word(c))).then_some(index)
            });
            for end in cuts.chain([text.len()]) {
                let prefix = &text[..end];
                let overlay = Overlay { path: &path, text: prefix };
                let result = std::panic::catch_unwind(|| compile(&overlay, &path, &params).map(|c| c.outputs("x")));
                if result.is_err() {
                    failures.push(format!("{}: prefix of {end} bytes: {prefix:?}", path.display()));
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "compiling these panicked:\n{}", failures.join("\n"));
}
