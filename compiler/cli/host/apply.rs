//! `fwc apply`: compile (or take a build), check, back up, load both
//! families as one change, and arm the rollback until `fwc confirm`.

use super::backend::Backend;
use super::exit;
use super::plan::{back_up, ignored, load, plan, set_diffs, Loaded, Plan, PlanError};
use super::rollback;
use super::state::{Files, State};
use super::HostArgs;
use fwc::host::lockout::{self, Session};
use fwc::{Compilation, OsFileSystem};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// A policy (.fw), or a directory `fwc build` wrote (rules.v4, rules.v6,
    /// ipsets.restore; rules.nft for --backend nft)
    #[arg(required_unless_present = "boot")]
    pub target: Option<PathBuf>,
    /// Set a `param`: --set NAME=VALUE (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = crate::parse_param)]
    pub params: Vec<(String, String)>,
    /// Print what would change, as a diff per chain, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Apply even when the policy would cut an SSH session in progress
    #[arg(long)]
    pub force: bool,
    /// Seconds until the previous rules come back unless `fwc confirm`
    /// runs; 0 makes the new rules permanent at once
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub confirm: u64,
    /// Load the last confirmed build (at boot); fall back to the previous
    /// one, then to an emergency ruleset that keeps SSH reachable
    #[arg(long, conflicts_with_all = ["target", "dry_run", "force"])]
    pub boot: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

/// What apply loads: the build's files, and the compiled policy when there
/// is one (for the lockout check and its diagnostics).
pub struct Build {
    pub name: String,
    pub files: Files,
    pub compilation: Option<Compilation>,
}

pub fn run(args: &ApplyArgs) -> u8 {
    let state = match State::open(&args.host.state_dir) {
        Ok(state) => state,
        Err(error) => return fail(exit::USAGE, &error),
    };
    if args.boot {
        return super::rollback::boot(&state, &args.host);
    }
    let target = args.target.as_ref().expect("clap requires a target without --boot");
    let backend = args.host.backend_for(&state, "applied");
    let build = match read_build(backend, target, &args.params) {
        Ok(build) => build,
        Err(code) => return code,
    };
    let _lock = match state.lock(Duration::from_secs(args.host.wait.into())) {
        Ok(lock) => lock,
        Err(error) => return fail(exit::REFUSED, &error),
    };
    let plans = match plan(backend, &build.files, "policy") {
        Ok(plans) => plans,
        Err(PlanError::Unreadable(error)) => return fail(exit::USAGE, &error),
        Err(PlanError::Refused(error)) => return fail(exit::REFUSED, &format!("refused: {error}")),
    };
    let set_diffs = match set_diffs(backend, &build.files.ipsets) {
        Ok(diffs) => diffs,
        Err(error) => return fail(exit::USAGE, &error),
    };
    report_kept(&plans);
    if let Some(note) = ignored(backend, &build.files) {
        eprintln!("note: {note}");
    }
    if plans.iter().all(|plan| plan.diffs.is_empty()) && set_diffs.is_empty() {
        println!("no change: the live rules already are {}'s", build.name);
        return exit::NO_CHANGE;
    }
    if args.dry_run {
        for plan in &plans {
            for chain in &plan.diffs {
                print!("{}", chain.text);
            }
        }
        print!("{}", set_diffs.concat());
        if let Some(message) = lockout_check(&build) {
            eprint!("{message}");
            eprintln!("warning: `fwc apply` would refuse these rules without --force");
        }
        return exit::APPLIED;
    }
    if !args.force {
        if let Some(message) = lockout_check(&build) {
            eprint!("{message}");
            eprintln!("error: refused: the policy would cut an SSH session (--force applies it anyway; with --confirm the rules come back unless confirmed)");
            return exit::REFUSED;
        }
    }
    for plan in plans.iter().filter(|plan| !plan.checked) {
        if let Err(error) = backend.preflight(plan.part, &build.files.ipsets, &plan.load_text, args.host.wait) {
            return fail(exit::REFUSED, &format!("refused: the {} rules do not load: {error}", plan.part.name()));
        }
    }
    // Back up the rules as they are. While an earlier apply waits for
    // confirmation, its backup (the confirmed state) stays the one to go
    // back to.
    let backups = match back_up(backend, &plans) {
        Ok(backups) => backups,
        Err(error) => return fail(exit::USAGE, &error),
    };
    let waiting = state.pending().is_some();
    if !waiting {
        for (plan, backup) in plans.iter().zip(&backups) {
            let suffix = plan.part.suffix();
            if let Err(error) = state
                .write(&format!("backup.{suffix}"), &backup.text)
                .and_then(|()| state.write(&format!("rollback.{suffix}"), &backup.rollback))
            {
                return fail(exit::USAGE, &error);
            }
        }
    } else {
        // The tables this apply creates must be reset by the rollback too.
        for plan in &plans {
            let name = format!("rollback.{}", plan.part.suffix());
            let Some(text) = state.read(&name) else { continue };
            let Some(widened) = backend.widen_rollback(plan.part, &text, &plan.target) else { continue };
            if let Err(error) = state.write(&name, &widened) {
                return fail(exit::USAGE, &error);
            }
        }
    }
    let pending = if args.confirm > 0 {
        match rollback::arm(&state, &args.host, backend, args.confirm) {
            Ok(pending) => Some(pending),
            Err(error) => return fail(exit::REFUSED, &format!("refused: cannot arm the rollback: {error}")),
        }
    } else {
        None
    };
    match load(backend, &plans, &backups, &build.files.ipsets, args.host.wait, &state) {
        Loaded::Done => {}
        Loaded::RolledBack(error) => {
            if !waiting {
                state.remove("pending");
            }
            eprintln!("error: {error}");
            eprintln!("the previous rules are back, {} (checked)", rollback::parts_named(backend));
            return exit::ROLLED_BACK;
        }
        Loaded::RollbackFailed(error) => {
            eprintln!("error: {error}");
            let backups: Vec<String> = plans.iter().map(|plan| format!("backup.{}", plan.part.suffix())).collect();
            eprintln!("error: THE RULES ARE IN AN UNKNOWN STATE; the backups are in {}: {}", state.dir.display(), backups.join(", "));
            return exit::ROLLBACK_FAILED;
        }
    }
    verify(backend, &plans);
    if let Err(error) = state.write_build("applied", &build.files, backend) {
        eprintln!("warning: {error}");
    }
    let changed: usize = plans.iter().map(|plan| plan.diffs.len()).sum();
    if set_diffs.is_empty() {
        println!("applied {}: {changed} chain(s) changed", build.name);
    } else {
        println!("applied {}: {changed} chain(s) changed, address sets updated", build.name);
    }
    match pending {
        Some(pending) => {
            println!(
                "run `fwc confirm` within {} s (from a new SSH connection, to prove it works), or the previous rules come back",
                pending.deadline.saturating_sub(super::state::now()).div_ceil(1000)
            );
        }
        None => {
            state.remove("pending");
            if let Err(error) = state.confirm_applied() {
                eprintln!("warning: {error}");
            }
            println!("confirmed: boot loads these rules");
        }
    }
    exit::APPLIED
}

fn fail(code: u8, message: &str) -> u8 {
    eprintln!("error: {message}");
    code
}

/// Says what of the live rules stays as it is.
pub fn report_kept(plans: &[Plan]) {
    for plan in plans {
        let family = plan.part.name();
        for (table, chain) in &plan.kept.contents {
            eprintln!("note: {family} {table}/{chain}: live contents kept (`keep`)");
        }
        for (table, chain) in &plan.kept.foreign {
            eprintln!("note: {family} {table}/{chain}: another program's chain, kept (`keep chain`)");
        }
        for (table, chain) in &plan.kept.jumps {
            eprintln!("note: {family} {table}/{chain}: a jump into another program's chain, kept first in the chain");
        }
    }
}

/// The live rules after a load should be the target exactly.
fn verify(backend: Backend, plans: &[Plan]) {
    for plan in plans {
        let owned: Vec<String> = plan.target.tables.keys().cloned().collect();
        match backend.live(plan.part) {
            Ok(live) if live.only_tables(&owned) == plan.target => {}
            Ok(live) => {
                let diffs = fwc::host::diff::diff(&live.only_tables(&owned), &plan.target, "live", "loaded");
                eprintln!("warning: the live {} rules print differently from what was loaded:", plan.part.name());
                for chain in diffs {
                    eprint!("{}", chain.text);
                }
            }
            Err(error) => eprintln!("warning: {error}"),
        }
    }
}

/// Reads a build directory (the files `backend` loads must be there), or
/// compiles a policy (diagnostics on stderr, test blocks run). `Err` is the
/// exit code.
pub fn read_build(backend: Backend, target: &Path, params: &[(String, String)]) -> Result<Build, u8> {
    let name = target.display().to_string();
    if target.is_dir() {
        let nft = backend == Backend::Nft;
        let read = |file: &str, needed: bool| {
            let path = target.join(file);
            if !needed && !path.exists() {
                return Ok(String::new());
            }
            std::fs::read_to_string(&path).map_err(|error| {
                eprintln!("error: cannot read {}: {error}", path.display());
                exit::USAGE
            })
        };
        // A build written before fwc wrote address sets has no ipsets.restore.
        let files = Files {
            v4: read("rules.v4", !nft)?,
            v6: read("rules.v6", !nft)?,
            ipsets: read("ipsets.restore", false)?,
            nft: read("rules.nft", nft)?,
        };
        return Ok(Build { name, files, compilation: None });
    }
    let compilation = match fwc::compile(&OsFileSystem, target, params) {
        Ok(compilation) => compilation,
        Err(error) => {
            eprintln!("error: cannot read {name}: {error}");
            return Err(exit::USAGE);
        }
    };
    eprint!("{}", compilation.render_diagnostics());
    if compilation.has_errors() {
        return Err(exit::POLICY_ERRORS);
    }
    let failures: Vec<_> = compilation.run_tests().into_iter().flat_map(|outcome| outcome.failures).collect();
    if !failures.is_empty() {
        eprint!("{}", compilation.render(&failures));
        eprintln!("error: {} expectation(s) failed; nothing was applied", failures.len());
        return Err(exit::POLICY_ERRORS);
    }
    let outputs = fwc::emit::all(&compilation.lowered.ruleset, &compilation.sources, &name);
    let text = |wanted: &str| outputs.iter().find(|(file, _)| *file == wanted).map(|(_, text)| text.clone()).expect("an output");
    let files = Files { v4: text("rules.v4"), v6: text("rules.v6"), ipsets: text("ipsets.restore"), nft: text("rules.nft") };
    Ok(Build { name, files, compilation: Some(compilation) })
}

/// The SSH sessions in progress, and the report if the build would cut one.
fn lockout_check(build: &Build) -> Option<String> {
    let sessions = ssh_sessions();
    if sessions.is_empty() {
        return None;
    }
    let imported;
    let compilation = match &build.compilation {
        Some(compilation) => compilation,
        None => match compile_build(build) {
            Ok(compilation) => {
                imported = compilation;
                &imported
            }
            Err(error) => {
                return Some(format!("error: cannot check the build for lockout: {error}\n"));
            }
        },
    };
    let ruleset = &compilation.lowered.ruleset;
    let cuts = lockout::check(ruleset, &sessions);
    if cuts.is_empty() {
        return None;
    }
    let mut message = String::new();
    for cut in &cuts {
        message.push_str(&format!(
            "error: the new rules would cut the SSH session from {}: {} would be {}\n",
            lockout::describe(&cut.session),
            cut.what,
            match cut.evaluation.decision {
                fwc::eval::Decision::Reject => "rejected",
                _ => "dropped",
            }
        ));
        let note = fwc::eval::query::explain(ruleset, &cut.packet, &cut.evaluation);
        message.push_str(&compilation.render(&[note]));
    }
    Some(message)
}

/// A build directory has no policy: its rules, imported back into one
/// (fwc's own output imports exactly), give the evaluator its IR.
fn compile_build(build: &Build) -> Result<Compilation, String> {
    let options = fwc::import::Options { fold_ports: false };
    let imported = fwc::import::import_with(Some(&build.files.v4), Some(&build.files.v6), options).map_err(|error| error.to_string())?;
    let path = PathBuf::from(format!("{}/rules (imported)", build.name));
    let compilation = fwc::compile(&fwc::source::OneFile { path: path.clone(), text: imported.policy }, &path, &[])
        .map_err(|error| error.to_string())?;
    if compilation.has_errors() {
        return Err(format!("its rules do not import cleanly:\n{}", compilation.render_diagnostics()));
    }
    Ok(compilation)
}

/// Established connections to sshd's ports (22, the ports sshd listens on,
/// the server port of `SSH_CONNECTION`), each with the interface its peer
/// is reached by.
fn ssh_sessions() -> Vec<Session> {
    let output = |program: &str, args: &[&str]| -> Option<String> {
        let output = Command::new(program).args(args).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let from_env = std::env::var("SSH_CONNECTION").ok().and_then(|value| lockout::session_from_env(&value));
    let mut ports = vec![22];
    ports.extend(output("ss", &["-Htlnp"]).map(|text| lockout::sshd_ports(&text)).unwrap_or_default());
    ports.extend(from_env.iter().map(|session| session.local.port()));
    let mut sessions = match output("ss", &["-Htn", "state", "established"]) {
        Some(text) => lockout::sessions_from_ss(&text, &ports),
        None => {
            eprintln!("warning: cannot run `ss` (Debian package iproute2): only SSH_CONNECTION is checked for lockout");
            Vec::new()
        }
    };
    if let Some(session) = from_env {
        if !sessions.iter().any(|known| known.local == session.local && known.peer == session.peer) {
            sessions.push(session);
        }
    }
    for session in &mut sessions {
        let peer = session.peer.ip().to_string();
        session.interface = output("ip", &["-o", "route", "get", &peer]).and_then(|text| lockout::route_device(&text));
    }
    sessions
}
