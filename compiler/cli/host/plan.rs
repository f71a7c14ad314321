//! What an apply would load, family by family, and the all-or-nothing load.

use super::backend::Backend;
use super::state::State;
use fwc::host::diff::{diff, ChainDiff};
use fwc::host::ruleset::{managed, splice, Keep, Kept, Rules, Unmanaged};
use fwc::ir::Family;

/// One family: the live rules, the build, and what to load.
pub struct FamilyPlan {
    pub family: Family,
    pub live: Rules,
    /// The build with the live contents of what fwc keeps spliced in.
    pub target: Rules,
    pub kept: Kept,
    pub unmanaged: Unmanaged,
    /// Live → target, chain by chain, over what fwc manages.
    pub diffs: Vec<ChainDiff>,
}

impl FamilyPlan {
    /// The restore file that brings back the live rules, resetting the
    /// tables the target loads and the live rules lack.
    pub fn rollback_text(&self, backend: Backend) -> String {
        backend.render(&self.live, &self.target.tables_missing_from(&self.live))
    }
}

/// Plans both families from the build's restore texts (v4, v6).
pub fn plan(backend: Backend, build: [&str; 2], wanted_name: &str) -> Result<Vec<FamilyPlan>, String> {
    let mut plans = Vec::new();
    for (family, text) in Family::BOTH.into_iter().zip(build) {
        let live = backend.live(family)?;
        let built = backend.normalise(text).map_err(|error| format!("the {} build is not a restore file: {error}", family.name()))?;
        let keep = Keep::from_restore(text);
        let (target, kept) = splice(&built, &live, &keep);
        let owned: Vec<String> = built.tables.keys().cloned().collect();
        // A build that declares filter owns it even when it normalises away.
        let owned = if owned.is_empty() { vec!["filter".to_string()] } else { owned };
        let (live_view, unmanaged) = managed(&live, &owned, &keep, &built);
        let (target_view, _) = managed(&target, &owned, &keep, &built);
        let diffs = diff(&live_view, &target_view, &format!("live {}", family.name()), &format!("{wanted_name} {}", family.name()));
        plans.push(FamilyPlan { family, live, target, kept, unmanaged, diffs });
    }
    Ok(plans)
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
/// every set the build fills is live with exactly its members).
pub fn set_diffs(ipsets: &str) -> Result<Vec<String>, String> {
    let built = fwc::host::ipsets::from_restore(ipsets);
    let live = fwc::host::ipsets::from_save(&super::backend::live_sets(!built.is_empty())?);
    Ok(fwc::host::ipsets::diff(&live, &built))
}

/// Loads the address sets (`ipsets`), then every family's target; if any
/// load fails, loads every family's rollback file and re-reads the live
/// rules to prove they are back. Sets stay: the previous rules may use them.
pub fn load(backend: Backend, plans: &[FamilyPlan], ipsets: &str, wait: u32, state: &State) -> Loaded {
    let sets = super::backend::load_sets(ipsets).map_err(|error| format!("loading the address sets failed: {error}"));
    let loads = std::iter::once(sets).chain(plans.iter().map(|plan| {
        backend
            .restore(plan.family, &backend.render(&plan.target, &[]), wait)
            .map_err(|error| format!("loading the {} rules failed: {error}", plan.family.name()))
    }));
    for result in loads {
        if let Err(error) = result {
            let rollbacks: Vec<(Family, String)> = plans.iter().map(|plan| (plan.family, plan.rollback_text(backend))).collect();
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

/// Loads each family's rollback file, then checks that the live rules are
/// exactly those of the file. The check decides: a restore that failed
/// because nothing needed undoing (the load it follows never got the
/// xtables lock) is no failure.
pub fn roll_back(backend: Backend, rollbacks: &[(Family, String)], wait: u32) -> Result<(), String> {
    let mut failures = Vec::new();
    let mut restore_errors = Vec::new();
    for (family, text) in rollbacks {
        if let Err(error) = backend.restore(*family, text, wait.max(ROLLBACK_WAIT)) {
            restore_errors.push(error);
        }
    }
    for (family, text) in rollbacks {
        let wanted = backend.normalise(text).map_err(|error| format!("the {} rollback file is damaged: {error}", family.name()))?;
        match backend.live(*family) {
            Ok(live) if live == wanted => {}
            Ok(live) => {
                let diffs = diff(&live, &wanted, "live", "before");
                let text: String = diffs.iter().map(|chain| chain.text.as_str()).collect();
                failures.push(format!("the live {} rules are not the previous ones:\n{text}", family.name()));
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
