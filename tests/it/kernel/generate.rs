//! Random valid policies for the differential test, from a seed.
//!
//! The generator writes policy text the way a user would, covering the rule
//! forms the compiler supports: allow, deny, reject (with and without
//! `with`), `in` and `out`, `on` (negated, wildcard, `lo`), tcp, udp, icmp,
//! icmpv6 and other protocols, services, single ports, lists, ranges,
//! `sport`, negated ports and ICMP types, addresses, blocks, sets and
//! `$variables` of both families, negated addresses, `state`, `stateful`,
//! `log` (option and statement), `comment`, high `limit`s, `ipv4`/`ipv6`,
//! default policies, stdlib parts, and chains with jumps, nested jumps and
//! conditional returns, entered from `in`, `out` or both.
//!
//! Addresses come from two pools so that every address a rule names can be
//! given to the namespace on that side of the veth pair: the peer's (the
//! remote side: `from` of `in` rules, `to` of `out` rules) is 198.18.0.0/16
//! and fd00:18::/32, the host's is 198.19.0.0/16 and fd00:19::/32. Each
//! policy draws its blocks and ports from a few anchors, so that rules
//! overlap and share boundaries.
//!
//! `limit`s are kept far above what probes send (the evaluator takes every
//! packet as under its limit), and no rule looks at TCP flags or MAC
//! addresses (probes cannot choose them).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// splitmix64: small, fast, and the same sequence everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index chosen by weight.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut point = self.below(total);
        for (index, weight) in weights.iter().enumerate() {
            if point < *weight {
                return index;
            }
            point -= weight;
        }
        weights.len() - 1
    }
}

/// Which namespace an address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The firewalled namespace.
    Host,
    /// The other end of the veth pair.
    Peer,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Host => Side::Peer,
            Side::Peer => Side::Host,
        }
    }
}

/// The address pool of a side and family.
pub fn pool(side: Side, v6: bool) -> IpNet {
    let text = match (side, v6) {
        (Side::Peer, false) => "198.18.0.0/16",
        (Side::Host, false) => "198.19.0.0/16",
        (Side::Peer, true) => "fd00:18::/32",
        (Side::Host, true) => "fd00:19::/32",
    };
    text.parse().expect("literal")
}

/// A policy as items, so that the shrinker can remove them one at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Line(String),
    Chain { header: String, body: Vec<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenPolicy {
    pub items: Vec<Item>,
}

impl GenPolicy {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            match item {
                Item::Line(line) => {
                    out.push_str(line);
                    out.push('\n');
                }
                Item::Chain { header, body } => {
                    out.push_str(header);
                    out.push_str(" {\n");
                    for line in body {
                        out.push_str("    ");
                        out.push_str(line);
                        out.push('\n');
                    }
                    out.push_str("}\n");
                }
            }
        }
        out
    }

    /// Smaller variants, for shrinking: without one line, one chain or one
    /// chain line; then with one clause of a line left out, or one member
    /// of a list or set, or one `not`. Some do not compile; the shrinker
    /// skips those.
    pub fn smaller(&self) -> Vec<GenPolicy> {
        let mut out = Vec::new();
        for index in 0..self.items.len() {
            let mut fewer = self.clone();
            fewer.items.remove(index);
            out.push(fewer);
            if let Item::Chain { body, .. } = &self.items[index] {
                for line in 0..body.len() {
                    let mut fewer = self.clone();
                    if let Item::Chain { body, .. } = &mut fewer.items[index] {
                        body.remove(line);
                    }
                    out.push(fewer);
                }
            }
        }
        for index in 0..self.items.len() {
            match &self.items[index] {
                Item::Line(line) => {
                    for simpler in simpler_lines(line, 2) {
                        let mut variant = self.clone();
                        variant.items[index] = Item::Line(simpler);
                        out.push(variant);
                    }
                }
                Item::Chain { body, .. } => {
                    for (position, line) in body.iter().enumerate() {
                        for simpler in simpler_lines(line, 1) {
                            let mut variant = self.clone();
                            if let Item::Chain { body, .. } = &mut variant.items[index] {
                                body[position] = simpler;
                            }
                            out.push(variant);
                        }
                    }
                }
            }
        }
        out
    }
}

/// The words of a rule, with `{ … }` sets and `"…"` strings as one word.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let (mut depth, mut quoted) = (0, false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            _ => {}
        }
        if c == ' ' && depth == 0 && !quoted {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

const CLAUSE_WORDS: [&str; 23] = [
    "on", "tcp", "udp", "icmp", "icmpv6", "esp", "gre", "sctp", "udplite", "47", "service", "sport", "from", "to",
    "state", "stateful", "log", "limit", "comment", "ipv4", "ipv6", "with", "rate",
];

/// A rule with one clause, one list member, one set member or one `not`
/// left out; the first `keep` words (action, direction) stay.
fn simpler_lines(line: &str, keep: usize) -> Vec<String> {
    let words = words(line);
    let mut out = Vec::new();
    let starts: Vec<usize> =
        (keep.min(words.len())..words.len()).filter(|&i| CLAUSE_WORDS.contains(&words[i].as_str())).collect();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(words.len());
        let mut fewer = words.clone();
        fewer.drain(start..end);
        out.push(fewer.join(" "));
        // One member of a comma list inside the clause.
        let members: Vec<usize> = (start + 1..end).filter(|&i| words[i] != "not").collect();
        if members.len() > 1 {
            for &member in &members {
                let mut fewer = words.clone();
                fewer.remove(member);
                let last = members.last().copied() == Some(member);
                if last {
                    // The new last member loses its comma.
                    if let Some(previous) = fewer.get_mut(member - 1) {
                        if let Some(stripped) = previous.strip_suffix(',') {
                            *previous = stripped.to_string();
                        }
                    }
                }
                out.push(fewer.join(" "));
            }
        }
    }
    for (i, word) in words.iter().enumerate() {
        if word == "not" {
            let mut fewer = words.clone();
            fewer.remove(i);
            out.push(fewer.join(" "));
        }
        if let Some(inner) = word.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
            let members: Vec<&str> = inner.split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
            if members.len() > 1 {
                for skip in 0..members.len() {
                    let kept: Vec<&str> =
                        members.iter().enumerate().filter(|(n, _)| *n != skip).map(|(_, m)| *m).collect();
                    let mut fewer = words.clone();
                    fewer[i] = format!("{{ {} }}", kept.join(", "));
                    out.push(fewer.join(" "));
                }
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dirs {
    In,
    Out,
    Both,
}

impl Dirs {
    fn has(self, direction: &str) -> bool {
        matches!((self, direction), (Dirs::Both, _) | (Dirs::In, "in") | (Dirs::Out, "out"))
    }
}

/// Which address families a rule's addresses may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fams {
    V4,
    V6,
    Both,
}

struct Chain {
    name: String,
    dirs: Dirs,
}

/// Where a rule is written.
struct Ctx {
    /// `in` or `out` for a top-level rule, `None` in a chain body.
    direction: Option<&'static str>,
    /// The directions the rule applies in.
    dirs: Dirs,
    /// Whether `on` may be used (not in a chain entered from both sides).
    allow_on: bool,
    /// Chains a `jump` here may go to.
    jump_targets: Vec<String>,
    in_chain: bool,
}

struct Gen {
    rng: Rng,
    ports: Vec<u16>,
    /// Anchor blocks by (side, v6).
    blocks: Vec<((Side, bool), IpNet)>,
    /// `let` address sets: name, side, families.
    address_lets: Vec<(String, Side, Fams)>,
    port_lets: Vec<String>,
    log_count: usize,
    /// Whether `not` may stand before a list: not on a `return`, which
    /// cannot use a helper chain.
    negated_lists: bool,
}

/// Generates policy number `index` of the run with this seed.
pub fn policy(seed: u64, index: u64) -> GenPolicy {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    // Warm up so that neighbouring indices diverge at once.
    rng.next();
    let mut generator = Gen {
        rng,
        ports: Vec::new(),
        blocks: Vec::new(),
        address_lets: Vec::new(),
        port_lets: Vec::new(),
        log_count: 0,
        negated_lists: true,
    };
    generator.policy()
}

const INTERESTING_PORTS: [u16; 16] =
    [1, 22, 53, 80, 123, 443, 1023, 1024, 3000, 5353, 8080, 8443, 32768, 40000, 60999, 65535];

impl Gen {
    fn policy(&mut self) -> GenPolicy {
        self.anchors();
        let mut head = Vec::new();
        for direction in ["in", "out"] {
            match self.rng.weighted(&[45, 10, 45]) {
                0 => head.push(Item::Line(format!("policy {direction} drop"))),
                1 => head.push(Item::Line(format!("policy {direction} accept"))),
                _ => {}
            }
        }
        head.extend(self.lets());

        // Chains first: their names are needed by jumps.
        let mut chains = Vec::new();
        let count = [0, 0, 0, 1, 1, 1, 2, 2, 3][self.rng.below(9) as usize];
        let names = ["web", "admin", "svc-1", "audit", "f2b-ssh"];
        for index in 0..count {
            let dirs = [Dirs::In, Dirs::In, Dirs::Out, Dirs::Out, Dirs::Both][self.rng.below(5) as usize];
            chains.push(Chain { name: names[index].to_string(), dirs });
        }
        let mut chain_items = Vec::new();
        for index in 0..chains.len() {
            let chain = &chains[index];
            let keep = self.rng.chance(10);
            let mut body = Vec::new();
            if keep {
                body.push("return".to_string());
            } else {
                // Nested jumps only to later chains entered from the same sides.
                let targets: Vec<String> = chains[index + 1..]
                    .iter()
                    .filter(|other| other.dirs == Dirs::Both || other.dirs == chain.dirs)
                    .map(|other| other.name.clone())
                    .collect();
                let ctx = Ctx {
                    direction: None,
                    dirs: chain.dirs,
                    allow_on: chain.dirs != Dirs::Both,
                    jump_targets: targets,
                    in_chain: true,
                };
                for _ in 0..self.rng.range(1, 5) {
                    body.push(self.rule(&ctx));
                }
                if self.rng.chance(30) {
                    body.push("return".to_string());
                }
            }
            let header = format!("chain {}{}", chain.name, if keep { " keep" } else { "" });
            chain_items.push(Item::Chain { header, body });
        }

        let mut statements = Vec::new();
        for _ in 0..self.rng.range(3, 12) {
            let direction = if self.rng.chance(55) { "in" } else { "out" };
            let ctx = Ctx {
                direction: Some(direction),
                dirs: if direction == "in" { Dirs::In } else { Dirs::Out },
                allow_on: true,
                jump_targets: chains
                    .iter()
                    .filter(|chain| chain.dirs.has(direction))
                    .map(|chain| chain.name.clone())
                    .collect(),
                in_chain: false,
            };
            statements.push(Item::Line(self.rule(&ctx)));
        }
        // Every chain is entered from each of its sides.
        for chain in &chains {
            for direction in ["in", "out"] {
                if chain.dirs.has(direction) {
                    let clauses = if self.rng.chance(50) { self.jump_clauses(direction) } else { String::new() };
                    let line = format!("jump {direction}{clauses} to {}", chain.name);
                    let at = self.rng.below(statements.len() as u64 + 1) as usize;
                    statements.insert(at, Item::Line(line));
                }
            }
        }
        for (direction, percent) in [("in", 35), ("out", 35)] {
            if self.rng.chance(percent) {
                let at = self.rng.below(statements.len() as u64 + 1) as usize;
                statements.insert(at, Item::Line(format!("allow {direction} state established, related")));
            }
        }
        if self.rng.chance(6) {
            let module = *self.rng.pick(&["established", "loopback"]);
            let at = self.rng.below(statements.len() as u64 + 1) as usize;
            statements.insert(at, Item::Line(format!("use {module}")));
        }

        // Forward and NAT rules no probe meets (the host does not route, and
        // NAT is on interfaces it lacks): they go through restore, rules.sh
        // and the saved files all the same.
        if self.rng.chance(8) {
            let line = self.rng.pick(&[
                "allow forward on eth1 -> eth2 tcp 80 stateful",
                "deny forward on any -> eth2 udp 53",
                "reject forward on eth1 -> any from 198.18.7.0/24",
                "allow forward on wan9 -> lan9 state established, related",
            ]);
            statements.push(Item::Line(line.to_string()));
        }
        if self.rng.chance(6) {
            let line = self.rng.pick(&[
                "masquerade out on wan9 from 198.19.7.0/24",
                "masquerade out on wan9 from fd00:19:7::/64",
                "forward-port in on wan9 tcp 8443 to 198.19.7.10 port 443",
                "snat out on wan9 from 198.19.8.0/24 to-source 198.19.0.1",
                "redirect in on wan9 tcp 80 to-port 3128",
            ]);
            statements.push(Item::Line(line.to_string()));
        }
        let mut items = head;
        items.extend(chain_items);
        items.extend(statements);
        GenPolicy { items }
    }

    /// The policy's anchor ports and blocks.
    fn anchors(&mut self) {
        for _ in 0..6 {
            let port =
                if self.rng.chance(60) { *self.rng.pick(&INTERESTING_PORTS) } else { self.rng.range(1, 65535) as u16 };
            self.ports.push(port);
        }
        for side in [Side::Peer, Side::Host] {
            for v6 in [false, true] {
                for _ in 0..3 {
                    let block = self.random_block(side, v6);
                    self.blocks.push(((side, v6), block));
                }
            }
        }
    }

    fn random_block(&mut self, side: Side, v6: bool) -> IpNet {
        let pool = pool(side, v6);
        // Inside an existing anchor now and then, so that blocks nest.
        let within: Vec<IpNet> =
            self.blocks.iter().filter(|((s, f), _)| *s == side && *f == v6).map(|(_, net)| *net).collect();
        let outer = if !within.is_empty() && self.rng.chance(40) { *self.rng.pick(&within) } else { pool };
        if v6 {
            let lengths = [32u8, 48, 64, 112, 120, 126, 127, 128];
            let length = (*self.rng.pick(&lengths)).max(outer.prefix_len());
            let IpNet::V6(outer) = outer else { unreachable!() };
            let base = u128::from(outer.network());
            let free_bits = 128 - u32::from(outer.prefix_len());
            let offset = if free_bits == 0 { 0 } else { self.rng.next() as u128 | ((self.rng.next() as u128) << 64) };
            let offset = if free_bits >= 128 { offset } else { offset & ((1u128 << free_bits) - 1) };
            let address = Ipv6Addr::from(base | offset);
            IpNet::V6(Ipv6Net::new(address, length).expect("valid").trunc())
        } else {
            let lengths = [16u8, 20, 24, 24, 28, 30, 31, 32, 32];
            let length = (*self.rng.pick(&lengths)).max(outer.prefix_len());
            let IpNet::V4(outer) = outer else { unreachable!() };
            let base = u32::from(outer.network());
            let free_bits = 32 - u32::from(outer.prefix_len());
            let offset = if free_bits == 0 { 0 } else { (self.rng.next() as u32) & ((1u64 << free_bits) - 1) as u32 };
            let address = Ipv4Addr::from(base | offset);
            IpNet::V4(Ipv4Net::new(address, length).expect("valid").trunc())
        }
    }

    fn lets(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        if self.rng.chance(40) {
            let side = if self.rng.chance(60) { Side::Peer } else { Side::Host };
            let fams = [Fams::V4, Fams::V6, Fams::Both][self.rng.below(3) as usize];
            let name = format!("nets{}", self.address_lets.len());
            let members = self.address_members(side, fams, 1, 3);
            items.push(Item::Line(format!("let {name} = {{ {} }}", members.join(", "))));
            self.address_lets.push((name, side, fams));
        }
        if self.rng.chance(30) {
            let name = format!("ports{}", self.port_lets.len());
            let mut list = self.port_items(2, 3);
            // A ports value cannot start with a variable; these never do.
            list.dedup();
            if list.len() < 2 {
                list.push("65535".to_string());
            }
            items.push(Item::Line(format!("let {name} = {}", list.join(", "))));
            self.port_lets.push(name);
        }
        items
    }

    fn block_text(net: &IpNet, bare_host: bool) -> String {
        let full = net.prefix_len() == net.max_prefix_len();
        if full && bare_host {
            net.addr().to_string()
        } else {
            net.to_string()
        }
    }

    /// An anchor block (or a fresh one) as text.
    fn address(&mut self, side: Side, v6: bool) -> String {
        let anchors: Vec<IpNet> =
            self.blocks.iter().filter(|((s, f), _)| *s == side && *f == v6).map(|(_, net)| *net).collect();
        let net = if self.rng.chance(75) { *self.rng.pick(&anchors) } else { self.random_block(side, v6) };
        let bare = self.rng.chance(70);
        Gen::block_text(&net, bare)
    }

    fn address_members(&mut self, side: Side, fams: Fams, low: u64, high: u64) -> Vec<String> {
        let mut members = Vec::new();
        match fams {
            Fams::V4 | Fams::V6 => {
                for _ in 0..self.rng.range(low, high) {
                    members.push(self.address(side, fams == Fams::V6));
                }
            }
            Fams::Both => {
                members.push(self.address(side, false));
                members.push(self.address(side, true));
                for _ in 2..self.rng.range(2, high.max(2)) {
                    let v6 = self.rng.chance(50);
                    members.push(self.address(side, v6));
                }
            }
        }
        members.dedup();
        members
    }

    /// `from`/`to` values: one address, a negated one, a set, a variable.
    fn addresses(&mut self, side: Side, fams: Fams) -> String {
        self.addresses_maybe_negated(side, fams, true)
    }

    /// `to` values, negated too (`to not ADDRESS` parses since the fix
    /// regressions.rs pins).
    fn to_addresses(&mut self, side: Side, fams: Fams) -> String {
        self.addresses_maybe_negated(side, fams, true)
    }

    fn addresses_maybe_negated(&mut self, side: Side, fams: Fams, negatable: bool) -> String {
        let lets: Vec<String> = self
            .address_lets
            .iter()
            .filter(|(_, s, f)| *s == side && (*f == fams || fams == Fams::Both && *f == Fams::Both))
            .map(|(name, ..)| name.clone())
            .collect();
        if !lets.is_empty() && self.rng.chance(25) {
            return format!("${}", self.rng.pick(&lets));
        }
        match fams {
            Fams::V4 | Fams::V6 => match self.rng.weighted(&[
                45,
                if negatable { 15 } else { 0 },
                30,
                if negatable && self.negated_lists { 10 } else { 0 },
            ]) {
                0 => self.address(side, fams == Fams::V6),
                1 => format!("not {}", self.address(side, fams == Fams::V6)),
                2 => format!("{{ {} }}", self.address_members(side, fams, 1, 3).join(", ")),
                // A negated list: a helper chain in the kernel.
                _ => format!("not {{ {} }}", self.address_members(side, fams, 2, 4).join(", ")),
            },
            Fams::Both => {
                let negated = if negatable && self.negated_lists && self.rng.chance(15) { "not " } else { "" };
                format!("{negated}{{ {} }}", self.address_members(side, fams, 2, 4).join(", "))
            }
        }
    }

    fn port(&mut self) -> u16 {
        if self.rng.chance(80) {
            *self.rng.pick(&self.ports.clone())
        } else {
            self.rng.range(1, 65535) as u16
        }
    }

    /// Port list items: single ports and ranges.
    fn port_items(&mut self, low: u64, high: u64) -> Vec<String> {
        let mut items = Vec::new();
        for _ in 0..self.rng.range(low, high) {
            if self.rng.chance(35) {
                let a = self.port();
                let b = if self.rng.chance(50) { self.port() } else { a.saturating_add(self.rng.range(1, 40) as u16) };
                let (low, high) = (a.min(b), a.max(b));
                if low == high {
                    items.push(low.to_string());
                } else {
                    items.push(format!("{low}-{high}"));
                }
            } else {
                items.push(self.port().to_string());
            }
        }
        items
    }

    fn port_list(&mut self) -> String {
        // Now and then more than one multiport match holds, so that a
        // negated list needs a helper chain.
        let mut items = if self.rng.chance(5) { self.port_items(14, 18) } else { self.port_items(1, 3) };
        if !self.port_lets.is_empty() && self.rng.chance(15) {
            let name = self.rng.pick(&self.port_lets.clone()).clone();
            items.push(format!("${name}"));
        }
        let negated = self.rng.chance(20)
            && !items.iter().any(|item| item.starts_with('$'))
            && (self.negated_lists || items.len() <= 7);
        format!("{}{}", if negated { "not " } else { "" }, items.join(", "))
    }

    /// Interfaces: named, negated, quoted, wildcards.
    fn interface(&mut self) -> String {
        (*self.rng.pick(&[
            "eth0", "eth0", "not eth0", "eth+", "e+", "not eth+", "lo", "not lo", "eth1", "not eth1", "\"eth0\"",
            "veth0",
        ]))
        .to_string()
    }

    fn state(&mut self) -> String {
        (*self.rng.pick(&[
            "new",
            "established",
            "established, related",
            "related",
            "invalid",
            "new, established",
            "not established",
            "not new",
            "not established, related",
            "untracked",
        ]))
        .to_string()
    }

    /// The clauses of a jump: a protocol and ports, addresses, `on`.
    fn jump_clauses(&mut self, direction: &str) -> String {
        let mut parts = Vec::new();
        if self.rng.chance(50) {
            let protocol = *self.rng.pick(&["tcp", "udp"]);
            if self.rng.chance(60) {
                parts.push(format!("{protocol} {}", self.port_list()));
            } else {
                parts.push(protocol.to_string());
            }
        }
        let (from_side, to_side) = if direction == "in" { (Side::Peer, Side::Host) } else { (Side::Host, Side::Peer) };
        let fams = [Fams::V4, Fams::V6, Fams::Both][self.rng.below(3) as usize];
        if self.rng.chance(35) {
            parts.push(format!("from {}", self.addresses(from_side, fams)));
        } else if self.rng.chance(25) {
            parts.push(format!("to {}", self.to_addresses(to_side, fams)));
        }
        if self.rng.chance(15) {
            parts.push(format!("on {}", self.interface()));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" {}", parts.join(" "))
        }
    }

    fn rule(&mut self, ctx: &Ctx) -> String {
        // allow, deny, reject, reject with, jump, log statement, return
        let jump_weight = if ctx.jump_targets.is_empty() { 0 } else { 8 };
        let return_weight = if ctx.in_chain { 10 } else { 0 };
        let action = self.rng.weighted(&[38, 18, 9, 9, jump_weight, 4, return_weight]);
        let (word, is_allow, is_reject, is_jump, is_log, is_return) = match action {
            0 => ("allow", true, false, false, false, false),
            1 => ("deny", false, false, false, false, false),
            2 | 3 => ("reject", false, true, false, false, false),
            4 => ("jump", false, false, true, false, false),
            5 => ("log", false, false, false, true, false),
            _ => ("return", false, false, false, false, true),
        };
        self.negated_lists = !is_return;
        let mut reject_kind: Option<&str> = None;
        let mut v4_only = false;
        // Protocol: tcp, udp, icmp, icmpv6, none, other, service.
        let protocol = self.rng.weighted(&[35, 25, 8, 7, 18, 4, 3]);
        if is_reject && action == 3 {
            let mut kinds = vec!["net-unreachable", "host-unreachable", "port-unreachable", "admin-prohibited"];
            if protocol == 0 {
                kinds.extend(["tcp-reset", "tcp-reset"]);
            }
            if protocol != 3 {
                kinds.extend(["proto-unreachable", "net-prohibited", "host-prohibited"]);
            }
            let kind = *self.rng.pick(&kinds);
            v4_only = matches!(kind, "proto-unreachable" | "net-prohibited" | "host-prohibited");
            reject_kind = Some(kind);
        }
        let fams = match protocol {
            2 => Fams::V4,
            3 => Fams::V6,
            _ if v4_only => Fams::V4,
            _ => [Fams::V4, Fams::V4, Fams::V6, Fams::V6, Fams::Both][self.rng.below(5) as usize],
        };
        let mut parts: Vec<String> = Vec::new();
        let mut query_types_only = true;
        match protocol {
            0 | 1 => {
                let name = if protocol == 0 { "tcp" } else { "udp" };
                if self.rng.chance(70) {
                    parts.push(format!("{name} {}", self.port_list()));
                } else {
                    parts.push(name.to_string());
                }
                if self.rng.chance(15) {
                    parts.push(format!("sport {}", self.port_list()));
                }
                // Flags outside PSH and URG only: probes cannot choose
                // whether an acknowledgement carries data.
                if protocol == 0 && self.rng.chance(8) {
                    let flags = *self.rng.pick(&[
                        "syn",
                        "not syn",
                        "FIN,SYN,RST,ACK syn",
                        "SYN,ACK syn,ack",
                        "SYN,RST rst",
                        "ACK ack",
                        "not SYN,ACK syn",
                    ]);
                    parts.push(format!("flags {flags}"));
                }
            }
            2 => {
                if self.rng.chance(45) {
                    let types = *self.rng.pick(&[
                        "echo-request",
                        "8",
                        "echo-request, 13",
                        "echo-reply",
                        "not echo-request",
                        "destination-unreachable",
                        "0, 8",
                        "not echo-request, 13",
                    ]);
                    let types = if types.contains(',') && types.starts_with("not") && !self.negated_lists { "echo-request" } else { types };
                    query_types_only = matches!(types, "echo-request" | "8" | "echo-request, 13");
                    parts.push(format!("icmp {types}"));
                } else {
                    parts.push("icmp".to_string());
                }
            }
            3 => {
                if self.rng.chance(45) {
                    let types = *self.rng.pick(&[
                        "echo-request",
                        "128",
                        "echo-reply",
                        "not echo-request",
                        "packet-too-big, 1",
                        "128, 129",
                        "not 128, 129",
                    ]);
                    let types = if types.contains(',') && types.starts_with("not") && !self.negated_lists { "echo-request" } else { types };
                    query_types_only = matches!(types, "echo-request" | "128");
                    parts.push(format!("icmpv6 {types}"));
                } else {
                    parts.push("icmpv6".to_string());
                }
            }
            4 => {}
            5 => {
                let other = *self.rng.pick(&["esp", "gre", "sctp 9999", "47", "udplite 7000-7010"]);
                parts.push(other.to_string());
            }
            _ => {
                let service = *self.rng.pick(&["ssh", "http, https", "dns", "ntp", "mosh"]);
                parts.push(format!("service {service}"));
            }
        }
        // Addresses: the opener's side after `from`, the answerer's after `to`.
        let direction = match (ctx.direction, ctx.dirs) {
            (Some(direction), _) => direction,
            (None, Dirs::In) => "in",
            (None, Dirs::Out) => "out",
            (None, Dirs::Both) => *self.rng.pick(&["in", "out"]),
        };
        let (from_side, to_side) = if direction == "in" { (Side::Peer, Side::Host) } else { (Side::Host, Side::Peer) };
        let has_from = self.rng.chance(40);
        let has_to = self.rng.chance(if has_from { 25 } else { 35 });
        // Now and then an address from the wrong side: it matches no probe.
        let wrong = self.rng.chance(5);
        if has_from {
            let side = if wrong { from_side.other() } else { from_side };
            parts.push(format!("from {}", self.addresses(side, fams)));
        }
        if has_to {
            let side = if wrong && !has_from { to_side.other() } else { to_side };
            parts.push(format!("to {}", self.to_addresses(side, fams)));
        }
        // The peer's MAC (both veth ends carry it), or another. Not in a
        // chain entered from `out`, which the compiler refuses (it used to
        // accept it with rules that did not load: see regressions.rs).
        if ctx.dirs == Dirs::In && !is_log && self.rng.chance(5) {
            let mac = *self.rng.pick(&["02:00:00:00:00:01", "not 02:00:00:00:00:01", "02:00:00:00:00:02"]);
            parts.push(format!("mac {mac}"));
        }
        if ctx.allow_on && self.rng.chance(18) {
            parts.push(format!("on {}", self.interface()));
        }
        let stateful = is_allow && query_types_only && self.rng.chance(35);
        if !stateful && !is_log && self.rng.chance(15) {
            parts.push(format!("state {}", self.state()));
        }
        // Options.
        let mut options: Vec<String> = Vec::new();
        if stateful {
            options.push("stateful".to_string());
        }
        if (is_allow || word == "deny" || is_reject) && self.rng.chance(8) {
            self.log_count += 1;
            if self.rng.chance(50) {
                options.push("log".to_string());
            } else {
                options.push(format!("log \"fwc-{}: \"", self.log_count));
            }
        }
        if (is_allow || word == "deny") && self.rng.chance(3) {
            options.push("limit 10000/second burst 10000".to_string());
        }
        if !is_return && self.rng.chance(5) {
            options.push(format!("comment \"generated rule {}\"", self.rng.below(1000)));
        }
        let family_option = if v4_only {
            Some("ipv4")
        } else if !has_from && !has_to && protocol != 2 && protocol != 3 && self.rng.chance(10) {
            Some(*self.rng.pick(&["ipv4", "ipv6"]))
        } else if fams == Fams::Both && self.rng.chance(15) {
            Some(*self.rng.pick(&["ipv4", "ipv6"]))
        } else {
            None
        };
        if let Some(option) = family_option {
            if !(option == "ipv4" && protocol == 3) {
                options.push(option.to_string());
            }
        }
        // Clauses in any order, options after them, as users write them.
        for index in (1..parts.len()).rev() {
            let other = self.rng.below(index as u64 + 1) as usize;
            parts.swap(index, other);
        }
        let mut line = word.to_string();
        if let Some(direction) = ctx.direction {
            line.push(' ');
            line.push_str(direction);
        }
        for part in parts {
            line.push(' ');
            line.push_str(&part);
        }
        if let Some(kind) = reject_kind {
            line.push_str(&format!(" with {kind}"));
        }
        if is_log {
            self.log_count += 1;
            line.push_str(&format!(" \"seen-{}: \"", self.log_count));
            if self.rng.chance(50) {
                line.push_str(" rate 5/second");
            }
        }
        for option in options {
            if is_jump || is_return {
                break;
            }
            line.push(' ');
            line.push_str(&option);
        }
        if is_jump {
            line.push_str(&format!(" to {}", self.rng.pick(&ctx.jump_targets)));
        }
        line
    }
}

/// Whether an address is in the pool of `side`.
pub fn in_pool(side: Side, address: IpAddr) -> bool {
    pool(side, address.is_ipv6()).contains(&address)
}
