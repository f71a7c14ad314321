//! A built-in chain and everything it jumps to, as one first-match list.
//!
//! Walking the chain graph from a built-in chain, each rule gets its
//! *effective match*: its own box intersected with the path condition that
//! brings a packet to it — the conditions of the jumps taken, minus the
//! packets earlier conditional `return`s sent back. A chain jumped to from
//! several places appears once per jump. In the resulting order, a packet
//! meets exactly the rules the kernel would show it, in the same order, so
//! first-match reasoning over the list is exact.

use super::boxes::{subtract, Encoder, PacketBox, Union};
use crate::ir::*;
use rustc_hash::FxHashMap;
use std::collections::HashMap;

/// One rule occurrence in a flattened chain.
#[derive(Clone, Debug)]
pub struct Flat {
    /// Index of the IR rule.
    pub rule: usize,
    /// The packets that reach this position and match the rule.
    pub effective: Union,
}

/// Flattens the filter chain `builtin` of one family.
pub fn flatten(ruleset: &Ruleset, encoder: &Encoder, family: Family, builtin: &ChainRef, boxes: &FxHashMap<usize, PacketBox>) -> Vec<Flat> {
    let mut chains: HashMap<&ChainRef, Vec<usize>> = HashMap::new();
    for (index, rule) in ruleset.rules.iter().enumerate() {
        if rule.family == family && rule.table == Table::Filter {
            chains.entry(&rule.chain).or_default().push(index);
        }
    }
    let mut out = Vec::new();
    walk(ruleset, encoder, &chains, boxes, builtin, vec![encoder.universe()], true, &mut out, 0);
    out
}

#[allow(clippy::too_many_arguments)]
fn walk(
    ruleset: &Ruleset,
    encoder: &Encoder,
    chains: &HashMap<&ChainRef, Vec<usize>>,
    boxes: &FxHashMap<usize, PacketBox>,
    chain: &ChainRef,
    mut path: Union,
    mut whole: bool,
    out: &mut Vec<Flat>,
    depth: usize,
) {
    // Lowering refuses chain cycles; the depth bound is a second guard.
    if depth > 64 {
        return;
    }
    for &index in chains.get(chain).map_or(&[][..], Vec::as_slice) {
        if path.is_empty() {
            return;
        }
        let rule_box = &boxes[&index];
        // At the top of a built-in chain every packet comes by.
        let effective: Union = if whole { vec![rule_box.clone()] } else { path.iter().filter_map(|part| part.intersect(rule_box)).collect() };
        let rule = &ruleset.rules[index];
        match &rule.target {
            Target::Jump(target) => {
                out.push(Flat { rule: index, effective: effective.clone() });
                if !effective.is_empty() {
                    walk(ruleset, encoder, chains, boxes, &ChainRef::User(target.clone()), effective, false, out, depth + 1);
                }
            }
            Target::Return => {
                out.push(Flat { rule: index, effective });
                // Limited returns may or may not take a packet: keep it.
                if rule.matches.limit.is_none() {
                    path = subtract(&path, rule_box, &encoder.maxima);
                    whole = false;
                }
            }
            _ => out.push(Flat { rule: index, effective }),
        }
    }
}
