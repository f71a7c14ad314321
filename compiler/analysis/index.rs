//! Which boxes of a flattened chain meet a given box, on two fields: an
//! interval index of the distinct intervals of the first field, and for
//! each of them, an interval index of the second field of the boxes that
//! have it. Address blocks nest (a point is in at most one block of each
//! prefix length), so a query meets few distinct blocks, and within each,
//! the port (or other address) tells the rules apart.
//!
//! Each interval index is a segment tree of intervals sorted by their low
//! ends, each node holding the largest high end below it: building one
//! sorts its `k` intervals (`O(k log k)`); a query for the intervals that
//! meet `[low, high]` costs `O(log k)` plus `O(log k)` per interval found.

use rustc_hash::FxHashMap;

/// The two-level index.
pub struct Index {
    /// The distinct intervals of the first field; an entry's value is its
    /// group.
    outer: Tree,
    /// Per group, the second field's intervals; an entry's value is a
    /// position.
    groups: Vec<Tree>,
}

/// One box: its intervals in the two fields, and its position.
pub struct Keys<'a> {
    pub first: &'a [(u128, u128)],
    pub second: &'a [(u128, u128)],
    pub position: usize,
}

impl Index {
    pub fn new<'a>(boxes: impl Iterator<Item = Keys<'a>>) -> Index {
        let mut group_of: FxHashMap<(u128, u128), usize> = FxHashMap::default();
        let mut members: Vec<Vec<(u128, u128, usize)>> = Vec::new();
        for keys in boxes {
            for &interval in keys.first {
                let group = *group_of.entry(interval).or_insert_with(|| {
                    members.push(Vec::new());
                    members.len() - 1
                });
                members[group].extend(keys.second.iter().map(|&(low, high)| (low, high, keys.position)));
            }
        }
        let outer = Tree::new(group_of.into_iter().map(|((low, high), group)| (low, high, group)).collect());
        let groups = members.into_iter().map(Tree::new).collect();
        Index { outer, groups }
    }

    /// The positions of the boxes that meet the given intervals in both
    /// fields, appended to `out` (unordered, possibly repeated).
    pub fn meeting(&self, first: &[(u128, u128)], second: &[(u128, u128)], out: &mut Vec<usize>) {
        let mut groups = Vec::new();
        for &(low, high) in first {
            self.outer.meeting(low, high, &mut groups);
        }
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            for &(low, high) in second {
                self.groups[group].meeting(low, high, out);
            }
        }
    }
}

/// One interval, and what it stands for.
#[derive(Clone, Copy)]
struct Entry {
    low: u128,
    high: u128,
    value: u32,
}

struct Tree {
    /// By low end.
    entries: Vec<Entry>,
    /// `tree[node]`: the largest high end of the entries below `node`
    /// (node 1 is the root, leaves start at `leaves`).
    tree: Vec<u128>,
    leaves: usize,
}

impl Tree {
    /// A tree of `(low, high, value)` intervals.
    fn new(intervals: Vec<(u128, u128, usize)>) -> Tree {
        let mut entries: Vec<Entry> =
            intervals.into_iter().map(|(low, high, value)| Entry { low, high, value: value as u32 }).collect();
        entries.sort_unstable_by_key(|entry| (entry.low, entry.value));
        let leaves = entries.len().next_power_of_two().max(1);
        let mut tree = vec![0u128; 2 * leaves];
        for (slot, entry) in entries.iter().enumerate() {
            tree[leaves + slot] = entry.high;
        }
        for node in (1..leaves).rev() {
            tree[node] = tree[2 * node].max(tree[2 * node + 1]);
        }
        Tree { entries, tree, leaves }
    }

    /// The values of the intervals that meet `[low, high]`, appended to
    /// `out` (unordered, a value once per interval).
    fn meeting(&self, low: u128, high: u128, out: &mut Vec<usize>) {
        let started = self.entries.partition_point(|entry| entry.low <= high);
        if started > 0 {
            self.collect(1, 0, self.leaves, started, low, out);
        }
    }

    /// Entries `[from, to)` below `node` that lie in the first `started`
    /// slots and end at or after `low`.
    fn collect(&self, node: usize, from: usize, to: usize, started: usize, low: u128, out: &mut Vec<usize>) {
        if from >= started || self.tree[node] < low {
            return;
        }
        if to - from == 1 {
            out.push(self.entries[from].value as usize);
            return;
        }
        let middle = (from + to) / 2;
        self.collect(2 * node, from, middle, started, low, out);
        self.collect(2 * node + 1, middle, to, started, low, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_meeting_boxes() {
        let intervals = [(0u128, 10u128), (5, 5), (7, 20), (11, 11), (30, 40), (0, u128::MAX), (7, 20)];
        // Box i: first field intervals[i], second field intervals[(i * 3) % 7],
        // and box 7 has two intervals in each.
        let second = |i: usize| vec![intervals[(i * 3) % intervals.len()]];
        let mut boxes: Vec<(Vec<(u128, u128)>, Vec<(u128, u128)>)> =
            (0..intervals.len()).map(|i| (vec![intervals[i]], second(i))).collect();
        boxes.push((vec![(0, 3), (12, 15)], vec![(2, 2), (25, 35)]));
        let index = Index::new(boxes.iter().enumerate().map(|(position, (first, second))| Keys { first, second, position }));
        let meets = |a: &[(u128, u128)], low: u128, high: u128| a.iter().any(|(x, y)| *x <= high && low <= *y);
        for (low, high) in [(0u128, 0u128), (3, 6), (11, 11), (12, 29), (21, 29), (41, 50), (0, 100)] {
            for (low2, high2) in [(0u128, 1u128), (2, 2), (5, 9), (21, 29), (30, 30), (0, 100)] {
                let mut found = Vec::new();
                index.meeting(&[(low, high)], &[(low2, high2)], &mut found);
                found.sort_unstable();
                found.dedup();
                let expected: Vec<usize> = boxes
                    .iter()
                    .enumerate()
                    .filter(|(_, (first, second))| meets(first, low, high) && meets(second, low2, high2))
                    .map(|(position, _)| position)
                    .collect();
                assert_eq!(found, expected, "[{low}, {high}] × [{low2}, {high2}]");
            }
        }
    }
}
