//! `test` blocks: each `expect` checked against the compiled rules for every
//! packet it covers, and packets written as text for `fwc query`.

use super::space::{self, Constraint};
use super::{Decision, Evaluation, Packet, Program};
use crate::diagnostics::{Code, Diagnostic};
use crate::ir::{Family, PortRange, Rule, Ruleset, Target};
use crate::lower::values::Variables;
use crate::lower::Context;
use crate::source::Span;
use crate::syntax::ast::{self, ConnectionState, Direction, ExpectVerdict};
use crate::tables;
use ipnet::IpNet;

/// The outcome of one test block.
#[derive(Clone, Debug)]
pub struct TestOutcome {
    pub name: String,
    pub span: Span,
    pub failures: Vec<Diagnostic>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Checks every test block. Expectations that cannot be read (an unknown
/// protocol, a bad address) are failures with their own diagnostic.
pub fn run_tests(ruleset: &Ruleset, tests: &[(ast::TestBlock, Context)], variables: &mut Variables) -> Vec<TestOutcome> {
    let program = Program::new(ruleset);
    tests
        .iter()
        .map(|(test, _)| {
            let mut failures = Vec::new();
            for expect in &test.expects {
                if let Some(failure) = check_expect(&program, expect, variables) {
                    failures.push(failure);
                }
            }
            TestOutcome { name: test.name.value.clone(), span: test.span, failures }
        })
        .collect()
}

/// What a packet description (an `expect` or a query) says, as a constraint.
/// Turns a description into a constraint; `Err` carries the diagnostics.
pub fn constraint_of(packet: &ast::Packet, variables: &mut Variables) -> Result<Constraint, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut constraint = Constraint { state: packet.state.as_ref().map(|state| state.value), ..Constraint::default() };
    if let Some(clause) = &packet.protocol {
        let name = &clause.protocol.value;
        let number = tables::PROTOCOL_KEYWORDS
            .iter()
            .find(|(keyword, _)| keyword == name)
            .map(|(_, number)| *number)
            .or_else(|| name.parse::<u8>().ok());
        match number {
            Some(number) => constraint.protocol = Some(number),
            None => diagnostics.push(
                Diagnostic::new(Code::BadPacket, format!("`{name}` is not a protocol"))
                    .primary(clause.protocol.span, "unknown protocol"),
            ),
        }
        if number == Some(1) {
            constraint.families = Some(vec![Family::V4]);
        } else if number == Some(58) {
            constraint.families = Some(vec![Family::V6]);
        }
        if let Some(ports) = &clause.ports {
            let icmp = matches!(number, Some(1 | 58));
            match (icmp, ports.items.as_slice()) {
                (_, _) if ports.negated => diagnostics.push(
                    Diagnostic::new(Code::BadPacket, "an expectation's ports cannot be negated")
                        .primary(ports.span, "`not` here")
                        .note("name the ports the expectation is about; an omitted port means every port"),
                ),
                (true, [ast::PortItem::Name(type_name)]) => {
                    let table = if number == Some(1) { tables::ICMP_TYPES } else { tables::ICMPV6_TYPES };
                    match table.iter().find(|(candidate, _)| *candidate == type_name.value) {
                        Some((_, kind)) => constraint.icmp_type = Some(*kind),
                        None => diagnostics.push(
                            Diagnostic::new(Code::BadPacket, format!("`{}` is not an ICMP type", type_name.value))
                                .primary(type_name.span, "unknown type"),
                        ),
                    }
                }
                (true, [ast::PortItem::Single(kind)]) if kind.value <= 255 => constraint.icmp_type = Some(kind.value as u8),
                (true, _) => diagnostics.push(
                    Diagnostic::new(Code::BadPacket, "a packet has one ICMP type")
                        .primary(ports.span, "expected one type"),
                ),
                (false, items) => {
                    // Ports, ranges and lists: the expectation holds for each.
                    let mut ranges = Vec::new();
                    for item in items {
                        match item {
                            ast::PortItem::Single(port) if port.value <= 65535 => {
                                ranges.push(PortRange { low: port.value as u16, high: port.value as u16 })
                            }
                            ast::PortItem::Range(_, low, high) if low.value <= high.value && high.value <= 65535 => {
                                ranges.push(PortRange { low: low.value as u16, high: high.value as u16 })
                            }
                            other => diagnostics.push(
                                Diagnostic::new(Code::BadPacket, "expected port numbers or ranges")
                                    .primary(other.span(), "not a port in 0-65535"),
                            ),
                        }
                    }
                    constraint.destination_ports = Some(ranges);
                }
            }
        }
    }
    for (addresses, slot) in
        [(packet.from.as_ref(), &mut constraint.sources), (packet.to.as_ref(), &mut constraint.destinations)]
    {
        let Some(addresses) = addresses else { continue };
        if addresses.negated {
            diagnostics.push(
                Diagnostic::new(Code::BadPacket, "a packet's address cannot be negated")
                    .primary(addresses.span, "`not` here")
                    .note("name the addresses the expectation is about"),
            );
            continue;
        }
        let mut flat = Vec::new();
        for item in &addresses.items {
            variables.flatten_addresses(item, &mut flat, &mut diagnostics);
        }
        *slot = Some(flat.into_iter().map(|address| address.net).collect::<Vec<IpNet>>());
    }
    let families_of = |blocks: &Option<Vec<IpNet>>| {
        blocks.as_ref().map(|blocks| {
            Family::BOTH.into_iter().filter(|family| blocks.iter().any(|net| Family::of(net) == *family)).collect::<Vec<_>>()
        })
    };
    for families in [families_of(&constraint.sources), families_of(&constraint.destinations)].into_iter().flatten() {
        let current = constraint.families.take().unwrap_or_else(|| Family::BOTH.to_vec());
        constraint.families = Some(current.into_iter().filter(|family| families.contains(family)).collect());
    }
    if let Some(on) = &packet.on {
        let mut name = |interface: &ast::Interface, diagnostics: &mut Vec<Diagnostic>| match &interface.value {
            ast::InterfaceValue::Name(name) if !interface.negated => Some(name.clone()),
            ast::InterfaceValue::Variable(variable) => {
                let spanned = ast::Spanned { span: interface.span, value: variable.clone() };
                match variables.lookup(&spanned, diagnostics) {
                    Some(crate::lower::values::VariableValue::Interface(name)) => Some(name.clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        let first = name(&on.first, &mut diagnostics);
        let second = on.second.as_ref().and_then(|second| name(second, &mut diagnostics));
        match packet.direction.value {
            Direction::In => constraint.in_interface = first,
            Direction::Out => constraint.out_interface = first,
            Direction::Forward => {
                constraint.in_interface = first;
                constraint.out_interface = second;
            }
        }
    }
    if diagnostics.is_empty() {
        Ok(constraint)
    } else {
        Err(diagnostics)
    }
}

fn check_expect(program: &Program, expect: &ast::Expect, variables: &mut Variables) -> Option<Diagnostic> {
    let constraint = match constraint_of(&expect.packet, variables) {
        Ok(constraint) => constraint,
        Err(mut diagnostics) => return diagnostics.drain(..).next(),
    };
    if constraint.families.as_ref().is_some_and(Vec::is_empty) {
        return Some(
            Diagnostic::new(Code::BadPacket, "no packet has these addresses")
                .primary(expect.span, "the addresses are of different families"),
        );
    }
    let wanted = match expect.verdict.value {
        ExpectVerdict::Allow => Decision::Accept,
        ExpectVerdict::Deny => Decision::Drop,
        ExpectVerdict::Reject => Decision::Reject,
    };
    let mut counterexample: Option<(Packet, Evaluation)> = None;
    let mut checked = 0usize;
    let result = space::for_each_packet(program.ruleset, expect.packet.direction.value, &constraint, |packet| {
        checked += 1;
        let evaluation = program.evaluate(packet);
        if evaluation.decision == wanted {
            return true;
        }
        counterexample = Some((packet.clone(), evaluation));
        false
    });
    if let Err(count) = result {
        return Some(
            Diagnostic::new(Code::BadPacket, format!("this expectation covers {count} kinds of packet, too many to check"))
                .primary(expect.span, "too broad")
                .note("name the protocol, port or addresses the expectation is about"),
        );
    }
    let (packet, evaluation) = counterexample?;
    let mut diagnostic = Diagnostic::new(
        Code::TestFailed,
        format!("expected {}, but {} is {}", expect.verdict.value_word(), describe_packet(&packet), past(evaluation.decision)),
    )
    .primary(expect.span, format!("this packet is {}", past(evaluation.decision)));
    diagnostic = match evaluation.rule {
        Some(index) => {
            let rule = &program.ruleset.rules[index];
            let mut diagnostic =
                diagnostic.secondary(rule.origin.span, format!("{} by this rule", past(evaluation.decision)));
            for via in &rule.origin.via {
                diagnostic = diagnostic.secondary(*via, "which comes from here");
            }
            diagnostic
        }
        None => diagnostic.note(format!(
            "no rule matched; the {} policy of {} decided",
            match evaluation.decision {
                Decision::Accept => "accept",
                _ => "drop",
            },
            evaluation.path.first().map_or("the chain", String::as_str)
        )),
    };
    if evaluation.path.len() > 1 {
        diagnostic = diagnostic.note(format!("path: {}", evaluation.path.join(" → ")));
    }
    Some(diagnostic)
}

fn past(decision: Decision) -> &'static str {
    match decision {
        Decision::Accept => "allowed",
        Decision::Drop => "denied",
        Decision::Reject => "rejected",
    }
}

impl ast::Spanned<ExpectVerdict> {
    fn value_word(&self) -> &'static str {
        match self.value {
            ExpectVerdict::Allow => "allow",
            ExpectVerdict::Deny => "deny",
            ExpectVerdict::Reject => "reject",
        }
    }
}

/// A packet in the words of an `expect` line, plus what they leave implicit.
pub fn describe_packet(packet: &Packet) -> String {
    let mut words = vec![packet.direction.keyword().to_string()];
    match (&packet.in_interface, &packet.out_interface, packet.direction) {
        (Some(name), _, Direction::In) | (_, Some(name), Direction::Out) => words.push(format!("on {name}")),
        (Some(input), Some(output), Direction::Forward) => words.push(format!("on {input} -> {output}")),
        _ => {}
    }
    let protocol = match (packet.protocol, packet.family) {
        (1, _) => "icmp".to_string(),
        (58, _) => "icmpv6".to_string(),
        (number, _) => tables::PROTOCOL_KEYWORDS
            .iter()
            .find(|(_, n)| *n == number)
            .map_or(number.to_string(), |(name, _)| name.to_string()),
    };
    words.push(protocol);
    if crate::ir::Protocol(packet.protocol).has_ports() {
        words.push(packet.destination_port.to_string());
    } else if packet.protocol == 1 || packet.protocol == 58 {
        words.push(format!("type {}", packet.icmp_type));
    }
    words.push(format!("from {}", packet.source));
    words.push(format!("to {}", packet.destination));
    if crate::ir::Protocol(packet.protocol).has_ports() {
        words.push(format!("sport {}", packet.source_port));
    }
    words.push(
        match packet.state {
            ConnectionState::New => "new",
            ConnectionState::Established => "established",
            ConnectionState::Related => "related",
            ConnectionState::Invalid => "invalid",
            ConnectionState::Untracked => "untracked",
        }
        .to_string(),
    );
    format!("`{}`", words.join(" "))
}

/// Whether a rule is one a verdict can come from (for reports).
pub fn decides(rule: &Rule) -> bool {
    matches!(rule.target, Target::Accept | Target::Drop | Target::Reject(_))
}
