//! The order analysis of a whole flattened chain at once, by cutting the
//! packet space into regions until, in each, the rules that matter are
//! uniform.
//!
//! A *region* is a box with one interval per field. Its *list* holds the
//! parts (boxes) of the chain's positions that meet it, in chain order.
//! Three things make a region cheap:
//!
//! - **Truncation.** The first part that takes every packet of the region
//!   for sure (its position always decides and its box includes the
//!   region) is where every packet stops; call it the region's *decider*.
//!   Nothing after it is reached. Without the decider's rule, packets go on
//!   to the next such part of another rule, so the list is cut there.
//! - **Pruning.** A position is *done* once it is known reached and, if it
//!   always decides, known to count (some packet it decides would get
//!   another verdict without it). A region whose positions up to its
//!   decider are all done can teach nothing more and is skipped. Most
//!   positions are done after the first region that holds them, so their
//!   other regions cost one look each.
//! - **Settling.** When every part left in the list includes the region,
//!   all its packets go the same way: the parts before the decider only
//!   limit or log (they would be the decider otherwise), so all are
//!   reached; the decider's packets, without its rule, go to the next part
//!   that always decides, past limited parts of their own verdicts.
//!
//! Otherwise the region is split in one field at every boundary the list's
//! parts have inside it, into elementary intervals, and each piece gets the
//! parts that meet it. A field is split at most once on any path from the
//! whole space (inside a piece no part has a boundary in that field), so a
//! region is at most `FIELDS` splits deep. The field split is the one whose
//! pieces hold the fewest parts in total (estimated on a sample of a long
//! list): rules that name a field exactly and disjointly (hosts, ports) are
//! split apart cheaply, and rules that span a field (a rule with no address)
//! are copied into every piece of it, so that field waits until they are
//! cut away by another.
//!
//! Exact: every packet of the chain lies in exactly one settled or pruned
//! region, a settled region is uniform, and a pruned one cannot change any
//! answer. Cost: the total length of the lists of the regions visited; the
//! budget bounds it.

use super::boxes::*;
use super::flatten::Flat;
use super::local::Found;
use crate::ir::*;

/// A region: one inclusive interval per field.
type Region = [(u128, u128); FIELDS];

/// Lists longer than this choose their split field on a sample of this
/// many parts.
const SAMPLE: usize = 512;

struct Position {
    rule: usize,
    decides: bool,
    limited: bool,
    class: u16,
}

/// One part of a position's match, its intervals in the arena:
/// field `f`'s are `intervals[start + ends[f - 1]..start + ends[f]]`.
struct Part {
    position: u32,
    start: u32,
    ends: [u32; FIELDS],
}

struct Analysis {
    positions: Vec<Position>,
    parts: Vec<Part>,
    intervals: Vec<(u128, u128)>,
    policy_class: u16,
    reached: Vec<bool>,
    counts: Vec<bool>,
    /// For each position that may be redundant, the later positions that
    /// decide its packets instead, as met.
    same_as: Vec<Vec<u32>>,
    left: u64,
}

fn decides(target: &Target) -> bool {
    matches!(target, Target::Accept | Target::Drop | Target::Reject(_))
}

/// Reach and redundancy for every position of a flattened chain; `None`
/// when `budget` (parts looked at) runs out. `budget` is left with what
/// was not spent.
pub fn analyse(ruleset: &Ruleset, flat: &[Flat], policy: &Target, maxima: &[u128; FIELDS], budget: &mut u64) -> Option<Vec<Found>> {
    let mut targets: Vec<&Target> = vec![policy];
    let mut analysis = Analysis {
        positions: Vec::with_capacity(flat.len()),
        parts: Vec::with_capacity(flat.len()),
        intervals: Vec::new(),
        policy_class: 0,
        reached: vec![false; flat.len()],
        counts: vec![false; flat.len()],
        same_as: vec![Vec::new(); flat.len()],
        left: *budget,
    };
    for (position, entry) in flat.iter().enumerate() {
        let rule = &ruleset.rules[entry.rule];
        let class = match targets.iter().position(|known| **known == rule.target) {
            Some(class) => class as u16,
            None => {
                targets.push(&rule.target);
                targets.len() as u16 - 1
            }
        };
        analysis.positions.push(Position {
            rule: entry.rule,
            decides: decides(&rule.target),
            limited: rule.matches.limit.is_some(),
            class,
        });
        for part in entry.effective.iter().filter(|part| !part.is_empty()) {
            let start = analysis.intervals.len();
            let mut ends = [0u32; FIELDS];
            for (field, intervals) in part.0.iter().enumerate() {
                analysis.intervals.extend_from_slice(&intervals.0);
                ends[field] = (analysis.intervals.len() - start) as u32;
            }
            analysis.parts.push(Part { position: position as u32, start: start as u32, ends });
        }
    }
    let whole: Region = std::array::from_fn(|field| (0, maxima[field]));
    let list: Vec<u32> = (0..analysis.parts.len() as u32).collect();
    let finished = analysis.visit(&whole, &list);
    *budget = analysis.left;
    finished?;
    let found = (0..flat.len())
        .map(|position| {
            let reachable = analysis.reached[position];
            let item = &analysis.positions[position];
            let redundancy = (reachable && item.decides).then(|| {
                if item.limited || analysis.counts[position] {
                    return (false, Vec::new());
                }
                let mut later = std::mem::take(&mut analysis.same_as[position]);
                later.sort_unstable();
                let mut rules: Vec<usize> = Vec::new();
                for later in later {
                    let rule = analysis.positions[later as usize].rule;
                    if !rules.contains(&rule) {
                        rules.push(rule);
                    }
                }
                (true, rules)
            });
            Found { reachable, redundancy }
        })
        .collect();
    Some(found)
}

impl Analysis {
    fn field(&self, part: &Part, field: usize) -> &[(u128, u128)] {
        let start = part.start as usize;
        let from = if field == 0 { 0 } else { part.ends[field - 1] as usize };
        &self.intervals[start + from..start + part.ends[field] as usize]
    }

    /// Whether the part's intervals in `field` include the region's.
    fn spans(&self, part: &Part, field: usize, region: &Region) -> bool {
        let (low, high) = region[field];
        let intervals = self.field(part, field);
        let index = intervals.partition_point(|interval| interval.1 < low);
        intervals.get(index).is_some_and(|interval| interval.0 <= low && high <= interval.1)
    }

    fn includes(&self, part: &Part, region: &Region) -> bool {
        (0..FIELDS).all(|field| self.spans(part, field, region))
    }

    fn always_decides(&self, position: usize) -> bool {
        let item = &self.positions[position];
        item.decides && !item.limited
    }

    fn done(&self, position: usize) -> bool {
        self.reached[position] && (!self.always_decides(position) || self.counts[position])
    }

    fn visit(&mut self, region: &Region, list: &[u32]) -> Option<()> {
        self.left = self.left.checked_sub(list.len() as u64)?;
        // The decider, and where the list can be cut.
        let mut decider: Option<usize> = None;
        let mut end = list.len();
        let mut uniform = true;
        for (index, &part) in list.iter().enumerate() {
            let part = &self.parts[part as usize];
            let position = part.position as usize;
            let includes = self.includes(part, region);
            uniform &= includes;
            if !includes || !self.always_decides(position) {
                continue;
            }
            match decider {
                None => {
                    decider = Some(index);
                    if self.counts[position] {
                        end = index + 1;
                        break;
                    }
                }
                Some(first) if self.positions[self.parts[list[first] as usize].position as usize].rule != self.positions[position].rule => {
                    end = index + 1;
                    break;
                }
                Some(_) => {}
            }
        }
        let list = &list[..end];
        let upto = decider.map_or(end, |decider| decider + 1);
        if list[..upto].iter().all(|part| self.done(self.parts[*part as usize].position as usize)) {
            return Some(());
        }
        if uniform {
            self.settle(list, decider);
            return Some(());
        }
        let field = self.split_field(region, list);
        self.split(region, list, field)
    }

    /// A region where every part of the list includes it.
    fn settle(&mut self, list: &[u32], decider: Option<usize>) {
        let upto = decider.map_or(list.len(), |decider| decider + 1);
        for part in &list[..upto] {
            self.reached[self.parts[*part as usize].position as usize] = true;
        }
        let Some(decider) = decider else { return };
        let position = self.parts[list[decider] as usize].position as usize;
        if self.counts[position] {
            return;
        }
        let Position { rule, class, .. } = self.positions[position];
        let mut instead = None;
        for part in &list[decider + 1..] {
            let later = self.parts[*part as usize].position as usize;
            let item = &self.positions[later];
            if item.rule == rule || !item.decides {
                continue;
            }
            if item.class != class {
                // Without the rule, a limited part may take some of these
                // packets with another verdict, or an unlimited one takes
                // them all.
                self.counts[position] = true;
                return;
            }
            if !item.limited {
                instead = Some(later);
                break;
            }
        }
        match instead {
            Some(later) => {
                let same_as = &mut self.same_as[position];
                if same_as.last() != Some(&(later as u32)) {
                    same_as.push(later as u32);
                }
            }
            None if class != self.policy_class => self.counts[position] = true,
            None => {}
        }
    }

    /// The field to split: of those some part of the list does not span,
    /// the one whose pieces would hold the fewest parts in total.
    fn split_field(&self, region: &Region, list: &[u32]) -> usize {
        let step = list.len().div_ceil(SAMPLE);
        let sample: Vec<&Part> = list.iter().step_by(step).map(|part| &self.parts[*part as usize]).collect();
        let mut best: Option<(usize, usize)> = None;
        for field in 0..FIELDS {
            if list.iter().all(|part| self.spans(&self.parts[*part as usize], field, region)) {
                continue;
            }
            let bounds = self.bounds(region, field, sample.iter().copied());
            let cost: usize = sample.iter().map(|part| self.pieces(part, field, region, &bounds).map(|(from, to)| to - from).sum::<usize>()).sum();
            if best.is_none_or(|(least, _)| cost < least) {
                best = Some((cost, field));
            }
        }
        best.expect("a region that is not uniform has a field some part does not span").1
    }

    /// Where the pieces of the region's interval in `field` begin: at its
    /// low end and at every boundary of the parts' intervals inside it.
    fn bounds<'a>(&self, region: &Region, field: usize, parts: impl Iterator<Item = &'a Part>) -> Vec<u128> {
        let (low, high) = region[field];
        let mut bounds = vec![low];
        for part in parts {
            for &(from, to) in self.field(part, field) {
                if from > low && from <= high {
                    bounds.push(from);
                }
                if to >= low && to < high {
                    bounds.push(to + 1);
                }
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        bounds
    }

    /// The runs of pieces (`from..to`, indices into `bounds`) that a part's
    /// intervals in `field` cover.
    fn pieces<'b>(&'b self, part: &'b Part, field: usize, region: &Region, bounds: &'b [u128]) -> impl Iterator<Item = (usize, usize)> + 'b {
        let (low, high) = region[field];
        self.field(part, field).iter().filter(move |interval| interval.0 <= high && low <= interval.1).map(move |&(from, to)| {
            let first = bounds.partition_point(|bound| *bound <= from.max(low)) - 1;
            let last = bounds.partition_point(|bound| *bound <= to.min(high)) - 1;
            (first, last + 1)
        })
    }

    fn split(&mut self, region: &Region, list: &[u32], field: usize) -> Option<()> {
        let bounds = self.bounds(region, field, list.iter().map(|part| &self.parts[*part as usize]));
        let mut pieces: Vec<Vec<u32>> = vec![Vec::new(); bounds.len()];
        let mut work = 0u64;
        for &index in list {
            for (from, to) in self.pieces(&self.parts[index as usize], field, region, &bounds) {
                work += (to - from) as u64;
                for piece in &mut pieces[from..to] {
                    piece.push(index);
                }
            }
        }
        self.left = self.left.checked_sub(work)?;
        let mut piece_region = *region;
        for (index, parts) in pieces.into_iter().enumerate() {
            if parts.is_empty() {
                continue;
            }
            let high = bounds.get(index + 1).map_or(region[field].1, |next| next - 1);
            piece_region[field] = (bounds[index], high);
            self.visit(&piece_region, &parts)?;
        }
        Some(())
    }
}
