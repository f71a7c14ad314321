//! `fwc apply`, `fwc confirm`, `fwc diff`: the commands that read and
//! change the kernel's rules. The decisions (normal form, splicing of kept
//! chains, diffs, the lockout check) are pure functions in the library's
//! `host` module; this module runs the programs, keeps the state directory
//! and picks exit codes.

pub mod apply;
pub mod backend;
pub mod diff;
pub mod plan;
pub mod rollback;
pub mod state;

use backend::Backend;
use state::State;
use std::path::PathBuf;

/// Exit codes of `fwc apply` (docs/user-guide.md lists them).
pub mod exit {
    /// The new rules are loaded (and, with `--confirm`, wait for `fwc confirm`).
    pub const APPLIED: u8 = 0;
    /// The policy has errors or failing tests.
    pub const POLICY_ERRORS: u8 = 1;
    /// Bad usage, unreadable files, a state directory fwc cannot use.
    pub const USAGE: u8 = 2;
    /// The live rules already are the policy's: nothing was loaded.
    pub const NO_CHANGE: u8 = 3;
    /// Refused before touching anything: lockout, pre-flight, lock busy.
    pub const REFUSED: u8 = 4;
    /// A load failed and the previous rules are back (checked); at boot,
    /// a fallback ruleset was loaded instead of the confirmed build.
    pub const ROLLED_BACK: u8 = 5;
    /// A load failed and so did the rollback: the rules are in an unknown
    /// state. Page someone.
    pub const ROLLBACK_FAILED: u8 = 6;
}

/// Where the state lives and which programs to run.
#[derive(clap::Args, Clone, Debug)]
pub struct HostArgs {
    /// The state directory: backups, lock, applied and confirmed builds
    #[arg(long, value_name = "DIR", env = "FWC_STATE_DIR", default_value = "/var/lib/fwc")]
    pub state_dir: PathBuf,
    /// The programs that load the rules: the iptables ones, or nft (rules.nft).
    /// Default: the backend of the last applied build, else iptables
    #[arg(long, value_enum, env = "FWC_BACKEND")]
    pub backend: Option<backend::Backend>,
    /// Seconds to wait for the xtables lock and for another fwc
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub wait: u32,
}

impl HostArgs {
    /// The backend for a build of the state directory (`applied`,
    /// `confirmed`, `previous`): the one named by `--backend` or
    /// `FWC_BACKEND`, else the one that build was loaded with, else
    /// iptables. So a host that applied with nft goes on with nft, at
    /// boot too, without being told again.
    pub fn backend_for(&self, state: &State, build: &str) -> Backend {
        self.backend.or_else(|| state.backend(build)).unwrap_or(Backend::Iptables)
    }
}
