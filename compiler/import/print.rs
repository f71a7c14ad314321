//! Writing [`FwRule`]s as .fw statements.

use super::model::{Addrs, Fams, FwRule};
use crate::ir::*;
use crate::syntax::ast::Direction;
use crate::tables;
use std::collections::HashMap;

/// Where a statement goes.
pub struct Place<'a> {
    pub table: Table,
    /// The direction of a built-in chain; `None` inside a user chain.
    pub direction: Option<Direction>,
    /// The directions the rule is used in: its built-in chain's, or those of
    /// the jumps into its user chain.
    pub directions: &'a [Direction],
    /// fwc names of user chains, by their iptables names.
    pub chain_names: &'a HashMap<String, String>,
}

/// The statement for a rule, or why fwc cannot say it here.
pub fn statement(rule: &FwRule, fams: Fams, place: &Place) -> Result<String, String> {
    if rule.goto {
        return Err("`-g` (goto)".to_string());
    }
    let mut words: Vec<String> = Vec::new();
    let base = &rule.base;
    let action = match &rule.target {
        Target::Accept => "allow",
        Target::Drop => "deny",
        Target::Reject(_) => "reject",
        Target::Return => "return",
        Target::Jump(_) => "jump",
        Target::Log { .. } => {
            if place.table == Table::Nat {
                return Err("a LOG rule in the nat table: fwc logs there only with the NAT rule after it".to_string());
            }
            "log"
        }
        Target::Masquerade { .. } => "masquerade",
        Target::Snat { .. } => "snat",
        Target::Dnat { .. } => "dnat",
        Target::Redirect { .. } => "redirect",
    };
    words.push(action.to_string());
    if let Some(direction) = place.direction {
        words.push(direction.keyword().to_string());
    }
    if let Some(on) = on_clause(base, place.directions)? {
        words.push(on);
    }
    if let Some(protocol) = base.protocol {
        let mut text = protocol_name(protocol);
        if let Some(ports) = &rule.dports {
            text.push(' ');
            text.push_str(&ports_text(ports));
        }
        if let Some(types) = &rule.icmp {
            let names = if protocol == Protocol::ICMP { tables::ICMP_TYPES } else { tables::ICMPV6_TYPES };
            let listed: Vec<String> = types
                .value
                .iter()
                .map(|kind| names.iter().find(|(_, number)| number == kind).map_or(kind.to_string(), |(name, _)| name.to_string()))
                .collect();
            text.push(' ');
            if types.negated {
                text.push_str("not ");
            }
            text.push_str(&listed.join(", "));
        }
        words.push(text);
    }
    if let Some(ports) = &rule.sports {
        words.push(format!("sport {}", ports_text(ports)));
    }
    if let Some(flags) = &base.tcp_flags {
        let not = if flags.negated { "not " } else { "" };
        words.push(format!("flags {not}{} {}", TcpFlags::names(flags.value.mask), TcpFlags::names(flags.value.set)));
    }
    if let Some(source) = &rule.source {
        words.push(format!("from {}", addresses(source)));
    }
    if let Some(destination) = &rule.destination {
        words.push(format!("to {}", addresses(destination)));
    }
    if let Some(mac) = &base.mac_source {
        let not = if mac.negated { "not " } else { "" };
        words.push(format!("mac {not}{}", mac.value));
    }
    if let Some(states) = &base.states {
        let not = if states.negated { "not " } else { "" };
        let names: Vec<String> = states.value.names().iter().map(|name| name.to_ascii_lowercase()).collect();
        words.push(format!("state {not}{}", names.join(", ")));
    }
    match &rule.target {
        Target::Snat { address, .. } => words.push(format!("to-source {address}")),
        Target::Dnat { address, ports } => {
            words.push(format!("to-destination {address}"));
            if let Some(ports) = ports {
                words.push(format!("port {}", range(ports)));
            }
        }
        Target::Masquerade { ports: Some(ports) } | Target::Redirect { ports: Some(ports) } => {
            words.push(format!("to-port {}", range(ports)))
        }
        _ => {}
    }
    if let Target::Reject(kind) = &rule.target {
        let (_, name, ..) = RejectWith::KINDS.iter().find(|(candidate, ..)| candidate == kind).expect("every kind listed");
        words.push(format!("with {name}"));
    }
    if let Target::Log { prefix: Some(prefix) } = &rule.target {
        words.push(string(prefix));
    }
    if let Some(limit) = &base.limit {
        // A log statement is limited with `rate`; the same kernel match.
        let keyword = if matches!(rule.target, Target::Log { .. }) { "rate" } else { "limit" };
        words.push(format!("{keyword} {}", rate(limit)));
    }
    if let Some(log) = &rule.log {
        let mut text = "log".to_string();
        if let Some(prefix) = &log.prefix {
            text.push(' ');
            text.push_str(&string(prefix));
        }
        if let Some(limit) = &log.rate {
            text.push_str(&format!(" rate {}", rate(limit)));
        }
        words.push(text);
    }
    if let Some(comment) = &base.comment {
        words.push(format!("comment {}", string(comment)));
    }
    if fams != Fams::Both && !family_implied(rule) {
        words.push(if fams == Fams::V4 { "ipv4" } else { "ipv6" }.to_string());
    }
    if let Target::Jump(chain) = &rule.target {
        let name = place.chain_names.get(chain).unwrap_or(chain);
        words.push(format!("to {name}"));
    }
    Ok(words.join(" "))
}

/// A positive address, a one-family protocol or a NAT address already
/// keeps the rule to its family.
fn family_implied(rule: &FwRule) -> bool {
    let positive = |side: &Option<Addrs>| side.as_ref().is_some_and(|addrs| !addrs.negated && !addrs.nets.is_empty());
    positive(&rule.source)
        || positive(&rule.destination)
        || matches!(rule.base.protocol, Some(Protocol::ICMP | Protocol::ICMPV6 | Protocol::IGMP))
        || matches!(rule.target, Target::Snat { .. } | Target::Dnat { .. })
}

/// `on` for the rule's interfaces, as fwc reads it in these directions:
/// `in` takes the arrival interface, `out` the leaving one, `forward` both
/// as `A -> B`; a chain nobody enters reads `on` as a forward rule does.
pub fn on_clause(matches: &Matches, directions: &[Direction]) -> Result<Option<String>, String> {
    let only_forward = directions.iter().all(|direction| *direction == Direction::Forward);
    let only_out = !directions.is_empty() && directions.iter().all(|direction| *direction == Direction::Out);
    let callers = || {
        let names: Vec<&str> = directions.iter().map(|direction| direction.keyword()).collect();
        names.join(" and ")
    };
    match (&matches.in_interface, &matches.out_interface) {
        (None, None) => Ok(None),
        (Some(arrival), None) => {
            if directions.contains(&Direction::Out) {
                Err(format!("`-i` where fwc's `on` means the leaving interface (used from {})", callers()))
            } else {
                Ok(Some(format!("on {}", interface(arrival))))
            }
        }
        (None, Some(leaving)) => {
            if only_out {
                Ok(Some(format!("on {}", interface(leaving))))
            } else if only_forward {
                Ok(Some(format!("on any -> {}", interface(leaving))))
            } else {
                Err(format!("`-o` where fwc's `on` means the arrival interface (used from {})", callers()))
            }
        }
        (Some(arrival), Some(leaving)) => {
            if only_forward {
                Ok(Some(format!("on {} -> {}", interface(arrival), interface(leaving))))
            } else {
                Err(format!("`-i` and `-o` together outside forward rules (used from {})", callers()))
            }
        }
    }
}

fn interface(interface: &Match<String>) -> String {
    let name = &interface.value;
    let bare = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '@'))
        && !name.contains("->")
        && name != "any"
        && name != "not";
    let text = if bare { name.clone() } else { string(name) };
    if interface.negated {
        format!("not {text}")
    } else {
        text
    }
}

pub fn protocol_name(protocol: Protocol) -> String {
    tables::PROTOCOL_KEYWORDS
        .iter()
        .find(|(_, number)| *number == protocol.0)
        .map_or_else(|| protocol.0.to_string(), |(name, _)| name.to_string())
}

fn range(range: &PortRange) -> String {
    if range.low == range.high {
        range.low.to_string()
    } else {
        format!("{}-{}", range.low, range.high)
    }
}

fn ports_text(ports: &Match<Vec<PortRange>>) -> String {
    let list: Vec<String> = ports.value.iter().map(range).collect();
    let not = if ports.negated { "not " } else { "" };
    format!("{not}{}", list.join(", "))
}

fn address(net: &ipnet::IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// One address, or a set; long sets one member a line.
fn addresses(addrs: &Addrs) -> String {
    let not = if addrs.negated { "not " } else { "" };
    let list: Vec<String> = addrs.nets.iter().map(address).collect();
    match list.len() {
        1 => format!("{not}{}", list[0]),
        2..=4 => format!("{not}{{ {} }}", list.join(", ")),
        _ => format!("{not}{{\n{}\n}}", list.iter().map(|member| format!("    {member},")).collect::<Vec<_>>().join("\n")),
    }
}

fn rate(limit: &Limit) -> String {
    let unit = match limit.unit_seconds {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        _ => "day",
    };
    let mut text = format!("{}/{unit}", limit.count);
    if limit.burst != 5 {
        text.push_str(&format!(" burst {}", limit.burst));
    }
    text
}

/// A .fw string: in double quotes, `"` and `\` escaped by a backslash.
pub fn string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A chain name fwc accepts: a name of the grammar, not a built-in one.
pub fn valid_chain_name(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING", "ACCEPT", "DROP", "REJECT", "RETURN", "LOG",
        "QUEUE", "NFQUEUE", "MASQUERADE", "SNAT", "DNAT", "REDIRECT",
    ];
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 28
        && !RESERVED.iter().any(|reserved| reserved.eq_ignore_ascii_case(name))
        && !KEYWORDS.contains(&name)
}

/// Words that cannot name a chain after `to` without being read as something else.
const KEYWORDS: &[&str] = &["not", "any"];
