//! What an apply would load, part by part (each iptables family, or
//! nftables' table), and the all-or-nothing load.

use super::backend::{Backend, Backup, Part};
use super::state::{Files, State};
use fwc::host::diff::{diff, ChainDiff};
use fwc::host::ruleset::{managed, splice, Keep, Kept, Rules, Unmanaged};

/// One part: the live rules, the build, and what to load.
pub struct Plan {
    pub part: Part,
    pub live: Rules,
    /// The build with the live contents of what fwc keeps spliced in.
    pub target: Rules,
    /// The input that loads `target`.
    pub load_text: String,
    /// Whether reading the build loaded it into a scratch namespace
    /// already (nft), so that the pre-flight has been done.
    pub checked: bool,
    pub kept: Kept,
    pub unmanaged: Unmanaged,
    /// Live → target, chain by chain, over what fwc manages.
    pub diffs: Vec<ChainDiff>,
}

/// Why there is no plan.
#[derive(Debug)]
pub enum PlanError {
    /// The live rules or the build cannot be read.
    Unreadable(String),
    /// The kernel refuses the build: reading an nft build loads it into a
    /// scratch namespace, which is its pre-flight.
    Refused(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Unreadable(error) | PlanError::Refused(error) => f.write_str(error),
        }
    }
}

/// Plans every part of the backend from the build's files.
pub fn plan(backend: Backend, files: &Files, wanted_name: &str) -> Result<Vec<Plan>, PlanError> {
    let mut plans = Vec::new();
    for &part in backend.parts() {
        let text = files.text(part);
        if text.is_empty() && part == Part::Nft {
            return Err(PlanError::Unreadable(format!("{wanted_name} has no rules.nft (built by an older fwc?): run `fwc build` again")));
        }
        let checked = backend.normalise_loads(part);
        // Reading an nft build takes as long as reading the live table:
        // the two run at once.
        let (live, built) = std::thread::scope(|scope| {
            let built = scope.spawn(|| backend.normalise(part, text));
            (backend.live(part), built.join().expect("normalising does not panic"))
        });
        let live = live.map_err(PlanError::Unreadable)?;
        let built = built.map_err(|error| {
            let error = format!("the {} build does not read: {error}", part.name());
            if checked {
                PlanError::Refused(error)
            } else {
                PlanError::Unreadable(error)
            }
        })?;
        let keep = Keep::from_restore(text);
        let (target, kept) = splice(&built, &live, &keep);
        let owned: Vec<String> = built.tables.keys().cloned().collect();
        // A build that declares filter owns it even when it normalises away.
        let owned = if owned.is_empty() { vec!["filter".to_string()] } else { owned };
        let (live_view, unmanaged) = managed(&live, &owned, &keep, &built);
        let (target_view, _) = managed(&target, &owned, &keep, &built);
        let diffs = diff(&live_view, &target_view, &format!("live {}", part.name()), &format!("{wanted_name} {}", part.name()));
        let load_text = backend.load_text(part, &target, text);
        plans.push(Plan { part, live, target, load_text, checked, kept, unmanaged, diffs });
    }
    Ok(plans)
}

/// What the backend leaves out of a build, for notes: `keep` means
/// nothing to nft, whose table is replaced whole.
pub fn ignored(backend: Backend, files: &Files) -> Option<&'static str> {
    let keeps = Keep::from_restore(&files.v4) != Keep::default();
    (backend == Backend::Nft && keeps).then_some(
        "`keep` has no effect with --backend nft: table inet fwc is replaced whole; other programs' rules belong in tables of their own",
    )
}

/// Every part's backup and rollback file, just before a load.
pub fn back_up(backend: Backend, plans: &[Plan]) -> Result<Vec<Backup>, String> {
    plans.iter().map(|plan| backend.back_up(plan.part, &plan.live, &plan.target)).collect()
}

/// How an all-or-nothing load ended.
pub enum Loaded {
    Done,
    /// The load failed (the message) and the previous rules are back.
    RolledBack(String),
    /// The load failed and so did the rollback (both messages).
    RollbackFailed(String),
}

/// The build's address sets against the live ones, as diff lines (empty:
/// every set the build fills is live with exactly its members; always
/// empty for a backend without ipsets).
pub fn set_diffs(backend: Backend, ipsets: &str) -> Result<Vec<String>, String> {
    if !backend.uses_ipsets() {
        return Ok(Vec::new());
    }
    let built = fwc::host::ipsets::from_restore(ipsets);
    let live = fwc::host::ipsets::from_save(&super::backend::live_sets(!built.is_empty())?);
    Ok(fwc::host::ipsets::diff(&live, &built))
}

/// Loads the address sets (`ipsets`, when the backend uses them), then
/// every part's target; if any load fails, loads every part's rollback
/// file (of `backups`, one per plan) and re-reads the live rules to prove
/// they are back. Sets stay: the previous rules may use them.
pub fn load(backend: Backend, plans: &[Plan], backups: &[Backup], ipsets: &str, wait: u32, state: &State) -> Loaded {
    let ipsets = if backend.uses_ipsets() { ipsets } else { "" };
    let sets = super::backend::load_sets(ipsets).map_err(|error| format!("loading the address sets failed: {error}"));
    let loads = std::iter::once(sets).chain(plans.iter().map(|plan| {
        backend.restore(plan.part, &plan.load_text, wait).map_err(|error| format!("loading the {} rules failed: {error}", plan.part.name()))
    }));
    for result in loads {
        if let Err(error) = result {
            let rollbacks: Vec<(Part, String)> =
                plans.iter().zip(backups).map(|(plan, backup)| (plan.part, backup.rollback.clone())).collect();
            return match roll_back(backend, &rollbacks, wait) {
                Ok(()) => {
                    state.log(&format!("{error}; the previous rules are back"));
                    Loaded::RolledBack(error)
                }
                Err(failure) => {
                    state.log(&format!("{error}; ROLLBACK FAILED: {failure}"));
                    Loaded::RollbackFailed(format!("{error}\nand the rollback failed too: {failure}"))
                }
            };
        }
    }
    Loaded::Done
}

/// How long a rollback waits for the xtables lock at least: giving up
/// early would leave the new rules half loaded.
const ROLLBACK_WAIT: u32 = 60;

/// Loads each part's rollback file, then checks that the live rules are
/// exactly those of the file. The check decides: a restore that failed
/// because nothing needed undoing (the load it follows never got the
/// xtables lock) is no failure.
pub fn roll_back(backend: Backend, rollbacks: &[(Part, String)], wait: u32) -> Result<(), String> {
    let mut failures = Vec::new();
    let mut restore_errors = Vec::new();
    for (part, text) in rollbacks {
        if let Err(error) = backend.restore(*part, text, wait.max(ROLLBACK_WAIT)) {
            restore_errors.push(error);
        }
    }
    for (part, text) in rollbacks {
        let wanted = backend.normalise(*part, text).map_err(|error| format!("the {} rollback file is damaged: {error}", part.name()))?;
        match backend.live(*part) {
            Ok(live) if live == wanted => {}
            Ok(live) => {
                let diffs = diff(&live, &wanted, "live", "before");
                let text: String = diffs.iter().map(|chain| chain.text.as_str()).collect();
                failures.push(format!("the live {} rules are not the previous ones:\n{text}", part.name()));
            }
            Err(error) => failures.push(error),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        failures.extend(restore_errors);
        Err(failures.join("\n"))
    }
}
