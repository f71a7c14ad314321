//! The `fwc` command: reads files, calls the library, prints, exits.
//!
//! Exit codes: 0 success (warnings allowed), 1 the policy has errors,
//! 2 usage or I/O errors.

use clap::{Args, Parser, Subcommand};
use fwc::{compile, Compilation, OsFileSystem};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fwc",
    version,
    about = "fwc compiles .fw firewall policies to iptables rules for IPv4 and IPv6",
    after_help = "Examples:\n  fwc check policies/web.fw\n  fwc build policies/web.fw -o build/\n  fwc build policies/web.fw --set public=ens3 --emit rules.v4"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a policy and write rules.v4, rules.v6, rules.sh, saved.v4, saved.v6
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
    },
    /// Report the policy's diagnostics without writing anything
    #[command(after_help = "Example:\n  fwc check policies/web.fw && echo ok")]
    Check {
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

#[derive(Args)]
struct PolicyArgs {
    /// The policy file (.fw)
    policy: PathBuf,
    /// Set a `param`: --set NAME=VALUE (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Build { policy, out, emit } => {
            let Some(compilation) = run_compile(&policy) else { return ExitCode::from(2) };
            let name = policy.policy.display().to_string();
            let Some(outputs) = compilation.outputs(&name) else { return ExitCode::from(1) };
            match emit {
                Some(wanted) => {
                    let (_, text) = outputs.iter().find(|(file, _)| *file == wanted).expect("clap checked the name");
                    print!("{text}");
                }
                None => {
                    if let Err(error) = write_outputs(&out, &outputs) {
                        eprintln!("error: cannot write to {}: {error}", out.display());
                        return ExitCode::from(2);
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Check { policy } => match run_compile(&policy) {
            None => ExitCode::from(2),
            Some(compilation) if compilation.has_errors() => ExitCode::from(1),
            Some(_) => ExitCode::SUCCESS,
        },
    }
}

/// Compiles and prints the diagnostics; `None` if the policy is unreadable.
fn run_compile(args: &PolicyArgs) -> Option<Compilation> {
    match compile(&OsFileSystem, &args.policy, &args.params) {
        Ok(compilation) => {
            eprint!("{}", compilation.render_diagnostics());
            Some(compilation)
        }
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", args.policy.display());
            None
        }
    }
}

/// Writes each output next to the others, atomically per file.
fn write_outputs(directory: &Path, outputs: &[(&str, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(directory)?;
    for (name, text) in outputs {
        let path = directory.join(name);
        let temporary = directory.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, text)?;
        if *name == "rules.sh" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::rename(&temporary, &path)?;
    }
    Ok(())
}
