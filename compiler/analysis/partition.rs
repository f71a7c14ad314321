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
//! - **Probing.** In a tiny list, one packet at each corner of each part
//!   not yet done is run down the list: if that leaves every position
//!   done, the region is not cut.
//!
//! Otherwise the region is cut in one field, where the widest intervals of
//! the list's parts in that field begin and end, and each piece gets the
//! parts that meet it. Widest first: a rule that decides for a whole
//! address block cuts the list short in its piece before the rules for
//! hosts inside the block are cut apart. When the first part that always
//! decides falls short of the region in one field only, that field is
//! cut: in its pieces the part includes the region and the lists end
//! there (`allow state established` is cut off once, at the top, not in
//! every region below). Otherwise the field is the one whose pieces
//! hold the fewest parts in total (estimated on a sample of a long list):
//! rules that name a field exactly and apart (hosts, ports) are cut apart
//! cheaply, and rules that span a field are copied into every piece of
//! it, so that field waits until another cut has set them aside.
//!
//! A second pass (`deciders`) cuts the same way to find, for the positions
//! asked about, the earlier rules that decide their packets.
//!
//! The chain is kept in *codes*, 32 bits per field: a field's value
//! itself when it fits (everything but IPv6 addresses), otherwise the
//! rank of the elementary interval holding it, between two ends of the
//! chain's intervals in that field. Every rule treats the values of one
//! elementary interval alike, so the ranks lose nothing. Each field is a
//! column, a cell per part: a cut in one field reads one 8-byte cell per
//! entry, a quarter of what one 128-bit interval took.
//!
//! The lists live on one stack: a cut sorts its list's entries into its
//! pieces' lists above it (counted first, then placed), visits them, and
//! takes them off again, so cutting allocates nothing once the stack has
//! grown to the deepest path.
//!
//! Exact: every packet of the chain lies in exactly one region that is
//! settled, skipped or cut short, a settled region is uniform, a skipped
//! one cannot change any answer, and a probe is a real packet. Cost: the
//! total length of the lists of the regions visited; the budget bounds it.

use super::boxes::{append_box, Encoder, FIELDS};
use super::flatten::{Effective, Flat};
use crate::ir::*;
use std::ops::Range;

/// Packets as a region of field values: one inclusive interval per field.
pub type Packets = [(u128, u128); FIELDS];

/// A region in codes (see the module's documentation): one inclusive
/// interval per field.
type Region = [(u32, u32); FIELDS];

/// One packet, in codes.
type Point = [u32; FIELDS];

/// A cell of a field's column whose part has several intervals in that
/// field: `(MANY, index)`, the intervals being `spread[many[index]]`. A
/// real interval never starts above its end.
const MANY: u32 = u32::MAX;

/// Lists longer than this choose their split field on a sample of this
/// many parts.
const SAMPLE: usize = 512;

/// A region whose entries not yet done, times its list's length, is at
/// most this is probed at their corners before it is cut. Probing settles
/// few regions that a cut would not settle soon after: only tiny ones are
/// worth it (on the generated policies 64 spends 1.5-2.5% fewer
/// instructions in all than 16,384, and 0 more).
const PROBE: usize = 64;

/// How many bits narrower than the widest an interval may be and still
/// cut a region (see `bounds`).
const LEVEL: u32 = 4;

/// A region of the deciders pass with at most this many entries asked
/// about shrinks to the smallest box around them.
const HULL: usize = 8;

/// Pieces with shorter lists are visited without looking for a twin
/// (see `split`).
const TWIN: usize = 8;

/// How many entries ahead of its use a part's intervals are asked for.
const PREFETCH: usize = 8;

/// The pieces of a cut that one interval of a list's entry meets
/// (`from..to`), and whether the interval spans the first and the last.
#[derive(Clone, Copy)]
struct Run {
    /// The entry's place on the stack.
    index: u32,
    from: u32,
    to: u32,
    spans_first: bool,
    spans_last: bool,
}

/// A part in a region's list, and the fields in which it does not include
/// the region (a bit per field).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
struct Entry {
    part: u32,
    partial: u16,
}

struct Position {
    rule: usize,
    decides: bool,
    limited: bool,
    class: u16,
    accepts: bool,
}

/// How one field's values become codes.
enum Coding {
    /// The value is its own code.
    Values,
    /// The code is the rank of the elementary interval holding the value;
    /// these are where they start, from 0, in order.
    Ranks(Vec<u128>),
}

impl Coding {
    fn code(&self, value: u128) -> u32 {
        match self {
            Coding::Values => value as u32,
            Coding::Ranks(starts) => (starts.partition_point(|start| *start <= value) - 1) as u32,
        }
    }
}

/// One part of a position's match while the chain is being built: where
/// its intervals start in the arena, and where each field's end (none
/// for a field the part leaves whole).
struct Encoded {
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
    /// The position each part belongs to.
    owners: Vec<u32>,
    /// Each field's column: a part's one interval in the field, or `MANY`.
    columns: [Vec<(u32, u32)>; FIELDS],
    /// Where the intervals of each `MANY` cell are in `spread`.
    many: Vec<(u32, u32)>,
    spread: Vec<(u32, u32)>,
    codings: [Coding; FIELDS],
    /// The whole packet space: each field's whole range, as values and
    /// as codes.
    maxima: [u128; FIELDS],
    whole: Region,
    policy_class: u16,
    policy_accepts: bool,
    /// For `accepts_some`: a packet found accepted.
    found: bool,
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
    /// The lists of the regions on the path being visited, a piece's above
    /// its parent's; a list is a range of it.
    stack: Vec<Entry>,
    /// The bounds of the cuts on that path, likewise.
    cuts: Vec<u32>,
    /// Where each piece of those cuts ends in `stack`.
    ends: Vec<u32>,
    /// Bounds tried when choosing a cut's field.
    scratch: Vec<u32>,
    /// The runs of the cut being placed.
    runs: Vec<Run>,
}

/// How many positions ahead an IR rule is asked for (see `Chain::new`).
const RULES_AHEAD: usize = 8;

/// Asks the cache for the lines of a rule the analysis reads.
#[inline(always)]
fn prefetch_rule(rule: &Rule) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = (rule as *const Rule).cast::<u8>();
        for offset in (0..std::mem::size_of::<Rule>()).step_by(64) {
            // SAFETY: a prefetch only hints; it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast()) };
        }
    }
}

/// Asks the cache for a rule's port lists.
#[inline(always)]
fn prefetch_ports(rule: &Rule) {
    #[cfg(target_arch = "x86_64")]
    for ports in [&rule.matches.source_ports, &rule.matches.destination_ports].into_iter().flatten() {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: as above.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ports.value.as_ptr().cast()) };
    }
}

fn decides(target: &Target) -> bool {
    matches!(target, Target::Accept | Target::Drop | Target::Reject(_))
}

impl Chain {
    pub fn new(ruleset: &Ruleset, flat: &[Flat], policy: &Target, encoder: &Encoder) -> Chain {
        // Positions of one class have one target; the policy's is class 0.
        let mut classes: rustc_hash::FxHashMap<&Target, u16> = [(policy, 0)].into_iter().collect();
        let mut positions = Vec::with_capacity(flat.len());
        let mut owners = Vec::with_capacity(flat.len());
        let mut encoded = Vec::with_capacity(flat.len());
        // Most parts limit four or five fields to one interval each.
        let mut intervals = Vec::with_capacity(5 * flat.len());
        for (position, entry) in flat.iter().enumerate() {
            // The IR rules lie far apart, and each spans several cache
            // lines: they are asked for ahead of their turn, and their
            // port lists once the rule has come.
            if let Some(ahead) = flat.get(position + RULES_AHEAD) {
                prefetch_rule(&ruleset.rules[ahead.rule]);
            }
            if let Some(ahead) = flat.get(position + RULES_AHEAD / 2) {
                prefetch_ports(&ruleset.rules[ahead.rule]);
            }
            let rule = &ruleset.rules[entry.rule];
            let next = classes.len() as u16;
            let class = *classes.entry(&rule.target).or_insert(next);
            positions.push(Position {
                rule: entry.rule,
                decides: decides(&rule.target),
                limited: rule.matches.limit.is_some(),
                class,
                accepts: rule.target == Target::Accept,
            });
            let mut push = |start: usize, ends: Option<[u32; FIELDS]>| {
                if let Some(ends) = ends {
                    owners.push(position as u32);
                    encoded.push(Encoded { start: start as u32, ends });
                }
            };
            match &entry.effective {
                Effective::Own => push(intervals.len(), encoder.encode_into(&rule.matches, &mut intervals)),
                Effective::Within(parts) => {
                    for part in parts {
                        push(intervals.len(), append_box(part, &encoder.maxima, &mut intervals));
                    }
                }
            }
        }
        let maxima = encoder.maxima;
        let field_of = |part: &Encoded, field: usize| {
            let from = if field == 0 { 0 } else { part.ends[field - 1] };
            &intervals[(part.start + from) as usize..(part.start + part.ends[field]) as usize]
        };
        let codings: [Coding; FIELDS] = std::array::from_fn(|field| {
            if maxima[field] <= u128::from(u32::MAX) {
                return Coding::Values;
            }
            let mut starts = vec![0];
            for part in &encoded {
                for &(low, high) in field_of(part, field) {
                    starts.push(low);
                    if high < maxima[field] {
                        starts.push(high + 1);
                    }
                }
            }
            starts.sort_unstable();
            starts.dedup();
            Coding::Ranks(starts)
        });
        let whole: Region = std::array::from_fn(|field| (0, codings[field].code(maxima[field])));
        let (mut many, mut spread) = (Vec::new(), Vec::new());
        let mut columns: [Vec<(u32, u32)>; FIELDS] = std::array::from_fn(|_| Vec::with_capacity(encoded.len()));
        for part in &encoded {
            for (field, column) in columns.iter_mut().enumerate() {
                let code = |(low, high): &(u128, u128)| (codings[field].code(*low), codings[field].code(*high));
                column.push(match field_of(part, field) {
                    [] => whole[field],
                    [one] => code(one),
                    several => {
                        let from = spread.len() as u32;
                        spread.extend(several.iter().map(code));
                        many.push((from, spread.len() as u32));
                        (MANY, many.len() as u32 - 1)
                    }
                });
            }
        }
        let count = positions.len();
        Chain {
            positions,
            owners,
            columns,
            many,
            spread,
            codings,
            maxima,
            whole,
            policy_class: 0,
            policy_accepts: *policy == Target::Accept,
            found: false,
            reached: vec![false; count],
            counts: vec![false; count],
            same_as: vec![Vec::new(); count],
            wanted: Vec::new(),
            deciders: Vec::new(),
            left: 0,
            stack: Vec::new(),
            cuts: Vec::new(),
            ends: Vec::new(),
            scratch: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// The whole packet space of the chain's family, as values.
    pub fn whole(&self) -> Packets {
        std::array::from_fn(|field| (0, self.maxima[field]))
    }

    /// For the host checks: whether some packet of `region` is accepted,
    /// limits taken as not exceeded (as the evaluator takes them); `None`
    /// when `budget` (steps, as for the order analysis) runs out. The
    /// region is cut as in the first pass until its first part that
    /// decides either accepts (some of its packets reach it: nothing
    /// decides before it) or denies all of it.
    pub fn accepts_some(&mut self, packets: &Packets, budget: u64) -> Option<bool> {
        let region: &Region = &std::array::from_fn(|field| {
            let (low, high) = packets[field];
            (self.codings[field].code(low), self.codings[field].code(high))
        });
        self.left = budget;
        self.found = false;
        let whole = self.whole;
        self.stack = (0..self.owners.len() as u32).filter_map(|part| self.within(Entry { part, partial: self.partial(part, &whole) }, region)).collect();
        let finished = self.visit_accepts(region, 0..self.stack.len());
        self.stack = Vec::new();
        if self.found {
            return Some(true);
        }
        finished.map(|()| false)
    }

    fn visit_accepts(&mut self, region: &Region, list: Range<usize>) -> Option<()> {
        self.left = self.left.checked_sub(list.len() as u64)?;
        let Some(first) = list.clone().find(|index| self.positions[self.position(self.stack[*index])].decides) else {
            // Nothing decides: the policy does.
            self.found = self.policy_accepts;
            return if self.found { None } else { Some(()) };
        };
        let entry = self.stack[first];
        if self.positions[self.position(entry)].accepts {
            self.found = true;
            return None;
        }
        if entry.partial == 0 {
            return Some(());
        }
        let field = self.cut_field(region, first..list.end, Some(first));
        self.split(region, first..list.end, first..list.end, field, Chain::visit_accepts)
    }

    /// The IR rule at a position.
    pub fn rule(&self, position: usize) -> usize {
        self.positions[position].rule
    }

    /// How many positions the chain has.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Reach and redundancy for every position; `None` when `budget`
    /// (parts looked at) runs out. `budget` is left with what was not
    /// spent.
    pub fn analyse(&mut self, budget: &mut u64) -> Option<Vec<Found>> {
        self.left = *budget;
        let whole = self.whole;
        self.stack = (0..self.owners.len() as u32).map(|part| Entry { part, partial: self.partial(part, &whole) }).collect();
        let finished = self.visit(&whole, 0..self.stack.len());
        self.stack = Vec::new();
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
    pub fn deciders(&mut self, wanted: &[bool], budget: &mut u64) -> Option<Vec<Vec<usize>>> {
        self.left = *budget;
        self.deciders = vec![Vec::new(); self.positions.len()];
        self.wanted = wanted.to_vec();
        let copies = self.copies();
        for (copy, _) in &copies {
            self.wanted[*copy] = false;
        }
        // Entries past the last one asked about decide nothing asked about.
        let whole = self.whole;
        let position = |part: u32| self.owners[part as usize] as usize;
        let last = (0..self.owners.len() as u32).rposition(|part| self.wanted[position(part)]).map_or(0, |last| last + 1);
        self.stack = (0..last as u32)
            .filter(|part| self.wanted[position(*part)] || self.may_decide(position(*part)))
            .map(|part| Entry { part, partial: self.partial(part, &whole) })
            .collect();
        let finished = self.visit_deciders(&whole, 0..self.stack.len());
        self.stack = Vec::new();
        *budget = self.left;
        finished?;
        for (copy, original) in copies {
            let rule = self.positions[copy].rule;
            self.deciders[copy] = self.deciders[original].iter().copied().filter(|decider| self.positions[*decider as usize].rule != rule).collect();
        }
        let deciders = std::mem::take(&mut self.deciders);
        Some(deciders.into_iter().map(|positions| self.rules_of(positions)).collect())
    }

    /// Positions asked about whose match is one part, the same as an
    /// earlier unreached position's asked about: every packet of the
    /// earlier one is decided before it, so the same rules decide the
    /// copy's packets (its own rule left out). Policies repeat rules
    /// (`deny in from 198.19.0.0/16` forty times in the generated
    /// 100,000-rule policy), and a wide copy would otherwise be carried
    /// into every region of its block.
    fn copies(&self) -> Vec<(usize, usize)> {
        // A part's match: its intervals in each field.
        type Match<'a> = [&'a [(u32, u32)]; FIELDS];
        let mut first: rustc_hash::FxHashMap<Match, usize> = Default::default();
        let mut copies = Vec::new();
        let mut parts = (0..self.owners.len() as u32).peekable();
        for position in 0..self.positions.len() {
            let mut only = None;
            let mut count = 0;
            while let Some(part) = parts.next_if(|part| self.owners[*part as usize] as usize == position) {
                only = Some(part);
                count += 1;
            }
            let (Some(part), 1, true) = (only, count, self.wanted[position]) else { continue };
            let key: Match = std::array::from_fn(|field| self.field(part, field));
            match first.get(&key) {
                Some(original) => copies.push((position, *original)),
                None if !self.reached[position] => {
                    first.insert(key, position);
                }
                None => {}
            }
        }
        copies
    }

    /// The rules at these positions, in order, each once.
    fn rules_of(&self, mut positions: Vec<u32>) -> Vec<usize> {
        positions.sort_unstable();
        positions.dedup();
        let rules = positions.into_iter().map(|position| self.positions[position as usize].rule);
        // Most lists are short: searched, not hashed.
        if rules.len() <= 16 {
            let mut out = Vec::with_capacity(rules.len());
            for rule in rules {
                if !out.contains(&rule) {
                    out.push(rule);
                }
            }
            return out;
        }
        let mut seen = rustc_hash::FxHashSet::default();
        rules.filter(|rule| seen.insert(*rule)).collect()
    }

    /// A part's intervals in a field.
    #[inline(always)]
    fn field(&self, part: u32, field: usize) -> &[(u32, u32)] {
        let cell = &self.columns[field][part as usize];
        if cell.0 <= cell.1 {
            return std::slice::from_ref(cell);
        }
        let (from, to) = self.many[cell.1 as usize];
        &self.spread[from as usize..to as usize]
    }

    /// Asks the cache for the cell in `field` of the part at `index` of
    /// the stack: a list's parts lie far apart in the columns, and waiting
    /// for their first reads was most of a cut's time.
    #[inline(always)]
    fn prefetch(&self, index: usize, field: usize) {
        self.prefetch_in(&self.stack, index, field);
    }

    #[inline(always)]
    fn prefetch_in(&self, stack: &[Entry], index: usize, field: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(entry) = stack.get(index) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let cell = self.columns[field].as_ptr().wrapping_add(entry.part as usize);
            // SAFETY: a prefetch only hints; it never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(cell.cast()) };
        }
    }

    fn position(&self, entry: Entry) -> usize {
        self.owners[entry.part as usize] as usize
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

    /// The entry for a region inside the one it was made for; `None` if
    /// its part does not meet it. Only the fields in which the part did
    /// not include the first region are read.
    fn within(&self, entry: Entry, region: &Region) -> Option<Entry> {
        let mut partial = 0;
        for field in (0..FIELDS).filter(|field| entry.partial & (1 << field) != 0) {
            let (low, high) = region[field];
            let intervals = self.field(entry.part, field);
            let interval = intervals.get(intervals.partition_point(|interval| interval.1 < low))?;
            if interval.0 > high {
                return None;
            }
            if !(interval.0 <= low && high <= interval.1) {
                partial |= 1 << field;
            }
        }
        Some(Entry { part: entry.part, partial })
    }

    /// Whether the entry holds a packet of the region.
    fn holds(&self, entry: Entry, point: &Point) -> bool {
        (0..FIELDS).filter(|field| entry.partial & (1 << field) != 0).all(|field| {
            let intervals = self.field(entry.part, field);
            let after = intervals.partition_point(|interval| interval.0 <= point[field]);
            after > 0 && intervals[after - 1].1 >= point[field]
        })
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
    fn hull(&self, entries: impl Iterator<Item = Entry>, region: &Region) -> Region {
        let mut hull = [(u32::MAX, 0); FIELDS];
        for entry in entries {
            let (low, high) = (self.corner(entry, region, false), self.corner(entry, region, true));
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

    /// Whether the position decides some packet: it always decides and is
    /// reached (known after the first pass). A position that always
    /// decides but is never reached has every packet it holds decided
    /// before it, so it is nobody's decider.
    fn may_decide(&self, position: usize) -> bool {
        self.always_decides(position) && self.reached[position]
    }

    fn done(&self, position: usize) -> bool {
        self.reached[position] && (!self.always_decides(position) || self.counts[position])
    }

    fn visit(&mut self, region: &Region, list: Range<usize>) -> Option<()> {
        self.left = self.left.checked_sub(list.len() as u64)?;
        // The decider, and where the list can be cut.
        let mut decider: Option<usize> = None;
        let mut end = list.end;
        let mut uniform = true;
        for index in list.clone() {
            let entry = self.stack[index];
            uniform &= entry.partial == 0;
            let position = self.position(entry);
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
                Some(first) if self.positions[self.position(self.stack[first])].rule != self.positions[position].rule => {
                    end = index + 1;
                    break;
                }
                Some(_) => {}
            }
        }
        let list = list.start..end;
        let upto = decider.map_or(end, |decider| decider + 1);
        if self.all_done(list.start..upto) {
            return Some(());
        }
        if uniform {
            self.settle(list, decider);
            return Some(());
        }
        // A tiny list is first probed at the corners of the entries not
        // yet done, which may leave nothing to learn by cutting.
        let undone = (list.start..upto).filter(|index| !self.done(self.position(self.stack[*index]))).count();
        if undone * list.len() <= PROBE {
            for index in list.start..upto {
                for high in [false, true] {
                    let entry = self.stack[index];
                    if !self.done(self.position(entry)) {
                        let point = self.corner(entry, region, high);
                        self.probe(list.clone(), &point);
                    }
                }
            }
            if self.all_done(list.start..upto) {
                return Some(());
            }
        }
        let first = (list.start..upto).find(|index| self.always_decides(self.position(self.stack[*index])));
        let field = self.cut_field(region, list.clone(), first);
        self.split(region, list.clone(), list, field, Chain::visit)
    }

    fn all_done(&self, list: Range<usize>) -> bool {
        list.into_iter().all(|index| self.done(self.position(self.stack[index])))
    }

    /// What one packet of the region shows: the entries it meets are
    /// reached up to the first that always decides, and that one counts if
    /// without its rule the packet would be decided otherwise.
    fn probe(&mut self, list: Range<usize>, point: &Point) {
        let mut index = list.start;
        let decider = loop {
            if index == list.end {
                return;
            }
            let entry = self.stack[index];
            index += 1;
            if !self.holds(entry, point) {
                continue;
            }
            let position = self.position(entry);
            self.reached[position] = true;
            if self.always_decides(position) {
                break position;
            }
        };
        if self.counts[decider] {
            return;
        }
        let Position { rule, class, .. } = self.positions[decider];
        for entry in &self.stack[index..list.end] {
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
    fn visit_deciders(&mut self, region: &Region, list: Range<usize>) -> Option<()> {
        self.left = self.left.checked_sub(list.len() as u64)?;
        let base = self.stack.len();
        let result = self.visit_deciders_in(region, list);
        self.stack.truncate(base);
        result
    }

    fn visit_deciders_in(&mut self, region: &Region, list: Range<usize>) -> Option<()> {
        let first_decider = |chain: &Chain, list: Range<usize>| list.into_iter().find(|index| chain.may_decide(chain.position(chain.stack[*index])));
        let Some(first) = first_decider(self, list.clone()) else { return Some(()) };
        let asked = |chain: &Chain, index: usize| chain.wanted[chain.position(chain.stack[index])];
        let wanted = (first + 1..list.end).filter(|index| asked(self, *index)).count();
        if wanted == 0 {
            return Some(());
        }
        // With few positions asked about, only their packets matter: the
        // region shrinks to the smallest box around them.
        let hull = (wanted <= HULL)
            .then(|| self.hull((first + 1..list.end).filter(|index| asked(self, *index)).map(|index| self.stack[index]), region))
            .filter(|hull| hull != region);
        let shrunk: Region;
        let (region, list) = match hull {
            Some(hull) => {
                shrunk = hull;
                let start = self.stack.len();
                for index in first..list.end {
                    if let Some(entry) = self.within(self.stack[index], &shrunk) {
                        self.stack.push(entry);
                    }
                }
                (&shrunk, start..self.stack.len())
            }
            None => (region, first..list.end),
        };
        // The first entry that always decides, and the first that also
        // includes the region: every packet of the region stops by then.
        let Some(first) = first_decider(self, list.clone()) else { return Some(()) };
        let full = (first..list.end).find(|index| self.stack[*index].partial == 0 && self.always_decides(self.position(self.stack[*index])));
        if full == Some(first) {
            let decider = self.position(self.stack[first]);
            let rule = self.positions[decider].rule;
            for index in first + 1..list.end {
                let asked = self.position(self.stack[index]);
                if self.wanted[asked] && self.positions[asked].rule != rule && self.deciders[asked].last() != Some(&(decider as u32)) {
                    self.deciders[asked].push(decider as u32);
                }
            }
            return Some(());
        }
        // Past the entry that includes the region only the positions asked
        // about matter; the entries that decide up to it are cut apart.
        let end = full.map_or(list.end, |full| full + 1);
        let kept = if end == list.end {
            first..end
        } else {
            let start = self.stack.len();
            for index in first..list.end {
                if index < end || asked(self, index) {
                    let entry = self.stack[index];
                    self.stack.push(entry);
                }
            }
            start..self.stack.len()
        };
        let start = self.stack.len();
        for index in first..end {
            let entry = self.stack[index];
            if self.may_decide(self.position(entry)) {
                self.stack.push(entry);
            }
        }
        let deciding = start..self.stack.len();
        let field = self.cut_field(region, deciding.clone(), Some(deciding.start));
        self.split(region, kept, deciding, field, Chain::visit_deciders)
    }

    /// A region where every entry of the list includes it.
    fn settle(&mut self, list: Range<usize>, decider: Option<usize>) {
        let upto = decider.map_or(list.end, |decider| decider + 1);
        for index in list.start..upto {
            let position = self.position(self.stack[index]);
            self.reached[position] = true;
        }
        let Some(decider) = decider else { return };
        let position = self.position(self.stack[decider]);
        if self.counts[position] {
            return;
        }
        let Position { rule, class, .. } = self.positions[position];
        let mut instead = None;
        for entry in &self.stack[decider + 1..list.end] {
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

    /// The field to cut. The first entry of the list that always decides
    /// (`first`) is where its packets stop: when it falls short of the
    /// region in one field only, cutting that field makes it include its
    /// pieces, which end there. A baseline rule such as `allow state
    /// established` is cut off this way once, at the top, instead of in
    /// every region below. Otherwise, `split_field`.
    fn cut_field(&mut self, region: &Region, list: Range<usize>, first: Option<usize>) -> usize {
        match first.map(|index| self.stack[index].partial) {
            Some(partial) if partial.count_ones() == 1 => partial.trailing_zeros() as usize,
            _ => self.split_field(region, list),
        }
    }

    /// The field to split: of those some entry of the list does not span,
    /// the one whose pieces would hold the fewest entries in total.
    fn split_field(&mut self, region: &Region, list: Range<usize>) -> usize {
        let candidates = self.stack[list.clone()].iter().fold(0u16, |fields, entry| fields | entry.partial);
        if candidates.count_ones() == 1 {
            return candidates.trailing_zeros() as usize;
        }
        let step = list.len().div_ceil(SAMPLE);
        let mut bounds = std::mem::take(&mut self.scratch);
        let mut best: Option<(usize, usize)> = None;
        for field in (0..FIELDS).filter(|field| candidates & (1 << field) != 0) {
            bounds.clear();
            self.bounds(region, field, list.clone().step_by(step), &mut bounds);
            let cost: usize = list
                .clone()
                .step_by(step)
                .map(|index| self.pieces(self.stack[index], field, region, &bounds).map(|(from, to, _)| to - from).sum::<usize>())
                .sum();
            if best.is_none_or(|(least, _)| cost < least) {
                best = Some((cost, field));
            }
        }
        self.scratch = bounds;
        best.expect("a region that is not uniform has a field some entry does not span").1
    }

    /// Appends to `out` where the pieces of the region's interval in
    /// `field` begin: at its low end and at every boundary inside it of the
    /// widest of the entries' intervals that do not span it (those at most
    /// `LEVEL` bits narrower than the widest). Cutting the widest first
    /// lets a wide rule that decides (an address block denied) cut the
    /// list short before the narrow ones inside it are cut apart.
    fn bounds(&self, region: &Region, field: usize, entries: std::iter::StepBy<Range<usize>>, out: &mut Vec<u32>) {
        let (low, high) = region[field];
        let bit = 1u16 << field;
        let width = |entry: &Entry| -> u32 {
            self.field(entry.part, field)
                .iter()
                .filter(|interval| interval.0 <= high && low <= interval.1)
                .map(|interval| 32 - (interval.1.min(high) - interval.0.max(low)).leading_zeros())
                .max()
                .unwrap_or(0)
        };
        let step = entries.clone().nth(1).map_or(1, |second| second - entries.clone().next().unwrap_or(0));
        let mut widest = 0;
        for index in entries.clone() {
            self.prefetch(index + PREFETCH * step, field);
            let entry = self.stack[index];
            if entry.partial & bit != 0 {
                widest = widest.max(width(&entry));
            }
        }
        let start = out.len();
        out.push(low);
        for index in entries {
            self.prefetch(index + PREFETCH * step, field);
            let entry = self.stack[index];
            if entry.partial & bit == 0 || width(&entry) + LEVEL < widest {
                continue;
            }
            for &(from, to) in self.field(entry.part, field) {
                if from > low && from <= high {
                    out.push(from);
                }
                if to >= low && to < high {
                    out.push(to + 1);
                }
            }
        }
        out[start..].sort_unstable();
        let mut kept = start + 1;
        for index in start + 1..out.len() {
            if out[index] != out[kept - 1] {
                out[kept] = out[index];
                kept += 1;
            }
        }
        out.truncate(kept);
    }

    /// The runs of pieces (`from..to`, indices into `bounds`) that an
    /// entry's intervals in `field` meet, and the interval. An entry that
    /// spans the region in the field meets every piece: its part is not
    /// read.
    fn pieces<'b>(&'b self, entry: Entry, field: usize, region: &Region, bounds: &'b [u32]) -> impl Iterator<Item = (usize, usize, (u32, u32))> + 'b {
        let (low, high) = region[field];
        let spans = entry.partial & (1 << field) == 0;
        let intervals = if spans { &[][..] } else { self.field(entry.part, field) };
        spans.then_some((0, bounds.len(), (low, high))).into_iter().chain(
            intervals.iter().filter(move |interval| interval.0 <= high && low <= interval.1).map(move |&(from, to)| {
                let first = bounds.partition_point(|bound| *bound <= from.max(low)) - 1;
                let last = bounds.partition_point(|bound| *bound <= to.min(high)) - 1;
                (first, last + 1, (from, to))
            }),
        )
    }

    /// Splits the region in `field` where the entries of `cut_by` begin
    /// and end, and visits each piece with the entries of `list` that meet
    /// it. The pieces' lists are sorted onto the stack: counted, then
    /// placed.
    fn split(&mut self, region: &Region, list: Range<usize>, cut_by: Range<usize>, field: usize, visit: fn(&mut Chain, &Region, Range<usize>) -> Option<()>) -> Option<()> {
        let (cuts_base, ends_base, base) = (self.cuts.len(), self.ends.len(), self.stack.len());
        let mut cuts = std::mem::take(&mut self.cuts);
        self.bounds(region, field, cut_by.step_by(1), &mut cuts);
        self.cuts = cuts;
        let count = self.cuts.len() - cuts_base;
        let mut stack = std::mem::take(&mut self.stack);
        let mut ends = std::mem::take(&mut self.ends);
        let bounds = &self.cuts[cuts_base..];
        let piece = |index: usize| (bounds[index], bounds.get(index + 1).map_or(region[field].1, |next| next - 1));
        // How many entries each piece gets (two intervals of one part in a
        // piece make one entry), and the work, counted before the pieces
        // take memory.
        ends.resize(ends_base + count, 0);
        let bit = 1u16 << field;
        let mut runs = std::mem::take(&mut self.runs);
        runs.clear();
        let mut spanning = 0u32;
        let mut work = 0u64;
        for index in list.clone() {
            self.prefetch_in(&stack, index + PREFETCH, field);
            let entry = stack[index];
            if entry.partial & bit == 0 {
                // Goes to every piece: counted once for all.
                spanning += 1;
                continue;
            }
            let mut last = usize::MAX;
            for (from, to, (low, high)) in self.pieces(entry, field, region, bounds) {
                work += (to - from) as u64;
                for index in from..to {
                    if index != last {
                        ends[ends_base + index] += 1;
                    }
                }
                last = to - 1;
                let spans = |index: usize| {
                    let (piece_low, piece_high) = piece(index);
                    low <= piece_low && piece_high <= high
                };
                runs.push(Run { index: index as u32, from: from as u32, to: to as u32, spans_first: spans(from), spans_last: spans(to - 1) });
            }
        }
        work += u64::from(spanning) * count as u64;
        let Some(left) = self.left.checked_sub(work) else {
            (self.stack, self.ends, self.runs) = (stack, ends, runs);
            return None;
        };
        self.left = left;
        // Each piece's count becomes where its list starts, and a cursor
        // that ends where it ends.
        let mut at = base as u32;
        for end in &mut ends[ends_base..] {
            (*end, at) = (at, at + *end + spanning);
        }
        stack.resize(at as usize, Entry::default());
        let mut runs_left = runs.iter().peekable();
        for index in list {
            let entry = stack[index];
            if entry.partial & bit == 0 {
                for cursor in &mut ends[ends_base..] {
                    stack[*cursor as usize] = entry;
                    *cursor += 1;
                }
                continue;
            }
            let mut last = usize::MAX;
            while let Some(run) = runs_left.next_if(|run| run.index as usize == index) {
                let (from, to) = (run.from as usize, run.to as usize);
                for index in from..to {
                    let cursor = &mut ends[ends_base + index];
                    if index == last {
                        // Two intervals of one part in the piece: it has a gap there.
                        stack[*cursor as usize - 1].partial |= bit;
                        continue;
                    }
                    let spans = (index != from || run.spans_first) && (index != to - 1 || run.spans_last);
                    stack[*cursor as usize] = Entry { part: entry.part, partial: entry.partial & !bit | if spans { 0 } else { bit } };
                    *cursor += 1;
                    last = index;
                }
            }
        }
        self.runs = runs;
        (self.stack, self.ends) = (stack, ends);
        let mut piece_region = *region;
        let mut start = base;
        // The first piece with each list that every entry of it includes
        // in `field` (by a hash of the list).
        let mut twins: rustc_hash::FxHashMap<u64, Range<usize>> = Default::default();
        for index in 0..count {
            let end = self.ends[ends_base + index] as usize;
            if end > start {
                let list = &self.stack[start..end];
                if list.len() >= TWIN && list.iter().all(|entry| entry.partial & bit == 0) {
                    // A twin of an earlier piece: every rule treats their
                    // packets alike, so it would teach again what that one
                    // taught.
                    let hash = std::hash::BuildHasher::hash_one(&rustc_hash::FxBuildHasher, list);
                    match twins.entry(hash) {
                        std::collections::hash_map::Entry::Occupied(first) if self.stack[first.get().clone()] == *list => {
                            start = end;
                            continue;
                        }
                        std::collections::hash_map::Entry::Occupied(_) => {}
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(start..end);
                        }
                    }
                }
                piece_region[field] = (self.cuts[cuts_base + index], self.cuts.get(cuts_base + index + 1).map_or(region[field].1, |next| next - 1));
                visit(self, &piece_region, start..end)?;
            }
            start = end;
        }
        self.stack.truncate(base);
        self.cuts.truncate(cuts_base);
        self.ends.truncate(ends_base);
        Some(())
    }
}
