//! The rules of an import as fwc statements: one [`FwRule`] may stand for
//! an IPv4 and an IPv6 rule (merged), for several rules that differ in one
//! value only (folded), and for a LOG rule with the verdict after it.

use super::rule::Parsed;
use crate::ir::*;
use ipnet::IpNet;

/// The families an item of a chain applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fams {
    V4,
    V6,
    Both,
}

impl Fams {
    pub fn of(family: Family) -> Fams {
        match family {
            Family::V4 => Fams::V4,
            Family::V6 => Fams::V6,
        }
    }

    pub fn list(self) -> Vec<Family> {
        match self {
            Fams::V4 => vec![Family::V4],
            Fams::V6 => vec![Family::V6],
            Fams::Both => Family::BOTH.to_vec(),
        }
    }
}

/// Addresses of one side: a set, or one negated address per family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addrs {
    pub negated: bool,
    pub nets: Vec<IpNet>,
}

/// A LOG rule folded into the rule after it: `log "prefix" [rate …]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPart {
    pub prefix: Option<String>,
    pub rate: Option<Limit>,
}

/// One fwc statement. `base` holds every match except the ones that fold
/// (addresses, ports, ICMP types), which have fields of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwRule {
    pub target: Target,
    pub base: Matches,
    pub source: Option<Addrs>,
    pub destination: Option<Addrs>,
    pub dports: Option<Match<Vec<PortRange>>>,
    pub sports: Option<Match<Vec<PortRange>>>,
    pub icmp: Option<Match<Vec<u8>>>,
    pub log: Option<LogPart>,
    /// Still a `-g`: printed only once it is known to be a plain jump.
    pub goto: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Icmp,
    Dports,
    Sports,
    Destination,
    Source,
}

impl FwRule {
    pub fn from_parsed(parsed: &Parsed) -> FwRule {
        let mut base = parsed.matches.clone();
        let addrs = |slot: &mut Option<Match<IpNet>>| {
            slot.take().map(|address| Addrs { negated: address.negated, nets: vec![address.value] })
        };
        let source = addrs(&mut base.source);
        let destination = addrs(&mut base.destination);
        let dports = base.destination_ports.take();
        let sports = base.source_ports.take();
        let icmp = base.icmp_type.take().map(|kind| Match { negated: kind.negated, value: vec![kind.value.kind] });
        FwRule { target: parsed.target.clone(), base, source, destination, dports, sports, icmp, log: None, goto: parsed.goto }
    }

    /// Everything but the address values: two rules with the same key, one
    /// of each family, are one fwc rule with the addresses of both. `None`
    /// for rules that only one family can have.
    pub fn neutral_key(&self) -> Option<String> {
        if matches!(self.target, Target::Snat { .. } | Target::Dnat { .. }) {
            return None;
        }
        if matches!(self.base.protocol, Some(Protocol::ICMP | Protocol::ICMPV6 | Protocol::IGMP)) {
            return None;
        }
        let mut neutral = self.clone();
        for side in [&mut neutral.source, &mut neutral.destination].into_iter().flatten() {
            side.nets.clear();
        }
        Some(format!("{neutral:?}"))
    }

    /// The IPv4 rule and the IPv6 rule as one (their keys are equal).
    pub fn merge(v4: &FwRule, v6: &FwRule) -> FwRule {
        let mut merged = v4.clone();
        for (side, other) in [(&mut merged.source, &v6.source), (&mut merged.destination, &v6.destination)] {
            if let (Some(side), Some(other)) = (side.as_mut(), other) {
                side.nets.extend(other.nets.iter().copied());
            }
        }
        merged
    }

    /// A verdict for every packet: ACCEPT, DROP or REJECT without matches.
    pub fn unconditional_verdict(&self) -> bool {
        let mut base = self.base.clone();
        base.comment = None;
        matches!(self.target, Target::Accept | Target::Drop | Target::Reject(_))
            && base == Matches::default()
            && self.source.is_none()
            && self.destination.is_none()
            && self.dports.is_none()
            && self.sports.is_none()
            && self.icmp.is_none()
    }

    fn without(&self, field: Field) -> FwRule {
        let mut rule = self.clone();
        match field {
            Field::Icmp => rule.icmp = None,
            Field::Dports => rule.dports = None,
            Field::Sports => rule.sports = None,
            Field::Destination => rule.destination = None,
            Field::Source => rule.source = None,
        }
        rule
    }

    /// A target after which no later rule of the chain sees the packet.
    fn terminal(&self) -> bool {
        !matches!(self.target, Target::Jump(_) | Target::Log { .. }) && self.log.is_none()
    }

    /// Whether `next`, which follows this rule, can join it by adding its
    /// value of `field` to this rule's list, keeping what the kernel does.
    pub fn can_fold(&self, next: &FwRule, field: Field) -> bool {
        if self.without(field) != next.without(field) {
            return false;
        }
        match field {
            // One kernel rule per type, as before: exact.
            Field::Icmp => match (&self.icmp, &next.icmp) {
                (Some(mine), Some(theirs)) => {
                    !mine.negated && !theirs.negated && theirs.value.iter().all(|kind| !mine.value.contains(kind))
                }
                _ => false,
            },
            // A port list is one multiport rule: the same verdicts when the
            // rule ends the packet's way or the lists cannot both match, and
            // no limit shares its bucket.
            Field::Dports | Field::Sports => {
                let (mine, theirs) = if field == Field::Dports { (&self.dports, &next.dports) } else { (&self.sports, &next.sports) };
                let (Some(mine), Some(theirs)) = (mine, theirs) else { return false };
                if mine.negated || theirs.negated || self.base.limit.is_some() {
                    return false;
                }
                let disjoint = theirs.value.iter().all(|range| {
                    mine.value.iter().all(|other| range.high < other.low || other.high < range.low)
                });
                self.terminal() || disjoint
            }
            // One kernel rule per address, in the order written: exact.
            Field::Destination | Field::Source => {
                let (mine, theirs) =
                    if field == Field::Source { (&self.source, &next.source) } else { (&self.destination, &next.destination) };
                match (mine, theirs) {
                    (Some(mine), Some(theirs)) => {
                        !mine.negated && !theirs.negated && theirs.nets.iter().all(|net| !mine.nets.contains(net))
                    }
                    _ => false,
                }
            }
        }
    }

    pub fn fold(&mut self, next: &FwRule, field: Field) {
        match field {
            Field::Icmp => extend(&mut self.icmp, &next.icmp),
            Field::Dports => extend(&mut self.dports, &next.dports),
            Field::Sports => extend(&mut self.sports, &next.sports),
            Field::Destination => {
                if let (Some(mine), Some(theirs)) = (self.destination.as_mut(), &next.destination) {
                    mine.nets.extend(theirs.nets.iter().copied());
                }
            }
            Field::Source => {
                if let (Some(mine), Some(theirs)) = (self.source.as_mut(), &next.source) {
                    mine.nets.extend(theirs.nets.iter().copied());
                }
            }
        }
    }

    /// This LOG rule and the verdict after it as `verdict … log "p"`: fwc
    /// writes the LOG rule with the verdict's matches and limit, or with
    /// `rate` in place of the limit.
    pub fn log_into(&self, verdict: &FwRule, nat: bool) -> Option<FwRule> {
        let Target::Log { prefix } = &self.target else { return None };
        if matches!(verdict.target, Target::Log { .. }) || verdict.log.is_some() {
            return None;
        }
        let strip = |rule: &FwRule| {
            let mut rule = rule.clone();
            rule.target = Target::Accept;
            rule.base.limit = None;
            rule
        };
        if strip(self) != strip(verdict) {
            return None;
        }
        let rate = match (self.base.limit, verdict.base.limit) {
            (logged, verdict_limit) if nat => {
                if verdict_limit.is_some() {
                    return None;
                }
                logged
            }
            (None, Some(_)) => return None,
            (logged, verdict_limit) if logged == verdict_limit => None,
            (logged, _) => logged,
        };
        let mut folded = verdict.clone();
        folded.log = Some(LogPart { prefix: prefix.clone(), rate });
        Some(folded)
    }
}

fn extend<T: Clone>(mine: &mut Option<Match<Vec<T>>>, theirs: &Option<Match<Vec<T>>>) {
    if let (Some(mine), Some(theirs)) = (mine.as_mut(), theirs) {
        mine.value.extend(theirs.value.iter().cloned());
    }
}
