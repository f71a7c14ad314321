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

/// The netfilter tables fwc writes. It owns only those its policy uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Filter,
    Nat,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }

    /// Built-in chains in the order `iptables-save` lists them.
    pub fn builtin_chains(self) -> &'static [ChainRef] {
        match self {
            Table::Filter => &[ChainRef::Input, ChainRef::Forward, ChainRef::Output],
            Table::Nat => &[ChainRef::Prerouting, ChainRef::Input, ChainRef::Output, ChainRef::Postrouting],
        }
    }
}

/// Where a rule lives, within its table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChainRef {
    Input,
    Forward,
    Output,
    Prerouting,
    Postrouting,
    User(String),
}

impl ChainRef {
    pub fn name(&self) -> &str {
        match self {
            ChainRef::Input => "INPUT",
            ChainRef::Forward => "FORWARD",
            ChainRef::Output => "OUTPUT",
            ChainRef::Prerouting => "PREROUTING",
            ChainRef::Postrouting => "POSTROUTING",
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
            _ => None,
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
    pub table: Table,
    pub chain: ChainRef,
    pub matches: Matches,
    pub target: Target,
    pub origin: RuleOrigin,
}

/// A value that may be negated with `not`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    pub icmp_type: Option<Match<IcmpType>>,
    pub tcp_flags: Option<Match<TcpFlags>>,
    /// Source MAC address, lowercase `00:11:22:33:44:55`.
    pub mac_source: Option<Match<String>>,
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
    pub const AH: Protocol = Protocol(51);
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

/// `--tcp-flags MASK SET`: of the flags in `mask`, exactly those in `set`
/// are on. Bits: FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    pub mask: u8,
    pub set: u8,
}

impl TcpFlags {
    pub const NAMES: [(&'static str, u8); 6] =
        [("FIN", 1), ("SYN", 2), ("RST", 4), ("PSH", 8), ("ACK", 16), ("URG", 32)];

    /// A flag set as `iptables-save` prints it: `FIN,SYN`, or `NONE`.
    pub fn names(bits: u8) -> String {
        if bits == 0 {
            return "NONE".to_string();
        }
        let names: Vec<&str> =
            TcpFlags::NAMES.iter().filter(|(_, bit)| bits & bit != 0).map(|(name, _)| *name).collect();
        names.join(",")
    }
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

    /// The set holding one connection state.
    pub fn of(state: crate::syntax::ast::ConnectionState) -> States {
        use crate::syntax::ast::ConnectionState;
        match state {
            ConnectionState::New => States::NEW,
            ConnectionState::Established => States::ESTABLISHED,
            ConnectionState::Related => States::RELATED,
            ConnectionState::Invalid => States::INVALID,
            ConnectionState::Untracked => States::UNTRACKED,
        }
    }

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

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Accept,
    Drop,
    Reject(RejectWith),
    Jump(String),
    Return,
    Log { prefix: Option<String> },
    /// Source NAT to the outgoing interface's address.
    Masquerade { ports: Option<PortRange> },
    Snat { address: std::net::IpAddr, ports: Option<PortRange> },
    Dnat { address: std::net::IpAddr, ports: Option<PortRange> },
    /// Destination NAT to this host, on another port.
    Redirect { ports: Option<PortRange> },
}

/// What a REJECT answers with. Not every kind exists for both families;
/// lowering checks before a rule gets here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectWith {
    TcpReset,
    NetUnreachable,
    HostUnreachable,
    PortUnreachable,
    ProtoUnreachable,
    NetProhibited,
    HostProhibited,
    AdminProhibited,
}

impl RejectWith {
    /// `(fwc name, IPv4 spelling, IPv6 spelling)`.
    pub const KINDS: [(RejectWith, &'static str, &'static str, Option<&'static str>); 8] = [
        (RejectWith::TcpReset, "tcp-reset", "tcp-reset", Some("tcp-reset")),
        (RejectWith::NetUnreachable, "net-unreachable", "icmp-net-unreachable", Some("icmp6-no-route")),
        (RejectWith::HostUnreachable, "host-unreachable", "icmp-host-unreachable", Some("icmp6-addr-unreachable")),
        (RejectWith::PortUnreachable, "port-unreachable", "icmp-port-unreachable", Some("icmp6-port-unreachable")),
        (RejectWith::ProtoUnreachable, "proto-unreachable", "icmp-proto-unreachable", None),
        (RejectWith::NetProhibited, "net-prohibited", "icmp-net-prohibited", None),
        (RejectWith::HostProhibited, "host-prohibited", "icmp-host-prohibited", None),
        (RejectWith::AdminProhibited, "admin-prohibited", "icmp-admin-prohibited", Some("icmp6-adm-prohibited")),
    ];

    /// The `--reject-with` value for a family, if the family has this kind.
    pub fn spelling(self, family: Family) -> Option<&'static str> {
        let (_, _, v4, v6) = RejectWith::KINDS.iter().find(|(kind, ..)| *kind == self).expect("every kind listed");
        match family {
            Family::V4 => Some(v4),
            Family::V6 => *v6,
        }
    }
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
    /// The rule says `ipv4` or `ipv6`: one family on purpose.
    pub narrowed: bool,
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
    /// The forward allow of a `forward-port`.
    ForwardAllow,
    /// The allow for the TCP reset or ICMP error a `reject` sends.
    RejectAnswer,
    /// The jump into the helper chain of a `not` before a list, or one of
    /// the helper's returns.
    Negation,
}
