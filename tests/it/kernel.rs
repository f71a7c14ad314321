//! Kernel tests: compiled rules loaded into network namespaces, and real
//! packets sent through them.
//!
//! They run as root and need iproute2, iptables and python3 (.ci/run
//! installs them); a missing tool fails the test with a message naming the
//! Debian package. Every test works only inside network namespaces it
//! creates itself, named `fwct-PID-N-ROLE`, and deletes them when it is done,
//! also when it fails: the tables of the machine's own namespace are never
//! read or written. Test addresses are 198.18.0.0/15 and fd00::/8, and
//! exist only inside those namespaces.
//!
//! - `acceptance`: every example policy in policies/ and every case in
//!   tests/cases/ok loads with iptables-restore, and again with rules.sh,
//!   and the live tables then print exactly as saved.v4 / saved.v6 say;
//!   its rules.nft loads with `nft -f`, twice, next to another table it
//!   leaves alone.
//! - `behaviour`: a firewalled host namespace joined by veth pairs to two
//!   others; TCP, UDP and ping over IPv4 and IPv6 show that a policy lets
//!   through what it allows, replies included, and nothing else.
//! - `determinism`: the same policy builds to the same bytes.
//! - `differential`: random policies (`generate`) loaded into a host
//!   namespace, real flows from both sides, and the kernel's outcome
//!   compared with `fwc::eval`'s for every flow, for the iptables rules
//!   and for rules.nft at once; `regressions`: each
//!   disagreement it found, as a fixed case. Needs `conntrack` too.
//! - `nat`: masquerade and a port forward through a router namespace, and
//!   rejects that answer at once.
//! - `host`: `fwc apply`, `confirm`, `diff` and `apply --boot` run inside
//!   namespaces with temporary state directories: rollback of both
//!   families, the lockout guard, the detached rollback, drift on both
//!   iptables backends, boot fallbacks; `host::nft` the same with
//!   `--backend nft`, next to other tables it must leave alone.
//! - `lab`: the veth topology, the probe servers and clients; `agent`: one
//!   traffic process per namespace for many flows at once;
//!   `support`: namespaces, the fwc binary, bounded commands, diffs;
//!   `policies`: the policies these tests write themselves.

mod acceptance;
mod agent;
mod behaviour;
mod determinism;
mod differential;
mod generate;
mod host;
mod lab;
mod nat;
mod policies;
mod regressions;
pub(crate) mod support;
