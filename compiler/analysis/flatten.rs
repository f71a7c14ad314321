//! A built-in chain and everything it jumps to, as one first-match list.
//!
//! Walking the chain graph from a built-in chain, each rule gets its
//! *effective match*: its own box intersected with the path condition that
//! brings a packet to it — the conditions of the jumps taken, minus the
//! packets earlier conditional `return`s sent back. A chain jumped to from
//! several places appears once per jump. In the resulting order, a packet
//! meets exactly the rules the kernel would show it, in the same order, so
//! first-match reasoning over the list is exact.

use super::boxes::{subtract, Encoder, Union};
use crate::ir::*;
use rustc_hash::FxHashMap;

/// One rule occurrence in a flattened chain.
#[derive(Clone, Debug)]
pub struct Flat {
    /// Index of the IR rule.
    pub rule: usize,
    /// The packets that reach this position and match the rule.
    pub effective: Effective,
}

/// The packets of a position.
#[derive(Clone, Debug)]
pub enum Effective {
    /// Every packet the rule matches: a rule of the built-in chain itself
    /// before any `return`, which every packet passes by. Most rules are
    /// these, and their box is made only when it is needed.
    Own,
    /// The rule's box within the path condition.
    Within(Union),
}

/// The filter rules of one family, by chain, in order.
pub type Chains<'r> = FxHashMap<&'r ChainRef, Vec<usize>>;

/// `family`: the indices of the family's rules, in order.
pub fn chains<'r>(ruleset: &'r Ruleset, family: &[usize]) -> Chains<'r> {
    let mut chains: Chains = FxHashMap::default();
    for &index in family {
        let rule = &ruleset.rules[index];
        if rule.table == Table::Filter {
            chains.entry(&rule.chain).or_default().push(index);
        }
    }
    chains
}

/// Flattens the filter chain `builtin` of one family.
pub fn flatten(ruleset: &Ruleset, encoder: &Encoder, chains: &Chains, builtin: &ChainRef) -> Vec<Flat> {
    let mut out = Vec::new();
    walk(ruleset, encoder, chains, builtin, None, &mut out, 0);
    out
}

/// Walks `chain` for the packets of `path` (`None`: every packet).
fn walk(ruleset: &Ruleset, encoder: &Encoder, chains: &Chains, chain: &ChainRef, mut path: Option<Union>, out: &mut Vec<Flat>, depth: usize) {
    // Lowering refuses chain cycles; the depth bound is a second guard.
    if depth > 64 {
        return;
    }
    for &index in chains.get(chain).map_or(&[][..], Vec::as_slice) {
        let rule = &ruleset.rules[index];
        let effective = match &path {
            Some(path) if path.is_empty() => return,
            Some(path) => {
                let rule_box = encoder.encode(&rule.matches);
                Effective::Within(path.iter().filter_map(|part| part.intersect(&rule_box)).collect())
            }
            None => Effective::Own,
        };
        match &rule.target {
            Target::Jump(target) => {
                let within = match &effective {
                    Effective::Own => vec![encoder.encode(&rule.matches)],
                    Effective::Within(union) => union.clone(),
                };
                out.push(Flat { rule: index, effective });
                if within.iter().any(|part| !part.is_empty()) {
                    walk(ruleset, encoder, chains, &ChainRef::User(target.clone()), Some(within), out, depth + 1);
                }
            }
            Target::Return => {
                out.push(Flat { rule: index, effective });
                // Limited returns may or may not take a packet: keep it.
                if rule.matches.limit.is_none() {
                    let rule_box = encoder.encode(&rule.matches);
                    let before = path.take().unwrap_or_else(|| vec![encoder.universe()]);
                    path = Some(subtract(&before, &rule_box, &encoder.maxima));
                }
            }
            _ => out.push(Flat { rule: index, effective }),
        }
    }
}
