//! The integration suite: one binary, one module per layer.
//!
//! - `cases`: the data-driven cases in tests/cases (no root needed);
//! - `kernel`: loads compiled rules into network namespaces and sends real
//!   packets (needs root, iptables and iproute2; .ci/run provides them).

mod analysis;
mod cases;
mod cli;
mod fmt;
mod import;
mod package;
mod kernel;
mod lsp;
mod robustness;
mod sarif;
