//! Placing resolved rules in chains and expanding them into IR rules.
//!
//! A rule expands into one IR rule per family × protocol × source ×
//! destination × port chunk × ICMP type, plus the rules its options imply:
//! a LOG rule in front for `log`, the reply rule for `stateful`, the tcp-reset
//! half of a protocol-less `reject`.
//!
//! Chains: a rule inside a chain without a direction takes it from the
//! jumps into the chain. Replies of stateful rules inside a chain go to the
//! chain's reply companion `NAME.reply`, entered from the reply direction by
//! the mirror image of each jump into `NAME`: so a reply is accepted exactly
//! when the jump's and the rule's matches, swapped, hold.

use super::resolve::{ResolvedChain, ResolvedRule, Resolved};
use crate::diagnostics::{Code, Diagnostic};
use crate::ir::*;
use crate::syntax::ast::{Action, Direction};
use crate::tables;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The kernel's limit on chain names, in bytes.
const CHAIN_NAME_MAX: usize = 28;
const REPLY_SUFFIX: &str = ".reply";
const RESERVED: &[&str] = &[
    "INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING", "ACCEPT", "DROP", "REJECT",
    "RETURN", "LOG", "QUEUE", "NFQUEUE", "MASQUERADE", "SNAT", "DNAT", "REDIRECT",
];

pub fn place(resolved: &Resolved, diagnostics: &mut Vec<Diagnostic>) -> Ruleset {
    let chains = ChainTable::new(&resolved.chains, &resolved.top, diagnostics);
    let mut placer = Placer { chains: &chains, rules: Vec::new(), diagnostics, answers: HashSet::new() };

    for rule in &resolved.top {
        let Some(direction) = rule.direction.as_ref().map(|direction| direction.value) else {
            let message = if rule.action == Action::Return {
                "`return` only goes inside a chain"
            } else {
                "this rule has no direction"
            };
            placer.diagnostics.push(
                Diagnostic::new(Code::MissingDirection, message)
                    .primary(rule.span, "outside any chain")
                    .note("say who opens the flow: `in` (to this host), `out` (from it) or `forward` (through it)"),
            );
            continue;
        };
        let placement = Placement {
            chain: builtin(direction),
            directions: vec![direction],
            reply_chain: Some(builtin(opposite(direction))),
        };
        placer.expand(rule, &placement);
    }

    for (index, chain) in resolved.chains.iter().enumerate() {
        if chains.duplicate[index] {
            continue;
        }
        let name = &chain.name.value;
        let directions: Vec<Direction> = chains.directions[name].iter().copied().collect();
        let reply_chain = chains.has_replies(name).then(|| ChainRef::User(reply_name(name)));
        for (position, rule) in chain.rules.iter().enumerate() {
            if rule.action.is_nat() {
                placer.diagnostics.push(
                    Diagnostic::new(Code::MisplacedClause, format!("`{}` goes at the top level, not in a chain", rule.action.keyword()))
                        .primary(rule.span, "inside a chain")
                        .note("NAT rules live in the nat table, which user chains are not part of"),
                );
                continue;
            }
            if rule.mac_source.is_some() && directions.contains(&Direction::Out) {
                placer.diagnostics.push(
                    Diagnostic::new(Code::MisplacedClause, "`mac` in a chain entered from `out`")
                        .primary(rule.span, "the kernel allows a MAC match only on arriving packets")
                        .note("use the chain from `in` and `forward` only, or move the rule out of it"),
                );
                continue;
            }
            if let Some(direction) = &rule.direction {
                let others: Vec<&str> =
                    directions.iter().filter(|d| **d != direction.value).map(|d| d.keyword()).collect();
                if !others.is_empty() {
                    placer.diagnostics.push(
                        Diagnostic::new(
                            Code::DirectionConflict,
                            format!("this rule says `{}`, but its chain is also entered from {}", direction.value.keyword(), others.join(" and ")),
                        )
                        .primary(direction.span, "the kernel cannot tell which built-in chain jumped here")
                        .note("leave the direction out so the rule follows its caller, or use one chain per direction"),
                    );
                    continue;
                }
            }
            let placement = Placement {
                chain: ChainRef::User(name.clone()),
                directions: rule.direction.as_ref().map_or(directions.clone(), |d| vec![d.value]),
                reply_chain: reply_chain.clone(),
            };
            placer.expand(rule, &placement);
            // A return ahead of rules with replies returns their replies too.
            let replies_follow = chain.rules[position + 1..].iter().any(|later| chains.makes_replies(later));
            if rule.action == Action::Return && replies_follow {
                placer.mirror_return(rule, &placement);
            }
        }
    }

    let mut ir_chains = Vec::new();
    for (index, chain) in resolved.chains.iter().enumerate() {
        if chains.duplicate[index] {
            continue;
        }
        ir_chains.push(Chain {
            name: chain.name.value.clone(),
            keep: chain.keep,
            span: chain.span,
            families: chain.families.clone(),
        });
        if chains.has_replies(&chain.name.value) {
            ir_chains.push(Chain {
                name: reply_name(&chain.name.value),
                keep: false,
                span: chain.span,
                families: chain.families.clone(),
            });
        }
    }
    Ruleset {
        policies: resolved.policies,
        chains: ir_chains,
        rules: placer.rules,
        keep_patterns: resolved.keep_patterns.clone(),
    }
}

fn builtin(direction: Direction) -> ChainRef {
    match direction {
        Direction::In => ChainRef::Input,
        Direction::Out => ChainRef::Output,
        Direction::Forward => ChainRef::Forward,
    }
}

/// The direction replies travel in.
fn opposite(direction: Direction) -> Direction {
    match direction {
        Direction::In => Direction::Out,
        Direction::Out => Direction::In,
        Direction::Forward => Direction::Forward,
    }
}

pub fn reply_name(chain: &str) -> String {
    format!("{chain}{REPLY_SUFFIX}")
}

/// What the chains of a policy are, and how they are reached.
struct ChainTable {
    /// Directions each chain is entered from (by name).
    directions: HashMap<String, BTreeSet<Direction>>,
    replies: HashMap<String, bool>,
    /// Per entry of `resolved.chains`: a second definition, left out.
    duplicate: Vec<bool>,
}

impl ChainTable {
    fn new(chains: &[ResolvedChain], top: &[ResolvedRule], diagnostics: &mut Vec<Diagnostic>) -> ChainTable {
        let mut first: HashMap<&str, &ResolvedChain> = HashMap::new();
        let mut duplicate = Vec::new();
        for chain in chains {
            let name = chain.name.value.as_str();
            if let Some(earlier) = first.get(name) {
                diagnostics.push(
                    Diagnostic::new(Code::RedefinedChain, format!("chain `{name}` is defined twice"))
                        .primary(chain.name.span, "defined again here")
                        .secondary(earlier.name.span, "first defined here")
                        .note("put all its rules in one definition"),
                );
                duplicate.push(true);
                continue;
            }
            duplicate.push(false);
            first.insert(name, chain);
            if RESERVED.iter().any(|reserved| reserved.eq_ignore_ascii_case(name)) {
                diagnostics.push(
                    Diagnostic::new(Code::ReservedChainName, format!("`{name}` is a built-in name"))
                        .primary(chain.name.span, "reserved by the kernel")
                        .note("choose another name; built-in chains are reached with `in`, `out` and `forward`"),
                );
            }
        }
        // Every jump must name a chain.
        let all_rules = top.iter().map(|rule| (None, rule)).chain(
            chains.iter().flat_map(|chain| chain.rules.iter().map(move |rule| (Some(chain), rule))),
        );
        let mut edges: Vec<(Option<&str>, &str, &ResolvedRule)> = Vec::new();
        for (from, rule) in all_rules {
            let Some(target) = &rule.jump else { continue };
            if first.contains_key(target.value.as_str()) {
                edges.push((from.map(|chain| chain.name.value.as_str()), target.value.as_str(), rule));
            } else {
                let hint = crate::diagnostics::suggestion(&target.value, first.keys().copied());
                diagnostics.push(
                    Diagnostic::new(Code::UnknownChain, format!("there is no chain `{}`", target.value))
                        .primary(target.span, "jumped to here")
                        .maybe_note(hint)
                        .note(format!("define it: `chain {} {{ … }}`", target.value)),
                );
            }
        }
        // Directions flow along jumps until nothing changes.
        let mut directions: HashMap<String, BTreeSet<Direction>> =
            first.keys().map(|name| (name.to_string(), BTreeSet::new())).collect();
        loop {
            let mut changed = false;
            for (from, to, rule) in &edges {
                let incoming: BTreeSet<Direction> = match (&rule.direction, from) {
                    (Some(direction), _) => [direction.value].into(),
                    (None, Some(from)) => directions[*from].clone(),
                    (None, None) => BTreeSet::new(),
                };
                let set = directions.get_mut(*to).expect("target exists");
                let before = set.len();
                set.extend(incoming);
                changed |= set.len() != before;
            }
            if !changed {
                break;
            }
        }
        let mut table = ChainTable { directions, replies: HashMap::new(), duplicate };
        if table.check_cycles(&edges, diagnostics) {
            table.check_depth(&edges, diagnostics);
        }
        // A chain has replies if a rule in it is stateful or jumps to one that has.
        for chain in chains {
            table.replies.entry(chain.name.value.clone()).or_insert(false);
        }
        loop {
            let mut changed = false;
            for chain in chains {
                let has = chain.rules.iter().any(|rule| table.makes_replies(rule));
                if has && !table.replies[&chain.name.value] {
                    table.replies.insert(chain.name.value.clone(), true);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for chain in chains {
            let name = &chain.name.value;
            let longest = if table.has_replies(name) { CHAIN_NAME_MAX - REPLY_SUFFIX.len() } else { CHAIN_NAME_MAX };
            if name.len() > longest {
                diagnostics.push(
                    Diagnostic::new(Code::ReservedChainName, format!("the chain name `{name}` is too long"))
                        .primary(chain.name.span, format!("{} bytes; at most {longest} fit", name.len()))
                        .note(if longest < CHAIN_NAME_MAX {
                            "a chain with stateful rules gets a companion `NAME.reply` chain, so its name must leave room for the suffix"
                        } else {
                            "the kernel allows 28 bytes"
                        }),
                );
            }
        }
        table
    }

    /// The kernel keeps 16 levels of jumps: a built-in chain and 15 user
    /// chains below it load, one more does not ("Too many links").
    fn check_depth(&self, edges: &[(Option<&str>, &str, &ResolvedRule)], diagnostics: &mut Vec<Diagnostic>) {
        const MAX_DEPTH: usize = 15;
        // Depth of each chain: the longest path of jumps from a built-in chain.
        let mut depth: HashMap<&str, usize> = HashMap::new();
        let mut changed = true;
        while changed {
            changed = false;
            for (from, to, rule) in edges {
                let parent = match from {
                    None => 0,
                    Some(from) => match depth.get(from) {
                        Some(depth) => *depth,
                        None => continue,
                    },
                };
                let candidate = parent + 1;
                if depth.get(to).is_none_or(|current| *current < candidate) {
                    depth.insert(to, candidate);
                    changed = true;
                    if candidate == MAX_DEPTH + 1 {
                        let span = rule.jump.as_ref().map_or(rule.span, |target| target.span);
                        diagnostics.push(
                            Diagnostic::new(Code::ChainTooDeep, format!("chain `{to}` is {candidate} jumps deep"))
                                .primary(span, "one level too many")
                                .note("the kernel follows at most 15 nested jumps below a built-in chain; flatten some chains"),
                        );
                        return;
                    }
                }
            }
        }
    }

    /// Reports jump loops; true when there are none.
    fn check_cycles(&self, edges: &[(Option<&str>, &str, &ResolvedRule)], diagnostics: &mut Vec<Diagnostic>) -> bool {
        let before = diagnostics.len();
        // Depth-first search; a back edge closes a loop.
        let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on stack, 2 = done
        fn visit<'a>(
            node: &'a str,
            edges: &[(Option<&'a str>, &'a str, &ResolvedRule)],
            state: &mut HashMap<&'a str, u8>,
            diagnostics: &mut Vec<Diagnostic>,
        ) {
            state.insert(node, 1);
            for (from, to, rule) in edges {
                if *from != Some(node) {
                    continue;
                }
                match state.get(to) {
                    Some(1) => {
                        let span = rule.jump.as_ref().map_or(rule.span, |target| target.span);
                        diagnostics.push(
                            Diagnostic::new(Code::ChainCycle, format!("chain `{to}` can reach itself"))
                                .primary(span, "this jump closes the loop")
                                .note("the kernel refuses chains that jump in a circle; break the loop"),
                        );
                    }
                    Some(_) => {}
                    None => visit(to, edges, state, diagnostics),
                }
            }
            state.insert(node, 2);
        }
        let mut nodes: Vec<&str> = self.directions.keys().map(String::as_str).collect();
        nodes.sort_unstable();
        for node in nodes {
            if !state.contains_key(node) {
                visit(node, edges, &mut state, diagnostics);
            }
        }
        diagnostics.len() == before
    }

    fn has_replies(&self, chain: &str) -> bool {
        self.replies.get(chain).copied().unwrap_or(false)
    }

    fn makes_replies(&self, rule: &ResolvedRule) -> bool {
        rule.stateful || rule.jump.as_ref().is_some_and(|target| self.has_replies(&target.value))
    }
}

struct Placement {
    chain: ChainRef,
    /// The directions the rule is used in: its own, or its chain's.
    directions: Vec<Direction>,
    reply_chain: Option<ChainRef>,
}

impl Placement {
    /// Where the answer of a `reject` goes: it is sent by this host, so it
    /// leaves through OUTPUT, as RELATED traffic.
    fn answers_in_output(&self) -> bool {
        self.directions.iter().any(|direction| *direction != Direction::Out)
    }
}

struct Placer<'a> {
    chains: &'a ChainTable,
    rules: Vec<Rule>,
    diagnostics: &'a mut Vec<Diagnostic>,
    /// The reject answer rules written so far, to write each once.
    answers: HashSet<(Family, Matches)>,
}

impl Placer<'_> {
    fn expand(&mut self, rule: &ResolvedRule, placement: &Placement) {
        let Some(interfaces) = self.interfaces(rule, placement) else { return };
        for &family in &rule.families {
            let protocols: Vec<Option<&super::resolve::ProtocolMatch>> = if rule.protocols.is_empty() {
                vec![None]
            } else {
                rule.protocols.iter().filter(|protocol| protocol.families().contains(&family)).map(Some).collect()
            };
            let Some(sources) = self.addresses(rule, rule.sources.as_ref(), family) else { return };
            // A port forward's `to` is where packets go, not a match.
            let matched_destinations = if rule.action == Action::ForwardPort { None } else { rule.destinations.as_ref() };
            let Some(destinations) = self.addresses(rule, matched_destinations, family) else { return };
            let source_port_chunks = match &rule.source_ports {
                None => vec![None],
                Some(ports) => match chunks(ports) {
                    Some(chunks) => chunks.into_iter().map(Some).collect(),
                    None => {
                        self.unsupported_negation(rule, "more than 15 ports");
                        return;
                    }
                },
            };
            for protocol in &protocols {
                let port_chunks = match protocol.and_then(|protocol| protocol.ports.as_ref()) {
                    None => vec![None],
                    Some(ports) => match chunks(ports) {
                        Some(chunks) => chunks.into_iter().map(Some).collect(),
                        None => {
                            self.unsupported_negation(rule, "more than 15 ports");
                            return;
                        }
                    },
                };
                // Only `return` and NAT rules get here with a negated list
                // (`negation.rs` gives the others a helper chain).
                if protocol.is_some_and(|protocol| protocol.icmp_negated && protocol.icmp_types.len() > 1) {
                    self.unsupported_negation(rule, "several ICMP types");
                    return;
                }
                let icmp_types: Vec<Option<Match<IcmpType>>> = match protocol {
                    Some(protocol) if !protocol.icmp_types.is_empty() => protocol
                        .icmp_types
                        .iter()
                        .map(|kind| Some(Match { negated: protocol.icmp_negated, value: *kind }))
                        .collect(),
                    _ => vec![None],
                };
                let protocol_has_ports = protocol.is_some_and(|protocol| protocol.protocol.has_ports());
                let source_port_chunks: &[Option<Match<Vec<PortRange>>>] =
                    if protocol_has_ports { &source_port_chunks } else { &[None] };
                for source in &sources {
                    for destination in &destinations {
                        for source_ports in source_port_chunks {
                            for ports in &port_chunks {
                                for icmp_type in &icmp_types {
                                    let matches = Matches {
                                        source: source.clone(),
                                        destination: destination.clone(),
                                        in_interface: interfaces.0.clone(),
                                        out_interface: interfaces.1.clone(),
                                        protocol: protocol.map(|protocol| protocol.protocol),
                                        source_ports: source_ports.clone(),
                                        destination_ports: ports.clone(),
                                        icmp_type: *icmp_type,
                                        tcp_flags: rule.tcp_flags,
                                        mac_source: rule.mac_source.clone(),
                                        states: rule.states.clone(),
                                        limit: None,
                                        comment: rule.comment.clone(),
                                    };
                                    self.emit(rule, family, matches, placement);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `on` as (in-interface, out-interface) for the rule's directions.
    fn interfaces(
        &mut self,
        rule: &ResolvedRule,
        placement: &Placement,
    ) -> Option<(Option<Match<String>>, Option<Match<String>>)> {
        let Some(on) = &rule.on else { return Some((None, None)) };
        let mut mappings = placement.directions.iter().map(|direction| match direction {
            Direction::In => (on.first.clone(), None),
            Direction::Out => (None, on.first.clone()),
            Direction::Forward => (on.first.clone(), on.second.clone().flatten()),
        });
        let Some(first) = mappings.next() else {
            // A chain nobody jumps to: read `on` as the arrival interface.
            return Some((on.first.clone(), on.second.clone().flatten()));
        };
        if mappings.any(|other| other != first) {
            let names: Vec<&str> = placement.directions.iter().map(|d| d.keyword()).collect();
            self.diagnostics.push(
                Diagnostic::new(
                    Code::DirectionConflict,
                    "this rule's `on` means different things in the directions its chain is used in",
                )
                .primary(on.span, format!("the chain is entered from {}", names.join(" and ")))
                .note("use one chain per direction, or leave `on` out of rules in a chain shared by in and out"),
            );
            return None;
        }
        Some(first)
    }

    /// One address match per address of the family; `[None]` for any.
    fn addresses(
        &mut self,
        rule: &ResolvedRule,
        addresses: Option<&super::resolve::AddressMatch>,
        family: Family,
    ) -> Option<Vec<Option<Match<ipnet::IpNet>>>> {
        let Some(addresses) = addresses else { return Some(vec![None]) };
        let of_family: Vec<Option<Match<ipnet::IpNet>>> = addresses
            .addresses
            .iter()
            .filter(|address| Family::of(&address.net) == family)
            .map(|address| Some(Match { negated: addresses.negated, value: address.net }))
            .collect();
        // A /0 block is every address of its family: no match at all, as
        // `iptables-save` shows it. Negated, it matches nothing.
        let everything = of_family.iter().flatten().any(|address| address.value.prefix_len() == 0);
        if everything && addresses.negated {
            self.diagnostics.push(
                Diagnostic::new(Code::FamilyConflict, "`not` an entire address family matches no packet")
                    .primary(rule.span, "never matches")
                    .note("to leave a family out, use `ipv4` or `ipv6`"),
            );
            return None;
        }
        if everything {
            return Some(vec![None]);
        }
        if addresses.negated && of_family.len() > 1 {
            self.unsupported_negation(rule, "several addresses");
            return None;
        }
        // Nothing of this family to exclude: the negation holds for all.
        if addresses.negated && of_family.is_empty() {
            return Some(vec![None]);
        }
        Some(of_family)
    }

    fn unsupported_negation(&mut self, rule: &ResolvedRule, what: &str) {
        self.diagnostics.push(
            Diagnostic::new(Code::MisplacedClause, format!("`not` before {what} cannot be one kernel rule"))
                .primary(rule.span, "negates a list")
                .note(format!(
                    "`not` before a list works in allow, deny, reject, jump and log rules (through a helper chain), but a `{}` rule can negate only one value",
                    rule.action.keyword()
                )),
        );
    }

    fn origin(&self, rule: &ResolvedRule, derived: Option<Derivation>) -> RuleOrigin {
        RuleOrigin {
            span: rule.span,
            via: rule.context.via.clone(),
            derived: derived.or(rule.negation.then_some(Derivation::Negation)),
            ignored: rule.ignored.clone(),
            narrowed: rule.narrowed,
        }
    }

    fn push(&mut self, rule: &ResolvedRule, family: Family, chain: &ChainRef, matches: Matches, target: Target, derived: Option<Derivation>) {
        self.push_to(Table::Filter, rule, family, chain, matches, target, derived);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_to(&mut self, table: Table, rule: &ResolvedRule, family: Family, chain: &ChainRef, matches: Matches, target: Target, derived: Option<Derivation>) {
        let origin = self.origin(rule, derived);
        self.rules.push(Rule { family, table, chain: chain.clone(), matches, target, origin });
    }

    fn emit(&mut self, rule: &ResolvedRule, family: Family, mut matches: Matches, placement: &Placement) {
        let chain = &placement.chain;
        if rule.action.is_nat() {
            self.emit_nat(rule, family, matches);
            return;
        }
        // `rate` limits the LOG rule alone; without it the LOG rule shares
        // the verdict's `limit`, so it logs exactly what the verdict takes.
        let log_rule = |placer: &mut Self, mut logged: Matches| {
            if let Some(prefix) = &rule.log {
                logged.limit = rule.log_rate.or(logged.limit);
                let target = Target::Log { prefix: prefix.clone() };
                let derived = (rule.action != Action::Log).then_some(Derivation::Log);
                placer.push(rule, family, chain, logged, target, derived);
            }
        };
        if rule.action == Action::Log {
            matches.limit = rule.limit;
            log_rule(self, matches);
            return;
        }
        if rule.action == Action::Allow && rule.stateful {
            let mut opener = matches.clone();
            opener.states = Some(Match::positive(if rule.limit.is_some() {
                States::NEW
            } else {
                States::NEW.union(States::ESTABLISHED)
            }));
            opener.limit = rule.limit;
            // Log each new connection once, not every packet of it.
            let mut logged = opener.clone();
            logged.states = Some(Match::positive(States::NEW));
            log_rule(self, logged);
            self.push(rule, family, chain, opener, Target::Accept, None);
            if rule.limit.is_some() {
                let mut established = matches.clone();
                established.states = Some(Match::positive(States::ESTABLISHED));
                self.push(rule, family, chain, established, Target::Accept, Some(Derivation::Established));
            }
            if let (Some(reply_chain), Some(reply)) = (&placement.reply_chain, mirror(&matches)) {
                self.push(rule, family, reply_chain, reply, Target::Accept, Some(Derivation::Reply));
            }
            return;
        }
        matches.limit = rule.limit;
        log_rule(self, matches.clone());
        match rule.action {
            Action::Allow => self.push(rule, family, chain, matches, Target::Accept, None),
            Action::Deny => self.push(rule, family, chain, matches, Target::Drop, None),
            Action::Reject => {
                let mut parts = Vec::new();
                match (rule.reject_with, matches.protocol) {
                    (Some(with), _) => parts.push((matches, with, None)),
                    (None, None) => {
                        let mut tcp = matches.clone();
                        tcp.protocol = Some(Protocol::TCP);
                        parts.push((tcp, RejectWith::TcpReset, None));
                        parts.push((matches, RejectWith::PortUnreachable, Some(Derivation::RejectOther)));
                    }
                    (None, Some(Protocol::TCP)) => parts.push((matches, RejectWith::TcpReset, None)),
                    (None, Some(_)) => parts.push((matches, RejectWith::PortUnreachable, None)),
                }
                let mut answers = Vec::new();
                for (matches, with, derived) in parts {
                    if placement.answers_in_output() {
                        answers.extend(reject_answer(&matches, with, family));
                    }
                    self.push(rule, family, chain, matches, Target::Reject(with), derived);
                }
                for answer in answers {
                    // Rejects on the same ports share their answer rule: a
                    // second copy could never match.
                    if self.answers.insert((family, answer.clone())) {
                        self.push(rule, family, &ChainRef::Output, answer, Target::Accept, Some(Derivation::RejectAnswer));
                    }
                }
            }
            Action::Return => self.push(rule, family, chain, matches, Target::Return, None),
            Action::Jump => {
                let target = rule.jump.as_ref().expect("resolve checked jumps have targets").value.clone();
                if self.chains.has_replies(&target) {
                    if let (Some(reply_chain), Some(reply)) = (&placement.reply_chain, mirror(&matches)) {
                        let jump = Target::Jump(reply_name(&target));
                        self.push(rule, family, reply_chain, reply, jump, Some(Derivation::ReplyJump));
                    }
                }
                self.push(rule, family, chain, matches, Target::Jump(target), None);
            }
            Action::Log | Action::Masquerade | Action::Snat | Action::Dnat | Action::Redirect | Action::ForwardPort => {
                unreachable!("handled above")
            }
        }
    }

    /// NAT rules go to the nat table; a port forward also allows the
    /// forwarded flow (and its replies) in FORWARD.
    fn emit_nat(&mut self, rule: &ResolvedRule, family: Family, matches: Matches) {
        let nat = rule.nat.as_ref().expect("resolve checked NAT rules");
        let outgoing = rule.direction.as_ref().is_some_and(|direction| direction.value == Direction::Out);
        let (chain, target) = match rule.action {
            Action::Masquerade => (ChainRef::Postrouting, Target::Masquerade { ports: nat.ports }),
            Action::Snat => (
                ChainRef::Postrouting,
                Target::Snat { address: nat.address.expect("snat has an address"), ports: nat.ports },
            ),
            Action::Redirect => {
                (if outgoing { ChainRef::Output } else { ChainRef::Prerouting }, Target::Redirect { ports: nat.ports })
            }
            _ => (
                if outgoing { ChainRef::Output } else { ChainRef::Prerouting },
                Target::Dnat { address: nat.address.expect("dnat has an address"), ports: nat.ports },
            ),
        };
        if let Some(prefix) = &rule.log {
            let mut logged = matches.clone();
            logged.limit = rule.log_rate;
            self.push_to(Table::Nat, rule, family, &chain, logged, Target::Log { prefix: prefix.clone() }, Some(Derivation::Log));
        }
        if rule.action == Action::ForwardPort {
            let address = nat.address.expect("forward-port has an address");
            let mut forward = matches.clone();
            forward.destination = Some(Match::positive(ipnet::IpNet::from(address)));
            if let Some(ports) = nat.ports {
                forward.destination_ports = Some(Match::positive(vec![ports]));
            }
            let mut opener = forward.clone();
            opener.states = Some(Match::positive(States::NEW.union(States::ESTABLISHED)));
            self.push(rule, family, &ChainRef::Forward, opener, Target::Accept, Some(Derivation::ForwardAllow));
            if let Some(reply) = mirror(&forward) {
                self.push(rule, family, &ChainRef::Forward, reply, Target::Accept, Some(Derivation::Reply));
            }
        }
        self.push_to(Table::Nat, rule, family, &chain, matches, target, None);
    }

    /// A conditional `return` in a chain with replies: its mirror image
    /// returns the replies of what it returned.
    fn mirror_return(&mut self, rule: &ResolvedRule, placement: &Placement) {
        let Some(reply_chain) = placement.reply_chain.clone() else { return };
        // Replies carry no MAC of the opener, their own state and their own
        // TCP flags: a return on those has no faithful mirror, and mirroring
        // it without them would return every reply. Such a return gets no
        // mirror; the replies of its flows stay with the reply rules.
        if rule.mac_source.is_some() || rule.states.is_some() || rule.tcp_flags.is_some() {
            return;
        }
        let start = self.rules.len();
        let mut scratch = Placer { chains: self.chains, rules: Vec::new(), diagnostics: &mut Vec::new(), answers: HashSet::new() };
        scratch.expand(rule, &Placement { chain: placement.chain.clone(), directions: placement.directions.clone(), reply_chain: None });
        for returned in scratch.rules {
            if let Some(reply) = mirror(&returned.matches) {
                let origin = RuleOrigin { derived: Some(Derivation::Reply), ..returned.origin };
                self.rules.push(Rule { family: returned.family, table: Table::Filter, chain: reply_chain.clone(), matches: reply, target: Target::Return, origin });
            }
        }
        debug_assert!(self.rules.len() >= start);
    }
}

/// The reply image of a match: sides swapped, state ESTABLISHED. `None`
/// when nothing answers (an ICMP type that is not a query).
fn mirror(matches: &Matches) -> Option<Matches> {
    let icmp_type = match (matches.protocol, matches.icmp_type) {
        // The replies to "anything but echo" are not one type: match any.
        (Some(_), Some(icmp_type)) if icmp_type.negated => None,
        (Some(protocol), Some(icmp_type)) => Some(Match::positive(IcmpType {
            kind: tables::icmp_reply_type(protocol.0, icmp_type.value.kind)?,
            code: None,
        })),
        _ => None,
    };
    Some(Matches {
        source: matches.destination.clone(),
        destination: matches.source.clone(),
        in_interface: matches.out_interface.clone(),
        out_interface: matches.in_interface.clone(),
        protocol: matches.protocol,
        source_ports: matches.destination_ports.clone(),
        destination_ports: matches.source_ports.clone(),
        icmp_type,
        tcp_flags: None,
        mac_source: None,
        states: Some(Match::positive(States::ESTABLISHED)),
        limit: None,
        comment: matches.comment.clone(),
    })
}

/// The packet a REJECT sends back — a TCP reset or an ICMP error — is
/// RELATED to the rejected flow and leaves through OUTPUT; under `policy
/// out drop` it needs its own allow, or the reject acts as a silent drop.
fn reject_answer(matches: &Matches, with: RejectWith, family: Family) -> Option<Matches> {
    let mut answer = mirror(matches).or_else(|| {
        // An ICMP type without an answer type still gets an error back.
        let mut without_type = matches.clone();
        without_type.icmp_type = None;
        mirror(&without_type)
    })?;
    answer.states = Some(Match::positive(States::RELATED));
    if with != RejectWith::TcpReset {
        let (protocol, unreachable) = match family {
            Family::V4 => (Protocol::ICMP, 3),
            Family::V6 => (Protocol::ICMPV6, 1),
        };
        answer.protocol = Some(protocol);
        answer.source_ports = None;
        answer.destination_ports = None;
        answer.icmp_type = Some(Match::positive(IcmpType { kind: unreachable, code: None }));
    }
    // Sent by this host: it has no arrival interface.
    answer.in_interface = None;
    Some(answer)
}

/// Splits a port list into kernel-sized pieces: multiport takes 15
/// entries, a range counting two. A negated list must fit in one piece.
fn chunks(ports: &Match<Vec<PortRange>>) -> Option<Vec<Match<Vec<PortRange>>>> {
    let mut pieces: Vec<Vec<PortRange>> = vec![Vec::new()];
    let mut weight = 0;
    for range in &ports.value {
        let cost = if range.low == range.high { 1 } else { 2 };
        if weight + cost > 15 {
            pieces.push(Vec::new());
            weight = 0;
        }
        pieces.last_mut().expect("never empty").push(*range);
        weight += cost;
    }
    if ports.negated && pieces.len() > 1 {
        return None;
    }
    Some(pieces.into_iter().map(|value| Match { negated: ports.negated, value }).collect())
}
