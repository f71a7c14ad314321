//! `fwc diff`: the live rules against a policy or the last applied build.

use super::apply::read_build;
use super::exit;
use super::plan::{ignored, plan, set_diffs};
use super::state::State;
use super::HostArgs;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DiffArgs {
    /// A policy (.fw) or a build directory; without one, the last applied build
    pub target: Option<PathBuf>,
    /// Set a `param`: --set NAME=VALUE (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = crate::parse_param)]
    pub params: Vec<(String, String)>,
    #[command(flatten)]
    pub host: HostArgs,
}

/// Exit 0 in sync, 1 drift, 2 cannot tell.
pub fn run(args: &DiffArgs) -> u8 {
    let state = State { dir: args.host.state_dir.clone() };
    let backend = args.host.backend_for(&state, "applied");
    let (name, files) = match &args.target {
        Some(target) => match read_build(backend, target, &args.params) {
            Ok(build) => (build.name, build.files),
            Err(_) => return 2,
        },
        None => {
            match state.build("applied") {
                Some(files) => ("applied".to_string(), files),
                None => {
                    eprintln!("error: no applied build in {}: name a policy", state.dir.display());
                    return 2;
                }
            }
        }
    };
    let planned = plan(backend, &files, &name).map_err(|error| error.to_string());
    let (plans, set_diffs) = match planned.and_then(|plans| Ok((plans, set_diffs(backend, &files.ipsets)?))) {
        Ok(both) => both,
        Err(error) => {
            eprintln!("error: {error}");
            return 2;
        }
    };
    if let Some(note) = ignored(backend, &files) {
        eprintln!("note: {note}");
    }
    let mut drift = !set_diffs.is_empty();
    print!("{}", set_diffs.concat());
    for plan in &plans {
        for chain in &plan.diffs {
            drift = true;
            print!("{}", chain.text);
        }
        let family = plan.part.name();
        for chain in &plan.unmanaged.chains {
            eprintln!("note: {family} {chain}: unmanaged (another program's chain)");
        }
        for jump in &plan.unmanaged.jumps {
            eprintln!("note: {family} {jump}: unmanaged (a jump into another program's chain)");
        }
        for table in &plan.unmanaged.tables {
            eprintln!("note: {family} table {table}: unmanaged (the policy does not use it)");
        }
    }
    if drift {
        1
    } else {
        eprintln!("in sync: the live rules are {name}'s");
        exit::APPLIED
    }
}
