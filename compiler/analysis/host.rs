//! Checks about the host as a whole: can an administrator still get in,
//! can IPv6 neighbours still find the host, do replies get back, is every
//! chain used. Each question is answered exactly over the flattened
//! chains the order analysis cuts into regions (`accepts_some`).

use super::boxes::{number, DESTINATION, DESTINATION_PORT, ICMP_TYPE, IN_INTERFACE, OUT_INTERFACE, PROTOCOL, SOURCE, SOURCE_PORT, STATE};
use super::partition::{self, Packets as Region};
use crate::diagnostics::{Code, Diagnostic};
use crate::eval::space::Constraint;
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

/// The built-in chains the host checks ask about, each built the first
/// time it is asked about.
struct Chains<'a> {
    ruleset: &'a Ruleset,
    /// Each chain with the code of the loopback interface in it.
    built: Vec<((Family, ChainRef), partition::Chain, Option<u128>)>,
}

impl Chains<'_> {
    fn get(&mut self, family: Family, builtin: ChainRef) -> (&mut partition::Chain, Option<u128>) {
        let key = (family, builtin);
        let index = match self.built.iter().position(|(built, _, _)| *built == key) {
            Some(index) => index,
            None => {
                let (chain, loopback) = super::chain_of(self.ruleset, family, &key.1);
                self.built.push((key, chain, loopback));
                self.built.len() - 1
            }
        };
        let (_, chain, loopback) = &mut self.built[index];
        (chain, *loopback)
    }
}

/// Whether any packet the constraint covers is allowed, exactly, over the
/// flattened chains (as the order analysis sees them; limits taken as not
/// exceeded, as the evaluator takes them). Packets on the loopback
/// interface are left out: they come from the host itself, as in the
/// evaluator's classes. When a question takes too long to answer,
/// assumes it is (the checks then stay quiet).
fn any_allowed(chains: &mut Chains, direction: Direction, constraint: &Constraint) -> bool {
    debug_assert!(constraint.in_interface.is_none() && constraint.out_interface.is_none(), "no host check names an interface");
    let (builtin, interfaces): (ChainRef, &[usize]) = match direction {
        Direction::In => (ChainRef::Input, &[IN_INTERFACE]),
        Direction::Out => (ChainRef::Output, &[OUT_INTERFACE]),
        Direction::Forward => (ChainRef::Forward, &[IN_INTERFACE, OUT_INTERFACE]),
    };
    for family in constraint.families.clone().unwrap_or_else(|| Family::BOTH.to_vec()) {
        let (chain, loopback) = chains.get(family, builtin.clone());
        let mut regions = regions(chain.whole(), family, constraint);
        // Code 0 is "no interface": the loopback's is above it.
        if let Some(loopback) = loopback {
            for field in interfaces {
                let (low, high) = chain.whole()[*field];
                let others = [(low, loopback - 1), (loopback + 1, high)].into_iter().filter(|(low, high)| low <= high);
                regions = narrowed(&regions, *field, others);
            }
        }
        for region in regions {
            if chain.accepts_some(&region, PER_QUESTION) != Some(false) {
                return true;
            }
        }
    }
    false
}

/// The packets of one family a constraint covers, as regions of the
/// family's packet space (a union: one region per block and port range).
fn regions(whole: Region, family: Family, constraint: &Constraint) -> Vec<Region> {
    let mut region = whole;
    if let Some(protocol) = constraint.protocol {
        region[PROTOCOL] = (u128::from(protocol), u128::from(protocol));
    }
    if let Some(kind) = constraint.icmp_type {
        region[ICMP_TYPE] = (u128::from(kind), u128::from(kind));
    }
    if let Some(state) = constraint.state {
        let code = u128::from(States::of(state).0.trailing_zeros());
        region[STATE] = (code, code);
    }
    let mut regions = vec![region];
    for (field, ports) in [(SOURCE_PORT, &constraint.source_ports), (DESTINATION_PORT, &constraint.destination_ports)] {
        if let Some(ports) = ports {
            let ranges = ports.iter().map(|range| (u128::from(range.low), u128::from(range.high)));
            regions = narrowed(&regions, field, ranges);
        }
    }
    for (field, blocks) in [(SOURCE, &constraint.sources), (DESTINATION, &constraint.destinations)] {
        if let Some(blocks) = blocks {
            let ranges = blocks.iter().filter(|block| Family::of(block) == family).map(|block| (number(block.network()), number(block.broadcast())));
            regions = narrowed(&regions, field, ranges);
        }
    }
    regions
}

/// Each region narrowed in `field` to each of the ranges.
fn narrowed(regions: &[Region], field: usize, ranges: impl Iterator<Item = (u128, u128)> + Clone) -> Vec<Region> {
    regions
        .iter()
        .flat_map(|region| {
            ranges.clone().map(move |range| {
                let mut narrowed = *region;
                narrowed[field] = range;
                narrowed
            })
        })
        .collect()
}

/// Steps (see `crate::analysis::BUDGET`) one question may take before the
/// answer is taken as "yes".
const PER_QUESTION: u64 = 10_000_000;

/// Rules the per-rule checks (return path, family gaps) look at, at most.
const PER_RULE_CHECKS: usize = 500;

/// The host checks; `built` holds the chains the order analysis built, if
/// it ran (the others are built when asked about).
pub fn host_checks(ruleset: &Ruleset, context: &HostContext, built: super::Built) -> Vec<Diagnostic> {
    let mut chains = Chains { ruleset, built: built.0 };
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
        if !any_allowed(&mut chains, Direction::In, &constraint) {
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
                    !any_allowed(&mut chains, direction, &constraint)
                        && !any_allowed(&mut chains, direction, &with_state(ConnectionState::New))
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
        diagnostics.extend(return_paths(ruleset, &mut chains, context));
        diagnostics.extend(family_gaps(ruleset, &mut chains, context));
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
fn return_paths(ruleset: &Ruleset, chains: &mut Chains, context: &HostContext) -> Vec<Diagnostic> {
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
        if !any_allowed(chains, reply_direction, &constraint) {
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
fn family_gaps(ruleset: &Ruleset, chains: &mut Chains, context: &HostContext) -> Vec<Diagnostic> {
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
        if any_allowed(chains, Direction::In, &constraint) {
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
    if !diagnostics.iter().any(|diagnostic| matches!(diagnostic.code, Code::Ipv6Gap | Code::Ipv4Gap)) {
        return;
    }
    let primary = |diagnostic: &Diagnostic| diagnostic.labels.iter().find(|label| label.primary).map(|label| label.span);
    let shadowed: HashSet<Span> =
        diagnostics.iter().filter(|diagnostic| diagnostic.code == Code::ShadowedRule).filter_map(primary).collect();
    diagnostics.retain(|diagnostic| {
        !matches!(diagnostic.code, Code::Ipv6Gap | Code::Ipv4Gap) || primary(diagnostic).is_none_or(|span| !shadowed.contains(&span))
    });
}
