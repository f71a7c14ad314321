//! The `fwc` command: reads files, calls the library, prints, exits.
//!
//! Exit codes: 0 success (warnings allowed), 1 the policy has errors,
//! 2 usage or I/O errors; `apply`, `confirm` and `diff` have more
//! (host::exit, docs/user-guide.md).

mod fmt;
mod generate;
mod host;

use clap::{Args, CommandFactory, Parser, Subcommand};
use fwc::{Compilation, OsFileSystem};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fwc",
    version,
    about = "fwc compiles .fw firewall policies to iptables rules for IPv4 and IPv6",
    long_about = "fwc compiles .fw firewall policies to iptables rules for IPv4 and IPv6.\n\nA policy says what a host allows, once, for both address families. fwc checks it (diagnostics with a code, the exact place and a note on the fix), runs its `test` blocks, and writes iptables-restore and ip6tables-restore input, a POSIX shell script, and the text iptables-save prints once the rules are loaded.",
    after_help = "Exit status: 0 success (warnings allowed), 1 the policy has errors or a test failed, 2 usage or I/O errors.\n\nExamples:\n  fwc check policies/web.fw\n  fwc build policies/web.fw -o build/\n  fwc build policies/web.fw --set public=ens3 --emit rules.v4"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a policy and write rules.v4, rules.v6, rules.sh, saved.v4, saved.v6, rules.nft, ipsets.restore
    #[command(after_help = "Examples:\n  fwc build policies/web.fw                 # writes build/rules.v4 …\n  fwc build policies/web.fw -o /tmp/out\n  fwc build policies/web.fw --emit rules.v6 # prints one file\n  fwc build policies/web.fw --set public=ens3")]
    Build {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Directory for the output files
        #[arg(short = 'o', long = "out", value_name = "DIR", default_value = "build")]
        out: PathBuf,
        /// Print one output to stdout instead of writing files
        #[arg(long, value_name = "FILE", value_parser = fwc::emit::OUTPUT_NAMES)]
        emit: Option<String>,
        /// Do not run the policy's `test` blocks
        #[arg(long)]
        no_test: bool,
        /// Print the rule counts before and after consolidation, per backend, on stderr
        #[arg(long)]
        stats: bool,
        /// One kernel rule per rule fwc lowers: do not merge adjacent rules into port lists and sets
        #[arg(long)]
        no_consolidate: bool,
    },
    /// Run the policy's `test` blocks (and those of POLICY.test.fw next to it)
    #[command(after_help = "Each `expect` must hold for every packet it covers: an omitted field means\nevery value (no address: both families; a block or set: every member; no\n`on`: every interface but lo), and the state defaults to new.\n\nExample:\n  fwc test policies/web.fw")]
    Test {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Show what the policy does with a packet: the verdict per family, the
    /// rule that decided it, and the chains it went through
    #[command(after_help = "The packet is written like an `expect` line without its verdict.\nExit 0 when allowed, 1 when not, 2 for bad input.\n\nExamples:\n  fwc query policies/web.fw 'in tcp 22 from 198.51.100.7'\n  fwc query policies/web.fw 'out udp 53 to 2001:db8::53'\n  fwc query policies/web.fw 'in on eth0 tcp 443 established'")]
    Query {
        #[command(flatten)]
        policy: PolicyArgs,
        /// The packet: DIRECTION [on IFACE] [PROTO [PORT]] [from A] [to B] [STATE]
        packet: String,
    },
    /// Translate iptables-save / ip6tables-save output into a .fw policy
    #[command(after_help = "Rules fwc cannot express stay as `# unsupported:` comments; stderr says how\nmany rules were translated. Exit 0 (unsupported rules too), 2 for unreadable input.\n\nExamples:\n  iptables-save > v4.txt; ip6tables-save > v6.txt\n  fwc import v4.txt v6.txt -o imported.fw\n  iptables-save | fwc import -\n  fwc import --exact v4.txt v6.txt   # one rule per port: build --no-consolidate gives the same rules back")]
    Import {
        /// iptables-save output (`-` reads standard input); an ip6tables-save dump alone works too
        file: PathBuf,
        /// ip6tables-save output of the same host, merged with the first
        file6: Option<PathBuf>,
        /// Write the policy to this file instead of standard output
        #[arg(short = 'o', long = "out", value_name = "POLICY")]
        out: Option<PathBuf>,
        /// Do not fold rules that differ only in their ports into a port list
        #[arg(long)]
        exact: bool,
    },
    /// Load a policy into the kernel, both families or neither, and roll back
    /// unless confirmed
    #[command(after_help = "Exit codes: 0 applied, 1 policy errors, 2 usage, 3 no change, 4 refused\n(lockout, pre-flight, busy), 5 load failed and rolled back, 6 rollback failed.\n\nExamples:\n  fwc apply policies/web.fw --dry-run   # the rule diff, nothing changed\n  fwc apply policies/web.fw             # then, from a new SSH connection: fwc confirm\n  fwc apply build/ --confirm 0          # a built directory, permanent at once\n  fwc apply --boot                      # the last confirmed rules (fwc.service)")]
    Apply(host::apply::ApplyArgs),
    /// Keep the rules of the last `fwc apply` and make them the boot rules
    #[command(after_help = "Run it from a new SSH connection: that proves new connections work.\nExit 0 confirmed, 4 nothing waiting (the rollback may have run).")]
    Confirm {
        #[command(flatten)]
        host: host::HostArgs,
    },
    /// Compare the live rules with a policy (or the last applied build)
    #[command(after_help = "Prints a unified diff per chain: `-` lines are live only, `+` lines are the\npolicy's only. Other programs' chains (`keep`) are noted as unmanaged.\nExit 0 in sync, 1 drift, 2 cannot tell.\n\nExamples:\n  fwc diff policies/web.fw\n  fwc diff                  # against the last applied build")]
    Diff(host::diff::DiffArgs),
    /// The process `fwc apply --confirm` leaves behind to roll back
    #[command(hide = true)]
    RollbackDaemon {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        host: host::HostArgs,
    },
    /// Report the policy's diagnostics without writing anything
    #[command(after_help = "Example:\n  fwc check policies/web.fw && echo ok")]
    Check {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Run the language server on standard input and output, for editors
    #[command(after_help = "Editors start it; editors/ has a VS Code extension and a tree-sitter grammar.\n`--set`, -A, -W and -D go in the client's initializationOptions:\n  {\"params\": {\"public\": \"ens3\"}, \"allow\": [], \"warn\": [], \"deny\": [\"warnings\"]}")]
    Lsp,
    /// Rewrite policies in the canonical layout (docs/formatting.md)
    #[command(after_help = "Exit 0 when every file is formatted (or was rewritten), 1 when --check found\none to format, 2 when a file does not parse or cannot be read or written.\n\nExamples:\n  fwc fmt policies/web.fw\n  fwc fmt --check policies/ stdlib/   # a directory: every .fw file under it\n  fwc fmt - < web.fw                  # standard input to standard output")]
    Fmt {
        /// Policy files or directories; `-` reads standard input and writes standard output
        #[arg(required = true, value_name = "FILES")]
        files: Vec<PathBuf>,
        /// Change nothing: print a diff for each file that is not formatted and exit 1
        #[arg(long)]
        check: bool,
    },
    /// Write the man pages or a shell's completions (for packaging)
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: generate::What,
    },
}

#[derive(Args)]
struct PolicyArgs {
    /// The policy file (.fw)
    policy: PathBuf,
    /// Set a `param`: --set NAME=VALUE (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Allow CODE: do not report it (repeatable)
    #[arg(short = 'A', value_name = "CODE", value_parser = parse_single_code)]
    allow: Vec<String>,
    /// Warn on CODE, e.g. -W conflicting-rules, which is off by default
    #[arg(short = 'W', value_name = "CODE", value_parser = parse_single_code)]
    warn: Vec<String>,
    /// Deny CODE: report it as an error; `-D warnings` for every warning
    #[arg(short = 'D', value_name = "CODE", value_parser = parse_code)]
    deny: Vec<String>,
    /// Make every warning an error (the same as -D warnings)
    #[arg(long = "deny", value_name = "warnings", value_parser = ["warnings"])]
    deny_long: Option<String>,
    /// How to print diagnostics: text for people, json for tools (one object per line),
    /// sarif for CI code scanning (fwc check only; one SARIF 2.1.0 log)
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json", "sarif"])]
    format: String,
}

impl PolicyArgs {
    /// -A, then -W, then -D: the strongest setting for a code wins.
    fn options(&self) -> fwc::Options {
        let mut options = fwc::Options::default();
        for (codes, level) in [(&self.allow, fwc::Level::Allow), (&self.warn, fwc::Level::Warn), (&self.deny, fwc::Level::Deny)] {
            for code in codes {
                options.levels.set(fwc::Code::from_name(code), level);
            }
        }
        if self.deny_long.is_some() {
            options.levels.set(None, fwc::Level::Deny);
        }
        options
    }
}

fn parse_single_code(text: &str) -> Result<String, String> {
    match fwc::Code::from_name(text) {
        Some(_) => Ok(text.to_string()),
        None => Err("not a diagnostic code (docs/diagnostics.md lists them); only -D takes `warnings`".to_string()),
    }
}

fn parse_code(text: &str) -> Result<String, String> {
    if text == "warnings" || fwc::Code::from_name(text).is_some() {
        Ok(text.to_string())
    } else {
        Err("not a diagnostic code (docs/diagnostics.md lists them), nor `warnings`".to_string())
    }
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Build { policy, .. } | Command::Test { policy } | Command::Query { policy, .. } = &cli.command {
        if policy.format == "sarif" {
            eprintln!("error: --format sarif is for `fwc check`: one log of the policy's diagnostics");
            return ExitCode::from(2);
        }
    }
    match cli.command {
        Command::Build { policy, out, emit, no_test, stats, no_consolidate } => {
            let options = fwc::emit::Options { consolidate: !no_consolidate };
            let Some(mut compilation) = lower(&policy) else { return ExitCode::from(2) };
            if compilation.has_errors() {
                compilation.diagnostics = compilation.checked_diagnostics(&policy.options());
                print_diagnostics(&policy, &compilation, &compilation.diagnostics);
                return ExitCode::from(1);
            }
            // The rules are sound: the policy's tests and the writing of
            // its outputs (into temporary files) run beside its checks and
            // the rendering of their findings. The writing takes longer and
            // leaves a core idle most of the time: the checks yield to it
            // and fill that time. The outputs are moved into place only if
            // the checks find no error.
            let (diagnostics, rendered, built) = std::thread::scope(|scope| {
                let built = scope.spawn(|| build(&compilation, &policy, no_test, emit.as_deref(), &out, options));
                yield_to_others();
                let diagnostics = compilation.checked_diagnostics(&policy.options());
                let rendered = format_diagnostics(&policy, &compilation, &diagnostics);
                (diagnostics, rendered, built.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            });
            rendered.print();
            compilation.diagnostics = diagnostics;
            if compilation.has_errors() {
                if let Built::Staged(staged, _) = built {
                    staged.discard();
                }
                std::mem::forget(compilation);
                return ExitCode::from(1);
            }
            let code = match built {
                Built::TestFailures(failures) => {
                    print_diagnostics(&policy, &compilation, &failures);
                    eprintln!("error: {} expectation(s) failed; nothing was written (--no-test skips the tests)", failures.len());
                    ExitCode::from(1)
                }
                Built::Emitted(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Built::Staged(staged, counts) => match staged.commit() {
                    Ok(()) => {
                        if stats {
                            eprintln!("{}", counts.describe());
                        }
                        ExitCode::SUCCESS
                    }
                    Err(error) => cannot_write(&out, error),
                },
                Built::NotWritten(error) => cannot_write(&out, error),
            };
            // The process is about to exit: its memory goes back at once,
            // where freeing every rule one by one only takes time.
            std::mem::forget(compilation);
            code
        }
        Command::Test { policy } => {
            let Some(compilation) = run_compile(&policy) else { return ExitCode::from(2) };
            if compilation.has_errors() {
                return ExitCode::from(1);
            }
            let outcomes = compilation.run_tests();
            let passed = outcomes.iter().filter(|outcome| outcome.passed()).count();
            for outcome in &outcomes {
                print_diagnostics(&policy, &compilation, &outcome.failures);
                println!("test {} ... {}", outcome.name, if outcome.passed() { "ok" } else { "FAILED" });
            }
            println!("{} passed, {} failed", passed, outcomes.len() - passed);
            if passed == outcomes.len() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Query { policy, packet } => {
            let Some(mut compilation) = run_compile(&policy) else { return ExitCode::from(2) };
            if compilation.has_errors() {
                return ExitCode::from(2);
            }
            match compilation.query(&packet) {
                Err(diagnostics) => {
                    eprint!("{}", compilation.render(&diagnostics));
                    ExitCode::from(2)
                }
                Ok(result) => {
                    for answer in &result.answers {
                        let notes: Vec<fwc::Diagnostic> = answer
                            .outcomes
                            .iter()
                            .map(|(packet, evaluation)| {
                                fwc::eval::query::explain(&compilation.lowered.ruleset, packet, evaluation)
                            })
                            .collect();
                        if answer.outcomes.len() > 1 {
                            println!("{}: it depends on the fields the query leaves open; one example of each:", answer.family.name());
                        } else {
                            println!("{}:", answer.family.name());
                        }
                        print!("{}", compilation.render(&notes));
                    }
                    if result.all_allowed() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
            }
        }
        Command::Import { file, file6, out, exact } => {
            let read = |path: &PathBuf| {
                let text = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                } else {
                    std::fs::read_to_string(path)
                };
                text.map_err(|error| eprintln!("error: cannot read {}: {error}", path.display())).ok()
            };
            let Some(first) = read(&file) else { return ExitCode::from(2) };
            let second = match &file6 {
                Some(path) => match read(path) {
                    Some(text) => Some(text),
                    None => return ExitCode::from(2),
                },
                None => None,
            };
            let (v4, v6) = match (fwc::import::detect_family(&first), &second) {
                (Some(fwc::ir::Family::V6), None) => (None, Some(first.as_str())),
                (Some(fwc::ir::Family::V6), Some(other)) => (Some(other.as_str()), Some(first.as_str())),
                (_, other) => (Some(first.as_str()), other.as_deref()),
            };
            let options = fwc::import::Options { fold_ports: !exact };
            let imported = match fwc::import::import_with(v4, v6, options) {
                Ok(imported) => imported,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            };
            match out {
                Some(path) => {
                    if let Err(error) = std::fs::write(&path, &imported.policy) {
                        eprintln!("error: cannot write {}: {error}", path.display());
                        return ExitCode::from(2);
                    }
                }
                None => print!("{}", imported.policy),
            }
            eprint!("{}", imported.summary());
            ExitCode::SUCCESS
        }
        Command::Lsp => {
            let (connection, io_threads) = lsp_server::Connection::stdio();
            let served = fwc::lsp::run(&connection, &OsFileSystem);
            drop(connection);
            match served.and_then(|()| io_threads.join().map_err(Into::into)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: fwc lsp: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Apply(args) => ExitCode::from(host::apply::run(&args)),
        Command::Confirm { host } => ExitCode::from(host::rollback::confirm(&host)),
        Command::Diff(args) => ExitCode::from(host::diff::run(&args)),
        Command::RollbackDaemon { id, host } => ExitCode::from(host::rollback::daemon(&host, &id)),
        Command::Check { policy } => match run_compile(&policy) {
            None => ExitCode::from(2),
            Some(compilation) if compilation.has_errors() => ExitCode::from(1),
            Some(_) => ExitCode::SUCCESS,
        },
        Command::Fmt { files, check } => fmt::run(&files, check),
        Command::Generate { what } => generate::run(what, Cli::command()),
    }
}

/// Compiles and prints the diagnostics; `None` if the policy is unreadable.
fn run_compile(args: &PolicyArgs) -> Option<Compilation> {
    let compilation = compile(args)?;
    print_diagnostics(args, &compilation, &compilation.diagnostics);
    Some(compilation)
}

/// Compiles (`fwc::compile_with`, in its two halves); `None`, having said
/// why, if the policy is unreadable.
fn compile(args: &PolicyArgs) -> Option<Compilation> {
    let mut compilation = lower(args)?;
    compilation.diagnostics = compilation.checked_diagnostics(&args.options());
    Some(compilation)
}

/// Lowers this thread's priority (and that of the threads it starts from
/// now on) a little below the process's other threads: a third of their
/// share of a busy core. Without the privilege to raise it again, this
/// thread keeps it.
fn yield_to_others() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on this thread's own id; a failure only
    // leaves the priority as it was.
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, thread);
        if *libc::__errno_location() == 0 {
            libc::setpriority(libc::PRIO_PROCESS, thread, (nice + 5).min(19));
        }
    }
}

/// Lowers, without the checks (see `fwc::lower_policy`); `None`, having
/// said why, if the policy is unreadable.
fn lower(args: &PolicyArgs) -> Option<Compilation> {
    fwc::lower_policy(&OsFileSystem, &args.policy, &args.params)
        .map_err(|error| eprintln!("error: cannot read {}: {error}", args.policy.display()))
        .ok()
}

/// What `fwc build` did after compiling, to be reported once the
/// diagnostics are printed.
enum Built {
    TestFailures(Vec<fwc::Diagnostic>),
    /// The one output asked for with --emit.
    Emitted(String),
    /// Every output in a temporary file, to be moved into place.
    Staged(Staged, fwc::consolidate::Stats),
    NotWritten(std::io::Error),
}

fn cannot_write(out: &Path, error: std::io::Error) -> ExitCode {
    eprintln!("error: cannot write to {}: {error}", out.display());
    ExitCode::from(2)
}

/// Runs the policy's tests (unless `no_test`), then renders the outputs:
/// the one named by `emit`, or all of them into temporary files in `out`.
fn build(compilation: &Compilation, policy: &PolicyArgs, no_test: bool, emit: Option<&str>, out: &Path, options: fwc::emit::Options) -> Built {
    if !no_test {
        let failures: Vec<_> = compilation.run_tests().into_iter().flat_map(|outcome| outcome.failures).collect();
        if !failures.is_empty() {
            return Built::TestFailures(failures);
        }
    }
    let name = policy.policy.display().to_string();
    let ruleset = &compilation.lowered.ruleset;
    match emit {
        Some(wanted) => {
            let outputs = fwc::emit::all_with(ruleset, &compilation.sources, &name, options);
            let (_, text) = outputs.into_iter().find(|(file, _)| *file == wanted).expect("clap checked the name");
            Built::Emitted(text)
        }
        None => match stage_outputs(out, ruleset, &compilation.sources, &name, options) {
            Ok((staged, counts)) => Built::Staged(staged, counts),
            Err(error) => Built::NotWritten(error),
        },
    }
}

/// Text on stderr for people; with --format json, one object per line on
/// stdout for tools; with --format sarif, one SARIF log on stdout.
fn print_diagnostics(args: &PolicyArgs, compilation: &Compilation, diagnostics: &[fwc::Diagnostic]) {
    format_diagnostics(args, compilation, diagnostics).print();
}

/// Diagnostics as they are printed: for stdout, or for stderr.
enum Formatted {
    Stdout(String),
    Stderr(String),
}

impl Formatted {
    fn print(&self) {
        match self {
            Formatted::Stdout(text) => print!("{text}"),
            Formatted::Stderr(text) => eprint!("{text}"),
        }
    }
}

fn format_diagnostics(args: &PolicyArgs, compilation: &Compilation, diagnostics: &[fwc::Diagnostic]) -> Formatted {
    if args.format == "json" {
        let lines: Vec<String> = diagnostics.iter().map(|diagnostic| fwc::diagnostics::to_json(&compilation.sources, diagnostic) + "\n").collect();
        Formatted::Stdout(lines.concat())
    } else if args.format == "sarif" {
        let base = std::env::current_dir().unwrap_or_default();
        let context = fwc::sarif::SarifContext { base: &base, policy: &args.policy };
        Formatted::Stdout(fwc::sarif::to_sarif(&compilation.sources, diagnostics, &context))
    } else {
        Formatted::Stderr(compilation.render(diagnostics))
    }
}

/// The outputs written into temporary files beside where they go, and
/// the directories made for them.
struct Staged {
    /// Each output's temporary file and its place.
    files: Vec<(PathBuf, PathBuf)>,
    /// The directories that did not exist, outermost first.
    made: Vec<PathBuf>,
}

impl Staged {
    /// Moves every output into place, each atomically.
    fn commit(self) -> std::io::Result<()> {
        for (temporary, place) in &self.files {
            if place.file_name().is_some_and(|name| name == "rules.sh") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(temporary, std::fs::Permissions::from_mode(0o755))?;
            }
            std::fs::rename(temporary, place)?;
        }
        Ok(())
    }

    /// Takes everything away again: nothing of the build is left.
    fn discard(self) {
        for (temporary, _) in &self.files {
            let _ = std::fs::remove_file(temporary);
        }
        for directory in self.made.iter().rev() {
            let _ = std::fs::remove_dir(directory);
        }
    }
}

/// Writes each output into a temporary file next to its place, as it is
/// rendered (see `Staged`).
fn stage_outputs(
    directory: &Path,
    ruleset: &fwc::ir::Ruleset,
    sources: &fwc::Sources,
    policy_name: &str,
    options: fwc::emit::Options,
) -> std::io::Result<(Staged, fwc::consolidate::Stats)> {
    let made: Vec<PathBuf> = directory.ancestors().take_while(|ancestor| !ancestor.as_os_str().is_empty() && !ancestor.exists()).map(Path::to_path_buf).collect();
    let mut staged = Staged { files: Vec::new(), made: made.into_iter().rev().collect() };
    let written = (|| {
        std::fs::create_dir_all(directory)?;
        let mut files = Vec::new();
        for name in fwc::emit::OUTPUT_NAMES {
            let temporary = directory.join(format!(".{name}.tmp"));
            files.push(std::fs::File::create(&temporary)?);
            staged.files.push((temporary, directory.join(name)));
        }
        let [v4, v6, sh, saved_v4, saved_v6, nft, sets] = files.as_mut_slice() else { unreachable!("one file per output") };
        let writers: &mut [&mut (dyn std::io::Write + Send); 7] = &mut [v4, v6, sh, saved_v4, saved_v6, nft, sets];
        fwc::emit::write(ruleset, sources, policy_name, options, writers)
    })();
    match written {
        Ok(stats) => Ok((staged, stats)),
        Err(error) => {
            staged.discard();
            Err(error)
        }
    }
}
