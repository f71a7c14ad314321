//! Sets of packets as unions of boxes.
//!
//! A packet is a point in a space of fields (protocol, addresses, ports,
//! interfaces, state, …), each a range of integers; interfaces and MAC
//! addresses get integer codes. Every IR match constrains each field to a
//! union of intervals, so a rule's match is a *box*: one interval set per
//! field. Intersection of boxes is a box; the difference of two boxes is a
//! union of at most one box per field. That is all the analysis needs, and
//! it is exact.

use crate::ir::*;
use std::collections::BTreeMap;
use smallvec::{smallvec, SmallVec};
use std::net::IpAddr;

pub const PROTOCOL: usize = 0;
pub const SOURCE: usize = 1;
pub const DESTINATION: usize = 2;
pub const SOURCE_PORT: usize = 3;
pub const DESTINATION_PORT: usize = 4;
pub const ICMP_TYPE: usize = 5;
pub const IN_INTERFACE: usize = 6;
pub const OUT_INTERFACE: usize = 7;
pub const STATE: usize = 8;
pub const TCP_FLAGS: usize = 9;
pub const MAC: usize = 10;
pub const FIELDS: usize = 11;

/// A sorted union of disjoint, non-adjacent inclusive intervals.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Intervals(pub SmallVec<[(u128, u128); 1]>);

impl Intervals {
    pub fn full(max: u128) -> Intervals {
        Intervals(smallvec![(0, max)])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn intersect(&self, other: &Intervals) -> Intervals {
        let (mut i, mut j) = (0, 0);
        let mut out = SmallVec::new();
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let low = a.0.max(b.0);
            let high = a.1.min(b.1);
            if low <= high {
                out.push((low, high));
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Intervals(out)
    }

    pub fn complement(&self, max: u128) -> Intervals {
        let mut out = SmallVec::new();
        let mut next = 0u128;
        let mut open = true;
        for &(low, high) in &self.0 {
            if low > next {
                out.push((next, low - 1));
            }
            if high == u128::MAX || high >= max {
                open = false;
                break;
            }
            next = high + 1;
        }
        if open && next <= max {
            out.push((next, max));
        }
        Intervals(out)
    }

    pub fn minus(&self, other: &Intervals, max: u128) -> Intervals {
        self.intersect(&other.complement(max))
    }
}

/// A product of one interval set per field. Empty if any field is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PacketBox(pub [Intervals; FIELDS]);

impl PacketBox {
    pub fn is_empty(&self) -> bool {
        self.0.iter().any(Intervals::is_empty)
    }

    pub fn intersect(&self, other: &PacketBox) -> Option<PacketBox> {
        let mut fields: [Intervals; FIELDS] = Default::default();
        for field in 0..FIELDS {
            fields[field] = self.0[field].intersect(&other.0[field]);
            if fields[field].is_empty() {
                return None;
            }
        }
        Some(PacketBox(fields))
    }

    /// `self − other` as disjoint boxes: for each field in turn, the part of
    /// `self` outside `other` in that field and inside it in the earlier ones.
    pub fn minus(&self, other: &PacketBox, maxima: &[u128; FIELDS]) -> Vec<PacketBox> {
        let Some(common) = self.intersect(other) else { return vec![self.clone()] };
        let mut pieces = Vec::new();
        let mut rest = self.clone();
        for field in 0..FIELDS {
            let outside = rest.0[field].minus(&other.0[field], maxima[field]);
            if !outside.is_empty() {
                let mut piece = rest.clone();
                piece.0[field] = outside;
                pieces.push(piece);
            }
            rest.0[field] = common.0[field].clone();
        }
        pieces
    }
}

impl Default for Intervals {
    fn default() -> Intervals {
        Intervals(SmallVec::new())
    }
}

/// Encodes a family's rules' matches as boxes.
pub struct Encoder {
    pub maxima: [u128; FIELDS],
    interfaces: Vec<String>,
    macs: Vec<String>,
}

impl Encoder {
    /// Interface codes: every exact name in the rules, a stand-in member for
    /// each wildcard, and one code for "any other interface". The empty
    /// name (no such interface in this chain) is code 0.
    pub fn new(family: Family, rules: &[&Rule]) -> Encoder {
        let mut interfaces: Vec<String> = vec![String::new()];
        let mut macs: Vec<String> = Vec::new();
        for rule in rules {
            for interface in [&rule.matches.in_interface, &rule.matches.out_interface].into_iter().flatten() {
                let name = match interface.value.strip_suffix('+') {
                    Some(prefix) => format!("{prefix}\u{1}"),
                    None => interface.value.clone(),
                };
                if !interfaces.contains(&name) {
                    interfaces.push(name);
                }
            }
            if let Some(mac) = &rule.matches.mac_source {
                if !macs.contains(&mac.value) {
                    macs.push(mac.value.clone());
                }
            }
        }
        interfaces.push("\u{2}other".to_string());
        macs.push("\u{2}other".to_string());
        let address_max = match family {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        };
        let maxima = [
            255,
            address_max,
            address_max,
            65535,
            65535,
            255,
            interfaces.len() as u128 - 1,
            interfaces.len() as u128 - 1,
            4,
            63,
            macs.len() as u128 - 1,
        ];
        Encoder { maxima, interfaces, macs }
    }

    /// The code of an interface named exactly in some rule.
    pub fn interface_code(&self, name: &str) -> Option<u128> {
        self.interfaces.iter().position(|known| known == name).map(|code| code as u128)
    }

    pub fn universe(&self) -> PacketBox {
        let mut fields: [Intervals; FIELDS] = Default::default();
        for (field, max) in self.maxima.iter().enumerate() {
            fields[field] = Intervals::full(*max);
        }
        PacketBox(fields)
    }

    /// The box of packets a rule's matches accept.
    pub fn encode(&self, matches: &Matches) -> PacketBox {
        let mut intervals = Vec::new();
        let mut packet_box = PacketBox(Default::default());
        if let Some(ends) = self.encode_into(matches, &mut intervals) {
            let mut from = 0;
            for (field, end) in ends.into_iter().enumerate() {
                packet_box.0[field] = match &intervals[from..end as usize] {
                    [] => Intervals::full(self.maxima[field]),
                    named => Intervals(named.iter().copied().collect()),
                };
                from = end as usize;
            }
        }
        packet_box
    }

    /// Appends the intervals of a rule's box to `out` (see `Arena`), and
    /// gives where each field's end; `None`, with nothing appended, for a
    /// box with no packet.
    pub fn encode_into(&self, matches: &Matches, out: &mut Vec<(u128, u128)>) -> Option<[u32; FIELDS]> {
        let mut arena = Arena::new(out, &self.maxima);
        if let Some(protocol) = matches.protocol {
            let number = u128::from(protocol.0);
            arena.name(PROTOCOL, false, [(number, number)])?;
        }
        for (field, address) in [(SOURCE, &matches.source), (DESTINATION, &matches.destination)] {
            if let Some(address) = address {
                let (low, high) = (number(address.value.network()), number(address.value.broadcast()));
                arena.name(field, address.negated, [(low, high)])?;
            }
        }
        for (field, ports) in [(SOURCE_PORT, &matches.source_ports), (DESTINATION_PORT, &matches.destination_ports)] {
            if let Some(ports) = ports {
                let ranges = ports.value.iter().map(|range| (u128::from(range.low), u128::from(range.high)));
                arena.name(field, ports.negated, ranges)?;
            }
        }
        if let Some(icmp) = &matches.icmp_type {
            let kind = u128::from(icmp.value.kind);
            arena.name(ICMP_TYPE, icmp.negated, [(kind, kind)])?;
        }
        for (field, interface) in [(IN_INTERFACE, &matches.in_interface), (OUT_INTERFACE, &matches.out_interface)] {
            if let Some(interface) = interface {
                let codes = self
                    .interfaces
                    .iter()
                    .enumerate()
                    .filter(|(_, name)| interface_matches(&interface.value, name))
                    .map(|(code, _)| (code as u128, code as u128));
                arena.name(field, interface.negated, codes)?;
            }
        }
        if let Some(states) = &matches.states {
            let codes = (0..5u128).filter(|code| states.value.contains(States(1 << code))).map(|code| (code, code));
            arena.name(STATE, states.negated, codes)?;
        }
        if let Some(flags) = &matches.tcp_flags {
            let values = (0..64u128).filter(|value| (*value as u8) & flags.value.mask == flags.value.set).map(|value| (value, value));
            arena.name(TCP_FLAGS, flags.negated, values)?;
        }
        if let Some(mac) = &matches.mac_source {
            let code = self.macs.iter().position(|known| *known == mac.value).expect("collected") as u128;
            arena.name(MAC, mac.negated, [(code, code)])?;
        }
        Some(arena.finish())
    }
}

/// Appends a box to `out`, the analysis' arena of intervals, field after
/// field: a field left whole gets no interval (its end is the one
/// before), so equal boxes are written alike however they were made.
pub fn append_box(packet_box: &PacketBox, maxima: &[u128; FIELDS], out: &mut Vec<(u128, u128)>) -> Option<[u32; FIELDS]> {
    let mut arena = Arena::new(out, maxima);
    for (field, intervals) in packet_box.0.iter().enumerate() {
        arena.name(field, false, intervals.0.iter().copied())?;
    }
    Some(arena.finish())
}

/// One box being appended to an arena: fields are named in order, each
/// at most once.
struct Arena<'a> {
    out: &'a mut Vec<(u128, u128)>,
    maxima: &'a [u128; FIELDS],
    start: usize,
    /// The next field to write.
    field: usize,
    ends: [u32; FIELDS],
}

impl<'a> Arena<'a> {
    fn new(out: &'a mut Vec<(u128, u128)>, maxima: &'a [u128; FIELDS]) -> Arena<'a> {
        let start = out.len();
        Arena { out, maxima, start, field: 0, ends: [0; FIELDS] }
    }

    /// Leaves the fields before `field` whole.
    fn skip_to(&mut self, field: usize) {
        while self.field < field {
            self.ends[self.field] = (self.out.len() - self.start) as u32;
            self.field += 1;
        }
    }

    /// Writes a field's intervals (the complement of them when
    /// `negated`); `None`, with the box taken off again, if none is left.
    fn name(&mut self, field: usize, negated: bool, intervals: impl IntoIterator<Item = (u128, u128)>) -> Option<()> {
        self.skip_to(field);
        let from = self.out.len();
        self.out.extend(intervals);
        if self.out.len() - from > 1 {
            // Sorted and merged where they are.
            self.out[from..].sort_unstable();
            let mut last = from;
            for index in from + 1..self.out.len() {
                let (low, high) = self.out[index];
                if low <= self.out[last].1.saturating_add(1) {
                    self.out[last].1 = self.out[last].1.max(high);
                } else {
                    last += 1;
                    self.out[last] = (low, high);
                }
            }
            self.out.truncate(last + 1);
        }
        if negated {
            let complement = Intervals(self.out.drain(from..).collect()).complement(self.maxima[field]);
            self.out.extend_from_slice(&complement.0);
        }
        if self.out.len() == from {
            self.out.truncate(self.start);
            return None;
        }
        if self.out[from..] == [(0, self.maxima[field])] {
            self.out.truncate(from);
        }
        self.skip_to(field + 1);
        Some(())
    }

    fn finish(mut self) -> [u32; FIELDS] {
        self.skip_to(FIELDS);
        self.ends
    }
}

pub(super) fn number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Whether an interface pattern matches a coded name (a wildcard's
/// stand-in is its prefix followed by \u{1}).
fn interface_matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('\u{2}') {
        return false; // "any other interface" matches no pattern
    }
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix) && !name.is_empty(),
        None => name == pattern,
    }
}

/// A union of boxes (not necessarily disjoint).
pub type Union = Vec<PacketBox>;

/// `union − packet_box`, keeping the result's boxes disjoint if they were.
pub fn subtract(union: &Union, packet_box: &PacketBox, maxima: &[u128; FIELDS]) -> Union {
    let mut out = Vec::with_capacity(union.len());
    for part in union {
        out.extend(part.minus(packet_box, maxima));
    }
    out
}

/// Groups rules' indices by family for the analyses.
pub fn by_family(ruleset: &Ruleset) -> BTreeMap<Family, Vec<usize>> {
    let mut map: BTreeMap<Family, Vec<usize>> = BTreeMap::new();
    for (index, rule) in ruleset.rules.iter().enumerate() {
        map.entry(rule.family).or_default().push(index);
    }
    map
}
