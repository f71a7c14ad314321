//! The exact order analysis of one position of a chain, over decision
//! diagrams. `local.rs` runs it on the position and the rules that meet
//! it, clipped to its match, when no single packet settles the answer.
//!
//! One field, the *split field*, is cut into elementary intervals (cells)
//! at every boundary any rule of the chain has in it; a rule covers a few
//! runs of cells. For every cell the analysis keeps a diagram over the
//! other fields (`diagram.rs`): going forward, the union of what earlier
//! deciding rules took; going backward, which later rule decides each
//! packet. A rule's reach in a cell is its own diagram minus the cell's
//! union; it is redundant when, over its reach, every packet's next
//! decision has its verdict. Cost: for each rule, one memoised diagram
//! operation per cell it covers, in each pass (see docs/ARCHITECTURE.md).

use super::boxes::*;
use super::diagram::{self, Diagrams, Node, Op, EMPTY, POLICY};
use super::flatten::Flat;
use crate::ir::*;
use rustc_hash::FxHashMap;

/// The fields a chain may be split on.
const SPLIT_CANDIDATES: [usize; 4] = [SOURCE, DESTINATION, DESTINATION_PORT, SOURCE_PORT];

/// The fields below the split, top first: few-valued fields that most
/// rules name exactly come first, so the diagrams share their lower parts.
const LEVELS: [usize; FIELDS] =
    [PROTOCOL, STATE, DESTINATION_PORT, SOURCE_PORT, ICMP_TYPE, TCP_FLAGS, IN_INTERFACE, OUT_INTERFACE, MAC, SOURCE, DESTINATION];

/// One box of a rule's effective match: the cells it covers (runs
/// `[start, end)`) and the diagram of its other fields.
pub struct Part {
    pub runs: Vec<(usize, usize)>,
    pub node: Node,
}

impl Part {
    fn covers(&self, cell: usize) -> bool {
        self.runs.iter().any(|(start, end)| (*start..*end).contains(&cell))
    }
}

pub struct Item {
    pub rule: usize,
    pub parts: Vec<Part>,
    pub decides: bool,
    pub limited: bool,
    pub class: u16,
    /// (cell, packets of the cell that reach the rule and match it).
    pub reach: Vec<(usize, Node)>,
}

/// What the backward pass found about one reached deciding position.
pub struct Redundancy {
    pub redundant: bool,
    /// Later rules that decide the reach, in order (none: the policy).
    pub same_as: Vec<usize>,
}

pub struct Chain {
    pub items: Vec<Item>,
    diagrams: Diagrams,
    cells: usize,
    policy_class: u16,
    /// Positions of each rule in the chain.
    positions: FxHashMap<usize, Vec<usize>>,
}

fn decides(target: &Target) -> bool {
    matches!(target, Target::Accept | Target::Drop | Target::Reject(_))
}

/// The cell of each value: boundaries are the cells' first values.
fn cell_of(boundaries: &[u128], value: u128) -> usize {
    boundaries.partition_point(|boundary| *boundary <= value) - 1
}

/// The split field for a chain, and its cell boundaries: the candidate
/// that cuts the chain into the most cells. Also returns how many cells the
/// rules cover in all, the least work the passes do.
fn split(flat: &[Flat], maxima: &[u128; FIELDS]) -> (usize, Vec<u128>, u64) {
    let mut best: Option<(usize, u64, usize, Vec<u128>)> = None;
    for field in SPLIT_CANDIDATES {
        let mut boundaries = vec![0u128];
        for part in flat.iter().flat_map(|item| &item.effective) {
            for &(low, high) in &part.0[field].0 {
                boundaries.push(low);
                if high < maxima[field] {
                    boundaries.push(high + 1);
                }
            }
        }
        boundaries.sort_unstable();
        boundaries.dedup();
        let mut covered = 0u64;
        for part in flat.iter().flat_map(|item| &item.effective) {
            for &(low, high) in &part.0[field].0 {
                covered += (cell_of(&boundaries, high) + 1 - cell_of(&boundaries, low)) as u64;
            }
        }
        let better = match &best {
            None => true,
            Some((cells, best_covered, ..)) => (boundaries.len(), std::cmp::Reverse(covered)) > (*cells, std::cmp::Reverse(*best_covered)),
        };
        if better {
            best = Some((boundaries.len(), covered, field, boundaries));
        }
    }
    let (_, covered, field, boundaries) = best.expect("candidates");
    (field, boundaries, covered)
}

impl Chain {
    /// Encodes a flattened chain and runs the forward pass up to `target`:
    /// that position's reach. `None` when the budget runs out.
    pub fn forward(ruleset: &Ruleset, encoder: &Encoder, flat: &[Flat], policy: &Target, budget: u64, target: usize) -> Option<Chain> {
        let (field, boundaries, covered) = split(flat, &encoder.maxima);
        let order: Vec<usize> = LEVELS.iter().copied().filter(|level| *level != field).collect();
        let mut diagrams = Diagrams::new(order, &encoder.maxima, budget);
        // Every covered cell costs each pass at least one operation: a
        // policy that cannot finish stops here, before any work.
        diagrams.spend(flat.len() as u64 + 2 * covered)?;
        let mut targets: Vec<Target> = Vec::new();
        let mut class_of = |target: &Target| -> u16 {
            match targets.iter().position(|known| known == target) {
                Some(class) => class as u16,
                None => {
                    targets.push(target.clone());
                    targets.len() as u16 - 1
                }
            }
        };
        let policy_class = class_of(policy);
        let mut items = Vec::with_capacity(flat.len());
        let mut positions: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
        for (position, item) in flat.iter().enumerate() {
            let rule = &ruleset.rules[item.rule];
            positions.entry(item.rule).or_default().push(position);
            let mut parts = Vec::with_capacity(item.effective.len());
            for part in &item.effective {
                let runs =
                    part.0[field].0.iter().map(|&(low, high)| (cell_of(&boundaries, low), cell_of(&boundaries, high) + 1)).collect();
                parts.push(Part { runs, node: diagrams.from_box(part) });
            }
            let decides = decides(&rule.target);
            items.push(Item {
                rule: item.rule,
                parts,
                decides,
                limited: rule.matches.limit.is_some(),
                class: if decides { class_of(&rule.target) } else { u16::MAX },
                reach: Vec::new(),
            });
        }
        let mut chain = Chain { items, diagrams, cells: boundaries.len(), policy_class, positions };
        chain.reach(target)?;
        Some(chain)
    }

    /// The budget left.
    pub fn left(&self) -> u64 {
        self.diagrams.left
    }

    /// The reach of the position `target`: its parts minus the union of
    /// the earlier deciding rules' parts (those that always decide).
    fn reach(&mut self, target: usize) -> Option<()> {
        let mut decided = vec![EMPTY; self.cells];
        for item in &self.items[..target] {
            if item.decides && !item.limited {
                for part in &item.parts {
                    for &(start, end) in &part.runs {
                        for cell in start..end {
                            decided[cell] = self.diagrams.apply(Op::Union, decided[cell], part.node)?;
                        }
                    }
                }
            }
        }
        let item = &mut self.items[target];
        for part in &item.parts {
            for &(start, end) in &part.runs {
                self.diagrams.spend((end - start) as u64)?;
                for cell in start..end {
                    let reach = self.diagrams.apply(Op::Difference, part.node, decided[cell])?;
                    if reach != EMPTY {
                        item.reach.push((cell, reach));
                    }
                }
            }
        }
        Some(())
    }

    /// The backward pass down to the reached deciding position `target`:
    /// whether removing its rule changes no verdict.
    pub fn redundancy(&mut self, target: usize) -> Option<Redundancy> {
        let classes = self.items.iter().map(|item| item.class).collect();
        self.diagrams.set_classes(classes, self.policy_class);
        let mut verdict = vec![POLICY; self.cells];
        for position in (target + 1..self.items.len()).rev() {
            let item = &self.items[position];
            if !item.decides {
                continue;
            }
            let op = if item.limited { Op::Limited(item.class) } else { Op::Override(diagram::rule_leaf(position)) };
            for part in &item.parts {
                for &(start, end) in &part.runs {
                    self.diagrams.spend((end - start) as u64)?;
                    for cell in start..end {
                        verdict[cell] = self.diagrams.apply(op, part.node, verdict[cell])?;
                    }
                }
            }
        }
        let item = &self.items[target];
        let (redundant, same_as) = if item.limited {
            (false, Vec::new())
        } else if self.later_copy_overlaps(target)? {
            self.scan(target)?
        } else {
            self.decided_later(target, &verdict)?
        };
        Some(Redundancy { redundant, same_as })
    }

    /// Redundancy from the verdict diagrams of the positions after this one.
    fn decided_later(&mut self, position: usize, verdict: &[Node]) -> Option<(bool, Vec<usize>)> {
        let item = &self.items[position];
        for &(cell, reach) in &item.reach {
            if self.diagrams.apply(Op::Violates(item.class), reach, verdict[cell])? != EMPTY {
                return Some((false, Vec::new()));
            }
        }
        let mut leaves = Vec::new();
        for &(cell, reach) in &item.reach {
            self.diagrams.spend(1)?;
            self.diagrams.leaves_over(reach, verdict[cell], &mut leaves);
        }
        let mut later: Vec<usize> = leaves.into_iter().filter_map(diagram::leaf_position).collect();
        later.sort_unstable();
        let mut same_as: Vec<usize> = Vec::new();
        for later in later {
            let rule = self.items[later].rule;
            if !same_as.contains(&rule) {
                same_as.push(rule);
            }
        }
        Some((true, same_as))
    }

    /// Whether a later position of the same rule (a chain jumped to twice)
    /// matches packets this one decides: removing the rule removes it too,
    /// so the verdict diagrams, which count it, cannot answer.
    fn later_copy_overlaps(&mut self, position: usize) -> Option<bool> {
        let item = &self.items[position];
        let copies: Vec<usize> = self.positions[&item.rule].iter().copied().filter(|later| *later > position).collect();
        for copy in copies {
            for part in &self.items[copy].parts {
                for &(cell, reach) in &self.items[position].reach {
                    if part.covers(cell) && self.diagrams.apply(Op::Intersect, part.node, reach)? != EMPTY {
                        return Some(true);
                    }
                }
            }
        }
        Some(false)
    }

    /// Redundancy by walking the later positions, skipping the rule's own
    /// copies: what is left of the reach after each later rule that decides
    /// it the same way; a later rule with another verdict that meets it
    /// makes the rule count.
    fn scan(&mut self, position: usize) -> Option<(bool, Vec<usize>)> {
        let item = &self.items[position];
        let (rule, class) = (item.rule, item.class);
        let mut rest = item.reach.clone();
        let mut same_as = Vec::new();
        for later in position + 1..self.items.len() {
            if rest.is_empty() {
                break;
            }
            let item = &self.items[later];
            if item.rule == rule || !item.decides {
                continue;
            }
            self.diagrams.spend(rest.len() as u64)?;
            for part in &item.parts {
                let mut overlaps = false;
                for &(cell, piece) in &rest {
                    if part.covers(cell) && self.diagrams.apply(Op::Intersect, part.node, piece)? != EMPTY {
                        overlaps = true;
                        break;
                    }
                }
                if !overlaps {
                    continue;
                }
                if item.class != class {
                    return Some((false, Vec::new()));
                }
                if !item.limited {
                    if !same_as.contains(&item.rule) {
                        same_as.push(item.rule);
                    }
                    let mut kept = Vec::with_capacity(rest.len());
                    for &(cell, piece) in &rest {
                        let piece = if part.covers(cell) { self.diagrams.apply(Op::Difference, piece, part.node)? } else { piece };
                        if piece != EMPTY {
                            kept.push((cell, piece));
                        }
                    }
                    rest = kept;
                }
            }
        }
        if !rest.is_empty() && self.policy_class != class {
            return Some((false, Vec::new()));
        }
        Some((true, same_as))
    }

    /// Earlier deciding rules that take packets of the rule at `position`:
    /// for each of its boxes, the earlier boxes that meet it, in order,
    /// until together they cover it.
    pub fn covering(&mut self, position: usize) -> Option<Vec<usize>> {
        let mut covered_by: Vec<usize> = Vec::new();
        for index in 0..self.items[position].parts.len() {
            let (runs, node) = {
                let part = &self.items[position].parts[index];
                (part.runs.clone(), part.node)
            };
            // What is left of the box: runs of cells with one diagram each.
            let mut rest: Vec<(usize, usize, Node)> = runs.iter().map(|&(start, end)| (start, end, node)).collect();
            'earlier: for earlier in 0..position {
                let item = &self.items[earlier];
                if !item.decides || item.limited {
                    continue;
                }
                self.diagrams.spend(1)?;
                for other in 0..item.parts.len() {
                    let part = &self.items[earlier].parts[other];
                    let meets = runs.iter().any(|a| part.runs.iter().any(|b| a.0 < b.1 && b.0 < a.1));
                    if !meets || self.diagrams.apply(Op::Intersect, node, part.node)? == EMPTY {
                        continue;
                    }
                    let rule = self.items[earlier].rule;
                    if !covered_by.contains(&rule) {
                        covered_by.push(rule);
                    }
                    let part = &self.items[earlier].parts[other];
                    let (other_runs, other_node) = (part.runs.clone(), part.node);
                    let mut kept = Vec::with_capacity(rest.len());
                    for (start, end, piece) in rest {
                        // Split the run where the other box's runs begin and end.
                        let mut cuts = vec![start, end];
                        for &(a, b) in &other_runs {
                            cuts.extend([a, b].into_iter().filter(|cut| (start + 1..end).contains(cut)));
                        }
                        cuts.sort_unstable();
                        cuts.dedup();
                        for window in cuts.windows(2) {
                            let inside = other_runs.iter().any(|&(a, b)| a <= window[0] && window[0] < b);
                            let piece =
                                if inside { self.diagrams.apply(Op::Difference, piece, other_node)? } else { piece };
                            if piece != EMPTY {
                                kept.push((window[0], window[1], piece));
                            }
                        }
                    }
                    rest = kept;
                    if rest.is_empty() {
                        break 'earlier;
                    }
                }
            }
        }
        Some(covered_by)
    }
}
