//! Fewer kernel rules for the same first-match behaviour.
//!
//! The lowered IR has one rule per family × protocol × address × port
//! chunk, in policy order. Backends can match lists in one rule (multiport,
//! ipset sets, nft sets), so runs of *adjacent* rules of one chain that
//! differ only in one list-valued field are merged here into one rule over
//! the union of that field.
//!
//! Why that keeps the behaviour: let rules `r1 … rk` be adjacent in one
//! chain, equal in everything but field `F`, with positive values
//! `v1 … vk`. A packet reaching `r1` either matches none of them (it goes on
//! to the rule after `rk`, as it would after the merged rule) or matches a
//! first one, `ri`. If the target ends the packet's walk through the chain
//! (ACCEPT, DROP, REJECT, RETURN, the NAT targets), `ri`'s target is what
//! the merged rule does. A jump or a LOG goes on afterwards, and could meet
//! a later `rj` that matches as well — so for those targets the values must
//! be pairwise disjoint, and then exactly one `ri` matches. Rules with a
//! `limit` are never merged (each has a token bucket of its own), nor are
//! negated values (`not a` and `not b` is not `not (a or b)`).
//!
//! Only adjacent rules are merged: moving a rule past another is safe only
//! when they cannot match the same packet, which this module does not try
//! to prove. The differential kernel test checks the merged rules against
//! the evaluator, which reads the unmerged IR.

use crate::ir::*;
use ipnet::IpNet;

/// The list-valued fields a run of rules may differ in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Source,
    Destination,
    SourcePorts,
    DestinationPorts,
}

/// One field's values, merged: address blocks or port ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Values {
    Addresses(Vec<IpNet>),
    Ports(Vec<PortRange>),
}

/// A run of adjacent rules merged into one, or a single rule
/// (`merged == None`).
#[derive(Clone, Debug)]
pub struct Run {
    /// The run's rules: a range of the slice given to [`runs`]; all equal
    /// but in `merged`'s field.
    pub range: std::ops::Range<usize>,
    /// The field they differ in, and the union of its values (sorted,
    /// overlaps and neighbours joined).
    pub merged: Option<(Field, Values)>,
}

/// Whether the target ends the packet's walk through the chain.
pub fn terminates(target: &Target) -> bool {
    !matches!(target, Target::Jump(_) | Target::Log { .. })
}

/// Splits one chain's rules (one family, one table, in kernel order) into
/// runs. `compatible(i, j)` may forbid more merges (the nft backend asks
/// for rules of the same families).
pub fn runs(rules: &[&Rule], compatible: impl Fn(usize, usize) -> bool) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut index = 0;
    while index < rules.len() {
        let first = rules[index];
        let mut end = index + 1;
        let mut field = None;
        if first.matches.limit.is_none() && index + 1 < rules.len() && compatible(index, index + 1) {
            field = FIELDS.into_iter().find(|field| differs_only_in(first, rules[index + 1], *field));
        }
        if let Some(field) = field {
            let disjoint_needed = !terminates(&first.target);
            while let Some(next) = rules.get(end) {
                if !compatible(index, end) || !differs_only_in(first, next, field) {
                    break;
                }
                if disjoint_needed && rules[index..end].iter().any(|earlier| overlaps(earlier, next, field)) {
                    break;
                }
                end += 1;
            }
        }
        let merged = (end - index > 1).then(|| {
            let field = field.expect("a run of two or more has a field");
            (field, union(&rules[index..end], field))
        });
        runs.push(Run { range: index..end, merged });
        index = end;
    }
    runs
}

const FIELDS: [Field; 4] = [Field::DestinationPorts, Field::Source, Field::Destination, Field::SourcePorts];

/// Both rules have a positive value in `field` and are equal in everything
/// else: family, table, chain, every other match, target. Rules with a
/// `limit` never qualify.
pub fn differs_only_in(a: &Rule, b: &Rule, field: Field) -> bool {
    let (x, y) = (&a.matches, &b.matches);
    if a.family != b.family || a.table != b.table || a.chain != b.chain || a.target != b.target {
        return false;
    }
    if x.limit.is_some() || y.limit.is_some() {
        return false;
    }
    let positive_here = match field {
        Field::Source => positive(&x.source) && positive(&y.source),
        Field::Destination => positive(&x.destination) && positive(&y.destination),
        Field::SourcePorts => positive(&x.source_ports) && positive(&y.source_ports),
        Field::DestinationPorts => positive(&x.destination_ports) && positive(&y.destination_ports),
    };
    positive_here
        && (field == Field::Source || x.source == y.source)
        && (field == Field::Destination || x.destination == y.destination)
        && (field == Field::SourcePorts || x.source_ports == y.source_ports)
        && (field == Field::DestinationPorts || x.destination_ports == y.destination_ports)
        && x.in_interface == y.in_interface
        && x.out_interface == y.out_interface
        && x.protocol == y.protocol
        && x.icmp_type == y.icmp_type
        && x.tcp_flags == y.tcp_flags
        && x.mac_source == y.mac_source
        && x.states == y.states
        && x.comment == y.comment
}

fn positive<T>(value: &Option<Match<T>>) -> bool {
    value.as_ref().is_some_and(|value| !value.negated)
}

/// Whether two rules' values in `field` share a value.
fn overlaps(a: &Rule, b: &Rule, field: Field) -> bool {
    match field {
        Field::Source | Field::Destination => {
            let (Some(x), Some(y)) = (address(a, field), address(b, field)) else { return true };
            x.contains(&y.network()) || y.contains(&x.network())
        }
        Field::SourcePorts | Field::DestinationPorts => {
            let (Some(x), Some(y)) = (ports(a, field), ports(b, field)) else { return true };
            x.iter().any(|p| y.iter().any(|q| p.low <= q.high && q.low <= p.high))
        }
    }
}

fn address(rule: &Rule, field: Field) -> Option<IpNet> {
    let side = if field == Field::Source { &rule.matches.source } else { &rule.matches.destination };
    side.as_ref().map(|side| side.value)
}

fn ports(rule: &Rule, field: Field) -> Option<&[PortRange]> {
    let side = if field == Field::SourcePorts { &rule.matches.source_ports } else { &rule.matches.destination_ports };
    side.as_ref().map(|side| side.value.as_slice())
}

/// The union of a run's values in `field`, normalised.
fn union(run: &[&Rule], field: Field) -> Values {
    match field {
        Field::Source | Field::Destination => {
            let nets: Vec<IpNet> = run.iter().filter_map(|rule| address(rule, field)).collect();
            Values::Addresses(IpNet::aggregate(&nets))
        }
        Field::SourcePorts | Field::DestinationPorts => {
            let ranges: Vec<PortRange> = run.iter().filter_map(|rule| ports(rule, field)).flatten().copied().collect();
            Values::Ports(merge_ports(ranges))
        }
    }
}

/// Sorted ranges with overlapping and touching ranges joined.
pub fn merge_ports(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort_unstable();
    let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(range.low) <= u32::from(last.high) + 1 => last.high = last.high.max(range.high),
            _ => merged.push(range),
        }
    }
    merged
}

/// Splits a port list into pieces of at most 15 multiport entries (a range
/// counts two), as one kernel match holds.
pub fn port_chunks(ports: &[PortRange]) -> Vec<Vec<PortRange>> {
    let mut chunks: Vec<Vec<PortRange>> = Vec::new();
    let mut weight = 0;
    for range in ports {
        let cost = if range.low == range.high { 1 } else { 2 };
        if chunks.is_empty() || weight + cost > 15 {
            chunks.push(Vec::new());
            weight = 0;
        }
        chunks.last_mut().expect("pushed above").push(*range);
        weight += cost;
    }
    chunks
}

/// Address lists from this many blocks on go into a set (an ipset for
/// iptables, a named set for nft) instead of one rule per block.
pub const SET_FROM: usize = 8;

/// A named address set: an ipset (`hash:net`) or an nft set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressSet {
    pub name: String,
    pub family: Family,
    pub members: Vec<IpNet>,
}

/// A consolidated rule for iptables: an IR rule (borrowed when unchanged),
/// and the set its source or destination is matched against instead.
#[derive(Clone, Debug)]
pub struct IptRule<'a> {
    pub rule: std::borrow::Cow<'a, Rule>,
    pub set: Option<SetMatch>,
}

/// `-m set --match-set NAME src|dst`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetMatch {
    pub name: String,
    pub field: Field,
}

/// The iptables form of a ruleset: rules in the IR's order (every chain's
/// rules in kernel order), and the ipsets they use.
#[derive(Clone, Debug)]
pub struct Iptables<'a> {
    pub rules: Vec<IptRule<'a>>,
    pub sets: Vec<AddressSet>,
}

/// Consolidates for iptables: runs differing in ports become multiport
/// rules of up to 15 entries; runs differing in one address become one rule
/// per block, or one rule matching an ipset from [`SET_FROM`] blocks on.
/// With `merge` false, every IR rule is one kernel rule.
pub fn iptables(ruleset: &Ruleset, merge: bool) -> Iptables<'_> {
    let mut out = Iptables { rules: Vec::with_capacity(ruleset.rules.len()), sets: Vec::new() };
    if !merge {
        out.rules.extend(ruleset.rules.iter().map(|rule| IptRule { rule: std::borrow::Cow::Borrowed(rule), set: None }));
        return out;
    }
    let mut counters = [0usize; 2];
    for chain in chains(ruleset) {
        for run in runs(&chain, |_, _| true) {
            let first = chain[run.range.start];
            let Some((field, values)) = run.merged else {
                out.rules.push(IptRule { rule: std::borrow::Cow::Borrowed(first), set: None });
                continue;
            };
            match values {
                Values::Ports(ports) => {
                    for chunk in port_chunks(&ports) {
                        let mut rule = first.clone();
                        let side = if field == Field::SourcePorts {
                            &mut rule.matches.source_ports
                        } else {
                            &mut rule.matches.destination_ports
                        };
                        *side = Some(Match::positive(chunk));
                        out.rules.push(IptRule { rule: std::borrow::Cow::Owned(rule), set: None });
                    }
                }
                Values::Addresses(nets) => {
                    // hash:net takes no /0; a list that covers everything
                    // stays as rules.
                    let setable = nets.len() >= SET_FROM && nets.iter().all(|net| net.prefix_len() > 0);
                    if !setable {
                        for net in nets {
                            let mut rule = first.clone();
                            *address_side(&mut rule, field) = Some(Match::positive(net));
                            out.rules.push(IptRule { rule: std::borrow::Cow::Owned(rule), set: None });
                        }
                        continue;
                    }
                    let counter = &mut counters[first.family as usize];
                    *counter += 1;
                    let name = format!("fwc-{}-{}", if first.family == Family::V4 { 4 } else { 6 }, counter);
                    let mut rule = first.clone();
                    *address_side(&mut rule, field) = None;
                    out.rules.push(IptRule {
                        rule: std::borrow::Cow::Owned(rule),
                        set: Some(SetMatch { name: name.clone(), field }),
                    });
                    out.sets.push(AddressSet { name, family: first.family, members: nets });
                }
            }
        }
    }
    out
}

fn address_side(rule: &mut Rule, field: Field) -> &mut Option<Match<IpNet>> {
    if field == Field::Source {
        &mut rule.matches.source
    } else {
        &mut rule.matches.destination
    }
}

/// Every (family, table, chain)'s rules, in kernel order, in the order the
/// chains first appear.
pub fn chains(ruleset: &Ruleset) -> Vec<Vec<&Rule>> {
    let mut slots: std::collections::HashMap<(Family, Table, &ChainRef), usize> = std::collections::HashMap::new();
    let mut chains: Vec<Vec<&Rule>> = Vec::new();
    for rule in &ruleset.rules {
        let slot = *slots.entry((rule.family, rule.table, &rule.chain)).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[slot].push(rule);
    }
    chains
}

/// Rule counts before and after consolidation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Rules in the lowered IR (one per family × protocol × address × port chunk).
    pub ir: usize,
    pub iptables_v4: usize,
    pub iptables_v6: usize,
    pub ipset_members: usize,
    pub nft: usize,
    pub nft_set_members: usize,
}

impl Stats {
    pub fn describe(&self) -> String {
        format!(
            "rules: {} before consolidation; iptables {} (IPv4 {}, IPv6 {}{}); nft {}{}",
            self.ir,
            self.iptables_v4 + self.iptables_v6,
            self.iptables_v4,
            self.iptables_v6,
            if self.ipset_members > 0 { format!(", {} blocks in ipsets", self.ipset_members) } else { String::new() },
            self.nft,
            if self.nft_set_members > 0 { format!(" ({} values in named sets)", self.nft_set_members) } else { String::new() },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(low: u16, high: u16) -> PortRange {
        PortRange { low, high }
    }

    #[test]
    fn port_ranges_are_joined_when_they_touch_or_overlap() {
        let merged = merge_ports(vec![range(80, 80), range(22, 22), range(81, 90), range(85, 100), range(443, 443)]);
        assert_eq!(merged, vec![range(22, 22), range(80, 100), range(443, 443)]);
        assert_eq!(merge_ports(vec![range(65535, 65535), range(0, 65534)]), vec![range(0, 65535)]);
    }

    #[test]
    fn chunks_hold_fifteen_entries_a_range_counting_two() {
        let ports: Vec<PortRange> = (1..=20).map(|port| range(port * 10, port * 10)).collect();
        let chunks = port_chunks(&ports);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![15, 5]);
        let ranges: Vec<PortRange> = (1..=8).map(|port| range(port * 10, port * 10 + 1)).collect();
        assert_eq!(port_chunks(&ranges).iter().map(Vec::len).collect::<Vec<_>>(), vec![7, 1]);
    }
}
