//! Checks about the host as a whole, answered with the evaluator: can an
//! administrator still get in, can IPv6 neighbours still find the host, do
//! replies get back, is every chain used.

use crate::diagnostics::{Code, Diagnostic};
use crate::eval::space::{self, Constraint};
use crate::eval::{Decision, Program};
use crate::ir::*;
use crate::source::Span;
use crate::syntax::ast::{ConnectionState, Direction};
use std::collections::{HashMap, HashSet};

/// Spans a few host checks point at, from lowering.
#[derive(Clone, Debug, Default)]
pub struct HostContext {
    /// Files that are stdlib modules (their rules are not the user's).
    pub stdlib_files: Vec<usize>,
    /// `policy in drop` lines by family-independent direction.
    pub input_policy: Option<Span>,
    pub output_policy: Option<Span>,
    /// `let ssh_port = …`: the management port, and where it is defined.
    pub ssh_port: Option<(u16, Span)>,
}

/// Whether any packet the constraint covers is allowed. When the space is
/// too large to enumerate, assumes it is (the checks then stay quiet).
fn any_allowed(program: &Program, direction: Direction, constraint: &Constraint) -> bool {
    let mut allowed = false;
    let mut checked = 0usize;
    let complete = space::for_each_packet(program.ruleset, direction, constraint, |packet| {
        checked += 1;
        allowed = program.evaluate(packet).decision == Decision::Accept;
        !allowed && checked < PER_QUESTION
    });
    allowed || complete.is_err() || checked >= PER_QUESTION
}

/// Packets one question may evaluate before the answer is taken as "yes".
const PER_QUESTION: usize = 5_000;

/// Rules the per-rule checks (return path, family gaps) look at, at most.
const PER_RULE_CHECKS: usize = 500;

pub fn host_checks(ruleset: &Ruleset, context: &HostContext) -> Vec<Diagnostic> {
    let program = Program::new(ruleset);
    let mut diagnostics = Vec::new();

    // lockout: under `policy in drop`, a new SSH connection must get in
    // from somewhere, over some family.
    if ruleset.policies.input == Verdict::Drop {
        let port = context.ssh_port.map_or(22, |(port, _)| port);
        let constraint = Constraint {
            protocol: Some(Protocol::TCP.0),
            destination_ports: Some(vec![PortRange { low: port, high: port }]),
            state: Some(ConnectionState::New),
            ..Constraint::default()
        };
        if !any_allowed(&program, Direction::In, &constraint) {
            let span = context.input_policy.or(context.ssh_port.map(|(_, span)| span));
            let mut diagnostic = Diagnostic::new(
                Code::Lockout,
                format!("no rule lets a new SSH connection in (tcp {port}): applied over SSH, this policy cuts you off"),
            );
            if let Some(span) = span {
                diagnostic = diagnostic.primary(span, "everything else is dropped");
            }
            if let Some((_, span)) = context.ssh_port {
                diagnostic = diagnostic.secondary(span, "the management port");
            }
            let module = if port == 22 { " or `use ssh-in`" } else { "" };
            diagnostics.push(diagnostic.note(format!(
                "allow it, e.g. `allow in tcp {port} from $admins stateful`{module}; on a host without sshd, `ignore lockout \"reason\"`"
            )));
        }
    }

    // IPv6 neighbour discovery under drop policies: without it the host
    // cannot resolve its neighbours' addresses and falls off the network.
    {
        for (direction, policy, span) in [
            (Direction::In, ruleset.policies.input, context.input_policy),
            (Direction::Out, ruleset.policies.output, context.output_policy),
        ] {
            if policy != Verdict::Drop {
                continue;
            }
            let missing: Vec<&str> = [(135u8, "nd-neighbor-solicit"), (136, "nd-neighbor-advert")]
                .into_iter()
                .filter(|(kind, _)| {
                    let constraint = Constraint {
                        families: Some(vec![Family::V6]),
                        protocol: Some(Protocol::ICMPV6.0),
                        icmp_type: Some(*kind),
                        state: Some(ConnectionState::Untracked),
                        ..Constraint::default()
                    };
                    let with_state = |state| Constraint { state: Some(state), ..constraint.clone() };
                    // Neighbour discovery is not connection-tracked, but
                    // accept a policy that lets it in as new as well.
                    !any_allowed(&program, direction, &constraint)
                        && !any_allowed(&program, direction, &with_state(ConnectionState::New))
                })
                .map(|(_, name)| name)
                .collect();
            if missing.is_empty() {
                continue;
            }
            let mut diagnostic = Diagnostic::new(
                Code::NoNeighbourDiscovery,
                format!(
                    "IPv6 neighbour discovery cannot get {} ({} dropped): the host falls off an IPv6 network",
                    if direction == Direction::In { "in" } else { "out" },
                    missing.join(", ")
                ),
            );
            if let Some(span) = span {
                diagnostic = diagnostic.primary(span, "this drops it");
            }
            diagnostics.push(diagnostic.note("`use icmpv6` (part of baseline) allows what an IPv6 host needs"));
        }
    }

    // Per-rule questions are bounded so large policies still build fast.
    if ruleset.rules.len() <= PER_RULE_CHECKS {
        diagnostics.extend(return_paths(ruleset, &program, context));
        diagnostics.extend(family_gaps(ruleset, &program, context));
    }

    // unused chains, and chains jumped to that hold nothing.
    let mut jumped_to: HashSet<&str> = HashSet::new();
    let mut filled: HashSet<&str> = HashSet::new();
    for rule in &ruleset.rules {
        if let Target::Jump(target) = &rule.target {
            jumped_to.insert(target);
        }
        if let ChainRef::User(chain) = &rule.chain {
            filled.insert(chain);
        }
    }
    for chain in &ruleset.chains {
        if chain.name.ends_with(".reply") {
            continue;
        }
        let jumped = jumped_to.contains(chain.name.as_str());
        let empty = !filled.contains(chain.name.as_str());
        if !jumped {
            diagnostics.push(
                Diagnostic::new(Code::UnusedChain, format!("chain `{}` is never jumped to", chain.name))
                    .primary(chain.span, "defined here")
                    .note(format!("jump to it (`jump in … to {}`) or remove it", chain.name)),
            );
        } else if empty && !chain.keep {
            diagnostics.push(
                Diagnostic::new(Code::UnusedChain, format!("chain `{}` is jumped to but holds no rules", chain.name))
                    .primary(chain.span, "empty")
                    .note("packets only pass through it; add its rules, or `keep` if another program fills it"),
            );
        }
    }
    diagnostics
}

/// The rules a check looks at: the user's own top-level allows of one flow
/// direction, over ports, without `stateful` (their replies are the
/// question), one per written rule and family.
fn plain_allows<'a>(ruleset: &'a Ruleset, context: &HostContext) -> Vec<&'a Rule> {
    let mut seen: HashSet<(Span, Family)> = HashSet::new();
    ruleset
        .rules
        .iter()
        .filter(|rule| {
            rule.table == Table::Filter
                && rule.target == Target::Accept
                && rule.origin.derived.is_none()
                && matches!(rule.chain, ChainRef::Input | ChainRef::Output)
                && matches!(rule.matches.protocol, Some(Protocol::TCP | Protocol::UDP))
                && rule.matches.destination_ports.as_ref().is_some_and(|ports| !ports.negated)
                && rule.matches.states.is_none()
                && !context.stdlib_files.contains(&rule.origin.span.file)
        })
        .filter(|rule| {
            seen.insert((rule.origin.span, rule.family))
        })
        .collect()
}

/// return-path: an allow without `stateful` whose replies nothing lets back.
fn return_paths(ruleset: &Ruleset, program: &Program, context: &HostContext) -> Vec<Diagnostic> {
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut reported: HashSet<Span> = HashSet::new();
    for rule in plain_allows(ruleset, context) {
        if reported.contains(&rule.origin.span) {
            continue;
        }
        let (reply_direction, reply_policy) = match rule.chain {
            ChainRef::Input => (Direction::Out, "out"),
            _ => (Direction::In, "in"),
        };
        let ports = rule.matches.destination_ports.as_ref().expect("filtered").value.clone();
        let constraint = Constraint {
            families: Some(vec![rule.family]),
            protocol: rule.matches.protocol.map(|protocol| protocol.0),
            source_ports: Some(ports),
            destinations: rule.matches.source.as_ref().filter(|source| !source.negated).map(|source| vec![source.value]),
            state: Some(ConnectionState::Established),
            ..Constraint::default()
        };
        if !any_allowed(program, reply_direction, &constraint) {
            reported.insert(rule.origin.span);
            diagnostics.push(
                Diagnostic::new(Code::ReturnPath, "the replies to this flow are dropped")
                    .primary(rule.origin.span, "lets the first packets through, but not the answers")
                    .note(format!("nothing lets them back (`policy {reply_policy} drop`); add `stateful`, which allows exactly the replies")),
            );
        }
    }
    diagnostics
}

/// ipv6-gap / ipv4-gap: a service opened over one family only, in a
/// policy that is otherwise dual-stack, unless narrowed with `ipv4`/`ipv6`.
fn family_gaps(ruleset: &Ruleset, program: &Program, context: &HostContext) -> Vec<Diagnostic> {
    let user_family = |family: Family| {
        ruleset.rules.iter().any(|rule| {
            rule.family == family && rule.origin.derived.is_none() && !context.stdlib_files.contains(&rule.origin.span.file)
        })
    };
    if !(user_family(Family::V4) && user_family(Family::V6)) {
        return Vec::new();
    }
    let mut diagnostics = Vec::new();
    let mut reported: HashSet<Span> = HashSet::new();
    let allows = plain_allows(ruleset, context);
    let stateful = ruleset.rules.iter().filter(|rule| {
        rule.table == Table::Filter
            && rule.target == Target::Accept
            && rule.origin.derived.is_none()
            && rule.chain == ChainRef::Input
            && rule.matches.destination_ports.is_some()
            && !context.stdlib_files.contains(&rule.origin.span.file)
    });
    // The families each written rule became, looked up once per candidate.
    let mut families_of: HashMap<Span, Vec<Family>> = HashMap::new();
    for rule in &ruleset.rules {
        let families = families_of.entry(rule.origin.span).or_default();
        if !families.contains(&rule.family) {
            families.push(rule.family);
        }
    }
    for rule in allows.into_iter().filter(|rule| rule.chain == ChainRef::Input).chain(stateful) {
        if rule.origin.narrowed || reported.contains(&rule.origin.span) {
            continue;
        }
        let families = &families_of[&rule.origin.span];
        if families.contains(&Family::V4) && families.contains(&Family::V6) {
            continue;
        }
        let other = if rule.family == Family::V4 { Family::V6 } else { Family::V4 };
        let ports = rule.matches.destination_ports.as_ref().expect("filtered").value.clone();
        let constraint = Constraint {
            families: Some(vec![other]),
            protocol: rule.matches.protocol.map(|protocol| protocol.0),
            destination_ports: Some(ports),
            state: Some(ConnectionState::New),
            ..Constraint::default()
        };
        if any_allowed(program, Direction::In, &constraint) {
            continue;
        }
        reported.insert(rule.origin.span);
        let (code, only, missing) = match rule.family {
            Family::V4 => (Code::Ipv6Gap, "IPv4", "IPv6"),
            Family::V6 => (Code::Ipv4Gap, "IPv6", "IPv4"),
        };
        diagnostics.push(
            Diagnostic::new(code, format!("this service is reachable over {only} only"))
                .primary(rule.origin.span, format!("no {missing} client can reach it"))
                .note(format!(
                    "its addresses are all {only}: add the {missing} ones, or write `{}` to say it is on purpose",
                    if rule.family == Family::V4 { "ipv4" } else { "ipv6" }
                )),
        );
    }
    diagnostics
}

/// A rule already reported as never reached does not also get a family-gap
/// warning: no client of either family reaches it, and the shadowed-rule
/// finding is the one to act on.
pub fn drop_gaps_of_shadowed(diagnostics: &mut Vec<Diagnostic>) {
    let primary = |diagnostic: &Diagnostic| diagnostic.labels.iter().find(|label| label.primary).map(|label| label.span);
    let shadowed: HashSet<Span> =
        diagnostics.iter().filter(|diagnostic| diagnostic.code == Code::ShadowedRule).filter_map(primary).collect();
    diagnostics.retain(|diagnostic| {
        !matches!(diagnostic.code, Code::Ipv6Gap | Code::Ipv4Gap) || primary(diagnostic).is_none_or(|span| !shadowed.contains(&span))
    });
}
