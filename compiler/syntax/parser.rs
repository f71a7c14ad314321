//! Text to syntax tree. The only file that sees pest's types.

use super::ast::*;
use super::tree;
use crate::diagnostics::{Code, Diagnostic};
use crate::source::{FileId, Span};
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser as _;

mod grammar {
    #[derive(pest_derive::Parser)]
    #[grammar = "compiler/syntax/fwc.pest"]
    pub struct Grammar;
}

/// The grammar's rules (pest calls them `Rule`, like the AST's rules).
use grammar::{Grammar, Rule as G};

type Node<'a> = Pair<'a, G>;

/// Parses one file. A syntax error yields no tree and one diagnostic;
/// otherwise the tree comes with any duplicate-part diagnostics.
///
/// The file is parsed a piece at a time (`policy_chunk`: up to 64 lines),
/// each piece turned into its AST before the next is parsed, so pest's
/// token queue never holds more than one piece. A parse at a position
/// depends only on the text from there on, so this accepts exactly what
/// `policy_file` accepts, with the same trees. Only when a piece fails is
/// the whole file parsed again with `policy_file`, for the very error it
/// reports.
///
/// A long file is cut into segments, one per core, each parsed from its
/// first line on a thread of its own. Where a segment starts need not be
/// where a statement starts (it could be inside a chain): the parse from
/// the start of the file decides. Once it reaches a statement that a
/// segment's parse also found at that very position, the rest of that
/// segment is the same parse, and is taken as it is; where it reaches none,
/// it goes on by itself. The result never depends on the threads.
pub fn parse_file(file: FileId, text: &str) -> (Option<File>, Vec<Diagnostic>) {
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let segments = cores.min(text.len() / SEGMENT_MIN).max(1);
    let mut starts: Vec<usize> = (0..segments).map(|index| segment_start(text, text.len() * index / segments)).collect();
    starts.dedup();
    let limit = |index: usize| starts.get(index + 1).copied().unwrap_or(usize::MAX);
    let (mut parse, mut others): (Segment, Vec<Segment>) = std::thread::scope(|scope| {
        let threads: Vec<_> = (1..starts.len())
            .map(|index| {
                let (start, limit) = (starts[index], limit(index));
                scope.spawn(move || parse_segment(file, text, start, limit))
            })
            .collect();
        // The parse from the start of the file, which the others join.
        let parse = parse_segment(file, text, 0, limit(0));
        let others = threads.into_iter().map(|thread| thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        (parse, others.collect())
    });
    for (index, segment) in others.iter_mut().enumerate() {
        let split = starts[index + 1];
        // Statements of `parse` before this one were looked up already.
        let mut unchecked = parse.starts.partition_point(|start| *start < split);
        while parse.stop == Stop::Limit {
            let common = (unchecked..parse.starts.len())
                .find_map(|position| Some((position, segment.starts.binary_search(&parse.starts[position]).ok()?)));
            if let Some((position, from)) = common {
                parse.take_over(position, segment, from);
                break;
            }
            unchecked = parse.starts.len();
            // No common statement yet: go on, as long as one may come.
            match segment.starts.last() {
                Some(last) if parse.end <= *last => parse.next_piece(file, text),
                _ => break,
            }
        }
    }
    while parse.stop == Stop::Limit {
        parse.next_piece(file, text);
    }
    if parse.stop == Stop::Error {
        return parse_whole_file(file, text);
    }
    let diagnostics = parse.diagnostics.into_iter().map(|(_, diagnostic)| diagnostic).collect();
    (Some(File { statements: parse.statements }), diagnostics)
}

/// Files of at least this many bytes per core are parsed in parallel.
const SEGMENT_MIN: usize = 64 * 1024;

/// Where a segment starting near `at` starts: at the next line that starts
/// with a letter, as statements do. Any position would be correct.
fn segment_start(text: &str, at: usize) -> usize {
    if at == 0 {
        return 0;
    }
    let bytes = text.as_bytes();
    (at..bytes.len())
        .find(|&position| bytes[position - 1] == b'\n' && bytes[position].is_ascii_alphabetic())
        .unwrap_or(bytes.len())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Parsed past the segment's end; more may follow.
    Limit,
    /// Reached the end of the file.
    End,
    /// The piece at `end` has a syntax error.
    Error,
}

/// The top-level statements parsed from a position on, up to where it
/// stopped: where each starts, and what building each reported.
struct Segment {
    statements: Vec<Statement>,
    starts: Vec<usize>,
    /// By the index of the statement that reported it.
    diagnostics: Vec<(usize, Diagnostic)>,
    end: usize,
    stop: Stop,
}

/// Parses from `start` until past `limit`, the end of the file, or an error.
fn parse_segment(file: FileId, text: &str, start: usize, limit: usize) -> Segment {
    let mut segment =
        Segment { statements: Vec::new(), starts: Vec::new(), diagnostics: Vec::new(), end: start, stop: Stop::Limit };
    while segment.stop == Stop::Limit && segment.end < limit {
        segment.next_piece(file, text);
    }
    segment
}

impl Segment {
    /// Parses the piece at `end`.
    fn next_piece(&mut self, file: FileId, text: &str) {
        let offset = self.end;
        let Ok(mut pairs) = Grammar::parse(G::policy_chunk, &text[offset..]) else {
            self.stop = Stop::Error;
            return;
        };
        let piece = pairs.next().expect("policy_chunk yields one pair");
        self.end = offset + piece.as_span().end();
        let mut builder = Builder { file, base: offset, diagnostics: Vec::new() };
        for node in piece.into_inner() {
            if node.as_rule() == G::EOI {
                self.stop = Stop::End;
            }
            let start = offset + node.as_span().start();
            if let Some(statement) = builder.statement(node) {
                let index = self.statements.len();
                self.diagnostics.extend(builder.diagnostics.drain(..).map(|diagnostic| (index, diagnostic)));
                self.statements.push(statement);
                self.starts.push(start);
            }
        }
    }

    /// Keeps the first `position` statements, then `other`'s from `from`:
    /// the same parse from there on.
    fn take_over(&mut self, position: usize, other: &mut Segment, from: usize) {
        self.statements.truncate(position);
        self.starts.truncate(position);
        let kept = self.diagnostics.partition_point(|(index, _)| *index < position);
        self.diagnostics.truncate(kept);
        self.statements.extend(other.statements.drain(from..));
        self.starts.extend(other.starts.drain(from..));
        let first = other.diagnostics.partition_point(|(index, _)| *index < from);
        self.diagnostics.extend(other.diagnostics.drain(first..).map(|(index, diagnostic)| (index - from + position, diagnostic)));
        self.end = other.end;
        self.stop = other.stop;
    }
}

/// [`parse_file`] in one pest call: how a syntax error is found.
fn parse_whole_file(file: FileId, text: &str) -> (Option<File>, Vec<Diagnostic>) {
    let parsed = match Grammar::parse(G::policy_file, text) {
        Ok(mut pairs) => pairs.next().expect("policy_file always yields one pair"),
        Err(error) => return (None, vec![syntax_error(file, text, error)]),
    };
    let mut builder = Builder { file, base: 0, diagnostics: Vec::new() };
    let statements = builder.statements(parsed.into_inner());
    (Some(File { statements }), builder.diagnostics)
}

/// Parses the VALUE of `--set NAME=VALUE`.
pub fn parse_value(file: FileId, text: &str) -> Result<Value, Diagnostic> {
    let mut pairs = Grammar::parse(G::value_input, text)
        .map_err(|error| syntax_error(file, text, error))?;
    let value = pairs.next().and_then(|input| input.into_inner().next()).expect("value_input");
    let mut builder = Builder { file, base: 0, diagnostics: Vec::new() };
    Ok(builder.value(value))
}

/// Parses the packet of `fwc query`.
pub fn parse_packet(file: FileId, text: &str) -> Result<Packet, Diagnostic> {
    let mut pairs = Grammar::parse(G::packet_input, text).map_err(|error| syntax_error(file, text, error))?;
    let input = pairs.next().expect("packet_input");
    let mut builder = Builder { file, base: 0, diagnostics: Vec::new() };
    let mut parts = input.into_inner();
    let direction = builder.direction(parts.next().expect("direction"));
    let query = builder.packet(direction, parts.filter(|part| part.as_rule() != G::EOI));
    match builder.diagnostics.into_iter().next() {
        Some(diagnostic) => Err(diagnostic),
        None => Ok(query),
    }
}

struct Builder {
    file: FileId,
    /// Where the text pest sees starts in the file.
    base: usize,
    diagnostics: Vec<Diagnostic>,
}

impl Builder {
    fn span(&self, node: &Node) -> Span {
        let span = node.as_span();
        Span::new(self.file, self.base + span.start(), self.base + span.end())
    }

    fn spanned_str(&self, node: &Node) -> Spanned<String> {
        Spanned { span: self.span(node), value: node.as_str().to_string() }
    }

    fn statements<'a>(&mut self, nodes: impl Iterator<Item = Node<'a>>) -> Vec<Statement> {
        nodes.filter_map(|node| self.statement(node)).collect()
    }

    fn statement(&mut self, node: Node) -> Option<Statement> {
        let span = self.span(&node);
        Some(match node.as_rule() {
            G::rule | G::return_rule => Statement::Rule(self.rule(node)),
            G::policy_decl => {
                let mut parts = node.into_inner().skip(1);
                let direction = self.direction(parts.next().expect("direction"));
                let verdict = parts.next().expect("verdict").into_inner().next().expect("keyword");
                let accept = verdict.as_rule() == G::kw_accept;
                Statement::Policy(PolicyDecl { span, direction, accept })
            }
            G::let_decl | G::param_decl => {
                let is_let = node.as_rule() == G::let_decl;
                let mut parts = node.into_inner().skip(1);
                let name = self.spanned_str(&parts.next().expect("name"));
                let value = parts.next().map(|value| self.value(value));
                let decl = VariableDecl { span, name, value };
                if is_let {
                    Statement::Let(decl)
                } else {
                    Statement::Param(decl)
                }
            }
            G::service_decl => {
                let mut parts = node.into_inner().skip(1);
                let name = self.spanned_str(&parts.next().expect("name"));
                let entries = parts.map(|entry| self.protocol_clause(entry)).collect();
                Statement::Service(ServiceDecl { span, name, entries })
            }
            G::chain_decl => {
                let mut parts = node.into_inner().skip(1).peekable();
                let name = self.spanned_str(&parts.next().expect("name"));
                let keep = parts.next_if(|part| part.as_rule() == G::kw_keep).is_some();
                let body = self.statements(parts);
                Statement::Chain(ChainDecl { span, name, keep, body })
            }
            G::keep_chains => Statement::KeepChains(
                node.into_inner().skip(2).map(|pattern| self.string(pattern)).collect(),
            ),
            G::include => {
                Statement::Include(self.string(node.into_inner().nth(1).expect("path")))
            }
            G::use_module => {
                let mut parts = node.into_inner().skip(1);
                let module = self.spanned_str(&parts.next().expect("module"));
                let except = parts
                    .filter(|part| part.as_rule() == G::name)
                    .map(|part| self.spanned_str(&part))
                    .collect();
                Statement::Use(UseModule { span, module, except })
            }
            G::ignore_decl => {
                let mut parts = node.into_inner().skip(1);
                let code = self.spanned_str(&parts.next().expect("code"));
                let reason = self.string(parts.next().expect("reason"));
                Statement::Ignore(IgnoreDecl { span, code, reason })
            }
            G::test_block => {
                let mut parts = node.into_inner().skip(1);
                let name = self.string(parts.next().expect("name"));
                let expects = parts.map(|expect| self.expect(expect)).collect();
                Statement::Test(TestBlock { span, name, expects })
            }
            G::end_of_line | G::EOI => return None,
            other => unreachable!("unexpected statement node {other:?}"),
        })
    }

    fn rule(&mut self, node: Node) -> Rule {
        let span = self.span(&node);
        let mut parts = node.into_inner().peekable();
        let first = parts.next().expect("action");
        let action = match first.as_rule() {
            G::kw_return => Spanned { span: self.span(&first), value: Action::Return },
            G::action => {
                let keyword = first.into_inner().next().expect("keyword");
                let value = match keyword.as_rule() {
                    G::kw_allow => Action::Allow,
                    G::kw_deny => Action::Deny,
                    G::kw_reject => Action::Reject,
                    G::kw_log => Action::Log,
                    G::kw_masquerade => Action::Masquerade,
                    G::kw_snat => Action::Snat,
                    G::kw_dnat => Action::Dnat,
                    G::kw_redirect => Action::Redirect,
                    G::kw_forward_port => Action::ForwardPort,
                    _ => Action::Jump,
                };
                Spanned { span: self.span(&keyword), value }
            }
            other => unreachable!("rule starts with {other:?}"),
        };
        let early_with = parts.next_if(|part| part.as_rule() == G::reject_with);
        let direction = parts
            .next_if(|part| part.as_rule() == G::direction)
            .map(|part| self.direction(part));
        let mut rule = Rule {
            span,
            action,
            direction,
            on: None,
            protocol: None,
            services: None,
            from: None,
            to: None,
            jump_target: None,
            state: None,
            source_ports: None,
            flags: None,
            mac: None,
            reject_with: None,
            nat_target: None,
            port: None,
            log_prefix: None,
            options: RuleOptions::default(),
        };
        for part in early_with.into_iter().chain(parts) {
            let part_span = self.span(&part);
            match part.as_rule() {
                G::on_clause => {
                    let on = self.on_clause(part);
                    self.set_once(&mut rule.on, Box::new(on), part_span, "`on`");
                }
                G::protocol_clause => {
                    let protocol = self.protocol_clause(part);
                    let what = "a protocol";
                    if let Some(services) = &rule.services {
                        self.duplicate(part_span, services.span, what);
                    } else {
                        self.set_once(&mut rule.protocol, protocol, part_span, what);
                    }
                }
                G::service_clause => {
                    let names = part
                        .into_inner()
                        .skip(1)
                        .map(|name| self.spanned_str(&name))
                        .collect();
                    let services = Spanned { span: part_span, value: names };
                    let what = "a protocol";
                    if let Some(protocol) = &rule.protocol {
                        self.duplicate(part_span, protocol.span, what);
                    } else {
                        self.set_once(&mut rule.services, Box::new(services), part_span, what);
                    }
                }
                G::from_clause => {
                    let addresses = self.addresses(part.into_inner().nth(1).expect("addresses"));
                    self.set_once(&mut rule.from, addresses, part_span, "`from`");
                }
                G::to_clause => {
                    let addresses = self.addresses(part.into_inner().nth(1).expect("addresses"));
                    self.set_once(&mut rule.to, addresses, part_span, "`to`");
                }
                G::state_clause => {
                    let mut negated = false;
                    let items = part.into_inner().skip(1);
                    let mut states = Vec::with_capacity(items.len());
                    for item in items {
                        match item.as_rule() {
                            G::negation => negated = true,
                            _ => states.push(self.connection_state(&item)),
                        }
                    }
                    let state = StateMatch { span: part_span, negated, states };
                    self.set_once(&mut rule.state, Box::new(state), part_span, "`state`");
                }
                G::sport_clause => {
                    let ports = self.port_list(part.into_inner().nth(1).expect("ports"));
                    self.set_once(&mut rule.source_ports, Box::new(ports), part_span, "`sport`");
                }
                G::port_clause => {
                    let ports = self.port_list(part.into_inner().nth(1).expect("ports"));
                    self.set_once(&mut rule.port, Box::new(ports), part_span, "`port`");
                }
                G::flags_clause => {
                    let mut negated = false;
                    let mut lists = Vec::new();
                    for item in part.into_inner().skip(1) {
                        match item.as_rule() {
                            G::negation => negated = true,
                            _ => lists.push(self.spanned_str(&item)),
                        }
                    }
                    let set = lists.pop().expect("at least one flag list");
                    let flags = FlagsClause { span: part_span, negated, mask: lists.pop(), set };
                    self.set_once(&mut rule.flags, Box::new(flags), part_span, "`flags`");
                }
                G::mac_clause => {
                    let mut negated = false;
                    let mut address = None;
                    for item in part.into_inner().skip(1) {
                        match item.as_rule() {
                            G::negation => negated = true,
                            _ => address = Some(self.spanned_str(&item)),
                        }
                    }
                    let mac = MacClause { span: part_span, negated, address: address.expect("mac") };
                    self.set_once(&mut rule.mac, Box::new(mac), part_span, "`mac`");
                }
                G::reject_with => {
                    let kind = self.spanned_str(&part.into_inner().nth(1).expect("kind"));
                    self.set_once(&mut rule.reject_with, Box::new(kind), part_span, "`with`");
                }
                G::nat_target => {
                    let mut inner = part.into_inner();
                    let keyword = inner.next().expect("keyword");
                    let value = inner.next().expect("value");
                    let target = match keyword.as_rule() {
                        G::kw_to_source => NatTarget::Source(part_span, self.spanned_str(&value)),
                        G::kw_to_destination => NatTarget::Destination(part_span, self.spanned_str(&value)),
                        _ => NatTarget::Ports(part_span, self.port_list(value)),
                    };
                    self.set_once(&mut rule.nat_target, Box::new(target), part_span, "a translation target");
                }
                G::log_prefix => {
                    let prefix = self.string(part.into_inner().next().expect("string"));
                    self.set_once(&mut rule.log_prefix, Box::new(prefix), part_span, "a log prefix");
                }
                G::jump_target => {
                    let name = self.spanned_str(&part.into_inner().nth(1).expect("chain"));
                    // "The last `to` followed by a bare name is the chain."
                    rule.jump_target = Some(Box::new(name));
                }
                _ => self.option(&mut rule.options, part),
            }
        }
        rule
    }

    fn set_once<T>(&mut self, slot: &mut Option<T>, value: T, span: Span, what: &str)
    where
        T: HasSpan,
    {
        match slot {
            Some(existing) => {
                let first = existing.span_of();
                self.duplicate(span, first, what)
            }
            None => *slot = Some(value),
        }
    }

    fn duplicate(&mut self, span: Span, first: Span, what: &str) {
        self.diagnostics.push(
            Diagnostic::new(Code::DuplicateClause, format!("this rule gives {what} twice"))
                .primary(span, "given again here")
                .secondary(first, "first given here")
                .note("a rule matches one value of each part; list several values in one part, or write two rules"),
        );
    }

    fn option(&mut self, options: &mut RuleOptions, node: Node) {
        let span = self.span(&node);
        let kind = node.as_rule();
        let mut inner = node.into_inner().skip(1);
        match kind {
            G::opt_stateful => self.set_once(&mut options.stateful, span, span, "`stateful`"),
            G::opt_ipv4 => self.set_once(&mut options.ipv4, span, span, "`ipv4`"),
            G::opt_ipv6 => self.set_once(&mut options.ipv6, span, span, "`ipv6`"),
            G::opt_log => {
                let prefix = inner.next().map(|prefix| self.string(prefix));
                self.set_once(&mut options.log, Box::new(LogOption { span, prefix }), span, "`log`");
            }
            G::opt_comment => {
                let text = self.string(inner.next().expect("comment text"));
                self.set_once(&mut options.comment, Box::new(text), span, "`comment`");
            }
            G::opt_ignore => options.ignore.push(self.spanned_str(&inner.next().expect("code"))),
            G::opt_limit | G::opt_rate => {
                let rate_node = inner.next().expect("rate");
                let rate_span = self.span(&rate_node);
                let mut rate_parts = rate_node.into_inner();
                let count = number(rate_parts.next().expect("count").as_str());
                let unit = match rate_parts.next().expect("unit").as_str() {
                    "second" => RateUnit::Second,
                    "minute" => RateUnit::Minute,
                    "hour" => RateUnit::Hour,
                    _ => RateUnit::Day,
                };
                let burst = inner.nth(1).map(|burst| Spanned {
                    span: self.span(&burst),
                    value: number(burst.as_str()),
                });
                let limit =
                    Limit { span, rate: Spanned { span: rate_span, value: Rate { count, unit } }, burst };
                if kind == G::opt_rate {
                    self.set_once(&mut options.rate, Box::new(limit), span, "`rate`");
                } else {
                    self.set_once(&mut options.limit, Box::new(limit), span, "`limit`");
                }
            }
            other => unreachable!("unexpected rule part {other:?}"),
        }
    }

    fn direction(&self, node: Node) -> Spanned<Direction> {
        let keyword = node.into_inner().next().expect("direction keyword");
        let value = match keyword.as_rule() {
            G::kw_in => Direction::In,
            G::kw_out => Direction::Out,
            _ => Direction::Forward,
        };
        Spanned { span: self.span(&keyword), value }
    }

    fn on_clause(&self, node: Node) -> OnClause {
        let span = self.span(&node);
        let mut interfaces = node.into_inner().skip(1).map(|interface| self.interface(interface));
        let first = interfaces.next().expect("interface");
        OnClause { span, first, second: interfaces.next() }
    }

    fn interface(&self, node: Node) -> Interface {
        let span = self.span(&node);
        let mut negated = false;
        let mut value = InterfaceValue::Any;
        for part in node.into_inner() {
            value = match part.as_rule() {
                G::negation => {
                    negated = true;
                    continue;
                }
                G::kw_any => InterfaceValue::Any,
                G::variable => InterfaceValue::Variable(part.as_str()[1..].to_string()),
                G::string => InterfaceValue::Name(unquote(part.as_str())),
                _ => InterfaceValue::Name(part.as_str().to_string()),
            };
        }
        Interface { span, negated, value }
    }

    fn protocol_clause(&self, node: Node) -> ProtocolClause {
        let span = self.span(&node);
        let mut parts = node.into_inner();
        let protocol = self.spanned_str(&parts.next().expect("protocol"));
        let ports = parts.next().map(|ports| self.port_list(ports));
        ProtocolClause { span, protocol, ports }
    }

    fn port_list(&self, node: Node) -> PortList {
        let span = self.span(&node);
        let mut negated = false;
        // Sized for the parts, so a list of one holds one: most do.
        let parts = node.into_inner();
        let mut items = Vec::with_capacity(parts.len());
        for part in parts {
            match part.as_rule() {
                G::negation => negated = true,
                _ => items.push(self.port_item(part)),
            }
        }
        PortList { span, negated, items }
    }

    fn port_item(&self, node: Node) -> PortItem {
        match node.as_rule() {
            G::port => PortItem::Single(self.port(&node)),
            G::port_range => {
                let span = self.span(&node);
                let mut ends = node.into_inner();
                let low = self.port(&ends.next().expect("low"));
                let high = self.port(&ends.next().expect("high"));
                PortItem::Range(span, low, high)
            }
            G::variable => PortItem::Variable(Spanned {
                span: self.span(&node),
                value: node.as_str()[1..].to_string(),
            }),
            _ => PortItem::Name(self.spanned_str(&node)),
        }
    }

    fn port(&self, node: &Node) -> Spanned<u64> {
        Spanned { span: self.span(node), value: number(node.as_str()) }
    }

    fn addresses(&self, node: Node) -> Addresses {
        let span = self.span(&node);
        let mut negated = false;
        let parts = node.into_inner();
        let mut items = Vec::with_capacity(parts.len());
        for part in parts {
            match part.as_rule() {
                G::negation => negated = true,
                _ => items.push(self.address_item(part)),
            }
        }
        Addresses { span, negated, items }
    }

    fn address_item(&self, node: Node) -> AddressItem {
        match node.as_rule() {
            G::address_set => AddressItem::Set(
                self.span(&node),
                node.into_inner().map(|item| self.address_item(item)).collect(),
            ),
            G::variable => AddressItem::Variable(Spanned {
                span: self.span(&node),
                value: node.as_str()[1..].to_string(),
            }),
            _ => AddressItem::Literal(self.spanned_str(&node)),
        }
    }

    fn value(&mut self, node: Node) -> Value {
        let inner = node.into_inner().next().expect("value kind");
        let span = self.span(&inner);
        match inner.as_rule() {
            G::address_value => Value::Addresses(Addresses {
                span,
                negated: false,
                items: inner.into_inner().map(|item| self.address_item(item)).collect(),
            }),
            G::port_value => Value::Ports(PortList {
                span,
                negated: false,
                items: inner.into_inner().map(|item| self.port_item(item)).collect(),
            }),
            _ => {
                let name = inner.into_inner().next().expect("interface");
                let text = match name.as_rule() {
                    G::string => unquote(name.as_str()),
                    _ => name.as_str().to_string(),
                };
                Value::Interface(Spanned { span, value: text })
            }
        }
    }

    fn expect(&mut self, node: Node) -> Expect {
        let span = self.span(&node);
        let mut parts = node.into_inner().skip(1);
        let verdict_node = parts.next().expect("verdict").into_inner().next().expect("keyword");
        let verdict = Spanned {
            span: self.span(&verdict_node),
            value: match verdict_node.as_rule() {
                G::kw_allow => ExpectVerdict::Allow,
                G::kw_deny => ExpectVerdict::Deny,
                _ => ExpectVerdict::Reject,
            },
        };
        let direction = self.direction(parts.next().expect("direction"));
        let packet = self.packet(direction, parts);
        Expect { span, verdict, packet }
    }

    /// The parts of a packet, as `expect` lines and queries write them.
    fn packet<'a>(&mut self, direction: Spanned<Direction>, parts: impl Iterator<Item = Node<'a>>) -> Packet {
        let mut packet = Packet { direction, on: None, protocol: None, from: None, to: None, state: None };
        for part in parts {
            let part_span = self.span(&part);
            match part.as_rule() {
                G::on_clause => {
                    let on = self.on_clause(part);
                    self.set_once(&mut packet.on, on, part_span, "`on`");
                }
                G::protocol_clause => {
                    let protocol = self.protocol_clause(part);
                    self.set_once(&mut packet.protocol, protocol, part_span, "a protocol");
                }
                G::from_clause => {
                    let addresses = self.addresses(part.into_inner().nth(1).expect("addresses"));
                    self.set_once(&mut packet.from, addresses, part_span, "`from`");
                }
                G::to_clause => {
                    let addresses = self.addresses(part.into_inner().nth(1).expect("addresses"));
                    self.set_once(&mut packet.to, addresses, part_span, "`to`");
                }
                _ => {
                    let state = self.connection_state(&part);
                    self.set_once(&mut packet.state, state, part_span, "a state");
                }
            }
        }
        packet
    }

    fn connection_state(&self, node: &Node) -> Spanned<ConnectionState> {
        let value = match node.as_str() {
            "new" => ConnectionState::New,
            "established" => ConnectionState::Established,
            "related" => ConnectionState::Related,
            "untracked" => ConnectionState::Untracked,
            _ => ConnectionState::Invalid,
        };
        Spanned { span: self.span(node), value }
    }

    fn string(&self, node: Node) -> Spanned<String> {
        Spanned { span: self.span(&node), value: unquote(node.as_str()) }
    }
}

/// Anything whose first occurrence a duplicate diagnostic can point at.
trait HasSpan {
    fn span_of(&self) -> Span;
}

impl HasSpan for NatTarget {
    fn span_of(&self) -> Span {
        self.span()
    }
}

impl<T: HasSpan> HasSpan for Box<T> {
    fn span_of(&self) -> Span {
        (**self).span_of()
    }
}

impl HasSpan for Span {
    fn span_of(&self) -> Span {
        *self
    }
}

macro_rules! has_span {
    ($($type:ty),*) => {
        $( impl HasSpan for $type { fn span_of(&self) -> Span { self.span } } )*
    };
}
has_span!(OnClause, ProtocolClause, StateMatch, PortList, FlagsClause, MacClause, Addresses, LogOption, Limit, Spanned<String>,
    Spanned<Vec<Spanned<String>>>, Spanned<ConnectionState>);

/// Digits to a number, saturating: `99999999999` is out of range, not a panic.
fn number(digits: &str) -> u64 {
    digits.bytes().fold(0u64, |value, digit| {
        value.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
    })
}

/// The text of a string literal: quotes removed, `\"` and `\\` unescaped.
fn unquote(literal: &str) -> String {
    let inner = &literal[1..literal.len() - 1];
    let mut text = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                text.push(escaped);
            }
        } else {
            text.push(c);
        }
    }
    text
}

fn syntax_error(file: FileId, text: &str, error: pest::error::Error<G>) -> Diagnostic {
    let (start, end) = match error.location {
        InputLocation::Pos(position) => (position, position),
        InputLocation::Span((start, end)) => (start, end),
    };
    // Underline the word where parsing stopped, so the label has a width.
    let word_end = text[start..]
        .find(|c: char| c.is_whitespace() || c == ',' || c == '}' || c == '{')
        .map_or(text.len(), |offset| start + offset);
    // Stopped at punctuation (`{`, `,`, `}`): that character is the word.
    let word_end = if word_end == start {
        text[start..].chars().next().filter(|c| !c.is_whitespace()).map_or(start, |c| start + c.len_utf8())
    } else {
        word_end
    };
    let end = end.max(word_end);
    let span = Span::new(file, start, end);
    let found = if start >= text.len() {
        "the end of the file".to_string()
    } else if text[start..].starts_with('\n') || text[start..].starts_with("\r\n") {
        "the end of the line".to_string()
    } else {
        format!("`{}`", &text[start..end])
    };
    let expected = match &error.variant {
        ErrorVariant::ParsingError { positives, .. } => describe_expected(positives),
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let word = &text[start..end];
    let hint = if word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && word.len() > 1 {
        crate::diagnostics::suggestion(word, KEYWORDS.iter().copied().filter(|keyword| *keyword != word))
    } else {
        None
    };
    Diagnostic::new(Code::SyntaxError, format!("expected {expected}, found {found}"))
        .primary(span, "unexpected here")
        .maybe_note(hint)
        .note("docs/language.md shows every form with an example")
}

/// "a port or port range, `from` or the end of the line" from pest's list.
/// The many things that may follow a rule's action collapse into one phrase.
fn describe_expected(rules: &[G]) -> String {
    let mut words: Vec<&str> = Vec::new();
    let rule_part = rules.iter().any(|grammar_rule| is_rule_part(*grammar_rule));
    for grammar_rule in rules {
        // Among rule parts, a string is only a `log` statement's prefix.
        if is_rule_part(*grammar_rule) || (rule_part && *grammar_rule == G::string) {
            continue;
        }
        let word = describe(*grammar_rule);
        if !words.contains(&word) {
            words.push(word);
        }
    }
    if rule_part {
        words.push("more of the rule (`on`, a protocol, `service`, `from`, `to`, `state`, …, or an option such as `stateful`)");
    }
    // The end of the line reads best last.
    if let Some(position) = words.iter().position(|word| *word == "the end of the line") {
        let end = words.remove(position);
        words.push(end);
    }
    match words.as_slice() {
        [] => "something else".to_string(),
        [only] => only.to_string(),
        [rest @ .., last] => format!("{} or {}", rest.join(", "), last),
    }
}

fn is_rule_part(grammar_rule: G) -> bool {
    matches!(
        grammar_rule,
        G::on_clause
            | G::kw_on
            | G::protocol_clause
            | G::protocol
            | G::service_clause
            | G::kw_service
            | G::from_clause
            | G::kw_from
            | G::to_clause
            | G::kw_to
            | G::jump_target
            | G::state_clause
            | G::kw_state
            | G::opt_stateful
            | G::opt_log
            | G::opt_limit
            | G::opt_comment
            | G::opt_ipv4
            | G::opt_ipv6
            | G::opt_ignore
            | G::opt_rate
            | G::sport_clause
            | G::kw_sport
            | G::flags_clause
            | G::kw_flags
            | G::mac_clause
            | G::kw_mac
            | G::reject_with
            | G::kw_with
            | G::nat_target
            | G::port_clause
            | G::kw_port
            | G::log_prefix
            | G::kw_rate
            | G::kw_stateful
            | G::kw_log
            | G::kw_limit
            | G::kw_comment
            | G::kw_ipv4
            | G::kw_ipv6
            | G::kw_ignore
    )
}

/// Every keyword, for "did you mean" on a misspelt one.
const KEYWORDS: &[&str] = &[
    "allow", "deny", "reject", "jump", "return", "in", "out", "forward", "on", "from", "to", "not",
    "service", "stateful", "log", "limit", "burst", "comment", "ipv4", "ipv6", "ignore", "policy",
    "accept", "drop", "let", "param", "chain", "keep", "include", "use", "except", "test",
    "expect", "any", "state", "established", "related", "invalid", "new", "untracked", "tcp",
    "udp", "udplite", "sctp", "icmp", "icmpv6", "esp", "ah", "gre", "sport", "flags", "mac", "with",
    "rate", "port", "masquerade", "snat", "dnat", "redirect", "forward-port", "to-source",
    "to-destination", "to-port",
];

fn describe(grammar_rule: G) -> &'static str {
    match grammar_rule {
        G::EOI | G::end_of_line => "the end of the line",
        G::statement | G::policy_file => "a declaration",
        G::rule | G::action => "a rule (`allow`, `deny`, `reject`, `jump`, `log`, a NAT action)",
        G::direction | G::kw_in | G::kw_out | G::kw_forward => {
            "a direction (`in`, `out`, `forward`)"
        }
        G::on_clause | G::kw_on => "`on`",
        G::interface | G::interface_name | G::kw_any => "an interface name",
        G::protocol_clause | G::protocol => "a protocol",
        G::port_list | G::port | G::port_range | G::port_name => {
            "a port or port range"
        }
        G::service_clause | G::kw_service => "`service`",
        G::service_name | G::name => "a name",
        G::from_clause | G::kw_from => "`from`",
        G::to_clause | G::kw_to | G::jump_target => "`to`",
        G::chain_name => "a chain name",
        G::addresses | G::address | G::address_set => "an address, a CIDR block or a `{ … }` set",
        G::variable => "a `$variable`",
        G::negation | G::kw_not => "`not`",
        G::opt_stateful
        | G::opt_log
        | G::opt_limit
        | G::opt_comment
        | G::opt_ipv4
        | G::opt_ipv6
        | G::opt_ignore
        | G::kw_stateful
        | G::kw_log
        | G::kw_limit
        | G::kw_comment
        | G::kw_ipv4
        | G::kw_ipv6
        | G::kw_ignore => "an option (`stateful`, `log`, `limit`, `comment`, `ipv4`, `ipv6`, `ignore`)",
        G::rate | G::rate_unit => "a rate like `25/minute`",
        G::kw_burst => "`burst`",
        G::number => "a number",
        G::string => "a quoted string",
        G::code => "a diagnostic code",
        G::verdict | G::kw_accept | G::kw_drop => "`accept` or `drop`",
        G::value | G::address_value | G::port_value | G::interface_value => {
            "a value (an interface, addresses or ports)"
        }
        G::service_entry => "a protocol and its ports",
        G::kw_keep => "`keep`",
        G::kw_except => "`except`",
        G::kw_expect | G::expect_line => "`expect`",
        G::expect_verdict | G::kw_allow | G::kw_deny | G::kw_reject => {
            "`allow`, `deny` or `reject`"
        }
        G::conn_state | G::state_clause | G::kw_state => {
            "a connection state (`new`, `established`, `related`, `invalid`, `untracked`)"
        }
        _ => "a rule or a declaration",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    /// Rule name → the names its definition mentions, from the grammar's
    /// text (comments and string literals left out).
    fn references(grammar: &str) -> HashMap<String, HashSet<String>> {
        let mut text = String::new();
        let mut chars = grammar.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '/' if chars.peek() == Some(&'/') => {
                    while chars.next_if(|c| *c != '\n').is_some() {}
                }
                '"' => {
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                chars.next();
                            }
                            '"' => break,
                            _ => {}
                        }
                    }
                    text.push_str("\"\"");
                }
                _ => text.push(c),
            }
        }
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let mut rules = HashMap::new();
        let mut rest = text.as_str();
        while let Some(equals) = rest.find('=') {
            let name = rest[..equals].trim_end();
            let name = &name[name.rfind(|c: char| !word(c)).map_or(0, |at| at + 1)..];
            let Some(open) = rest[equals..].find('{').map(|at| equals + at) else { break };
            let mut depth = 0;
            let mut close = open;
            for (at, c) in rest[open..].char_indices() {
                depth += i32::from(c == '{') - i32::from(c == '}');
                if depth == 0 {
                    close = open + at;
                    break;
                }
            }
            let body = &rest[open + 1..close];
            let names = body.split(|c: char| !word(c)).filter(|name| !name.is_empty()).map(str::to_string).collect();
            rules.insert(name.to_string(), names);
            rest = &rest[close + 1..];
        }
        rules
    }

    /// vendor/pest_stack_guard turns pest's stack probe off: safe only while
    /// no rule can reach itself, so that nesting is bounded by the grammar.
    #[test]
    fn grammar_has_no_recursive_rule() {
        let rules = references(include_str!("fwc.pest"));
        assert!(rules.len() > 100 && rules.contains_key("policy_file") && rules["rule"].contains("rule_part"));
        fn visit<'a>(rule: &'a str, rules: &'a HashMap<String, HashSet<String>>, path: &mut Vec<&'a str>, done: &mut HashSet<&'a str>) {
            if done.contains(rule) {
                return;
            }
            assert!(
                !path.contains(&rule),
                "the grammar is recursive ({} -> {rule}): remove the pest_stack_guard patch from Cargo.toml",
                path.join(" -> ")
            );
            path.push(rule);
            for next in rules[rule].iter().filter(|name| rules.contains_key(*name)) {
                visit(next, rules, path, done);
            }
            path.pop();
            done.insert(rule);
        }
        let mut done = HashSet::new();
        for rule in rules.keys() {
            visit(rule, &rules, &mut Vec::new(), &mut done);
        }
    }
}

/// The parse of a whole file as a [`tree::Node`] of kind `File`, or `None`
/// when it does not parse ([`parse_file`] says why).
pub fn syntax_tree(text: &str) -> Option<tree::Node> {
    let file = Grammar::parse(G::policy_file, text).ok()?.next()?;
    tree_node(file)
}

/// `None` for the nodes that hold no text of their own: a line's end, EOI.
fn tree_node(node: Node) -> Option<tree::Node> {
    use tree::{Clause as C, Kind, StatementKind as S};
    let kind = match node.as_rule() {
        G::end_of_line | G::EOI => return None,
        G::policy_file => Kind::File,
        G::rule | G::return_rule => Kind::Statement(S::Rule),
        G::let_decl => Kind::Statement(S::Let),
        G::param_decl => Kind::Statement(S::Param),
        G::service_decl => Kind::Statement(S::Service),
        G::policy_decl => Kind::Statement(S::Policy),
        G::chain_decl => Kind::Statement(S::Chain),
        G::keep_chains => Kind::Statement(S::KeepChains),
        G::include => Kind::Statement(S::Include),
        G::use_module => Kind::Statement(S::Use),
        G::ignore_decl => Kind::Statement(S::Ignore),
        G::test_block => Kind::Statement(S::Test),
        G::expect_line => Kind::Statement(S::Expect),
        G::action => Kind::Clause(C::Action),
        G::direction => Kind::Clause(C::Direction),
        G::on_clause => Kind::Clause(C::Interface),
        G::protocol_clause | G::service_clause | G::service_entry => Kind::Clause(C::Match),
        G::from_clause | G::to_clause | G::jump_target => Kind::Clause(C::Address),
        G::sport_clause => Kind::Clause(C::SourcePorts),
        G::flags_clause => Kind::Clause(C::Flags),
        G::state_clause | G::conn_state => Kind::Clause(C::State),
        G::mac_clause => Kind::Clause(C::Mac),
        G::reject_with => Kind::Clause(C::RejectWith),
        G::nat_target => Kind::Clause(C::NatTarget),
        G::port_clause => Kind::Clause(C::Port),
        G::log_prefix => Kind::Clause(C::LogPrefix),
        G::opt_stateful | G::opt_log | G::opt_limit | G::opt_rate | G::opt_comment | G::opt_ipv4 | G::opt_ipv6
        | G::opt_ignore => Kind::Clause(C::Option),
        G::verdict | G::expect_verdict => Kind::Clause(C::Verdict),
        G::value => Kind::Clause(C::Value),
        G::address_set => Kind::AddressSet,
        _ => Kind::Other,
    };
    let span = node.as_span();
    let range = span.start()..span.end();
    // A rate (`10/minute`) is one atom: no space may go inside it.
    let children = match node.as_rule() {
        G::rate => Vec::new(),
        _ => node.into_inner().filter_map(tree_node).collect(),
    };
    Some(tree::Node { kind, range, children })
}
