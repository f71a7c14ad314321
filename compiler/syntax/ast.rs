//! The syntax tree: what the user wrote, with byte spans, before any name
//! is resolved. Built by parser.rs; pest's types never appear here.

use crate::source::Span;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub span: Span,
    pub value: T,
}

#[derive(Clone, Debug, Default)]
pub struct File {
    pub statements: Vec<Statement>,
}

#[derive(Clone, Debug)]
pub enum Statement {
    Rule(Rule),
    Policy(PolicyDecl),
    Let(VariableDecl),
    Param(VariableDecl),
    Service(ServiceDecl),
    Chain(ChainDecl),
    KeepChains(Vec<Spanned<String>>),
    Include(Spanned<String>),
    Use(UseModule),
    Ignore(IgnoreDecl),
    Test(TestBlock),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    In,
    Out,
    Forward,
}

impl Direction {
    pub fn keyword(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Forward => "forward",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Reject,
    Jump,
    /// `return` inside a chain, possibly with matches.
    Return,
    /// The `log` statement: logs and decides nothing.
    Log,
    Masquerade,
    Snat,
    Dnat,
    Redirect,
    /// DNAT plus the matching stateful forward allow.
    ForwardPort,
}

impl Action {
    pub fn keyword(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Reject => "reject",
            Action::Jump => "jump",
            Action::Return => "return",
            Action::Log => "log",
            Action::Masquerade => "masquerade",
            Action::Snat => "snat",
            Action::Dnat => "dnat",
            Action::Redirect => "redirect",
            Action::ForwardPort => "forward-port",
        }
    }

    pub fn is_nat(self) -> bool {
        matches!(
            self,
            Action::Masquerade | Action::Snat | Action::Dnat | Action::Redirect | Action::ForwardPort
        )
    }
}

/// A rule as written. Each part appears at most once (the parser reports
/// duplicates), in whatever order the user wrote them.
#[derive(Clone, Debug)]
pub struct Rule {
    pub span: Span,
    pub action: Spanned<Action>,
    pub direction: Option<Spanned<Direction>>,
    pub on: Option<Box<OnClause>>,
    pub protocol: Option<ProtocolClause>,
    pub services: Option<Box<Spanned<Vec<Spanned<String>>>>>,
    pub from: Option<Addresses>,
    pub to: Option<Addresses>,
    pub jump_target: Option<Box<Spanned<String>>>,
    pub state: Option<Box<StateMatch>>,
    /// `sport PORTS`.
    pub source_ports: Option<Box<PortList>>,
    pub flags: Option<Box<FlagsClause>>,
    pub mac: Option<Box<MacClause>>,
    /// `reject with KIND`.
    pub reject_with: Option<Box<Spanned<String>>>,
    /// `to-source ADDR`, `to-destination ADDR`, `to-port PORTS`.
    pub nat_target: Option<Box<NatTarget>>,
    /// `port P` of `forward-port … to ADDR port P`.
    pub port: Option<Box<PortList>>,
    /// The bare prefix string of a `log` statement.
    pub log_prefix: Option<Box<Spanned<String>>>,
    pub options: RuleOptions,
}

/// `flags [not] [MASK] SET`: with one list, the mask is FIN,SYN,RST,ACK.
#[derive(Clone, Debug)]
pub struct FlagsClause {
    pub span: Span,
    pub negated: bool,
    pub mask: Option<Spanned<String>>,
    pub set: Spanned<String>,
}

#[derive(Clone, Debug)]
pub struct MacClause {
    pub span: Span,
    pub negated: bool,
    pub address: Spanned<String>,
}

#[derive(Clone, Debug)]
pub enum NatTarget {
    Source(Span, Spanned<String>),
    Destination(Span, Spanned<String>),
    Ports(Span, PortList),
}

impl NatTarget {
    pub fn span(&self) -> Span {
        match self {
            NatTarget::Source(span, _) | NatTarget::Destination(span, _) | NatTarget::Ports(span, _) => *span,
        }
    }
}

/// `state [not] established, related`.
#[derive(Clone, Debug)]
pub struct StateMatch {
    pub span: Span,
    pub negated: bool,
    pub states: Vec<Spanned<ConnectionState>>,
}

/// `on IFACE` or, for forward rules, `on IN -> OUT`.
#[derive(Clone, Debug)]
pub struct OnClause {
    pub span: Span,
    pub first: Interface,
    pub second: Option<Interface>,
}

#[derive(Clone, Debug)]
pub struct Interface {
    pub span: Span,
    pub negated: bool,
    pub value: InterfaceValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterfaceValue {
    Any,
    Name(String),
    Variable(String),
}

#[derive(Clone, Debug)]
pub struct ProtocolClause {
    pub span: Span,
    pub protocol: Spanned<String>,
    pub ports: Option<PortList>,
}

#[derive(Clone, Debug)]
pub struct PortList {
    pub span: Span,
    pub negated: bool,
    pub items: Vec<PortItem>,
}

/// Port numbers are kept wide so that range errors are reported, not wrapped.
#[derive(Clone, Debug)]
pub enum PortItem {
    Single(Spanned<u64>),
    Range(Span, Spanned<u64>, Spanned<u64>),
    Variable(Spanned<String>),
    Name(Spanned<String>),
}

impl PortItem {
    pub fn span(&self) -> Span {
        match self {
            PortItem::Single(port) => port.span,
            PortItem::Range(span, _, _) => *span,
            PortItem::Variable(name) | PortItem::Name(name) => name.span,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Addresses {
    pub span: Span,
    pub negated: bool,
    pub items: Vec<AddressItem>,
}

#[derive(Clone, Debug)]
pub enum AddressItem {
    Literal(Spanned<String>),
    Variable(Spanned<String>),
    Set(Span, Vec<AddressItem>),
}

#[derive(Clone, Debug, Default)]
pub struct RuleOptions {
    pub stateful: Option<Span>,
    pub log: Option<Box<LogOption>>,
    pub limit: Option<Box<Limit>>,
    /// `rate`: limits the LOG rule only.
    pub rate: Option<Box<Limit>>,
    pub comment: Option<Box<Spanned<String>>>,
    pub ipv4: Option<Span>,
    pub ipv6: Option<Span>,
    pub ignore: Vec<Spanned<String>>,
}

#[derive(Clone, Debug)]
pub struct LogOption {
    pub span: Span,
    pub prefix: Option<Spanned<String>>,
}

#[derive(Clone, Debug)]
pub struct Limit {
    pub span: Span,
    pub rate: Spanned<Rate>,
    pub burst: Option<Spanned<u64>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub unit: RateUnit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

#[derive(Clone, Debug)]
pub struct PolicyDecl {
    pub span: Span,
    pub direction: Spanned<Direction>,
    pub accept: bool,
}

#[derive(Clone, Debug)]
pub struct VariableDecl {
    pub span: Span,
    pub name: Spanned<String>,
    pub value: Option<Value>,
}

/// The right-hand side of `let`, `param` and `--set`.
#[derive(Clone, Debug)]
pub enum Value {
    Addresses(Addresses),
    Ports(PortList),
    Interface(Spanned<String>),
}

impl Value {
    pub fn span(&self) -> Span {
        match self {
            Value::Addresses(addresses) => addresses.span,
            Value::Ports(ports) => ports.span,
            Value::Interface(name) => name.span,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServiceDecl {
    pub span: Span,
    pub name: Spanned<String>,
    pub entries: Vec<ProtocolClause>,
}

#[derive(Clone, Debug)]
pub struct ChainDecl {
    pub span: Span,
    pub name: Spanned<String>,
    pub keep: bool,
    pub body: Vec<Statement>,
}

#[derive(Clone, Debug)]
pub struct UseModule {
    pub span: Span,
    pub module: Spanned<String>,
    pub except: Vec<Spanned<String>>,
}

#[derive(Clone, Debug)]
pub struct IgnoreDecl {
    pub span: Span,
    pub code: Spanned<String>,
    pub reason: Spanned<String>,
}

#[derive(Clone, Debug)]
pub struct TestBlock {
    pub span: Span,
    pub name: Spanned<String>,
    pub expects: Vec<Expect>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectVerdict {
    Allow,
    Deny,
    Reject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

/// `expect VERDICT DIRECTION [on IFACE] PROTO [PORT] [from A] [to B] [STATE]`.
#[derive(Clone, Debug)]
pub struct Expect {
    pub span: Span,
    pub verdict: Spanned<ExpectVerdict>,
    pub packet: Packet,
}

/// The packets an `expect` line is about, or a `fwc query`: an omitted
/// field means every value.
#[derive(Clone, Debug)]
pub struct Packet {
    pub direction: Spanned<Direction>,
    pub on: Option<OnClause>,
    pub protocol: Option<ProtocolClause>,
    pub from: Option<Addresses>,
    pub to: Option<Addresses>,
    pub state: Option<Spanned<ConnectionState>>,
}
