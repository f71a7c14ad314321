//! The parse of a file as byte ranges, for tools that keep the text as it
//! was written (`fwc fmt`). Built by parser.rs from the same grammar as the
//! AST; pest's types never appear here.
//!
//! The leaves are the file's atoms: keywords, names, numbers, strings,
//! addresses, rates. What lies between two atoms — spaces, line breaks,
//! comments, and the punctuation `{ } , = - ->` — is not in the tree: a
//! tool reads it back from the text between their ranges.

use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    pub range: Range<usize>,
    /// Empty for an atom (and for the empty address set `{}`).
    pub children: Vec<Node>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Statement(StatementKind),
    /// A part of a statement that a table of like statements would put in
    /// a column of its own.
    Clause(Clause),
    /// `{ … }` in an address list.
    AddressSet,
    /// Anything else: an atom, or a node of the grammar no tool asks about.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// Any rule, `return` included.
    Rule,
    Let,
    Param,
    Service,
    Policy,
    Chain,
    KeepChains,
    Include,
    Use,
    Ignore,
    Test,
    Expect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Clause {
    /// `allow`, `deny`, … at the head of a rule.
    Action,
    /// `in`, `out`, `forward`.
    Direction,
    /// `on IFACE`, `on IN -> OUT`.
    Interface,
    /// A protocol with its ports, or `service NAME, …`.
    Match,
    /// `from …`, `to …`, and `to CHAIN` of a jump.
    Address,
    SourcePorts,
    Flags,
    /// `state …` of a rule, or the state word of an `expect` line.
    State,
    Mac,
    RejectWith,
    NatTarget,
    Port,
    LogPrefix,
    /// `stateful`, `log`, `limit`, `rate`, `comment`, `ipv4`, `ipv6`, `ignore`.
    Option,
    /// `accept`/`drop` of a policy line, `allow`/`deny`/`reject` of an `expect`.
    Verdict,
    /// The right-hand side of `let` and `param`.
    Value,
}

impl Node {
    pub fn is_atom(&self) -> bool {
        self.children.is_empty() && !matches!(self.kind, Kind::File | Kind::AddressSet)
    }

    /// The atoms under this node, in order.
    pub fn atoms(&self) -> Vec<&Node> {
        let mut atoms = Vec::new();
        self.collect_atoms(&mut atoms);
        atoms
    }

    fn collect_atoms<'a>(&'a self, atoms: &mut Vec<&'a Node>) {
        if self.is_atom() {
            atoms.push(self);
        }
        for child in &self.children {
            child.collect_atoms(atoms);
        }
    }
}
