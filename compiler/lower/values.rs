//! Values: variables, addresses, ports and interfaces, checked and resolved.

use crate::diagnostics::{Code, Diagnostic};
use crate::ir::{Family, PortRange};
use crate::source::Span;
use crate::syntax::ast;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

/// An address with the span it was written at, for diagnostics.
#[derive(Clone, Debug)]
pub struct Address {
    pub net: IpNet,
    pub span: Span,
}

/// A port entry before its protocol is known: a service name in the ports
/// slot takes that service's ports for the rule's protocol.
#[derive(Clone, Debug)]
pub enum PortEntry {
    Range(PortRange, Span),
    Service(ast::Spanned<String>),
}

#[derive(Clone, Debug)]
pub enum VariableValue {
    Interface(String),
    Addresses(Vec<Address>),
    Ports(Vec<PortEntry>),
}

impl VariableValue {
    pub fn kind(&self) -> &'static str {
        match self {
            VariableValue::Interface(_) => "an interface",
            VariableValue::Addresses(_) => "addresses",
            VariableValue::Ports(_) => "ports",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Variable {
    pub value: VariableValue,
    pub span: Span,
    pub used: bool,
}

/// The one flat namespace of `let` and `param`.
#[derive(Clone, Debug, Default)]
pub struct Variables {
    pub map: HashMap<String, Variable>,
    /// Params without a value: already reported, so uses stay quiet.
    pub unset: std::collections::HashSet<String>,
}

impl Variables {
    pub fn lookup(
        &mut self,
        name: &ast::Spanned<String>,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<&VariableValue> {
        if !self.map.contains_key(&name.value) {
            self.report_undefined(name, diagnostics);
            return None;
        }
        let variable = self.map.get_mut(&name.value).expect("checked above");
        variable.used = true;
        Some(&variable.value)
    }

    fn report_undefined(&self, name: &ast::Spanned<String>, diagnostics: &mut Vec<Diagnostic>) {
        if self.unset.contains(&name.value) {
            return; // the unset param was reported where it is declared
        }
        let hint = crate::diagnostics::suggestion(&name.value, self.map.keys().map(String::as_str));
        diagnostics.push(
            Diagnostic::new(Code::UndefinedVariable, format!("`${}` is not defined", name.value))
                .primary(name.span, "used here")
                .maybe_note(hint)
                .note(format!(
                    "define it before this line: `let {} = …`, or `param {}` to set it with --set",
                    name.value, name.value
                )),
        );
    }

    pub fn wrong_kind(
        name: &ast::Spanned<String>,
        found: &VariableValue,
        wanted: &str,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        diagnostics.push(
            Diagnostic::new(
                Code::WrongValueKind,
                format!("`${}` holds {}, but this needs {}", name.value, found.kind(), wanted),
            )
            .primary(name.span, format!("expected {wanted}"))
            .note("a variable's kind comes from its value: a bare word is an interface, numbers are ports, addresses have dots or colons"),
        );
    }

    /// Resolves a `let`/`param` value. Variables inside it must exist already.
    pub fn resolve_value(
        &mut self,
        value: &ast::Value,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<VariableValue> {
        match value {
            ast::Value::Interface(name) => {
                check_interface(&name.value, name.span, diagnostics);
                Some(VariableValue::Interface(name.value.clone()))
            }
            ast::Value::Addresses(addresses) => {
                // `let a = $b` copies b, whatever its kind.
                if let [ast::AddressItem::Variable(name)] = addresses.items.as_slice() {
                    return self.lookup(name, diagnostics).cloned();
                }
                let mut out = Vec::new();
                for item in &addresses.items {
                    self.flatten_addresses(item, &mut out, diagnostics);
                }
                Some(VariableValue::Addresses(out))
            }
            ast::Value::Ports(ports) => {
                if let [ast::PortItem::Variable(name)] = ports.items.as_slice() {
                    return self.lookup(name, diagnostics).cloned();
                }
                let mut out = Vec::new();
                for item in &ports.items {
                    self.port_entries(item, &mut out, diagnostics);
                }
                Some(VariableValue::Ports(out))
            }
        }
    }

    pub fn flatten_addresses(
        &mut self,
        item: &ast::AddressItem,
        out: &mut Vec<Address>,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        match item {
            ast::AddressItem::Literal(literal) => {
                if let Some(net) = parse_address(&literal.value, literal.span, diagnostics) {
                    out.push(Address { net, span: literal.span });
                }
            }
            ast::AddressItem::Set(_, items) => {
                for item in items {
                    self.flatten_addresses(item, out, diagnostics);
                }
            }
            ast::AddressItem::Variable(name) => match self.lookup(name, diagnostics) {
                Some(VariableValue::Addresses(addresses)) => out.extend(addresses.iter().cloned()),
                Some(other) => {
                    let other = other.clone();
                    Variables::wrong_kind(name, &other, "addresses", diagnostics)
                }
                None => {}
            },
        }
    }

    pub fn port_entries(
        &mut self,
        item: &ast::PortItem,
        out: &mut Vec<PortEntry>,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        match item {
            ast::PortItem::Single(port) => {
                if let Some(port) = check_port(port, diagnostics) {
                    out.push(PortEntry::Range(PortRange { low: port, high: port }, item.span()));
                }
            }
            ast::PortItem::Range(span, low, high) => {
                let (low_port, high_port) =
                    (check_port(low, diagnostics), check_port(high, diagnostics));
                if let (Some(low_port), Some(high_port)) = (low_port, high_port) {
                    if low_port > high_port {
                        diagnostics.push(
                            Diagnostic::new(
                                Code::ReversedPortRange,
                                format!("the port range {low_port}-{high_port} is reversed"),
                            )
                            .primary(*span, "the start is above the end")
                            .note(format!("write it as {high_port}-{low_port}")),
                        );
                    } else {
                        out.push(PortEntry::Range(
                            PortRange { low: low_port, high: high_port },
                            *span,
                        ));
                    }
                }
            }
            ast::PortItem::Name(name) => out.push(PortEntry::Service(name.clone())),
            ast::PortItem::Variable(name) => match self.lookup(name, diagnostics) {
                Some(VariableValue::Ports(entries)) => out.extend(entries.iter().cloned()),
                Some(other) => {
                    let other = other.clone();
                    Variables::wrong_kind(name, &other, "ports", diagnostics)
                }
                None => {}
            },
        }
    }
}

fn check_port(port: &ast::Spanned<u64>, diagnostics: &mut Vec<Diagnostic>) -> Option<u16> {
    match u16::try_from(port.value) {
        Ok(number) => Some(number),
        Err(_) => {
            diagnostics.push(
                Diagnostic::new(
                    Code::PortOutOfRange,
                    format!("port {} is out of range", port.value),
                )
                .primary(port.span, "ports go from 0 to 65535"),
            );
            None
        }
    }
}

/// Parses `192.0.2.1`, `2001:db8::/32`, … A host address becomes a /32 or
/// /128 block; host bits after the prefix are cleared, with a warning.
pub fn parse_address(text: &str, span: Span, diagnostics: &mut Vec<Diagnostic>) -> Option<IpNet> {
    let bad = |diagnostics: &mut Vec<Diagnostic>, why: &str| {
        diagnostics.push(
            Diagnostic::new(Code::BadAddress, format!("`{text}` is not a valid address"))
                .primary(span, why.to_string())
                .note("write an IPv4 or IPv6 address (192.0.2.1, 2001:db8::1) or a CIDR block (192.0.2.0/24)"),
        );
        None
    };
    let (address_text, prefix_text) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let Ok(address) = address_text.parse::<IpAddr>() else {
        return bad(diagnostics, "not an IPv4 or IPv6 address");
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max,
        Some(prefix) => match prefix.parse::<u8>() {
            Ok(prefix) if prefix <= max => prefix,
            _ => return bad(diagnostics, &format!("the prefix length must be 0 to {max}")),
        },
    };
    let net = IpNet::new(address, prefix).expect("prefix checked above");
    let trunc = net.trunc();
    if trunc != net {
        diagnostics.push(
            Diagnostic::new(
                Code::HostBitsSet,
                format!("`{text}` has bits set after the /{prefix} prefix"),
            )
            .primary(span, format!("this block is {trunc}"))
            .note(format!(
                "write {trunc} for the block, or {address} alone for the one host"
            )),
        );
    }
    Some(trunc)
}

/// The kernel takes interface names of 1 to 15 bytes without `/`, white
/// space or quotes; `+` is only meaningful at the end (a wildcard).
pub fn check_interface(name: &str, span: Span, diagnostics: &mut Vec<Diagnostic>) -> bool {
    let problem = if name.is_empty() {
        Some("an interface name cannot be empty".to_string())
    } else if name.len() > 15 {
        Some(format!("it is {} bytes long; the kernel allows 15", name.len()))
    } else if name.contains('/') {
        Some("it contains `/`".to_string())
    } else if name.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'') {
        Some("it contains white space or a quote".to_string())
    } else if name == "." || name == ".." {
        Some("`.` and `..` are not interface names".to_string())
    } else if name[..name.len() - 1].contains('+') {
        Some("`+` may only end a name, as a wildcard (`eth+`)".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => {
            diagnostics.push(
                Diagnostic::new(
                    Code::BadInterface,
                    format!("`{name}` is not an interface name the kernel accepts"),
                )
                .primary(span, problem)
                .note("`ip link` lists the interfaces of a host"),
            );
            false
        }
        None => true,
    }
}

/// The families a set of addresses touches.
pub fn families_of(addresses: &[Address]) -> Vec<Family> {
    Family::BOTH
        .into_iter()
        .filter(|family| addresses.iter().any(|address| Family::of(&address.net) == *family))
        .collect()
}
