//! The evaluator: what the compiled rules do with one packet.
//!
//! A pure function of the IR that follows netfilter: rules in order, first
//! match decides, jumps and returns, a chain's end returns to its caller, a
//! built-in chain's end applies its policy. LOG rules record and go on.
//! Limits are taken as not exceeded (one packet is always under a limit).
//!
//! `space` enumerates the packets an expectation covers, one per class of
//! packets the rules cannot tell apart, so "every value" is checked exactly.

pub mod expect;
pub mod query;
pub mod space;

use crate::ir::*;
use crate::syntax::ast::{ConnectionState, Direction};
use std::net::IpAddr;

/// A packet as the filter sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    pub family: Family,
    pub direction: Direction,
    pub protocol: u8,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: u16,
    pub destination_port: u16,
    /// `None` where the chain has no such interface (OUTPUT has no
    /// arrival interface, INPUT no leaving one).
    pub in_interface: Option<String>,
    pub out_interface: Option<String>,
    pub state: ConnectionState,
    pub icmp_type: u8,
    pub tcp_flags: u8,
    pub mac_source: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Drop,
    Reject,
}

impl Decision {
    pub fn word(self) -> &'static str {
        match self {
            Decision::Accept => "allow",
            Decision::Drop => "deny",
            Decision::Reject => "reject",
        }
    }
}

/// The outcome for one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    /// The rule that decided (index into `Ruleset::rules`); `None` when the
    /// chain's policy did.
    pub rule: Option<usize>,
    /// The chains entered, in order, starting with the built-in one.
    pub path: Vec<String>,
    /// LOG rules the packet passed (indices).
    pub logged: Vec<usize>,
    /// The NAT rule that translates the packet, if any (index).
    pub translation: Option<usize>,
}

/// The rules of each chain, indexed once, for fast repeated evaluation.
pub struct Program<'a> {
    pub ruleset: &'a Ruleset,
    chains: std::collections::HashMap<(Family, Table, ChainRef), Vec<usize>>,
}

impl<'a> Program<'a> {
    pub fn new(ruleset: &'a Ruleset) -> Program<'a> {
        let mut chains: std::collections::HashMap<(Family, Table, ChainRef), Vec<usize>> =
            std::collections::HashMap::new();
        for (index, rule) in ruleset.rules.iter().enumerate() {
            chains.entry((rule.family, rule.table, rule.chain.clone())).or_default().push(index);
        }
        Program { ruleset, chains }
    }

    fn rules(&self, family: Family, table: Table, chain: &ChainRef) -> &[usize] {
        self.chains.get(&(family, table, chain.clone())).map_or(&[], Vec::as_slice)
    }

    pub fn evaluate(&self, packet: &Packet) -> Evaluation {
        self.run(packet, &mut |_| {})
    }

    /// Like `evaluate`, also calling `matched` with each rule the packet
    /// reaches and matches on its way, in order (LOG, jumps and returns too).
    pub fn trace(&self, packet: &Packet, matched: &mut dyn FnMut(usize)) -> Evaluation {
        self.run(packet, matched)
    }

    fn run(&self, packet: &Packet, matched: &mut dyn FnMut(usize)) -> Evaluation {
        let builtin = match packet.direction {
            Direction::In => ChainRef::Input,
            Direction::Out => ChainRef::Output,
            Direction::Forward => ChainRef::Forward,
        };
        let mut evaluation = Evaluation {
            decision: Decision::Accept,
            rule: None,
            path: vec![builtin.name().to_string()],
            logged: Vec::new(),
            translation: self.translation(packet),
        };
        // (chain, next rule position) frames; the kernel's jump stack.
        let mut stack: Vec<(ChainRef, usize)> = vec![(builtin.clone(), 0)];
        while let Some((chain, position)) = stack.pop() {
            let rules = self.rules(packet.family, Table::Filter, &chain);
            let mut next = position;
            let mut jumped = false;
            while next < rules.len() {
                let index = rules[next];
                next += 1;
                let rule = &self.ruleset.rules[index];
                if !matches(&rule.matches, packet) {
                    continue;
                }
                matched(index);
                match &rule.target {
                    Target::Accept | Target::Drop | Target::Reject(_) => {
                        evaluation.decision = match rule.target {
                            Target::Accept => Decision::Accept,
                            Target::Drop => Decision::Drop,
                            _ => Decision::Reject,
                        };
                        evaluation.rule = Some(index);
                        return evaluation;
                    }
                    Target::Log { .. } => evaluation.logged.push(index),
                    Target::Return => break,
                    Target::Jump(target) => {
                        stack.push((chain.clone(), next));
                        stack.push((ChainRef::User(target.clone()), 0));
                        evaluation.path.push(target.clone());
                        jumped = true;
                        break;
                    }
                    // NAT targets live in the nat table, never here.
                    Target::Masquerade { .. } | Target::Snat { .. } | Target::Dnat { .. } | Target::Redirect { .. } => {}
                }
            }
            if jumped {
                continue;
            }
            if chain.is_builtin() {
                // Falling off (or returning from) a built-in chain: its policy.
                let policy = self.ruleset.policies.of(&chain).unwrap_or(Verdict::Accept);
                evaluation.decision = match policy {
                    Verdict::Accept => Decision::Accept,
                    Verdict::Drop => Decision::Drop,
                };
                evaluation.rule = None;
                return evaluation;
            }
        }
        evaluation
    }

    /// The first NAT rule that applies to a new connection, if any.
    fn translation(&self, packet: &Packet) -> Option<usize> {
        if packet.state != ConnectionState::New {
            return None;
        }
        let chains: &[ChainRef] = match packet.direction {
            Direction::In => &[ChainRef::Prerouting],
            Direction::Forward => &[ChainRef::Prerouting, ChainRef::Postrouting],
            Direction::Out => &[ChainRef::Output, ChainRef::Postrouting],
        };
        chains.iter().find_map(|chain| {
            self.rules(packet.family, Table::Nat, chain).iter().copied().find(|index| {
                let rule = &self.ruleset.rules[*index];
                !matches!(rule.target, Target::Log { .. }) && matches(&rule.matches, packet)
            })
        })
    }
}

fn negate(negated: bool, result: bool) -> bool {
    result != negated
}

/// Whether a rule's matches hold for a packet.
pub fn matches(matches: &Matches, packet: &Packet) -> bool {
    if let Some(source) = &matches.source {
        if !negate(source.negated, source.value.contains(&packet.source)) {
            return false;
        }
    }
    if let Some(destination) = &matches.destination {
        if !negate(destination.negated, destination.value.contains(&packet.destination)) {
            return false;
        }
    }
    if let Some(interface) = &matches.in_interface {
        if !negate(interface.negated, interface_matches(&interface.value, packet.in_interface.as_deref())) {
            return false;
        }
    }
    if let Some(interface) = &matches.out_interface {
        if !negate(interface.negated, interface_matches(&interface.value, packet.out_interface.as_deref())) {
            return false;
        }
    }
    if let Some(protocol) = matches.protocol {
        if protocol.0 != packet.protocol {
            return false;
        }
    }
    for (ports, port) in
        [(&matches.source_ports, packet.source_port), (&matches.destination_ports, packet.destination_port)]
    {
        if let Some(ports) = ports {
            let inside = ports.value.iter().any(|range| range.low <= port && port <= range.high);
            if !negate(ports.negated, inside) {
                return false;
            }
        }
    }
    if let Some(icmp) = &matches.icmp_type {
        if !negate(icmp.negated, icmp.value.kind == packet.icmp_type) {
            return false;
        }
    }
    if let Some(flags) = &matches.tcp_flags {
        let holds = packet.tcp_flags & flags.value.mask == flags.value.set;
        if !negate(flags.negated, holds) {
            return false;
        }
    }
    if let Some(mac) = &matches.mac_source {
        let holds = packet.mac_source.as_deref() == Some(mac.value.as_str());
        if !negate(mac.negated, holds) {
            return false;
        }
    }
    if let Some(states) = &matches.states {
        if !negate(states.negated, states.value.contains(States::of(packet.state))) {
            return false;
        }
    }
    true
}

/// iptables' interface match: exact, or a prefix when the name ends in `+`.
/// A packet without that interface has the empty name.
fn interface_matches(pattern: &str, interface: Option<&str>) -> bool {
    let name = interface.unwrap_or("");
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}
