//! `not` before a list.
//!
//! The kernel negates one value per match: `! -s A` is one rule, "neither A
//! nor B" is not. So a rule whose `not` covers more than one kernel match
//! becomes a helper chain that returns for every listed value and then
//! applies the rule without the list:
//!
//! ```text
//! allow in tcp 22 from not { A, B } stateful
//!
//!     INPUT   -j not.1
//!     not.1   -s A -j RETURN
//!             -s B -j RETURN
//!             -p tcp --dport 22 -j ACCEPT
//! ```
//!
//! The helper is an ordinary chain, so what chains already do applies
//! unchanged: the replies of `stateful` go through `not.1.reply`, entered
//! by the mirror of the jump and left by the mirrors of the returns; a
//! `reject` inside still gets its answer rule. The helper's name holds a
//! dot, which user chain names cannot, so it never collides with one.
//!
//! Two kinds of rule keep the one-rule form and its error: a `return`
//! (inside the helper it would return from the helper, not from the chain
//! it was written in) and NAT rules (the nat table has no user chains here).

use super::resolve::{AddressMatch, ProtocolMatch, Resolved, ResolvedChain, ResolvedRule};
use crate::ir::{Family, Match};
use crate::syntax::ast::{Action, Spanned};

/// The kernel's multiport match takes 15 entries, a range counting two.
const MULTIPORT_WEIGHT: usize = 15;

/// Rewrites every rule that negates a list into a jump to a helper chain.
pub fn split_negated_lists(resolved: &mut Resolved) {
    let mut helpers = Vec::new();
    let rules = resolved.top.iter_mut().chain(resolved.chains.iter_mut().flat_map(|chain| chain.rules.iter_mut()));
    for rule in rules {
        split(rule, &mut helpers);
    }
    resolved.chains.extend(helpers);
}

/// Replaces a rule that negates a list with the jump to its helper chain.
fn split(rule: &mut ResolvedRule, helpers: &mut Vec<ResolvedChain>) {
    if rule.action == Action::Return || rule.action.is_nat() {
        return;
    }
    let returns = take_negated_lists(rule);
    if returns.is_empty() {
        return;
    }
    let name = Spanned { value: format!("not.{}", helpers.len() + 1), span: rule.span };
    let jump = ResolvedRule {
        action: Action::Jump,
        jump: Some(name.clone()),
        direction: rule.direction.take(),
        on: rule.on.take(),
        families: rule.families.clone(),
        narrowed: rule.narrowed,
        ignored: rule.ignored.clone(),
        negation: true,
        ..bare(rule)
    };
    let families = jump.families.clone();
    let mut rules = returns;
    rules.push(std::mem::replace(rule, jump));
    helpers.push(ResolvedChain { name, keep: false, span: rule.span, rules, families });
}

/// Takes every negated list out of `rule` that is more than one kernel
/// match, and gives the returns that stand for it.
fn take_negated_lists(rule: &mut ResolvedRule) -> Vec<ResolvedRule> {
    let mut returns = Vec::new();
    if rule.sources.as_ref().is_some_and(needs_helper) {
        let sources = rule.sources.take().map(positive);
        returns.push(ResolvedRule { sources, ..a_return(rule) });
    }
    if rule.destinations.as_ref().is_some_and(needs_helper) {
        let destinations = rule.destinations.take().map(positive);
        returns.push(ResolvedRule { destinations, ..a_return(rule) });
    }
    let template = a_return(rule);
    for protocol in &mut rule.protocols {
        if protocol.icmp_negated && protocol.icmp_types.len() > 1 {
            let types = std::mem::take(&mut protocol.icmp_types);
            protocol.icmp_negated = false;
            let listed = ProtocolMatch { protocol: protocol.protocol, ports: None, icmp_types: types, icmp_negated: false };
            returns.push(ResolvedRule { protocols: vec![listed], ..template.clone() });
        }
        if protocol.ports.as_ref().is_some_and(|ports| ports.negated && !fits_one_rule(&ports.value)) {
            let ports = protocol.ports.take().map(|ports| Match::positive(ports.value));
            let listed = ProtocolMatch { protocol: protocol.protocol, ports, icmp_types: Vec::new(), icmp_negated: false };
            returns.push(ResolvedRule { protocols: vec![listed], ..template.clone() });
        }
    }
    if rule.source_ports.as_ref().is_some_and(|ports| ports.negated && !fits_one_rule(&ports.value)) {
        let source_ports = rule.source_ports.take().map(|ports| Match::positive(ports.value));
        // The returns cover the rule's protocols that have ports, any port.
        let protocols = rule
            .protocols
            .iter()
            .filter(|protocol| protocol.protocol.has_ports())
            .map(|protocol| ProtocolMatch { protocol: protocol.protocol, ports: None, icmp_types: Vec::new(), icmp_negated: false })
            .collect();
        returns.push(ResolvedRule { protocols, source_ports, ..a_return(rule) });
    }
    returns
}

/// A negated address list that is more than one address of a family. A
/// negated /0 stays: lowering reports that it matches nothing.
fn needs_helper(addresses: &AddressMatch) -> bool {
    if !addresses.negated || addresses.addresses.iter().any(|address| address.net.prefix_len() == 0) {
        return false;
    }
    Family::BOTH.iter().any(|family| {
        addresses.addresses.iter().filter(|address| Family::of(&address.net) == *family).count() > 1
    })
}

fn positive(addresses: AddressMatch) -> AddressMatch {
    AddressMatch { negated: false, ..addresses }
}

/// Whether a port list is one multiport match.
fn fits_one_rule(ports: &[crate::ir::PortRange]) -> bool {
    let weight: usize = ports.iter().map(|range| if range.low == range.high { 1 } else { 2 }).sum();
    weight <= MULTIPORT_WEIGHT
}

/// A `return` in the helper chain, matches to be filled in.
fn a_return(rule: &ResolvedRule) -> ResolvedRule {
    ResolvedRule { action: Action::Return, families: rule.families.clone(), negation: true, ..bare(rule) }
}

/// A rule of the same origin that matches everything and decides nothing.
fn bare(rule: &ResolvedRule) -> ResolvedRule {
    ResolvedRule {
        span: rule.span,
        context: rule.context.clone(),
        action: Action::Return,
        direction: None,
        on: None,
        protocols: Vec::new(),
        sources: None,
        destinations: None,
        states: None,
        jump: None,
        stateful: false,
        log: None,
        limit: None,
        log_rate: None,
        comment: None,
        source_ports: None,
        tcp_flags: None,
        mac_source: None,
        reject_with: None,
        nat: None,
        narrowed: false,
        families: Vec::new(),
        ignored: Vec::new(),
        negation: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::PortRange;

    #[test]
    fn multiport_weight_counts_ranges_twice() {
        let single = |port| PortRange { low: port, high: port };
        let fifteen: Vec<PortRange> = (1..=15).map(single).collect();
        assert!(fits_one_rule(&fifteen));
        let mut with_range = fifteen[..14].to_vec();
        with_range.push(PortRange { low: 100, high: 200 });
        assert!(!fits_one_rule(&with_range));
    }
}
