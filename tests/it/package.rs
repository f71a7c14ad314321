//! Installing fwc: the man pages and completions `fwc generate` makes from
//! the clap definitions, and the Debian package dist/build-deb.sh builds,
//! installed into a temporary root with dpkg (never into this machine's
//! /usr).

use crate::kernel::support::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn fwc(args: &[&str]) -> String {
    String::from_utf8(run(Command::new(env!("CARGO_BIN_EXE_fwc")).args(args)).stdout).expect("utf-8")
}

/// The commands `fwc --help` lists, but `help`.
fn commands() -> Vec<String> {
    let help = fwc(&["--help"]);
    let listed: Vec<String> = help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect();
    assert!(listed.len() >= 6 && listed.contains(&"fmt".to_string()), "{help}");
    listed
}

#[test]
fn the_man_page_names_every_command_and_each_has_a_page() {
    let directory = TempDir::new("man");
    fwc(&["generate", "man", directory.path().to_str().expect("utf-8 path")]);
    let main = std::fs::read_to_string(directory.path().join("fwc.1")).expect("fwc.1");
    assert!(main.starts_with(".ie"), "a roff page: {main}");
    assert!(main.contains("fwc build policies/web.fw"), "the examples are in: {main}");
    for command in commands() {
        assert!(main.contains(&format!("fwc\\-{command}(1)")), "fwc.1 does not name `{command}`:\n{main}");
        let page = std::fs::read_to_string(directory.path().join(format!("fwc-{command}.1")))
            .unwrap_or_else(|error| panic!("fwc-{command}.1: {error}"));
        assert!(page.contains(&format!("fwc {command}")), "fwc-{command}.1 has no synopsis:\n{page}");
    }
    assert!(!main.contains("generate"), "the hidden command stays out of the manual");
    // Every page is roff that groff reads without a warning, as man does
    // (preconv first: the pages are UTF-8).
    for entry in std::fs::read_dir(directory.path()).expect("the pages") {
        let page = entry.expect("an entry").path();
        let output = run(Command::new("sh")
            .arg("-c")
            .arg("preconv \"$1\" | groff -man -ww -z -Tutf8")
            .arg("sh")
            .arg(&page));
        assert!(output.stderr.is_empty(), "{}: {}", page.display(), String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn completions_cover_every_command() {
    let bash = fwc(&["generate", "completions", "bash"]);
    let directory = TempDir::new("completions");
    let script = directory.path().join("fwc.bash");
    std::fs::write(&script, &bash).expect("write");
    run(Command::new("bash").arg("-n").arg(&script));
    let zsh = fwc(&["generate", "completions", "zsh"]);
    let fish = fwc(&["generate", "completions", "fish"]);
    for command in commands() {
        for (shell, text) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
            assert!(text.contains(&command), "the {shell} completion lacks `{command}`");
        }
    }
    assert!(bash.contains("--check") && fish.contains("sarif"), "options and their values are completed");
}

#[test]
fn the_debian_package_installs_the_binary_man_pages_completions_and_boot_files() {
    let directory = TempDir::new("deb");
    let build = |out: &str| -> PathBuf {
        let output = run(Command::new("bash")
            .arg(repo().join("dist/build-deb.sh"))
            .arg(directory.path().join(out))
            .env("FWC_BINARY", env!("CARGO_BIN_EXE_fwc"))
            .env("SOURCE_DATE_EPOCH", "1700000000"));
        PathBuf::from(String::from_utf8(output.stdout).expect("utf-8").trim())
    };
    let deb = build("one");
    assert_eq!(deb.file_name().and_then(|name| name.to_str()).map(|name| name.starts_with(&format!("fwc_{}_", env!("CARGO_PKG_VERSION")))), Some(true));
    // The same tree and date give the same bytes.
    assert!(std::fs::read(&deb).expect("deb") == std::fs::read(build("two")).expect("deb"), "the package is not reproducible");

    // Debian's own checker finds no error and no warning.
    let lintian = Command::new("lintian").args(["--tag-display-limit", "0", "--fail-on", "error,warning"]).arg(&deb).output().expect("lintian runs (Debian's lintian package)");
    assert!(lintian.status.success(), "lintian:\n{}", String::from_utf8_lossy(&lintian.stdout));
    let info = String::from_utf8(run(Command::new("dpkg-deb").arg("--info").arg(&deb)).stdout).expect("utf-8");
    for field in ["Package: fwc", &format!("Version: {}", env!("CARGO_PKG_VERSION")), "Depends: libc6", "Section: net"] {
        assert!(info.contains(field), "`{field}` missing:\n{info}");
    }
    let contents = String::from_utf8(run(Command::new("dpkg-deb").arg("--contents").arg(&deb)).stdout).expect("utf-8");
    let mut expected = vec![
        "./usr/bin/fwc".to_string(),
        "./usr/share/man/man1/fwc.1.gz".to_string(),
        "./usr/share/bash-completion/completions/fwc".to_string(),
        "./usr/share/zsh/vendor-completions/_fwc".to_string(),
        "./usr/share/fish/vendor_completions.d/fwc.fish".to_string(),
        "./usr/share/doc/fwc/copyright".to_string(),
        "./usr/share/doc/fwc/examples/web.fw".to_string(),
    ];
    expected.extend(commands().iter().map(|command| format!("./usr/share/man/man1/fwc-{command}.1.gz")));
    // The boot pieces come along when dist/ has them, and only then.
    for (source, installed) in [("dist/fwc.service", "./usr/lib/systemd/system/fwc.service"), ("dist/if-pre-up.d/fwc", "./usr/share/fwc/if-pre-up.d/fwc")] {
        if repo().join(source).exists() {
            expected.push(installed.to_string());
        } else {
            assert!(!contents.contains(installed), "{installed} without {source}");
        }
    }
    for path in &expected {
        assert!(contents.lines().any(|line| line.ends_with(&format!(" {path}"))), "{path} missing:\n{contents}");
    }
    assert!(!contents.contains("/etc/"), "nothing active on installation: {contents}");

    // Installed into a root of its own, with the real dpkg.
    let root = directory.path().join("root");
    for folder in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(folder)).expect("mkdir");
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(file), "").expect("write");
    }
    // The libraries it depends on are the host's, not the empty root's.
    run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(["--force-depends", "--install"]).arg(&deb));
    // Every installed file matches the package's checksums.
    let verify = run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(["--verify", "fwc"]));
    assert!(verify.stdout.is_empty(), "{}", String::from_utf8_lossy(&verify.stdout));
    assert!(root.join("var/lib/dpkg/info/fwc.md5sums").exists(), "the package carries md5sums");
    let installed = root.join("usr/bin/fwc");
    let version = String::from_utf8(run(&mut Command::new(&installed).arg("--version")).stdout).expect("utf-8");
    assert_eq!(version.trim(), format!("fwc {}", env!("CARGO_PKG_VERSION")));
    let checked = Command::new(&installed).arg("check").arg(root.join("usr/share/doc/fwc/examples/web.fw")).output().expect("runs");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    if let Ok(unit) = std::fs::read_to_string(root.join("usr/lib/systemd/system/fwc.service")) {
        assert!(unit.contains("ExecStart=/usr/bin/fwc ") && !unit.contains("/usr/local"), "{unit}");
    }
    if let Ok(hook) = std::fs::read_to_string(root.join("usr/share/fwc/if-pre-up.d/fwc")) {
        assert!(hook.contains("/usr/bin/fwc") && !hook.contains("/usr/local"), "{hook}");
    }
    run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(["--remove", "fwc"]));
    assert!(!installed.exists(), "dpkg --remove leaves the binary");
    assert!(!Path::new(&root.join("usr/share/man/man1/fwc.1.gz")).exists());
}

/// The workflow in docs/ci.md: each `run: |` step but the install, as bash
/// with this fwc on PATH, over a copy of the example policies.
#[test]
fn the_ci_recipe_passes_on_the_examples() {
    let doc = std::fs::read_to_string(repo().join("docs/ci.md")).expect("docs/ci.md");
    let workflow = doc.split("```yaml\n").nth(1).and_then(|rest| rest.split("\n```").next()).expect("a yaml block");
    let mut steps: Vec<String> = Vec::new();
    let mut lines = workflow.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim_end().ends_with("run: |") {
            let indent = line.len() - line.trim_start().len();
            let mut script = String::new();
            while let Some(body) = lines.next_if(|body| body.trim().is_empty() || body.len() - body.trim_start().len() > indent) {
                script.push_str(body.trim_start());
                script.push('\n');
            }
            steps.push(script);
        }
    }
    assert!(steps.len() >= 5, "{workflow}");
    let directory = TempDir::new("ci");
    run(Command::new("cp").arg("-r").arg(repo().join("policies")).arg(directory.path()));
    let bin = Path::new(env!("CARGO_BIN_EXE_fwc")).parent().expect("a directory");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for step in &steps {
        run(Command::new("bash").args(["-e", "-o", "pipefail", "-c", step]).current_dir(directory.path()).env("PATH", &path));
    }
    let logs = std::fs::read_dir(directory.path().join("sarif")).expect("sarif/").count();
    assert_eq!(logs, 4, "one SARIF log per example policy");
    assert!(directory.path().join("build/web/rules.v4").exists());
}
