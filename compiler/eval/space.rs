//! The packets an expectation or a query covers, one per class.
//!
//! Every match in the IR compares a field with a set that is a union of
//! intervals (address blocks, port ranges) or with a few names (interfaces,
//! MAC addresses). So for each field the rules split the values into
//! classes the rules cannot tell apart: between any two consecutive
//! boundaries of every block or range, all values behave alike. Checking
//! one value per class checks them all — exactly, not by sampling.

use super::Packet;
use crate::ir::*;
use crate::syntax::ast::{ConnectionState, Direction};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an expectation says about a packet; `None` means every value.
#[derive(Clone, Debug, Default)]
pub struct Constraint {
    pub families: Option<Vec<Family>>,
    pub protocol: Option<u8>,
    /// Ports the destination port must lie in (any of the ranges).
    pub destination_ports: Option<Vec<PortRange>>,
    pub source_ports: Option<Vec<PortRange>>,
    pub icmp_type: Option<u8>,
    /// Blocks the source must lie in (any of them).
    pub sources: Option<Vec<IpNet>>,
    pub destinations: Option<Vec<IpNet>>,
    /// For `in`: the arrival interface; for `out`: the leaving one; for
    /// `forward`: (in, out).
    pub in_interface: Option<String>,
    pub out_interface: Option<String>,
    pub state: Option<ConnectionState>,
}

/// The largest number of packets one expectation may stand for.
pub const LIMIT: usize = 2_000_000;

/// A name for "any other interface": the first of eth0 … eth9, ens0 …,
/// wan0 …, if0 … that no rule's interface (exact or wildcard) matches. When
/// every candidate matches some pattern (`on +` matches all), there is no
/// "other" class and any name stands for it.
fn other_interface(patterns: &[&str]) -> String {
    let matched = |name: &str| {
        patterns.iter().any(|pattern| match pattern.strip_suffix('+') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pattern,
        })
    };
    ["eth", "ens", "wan", "if", "x"]
        .iter()
        .flat_map(|prefix| (0..10).map(move |n| format!("{prefix}{n}")))
        .find(|name| !matched(name))
        .unwrap_or_else(|| "eth0".to_string())
}

/// Enumerates one packet per class. Calls `visit` until it returns false.
/// Returns `Err(count)` if the space is larger than [`LIMIT`].
pub fn for_each_packet(
    ruleset: &Ruleset,
    direction: Direction,
    constraint: &Constraint,
    mut visit: impl FnMut(&Packet) -> bool,
) -> Result<(), usize> {
    let families = constraint.families.clone().unwrap_or_else(|| Family::BOTH.to_vec());
    for family in families {
        let rules: Vec<&Rule> = ruleset.rules.iter().filter(|rule| rule.family == family).collect();
        let protocols = match constraint.protocol {
            Some(protocol) => vec![protocol],
            None => protocol_classes(&rules),
        };
        let sources = address_classes(&rules, family, constraint.sources.as_deref(), |m| m.source.as_ref());
        let destinations =
            address_classes(&rules, family, constraint.destinations.as_deref(), |m| m.destination.as_ref());
        let in_interfaces = match direction {
            Direction::Out => vec![None],
            _ => interface_classes(&rules, constraint.in_interface.as_deref(), |m| m.in_interface.as_ref()),
        };
        let out_interfaces = match direction {
            Direction::In => vec![None],
            _ => interface_classes(&rules, constraint.out_interface.as_deref(), |m| m.out_interface.as_ref()),
        };
        let states = match constraint.state {
            Some(state) => vec![state],
            None => vec![ConnectionState::New],
        };
        let macs = mac_classes(&rules, direction);
        for &protocol in &protocols {
            let with_ports = Protocol(protocol).has_ports();
            let source_ports = if with_ports {
                port_classes(&rules, constraint.source_ports.as_deref(), |m| m.source_ports.as_ref())
            } else {
                vec![0]
            };
            let destination_ports = if with_ports {
                port_classes(&rules, constraint.destination_ports.as_deref(), |m| m.destination_ports.as_ref())
            } else {
                vec![0]
            };
            let icmp_protocol = protocol == Protocol::ICMP.0 || protocol == Protocol::ICMPV6.0;
            let icmp_types = match (icmp_protocol, constraint.icmp_type) {
                (true, Some(kind)) => vec![kind],
                (true, None) => icmp_classes(&rules, protocol),
                (false, _) => vec![0],
            };
            let flags = tcp_flag_classes(&rules, protocol);
            let count = [
                sources.len(),
                destinations.len(),
                in_interfaces.len(),
                out_interfaces.len(),
                states.len(),
                macs.len(),
                source_ports.len(),
                destination_ports.len(),
                icmp_types.len(),
                flags.len(),
            ]
            .iter()
            .try_fold(1usize, |total, n| total.checked_mul(*n))
            .unwrap_or(usize::MAX);
            if count > LIMIT {
                return Err(count);
            }
            for source in &sources {
                for destination in &destinations {
                    for in_interface in &in_interfaces {
                        for out_interface in &out_interfaces {
                            for &state in &states {
                                for mac in &macs {
                                    for &source_port in &source_ports {
                                        for &destination_port in &destination_ports {
                                            for &icmp_type in &icmp_types {
                                                for &tcp_flags in &flags {
                                                    let flags = tcp_flags.unwrap_or(match state {
                                                        ConnectionState::New => 0x02,
                                                        _ => 0x10,
                                                    });
                                                    let packet = Packet {
                                                        family,
                                                        direction,
                                                        protocol,
                                                        source: *source,
                                                        destination: *destination,
                                                        source_port,
                                                        destination_port,
                                                        in_interface: in_interface.clone(),
                                                        out_interface: out_interface.clone(),
                                                        state,
                                                        icmp_type,
                                                        tcp_flags: flags,
                                                        mac_source: mac.clone(),
                                                    };
                                                    if !visit(&packet) {
                                                        return Ok(());
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Protocols the rules name, plus one they do not (UDP-Lite's neighbour 253,
/// reserved for experiments).
fn protocol_classes(rules: &[&Rule]) -> Vec<u8> {
    let mut protocols: BTreeSet<u8> = rules.iter().filter_map(|rule| rule.matches.protocol.map(|p| p.0)).collect();
    protocols.insert(Protocol::TCP.0);
    protocols.insert(Protocol::UDP.0);
    protocols.insert(253);
    protocols.into_iter().collect()
}

fn to_number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_number(family: Family, number: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(number as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(number)),
    }
}

fn bounds(net: &IpNet) -> (u128, u128) {
    (to_number(net.network()), to_number(net.broadcast()))
}

/// One address per class: every block boundary inside the allowed blocks.
fn address_classes(
    rules: &[&Rule],
    family: Family,
    within: Option<&[IpNet]>,
    field: impl Fn(&Matches) -> Option<&Match<IpNet>>,
) -> Vec<IpAddr> {
    let max: u128 = match family {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    };
    let allowed: Vec<(u128, u128)> = match within {
        Some(blocks) => blocks.iter().filter(|net| Family::of(net) == family).map(bounds).collect(),
        None => vec![(0, max)],
    };
    // Sorted once: a large policy has tens of thousands.
    let mut cuts = Vec::new();
    for rule in rules {
        if let Some(net) = field(&rule.matches) {
            let (low, high) = bounds(&net.value);
            cuts.push(low);
            if high < max {
                cuts.push(high + 1);
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    // Any member stands for its class; prefer a documentation address
    // (RFC 5737, RFC 3849) so counterexamples read like examples.
    let preferred = match family {
        Family::V4 => to_number("203.0.113.7".parse().expect("literal")),
        Family::V6 => to_number("2001:db8::7".parse().expect("literal")),
    };
    let mut points = Vec::new();
    for (low, high) in allowed {
        let starts: Vec<u128> =
            std::iter::once(low).chain(between(&cuts, low, high).iter().copied().filter(|cut| *cut != low)).collect();
        for (index, start) in starts.iter().enumerate() {
            let end = starts.get(index + 1).map_or(high, |next| next - 1);
            points.push(representative(*start, end, preferred));
        }
    }
    points.sort_unstable();
    points.dedup();
    prefer_first(&mut points, preferred);
    points.into_iter().map(|number| from_number(family, number)).collect()
}

/// The sorted values from `low` to `high`.
fn between<T: Ord>(sorted: &[T], low: T, high: T) -> &[T] {
    &sorted[sorted.partition_point(|value| *value < low)..sorted.partition_point(|value| *value <= high)]
}

/// Examples are the first packets enumerated: show the readable one first.
fn prefer_first<T: PartialEq>(points: &mut [T], preferred: T) {
    if let Some(position) = points.iter().position(|point| *point == preferred) {
        points[..=position].rotate_right(1);
    }
}

/// A readable member of the class `[start, end]`.
fn representative(start: u128, end: u128, preferred: u128) -> u128 {
    if (start..=end).contains(&preferred) {
        preferred
    } else if start < end {
        start + 1
    } else {
        start
    }
}

/// One port per class, within the given ranges if any.
fn port_classes(
    rules: &[&Rule],
    within: Option<&[PortRange]>,
    field: impl Fn(&Matches) -> Option<&Match<Vec<PortRange>>>,
) -> Vec<u16> {
    let mut cuts = vec![1024u16];
    for rule in rules {
        if let Some(ports) = field(&rule.matches) {
            for range in &ports.value {
                cuts.push(range.low);
                if range.high < u16::MAX {
                    cuts.push(range.high + 1);
                }
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let allowed = within.map_or_else(|| vec![PortRange { low: 0, high: u16::MAX }], <[PortRange]>::to_vec);
    let mut points = Vec::new();
    for range in allowed {
        let starts: Vec<u16> = std::iter::once(range.low)
            .chain(between(&cuts, range.low, range.high).iter().copied().filter(|cut| *cut != range.low))
            .collect();
        for (index, start) in starts.iter().enumerate() {
            let end = starts.get(index + 1).map_or(range.high, |next| next - 1);
            // An ephemeral port where the class has one.
            points.push(representative(u128::from(*start), u128::from(end), 40000) as u16);
        }
    }
    points.sort_unstable();
    points.dedup();
    prefer_first(&mut points, 40000);
    points
}

fn icmp_classes(rules: &[&Rule], protocol: u8) -> Vec<u8> {
    let mut kinds: BTreeSet<u8> = rules
        .iter()
        .filter(|rule| rule.matches.protocol.map(|p| p.0) == Some(protocol))
        .filter_map(|rule| rule.matches.icmp_type.map(|kind| kind.value.kind))
        .collect();
    // A type no rule names: 42 is unassigned in both ICMP and ICMPv6.
    kinds.insert(42);
    kinds.into_iter().collect()
}

/// Names the rules mention, their wildcards' stand-ins, and one other name.
/// An omitted interface means every interface but `lo`: loopback traffic is
/// the host talking to itself, not what a policy's tests are about.
fn interface_classes(
    rules: &[&Rule],
    given: Option<&str>,
    field: impl Fn(&Matches) -> Option<&Match<String>>,
) -> Vec<Option<String>> {
    if let Some(name) = given {
        // `eth+` in an expectation stands for some interface it matches.
        let name = name.strip_suffix('+').map_or(name.to_string(), |prefix| format!("{prefix}fwc0"));
        return vec![Some(name)];
    }
    let patterns: Vec<&str> =
        rules.iter().filter_map(|rule| field(&rule.matches).map(|interface| interface.value.as_str())).collect();
    let mut names = BTreeSet::from([other_interface(&patterns)]);
    for rule in rules {
        if let Some(interface) = field(&rule.matches) {
            let name = match interface.value.strip_suffix('+') {
                Some(prefix) => format!("{prefix}fwc0"),
                None => interface.value.clone(),
            };
            if name != "lo" {
                names.insert(name);
            }
        }
    }
    names.into_iter().map(Some).collect()
}

fn mac_classes(rules: &[&Rule], direction: Direction) -> Vec<Option<String>> {
    if direction == Direction::Out {
        return vec![None];
    }
    let mut macs: BTreeSet<Option<String>> =
        rules.iter().filter_map(|rule| rule.matches.mac_source.as_ref().map(|mac| Some(mac.value.clone()))).collect();
    macs.insert(Some("02:00:00:00:00:01".to_string()));
    macs.into_iter().collect()
}

/// Every flag combination when a rule looks at TCP flags; otherwise the
/// usual ones (SYN for a new connection, ACK after), chosen by the caller.
fn tcp_flag_classes(rules: &[&Rule], protocol: u8) -> Vec<Option<u8>> {
    let looks = protocol == Protocol::TCP.0 && rules.iter().any(|rule| rule.matches.tcp_flags.is_some());
    if looks {
        (0u8..64).map(Some).collect()
    } else {
        vec![None]
    }
}
