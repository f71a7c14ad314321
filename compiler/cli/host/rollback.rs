//! The rollback that waits for `fwc confirm`, and `fwc apply --boot`.
//!
//! `fwc apply --confirm N` starts `fwc rollback-daemon` in a session of its
//! own (setsid), with SIGHUP ignored and no terminal, before it loads
//! anything: the SSH connection dropping, the shell hanging up, even
//! `fwc apply` being killed mid-load cannot stop it. It polls the `pending`
//! record in the state directory; when the deadline passes with its record
//! still there, it takes the lock, loads the rollback files of both
//! families and checks them. `fwc confirm` removes the record (under the
//! lock), which stops it, and makes the applied build the confirmed one.

use super::backend::Backend;
use super::exit;
use super::plan::{back_up, load, plan, roll_back, Loaded};
use super::state::{now, Files, Pending, State};
use super::HostArgs;
use fwc::ir::Family;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Writes the pending record and starts the rollback process.
pub fn arm(state: &State, host: &HostArgs, backend: Backend, seconds: u64) -> Result<Pending, String> {
    let pending = Pending {
        id: format!("{}-{}", std::process::id(), now()),
        deadline: now() + seconds * 1000,
        session: std::env::var("SSH_CONNECTION").unwrap_or_default(),
    };
    state.set_pending(&pending)?;
    let program = std::env::current_exe().map_err(|error| format!("cannot find the fwc binary: {error}"))?;
    let mut command = Command::new(program);
    command
        .arg("rollback-daemon")
        .arg("--id")
        .arg(&pending.id)
        .arg("--state-dir")
        .arg(&state.dir)
        .arg("--backend")
        .arg(backend.name())
        .arg("--wait")
        .arg(host.wait.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid and signal are async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let child = command.spawn().map_err(|error| {
        state.remove("pending");
        format!("cannot start the rollback process: {error}")
    })?;
    state.log(&format!("armed: rollback process {} restores the previous rules at {} unless confirmed", child.id(), pending.deadline));
    Ok(pending)
}

/// The rollback process: waits for the deadline, then rolls back unless
/// its record is gone (confirmed, or replaced by a later apply).
pub fn daemon(host: &HostArgs, id: &str) -> u8 {
    let Ok(state) = State::open(&host.state_dir) else { return exit::USAGE };
    let mine = |state: &State| state.pending().filter(|pending| pending.id == id);
    loop {
        match mine(&state) {
            None => return exit::APPLIED,
            Some(pending) if now() >= pending.deadline => break,
            Some(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    // An apply in progress finishes first; its process dying frees the lock.
    let _lock = match state.lock(Duration::from_secs(600)) {
        Ok(lock) => lock,
        Err(error) => {
            state.log(&format!("ROLLBACK FAILED: {error}"));
            return exit::ROLLBACK_FAILED;
        }
    };
    if mine(&state).is_none() {
        return exit::APPLIED;
    }
    let backend = host.backend_for(&state, "applied");
    let mut rollbacks = Vec::new();
    for &part in backend.parts() {
        let name = format!("rollback.{}", part.suffix());
        match state.read(&name) {
            Some(text) => rollbacks.push((part, text)),
            None => {
                state.log(&format!("ROLLBACK FAILED: {} is missing", state.path(&name).display()));
                return exit::ROLLBACK_FAILED;
            }
        }
    }
    match roll_back(backend, &rollbacks, host.wait) {
        Ok(()) => {
            state.remove("pending");
            state.log(&format!("not confirmed in time: the previous rules are back, {} (checked)", parts_named(backend)));
            exit::ROLLED_BACK
        }
        Err(error) => {
            state.log(&format!("ROLLBACK FAILED: {error}"));
            exit::ROLLBACK_FAILED
        }
    }
}

/// `fwc confirm`: keeps the applied rules and makes them the boot rules.
pub fn confirm(host: &HostArgs) -> u8 {
    let state = match State::open(&host.state_dir) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::USAGE;
        }
    };
    let _lock = match state.lock(Duration::from_secs(host.wait.into())) {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::REFUSED;
        }
    };
    let Some(pending) = state.pending() else {
        let last = state.read("rollback.log").and_then(|log| log.lines().last().map(str::to_string)).unwrap_or_default();
        eprintln!("error: no apply is waiting for confirmation (last rollback log line: {last})");
        return exit::REFUSED;
    };
    let session = std::env::var("SSH_CONNECTION").unwrap_or_default();
    if !session.is_empty() && session == pending.session {
        eprintln!(
            "warning: confirming from the SSH connection that applied the rules shows only that it still works; \
             a new connection would show that new ones get in"
        );
    }
    state.remove("pending");
    if let Err(error) = state.confirm_applied() {
        eprintln!("error: the rules stay, but {error}");
        return exit::USAGE;
    }
    state.log("confirmed");
    println!("confirmed: the rules stay, and boot loads them");
    exit::APPLIED
}

/// `fwc apply --boot`: the confirmed build, else the previous one, else the
/// emergency ruleset. Exit 0 only when the confirmed build is loaded.
pub fn boot(state: &State, host: &HostArgs) -> u8 {
    let _lock = match state.lock(Duration::from_secs(host.wait.into())) {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::ROLLBACK_FAILED;
        }
    };
    let emergency = Files {
        v4: fwc::host::emergency::restore_text(Family::V4).to_string(),
        v6: fwc::host::emergency::restore_text(Family::V6).to_string(),
        ipsets: String::new(),
        nft: fwc::host::emergency::nft_text(),
    };
    // The emergency ruleset goes in with the confirmed build's backend.
    let candidates = [
        ("the confirmed build", state.build("confirmed"), "confirmed"),
        ("the previous build", state.build("previous"), "previous"),
        ("the emergency ruleset", Some(emergency), "confirmed"),
    ];
    for (index, (name, build, recorded)) in candidates.into_iter().enumerate() {
        let Some(files) = build else {
            eprintln!("error: {name} is missing from {}", state.dir.display());
            continue;
        };
        match load_build(host.backend_for(state, recorded), host.wait, state, &files) {
            Ok(()) if index == 0 => {
                println!("loaded {name}");
                return exit::APPLIED;
            }
            Ok(()) => {
                eprintln!("error: loaded {name} instead of the confirmed build");
                return exit::ROLLED_BACK;
            }
            Err(error) => eprintln!("error: {name} does not load: {error}"),
        }
    }
    eprintln!("error: nothing could be loaded: the rules are as they were before boot");
    exit::ROLLBACK_FAILED
}

/// What a rollback brings back, for messages.
pub fn parts_named(backend: Backend) -> &'static str {
    match backend {
        Backend::Nft => "table inet fwc",
        _ => "both families",
    }
}

/// Plans, checks in a scratch namespace, and loads every part or none.
fn load_build(backend: Backend, wait: u32, state: &State, files: &Files) -> Result<(), String> {
    let plans = plan(backend, files, "boot").map_err(|error| error.to_string())?;
    for plan in plans.iter().filter(|plan| !plan.checked) {
        backend.preflight(plan.part, &files.ipsets, &plan.load_text, wait)?;
    }
    let backups = back_up(backend, &plans)?;
    match load(backend, &plans, &backups, &files.ipsets, wait, state) {
        Loaded::Done => Ok(()),
        Loaded::RolledBack(error) | Loaded::RollbackFailed(error) => Err(error),
    }
}
