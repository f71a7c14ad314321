//! The order analysis of one flattened chain, rule by rule, over the rules
//! that meet it.
//!
//! Whether a packet reaches a position, and what decides it once the rule
//! is removed, depends only on the deciding rules whose boxes contain the
//! packet. So each position is analysed against its *neighbours*: the
//! deciding positions whose boxes meet its own, found with an interval
//! index (`index.rs`) on one field and checked on every field.
//!
//! Most answers are settled by one packet, checked against the neighbours:
//! a corner of the rule's box that no earlier deciding rule takes proves
//! the rule reached, and such a packet whose verdict without the rule
//! differs proves it counts. Only when no such packet is found (the rule
//! may be shadowed or redundant, or the packets tried were unlucky) are
//! the exact decision diagrams of `order.rs` run, on the neighbours alone,
//! clipped to the rule's box. Both ways are exact: a packet found is a
//! proof, and the diagrams decide the rest.

use super::boxes::*;
use super::flatten::Flat;
use super::index::{Index, Keys};
use super::order;
use crate::ir::*;
use rustc_hash::FxHashMap;

/// The fields the index may be on: the one with the most distinct low ends
/// among the deciding rules' boxes is taken.
const INDEX_CANDIDATES: [usize; 4] = [SOURCE, DESTINATION, DESTINATION_PORT, SOURCE_PORT];

/// How many later rules with another verdict are tried for a packet that
/// shows a rule counts, before the diagrams decide.
const TRIES: usize = 8;

/// A rule whose box meets more than this many boxes in the indexed fields
/// is *wide*: the later rules it meets are looked for among the positions
/// that follow it, this many at most, rather than among all it meets.
const WIDE: usize = 4096;

/// The most work (rules times values) a line through a corner may take.
const LINE: usize = 1 << 16;

/// The most base points of a box lines are drawn through.
const BASES: usize = 64;

pub struct Item {
    pub rule: usize,
    pub parts: Vec<PacketBox>,
    /// The same boxes in the arena.
    packed: Vec<Packed>,
    decides: bool,
    limited: bool,
    /// The verdict class (equal targets share one); `u16::MAX` if none.
    class: u16,
}

/// The intervals of every box, each box's fields side by side: the checks
/// that run most (do two boxes meet, does a box hold a packet) read one
/// place in memory per box.
#[derive(Default)]
struct Arena {
    intervals: Vec<(u128, u128)>,
}

/// A box in the arena: field `f`'s intervals are
/// `intervals[start + ends[f - 1]..start + ends[f]]` (`ends[-1]` = 0).
#[derive(Clone, Copy)]
struct Packed {
    start: u32,
    ends: [u32; FIELDS],
}

impl Arena {
    fn pack(&mut self, packet_box: &PacketBox) -> Packed {
        let start = self.intervals.len();
        let mut ends = [0u32; FIELDS];
        for (field, intervals) in packet_box.0.iter().enumerate() {
            self.intervals.extend_from_slice(&intervals.0);
            ends[field] = (self.intervals.len() - start) as u32;
        }
        Packed { start: start as u32, ends }
    }

    fn field(&self, packed: Packed, field: usize) -> &[(u128, u128)] {
        let start = packed.start as usize;
        let from = if field == 0 { 0 } else { packed.ends[field - 1] as usize };
        &self.intervals[start + from..start + packed.ends[field] as usize]
    }

    /// Whether the boxes share a packet (the address fields first: they
    /// tell most boxes apart).
    fn meets(&self, a: Packed, b: Packed) -> bool {
        const ORDER: [usize; FIELDS] =
            [SOURCE, DESTINATION, DESTINATION_PORT, PROTOCOL, STATE, SOURCE_PORT, ICMP_TYPE, IN_INTERFACE, OUT_INTERFACE, TCP_FLAGS, MAC];
        ORDER.iter().all(|field| meets(self.field(a, *field), self.field(b, *field)))
    }

    fn contains(&self, packed: Packed, point: &Point) -> bool {
        (0..FIELDS).all(|field| contains(self.field(packed, field), point[field]))
    }

    /// Whether every packet of `inner` is in `outer`.
    fn includes(&self, outer: Packed, inner: Packed) -> bool {
        (0..FIELDS).all(|field| includes(self.field(outer, field), self.field(inner, field)))
    }
}

/// Points of a box to draw lines through: every combination of its
/// intervals' low ends, when there are at most `BASES` of them; otherwise
/// its two corners.
fn bases(part: &PacketBox) -> Vec<Point> {
    let combinations = part.0.iter().try_fold(1usize, |count, field| count.checked_mul(field.0.len()).filter(|count| *count <= BASES));
    let Some(corners) = part.corners() else { return Vec::new() };
    if combinations.is_none() {
        return corners.to_vec();
    }
    let mut points = vec![corners[0]];
    for field in 0..FIELDS {
        let mut more = Vec::with_capacity(points.len() * part.0[field].0.len());
        for point in &points {
            for &(low, _) in &part.0[field].0 {
                let mut point = *point;
                point[field] = low;
                more.push(point);
            }
        }
        points = more;
    }
    points.push(corners[1]);
    points
}

/// What the earlier deciding rules do to one part (box) of a position's
/// match.
enum Cut {
    /// This packet of the part passes them all.
    Open(Point),
    /// Together they cover it, and the one at this position is the first
    /// that completes the cover.
    Covered(usize),
    /// Not known without the diagrams.
    Unknown,
}

/// What the analysis found about one position.
pub struct Found {
    pub reachable: bool,
    /// For a reached deciding position: whether removing its rule changes
    /// no verdict, and the later rules that decide its packets anyway
    /// (none: the policy).
    pub redundancy: Option<(bool, Vec<usize>)>,
}

pub struct Chain<'a> {
    ruleset: &'a Ruleset,
    encoder: &'a Encoder,
    policy: Target,
    policy_class: u16,
    pub items: Vec<Item>,
    arena: Arena,
    index: Index,
    /// The index's two fields.
    fields: [usize; 2],
    positions: FxHashMap<usize, Vec<usize>>,
    /// Work left (diagram operations and neighbours looked at).
    pub left: u64,
}

fn decides(target: &Target) -> bool {
    matches!(target, Target::Accept | Target::Drop | Target::Reject(_))
}

impl<'a> Chain<'a> {
    pub fn new(ruleset: &'a Ruleset, encoder: &'a Encoder, flat: &[Flat], policy: &Target, budget: u64) -> Chain<'a> {
        let mut targets: Vec<Target> = vec![policy.clone()];
        let mut items = Vec::with_capacity(flat.len());
        let mut positions: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
        let mut arena = Arena::default();
        for (position, entry) in flat.iter().enumerate() {
            let rule = &ruleset.rules[entry.rule];
            positions.entry(entry.rule).or_default().push(position);
            let decides = decides(&rule.target);
            let class = if decides {
                match targets.iter().position(|known| *known == rule.target) {
                    Some(class) => class as u16,
                    None => {
                        targets.push(rule.target.clone());
                        targets.len() as u16 - 1
                    }
                }
            } else {
                u16::MAX
            };
            let parts: Vec<PacketBox> = entry.effective.iter().filter(|part| !part.is_empty()).cloned().collect();
            items.push(Item {
                rule: entry.rule,
                packed: parts.iter().map(|part| arena.pack(part)).collect(),
                parts,
                decides,
                limited: rule.matches.limit.is_some(),
                class,
            });
        }
        // The fields with the most distinct low ends, most first (ties to
        // the earlier candidate).
        let mut fields: Vec<(usize, usize)> = INDEX_CANDIDATES
            .iter()
            .enumerate()
            .map(|(rank, field)| {
                let mut lows: Vec<u128> = items
                    .iter()
                    .filter(|item| item.decides)
                    .flat_map(|item| item.parts.iter().flat_map(|part| part.0[*field].0.iter().map(|interval| interval.0)))
                    .collect();
                lows.sort_unstable();
                lows.dedup();
                (usize::MAX - lows.len(), rank)
            })
            .collect();
        fields.sort_unstable();
        let fields = [INDEX_CANDIDATES[fields[0].1], INDEX_CANDIDATES[fields[1].1]];
        let index = Index::new(items.iter().enumerate().filter(|(_, item)| item.decides).flat_map(|(position, item)| {
            item.parts.iter().map(move |part| Keys { first: &part.0[fields[0]].0, second: &part.0[fields[1]].0, position })
        }));
        Chain { ruleset, encoder, policy: policy.clone(), policy_class: 0, items, arena, index, fields, positions, left: budget }
    }

    fn spend(&mut self, amount: u64) -> Option<()> {
        self.left = self.left.checked_sub(amount)?;
        Some(())
    }

    /// Positions of a rule in this chain, in order.
    pub fn positions_of(&self, rule: usize) -> &[usize] {
        self.positions.get(&rule).map_or(&[][..], Vec::as_slice)
    }

    /// The deciding positions whose boxes meet the position's in the two
    /// indexed fields (unordered, possibly repeated).
    fn candidates(&self, position: usize) -> Vec<usize> {
        let mut found = Vec::new();
        for part in &self.items[position].parts {
            self.index.meeting(&part.0[self.fields[0]].0, &part.0[self.fields[1]].0, &mut found);
        }
        found
    }

    /// The deciding positions other than `position` whose boxes meet its
    /// own, in order.
    fn neighbours(&mut self, position: usize) -> Option<Vec<usize>> {
        let candidates = self.candidates(position);
        self.neighbours_of(position, candidates)
    }

    fn neighbours_of(&mut self, position: usize, mut found: Vec<usize>) -> Option<Vec<usize>> {
        found.sort_unstable();
        found.dedup();
        self.left = self.left.checked_sub(found.len() as u64)?;
        found.retain(|other| {
            let ours = &self.items[position].packed;
            *other != position
                && self.items[*other].packed.iter().any(|theirs| ours.iter().any(|part| self.arena.meets(*part, *theirs)))
        });
        Some(found)
    }

    /// The deciding positions whose boxes hold `point`, in order.
    fn holding(&self, point: &Point) -> Vec<usize> {
        let mut found = Vec::new();
        let (first, second) = (point[self.fields[0]], point[self.fields[1]]);
        self.index.meeting(&[(first, first)], &[(second, second)], &mut found);
        found.sort_unstable();
        found.dedup();
        found.retain(|other| self.items[*other].packed.iter().any(|part| self.arena.contains(*part, point)));
        found
    }

    /// Whether a packet held by the rules `holding` reaches position
    /// `before`: no earlier rule that always decides takes it.
    fn reaches(&self, holding: &[usize], before: usize) -> bool {
        !holding.iter().take_while(|other| **other < before).any(|other| !self.items[*other].limited)
    }

    /// The verdict class of a packet held by the rules `holding` once the
    /// rule at `position` (every copy of it) is removed, from the later
    /// positions; `None` when a limited rule of another class may take it.
    fn verdict_without(&self, position: usize, holding: &[usize]) -> Option<u16> {
        let rule = self.items[position].rule;
        let mut limited = Vec::new();
        let mut verdict = self.policy_class;
        for other in holding.iter().filter(|other| **other > position) {
            let item = &self.items[*other];
            if item.rule == rule {
                continue;
            }
            if item.limited {
                limited.push(item.class);
            } else {
                verdict = item.class;
                break;
            }
        }
        limited.iter().all(|class| *class == verdict).then_some(verdict)
    }

    /// Whether `point` shows that the deciding rule at `position` counts: it
    /// reaches the rule, and without the rule its verdict would differ.
    fn counts(&self, position: usize, point: &Point) -> bool {
        let holding = self.holding(point);
        self.reaches(&holding, position) && self.verdict_without(position, &holding) != Some(self.items[position].class)
    }

    /// What the earlier rules do to each part of the position's match, as
    /// far as single packets and boxes tell.
    fn cuts(&self, position: usize) -> Vec<Cut> {
        let item = &self.items[position];
        item.parts.iter().zip(&item.packed).map(|(part, packed)| self.cut(position, part, *packed)).collect()
    }

    fn cut(&self, position: usize, part: &PacketBox, packed: Packed) -> Cut {
        let Some(corners) = part.corners() else { return Cut::Unknown };
        let holding = corners.map(|corner| self.holding(&corner));
        if let Some(index) = holding.iter().position(|holding| self.reaches(holding, position)) {
            return Cut::Open(corners[index]);
        }
        // The first earlier rule that takes the whole part (it holds the
        // corners); the part is covered there, and not before if a corner
        // passes the rules before it.
        let first = holding[0].iter().take_while(|other| **other < position).find(|other| {
            let item = &self.items[**other];
            !item.limited && item.packed.iter().any(|theirs| self.arena.includes(*theirs, packed))
        });
        match first {
            Some(&cut) if holding.iter().any(|holding| self.reaches(holding, cut)) => Cut::Covered(cut),
            _ => Cut::Unknown,
        }
    }

    /// Settles unknown cuts where the earlier rules that cover a part differ
    /// from it in one field only: they include the part in every other
    /// field, and the union of their intervals in that field grows, in
    /// order, until it includes the part's. The rule that completes it is
    /// the cut if a packet of the part outside the union so far passes
    /// every rule before it.
    fn one_field_cuts(&self, position: usize, near: &[usize], cuts: &mut [Cut]) {
        let earlier = &near[..near.partition_point(|other| *other < position)];
        let item = &self.items[position];
        for (index, cut) in cuts.iter_mut().enumerate() {
            if !matches!(cut, Cut::Unknown) {
                continue;
            }
            let (part, packed) = (&item.parts[index], item.packed[index]);
            let Some([low, _]) = part.corners() else { continue };
            'fields: for field in 0..FIELDS {
                let mut union = Intervals::default();
                for other in earlier {
                    let theirs = &self.items[*other];
                    if theirs.limited {
                        continue;
                    }
                    for their_part in &theirs.packed {
                        let own = self.arena.field(*their_part, field);
                        let fits = (0..FIELDS).all(|other_field| {
                            other_field == field || includes(self.arena.field(*their_part, other_field), self.arena.field(packed, other_field))
                        });
                        if !fits || !meets(own, self.arena.field(packed, field)) {
                            continue;
                        }
                        let grown = Intervals::from_unsorted(union.0.iter().chain(own).copied().collect());
                        if includes(&grown.0, &part.0[field].0) {
                            let gap = part.0[field].minus(&union, u128::MAX);
                            let Some(value) = gap.first() else { continue 'fields };
                            let mut point = low;
                            point[field] = value;
                            if self.reaches(&self.holding(&point), *other) {
                                *cut = Cut::Covered(*other);
                                break 'fields;
                            }
                            continue 'fields;
                        }
                        union = grown;
                    }
                }
            }
        }
    }

    /// Whether the position is reached, and for a reached deciding one
    /// whether it is redundant. `None` when the budget runs out.
    pub fn analyse(&mut self, position: usize) -> Option<Found> {
        let mut cuts = self.cuts(position);
        if cuts.iter().all(|cut| !matches!(cut, Cut::Open(_))) && cuts.iter().any(|cut| matches!(cut, Cut::Unknown)) {
            let near = self.neighbours(position)?;
            self.one_field_cuts(position, &near, &mut cuts);
            if cuts.iter().any(|cut| matches!(cut, Cut::Unknown)) {
                return self.exact(position, &near, true);
            }
        }
        let item = &self.items[position];
        if cuts.iter().all(|cut| matches!(cut, Cut::Covered(_))) {
            return Some(Found { reachable: false, redundancy: None });
        }
        let witnesses: Vec<Point> = cuts.iter().filter_map(|cut| if let Cut::Open(point) = cut { Some(*point) } else { None }).collect();
        if !item.decides {
            return Some(Found { reachable: true, redundancy: None });
        }
        if item.limited {
            return Some(Found { reachable: true, redundancy: Some((false, Vec::new())) });
        }
        let not_redundant = Some(Found { reachable: true, redundancy: Some((false, Vec::new())) });
        if witnesses.iter().any(|point| self.counts(position, point)) {
            return not_redundant;
        }
        // Packets the rule takes from a later rule of another verdict: the
        // first few such rules, from the neighbours, or for a rule that meets
        // very many, from the positions that follow.
        let candidates = self.candidates(position);
        let near = if candidates.len() <= WIDE { Some(self.neighbours_of(position, candidates)?) } else { None };
        let later: Vec<usize> = match &near {
            Some(near) => near.iter().copied().filter(|other| *other > position).collect(),
            None => (position + 1..self.items.len()).collect(),
        };
        let item = &self.items[position];
        let (rule, class) = (item.rule, item.class);
        let mut tries = 0;
        for (scanned, other) in later.into_iter().enumerate() {
            if tries >= TRIES || near.is_none() && scanned >= WIDE {
                break;
            }
            let theirs = &self.items[other];
            if !theirs.decides || theirs.rule == rule || theirs.class == class {
                continue;
            }
            let mut met = false;
            for ours in &item.parts {
                for part in &theirs.parts {
                    let Some(common) = ours.intersect(part) else { continue };
                    met = true;
                    if common.corners().is_some_and(|corners| corners.iter().any(|point| self.counts(position, point))) {
                        return not_redundant;
                    }
                }
            }
            tries += usize::from(met);
        }
        let near = match near {
            Some(near) => near,
            None => self.neighbours(position)?,
        };
        if self.line_witness(position, &near) {
            return not_redundant;
        }
        self.exact(position, &near, true)
    }

    /// Whether a packet on a line through a base point of the position's
    /// match (one field varies; see `bases`) shows that the rule counts. Along the line, the
    /// rules that hold the rest of the corner change only where one of
    /// their intervals in that field begins or ends, so trying the values
    /// there (and where the match's own intervals begin) tries every
    /// packet of the line that matters.
    fn line_witness(&self, position: usize, near: &[usize]) -> bool {
        let item = &self.items[position];
        for part in &item.parts {
            for corner in bases(part) {
                for field in 0..FIELDS {
                    let mut holders = Vec::new();
                    let mut values: Vec<u128> = part.0[field].0.iter().map(|interval| interval.0).collect();
                    for other in near {
                        for their_part in &self.items[*other].packed {
                            let holds_rest = (0..FIELDS)
                                .all(|other_field| other_field == field || contains(self.arena.field(*their_part, other_field), corner[other_field]));
                            if holds_rest {
                                holders.push(*other);
                                for &(low, high) in self.arena.field(*their_part, field) {
                                    values.push(low);
                                    values.extend(high.checked_add(1));
                                }
                            }
                        }
                    }
                    holders.dedup();
                    if holders.len().saturating_mul(values.len()) > LINE {
                        continue;
                    }
                    values.sort_unstable();
                    values.dedup();
                    for value in values {
                        if !part.0[field].contains(value) {
                            continue;
                        }
                        let mut point = corner;
                        point[field] = value;
                        let holding: Vec<usize> = holders
                            .iter()
                            .copied()
                            .filter(|other| self.items[*other].packed.iter().any(|theirs| self.arena.contains(*theirs, &point)))
                            .collect();
                        if self.reaches(&holding, position) && self.verdict_without(position, &holding) != Some(item.class) {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }

    /// The earlier deciding rules that take packets of the rule at
    /// `position`: for each part of its match, those whose boxes meet it, in
    /// order, until together they cover it.
    pub fn covering(&mut self, position: usize) -> Option<Vec<usize>> {
        let mut cuts = self.cuts(position);
        if cuts.iter().any(|cut| matches!(cut, Cut::Unknown)) {
            let near = self.neighbours(position)?;
            self.one_field_cuts(position, &near, &mut cuts);
            if cuts.iter().any(|cut| matches!(cut, Cut::Unknown)) {
                return self.exact_covering(position, &near);
            }
        }
        // The earlier rules to look at: when every part is covered early in
        // the chain, the positions up to there; otherwise the neighbours.
        let last = cuts.iter().map(|cut| if let Cut::Covered(cut) = cut { *cut } else { usize::MAX }).max().unwrap_or(0);
        let earlier: Vec<usize> = if last < WIDE {
            self.spend(last as u64 + 1)?;
            (0..=last).filter(|other| self.items[*other].decides).collect()
        } else {
            let near = self.neighbours(position)?;
            let split = near.partition_point(|other| *other < position);
            near[..split].to_vec()
        };
        // Every earlier rule that meets a part counts, up to the one that
        // covers it.
        let mut covered_by = Vec::new();
        for (part, cut) in self.items[position].packed.iter().zip(cuts) {
            let upto = match cut {
                Cut::Covered(cut) => earlier.partition_point(|other| *other <= cut),
                _ => earlier.len(),
            };
            for other in &earlier[..upto] {
                let item = &self.items[*other];
                if !item.limited && item.packed.iter().any(|theirs| self.arena.meets(*theirs, *part)) && !covered_by.contains(&item.rule) {
                    covered_by.push(item.rule);
                }
            }
        }
        Some(covered_by)
    }

    /// The position and its neighbours, clipped to its match, as a chain of
    /// their own; and the position's place in it. A neighbour whose clipped
    /// match equals that of an earlier one on the same side of the position
    /// (one that always decides, not a copy of the position's rule) is left
    /// out: the earlier one takes all its packets first. For `covering`,
    /// which lists every earlier rule that meets the position, the earlier
    /// neighbours are all kept, and the later ones do not matter.
    fn clipped(&self, position: usize, near: &[usize], covering: bool) -> (Vec<Flat>, usize) {
        let ours = &self.items[position].parts;
        let rule = self.items[position].rule;
        let mut flat = Vec::with_capacity(near.len() + 1);
        let split = near.partition_point(|other| *other < position);
        let mut seen: rustc_hash::FxHashSet<Vec<PacketBox>> = rustc_hash::FxHashSet::default();
        let mut target = 0;
        for (index, other) in near.iter().enumerate() {
            if index == split {
                target = flat.len();
                flat.push(Flat { rule, effective: ours.clone() });
                seen.clear();
                if covering {
                    break;
                }
            }
            let item = &self.items[*other];
            if !covering && index < split && item.limited {
                continue; // it takes no packet for sure from the position
            }
            let effective: Vec<PacketBox> =
                item.parts.iter().flat_map(|theirs| ours.iter().filter_map(|part| part.intersect(theirs))).collect();
            if !covering || index > split {
                if item.rule != rule && seen.contains(&effective) {
                    continue;
                }
                if item.rule != rule && !item.limited {
                    seen.insert(effective.clone());
                }
            }
            flat.push(Flat { rule: item.rule, effective });
        }
        if split == near.len() {
            target = flat.len();
            flat.push(Flat { rule, effective: ours.clone() });
        }
        (flat, target)
    }

    /// The exact answer from decision diagrams over the neighbours.
    fn exact(&mut self, position: usize, near: &[usize], redundancy: bool) -> Option<Found> {
        let (flat, target) = self.clipped(position, near, false);
        let mut chain = order::Chain::forward(self.ruleset, self.encoder, &flat, &self.policy, self.left, target)?;
        let reachable = !chain.items[target].reach.is_empty();
        let mut found = Found { reachable, redundancy: None };
        if reachable && redundancy && chain.items[target].decides {
            let result = chain.redundancy(target)?;
            found.redundancy = Some((result.redundant, result.same_as));
        }
        self.left = chain.left();
        Some(found)
    }

    fn exact_covering(&mut self, position: usize, near: &[usize]) -> Option<Vec<usize>> {
        let (flat, target) = self.clipped(position, near, true);
        let mut chain = order::Chain::forward(self.ruleset, self.encoder, &flat, &self.policy, self.left, target)?;
        let covered_by = chain.covering(target)?;
        self.left = chain.left();
        Some(covered_by)
    }
}

