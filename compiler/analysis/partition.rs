//! The order analysis of a whole flattened chain at once, by cutting the
//! packet space into regions until, in each, the rules that matter are
//! uniform (docs/ARCHITECTURE.md, "The analysis").
//!
//! A *region* is a box with one interval per field. Its *list* holds the
//! parts (boxes) of the chain's positions that meet it, in chain order,
//! each with the fields in which it does not include the region. What
//! makes a region cheap:
//!
//! - **Cutting short.** The first part that takes every packet of the
//!   region for sure (its position always decides and its box includes the
//!   region) is where every packet stops: the region's *decider*. Nothing
//!   after it is reached. Without the decider's rule, packets go on to the
//!   next such part of another rule, so the list ends there.
//! - **Skipping.** A position is *done* once it is known reached and, if it
//!   always decides, known to count (some packet it decides would get
//!   another verdict without it). A region whose positions up to its
//!   decider are all done can teach nothing more and is skipped.
//! - **Settling.** When every part left in the list includes the region,
//!   all its packets go the same way: the parts before the decider only
//!   limit or log (they would be the decider otherwise), so all are
//!   reached; the decider's packets, without its rule, go to the next part
//!   that always decides, past limited parts of their own verdicts.
//! - **Probing.** In a short list, one packet at each corner of each part
//!   not yet done is run down the list: most positions are done there.
//!
//! Otherwise the region is cut in one field, where the widest intervals of
//! the list's parts in that field begin and end, and each piece gets the
//! parts that meet it. Widest first: a rule that decides for a whole
//! address block cuts the list short in its piece before the rules for
//! hosts inside the block are cut apart. The field is the one whose pieces
//! hold the fewest parts in total (estimated on a sample of a long list):
//! rules that name a field exactly and apart (hosts, ports) are cut apart
//! cheaply, and rules that span a field are copied into every piece of
//! it, so that field waits until another cut has set them aside.
//!
//! A second pass (`deciders`) cuts the same way to find, for the positions
//! asked about, the earlier rules that decide their packets.
//!
//! Exact: every packet of the chain lies in exactly one region that is
//! settled, skipped or cut short, a settled region is uniform, a skipped
//! one cannot change any answer, and a probe is a real packet. Cost: the
//! total length of the lists of the regions visited; the budget bounds it.

use super::boxes::*;
use super::flatten::{Effective, Flat};
use crate::ir::*;

/// A region: one inclusive interval per field.
type Region = [(u128, u128); FIELDS];

/// Lists longer than this choose their split field on a sample of this
/// many parts.
const SAMPLE: usize = 512;

/// A region whose entries not yet done, times its list's length, is at
/// most this is probed at their corners before it is cut.
const PROBE: usize = 1 << 14;

/// How many bits narrower than the widest an interval may be and still
/// cut a region (see `bounds`).
const LEVEL: u32 = 4;

/// A region of the deciders pass with at most this many entries asked
/// about shrinks to the smallest box around them.
const HULL: usize = 8;

/// A part in a region's list, and the fields in which it does not include
/// the region (a bit per field).
#[derive(Clone, Copy)]
struct Entry {
    part: u32,
    partial: u16,
}

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

/// What the analysis found about one position.
pub struct Found {
    pub reachable: bool,
    /// For a reached deciding position: whether removing its rule changes
    /// no verdict, and the later rules that decide its packets anyway
    /// (none: the policy).
    pub redundancy: Option<(bool, Vec<usize>)>,
}

/// One flattened chain, ready for both passes.
pub struct Chain {
    positions: Vec<Position>,
    parts: Vec<Part>,
    intervals: Vec<(u128, u128)>,
    maxima: [u128; FIELDS],
    policy_class: u16,
    reached: Vec<bool>,
    counts: Vec<bool>,
    /// For each position that may be redundant, the later positions that
    /// decide its packets instead, as met.
    same_as: Vec<Vec<u32>>,
    /// For the deciders pass: the positions asked about, and the earlier
    /// positions that decide their packets, as met.
    wanted: Vec<bool>,
    deciders: Vec<Vec<u32>>,
    left: u64,
}

fn decides(target: &Target) -> bool {
    matches!(target, Target::Accept | Target::Drop | Target::Reject(_))
}

impl Chain {
    pub fn new(ruleset: &Ruleset, flat: &[Flat], policy: &Target, encoder: &Encoder) -> Chain {
        let mut targets: Vec<&Target> = vec![policy];
        let mut chain = Chain {
            positions: Vec::with_capacity(flat.len()),
            parts: Vec::with_capacity(flat.len()),
            intervals: Vec::new(),
            maxima: encoder.maxima,
            policy_class: 0,
            reached: vec![false; flat.len()],
            counts: vec![false; flat.len()],
            same_as: vec![Vec::new(); flat.len()],
            wanted: Vec::new(),
            deciders: Vec::new(),
            left: 0,
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
            chain.positions.push(Position {
                rule: entry.rule,
                decides: decides(&rule.target),
                limited: rule.matches.limit.is_some(),
                class,
            });
            match &entry.effective {
                Effective::Own => chain.push_part(position, &encoder.encode(&rule.matches)),
                Effective::Within(parts) => parts.iter().for_each(|part| chain.push_part(position, part)),
            }
        }
        chain
    }

    fn push_part(&mut self, position: usize, part: &PacketBox) {
        if part.is_empty() {
            return;
        }
        let start = self.intervals.len();
        let mut ends = [0u32; FIELDS];
        for (field, intervals) in part.0.iter().enumerate() {
            self.intervals.extend_from_slice(&intervals.0);
            ends[field] = (self.intervals.len() - start) as u32;
        }
        self.parts.push(Part { position: position as u32, start: start as u32, ends });
    }

    /// The IR rule at a position.
    pub fn rule(&self, position: usize) -> usize {
        self.positions[position].rule
    }

    /// How many positions the chain has.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    fn whole(&self) -> Region {
        std::array::from_fn(|field| (0, self.maxima[field]))
    }

    /// Reach and redundancy for every position; `None` when `budget`
    /// (parts looked at) runs out. `budget` is left with what was not
    /// spent.
    pub fn analyse(&mut self, budget: &mut u64) -> Option<Vec<Found>> {
        self.left = *budget;
        let whole = self.whole();
        let list: Vec<Entry> = (0..self.parts.len() as u32).map(|part| Entry { part, partial: self.partial(part, &whole) }).collect();
        let finished = self.visit(&whole, &list);
        *budget = self.left;
        finished?;
        let same_as = std::mem::take(&mut self.same_as);
        let found = same_as
            .into_iter()
            .enumerate()
            .map(|(position, same_as)| {
                let reachable = self.reached[position];
                let item = &self.positions[position];
                let redundancy = (reachable && item.decides).then(|| {
                    if item.limited || self.counts[position] {
                        (false, Vec::new())
                    } else {
                        (true, self.rules_of(same_as))
                    }
                });
                Found { reachable, redundancy }
            })
            .collect();
        Some(found)
    }

    /// For each position `wanted`, the earlier rules that decide its
    /// packets: for every packet of its match, the first earlier position
    /// that always decides and holds it. In order, each rule once, its own
    /// rule left out.
    pub fn deciders(&mut self, wanted: Vec<bool>, budget: &mut u64) -> Option<Vec<Vec<usize>>> {
        self.left = *budget;
        self.deciders = vec![Vec::new(); self.positions.len()];
        self.wanted = wanted;
        // Entries past the last one asked about decide nothing asked about.
        let whole = self.whole();
        let last = (0..self.parts.len()).rev().find(|part| self.wanted[self.parts[*part].position as usize]).map_or(0, |last| last + 1);
        let list: Vec<Entry> = (0..last as u32)
            .filter(|part| {
                let position = self.parts[*part as usize].position as usize;
                self.wanted[position] || self.always_decides(position)
            })
            .map(|part| Entry { part, partial: self.partial(part, &whole) })
            .collect();
        let finished = self.visit_deciders(&whole, &list);
        *budget = self.left;
        finished?;
        let deciders = std::mem::take(&mut self.deciders);
        Some(deciders.into_iter().map(|positions| self.rules_of(positions)).collect())
    }

    /// The rules at these positions, in order, each once.
    fn rules_of(&self, mut positions: Vec<u32>) -> Vec<usize> {
        positions.sort_unstable();
        positions.dedup();
        let mut seen = rustc_hash::FxHashSet::default();
        positions.into_iter().map(|position| self.positions[position as usize].rule).filter(|rule| seen.insert(*rule)).collect()
    }

    fn field(&self, part: u32, field: usize) -> &[(u128, u128)] {
        let part = &self.parts[part as usize];
        let start = part.start as usize;
        let from = if field == 0 { 0 } else { part.ends[field - 1] as usize };
        &self.intervals[start + from..start + part.ends[field] as usize]
    }

    fn position(&self, entry: Entry) -> usize {
        self.parts[entry.part as usize].position as usize
    }

    /// The fields in which the part does not include the region.
    fn partial(&self, part: u32, region: &Region) -> u16 {
        let mut partial = 0;
        for (field, &(low, high)) in region.iter().enumerate() {
            let intervals = self.field(part, field);
            let index = intervals.partition_point(|interval| interval.1 < low);
            if !intervals.get(index).is_some_and(|interval| interval.0 <= low && high <= interval.1) {
                partial |= 1 << field;
            }
        }
        partial
    }

    fn meets(&self, part: u32, region: &Region) -> bool {
        region.iter().enumerate().all(|(field, &(low, high))| {
            let intervals = self.field(part, field);
            let index = intervals.partition_point(|interval| interval.1 < low);
            intervals.get(index).is_some_and(|interval| interval.0 <= high)
        })
    }

    /// Whether the entry holds a packet of the region.
    fn holds(&self, entry: Entry, point: &Point) -> bool {
        (0..FIELDS).filter(|field| entry.partial & (1 << field) != 0).all(|field| contains(self.field(entry.part, field), point[field]))
    }

    /// The packet of the entry's part in the region with the lowest values
    /// (`high`: the highest).
    fn corner(&self, entry: Entry, region: &Region, high: bool) -> Point {
        std::array::from_fn(|field| {
            let (low_end, high_end) = region[field];
            if entry.partial & (1 << field) == 0 {
                return if high { high_end } else { low_end };
            }
            let mut meeting = self.field(entry.part, field).iter().filter(|interval| interval.0 <= high_end && low_end <= interval.1);
            let interval = if high { meeting.next_back() } else { meeting.next() };
            let interval = interval.expect("an entry meets its region");
            if high {
                interval.1.min(high_end)
            } else {
                interval.0.max(low_end)
            }
        })
    }

    /// The smallest region around the entries' packets in `region`.
    fn hull(&self, entries: &[Entry], region: &Region) -> Region {
        let mut hull = [(u128::MAX, 0); FIELDS];
        for entry in entries {
            let (low, high) = (self.corner(*entry, region, false), self.corner(*entry, region, true));
            for field in 0..FIELDS {
                hull[field] = (hull[field].0.min(low[field]), hull[field].1.max(high[field]));
            }
        }
        hull
    }

    fn always_decides(&self, position: usize) -> bool {
        let item = &self.positions[position];
        item.decides && !item.limited
    }

    fn done(&self, position: usize) -> bool {
        self.reached[position] && (!self.always_decides(position) || self.counts[position])
    }

    fn visit(&mut self, region: &Region, list: &[Entry]) -> Option<()> {
        self.left = self.left.checked_sub(list.len() as u64)?;
        // The decider, and where the list can be cut.
        let mut decider: Option<usize> = None;
        let mut end = list.len();
        let mut uniform = true;
        for (index, entry) in list.iter().enumerate() {
            uniform &= entry.partial == 0;
            let position = self.position(*entry);
            if entry.partial != 0 || !self.always_decides(position) {
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
                Some(first) if self.positions[self.position(list[first])].rule != self.positions[position].rule => {
                    end = index + 1;
                    break;
                }
                Some(_) => {}
            }
        }
        let list = &list[..end];
        let upto = decider.map_or(end, |decider| decider + 1);
        if self.all_done(&list[..upto]) {
            return Some(());
        }
        if uniform {
            self.settle(list, decider);
            return Some(());
        }
        // A short list is first probed at the corners of the entries not
        // yet done: most are settled there without cutting further.
        let undone: Vec<usize> = (0..upto).filter(|index| !self.done(self.position(list[*index]))).collect();
        if undone.len() * list.len() <= PROBE {
            for index in undone {
                for high in [false, true] {
                    if !self.done(self.position(list[index])) {
                        self.probe(list, &self.corner(list[index], region, high));
                    }
                }
            }
            if self.all_done(&list[..upto]) {
                return Some(());
            }
        }
        let field = self.split_field(region, list);
        self.split(region, list, list, field, Chain::visit)
    }

    fn all_done(&self, list: &[Entry]) -> bool {
        list.iter().all(|entry| self.done(self.position(*entry)))
    }

    /// What one packet of the region shows: the entries it meets are
    /// reached up to the first that always decides, and that one counts if
    /// without its rule the packet would be decided otherwise.
    fn probe(&mut self, list: &[Entry], point: &Point) {
        let mut index = 0;
        let decider = loop {
            let Some(entry) = list.get(index) else { return };
            index += 1;
            if !self.holds(*entry, point) {
                continue;
            }
            let position = self.position(*entry);
            self.reached[position] = true;
            if self.always_decides(position) {
                break position;
            }
        };
        if self.counts[decider] {
            return;
        }
        let Position { rule, class, .. } = self.positions[decider];
        for entry in &list[index..] {
            let item = &self.positions[self.position(*entry)];
            if item.rule == rule || !item.decides || !self.holds(*entry, point) {
                continue;
            }
            if item.class != class {
                self.counts[decider] = true;
                return;
            }
            if !item.limited {
                return;
            }
        }
        // The list ends at a part of another rule that includes the region
        // unless no such part exists: then the policy decides.
        if class != self.policy_class {
            self.counts[decider] = true;
        }
    }

    /// The deciders pass over one region: the list holds the entries that
    /// always decide and those of the positions asked about.
    fn visit_deciders(&mut self, region: &Region, list: &[Entry]) -> Option<()> {
        self.left = self.left.checked_sub(list.len() as u64)?;
        let Some(first) = list.iter().position(|entry| self.always_decides(self.position(*entry))) else { return Some(()) };
        let wanted: Vec<Entry> = list[first + 1..].iter().copied().filter(|entry| self.wanted[self.position(*entry)]).collect();
        if wanted.is_empty() {
            return Some(());
        }
        // With few positions asked about, only their packets matter: the
        // region shrinks to the smallest box around them.
        let hull = (wanted.len() <= HULL).then(|| self.hull(&wanted, region)).filter(|hull| hull != region);
        let (shrunk, inside): (Region, Vec<Entry>);
        let (region, list) = match hull {
            Some(hull) => {
                shrunk = hull;
                inside = list[first..]
                    .iter()
                    .filter(|entry| self.meets(entry.part, &shrunk))
                    .map(|entry| Entry { part: entry.part, partial: self.partial(entry.part, &shrunk) })
                    .collect();
                (&shrunk, &inside[..])
            }
            None => (region, &list[first..]),
        };
        // The first entry that always decides, and the first that also
        // includes the region: every packet of the region stops by then.
        let Some(first) = list.iter().position(|entry| self.always_decides(self.position(*entry))) else { return Some(()) };
        let full = list[first..].iter().position(|entry| entry.partial == 0 && self.always_decides(self.position(*entry))).map(|index| first + index);
        if full == Some(first) {
            let decider = self.position(list[first]);
            let rule = self.positions[decider].rule;
            for entry in &list[first + 1..] {
                let asked = self.position(*entry);
                if self.wanted[asked] && self.positions[asked].rule != rule && self.deciders[asked].last() != Some(&(decider as u32)) {
                    self.deciders[asked].push(decider as u32);
                }
            }
            return Some(());
        }
        // Past the entry that includes the region only the positions asked
        // about matter; the entries that decide up to it are cut apart.
        let end = full.map_or(list.len(), |full| full + 1);
        let kept: Vec<Entry> = list[first..end]
            .iter()
            .copied()
            .chain(list[end..].iter().copied().filter(|entry| self.wanted[self.position(*entry)]))
            .collect();
        let deciding: Vec<Entry> = list[first..end].iter().copied().filter(|entry| self.always_decides(self.position(*entry))).collect();
        let field = self.split_field(region, &deciding);
        self.split(region, &kept, &deciding, field, Chain::visit_deciders)
    }

    /// A region where every entry of the list includes it.
    fn settle(&mut self, list: &[Entry], decider: Option<usize>) {
        let upto = decider.map_or(list.len(), |decider| decider + 1);
        for entry in &list[..upto] {
            let position = self.position(*entry);
            self.reached[position] = true;
        }
        let Some(decider) = decider else { return };
        let position = self.position(list[decider]);
        if self.counts[position] {
            return;
        }
        let Position { rule, class, .. } = self.positions[position];
        let mut instead = None;
        for entry in &list[decider + 1..] {
            let later = self.position(*entry);
            let item = &self.positions[later];
            if item.rule == rule || !item.decides {
                continue;
            }
            if item.class != class {
                // Without the rule, a limited entry may take some of these
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

    /// The field to split: of those some entry of the list does not span,
    /// the one whose pieces would hold the fewest entries in total.
    fn split_field(&self, region: &Region, list: &[Entry]) -> usize {
        let candidates = list.iter().fold(0u16, |fields, entry| fields | entry.partial);
        let step = list.len().div_ceil(SAMPLE);
        let sample: Vec<Entry> = list.iter().step_by(step).copied().collect();
        let mut best: Option<(usize, usize)> = None;
        for field in (0..FIELDS).filter(|field| candidates & (1 << field) != 0) {
            let bounds = self.bounds(region, field, &sample);
            let cost: usize = sample.iter().map(|entry| self.pieces(entry.part, field, region, &bounds).map(|(from, to, _)| to - from).sum::<usize>()).sum();
            if best.is_none_or(|(least, _)| cost < least) {
                best = Some((cost, field));
            }
        }
        best.expect("a region that is not uniform has a field some entry does not span").1
    }

    /// Where the pieces of the region's interval in `field` begin: at its
    /// low end and at every boundary inside it of the widest of the
    /// entries' intervals that do not span it (those at most `LEVEL` bits
    /// narrower than the widest). Cutting the widest first lets a wide
    /// rule that decides (an address block denied) cut the list short
    /// before the narrow ones inside it are cut apart.
    fn bounds(&self, region: &Region, field: usize, entries: &[Entry]) -> Vec<u128> {
        let (low, high) = region[field];
        let bit = 1u16 << field;
        let width = |entry: &Entry| -> u32 {
            self.field(entry.part, field)
                .iter()
                .filter(|interval| interval.0 <= high && low <= interval.1)
                .map(|interval| 128 - (interval.1.min(high) - interval.0.max(low)).leading_zeros())
                .max()
                .unwrap_or(0)
        };
        let widest = entries.iter().filter(|entry| entry.partial & bit != 0).map(width).max().unwrap_or(0);
        let mut bounds = vec![low];
        for entry in entries.iter().filter(|entry| entry.partial & bit != 0 && width(entry) + LEVEL >= widest) {
            for &(from, to) in self.field(entry.part, field) {
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
    /// intervals in `field` meet, and the interval.
    fn pieces<'b>(&'b self, part: u32, field: usize, region: &Region, bounds: &'b [u128]) -> impl Iterator<Item = (usize, usize, (u128, u128))> + 'b {
        let (low, high) = region[field];
        self.field(part, field).iter().filter(move |interval| interval.0 <= high && low <= interval.1).map(move |&(from, to)| {
            let first = bounds.partition_point(|bound| *bound <= from.max(low)) - 1;
            let last = bounds.partition_point(|bound| *bound <= to.min(high)) - 1;
            (first, last + 1, (from, to))
        })
    }

    /// Splits the region in `field` where the entries of `cut_by` begin
    /// and end, and visits each piece with the entries of `list` that meet
    /// it.
    fn split(&mut self, region: &Region, list: &[Entry], cut_by: &[Entry], field: usize, visit: fn(&mut Chain, &Region, &[Entry]) -> Option<()>) -> Option<()> {
        let bounds = self.bounds(region, field, cut_by);
        let piece = |index: usize| (bounds[index], bounds.get(index + 1).map_or(region[field].1, |next| next - 1));
        let mut pieces: Vec<Vec<Entry>> = vec![Vec::new(); bounds.len()];
        // The work is counted before the pieces take memory.
        let work: usize = list.iter().map(|entry| self.pieces(entry.part, field, region, &bounds).map(|(from, to, _)| to - from).sum::<usize>()).sum();
        self.left = self.left.checked_sub(work as u64)?;
        let bit = 1u16 << field;
        for &entry in list {
            for (from, to, (low, high)) in self.pieces(entry.part, field, region, &bounds) {
                for index in from..to {
                    let (piece_low, piece_high) = piece(index);
                    let spans = low <= piece_low && piece_high <= high;
                    let partial = entry.partial & !bit | if spans { 0 } else { bit };
                    match pieces[index].last_mut() {
                        // Two intervals of one part in the piece: it has a gap there.
                        Some(last) if last.part == entry.part => last.partial |= bit,
                        _ => pieces[index].push(Entry { part: entry.part, partial }),
                    }
                }
            }
        }
        let mut piece_region = *region;
        for (index, entries) in pieces.into_iter().enumerate() {
            if entries.is_empty() {
                continue;
            }
            piece_region[field] = piece(index);
            visit(self, &piece_region, &entries)?;
        }
        Some(())
    }
}
