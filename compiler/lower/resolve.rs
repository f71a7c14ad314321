//! Walks the loaded statements in order: defines variables, collects
//! declarations and resolves every name a rule uses.

use super::load::Item;
use super::values::{self, Address, PortEntry, VariableValue, Variables};
use super::{Context, Params};
use crate::diagnostics::{Code, Diagnostic};
use crate::ir::{Family, IcmpType, Limit, Match, PortRange, Policies, Protocol, RejectWith, States, TcpFlags, Verdict};
use crate::source::{Origin, Sources, Span};
use crate::syntax::ast::{self, Action, Direction, Spanned};
use crate::syntax::parser;
use crate::{stdlib, tables};
use std::collections::HashMap;

/// A rule with every name resolved, before it is placed in a chain.
#[derive(Clone, Debug)]
pub struct ResolvedRule {
    pub span: Span,
    pub context: Context,
    pub action: Action,
    pub direction: Option<Spanned<Direction>>,
    /// `on A` or `on A -> B`; `None` inside means `any`.
    pub on: Option<OnResolved>,
    /// One entry per protocol; empty means any protocol.
    pub protocols: Vec<ProtocolMatch>,
    pub sources: Option<AddressMatch>,
    pub destinations: Option<AddressMatch>,
    pub states: Option<Match<States>>,
    pub jump: Option<Spanned<String>>,
    pub stateful: bool,
    /// `log` with its prefix, if any.
    pub log: Option<Option<String>>,
    pub limit: Option<Limit>,
    /// `rate`: the limit of the LOG rule alone.
    pub log_rate: Option<Limit>,
    pub comment: Option<String>,
    /// `sport PORTS`, applied to every protocol of the rule.
    pub source_ports: Option<Match<Vec<PortRange>>>,
    pub tcp_flags: Option<Match<TcpFlags>>,
    pub mac_source: Option<Match<String>>,
    pub reject_with: Option<RejectWith>,
    pub nat: Option<NatResolved>,
    /// `ipv4` or `ipv6` was written.
    pub narrowed: bool,
    /// The families the rule applies to (never empty).
    pub families: Vec<Family>,
    pub ignored: Vec<String>,
    /// Made by fwc for `not` before a list: the jump into the helper chain
    /// or one of its returns (`negation.rs`).
    pub negation: bool,
}

/// The translation a NAT rule asks for.
#[derive(Clone, Debug)]
pub struct NatResolved {
    pub address: Option<std::net::IpAddr>,
    pub ports: Option<PortRange>,
}

#[derive(Clone, Debug)]
pub struct OnResolved {
    pub span: Span,
    pub first: Option<Match<String>>,
    pub second: Option<Option<Match<String>>>,
}

#[derive(Clone, Debug)]
pub struct ProtocolMatch {
    pub protocol: Protocol,
    pub ports: Option<Match<Vec<PortRange>>>,
    pub icmp_types: Vec<IcmpType>,
    /// `icmp not echo-request`.
    pub icmp_negated: bool,
}

impl ProtocolMatch {
    /// `icmp` and `igmp` are IPv4 only, `icmpv6` IPv6 only.
    pub fn families(&self) -> Vec<Family> {
        match self.protocol {
            Protocol::ICMP | Protocol::IGMP => vec![Family::V4],
            Protocol::ICMPV6 => vec![Family::V6],
            _ => Family::BOTH.to_vec(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AddressMatch {
    pub negated: bool,
    pub addresses: Vec<Address>,
}

#[derive(Clone, Debug)]
pub struct ResolvedChain {
    pub name: Spanned<String>,
    pub keep: bool,
    pub span: Span,
    pub rules: Vec<ResolvedRule>,
    /// The families the chain is declared in: both for the user's chains,
    /// the rule's own for a helper chain.
    pub families: Vec<Family>,
}

#[derive(Default)]
pub struct Resolved {
    pub top: Vec<ResolvedRule>,
    pub chains: Vec<ResolvedChain>,
    pub policies: Policies,
    pub keep_patterns: Vec<String>,
    pub tests: Vec<(ast::TestBlock, Context)>,
    pub ignores: Vec<ast::IgnoreDecl>,
    /// `ignore CODE` on rules: the rule's span and the codes it silences.
    pub rule_ignores: Vec<(Span, Vec<String>)>,
    pub variables: Variables,
    /// The `policy in …` and `policy out …` lines that won.
    pub policy_spans: (Option<Span>, Option<Span>),
    /// User services no rule uses: name and definition.
    pub unused_services: Vec<(String, Span)>,
}

struct ServiceDefinition {
    span: Span,
    entries: Vec<ast::ProtocolClause>,
}

struct Resolver<'a> {
    diagnostics: &'a mut Vec<Diagnostic>,
    variables: Variables,
    user_services: HashMap<String, ServiceDefinition>,
    stdlib_services: HashMap<String, ServiceDefinition>,
    /// Services being resolved, to stop a service naming itself.
    resolving: Vec<String>,
    rule_ignores: Vec<(Span, Vec<String>)>,
    used_services: std::collections::HashSet<String>,
}

pub fn resolve(
    sources: &mut Sources,
    items: &[Item],
    params: &Params,
    diagnostics: &mut Vec<Diagnostic>,
) -> Resolved {
    let mut resolver = Resolver {
        diagnostics,
        variables: Variables::default(),
        user_services: HashMap::new(),
        stdlib_services: HashMap::new(),
        resolving: Vec::new(),
        rule_ignores: Vec::new(),
        used_services: std::collections::HashSet::new(),
    };
    resolver.load_stdlib_services(sources);
    let params = resolver.parse_params(sources, items, params);
    resolver.collect_services(items);

    let mut resolved = Resolved::default();
    // Policies by direction: (verdict, span, from the stdlib).
    let mut policies: HashMap<Direction, Vec<(bool, Span, bool)>> = HashMap::new();
    for item in items {
        match item {
            Item::Statement(statement, context) => match statement {
                ast::Statement::Rule(rule) => {
                    if let Some(rule) = resolver.rule(rule, context) {
                        resolved.top.push(rule);
                    }
                }
                ast::Statement::Let(decl) => resolver.define(decl, decl.value.as_ref()),
                ast::Statement::Param(decl) => {
                    let value = params.get(decl.name.value.as_str()).or(decl.value.as_ref());
                    if value.is_none() {
                        resolver.diagnostics.push(
                            Diagnostic::new(
                                Code::UnsetParam,
                                format!("param `{}` has no value", decl.name.value),
                            )
                            .primary(decl.span, "declared without a default")
                            .note(format!(
                                "set it on the command line: fwc build POLICY --set {}=VALUE",
                                decl.name.value
                            )),
                        );
                    }
                    match value {
                        Some(value) => resolver.define(decl, Some(value)),
                        None => {
                            resolver.variables.unset.insert(decl.name.value.clone());
                        }
                    }
                }
                // A stdlib policy line is the user's `use` line that
                // brought it in, as far as diagnostics are concerned.
                ast::Statement::Policy(policy) => policies.entry(policy.direction.value).or_default().push((
                    policy.accept,
                    if context.stdlib { context.via.first().copied().unwrap_or(policy.span) } else { policy.span },
                    context.stdlib,
                )),
                ast::Statement::KeepChains(patterns) => {
                    resolved.keep_patterns.extend(patterns.iter().map(|pattern| pattern.value.clone()))
                }
                ast::Statement::Ignore(ignore) => {
                    resolver.check_code(&ignore.code);
                    resolved.ignores.push(ignore.clone());
                }
                ast::Statement::Test(test) => resolved.tests.push((test.clone(), context.clone())),
                ast::Statement::Service(_) => {}
                ast::Statement::Chain(_) | ast::Statement::Include(_) | ast::Statement::Use(_) => {
                    unreachable!("load replaces these")
                }
            },
            Item::Chain(chain, body) => {
                let rules = body.iter().filter_map(|(rule, context)| resolver.rule(rule, context)).collect();
                resolved.chains.push(ResolvedChain {
                    name: chain.name.clone(),
                    keep: chain.keep,
                    span: chain.span,
                    rules,
                    families: Family::BOTH.to_vec(),
                });
            }
        }
    }
    resolved.policies = resolver.policies(&policies);
    let chosen = |direction: Direction| {
        policies.get(&direction).and_then(|lines| {
            lines.iter().find(|line| !line.2).or(lines.last()).map(|line| line.1)
        })
    };
    resolved.policy_spans = (chosen(Direction::In), chosen(Direction::Out));
    resolved.rule_ignores = resolver.rule_ignores;
    resolved.variables = resolver.variables;
    resolved.unused_services = resolver
        .user_services
        .iter()
        .filter(|(name, _)| !resolver.used_services.contains(*name))
        .map(|(name, definition)| (name.clone(), definition.span))
        .collect();
    resolved.unused_services.sort_by_key(|(_, span)| *span);
    resolved
}

impl Resolver<'_> {
    fn load_stdlib_services(&mut self, sources: &mut Sources) {
        let (file_name, text) = stdlib::SERVICES;
        let file = sources.add(format!("<stdlib/{file_name}>"), Origin::Stdlib(file_name), text.to_string());
        let (parsed, diagnostics) = parser::parse_file(file, text);
        self.diagnostics.extend(diagnostics);
        for statement in parsed.map(|file| file.statements).unwrap_or_default() {
            if let ast::Statement::Service(service) = statement {
                self.stdlib_services.insert(
                    service.name.value.clone(),
                    ServiceDefinition { span: service.span, entries: service.entries },
                );
            }
        }
    }

    /// Parses each `--set NAME=VALUE` and checks NAME is a declared param.
    fn parse_params<'p>(
        &mut self,
        sources: &mut Sources,
        items: &[Item],
        params: &'p Params,
    ) -> HashMap<&'p str, ast::Value> {
        let declared: Vec<&str> = items
            .iter()
            .filter_map(|item| match item {
                Item::Statement(ast::Statement::Param(decl), _) => Some(decl.name.value.as_str()),
                _ => None,
            })
            .collect();
        let mut values = HashMap::new();
        for (name, value) in params {
            let text = format!("{name}={value}");
            let file = sources.add("<command line>".to_string(), Origin::CommandLine, text);
            if !declared.contains(&name.as_str()) {
                self.diagnostics.push(
                    Diagnostic::new(Code::UnknownParam, format!("the policy has no param `{name}`"))
                        .primary(Span::new(file, 0, name.len()), "set with --set")
                        .maybe_note(crate::diagnostics::suggestion(name, declared.iter().copied()))
                        .note(if declared.is_empty() {
                            "the policy declares no params".to_string()
                        } else {
                            format!("its params are: {}", declared.join(", "))
                        }),
                );
                continue;
            }
            let offset = name.len() + 1;
            let text = &sources.get(file).text[offset..];
            // Parse the value as if it started at its offset in the file.
            let padded = format!("{}{}", " ".repeat(offset), text);
            match parser::parse_value(file, &padded) {
                Ok(parsed) => {
                    values.insert(name.as_str(), parsed);
                }
                Err(diagnostic) => self.diagnostics.push(diagnostic),
            }
        }
        values
    }

    fn collect_services(&mut self, items: &[Item]) {
        for item in items {
            let Item::Statement(ast::Statement::Service(service), context) = item else { continue };
            if context.stdlib {
                continue;
            }
            if let Some(first) = self.user_services.get(&service.name.value) {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::RedefinedService,
                        format!("service `{}` is defined twice", service.name.value),
                    )
                    .primary(service.name.span, "defined again here")
                    .secondary(first.span, "first defined here")
                    .note("give one of them another name"),
                );
                continue;
            }
            self.user_services.insert(
                service.name.value.clone(),
                ServiceDefinition { span: service.span, entries: service.entries.clone() },
            );
        }
    }

    fn define(&mut self, decl: &ast::VariableDecl, value: Option<&ast::Value>) {
        if let Some(first) = self.variables.map.get(&decl.name.value) {
            let first = first.span;
            self.diagnostics.push(
                Diagnostic::new(
                    Code::RedefinedVariable,
                    format!("`${}` is defined twice", decl.name.value),
                )
                .primary(decl.name.span, "defined again here")
                .secondary(first, "first defined here")
                .note("variables share one namespace across all included files; rename one"),
            );
            return;
        }
        let Some(value) = value else { return };
        if let Some(resolved) = self.variables.resolve_value(value, self.diagnostics) {
            self.variables.map.insert(
                decl.name.value.clone(),
                values::Variable { value: resolved, span: decl.name.span, used: false },
            );
        }
    }

    fn check_code(&mut self, code: &Spanned<String>) {
        if Code::from_name(&code.value).is_none() {
            self.diagnostics.push(
                Diagnostic::new(Code::UnknownCode, format!("there is no diagnostic `{}`", code.value))
                    .primary(code.span, "unknown code")
                    .maybe_note(crate::diagnostics::suggestion(&code.value, Code::ALL.iter().map(|code| code.name())))
                    .note("docs/diagnostics.md lists every code"),
            );
        }
    }

    fn policies(&mut self, declared: &HashMap<Direction, Vec<(bool, Span, bool)>>) -> Policies {
        let mut policies = Policies::default();
        for direction in [Direction::In, Direction::Out, Direction::Forward] {
            let Some(lines) = declared.get(&direction) else { continue };
            let user: Vec<&(bool, Span, bool)> = lines.iter().filter(|line| !line.2).collect();
            if let [first, second, ..] = user.as_slice() {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::DuplicatePolicy,
                        format!("two policies for `{}`", direction.keyword()),
                    )
                    .primary(second.1, "second policy")
                    .secondary(first.1, "first policy")
                    .note("keep one; a policy of yours already overrides the stdlib's"),
                );
            }
            // A user's policy overrides a module's; otherwise the last wins.
            let chosen = user.first().copied().or(lines.last()).expect("non-empty");
            let verdict = if chosen.0 { Verdict::Accept } else { Verdict::Drop };
            match direction {
                Direction::In => policies.input = verdict,
                Direction::Out => policies.output = verdict,
                Direction::Forward => policies.forward = verdict,
            }
        }
        policies
    }

    fn rule(&mut self, rule: &ast::Rule, context: &Context) -> Option<ResolvedRule> {
        let errors_before = self.error_count();
        let options = &rule.options;
        for code in &options.ignore {
            self.check_code(code);
        }
        if !options.ignore.is_empty() {
            let codes = options.ignore.iter().map(|code| code.value.clone()).collect();
            self.rule_ignores.push((rule.span, codes));
        }
        let on = rule.on.as_ref().map(|on| self.on_clause(on));
        let mut protocols = Vec::new();
        if let Some(clause) = &rule.protocol {
            protocols.extend(self.protocol_clause(clause));
        }
        if let Some(services) = &rule.services {
            for name in &services.value {
                self.service(name, &mut protocols);
            }
        }
        let sources = rule.from.as_ref().map(|from| self.addresses(from));
        let destinations = rule.to.as_ref().map(|to| self.addresses(to));
        let states = rule.state.as_ref().map(|state| Match {
            negated: state.negated,
            value: state.states.iter().fold(States::default(), |set, state| set.union(States::of(state.value))),
        });
        let limit = options.limit.as_ref().and_then(|limit| self.limit(limit));
        let log_rate = options.rate.as_ref().and_then(|rate| self.limit(rate));
        self.check_strings(options, rule.log_prefix.as_deref());
        self.check_action(rule, &protocols);
        let source_ports = rule.source_ports.as_ref().and_then(|ports| self.source_ports(ports, &protocols));
        let tcp_flags = rule.flags.as_ref().and_then(|flags| self.tcp_flags(flags, &protocols));
        let mac_source = rule.mac.as_ref().and_then(|mac| self.mac(mac, rule));
        let reject_with = rule.reject_with.as_ref().and_then(|kind| self.reject_with(kind, rule, &protocols));
        let nat = self.nat(rule, &protocols);
        // An empty prefix is no prefix (iptables refuses an empty one).
        let prefix_text = |prefix: &Spanned<String>| Some(prefix.value.clone()).filter(|text| !text.is_empty());
        let mut log = options.log.as_ref().map(|log| log.prefix.as_ref().and_then(prefix_text));
        if rule.action.value == Action::Log {
            log = Some(rule.log_prefix.as_deref().and_then(prefix_text));
        }

        let mut families = self.families(rule, &protocols, &sources, &destinations);
        if let (Some(found), Some(nat)) = (families.as_mut(), &nat) {
            if let Some(address) = nat.address {
                let family = if address.is_ipv4() { Family::V4 } else { Family::V6 };
                found.retain(|candidate| *candidate == family);
                if found.is_empty() {
                    self.family_conflict_nat(rule);
                }
            }
        }
        if let (Some(found), Some(kind)) = (families.as_mut(), reject_with) {
            if kind.spelling(Family::V6).is_none() {
                if rule.options.ipv6.is_some() || found == &[Family::V6] {
                    self.diagnostics.push(
                        Diagnostic::new(Code::FamilyConflict, "IPv6 has no such reject answer")
                            .primary(rule.reject_with.as_ref().expect("set").span, "IPv4 only")
                            .note("IPv6 answers with net-unreachable, host-unreachable, port-unreachable, admin-prohibited or tcp-reset"),
                    );
                } else if found.contains(&Family::V6) && rule.options.ipv4.is_none() {
                    self.diagnostics.push(
                        Diagnostic::new(Code::FamilyConflict, "IPv6 has no such reject answer")
                            .primary(rule.reject_with.as_ref().expect("set").span, "IPv4 only")
                            .note("add `ipv4` to the rule, and write an IPv6 rule with another answer if you need one"),
                    );
                }
            }
        }
        if self.error_count() > errors_before {
            return None;
        }
        Some(ResolvedRule {
            span: rule.span,
            context: context.clone(),
            action: rule.action.value,
            direction: rule.direction.clone(),
            on,
            protocols,
            sources,
            destinations,
            states,
            jump: rule.jump_target.as_deref().cloned(),
            stateful: options.stateful.is_some(),
            log,
            limit,
            log_rate,
            source_ports,
            tcp_flags,
            mac_source,
            reject_with,
            nat,
            narrowed: options.ipv4.is_some() || options.ipv6.is_some(),
            comment: options.comment.as_ref().map(|comment| comment.value.clone()),
            families: families?,
            ignored: options.ignore.iter().map(|code| code.value.clone()).collect(),
            negation: false,
        })
    }

    fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|diagnostic| diagnostic.is_error()).count()
    }

    fn check_action(&mut self, rule: &ast::Rule, protocols: &[ProtocolMatch]) {
        let action = &rule.action;
        if let Some(stateful) = rule.options.stateful {
            if action.value != Action::Allow {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::StatefulNeedsAllow,
                        format!("`stateful` only goes with `allow`, not `{}`", action.value.keyword()),
                    )
                    .primary(stateful, "not allowed here")
                    .secondary(action.span, "this rule does not allow")
                    .note("`stateful` adds a rule that lets the replies through; remove it here"),
                );
            }
            let error_types = protocols.iter().any(|protocol| {
                protocol.icmp_types.iter().any(|kind| tables::icmp_reply_type(protocol.protocol.0, kind.kind).is_none())
            });
            if error_types {
                self.misplaced(stateful, "`stateful` on ICMP types nobody answers", "not a query", "ICMP errors arrive as RELATED to the flow they are about (baseline's `established` takes them); allow them without `stateful`");
            }
            if let Some(state) = &rule.state {
                self.diagnostics.push(
                    Diagnostic::new(Code::MisplacedClause, "`stateful` and `state` together")
                        .primary(state.span, "`stateful` already sets the states")
                        .secondary(stateful, "stateful here")
                        .note("keep `stateful` for a connection and its replies, or `state` for a plain state match"),
                );
            }
        }
        match (action.value, &rule.jump_target) {
            (Action::Jump, None) => self.diagnostics.push(
                Diagnostic::new(Code::MisplacedClause, "a jump needs a chain to jump to")
                    .primary(rule.span, "no `to CHAIN`")
                    .note("end the rule with `to NAME`: `jump in tcp 22 to fail2ban-ssh`"),
            ),
            (action, Some(target)) if action != Action::Jump => self.diagnostics.push(
                Diagnostic::new(
                    Code::MisplacedClause,
                    format!("`to {}` names a chain, but this rule does not jump", target.value),
                )
                .primary(target.span, "a chain name, not an address")
                .note("addresses after `to` are IP addresses, CIDR blocks, sets or $variables"),
            ),
            _ => {}
        }
        if rule.options.rate.is_some() && rule.options.log.is_none() && action.value != Action::Log {
            let span = rule.options.rate.as_ref().expect("set").span;
            self.misplaced(span, "`rate` limits logging, and this rule does not log", "nothing to limit", "add `log \"prefix\"`, or use `limit` to limit the rule itself");
        }
        if let Some(prefix) = &rule.log_prefix {
            if action.value != Action::Log {
                self.misplaced(prefix.span, "a bare string is the prefix of a `log` statement", "not a log statement", "use `comment \"…\"` or `log \"prefix\"` on this rule");
            }
        }
        if action.value == Action::Log {
            if let Some(log) = &rule.options.log {
                self.misplaced(log.span, "a `log` statement takes its prefix as a plain string", "`log` twice", "`log in from $x \"seen: \" rate 1/second`");
            }
            if let Some(limit) = &rule.options.limit {
                self.misplaced(limit.span, "a `log` statement is limited with `rate`", "use `rate`", "`log in tcp 22 \"ssh: \" rate 1/second`");
            }
        }
        if action.value.is_nat() {
            if let Some(limit) = &rule.options.limit {
                self.misplaced(limit.span, "NAT rules decide no verdict to limit", "not here", "limit the allow rule instead");
            }
        }
        if let (Some(on), Some(direction)) = (&rule.on, &rule.direction) {
            if on.second.is_some() && direction.value != Direction::Forward {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::MisplacedClause,
                        format!("`on A -> B` is for forward rules, not `{}`", direction.value.keyword()),
                    )
                    .primary(on.span, "two interfaces")
                    .note("an `in` rule names the interface traffic arrives on, an `out` rule the one it leaves by"),
                );
            }
        }
    }

    fn misplaced(&mut self, span: Span, message: impl Into<String>, label: &str, note: &str) {
        self.diagnostics.push(Diagnostic::new(Code::MisplacedClause, message).primary(span, label.to_string()).note(note.to_string()));
    }

    /// `sport`: needs protocols that have ports.
    fn source_ports(&mut self, list: &ast::PortList, protocols: &[ProtocolMatch]) -> Option<Match<Vec<PortRange>>> {
        let Some(first) = protocols.first() else {
            self.misplaced(list.span, "`sport` needs a protocol", "source ports of what?", "name the protocol first: `allow in udp 68 sport 67`");
            return None;
        };
        if let Some(without) = protocols.iter().find(|protocol| !protocol.protocol.has_ports()) {
            let name = tables::protocol_save_name(without.protocol.0);
            self.diagnostics.push(
                Diagnostic::new(Code::PortsWithoutProtocol, format!("`{name}` has no ports"))
                    .primary(list.span, "source ports given here")
                    .note("only tcp, udp, udplite and sctp have ports"),
            );
            return None;
        }
        let mut entries = Vec::new();
        for item in &list.items {
            self.variables.port_entries(item, &mut entries, self.diagnostics);
        }
        let name = tables::protocol_save_name(first.protocol.0);
        let ports = self.resolve_ports(first.protocol, &name, &entries)?;
        Some(Match { negated: list.negated, value: ports })
    }

    fn tcp_flags(&mut self, flags: &ast::FlagsClause, protocols: &[ProtocolMatch]) -> Option<Match<TcpFlags>> {
        if protocols.len() != 1 || protocols[0].protocol != Protocol::TCP {
            self.misplaced(flags.span, "`flags` are TCP flags", "needs `tcp`", "write `allow in tcp 22 flags syn`");
            return None;
        }
        let bits = |list: &str| {
            list.split(',').fold(0u8, |bits, name| {
                bits | match name.to_ascii_lowercase().as_str() {
                    "fin" => 1,
                    "syn" => 2,
                    "rst" => 4,
                    "psh" => 8,
                    "ack" => 16,
                    "urg" => 32,
                    "all" => 63,
                    _ => 0,
                }
            })
        };
        // `flags syn` is `--syn`: of FIN, SYN, RST and ACK, only SYN is set.
        let mask = flags.mask.as_ref().map_or(1 | 2 | 4 | 16, |mask| bits(&mask.value));
        let set = bits(&flags.set.value);
        if set & !mask != 0 {
            self.misplaced(flags.set.span, "these flags are outside the mask", "not in the mask", "the second list must be part of the first: `flags FIN,SYN,RST,ACK syn`");
            return None;
        }
        Some(Match { negated: flags.negated, value: TcpFlags { mask, set } })
    }

    fn mac(&mut self, mac: &ast::MacClause, rule: &ast::Rule) -> Option<Match<String>> {
        if rule.direction.as_ref().is_some_and(|direction| direction.value == Direction::Out) {
            self.misplaced(mac.span, "`mac` matches the sender's hardware address of arriving packets", "not on `out` rules", "use it on `in` or `forward` rules");
            return None;
        }
        Some(Match { negated: mac.negated, value: mac.address.value.to_ascii_lowercase() })
    }

    fn reject_with(&mut self, kind: &Spanned<String>, rule: &ast::Rule, protocols: &[ProtocolMatch]) -> Option<RejectWith> {
        if rule.action.value != Action::Reject {
            self.misplaced(kind.span, "`with` goes with `reject`", "not a reject", "`reject in tcp 113 with tcp-reset`");
            return None;
        }
        let name = kind.value.trim_start_matches("icmp6-").trim_start_matches("icmp-");
        let found = RejectWith::KINDS.iter().find(|(_, fwc, v4, v6)| {
            *fwc == name || *v4 == kind.value || v6.is_some_and(|v6| v6 == kind.value)
        });
        let Some((with, ..)) = found else {
            let names: Vec<&str> = RejectWith::KINDS.iter().map(|(_, name, ..)| *name).collect();
            self.diagnostics.push(
                Diagnostic::new(Code::SyntaxError, format!("`{}` is not a reject answer", kind.value))
                    .primary(kind.span, "unknown answer")
                    .maybe_note(crate::diagnostics::suggestion(name, names.iter().copied()))
                    .note(format!("the answers are: {}", names.join(", "))),
            );
            return None;
        };
        if *with == RejectWith::TcpReset && !(protocols.len() == 1 && protocols[0].protocol == Protocol::TCP) {
            self.misplaced(kind.span, "a TCP reset answers TCP only", "needs `tcp`", "write `reject in tcp 113 with tcp-reset`; a reject without `with` answers TCP with a reset and everything else with port-unreachable");
            return None;
        }
        Some(*with)
    }

    /// The translation of a NAT rule, and its parts checked.
    fn nat(&mut self, rule: &ast::Rule, protocols: &[ProtocolMatch]) -> Option<NatResolved> {
        let action = rule.action.value;
        if !action.is_nat() {
            if let Some(target) = &rule.nat_target {
                self.misplaced(target.span(), "a translation target on a rule that translates nothing", "not a NAT rule", "to-source goes with snat, to-destination with dnat, to-port with masquerade and redirect");
            }
            if let Some(port) = &rule.port {
                self.misplaced(port.span, "`port` goes with `forward-port … to ADDRESS port PORT`", "not a port forward", "name ports after the protocol: `tcp 80`");
            }
            return None;
        }
        let direction = rule.direction.as_ref().map(|direction| direction.value);
        let wanted: &[Direction] = match action {
            Action::Masquerade | Action::Snat => &[Direction::Out],
            Action::ForwardPort => &[Direction::In],
            _ => &[Direction::In, Direction::Out],
        };
        if let Some(direction) = direction.filter(|direction| !wanted.contains(direction)) {
            let span = rule.direction.as_ref().expect("set").span;
            let note = match action {
                Action::Masquerade | Action::Snat => "source NAT happens as packets leave: `masquerade out on $wan from 192.168.1.0/24`",
                Action::ForwardPort => "a port forward takes packets arriving from outside: `forward-port in on $wan tcp 8443 to $nas port 443`",
                _ => "destination NAT applies to arriving (`in`) or locally sent (`out`) packets",
            };
            self.misplaced(span, format!("`{}` does not go with `{}`", action.keyword(), direction.keyword()), "wrong direction", note);
            return None;
        }
        let parse_host = |resolver: &mut Self, text: &Spanned<String>| -> Option<std::net::IpAddr> {
            match text.value.parse::<std::net::IpAddr>() {
                Ok(address) => Some(address),
                Err(_) => {
                    resolver.diagnostics.push(
                        Diagnostic::new(Code::BadAddress, format!("`{}` is not a single address", text.value))
                            .primary(text.span, "translation needs one address")
                            .note("NAT translates to one host: 192.0.2.10 or 2001:db8::10, no block"),
                    );
                    None
                }
            }
        };
        let single_port = |resolver: &mut Self, list: &ast::PortList, protocols: &[ProtocolMatch]| -> Option<PortRange> {
            if protocols.is_empty() || protocols.iter().any(|protocol| !protocol.protocol.has_ports()) {
                resolver.misplaced(list.span, "translating ports needs a protocol with ports", "ports of what?", "name the protocol: `redirect in tcp 80 to-port 3128`");
                return None;
            }
            let mut entries = Vec::new();
            for item in &list.items {
                resolver.variables.port_entries(item, &mut entries, resolver.diagnostics);
            }
            match entries.as_slice() {
                [PortEntry::Range(range, _)] => Some(*range),
                _ => {
                    resolver.misplaced(list.span, "a translation takes one port or one range", "several ports", "`to-port 3128` or `to-port 1024-2000`");
                    None
                }
            }
        };
        let mut resolved = NatResolved { address: None, ports: None };
        match (action, rule.nat_target.as_deref()) {
            (Action::Snat, Some(ast::NatTarget::Source(_, address))) => resolved.address = Some(parse_host(self, address)?),
            (Action::Dnat, Some(ast::NatTarget::Destination(_, address))) => {
                resolved.address = Some(parse_host(self, address)?);
                if let Some(port) = &rule.port {
                    resolved.ports = Some(single_port(self, port, protocols)?);
                }
            }
            (Action::Masquerade | Action::Redirect, Some(ast::NatTarget::Ports(_, ports))) => {
                resolved.ports = Some(single_port(self, ports, protocols)?)
            }
            (Action::Masquerade | Action::Redirect, None) => {}
            (Action::ForwardPort, None) => {
                let target = rule.to.as_ref().and_then(|to| match to.items.as_slice() {
                    [ast::AddressItem::Literal(literal)] => Some(literal.clone()),
                    [ast::AddressItem::Variable(name)] => match self.variables.lookup(name, self.diagnostics) {
                        Some(VariableValue::Addresses(addresses)) if addresses.len() == 1 => {
                            Some(Spanned { span: name.span, value: addresses[0].net.addr().to_string() })
                        }
                        _ => None,
                    },
                    _ => None,
                });
                let Some(target) = target else {
                    self.misplaced(rule.span, "a port forward needs one host to forward to", "no single `to` address", "`forward-port in on $wan tcp 8443 to 192.168.1.10 port 443`");
                    return None;
                };
                resolved.address = Some(parse_host(self, &target)?);
                if let Some(port) = &rule.port {
                    resolved.ports = Some(single_port(self, port, protocols)?);
                }
            }
            (_, target) => {
                let (span, note) = match action {
                    Action::Snat => (rule.span, "`snat out on $wan from 10.0.0.0/8 to-source 192.0.2.1`"),
                    Action::Dnat => (rule.span, "`dnat in on $wan tcp 80 to-destination 10.0.0.5 port 8080`"),
                    _ => (target.as_ref().map_or(rule.span, |target| target.span()), "masquerade and redirect take `to-port`, snat `to-source`, dnat `to-destination`"),
                };
                self.misplaced(span, format!("`{}` needs its own translation target", action.keyword()), "missing or wrong target", note);
                return None;
            }
        }
        if action != Action::Dnat && action != Action::ForwardPort {
            if let Some(port) = &rule.port {
                self.misplaced(port.span, "`port` goes with `forward-port` and `dnat`", "not here", "masquerade and redirect take `to-port`");
                return None;
            }
        }
        Some(resolved)
    }

    fn family_conflict_nat(&mut self, rule: &ast::Rule) {
        self.diagnostics.push(
            Diagnostic::new(Code::FamilyConflict, "the translation address and the rule's addresses are of different families")
                .primary(rule.span, "no family is left")
                .note("NAT translates within one family: give IPv4 addresses to an IPv4 translation"),
        );
    }

    fn check_strings(&mut self, options: &ast::RuleOptions, rule_log_prefix: Option<&Spanned<String>>) {
        if let Some(comment) = &options.comment {
            if comment.value.len() > 255 {
                self.diagnostics.push(
                    Diagnostic::new(Code::CommentTooLong, format!("this comment is {} bytes long", comment.value.len()))
                        .primary(comment.span, "the kernel keeps 255 bytes of a comment")
                        .note("shorten it; a `#` comment in the policy has no limit"),
                );
            }
            if comment.value.contains(['\n', '\0']) {
                self.diagnostics.push(
                    Diagnostic::new(Code::CommentTooLong, "a comment cannot hold a line break or NUL")
                        .primary(comment.span, "here"),
                );
            }
        }
        let statement_prefix = rule_log_prefix;
        if let Some(prefix) = options.log.as_ref().and_then(|log| log.prefix.as_ref()).or(statement_prefix) {
            if prefix.value.len() > 29 {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::LogPrefixTooLong,
                        format!("this log prefix is {} bytes long", prefix.value.len()),
                    )
                    .primary(prefix.span, "the kernel keeps 29 bytes of a log prefix")
                    .note("shorten it; the rest of the log line says what matched"),
                );
            }
        }
    }

    fn limit(&mut self, limit: &ast::Limit) -> Option<Limit> {
        let rate = limit.rate.value;
        let unit_seconds: u64 = match rate.unit {
            ast::RateUnit::Second => 1,
            ast::RateUnit::Minute => 60,
            ast::RateUnit::Hour => 3600,
            ast::RateUnit::Day => 86400,
        };
        let burst = limit.burst.as_ref().map_or(5, |burst| burst.value);
        // iptables refuses a rate over 10,000 per second and a burst of zero.
        if rate.count == 0 || rate.count / unit_seconds > 10_000 {
            self.diagnostics.push(
                Diagnostic::new(Code::BadRate, "this rate is out of range")
                    .primary(limit.rate.span, "between 1/day and 10000/second")
                    .note("to drop all such traffic, use `deny`; to allow all of it, remove the limit"),
            );
            return None;
        }
        if burst == 0 || burst > 10_000 {
            let span = limit.burst.as_ref().map_or(limit.span, |burst| burst.span);
            self.diagnostics.push(
                Diagnostic::new(Code::BadRate, "the burst must be between 1 and 10000")
                    .primary(span, "out of range"),
            );
            return None;
        }
        Some(Limit { count: rate.count as u32, unit_seconds: unit_seconds as u32, burst: burst as u32 })
    }

    fn on_clause(&mut self, on: &ast::OnClause) -> OnResolved {
        OnResolved {
            span: on.span,
            first: self.interface(&on.first),
            second: on.second.as_ref().map(|second| self.interface(second)),
        }
    }

    fn interface(&mut self, interface: &ast::Interface) -> Option<Match<String>> {
        let name = match &interface.value {
            ast::InterfaceValue::Any => return None,
            ast::InterfaceValue::Name(name) => {
                values::check_interface(name, interface.span, self.diagnostics);
                name.clone()
            }
            ast::InterfaceValue::Variable(variable) => {
                let spanned = Spanned { span: interface.span, value: variable.clone() };
                match self.variables.lookup(&spanned, self.diagnostics) {
                    Some(VariableValue::Interface(name)) => name.clone(),
                    Some(other) => {
                        let other = other.clone();
                        Variables::wrong_kind(&spanned, &other, "an interface", self.diagnostics);
                        return None;
                    }
                    None => return None,
                }
            }
        };
        Some(Match { negated: interface.negated, value: name })
    }

    fn addresses(&mut self, addresses: &ast::Addresses) -> AddressMatch {
        let mut out = Vec::new();
        for item in &addresses.items {
            self.variables.flatten_addresses(item, &mut out, self.diagnostics);
        }
        // The same block twice would only make the kernel do the work twice.
        if out.len() > 1 {
            let mut seen = std::collections::HashSet::new();
            out.retain(|address| seen.insert(address.net));
        }
        AddressMatch { negated: addresses.negated, addresses: out }
    }

    fn protocol_number(&mut self, name: &Spanned<String>) -> Option<Protocol> {
        if let Some((_, number)) = tables::PROTOCOL_KEYWORDS.iter().find(|(keyword, _)| *keyword == name.value) {
            return Some(Protocol(*number));
        }
        match name.value.parse::<u8>() {
            Ok(number) if number > 0 => Some(Protocol(number)),
            _ => {
                self.diagnostics.push(
                    Diagnostic::new(Code::SyntaxError, format!("`{}` is not a protocol number", name.value))
                        .primary(name.span, "protocol numbers go from 1 to 255")
                        .note("leave the protocol out to match every protocol"),
                );
                None
            }
        }
    }

    fn protocol_clause(&mut self, clause: &ast::ProtocolClause) -> Option<ProtocolMatch> {
        let protocol = self.protocol_number(&clause.protocol)?;
        let mut result = ProtocolMatch { protocol, ports: None, icmp_types: Vec::new(), icmp_negated: false };
        let Some(list) = &clause.ports else { return Some(result) };
        if protocol == Protocol::ICMP || protocol == Protocol::ICMPV6 {
            result.icmp_types = self.icmp_types(protocol, list);
            result.icmp_negated = list.negated;
            return Some(result);
        }
        if !protocol.has_ports() {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::PortsWithoutProtocol,
                    format!("`{}` has no ports", clause.protocol.value),
                )
                .primary(list.span, "ports given here")
                .secondary(clause.protocol.span, "this protocol")
                .note("only tcp, udp, udplite and sctp have ports; remove them, or name the protocol that has them"),
            );
            return None;
        }
        let mut entries = Vec::new();
        for item in &list.items {
            self.variables.port_entries(item, &mut entries, self.diagnostics);
        }
        let ports = self.resolve_ports(protocol, &clause.protocol.value, &entries)?;
        result.ports = Some(Match { negated: list.negated, value: ports });
        Some(result)
    }

    /// Port entries to ranges, a service name giving its ports for `protocol`.
    fn resolve_ports(&mut self, protocol: Protocol, protocol_name: &str, entries: &[PortEntry]) -> Option<Vec<PortRange>> {
        let mut ports = Vec::new();
        let mut ok = true;
        for entry in entries {
            match entry {
                PortEntry::Range(range, _) => ports.push(*range),
                PortEntry::Service(name) => {
                    let mut protocols = Vec::new();
                    if !self.service(name, &mut protocols) {
                        ok = false;
                        continue;
                    }
                    match protocols.iter().find(|candidate| candidate.protocol == protocol) {
                        Some(ProtocolMatch { ports: Some(service_ports), .. }) => {
                            ports.extend(service_ports.value.iter().copied())
                        }
                        _ => {
                            ok = false;
                            self.diagnostics.push(
                                Diagnostic::new(
                                    Code::ServiceLacksProtocol,
                                    format!("service `{}` has no {protocol_name} ports", name.value),
                                )
                                .primary(name.span, format!("used as {protocol_name} ports"))
                                .note(format!("write `service {}` instead of a protocol to take all of its ports", name.value)),
                            );
                        }
                    }
                }
            }
        }
        if ports.len() > 1 {
            let mut seen = std::collections::HashSet::new();
            ports.retain(|range| seen.insert(*range));
        }
        ok.then_some(ports)
    }

    fn icmp_types(&mut self, protocol: Protocol, list: &ast::PortList) -> Vec<IcmpType> {
        let (table, family_name) = if protocol == Protocol::ICMP {
            (tables::ICMP_TYPES, "icmp")
        } else {
            (tables::ICMPV6_TYPES, "icmpv6")
        };
        let mut types = Vec::new();
        for item in &list.items {
            let found = match item {
                ast::PortItem::Single(number) if number.value <= 255 => Some(number.value as u8),
                ast::PortItem::Name(name) => {
                    table.iter().find(|(type_name, _)| *type_name == name.value).map(|(_, kind)| *kind)
                }
                _ => None,
            };
            match found {
                Some(kind) => types.push(IcmpType { kind, code: None }),
                None => {
                    let names: Vec<&str> = table.iter().map(|(name, _)| *name).take(16).collect();
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::PortsWithoutProtocol,
                            format!("`{}` is not an {family_name} type", self_text(item)),
                        )
                        .primary(item.span(), format!("expected an {family_name} type name or a number 0-255"))
                        .note(format!("{family_name} types: {}, …", names.join(", "))),
                    );
                }
            }
        }
        types
    }

    /// Adds a service's protocols and ports to `protocols`, merging entries
    /// of a protocol already there. False if the name is unknown.
    fn service(&mut self, name: &Spanned<String>, protocols: &mut Vec<ProtocolMatch>) -> bool {
        if self.resolving.contains(&name.value) {
            self.diagnostics.push(
                Diagnostic::new(Code::UnknownService, format!("service `{}` is defined by itself", name.value))
                    .primary(name.span, "used inside its own definition"),
            );
            return false;
        }
        let entries = match self.user_services.get(&name.value).or_else(|| self.stdlib_services.get(&name.value)) {
            Some(definition) => definition.entries.clone(),
            None => {
                let names = self.user_services.keys().chain(self.stdlib_services.keys()).map(String::as_str);
                let hint = crate::diagnostics::suggestion(&name.value, names);
                self.diagnostics.push(
                    Diagnostic::new(Code::UnknownService, format!("there is no service `{}`", name.value))
                        .primary(name.span, "unknown service")
                        .maybe_note(hint)
                        .note(format!(
                            "define it: `service {} = tcp PORT`; stdlib/services.fw lists the services every policy has",
                            name.value
                        )),
                );
                return false;
            }
        };
        self.used_services.insert(name.value.clone());
        self.resolving.push(name.value.clone());
        for entry in &entries {
            if let Some(resolved) = self.protocol_clause(entry) {
                match protocols.iter_mut().find(|existing| existing.protocol == resolved.protocol) {
                    Some(existing) => match (&mut existing.ports, resolved.ports) {
                        (Some(ports), Some(more)) => ports.value.extend(more.value),
                        (slot @ Some(_), None) => *slot = None,
                        (None, _) => {}
                    },
                    None => protocols.push(resolved),
                }
            }
        }
        self.resolving.pop();
        true
    }

    /// The families a rule applies to; `None` (with a diagnostic) if none.
    fn families(
        &mut self,
        rule: &ast::Rule,
        protocols: &[ProtocolMatch],
        sources: &Option<AddressMatch>,
        destinations: &Option<AddressMatch>,
    ) -> Option<Vec<Family>> {
        let mut families = Family::BOTH.to_vec();
        let mut reasons: Vec<(Span, String)> = Vec::new();
        let options = &rule.options;
        match (options.ipv4, options.ipv6) {
            (Some(span), None) => {
                families.retain(|family| *family == Family::V4);
                reasons.push((span, "IPv4 only".to_string()));
            }
            (None, Some(span)) => {
                families.retain(|family| *family == Family::V6);
                reasons.push((span, "IPv6 only".to_string()));
            }
            _ => {}
        }
        if !protocols.is_empty() {
            let protocol_families: Vec<Family> = Family::BOTH
                .into_iter()
                .filter(|family| protocols.iter().any(|protocol| protocol.families().contains(family)))
                .collect();
            if protocol_families.len() == 1 {
                let span = rule.protocol.as_ref().map(|p| p.span).or(rule.services.as_ref().map(|s| s.span));
                if let Some(span) = span {
                    reasons.push((span, format!("{} only", protocol_families[0].name())));
                }
            }
            families.retain(|family| protocol_families.contains(family));
        }
        for (addresses, clause) in [(sources, &rule.from), (destinations, &rule.to)] {
            if let (Some(addresses), Some(clause)) = (addresses, clause) {
                // `not 10.0.0.0/8` holds for every IPv6 packet: no restriction.
                if addresses.negated {
                    continue;
                }
                let address_families = values::families_of(&addresses.addresses);
                if addresses.addresses.is_empty() {
                    continue; // an error was reported for each bad address
                }
                if address_families.len() == 1 {
                    reasons.push((clause.span, format!("{} only", address_families[0].name())));
                }
                families.retain(|family| address_families.contains(family));
            }
        }
        if families.is_empty() {
            let mut diagnostic = Diagnostic::new(Code::FamilyConflict, "this rule applies to no address family")
                .primary(rule.span, "no family is left");
            for (span, reason) in reasons {
                diagnostic = diagnostic.secondary(span, reason);
            }
            self.diagnostics.push(diagnostic.note(
                "a rule is IPv4 or IPv6 by its addresses, its protocol (icmp, icmpv6) and `ipv4`/`ipv6`; make them agree, or write one rule per family",
            ));
            return None;
        }
        Some(families)
    }
}

fn self_text(item: &ast::PortItem) -> String {
    match item {
        ast::PortItem::Single(number) => number.value.to_string(),
        ast::PortItem::Range(_, low, high) => format!("{}-{}", low.value, high.value),
        ast::PortItem::Name(name) => name.value.clone(),
        ast::PortItem::Variable(name) => format!("${}", name.value),
    }
}

