//! The kernel as the judge: random policies, real packets, and the
//! evaluator's verdicts compared with what the kernel did.
//!
//! For each generated policy (see `generate`): compile it with the
//! library, load rules.v4/rules.v6 into a "host" namespace joined by a veth
//! pair to a "peer" namespace, send real packets for sampled flows, and
//! predict each flow's outcome from `fwc::eval` — packet by packet, as the
//! kernel sees them: the opener (state NEW), the answers and the client's
//! further packets (ESTABLISHED), and for a reject the answer it sends
//! (RELATED). A flow is sampled around every rule: inside and just outside
//! each address block and port range, in the direction the rule's chain is
//! entered from, as the opener of a flow or as its reply, over a fresh flow
//! or over one opened before the policy was loaded (to probe ESTABLISHED
//! packets the policy would never have let open).
//!
//! Every mismatch is confirmed with a long deadline, shrunk to a minimal
//! policy by removing lines, and reported with the policy, the flow, the
//! kernel's and the evaluator's outcome, and every packet's deciding rule.
//! Each policy also loads through rules.sh in a fresh namespace, and both
//! ways the live tables must print as saved.v4 / saved.v6.
//!
//! What the evaluator cannot know, and so the comparison leaves out: limits
//! (generated ones are far above probe rates), and the local socket's view
//! of a reject in OUTPUT when the answer is an ICMP error (its source
//! address is the kernel's choice), which counts as blocked either way.
//!
//! Every policy runs through both backends at once, over the same flows:
//! iptables (rules.v4 / rules.v6) in one host/peer pair and nft (rules.nft)
//! in another. Both are compared with the evaluator.
//!
//! The run's size and seed come from the environment: FWC_DIFF_POLICIES
//! (default 200), FWC_DIFF_PROBES (flows per policy, default 28),
//! FWC_DIFF_SEED (default fixed; `random` for a new one), FWC_DIFF_LANES
//! (namespace pairs working in parallel, default 3). docs/testing.md.

use super::agent::{Agent, Mode, Proto, Request, Seen};
use super::generate::{self, in_pool, pool, GenPolicy, Rng, Side};
use super::support::{diff, run, run_ok, saved_form, tools, Netns, TempDir, COMMAND_LIMIT};
use fwc::eval::{Decision, Evaluation, Packet, Program};
use fwc::ir::{ChainRef, Family, Match, PortRange, Protocol, RejectWith, Ruleset, Table, Target};
use fwc::syntax::ast::{ConnectionState, Direction};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Both veth ends carry this address and do not use ARP, so frames reach
/// the other end without neighbour discovery (which a policy may block).
const MAC: &str = "02:00:00:00:00:01";

/// How long a batch of probes waits for the answers that do not come.
/// Answers on a veth pair take well under a millisecond; a probe that
/// should have been answered and timed out is tried again with
/// [`CONFIRM_DEADLINE`] before it counts as a mismatch.
const BATCH_DEADLINE: Duration = Duration::from_millis(600);
const CONFIRM_DEADLINE: Duration = Duration::from_secs(5);

const DEFAULT_SEED: u64 = 0x00F1_2E3A_11C0_FFEE;

// ---------------------------------------------------------------- probes

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A flow opened while the policy is loaded: its first packet is NEW.
    New,
    /// A flow opened before the policy was loaded (with every chain
    /// accepting): all its packets are ESTABLISHED.
    Established,
}

/// One flow between the namespaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    pub proto: Proto,
    pub kind: Kind,
    /// Who opens the flow: `Peer` for `in` traffic, `Host` for `out`.
    pub opener: Side,
    pub client: IpAddr,
    /// The client's port; for pings the echo identifier (set per batch).
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
}

fn endpoint(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::New => "new",
            Kind::Established => "established",
        };
        let direction = match self.opener {
            Side::Peer => "in",
            Side::Host => "out",
        };
        if self.proto == Proto::Ping {
            write!(f, "ping {kind} {direction} {} -> {}", self.client, self.server)
        } else {
            write!(
                f,
                "{} {kind} {direction} {} -> {}",
                self.proto.name(),
                endpoint(self.client, self.client_port),
                endpoint(self.server, self.server_port)
            )
        }
    }
}

impl Probe {
    /// Reads what `Display` writes: `tcp new in 198.18.0.5:40000 ->
    /// 198.19.0.1:80`, `udp established out [fd00:19::1]:4000 ->
    /// [fd00:18::2]:53`, `ping new in 198.18.0.5 -> 198.19.0.1`.
    pub fn parse(text: &str) -> Probe {
        let words: Vec<&str> = text.split_whitespace().collect();
        assert!(words.len() == 6 && words[4] == "->", "a probe reads `PROTO KIND in|out CLIENT -> SERVER`: {text}");
        let proto = match words[0] {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "ping" => Proto::Ping,
            other => panic!("unknown probe protocol {other}"),
        };
        let kind = match words[1] {
            "new" => Kind::New,
            "established" => Kind::Established,
            other => panic!("unknown probe kind {other}"),
        };
        let opener = match words[2] {
            "in" => Side::Peer,
            "out" => Side::Host,
            other => panic!("unknown probe direction {other}"),
        };
        let split = |text: &str| -> (IpAddr, u16) {
            if proto == Proto::Ping {
                return (text.parse().unwrap_or_else(|_| panic!("bad address {text}")), 0);
            }
            let socket: std::net::SocketAddr = text.parse().unwrap_or_else(|_| panic!("bad endpoint {text}"));
            (socket.ip(), socket.port())
        };
        let (client, client_port) = split(words[3]);
        let (server, server_port) = split(words[5]);
        Probe { proto, kind, opener, client, client_port, server, server_port }
    }

    fn family(&self) -> Family {
        if self.client.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn server_side(&self) -> Side {
        self.opener.other()
    }
}

// ---------------------------------------------------------------- the model

/// What the client should see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Answered,
    Refused,
    Silent,
    /// A reject of the host's own packet answered with an ICMP error: the
    /// kernel picks the error's source address, so whether the local
    /// socket learns of it is not the evaluator's to say.
    Blocked,
}

impl Expect {
    fn admits(self, seen: &Seen) -> bool {
        matches!(
            (self, seen),
            (Expect::Answered, Seen::Answered(_))
                | (Expect::Refused, Seen::Refused(_))
                | (Expect::Silent, Seen::Silent(_))
                | (Expect::Blocked, Seen::Refused(_) | Seen::Silent(_))
        )
    }

    fn word(self) -> &'static str {
        match self {
            Expect::Answered => "answered",
            Expect::Refused => "refused",
            Expect::Silent => "silent",
            Expect::Blocked => "refused or silent",
        }
    }
}

/// One packet of a flow and what the evaluator decides for it.
pub struct Step {
    pub label: &'static str,
    pub packet: Packet,
    pub evaluation: Evaluation,
}

pub struct Prediction {
    pub expect: Expect,
    pub steps: Vec<Step>,
}

const TCP_SYN: u8 = 0x02;
const TCP_SYN_ACK: u8 = 0x12;
const TCP_ACK: u8 = 0x10;
const TCP_PSH_ACK: u8 = 0x18;
const TCP_RST_ACK: u8 = 0x14;
const TCP_RST: u8 = 0x04;

/// A packet of `probe`, client to server (`from_client`) or back, as the
/// host's filter sees it on `interface`.
fn packet(probe: &Probe, from_client: bool, state: ConnectionState, interface: &str) -> Packet {
    let (source, destination, source_port, destination_port) = if from_client {
        (probe.client, probe.server, probe.client_port, probe.server_port)
    } else {
        (probe.server, probe.client, probe.server_port, probe.client_port)
    };
    // Packets from the peer's side arrive at the host; the host's leave it.
    let arrives = in_pool(Side::Peer, source);
    let family = probe.family();
    let (protocol, icmp_type, tcp_flags) = match probe.proto {
        Proto::Tcp => (Protocol::TCP.0, 0, TCP_PSH_ACK),
        Proto::Udp => (Protocol::UDP.0, 0, 0),
        Proto::Ping => {
            let protocol = if family == Family::V4 { Protocol::ICMP.0 } else { Protocol::ICMPV6.0 };
            let kind = match (family, from_client) {
                (Family::V4, true) => 8,
                (Family::V4, false) => 0,
                (Family::V6, true) => 128,
                (Family::V6, false) => 129,
            };
            (protocol, kind, 0)
        }
    };
    let (source_port, destination_port) =
        if probe.proto == Proto::Ping { (0, 0) } else { (source_port, destination_port) };
    Packet {
        family,
        direction: if arrives { Direction::In } else { Direction::Out },
        protocol,
        source,
        destination,
        source_port,
        destination_port,
        in_interface: arrives.then(|| interface.to_string()),
        out_interface: (!arrives).then(|| interface.to_string()),
        state,
        icmp_type,
        tcp_flags,
        mac_source: (arrives && interface != "lo").then(|| MAC.to_string()),
    }
}

/// The ICMP error a reject sends back to the sender of `rejected`, as it
/// leaves the host on eth0: from the rejected packet's destination (a local
/// address), RELATED to its connection.
fn icmp_answer(rejected: &Packet) -> Packet {
    let (protocol, kind) = match rejected.family {
        Family::V4 => (Protocol::ICMP.0, 3),
        Family::V6 => (Protocol::ICMPV6.0, 1),
    };
    Packet {
        family: rejected.family,
        direction: Direction::Out,
        protocol,
        source: rejected.destination,
        destination: rejected.source,
        source_port: 0,
        destination_port: 0,
        in_interface: None,
        out_interface: Some("eth0".to_string()),
        state: ConnectionState::Related,
        icmp_type: kind,
        tcp_flags: 0,
        mac_source: None,
    }
}

/// The TCP reset a reject sends back to the sender of `rejected`, leaving
/// by `interface` (`eth0` to the peer; for the host's own packets `lo`,
/// where it is seen in OUTPUT and again in INPUT).
fn reset_answer(rejected: &Packet, direction: Direction, interface: &str) -> Packet {
    // A reset answers a segment with ACK by itself, a SYN with RST,ACK.
    let tcp_flags = if rejected.tcp_flags & TCP_ACK != 0 { TCP_RST } else { TCP_RST_ACK };
    Packet {
        family: rejected.family,
        direction,
        protocol: Protocol::TCP.0,
        source: rejected.destination,
        destination: rejected.source,
        source_port: rejected.destination_port,
        destination_port: rejected.source_port,
        in_interface: (direction == Direction::In).then(|| interface.to_string()),
        out_interface: (direction == Direction::Out).then(|| interface.to_string()),
        state: ConnectionState::Related,
        icmp_type: 0,
        tcp_flags,
        mac_source: None,
    }
}

fn reject_kind(ruleset: &Ruleset, evaluation: &Evaluation) -> RejectWith {
    match evaluation.rule.map(|index| &ruleset.rules[index].target) {
        Some(Target::Reject(kind)) => *kind,
        other => panic!("a reject decided by {other:?}"),
    }
}

/// What the client of `probe` sees, packet by packet, by the evaluator.
pub fn predict(program: &Program, probe: &Probe) -> Prediction {
    use ConnectionState::{Established, New};
    // (label, client to server?, state, TCP flags)
    let script: Vec<(&'static str, bool, ConnectionState, u8)> = match (probe.proto, probe.kind) {
        (Proto::Tcp, Kind::New) => vec![
            ("SYN", true, New, TCP_SYN),
            ("SYN-ACK", false, Established, TCP_SYN_ACK),
            ("client ACK", true, Established, TCP_ACK),
            ("client data", true, Established, TCP_PSH_ACK),
            ("server answer", false, Established, TCP_PSH_ACK),
        ],
        (Proto::Tcp, Kind::Established) => {
            vec![("client data", true, Established, TCP_PSH_ACK), ("server answer", false, Established, TCP_PSH_ACK)]
        }
        (_, kind) => {
            let first = if kind == Kind::New { New } else { Established };
            let (request, reply) =
                if probe.proto == Proto::Ping { ("echo request", "echo reply") } else { ("datagram", "answer") };
            vec![(request, true, first, 0), (reply, false, Established, 0)]
        }
    };
    let mut steps = Vec::new();
    for (label, from_client, state, flags) in script {
        let mut sent = packet(probe, from_client, state, "eth0");
        if probe.proto == Proto::Tcp {
            sent.tcp_flags = flags;
        }
        let evaluation = program.evaluate(&sent);
        let decision = evaluation.decision;
        steps.push(Step { label, packet: sent.clone(), evaluation });
        match decision {
            Decision::Accept => continue,
            Decision::Drop => return Prediction { expect: Expect::Silent, steps },
            Decision::Reject => {}
        }
        let kind = reject_kind(program.ruleset, steps.last().map(|step| &step.evaluation).expect("pushed"));
        // A rejected answer goes back to the server, not the client. A TCP
        // reset ends the server's connection, though, and the client's next
        // retransmission may then draw a reset from the server's stack:
        // whether that gets through is beyond the evaluator's packets.
        if !from_client {
            let expect = if probe.proto == Proto::Tcp && kind == RejectWith::TcpReset {
                Expect::Blocked
            } else {
                Expect::Silent
            };
            return Prediction { expect, steps };
        }
        if probe.opener == Side::Peer {
            let answer = if kind == RejectWith::TcpReset {
                reset_answer(&sent, Direction::Out, "eth0")
            } else {
                icmp_answer(&sent)
            };
            let evaluation = program.evaluate(&answer);
            let through = evaluation.decision == Decision::Accept;
            steps.push(Step { label: "reject's answer", packet: answer, evaluation });
            return Prediction { expect: if through { Expect::Refused } else { Expect::Silent }, steps };
        }
        // The host's own packet: sendmsg fails for UDP and pings; TCP
        // retries, and learns of the reject from its answer over lo.
        if probe.proto != Proto::Tcp {
            return Prediction { expect: Expect::Silent, steps };
        }
        if kind != RejectWith::TcpReset {
            return Prediction { expect: Expect::Blocked, steps };
        }
        let mut through = true;
        for (label, direction) in
            [("reject's answer (lo, out)", Direction::Out), ("reject's answer (lo, in)", Direction::In)]
        {
            let answer = reset_answer(&sent, direction, "lo");
            let evaluation = program.evaluate(&answer);
            through &= evaluation.decision == Decision::Accept;
            steps.push(Step { label, packet: answer, evaluation });
            if !through {
                break;
            }
        }
        return Prediction { expect: if through { Expect::Refused } else { Expect::Silent }, steps };
    }
    Prediction { expect: Expect::Answered, steps }
}

// ---------------------------------------------------------------- compiling

/// The one file of a generated policy.
struct Memory(String);

impl fwc::FileSystem for Memory {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path == Path::new("policy.fw") {
            Ok(self.0.clone())
        } else {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "generated policies include nothing"))
        }
    }

    fn glob(&self, _pattern: &str) -> Result<Vec<PathBuf>, String> {
        Ok(Vec::new())
    }
}

/// A compiled policy and its outputs.
pub struct Compiled {
    pub text: String,
    pub compilation: fwc::Compilation,
    pub outputs: BTreeMap<&'static str, String>,
    /// The rules.nft the nft lane loads: written with room for only
    /// [`NFT_SET_BUDGET`] sets of short lists.
    pub nft: String,
}

/// Sets of short lists in the rules.nft the nft lane loads. rules.nft
/// writes a short list as a set until the table holds
/// `fwc::emit::nft::SET_BUDGET` sets, then as one rule per value; no
/// generated policy has that many lists, so with the default every short
/// list would be a set. With room for two, most policies have lists
/// spelled both ways (153 of the first 200 of the default seed have a
/// short list written as rules, and sets too), often in one rule.
pub const NFT_SET_BUDGET: usize = 2;

/// Compiles policy text; `Err` has the rendered diagnostics.
pub fn compile(text: &str) -> Result<Compiled, String> {
    let compilation = fwc::compile(&Memory(text.to_string()), Path::new("policy.fw"), &[])
        .map_err(|error| format!("cannot compile: {error}"))?;
    let Some(outputs) = compilation.outputs("policy.fw") else {
        return Err(compilation.render_diagnostics());
    };
    let outputs = outputs.into_iter().collect();
    let header = fwc::emit::header("policy.fw");
    let nft = fwc::emit::nft::render_with(&compilation.lowered.ruleset, &compilation.sources, &header, true, NFT_SET_BUDGET).text;
    Ok(Compiled { text: text.to_string(), compilation, outputs, nft })
}

/// How long `fwc check` may take on a generated policy.
const CHECK_LIMIT: Duration = Duration::from_secs(20);

/// Like [`compile`], but first runs `fwc check` on the policy in a process
/// of its own, so that a compiler that hangs or crashes fails the run with
/// the policy instead of hanging or killing it.
pub fn compile_guarded(text: &str) -> Result<Compiled, String> {
    let directory = TempDir::new("diff-check");
    let path = directory.write("policy.fw", text);
    let mut command = Command::new(env!("CARGO_BIN_EXE_fwc"));
    command.arg("check").arg(&path);
    match run(&mut command, None, CHECK_LIMIT) {
        Err(error) => return Err(format!("the compiler hangs: {error}")),
        Ok(ran) if ran.status.code().map_or(true, |code| code > 1) => {
            return Err(format!("the compiler crashes: `fwc check` {}:\n{}", ran.status, ran.stderr))
        }
        Ok(_) => {}
    }
    compile(text)
}

impl Compiled {
    fn ruleset(&self) -> &Ruleset {
        &self.compilation.lowered.ruleset
    }

    /// A rule as `-A CHAIN …` and where it came from.
    fn describe_rule(&self, index: usize) -> String {
        let rule = &self.ruleset().rules[index];
        let args: Vec<String> = fwc::emit::iptables::rule_args(rule)
            .into_iter()
            .map(|arg| match arg {
                fwc::emit::iptables::Arg::Word(word) => word,
                fwc::emit::iptables::Arg::Text(text) => format!("{text:?}"),
            })
            .collect();
        let family = if rule.family == Family::V4 { "rules.v4" } else { "rules.v6" };
        let source = self.compilation.sources.text(rule.origin.span).lines().next().unwrap_or("").trim().to_string();
        let derived = rule.origin.derived.map(|how| format!(", derived: {how:?}")).unwrap_or_default();
        format!("{family}: -A {} {}   (from `{source}`{derived})", rule.chain.name(), args.join(" "))
    }
}

// ---------------------------------------------------------------- planning

/// Which built-in chains reach each chain (In for INPUT, Out for OUTPUT).
fn chain_directions(ruleset: &Ruleset) -> BTreeMap<(Family, String), BTreeSet<Side>> {
    let mut reached: BTreeMap<(Family, String), BTreeSet<Side>> = BTreeMap::new();
    for family in Family::BOTH {
        for (start, opener) in [(ChainRef::Input, Side::Peer), (ChainRef::Output, Side::Host)] {
            let mut queue = vec![start.name().to_string()];
            let mut seen = HashSet::new();
            while let Some(chain) = queue.pop() {
                if !seen.insert(chain.clone()) {
                    continue;
                }
                reached.entry((family, chain.clone())).or_default().insert(opener);
                for rule in ruleset
                    .rules
                    .iter()
                    .filter(|rule| rule.family == family && rule.table == Table::Filter && rule.chain.name() == chain)
                {
                    if let Target::Jump(target) = &rule.target {
                        queue.push(target.clone());
                    }
                }
            }
        }
    }
    reached
}

fn to_number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_number(v6: bool, number: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(number.into())
    } else {
        IpAddr::V4((number as u32).into())
    }
}

/// Addresses inside and just outside a match, within `side`'s pool.
fn address_points(rng: &mut Rng, matched: Option<&Match<IpNet>>, side: Side, v6: bool) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let pool = pool(side, v6);
    let random = |rng: &mut Rng| {
        let (low, high) = (to_number(pool.network()), to_number(pool.broadcast()));
        // Keep off the pool's edges, which other rules' blocks share.
        let span = (high - low).min(u128::from(u64::MAX)) as u64;
        from_number(v6, low + 2 + u128::from(rng.below(span - 4)))
    };
    let Some(matched) = matched else { return (vec![random(rng)], Vec::new()) };
    let (low, high) = (to_number(matched.value.network()), to_number(matched.value.broadcast()));
    let mut inside = vec![from_number(v6, low), from_number(v6, high)];
    if high - low > 2 {
        inside.push(from_number(v6, low + 1 + u128::from(rng.next()) % (high - low - 1)));
    }
    let mut outside = Vec::new();
    if low > 0 {
        outside.push(from_number(v6, low - 1));
    }
    if high < u128::MAX {
        outside.push(from_number(v6, high + 1));
    }
    let keep = |points: Vec<IpAddr>| points.into_iter().filter(|point| pool.contains(point)).collect::<Vec<_>>();
    let (mut inside, mut outside) = (keep(inside), keep(outside));
    if matched.negated {
        std::mem::swap(&mut inside, &mut outside);
    }
    if inside.is_empty() {
        // Nothing of the pool matches (a block of the other side): any
        // address of the pool does not match either.
        inside.push(random(rng));
    }
    (inside, outside)
}

fn random_port(rng: &mut Rng) -> u16 {
    rng.range(20000, 60999) as u16
}

/// Ports inside and just outside a port match.
fn port_points(rng: &mut Rng, matched: Option<&Match<Vec<PortRange>>>) -> (Vec<u16>, Vec<u16>) {
    let Some(matched) = matched else { return (vec![random_port(rng)], Vec::new()) };
    let range = *rng.pick(&matched.value);
    let mut inside = vec![range.low, range.high];
    if range.high - range.low > 2 {
        inside.push(rng.range(u64::from(range.low) + 1, u64::from(range.high) - 1) as u16);
    }
    let mut outside = Vec::new();
    if range.low > 1 {
        outside.push(range.low - 1);
    }
    if range.high < u16::MAX {
        outside.push(range.high + 1);
    }
    if matched.negated {
        std::mem::swap(&mut inside, &mut outside);
    }
    inside.retain(|port| *port != 0);
    outside.retain(|port| *port != 0);
    if inside.is_empty() {
        inside.push(random_port(rng));
    }
    (inside, outside)
}

/// A packet the planner wants to see in some flow.
#[derive(Clone, Debug)]
struct Aim {
    proto: Proto,
    /// The side the packet comes from.
    from: Side,
    source: IpAddr,
    destination: IpAddr,
    source_port: u16,
    destination_port: u16,
}

/// Probes for a policy: boundaries around every rule, then random flows.
pub fn plan(ruleset: &Ruleset, rng: &mut Rng, count: usize) -> Vec<Probe> {
    let directions = chain_directions(ruleset);
    let mut wanted: Vec<(Aim, Option<Vec<ConnectionState>>)> = Vec::new();
    for rule in ruleset.rules.iter().filter(|rule| rule.table == Table::Filter) {
        let Some(sides) = directions.get(&(rule.family, rule.chain.name().to_string())) else { continue };
        let sides: Vec<Side> = sides.iter().copied().collect();
        let from = *rng.pick(&sides);
        let v6 = rule.family == Family::V6;
        let m = &rule.matches;
        let proto = match m.protocol {
            Some(Protocol::TCP) => Proto::Tcp,
            Some(Protocol::UDP) => Proto::Udp,
            Some(Protocol::ICMP) | Some(Protocol::ICMPV6) => Proto::Ping,
            _ => *rng.pick(&[Proto::Tcp, Proto::Udp, Proto::Ping]),
        };
        let (sources_in, sources_out) = address_points(rng, m.source.as_ref(), from, v6);
        let (destinations_in, destinations_out) = address_points(rng, m.destination.as_ref(), from.other(), v6);
        let (sports_in, sports_out) = port_points(rng, m.source_ports.as_ref());
        let (dports_in, dports_out) = port_points(rng, m.destination_ports.as_ref());
        let states = m.states.as_ref().map(|states| {
            [ConnectionState::New, ConnectionState::Established, ConnectionState::Related, ConnectionState::Invalid]
                .into_iter()
                .filter(|state| {
                    let bit = match state {
                        ConnectionState::New => fwc::ir::States::NEW,
                        ConnectionState::Established => fwc::ir::States::ESTABLISHED,
                        ConnectionState::Related => fwc::ir::States::RELATED,
                        _ => fwc::ir::States::INVALID,
                    };
                    states.value.contains(bit) != states.negated
                })
                .collect::<Vec<_>>()
        });
        let base = Aim {
            proto,
            from,
            source: *rng.pick(&sources_in),
            destination: *rng.pick(&destinations_in),
            source_port: *rng.pick(&sports_in),
            destination_port: *rng.pick(&dports_in),
        };
        wanted.push((base.clone(), states.clone()));
        // Variants: one field just outside (or on the other edge inside).
        let mut variants = Vec::new();
        for _ in 0..2 {
            let mut variant = base.clone();
            match rng.below(4) {
                0 => variant.source = *rng.pick(if sources_out.is_empty() { &sources_in } else { &sources_out }),
                1 => {
                    variant.destination =
                        *rng.pick(if destinations_out.is_empty() { &destinations_in } else { &destinations_out })
                }
                2 => variant.source_port = *rng.pick(if sports_out.is_empty() { &sports_in } else { &sports_out }),
                _ => variant.destination_port = *rng.pick(if dports_out.is_empty() { &dports_in } else { &dports_out }),
            }
            variants.push(variant);
        }
        for variant in variants {
            wanted.push((variant, states.clone()));
        }
    }
    // Shuffle, so that a long policy does not starve its last rules.
    for index in (1..wanted.len()).rev() {
        let other = rng.below(index as u64 + 1) as usize;
        wanted.swap(index, other);
    }

    let mut batch = Batch::default();
    for (target, states) in wanted {
        if batch.probes.len() >= count {
            break;
        }
        // Which packet of which flow the target is.
        let established_only = states.as_ref().is_some_and(|states| !states.contains(&ConnectionState::New));
        let role = if established_only {
            if rng.chance(50) {
                Role::Reply
            } else {
                Role::Preopened
            }
        } else {
            match rng.below(10) {
                0..=5 => Role::Opener,
                6..=7 => Role::Reply,
                _ => Role::Preopened,
            }
        };
        let probe = from_target(&target, role);
        batch.add(probe);
    }
    // Random flows among the addresses and ports seen so far.
    let mut attempts = 0;
    while batch.probes.len() < count && attempts < count * 20 {
        attempts += 1;
        let opener = if rng.chance(50) { Side::Peer } else { Side::Host };
        let v6 = rng.chance(50);
        let proto = *rng.pick(&[Proto::Tcp, Proto::Tcp, Proto::Udp, Proto::Udp, Proto::Ping]);
        let pick_address = |rng: &mut Rng, side: Side, used: &[IpAddr]| {
            let candidates: Vec<IpAddr> =
                used.iter().copied().filter(|address| address.is_ipv6() == v6 && in_pool(side, *address)).collect();
            if !candidates.is_empty() && rng.chance(70) {
                *rng.pick(&candidates)
            } else {
                address_points(rng, None, side, v6).0[0]
            }
        };
        let used = batch.addresses();
        let client = pick_address(rng, opener, &used);
        let server = pick_address(rng, opener.other(), &used);
        let ports = batch.server_ports();
        let server_port = if !ports.is_empty() && rng.chance(60) { *rng.pick(&ports) } else { random_port(rng) };
        let kind = if rng.chance(80) { Kind::New } else { Kind::Established };
        batch.add(Probe { proto, kind, opener, client, client_port: random_port(rng), server, server_port });
    }
    batch.probes
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The packet opens a new flow.
    Opener,
    /// The packet is the server's answer in a new flow.
    Reply,
    /// The packet is the client's, in a flow opened before the policy.
    Preopened,
}

fn from_target(target: &Aim, role: Role) -> Probe {
    let (opener, client, client_port, server, server_port) = match role {
        Role::Opener | Role::Preopened => {
            (target.from, target.source, target.source_port, target.destination, target.destination_port)
        }
        Role::Reply => {
            (target.from.other(), target.destination, target.destination_port, target.source, target.source_port)
        }
    };
    let kind = if role == Role::Preopened { Kind::Established } else { Kind::New };
    let proto = target.proto;
    // Pings cannot be opened before; their identifier is set per batch.
    let kind = if proto == Proto::Ping { Kind::New } else { kind };
    let server_port = if proto == Proto::Ping { 0 } else { server_port };
    Probe { proto, kind, opener, client, client_port, server, server_port }
}

/// Probes that can run at once: no two share a connection, no client
/// binds a port its side listens on.
#[derive(Default)]
pub struct Batch {
    pub probes: Vec<Probe>,
    flows: HashSet<(Proto, (IpAddr, u16), (IpAddr, u16))>,
    clients: HashSet<(Side, Proto, IpAddr, u16)>,
    listening: HashSet<(Side, Proto, u16)>,
    client_ports: HashSet<(Side, Proto, u16)>,
}

impl Batch {
    pub fn add(&mut self, mut probe: Probe) -> bool {
        if probe.proto == Proto::Ping {
            // Echo flows are not opened ahead; the identifier is per batch.
            probe.kind = Kind::New;
            probe.server_port = 0;
            probe.client_port = 1000 + self.probes.len() as u16;
            self.probes.push(probe);
            return true;
        }
        if probe.client_port == 0 || probe.server_port == 0 || probe.client == probe.server {
            return false;
        }
        let a = (probe.client, probe.client_port);
        let b = (probe.server, probe.server_port);
        let flow = (probe.proto, a.min(b), a.max(b));
        let server_side = probe.server_side();
        if self.flows.contains(&flow)
            || self.clients.contains(&(probe.opener, probe.proto, probe.client, probe.client_port))
            || self.listening.contains(&(probe.opener, probe.proto, probe.client_port))
            || self.client_ports.contains(&(server_side, probe.proto, probe.server_port))
        {
            return false;
        }
        self.flows.insert(flow);
        self.clients.insert((probe.opener, probe.proto, probe.client, probe.client_port));
        self.client_ports.insert((probe.opener, probe.proto, probe.client_port));
        self.listening.insert((server_side, probe.proto, probe.server_port));
        self.probes.push(probe);
        true
    }

    fn addresses(&self) -> Vec<IpAddr> {
        self.probes.iter().flat_map(|probe| [probe.client, probe.server]).collect()
    }

    fn server_ports(&self) -> Vec<u16> {
        self.probes.iter().filter(|probe| probe.proto != Proto::Ping).map(|probe| probe.server_port).collect()
    }
}

// ---------------------------------------------------------------- the lab

/// A program the test needs beyond what `support` checks, found on the
/// tests' PATH; panics naming the Debian package when it is missing.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found =
        std::env::split_paths(&tools().path).map(|directory| directory.join(program)).find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!("this kernel test needs `{program}`, which is not installed (Debian package {package})")
    })
}

fn ip_batch(namespace: &Netns, commands: &str) {
    let mut command = Command::new(&tools().ip);
    command.env("PATH", &tools().path).args(["-n", namespace.name(), "-batch", "-"]);
    if let Err(error) = run_ok(&mut command, Some(commands.as_bytes()), COMMAND_LIMIT) {
        panic!("configuring {}: {error}\ncommands:\n{commands}", namespace.name());
    }
}

/// Writes `value` to `/proc/sys/PATH` inside the namespace; `optional`
/// settings may be missing from older kernels.
pub fn sysctl(namespace: &Netns, settings: &[(&str, &str, bool)]) {
    let mut script = String::from("set -e\n");
    for (path, value, optional) in settings {
        let file = format!("/proc/sys/{path}");
        if *optional {
            script.push_str(&format!("if [ -w {file} ]; then echo '{value}' > {file}; fi\n"));
        } else {
            script.push_str(&format!("echo '{value}' > {file}\n"));
        }
    }
    if let Err(error) = namespace.exec(&["sh", "-c", &script], None) {
        panic!("setting sysctls in {}: {error}", namespace.name());
    }
}

/// Every chain accepting, and the conntrack match in use so that flows
/// opened now are tracked when the policy under test is loaded.
const OPEN: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A INPUT -m conntrack --ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED -j ACCEPT\n\
-A OUTPUT -m conntrack --ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED -j ACCEPT\nCOMMIT\n";

/// Which rules a lane loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// ipsets.restore, then rules.v4 and rules.v6 with iptables-restore.
    Iptables,
    /// rules.nft with `nft -f`.
    Nft,
}

impl Backend {
    pub const BOTH: [Backend; 2] = [Backend::Iptables, Backend::Nft];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nft => "nft",
        }
    }
}

/// A host and a peer namespace joined by a veth pair, with an agent in
/// each. Reused for many policies.
pub struct Lane {
    pub backend: Backend,
    // Agents first: they are killed before their namespaces are deleted.
    host_agent: Agent,
    peer_agent: Agent,
    host: Netns,
    peer: Netns,
    conntrack: PathBuf,
    nft: PathBuf,
}

/// What one policy's flows did.
pub struct Outcome {
    pub seen: Vec<Seen>,
    /// Problems loading the rules (errors, warnings, drift from saved.*).
    pub load_problems: Vec<String>,
}

impl Lane {
    pub fn with_backend(backend: Backend) -> Lane {
        let conntrack = require("conntrack", "conntrack");
        let nft = require("nft", "nftables");
        let host = Netns::new("diff-host");
        let peer = Netns::new("diff-peer");
        host.ip(&[
            "link",
            "add",
            "eth0",
            "address",
            MAC,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            peer.name(),
            "address",
            MAC,
        ]);
        for namespace in [&host, &peer] {
            namespace.ip(&["link", "set", "eth0", "arp", "off"]);
            namespace.ip(&["link", "set", "eth0", "up"]);
        }
        // Rejects answer every probe: no ICMP rate limits in the host.
        sysctl(
            &host,
            &[
                ("net/ipv4/icmp_ratelimit", "0", false),
                ("net/ipv4/icmp_ratemask", "0", false),
                ("net/ipv6/icmp/ratelimit", "0", false),
                ("net/ipv6/icmp/ratemask", "255", true),
                ("net/ipv4/icmp_msgs_per_sec", "100000", true),
                ("net/ipv4/icmp_msgs_burst", "100000", true),
            ],
        );
        let host_agent = Agent::spawn(&host);
        let peer_agent = Agent::spawn(&peer);
        Lane { backend, host_agent, peer_agent, host, peer, conntrack, nft }
    }

    fn namespace(&self, side: Side) -> &Netns {
        match side {
            Side::Host => &self.host,
            Side::Peer => &self.peer,
        }
    }

    fn agent(&mut self, side: Side) -> &mut Agent {
        match side {
            Side::Host => &mut self.host_agent,
            Side::Peer => &mut self.peer_agent,
        }
    }

    /// Gives each side exactly the addresses the probes use (and one of
    /// each family), with routes to the other side's pools.
    fn addresses(&self, probes: &[Probe]) {
        for side in [Side::Host, Side::Peer] {
            let mut addresses: BTreeSet<IpAddr> = BTreeSet::new();
            for v6 in [false, true] {
                addresses.insert(from_number(v6, to_number(pool(side, v6).network()) + 1));
            }
            for probe in probes {
                addresses.insert(if probe.opener == side { probe.client } else { probe.server });
            }
            let mut commands = String::from("address flush dev eth0\n");
            for address in &addresses {
                match address {
                    IpAddr::V4(v4) => commands.push_str(&format!("address add {v4}/32 dev eth0\n")),
                    IpAddr::V6(v6) => commands.push_str(&format!("address add {v6}/128 dev eth0 nodad\n")),
                }
            }
            // IPv6 through a gateway: on a plain on-link route the kernel
            // takes the route's first address (fd00:18::) for a subnet
            // anycast address and sends it no ICMPv6 errors, so a reject
            // would not answer it. With no ARP the gateway needs no
            // neighbour discovery.
            commands.push_str(&format!("route replace {} dev eth0\n", pool(side.other(), false)));
            commands.push_str(&format!("route replace {} via fe80::1 dev eth0 onlink\n", pool(side.other(), true)));
            ip_batch(self.namespace(side), &commands);
        }
    }

    /// Removes every table, so that one policy's NAT table does not
    /// outlive it (a restore replaces only the tables it names).
    fn flush_tables(&self) {
        let mut command = self.host.command(&self.nft);
        command.args(["flush", "ruleset"]);
        if let Err(error) = run_ok(&mut command, None, COMMAND_LIMIT) {
            panic!("{error}");
        }
    }

    fn flush_conntrack(&self) {
        for family in ["ipv4", "ipv6"] {
            let mut command = self.host.command(&self.conntrack);
            command.args(["-F", "-f", family]);
            match run(&mut command, None, COMMAND_LIMIT) {
                Ok(ran) if ran.status.success() => {}
                Ok(ran) => {
                    panic!("conntrack -F -f {family} in {} failed: {}{}", self.host.name(), ran.stderr, ran.stdout)
                }
                Err(error) => panic!("{error}"),
            }
        }
    }

    /// Loads the policy's rules the lane's way; problems as text.
    fn load(&self, compiled: &Compiled) -> Vec<String> {
        match self.backend {
            Backend::Iptables => {
                let mut problems = Vec::new();
                let sets = &compiled.outputs["ipsets.restore"];
                if sets.lines().any(|line| !line.starts_with('#')) {
                    let mut command = self.host.command("ipset");
                    command.arg("restore");
                    match run(&mut command, Some(sets.as_bytes()), COMMAND_LIMIT) {
                        Ok(ran) if !ran.status.success() || !ran.stderr.trim().is_empty() => problems
                            .push(format!("`ipset restore` failed or warned ({}):\n{}{}", ran.status, ran.stderr, ran.stdout)),
                        Ok(_) => {}
                        Err(error) => problems.push(error),
                    }
                }
                problems.extend(self.restore(&compiled.outputs["rules.v4"], &compiled.outputs["rules.v6"]));
                problems
            }
            Backend::Nft => {
                // The open rules of pre-opened flows go first.
                self.flush_tables();
                let mut command = self.host.command(&self.nft);
                command.args(["-f", "-"]);
                match run(&mut command, Some(compiled.nft.as_bytes()), COMMAND_LIMIT) {
                    Ok(ran) if !ran.status.success() || !ran.stderr.trim().is_empty() => {
                        vec![format!("`nft -f rules.nft` failed or warned ({}):\n{}{}", ran.status, ran.stderr, ran.stdout)]
                    }
                    Ok(_) => Vec::new(),
                    Err(error) => vec![error],
                }
            }
        }
    }

    /// Loads restore text for both families; problems as text.
    fn restore(&self, v4: &str, v6: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for (program, text) in [("iptables-restore", v4), ("ip6tables-restore", v6)] {
            let mut command = self.host.command(program);
            match run(&mut command, Some(text.as_bytes()), COMMAND_LIMIT) {
                Ok(ran) if !ran.status.success() => {
                    problems.push(format!("`{program}` failed ({}):\n{}{}", ran.status, ran.stderr, ran.stdout))
                }
                Ok(ran) if !ran.stderr.trim().is_empty() => {
                    problems.push(format!("`{program}` loaded the rules but warned:\n{}", ran.stderr))
                }
                Ok(_) => {}
                Err(error) => problems.push(error),
            }
        }
        problems
    }

    /// Runs `probes` against the compiled policy: each side listens on its
    /// server ports, flows to be probed as ESTABLISHED are opened with every
    /// chain accepting, then the policy is loaded and every flow probed at
    /// once.
    pub fn run(&mut self, compiled: &Compiled, probes: &[Probe], deadline: Duration) -> Outcome {
        self.host_agent.reset();
        self.peer_agent.reset();
        self.flush_tables();
        self.flush_conntrack();
        self.addresses(probes);
        let requests: Vec<(Side, Request)> = probes
            .iter()
            .enumerate()
            .map(|(index, probe)| {
                let request = Request {
                    id: index as u32,
                    mode: if probe.kind == Kind::New { Mode::New } else { Mode::Open },
                    proto: probe.proto,
                    source: probe.client,
                    source_port: probe.client_port,
                    destination: probe.server,
                    destination_port: probe.server_port,
                };
                (probe.opener, request)
            })
            .collect();
        for side in [Side::Host, Side::Peer] {
            let mut tcp = BTreeSet::new();
            let mut udp = BTreeSet::new();
            for probe in probes.iter().filter(|probe| probe.server_side() == side) {
                match probe.proto {
                    Proto::Tcp => tcp.insert(probe.server_port),
                    Proto::Udp => udp.insert(probe.server_port),
                    Proto::Ping => false,
                };
            }
            self.agent(side).serve(&tcp, &udp);
        }
        let mut load_problems = Vec::new();
        let preopened: Vec<&(Side, Request)> =
            requests.iter().filter(|(_, request)| request.mode == Mode::Open).collect();
        if !preopened.is_empty() {
            load_problems.extend(self.restore(OPEN, OPEN));
            let seen = self.exchange(&preopened, CONFIRM_DEADLINE);
            for ((_, request), seen) in preopened.iter().zip(seen) {
                if !matches!(seen, Seen::Answered(_)) {
                    panic!("the lab could not open {} with every chain accepting: {seen}", probes[request.id as usize]);
                }
            }
        }
        load_problems.extend(self.load(compiled));
        if load_problems.is_empty() && self.backend == Backend::Iptables {
            for (program, output) in [("iptables-save", "saved.v4"), ("ip6tables-save", "saved.v6")] {
                match self.host.save(program) {
                    Ok(dump) => {
                        let live = saved_form(&dump);
                        if live != compiled.outputs[output] {
                            load_problems.push(format!(
                                "after iptables-restore, {program} does not print {output}:\n{}",
                                diff(output, &compiled.outputs[output], program, &live)
                            ));
                        }
                    }
                    Err(error) => load_problems.push(error),
                }
            }
        }
        let probing: Vec<(Side, Request)> = requests
            .iter()
            .map(|(side, request)| {
                let mut request = request.clone();
                if request.mode == Mode::Open {
                    request.mode = Mode::Again;
                }
                (*side, request)
            })
            .collect();
        let probing: Vec<&(Side, Request)> = probing.iter().collect();
        let seen = self.exchange(&probing, deadline);
        Outcome { seen, load_problems }
    }

    /// Runs requests on both agents at once; what each saw, in order.
    fn exchange(&mut self, requests: &[&(Side, Request)], deadline: Duration) -> Vec<Seen> {
        let mut by_side: BTreeMap<Side, Vec<Request>> = BTreeMap::new();
        for (side, request) in requests {
            by_side.entry(*side).or_default().push(request.clone());
        }
        for (side, list) in &by_side {
            self.agent(*side).start(list, deadline);
        }
        let mut results = BTreeMap::new();
        for side in by_side.keys() {
            results.extend(self.agent(*side).finish(deadline));
        }
        requests
            .iter()
            .map(|(_, request)| {
                results.remove(&request.id).unwrap_or_else(|| panic!("no result for probe {}", request.id))
            })
            .collect()
    }
}

/// Loads rules.sh in a fresh namespace; problems if it fails, warns, or
/// the live tables do not print as saved.v4 / saved.v6.
pub fn script_problems(compiled: &Compiled) -> Vec<String> {
    let directory = TempDir::new("diff-script");
    let script = directory.write("rules.sh", &compiled.outputs["rules.sh"]);
    let namespace = Netns::new("diff-script");
    let mut command = namespace.command("sh");
    command.arg(&script);
    let mut problems = Vec::new();
    match run(&mut command, None, Duration::from_secs(120)) {
        Ok(ran) if !ran.status.success() => {
            problems.push(format!("`sh rules.sh` failed ({}):\n{}{}", ran.status, ran.stderr, ran.stdout));
            return problems;
        }
        Ok(ran) if !ran.stderr.trim().is_empty() => {
            problems.push(format!("`sh rules.sh` loaded the rules but warned:\n{}", ran.stderr))
        }
        Ok(_) => {}
        Err(error) => {
            problems.push(error);
            return problems;
        }
    }
    for (program, output) in [("iptables-save", "saved.v4"), ("ip6tables-save", "saved.v6")] {
        match namespace.save(program) {
            Ok(dump) => {
                let live = saved_form(&dump);
                if live != compiled.outputs[output] {
                    problems.push(format!(
                        "after `sh rules.sh`, {program} does not print {output}:\n{}",
                        diff(output, &compiled.outputs[output], program, &live)
                    ));
                }
            }
            Err(error) => problems.push(error),
        }
    }
    problems
}

// ---------------------------------------------------------------- comparing

/// A flow on which the kernel and the evaluator disagree.
pub struct Mismatch {
    pub probe: Probe,
    pub seen: Seen,
    pub expect: Expect,
}

/// The language's promise about `stateful`, checked on the evaluator's
/// packets (so on the IR itself, which kernel and evaluator share): once a
/// stateful allow accepts a new flow's opener, no later packet of the flow
/// — the client's further packets, the server's answers — falls to a
/// chain's default policy. (A rule the user wrote may still stop them.)
/// Rules with TCP flags are left out: `flags syn stateful` opens with SYN
/// alone by design. A report when the promise is broken.
pub fn stateful_gap(compiled: &Compiled, probe: &Probe) -> Option<String> {
    if probe.kind != Kind::New {
        return None;
    }
    let program = Program::new(compiled.ruleset());
    let prediction = predict(&program, probe);
    let first = prediction.steps.first()?;
    let index = first.evaluation.rule?;
    let rule = &compiled.ruleset().rules[index];
    if first.evaluation.decision != Decision::Accept
        || rule.origin.derived.is_some()
        || rule.matches.tcp_flags.is_some()
    {
        return None;
    }
    let written = compiled.compilation.sources.text(rule.origin.span);
    if !written.split_whitespace().any(|word| word == "stateful") {
        return None;
    }
    let gap = prediction
        .steps
        .iter()
        .skip(1)
        .find(|step| step.evaluation.rule.is_none() && step.evaluation.decision == Decision::Drop)?;
    let mismatch = Mismatch { probe: probe.clone(), seen: Seen::Silent("-".to_string()), expect: prediction.expect };
    Some(format!(
        "`{}` accepts the flow's opener, but its {} falls to the policy of {}:\n{}",
        written.lines().next().unwrap_or("").trim(),
        gap.label,
        gap.evaluation.path[0],
        report(compiled, &mismatch)
    ))
}

/// Removes lines and clauses while `still` holds; the smallest policy.
fn shrink_by(policy: &GenPolicy, budget: Duration, still: impl Fn(&Compiled) -> bool) -> GenPolicy {
    let started = Instant::now();
    let mut current = policy.clone();
    'outer: loop {
        for candidate in current.smaller() {
            if started.elapsed() > budget {
                break 'outer;
            }
            if compile_guarded(&candidate.text()).is_ok_and(|compiled| still(&compiled)) {
                current = candidate;
                continue 'outer;
            }
        }
        break;
    }
    current
}

/// The flows whose outcome the evaluator does not predict.
pub fn mismatches(compiled: &Compiled, probes: &[Probe], seen: &[Seen]) -> Vec<Mismatch> {
    let program = Program::new(compiled.ruleset());
    probes
        .iter()
        .zip(seen)
        .filter_map(|(probe, seen)| {
            let prediction = predict(&program, probe);
            let wrong_client = matches!(seen, Seen::Answered(address)
                if address.parse::<IpAddr>().ok() != Some(probe.client) && probe.proto != Proto::Ping);
            (!prediction.expect.admits(seen) || wrong_client).then(|| Mismatch {
                probe: probe.clone(),
                seen: seen.clone(),
                expect: prediction.expect,
            })
        })
        .collect()
}

/// A mismatch in full: the policy, the flow, both outcomes, every packet.
pub fn report(compiled: &Compiled, mismatch: &Mismatch) -> String {
    let program = Program::new(compiled.ruleset());
    let prediction = predict(&program, &mismatch.probe);
    let mut out = format!(
        "flow:      {}\nkernel:    {}\nevaluator: {}\npackets, as the evaluator sees them:\n",
        mismatch.probe,
        mismatch.seen,
        mismatch.expect.word()
    );
    for step in &prediction.steps {
        let p = &step.packet;
        let interface = match (&p.in_interface, &p.out_interface) {
            (Some(name), _) => format!("in on {name}"),
            (_, Some(name)) => format!("out on {name}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<24} {:?} {interface}, proto {}, {} -> {}, ports {} -> {}, {:?}, icmp type {}, flags {:#04x}: {}\n",
            step.label,
            p.direction,
            p.protocol,
            p.source,
            p.destination,
            p.source_port,
            p.destination_port,
            p.state,
            p.icmp_type,
            p.tcp_flags,
            step.evaluation.decision.word()
        ));
        match step.evaluation.rule {
            Some(index) => out.push_str(&format!("      decided by {}\n", compiled.describe_rule(index))),
            None => out.push_str(&format!("      decided by the policy of {}\n", step.evaluation.path[0])),
        }
    }
    out.push_str(&format!("policy:\n{}", compiled.text));
    out
}

// ---------------------------------------------------------------- running

pub struct Settings {
    pub seed: u64,
    pub policies: usize,
    pub probes: usize,
    pub lanes: usize,
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{name}={text} is not a number")),
        Err(_) => default,
    }
}

impl Settings {
    pub fn from_env() -> Settings {
        let seed = match std::env::var("FWC_DIFF_SEED") {
            Ok(text) if text == "random" => {
                let nanos =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                (nanos as u64) ^ u64::from(std::process::id())
            }
            Ok(text) => {
                let text = text.trim();
                let parsed = match text.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => text.parse(),
                };
                parsed.unwrap_or_else(|_| panic!("FWC_DIFF_SEED={text} is not a number"))
            }
            Err(_) => DEFAULT_SEED,
        };
        Settings {
            seed,
            policies: env_number("FWC_DIFF_POLICIES", 200) as usize,
            probes: env_number("FWC_DIFF_PROBES", 28) as usize,
            lanes: env_number("FWC_DIFF_LANES", 3).max(1) as usize,
        }
    }
}

/// One finding of a run.
enum Finding {
    /// The generator wrote a policy the compiler refused.
    Refused { index: u64, text: String, diagnostics: String },
    /// The rules did not load, or did not print as saved.
    Load { index: u64, text: String, problems: Vec<String> },
    /// A stateful rule's flow falls to a default policy (see `stateful_gap`).
    Stateful { index: u64, report: String },
    /// The kernel and the evaluator disagree (a report per flow).
    Mismatch { index: u64, backend: Backend, policy: GenPolicy, probes: Vec<Probe>, reports: Vec<String> },
}

/// What the flows of a run were, for the summary line: counts by name.
static STATS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn count(probes: &[Probe], seen: &[Seen]) {
    let mut stats = STATS.lock().unwrap_or_else(|p| p.into_inner());
    for (probe, seen) in probes.iter().zip(seen) {
        let family = if probe.client.is_ipv4() { "ipv4" } else { "ipv6" };
        let direction = if probe.opener == Side::Peer { "in" } else { "out" };
        let kind = if probe.kind == Kind::New { "new" } else { "established" };
        for key in [seen.class(), probe.proto.name(), family, direction, kind] {
            *stats.entry(key.to_string()).or_default() += 1;
        }
    }
}

/// One lane per backend, working on the same policy and flows at once.
pub struct Lanes {
    pub iptables: Lane,
    pub nft: Lane,
}

impl Lanes {
    pub fn new() -> Lanes {
        Lanes { iptables: Lane::with_backend(Backend::Iptables), nft: Lane::with_backend(Backend::Nft) }
    }

    pub fn get(&mut self, backend: Backend) -> &mut Lane {
        match backend {
            Backend::Iptables => &mut self.iptables,
            Backend::Nft => &mut self.nft,
        }
    }

    /// Runs the probes through both backends at the same time.
    pub fn run(&mut self, compiled: &Compiled, probes: &[Probe], deadline: Duration) -> [Outcome; 2] {
        let Lanes { iptables, nft } = self;
        std::thread::scope(|scope| {
            let nft = scope.spawn(|| nft.run(compiled, probes, deadline));
            let iptables = iptables.run(compiled, probes, deadline);
            [iptables, nft.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))]
        })
    }
}

/// Tries policy `index`: compiles, loads, probes; the findings.
fn check_policy(lanes: &mut Lanes, settings: &Settings, index: u64) -> (Vec<Finding>, usize) {
    let policy = generate::policy(settings.seed, index);
    let text = policy.text();
    let compiled = match compile_guarded(&text) {
        Ok(compiled) => compiled,
        Err(diagnostics) => return (vec![Finding::Refused { index, text, diagnostics }], 0),
    };
    let mut rng = Rng::new(settings.seed ^ index.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
    let probes = plan(compiled.ruleset(), &mut rng, settings.probes);
    let mut findings = Vec::new();
    let outcomes = lanes.run(&compiled, &probes, BATCH_DEADLINE);
    count(&probes, &outcomes[0].seen);
    let mut problems: Vec<String> = outcomes.iter().flat_map(|outcome| outcome.load_problems.clone()).collect();
    problems.extend(script_problems(&compiled));
    if !problems.is_empty() {
        findings.push(Finding::Load { index, text: text.clone(), problems });
        return (findings, probes.len());
    }
    if let Some(probe) = probes.iter().find(|probe| stateful_gap(&compiled, probe).is_some()) {
        let small = shrink_by(&policy, Duration::from_secs(60), |compiled| stateful_gap(compiled, probe).is_some());
        let compiled = compile(&small.text()).expect("compiled while shrinking");
        let report = stateful_gap(&compiled, probe).expect("held while shrinking");
        findings.push(Finding::Stateful { index, report });
    }
    for (backend, outcome) in Backend::BOTH.into_iter().zip(&outcomes) {
        let found = mismatches(&compiled, &probes, &outcome.seen);
        if found.is_empty() {
            continue;
        }
        // Confirm with time to spare: only what still disagrees counts.
        let again: Vec<Probe> = found.into_iter().map(|mismatch| mismatch.probe).collect();
        let outcome = lanes.get(backend).run(&compiled, &again, CONFIRM_DEADLINE);
        let confirmed = mismatches(&compiled, &again, &outcome.seen);
        if !confirmed.is_empty() {
            let reports = confirmed.iter().map(|mismatch| report(&compiled, mismatch)).collect();
            let probes = confirmed.into_iter().map(|mismatch| mismatch.probe).collect();
            findings.push(Finding::Mismatch { index, backend, policy: policy.clone(), probes, reports });
        }
    }
    (findings, probes.len())
}

/// Removes policy lines while the probe still mismatches; the smallest
/// policy found and its mismatch.
pub fn shrink(lane: &mut Lane, policy: &GenPolicy, probe: &Probe, budget: Duration) -> (GenPolicy, Option<String>) {
    let started = Instant::now();
    let mut current = policy.clone();
    let still = |lane: &mut Lane, candidate: &GenPolicy| -> Option<String> {
        let compiled = compile_guarded(&candidate.text()).ok()?;
        let outcome = lane.run(&compiled, std::slice::from_ref(probe), CONFIRM_DEADLINE);
        if !outcome.load_problems.is_empty() {
            return None;
        }
        let found = mismatches(&compiled, std::slice::from_ref(probe), &outcome.seen);
        found.first().map(|mismatch| report(&compiled, mismatch))
    };
    let mut last = still(lane, &current);
    'outer: loop {
        for candidate in current.smaller() {
            if started.elapsed() > budget {
                break 'outer;
            }
            if let Some(found) = still(lane, &candidate) {
                current = candidate;
                last = Some(found);
                continue 'outer;
            }
        }
        break;
    }
    (current, last)
}

/// The whole differential run.
pub fn run_differential(settings: &Settings) {
    let started = Instant::now();
    eprintln!(
        "differential: seed {:#x}, {} policies, {} flows each, {} lanes (FWC_DIFF_SEED, FWC_DIFF_POLICIES, FWC_DIFF_PROBES, FWC_DIFF_LANES)",
        settings.seed, settings.policies, settings.probes, settings.lanes
    );
    let next = AtomicUsize::new(0);
    let findings: Mutex<Vec<Finding>> = Mutex::new(Vec::new());
    let flows = AtomicUsize::new(0);
    let shrunk: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..settings.lanes {
            scope.spawn(|| {
                let mut lanes = Lanes::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= settings.policies {
                        break;
                    }
                    let (found, count) = check_policy(&mut lanes, settings, index as u64);
                    flows.fetch_add(count, Ordering::Relaxed);
                    for finding in found {
                        if let Finding::Mismatch { index, backend, policy, probes, .. } = &finding {
                            let already = shrunk.lock().unwrap_or_else(|p| p.into_inner()).len();
                            if already < 4 {
                                let lane = lanes.get(*backend);
                                let (small, report) = shrink(lane, policy, &probes[0], Duration::from_secs(120));
                                let text = report.unwrap_or_else(|| {
                                    format!("(did not reproduce while shrinking)\npolicy:\n{}", small.text())
                                });
                                shrunk
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(format!("policy #{index} ({}), shrunk:\n{text}", backend.name()));
                            }
                        }
                        findings.lock().unwrap_or_else(|p| p.into_inner()).push(finding);
                    }
                }
            });
        }
    });
    let findings = findings.into_inner().unwrap_or_else(|p| p.into_inner());
    let flows = flows.into_inner();
    let stats = STATS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let stats: Vec<String> = stats.iter().map(|(name, count)| format!("{name} {count}")).collect();
    eprintln!(
        "differential: {} policies, {flows} flows in {:.1} s ({})",
        settings.policies,
        started.elapsed().as_secs_f64(),
        stats.join(", ")
    );
    if findings.is_empty() {
        assert!(
            flows >= settings.policies * settings.probes.min(20),
            "only {flows} flows were probed for {} policies: the planner finds too few",
            settings.policies
        );
        return;
    }
    let mut report_text = String::new();
    let mut counts = [0usize; 4];
    for finding in &findings {
        match finding {
            Finding::Refused { index, text, diagnostics } => {
                counts[0] += 1;
                if counts[0] <= 3 {
                    report_text.push_str(&format!(
                        "=== policy #{index} was refused by the compiler (the generator or the compiler is wrong):\n{diagnostics}\n{text}\n"
                    ));
                }
            }
            Finding::Load { index, text, problems } => {
                counts[1] += 1;
                if counts[1] <= 3 {
                    report_text.push_str(&format!(
                        "=== policy #{index} does not load as saved:\n{}\npolicy:\n{text}\n",
                        problems.join("\n")
                    ));
                }
            }
            Finding::Stateful { index, report } => {
                counts[3] += 1;
                if counts[3] <= 3 {
                    report_text.push_str(&format!("=== policy #{index}, shrunk: {report}\n"));
                }
            }
            Finding::Mismatch { index, backend, probes, reports, .. } => {
                counts[2] += 1;
                if counts[2] <= 6 {
                    report_text.push_str(&format!(
                        "=== policy #{index}: the kernel ({}) and the evaluator disagree on {} flows; the first:\n{}",
                        backend.name(),
                        probes.len(),
                        reports[0]
                    ));
                    for other in &probes[1..] {
                        report_text.push_str(&format!("  also: {other}\n"));
                    }
                }
            }
        }
    }
    let shrunk = shrunk.into_inner().unwrap_or_else(|p| p.into_inner());
    panic!(
        "differential run (seed {:#x}): {} policies refused by the compiler, {} not loading as saved, {} with flows \
         the kernel and the evaluator disagree on, {} with stateful flows falling to a default policy\n\n{}\n=== \
         minimal policies:\n{}",
        settings.seed,
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        report_text,
        shrunk.join("\n")
    );
}

/// Runs one fixed flow against one fixed policy (a regression case):
/// panics with the full report if the kernel and the evaluator disagree.
pub fn check_case(policy: &str, probes: &[&str]) {
    let compiled = compile_guarded(policy)
        .unwrap_or_else(|diagnostics| panic!("the case does not compile:\n{diagnostics}\n{policy}"));
    let probes: Vec<Probe> = probes.iter().map(|text| Probe::parse(text)).collect();
    let mut batch = Batch::default();
    for probe in &probes {
        assert!(batch.add(probe.clone()), "the case's flows conflict with each other: {probe}");
    }
    let mut lanes = Lanes::new();
    let outcomes = lanes.run(&compiled, &batch.probes, CONFIRM_DEADLINE);
    for (backend, outcome) in Backend::BOTH.into_iter().zip(outcomes) {
        let name = backend.name();
        assert!(outcome.load_problems.is_empty(), "the case does not load ({name}):\n{}", outcome.load_problems.join("\n"));
        let found = mismatches(&compiled, &batch.probes, &outcome.seen);
        if !found.is_empty() {
            let reports: Vec<String> = found.iter().map(|mismatch| report(&compiled, mismatch)).collect();
            panic!("the kernel ({name}) and the evaluator disagree:\n{}", reports.join("\n"));
        }
    }
}

/// A regression case for the language's promise rather than for the
/// evaluator: every flow is answered by the kernel (so a stateful rule's
/// replies get through), and the evaluator agrees.
pub fn check_answered(policy: &str, probes: &[&str]) {
    let compiled = compile_guarded(policy)
        .unwrap_or_else(|diagnostics| panic!("the case does not compile:\n{diagnostics}\n{policy}"));
    let probes: Vec<Probe> = probes.iter().map(|text| Probe::parse(text)).collect();
    let outcomes = Lanes::new().run(&compiled, &probes, CONFIRM_DEADLINE);
    let mut failures = Vec::new();
    for (backend, outcome) in Backend::BOTH.into_iter().zip(&outcomes) {
        let name = backend.name();
        assert!(outcome.load_problems.is_empty(), "the case does not load ({name}):\n{}", outcome.load_problems.join("\n"));
        failures.extend(probes.iter().zip(&outcome.seen).filter(|(_, seen)| !matches!(seen, Seen::Answered(_))).map(
            |(probe, seen)| {
                let expect = predict(&Program::new(compiled.ruleset()), probe).expect;
                let mismatch = Mismatch { probe: probe.clone(), seen: seen.clone(), expect };
                format!("this flow should be answered ({name}):\n{}", report(&compiled, &mismatch))
            },
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_kernel_and_the_evaluator_agree_on_random_policies() {
    run_differential(&Settings::from_env());
}
