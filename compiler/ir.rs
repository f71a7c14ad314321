//! The lowered policy: flat rules, each of exactly one address family, in
//! kernel order, each knowing where it came from.
//!
//! Invariants (established by `lower`, relied on by checks and emitters):
//! - no rule is dual-family; addresses in a rule match the rule's family;
//! - ports only appear with a protocol that has ports (tcp, udp, udplite,
//!   sctp), ICMP types only with `icmp` (IPv4) or `icmpv6` (IPv6);
//! - every port list fits one kernel match (at most 15 entries, a range
//!   counting two);
//! - `rules` is in policy order; filtering it by (family, chain) gives that
//!   chain's rules in kernel order;
//! - every jump names a chain in `chains`.

use crate::source::Span;
use ipnet::IpNet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Where a rule lives. Built-in chains sort first, in the kernel's order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChainRef {
    Input,
    Forward,
    Output,
    User(String),
}

impl ChainRef {
    pub fn name(&self) -> &str {
        match self {
            ChainRef::Input => "INPUT",
            ChainRef::Forward => "FORWARD",
            ChainRef::Output => "OUTPUT",
            ChainRef::User(name) => name,
        }
    }

    pub fn is_builtin(&self) -> bool {
        !matches!(self, ChainRef::User(_))
    }
}

/// A user chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// Its live contents belong to another program (`chain NAME keep`).
    pub keep: bool,
    pub span: Span,
    /// Only some families need it (a chain only IPv4 rules jump to is still
    /// created in both, so that jumps and diffs stay simple).
    pub families: Vec<Family>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

/// The default policy of each built-in chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policies {
    pub input: Verdict,
    pub forward: Verdict,
    pub output: Verdict,
}

impl Default for Policies {
    fn default() -> Policies {
        Policies { input: Verdict::Accept, forward: Verdict::Accept, output: Verdict::Accept }
    }
}

impl Policies {
    pub fn of(&self, chain: &ChainRef) -> Option<Verdict> {
        match chain {
            ChainRef::Input => Some(self.input),
            ChainRef::Forward => Some(self.forward),
            ChainRef::Output => Some(self.output),
            ChainRef::User(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub policies: Policies,
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
    /// `keep chain "PATTERN"`: chains of other programs fwc leaves alone.
    pub keep_patterns: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub chain: ChainRef,
    pub matches: Matches,
    pub target: Target,
    pub origin: RuleOrigin,
}

/// A value that may be negated with `not`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Match<T> {
    pub negated: bool,
    pub value: T,
}

impl<T> Match<T> {
    pub fn positive(value: T) -> Match<T> {
        Match { negated: false, value }
    }
}

/// Everything a rule matches on; `None` matches any value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Matches {
    pub source: Option<Match<IpNet>>,
    pub destination: Option<Match<IpNet>>,
    pub in_interface: Option<Match<String>>,
    pub out_interface: Option<Match<String>>,
    pub protocol: Option<Protocol>,
    pub source_ports: Option<Match<Vec<PortRange>>>,
    pub destination_ports: Option<Match<Vec<PortRange>>>,
    pub icmp_type: Option<IcmpType>,
    pub states: Option<Match<States>>,
    pub limit: Option<Limit>,
    pub comment: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(pub u8);

impl Protocol {
    pub const TCP: Protocol = Protocol(6);
    pub const UDP: Protocol = Protocol(17);
    pub const ICMP: Protocol = Protocol(1);
    pub const IGMP: Protocol = Protocol(2);
    pub const ICMPV6: Protocol = Protocol(58);
    pub const SCTP: Protocol = Protocol(132);
    pub const UDPLITE: Protocol = Protocol(136);

    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::TCP | Protocol::UDP | Protocol::SCTP | Protocol::UDPLITE)
    }
}

/// Inclusive port range; a single port has `low == high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpType {
    pub kind: u8,
    pub code: Option<u8>,
}

/// A set of conntrack states, as a bit set in the kernel's print order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct States(pub u8);

impl States {
    pub const INVALID: States = States(1);
    pub const NEW: States = States(2);
    pub const RELATED: States = States(4);
    pub const ESTABLISHED: States = States(8);
    pub const UNTRACKED: States = States(16);

    pub fn union(self, other: States) -> States {
        States(self.0 | other.0)
    }

    pub fn contains(self, other: States) -> bool {
        self.0 & other.0 == other.0
    }

    /// Names in the order `iptables-save` prints them.
    pub fn names(self) -> Vec<&'static str> {
        [
            (States::INVALID, "INVALID"),
            (States::NEW, "NEW"),
            (States::RELATED, "RELATED"),
            (States::ESTABLISHED, "ESTABLISHED"),
            (States::UNTRACKED, "UNTRACKED"),
        ]
        .into_iter()
        .filter(|(state, _)| self.contains(*state))
        .map(|(_, name)| name)
        .collect()
    }
}

/// `limit N/unit burst M`, kept as written; emitters print the kernel's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    pub count: u32,
    /// Seconds per unit: 1, 60, 3600 or 86400.
    pub unit_seconds: u32,
    pub burst: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Accept,
    Drop,
    Reject(RejectWith),
    Jump(String),
    Return,
    Log { prefix: Option<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectWith {
    TcpReset,
    PortUnreachable,
}

/// Where a rule came from, for diagnostics and for `fwc query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleOrigin {
    /// The rule as written (in a policy file or a stdlib module).
    pub span: Span,
    /// The `use` and `include` lines that brought that file in, outermost first.
    pub via: Vec<Span>,
    pub derived: Option<Derivation>,
    /// Codes silenced on this rule with `ignore CODE`.
    pub ignored: Vec<String>,
}

/// Why fwc added a rule the user did not write as such.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Derivation {
    /// The reply half of a `stateful` rule.
    Reply,
    /// The reply path through a chain's reply companion.
    ReplyJump,
    /// The LOG rule in front of a rule with `log`.
    Log,
    /// The established half of a stateful rule with a `limit`.
    Established,
    /// The catch-all half of a `reject` without a protocol.
    RejectOther,
}
