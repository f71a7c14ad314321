//! Reduced, hash-consed multi-valued decision diagrams over packet fields.
//!
//! A node tests one field (its *level*) and sends each interval of that
//! field's values to a child; leaves are either set membership (`EMPTY`,
//! `FULL`) or, in verdict diagrams, who decides a packet (`MIXED`,
//! `POLICY`, or a rule's position in a flattened chain). Nodes are
//! canonical: a node's edges partition the field's whole range, adjacent
//! edges go to different children, a node with a single edge is its child,
//! and equal nodes are one node (the `unique` table). So two diagrams are
//! equal exactly when their ids are, and every binary operation is memoised
//! on (operation, left id, right id): applying it costs at most the product
//! of the two diagrams' sizes, and usually far less, since a node shared by
//! many parents is combined once.

use super::boxes::{PacketBox, FIELDS};
use rustc_hash::FxHashMap;

/// A diagram: a leaf (high bit set) or an index into the node table.
pub type Node = u32;

const LEAF: u32 = 1 << 31;
/// The empty set.
pub const EMPTY: Node = LEAF;
/// Every packet.
pub const FULL: Node = LEAF | 1;
/// A verdict diagram's "a rate-limited rule with another verdict may take
/// this packet": no single verdict.
pub const MIXED: Node = LEAF | 2;
/// A verdict diagram's "no later rule decides: the chain's policy does".
pub const POLICY: Node = LEAF | 3;

/// The leaf for the deciding rule at `position` of a flattened chain.
pub fn rule_leaf(position: usize) -> Node {
    LEAF | (4 + position as u32)
}

/// The position of a rule leaf.
pub fn leaf_position(node: Node) -> Option<usize> {
    (node & LEAF != 0 && node & !LEAF >= 4).then(|| (node & !LEAF) as usize - 4)
}

fn is_leaf(node: Node) -> bool {
    node & LEAF != 0
}

/// Binary operations on diagrams. The first operand of the verdict
/// operations is a set, the second a verdict diagram; classes are indices
/// into the verdict classes of `Diagrams::classes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Union,
    Intersect,
    Difference,
    /// Inside the set, the given leaf decides; elsewhere the verdict stays.
    Override(Node),
    /// Inside the set, a rate-limited rule of this class may decide: the
    /// verdict stays if it is of the same class, and becomes `MIXED` if not.
    Limited(u16),
    /// The packets of the set whose verdict is not of this class.
    Violates(u16),
}

/// The class `MIXED` has: equal to no other.
const NO_CLASS: u16 = u16::MAX;

/// A node: its level and its edges, `edges[start..start + len]` of the
/// store's edge arena.
#[derive(Clone, Copy)]
struct Inner {
    level: u8,
    start: u32,
    len: u32,
}

/// Memoised results kept at most; past this the memo starts afresh (it is
/// a cache: results stay the same, only their cost changes).
const MEMO_LIMIT: usize = 1 << 22;

/// The node store of one family's analysis.
pub struct Diagrams {
    /// The field each level tests, top level first.
    order: Vec<usize>,
    /// The largest value of each level's field.
    maxima: Vec<u128>,
    nodes: Vec<Inner>,
    edges: Vec<(u128, Node)>,
    /// Nodes by the hash of their level and edges; equal hashes are
    /// chained through `next`.
    unique: FxHashMap<u64, Node>,
    next: Vec<Node>,
    /// Edges of the nodes being built (a stack: `apply` recurses).
    scratch: Vec<(u128, Node)>,
    memo: FxHashMap<(Op, Node, Node), Node>,
    /// The verdict class of each rule leaf (by position), and the policy's.
    classes: Vec<u16>,
    policy_class: u16,
    /// Operations left before the analysis gives up (see `Work`).
    pub left: u64,
}

impl Diagrams {
    /// Diagrams whose levels test `order` (field indices), with the
    /// fields' maxima from the encoder.
    pub fn new(order: Vec<usize>, maxima: &[u128; FIELDS], budget: u64) -> Diagrams {
        let maxima = order.iter().map(|field| maxima[*field]).collect();
        Diagrams {
            order,
            maxima,
            nodes: Vec::new(),
            edges: Vec::new(),
            unique: FxHashMap::default(),
            next: Vec::new(),
            scratch: Vec::new(),
            memo: FxHashMap::default(),
            classes: Vec::new(),
            policy_class: NO_CLASS,
            left: budget,
        }
    }

    /// Sets the verdict classes of a chain's rule leaves and its policy;
    /// forgets memoised verdict operations of the previous chain.
    pub fn set_classes(&mut self, classes: Vec<u16>, policy_class: u16) {
        self.classes = classes;
        self.policy_class = policy_class;
        self.memo.clear();
    }

    /// Spends `amount` operations of the budget; `None` once it is gone.
    pub fn spend(&mut self, amount: u64) -> Option<()> {
        self.left = self.left.checked_sub(amount)?;
        Some(())
    }

    fn level(&self, node: Node) -> usize {
        if is_leaf(node) {
            self.order.len()
        } else {
            usize::from(self.nodes[node as usize].level)
        }
    }

    fn class(&self, leaf: Node) -> u16 {
        match leaf {
            POLICY => self.policy_class,
            MIXED => NO_CLASS,
            _ => leaf_position(leaf).map_or(NO_CLASS, |position| self.classes[position]),
        }
    }

    /// The canonical node for the scratch edges from `base` on, at
    /// `level` (merged, reduced, shared); truncates the scratch to `base`.
    fn make(&mut self, level: usize, base: usize) -> Node {
        let mut kept = base;
        for read in base..self.scratch.len() {
            if kept > base && self.scratch[kept - 1].1 == self.scratch[read].1 {
                continue;
            }
            self.scratch[kept] = self.scratch[read];
            kept += 1;
        }
        self.scratch.truncate(kept);
        if kept == base + 1 {
            return self.scratch.pop().expect("one edge").1;
        }
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut hasher = rustc_hash::FxHasher::default();
            level.hash(&mut hasher);
            self.scratch[base..].hash(&mut hasher);
            hasher.finish()
        };
        let mut candidate = self.unique.get(&hash).copied();
        while let Some(node) = candidate {
            let inner = self.nodes[node as usize];
            if usize::from(inner.level) == level
                && self.edges[inner.start as usize..(inner.start + inner.len) as usize] == self.scratch[base..]
            {
                self.scratch.truncate(base);
                return node;
            }
            candidate = Some(self.next[node as usize]).filter(|next| *next != EMPTY);
        }
        let node = self.nodes.len() as Node;
        assert!(node < LEAF, "decision diagram too large");
        let len = (self.scratch.len() - base) as u32;
        self.nodes.push(Inner { level: level as u8, start: self.edges.len() as u32, len });
        self.edges.extend_from_slice(&self.scratch[base..]);
        self.scratch.truncate(base);
        self.next.push(self.unique.insert(hash, node).unwrap_or(EMPTY));
        node
    }

    /// The set of packets in a box, over the levels' fields.
    pub fn from_box(&mut self, packet_box: &PacketBox) -> Node {
        let mut node = FULL;
        for level in (0..self.order.len()).rev() {
            let field = self.order[level];
            let intervals = &packet_box.0[field].0;
            if intervals.is_empty() {
                return EMPTY;
            }
            if intervals.len() == 1 && intervals[0] == (0, self.maxima[level]) {
                continue;
            }
            let base = self.scratch.len();
            let edges = &mut self.scratch;
            let mut next = Some(0u128);
            for &(low, high) in intervals {
                if next.is_some_and(|next| low > next) {
                    edges.push((next.unwrap_or(0), EMPTY));
                }
                edges.push((low, node));
                next = (high < self.maxima[level]).then(|| high + 1);
            }
            if let Some(next) = next {
                edges.push((next, EMPTY));
            }
            node = self.make(level, base);
        }
        node
    }

    fn leaf_op(&self, op: Op, left: Node, right: Node) -> Node {
        let set = |yes: bool| if yes { FULL } else { EMPTY };
        match op {
            Op::Union => set(left == FULL || right == FULL),
            Op::Intersect => set(left == FULL && right == FULL),
            Op::Difference => set(left == FULL && right != FULL),
            Op::Override(leaf) => if left == FULL { leaf } else { right },
            Op::Limited(class) => {
                if left == FULL && self.class(right) != class {
                    MIXED
                } else {
                    right
                }
            }
            Op::Violates(class) => set(left == FULL && self.class(right) != class),
        }
    }

    /// Answers that need no recursion.
    fn shortcut(&self, op: Op, left: Node, right: Node) -> Option<Node> {
        match op {
            Op::Union if left == EMPTY || right == FULL || left == right => Some(right),
            Op::Union if right == EMPTY || left == FULL => Some(left),
            Op::Intersect if left == EMPTY || right == FULL || left == right => Some(left),
            Op::Intersect if right == EMPTY || left == FULL => Some(right),
            Op::Difference if left == EMPTY || right == FULL || left == right => Some(EMPTY),
            Op::Difference if right == EMPTY => Some(left),
            Op::Override(leaf) if left == FULL => Some(leaf),
            Op::Override(_) | Op::Limited(_) if left == EMPTY => Some(right),
            Op::Violates(_) if left == EMPTY => Some(EMPTY),
            Op::Violates(class) if is_leaf(right) => Some(if self.class(right) == class { EMPTY } else { left }),
            _ if is_leaf(left) && is_leaf(right) => Some(self.leaf_op(op, left, right)),
            _ => None,
        }
    }

    /// `op` applied to every packet's values in `left` and `right`.
    /// `None` once the budget is spent.
    pub fn apply(&mut self, op: Op, left: Node, right: Node) -> Option<Node> {
        if let Some(node) = self.shortcut(op, left, right) {
            return Some(node);
        }
        if let Some(node) = self.memo.get(&(op, left, right)) {
            return Some(*node);
        }
        let level = self.level(left).min(self.level(right));
        let (left_count, right_count) = (self.count_at(left, level), self.count_at(right, level));
        self.spend((left_count + right_count) as u64)?;
        let base = self.scratch.len();
        let (mut i, mut j) = (0, 0);
        loop {
            let (left_start, left_child) = self.edge_at(left, level, i);
            let (right_start, right_child) = self.edge_at(right, level, j);
            let child = self.apply(op, left_child, right_child)?;
            self.scratch.push((left_start.max(right_start), child));
            match self.advance((left, left_count), (right, right_count), level, (i, j)) {
                Some(next) => (i, j) = next,
                None => break,
            }
        }
        let node = self.make(level, base);
        if self.memo.len() >= MEMO_LIMIT {
            self.memo.clear();
        }
        self.memo.insert((op, left, right), node);
        Some(node)
    }

    /// The next pair of edge indexes when walking two nodes' edges at
    /// `level` side by side (a merge of their interval starts); `None` after
    /// the last pair.
    fn advance(&self, (left, left_count): (Node, usize), (right, right_count): (Node, usize), level: usize, (i, j): (usize, usize)) -> Option<(usize, usize)> {
        let next_left = (i + 1 < left_count).then(|| self.edge_at(left, level, i + 1).0);
        let next_right = (j + 1 < right_count).then(|| self.edge_at(right, level, j + 1).0);
        match (next_left, next_right) {
            (None, None) => None,
            (Some(a), Some(b)) if a == b => Some((i + 1, j + 1)),
            (Some(a), Some(b)) if a < b => Some((i + 1, j)),
            (Some(_), None) => Some((i + 1, j)),
            _ => Some((i, j + 1)),
        }
    }

    /// How many edges a node has at `level` (one if it does not test it).
    fn count_at(&self, node: Node, level: usize) -> usize {
        if !is_leaf(node) && usize::from(self.nodes[node as usize].level) == level {
            self.nodes[node as usize].len as usize
        } else {
            1
        }
    }

    /// Edge `index` of a node at `level`; a node that does not test the
    /// level has one edge over the whole range, to itself.
    fn edge_at(&self, node: Node, level: usize, index: usize) -> (u128, Node) {
        if !is_leaf(node) && usize::from(self.nodes[node as usize].level) == level {
            self.edges[self.nodes[node as usize].start as usize + index]
        } else {
            (0, node)
        }
    }

    /// The leaves of `verdict` over the packets of `set`, each once.
    pub fn leaves_over(&self, set: Node, verdict: Node, out: &mut Vec<Node>) {
        let mut seen = rustc_hash::FxHashSet::default();
        self.collect(set, verdict, &mut seen, out);
    }

    fn collect(&self, set: Node, verdict: Node, seen: &mut rustc_hash::FxHashSet<(Node, Node)>, out: &mut Vec<Node>) {
        if set == EMPTY || !seen.insert((set, verdict)) {
            return;
        }
        if is_leaf(verdict) {
            if !out.contains(&verdict) {
                out.push(verdict);
            }
            return;
        }
        let level = self.level(set).min(self.level(verdict));
        let (left_count, right_count) = (self.count_at(set, level), self.count_at(verdict, level));
        let (mut i, mut j) = (0, 0);
        loop {
            self.collect(self.edge_at(set, level, i).1, self.edge_at(verdict, level, j).1, seen, out);
            match self.advance((set, left_count), (verdict, right_count), level, (i, j)) {
                Some(next) => (i, j) = next,
                None => break,
            }
        }
    }
}
