//! `rules.nft`: the policy as one nftables table, `table inet fwc`, for
//! `nft -f`.
//!
//! The file first creates the table (a no-op when it exists) and deletes
//! it, then declares it whole: `nft -f` runs all of it as one transaction,
//! so loading it twice leaves one copy, a failed load changes nothing, and
//! no other table (Docker's, fail2ban's, iptables-nft's) is touched.
//!
//! It means exactly what the iptables outputs mean, over the same IR:
//!
//! - The filter chains are base chains `INPUT`, `FORWARD`, `OUTPUT` at
//!   priority `filter` with the policy's default verdicts; the NAT chains
//!   (only when the policy has NAT rules) are `NAT-PREROUTING` (priority
//!   `dstnat`), `NAT-INPUT` (100), `NAT-OUTPUT` (-100) and
//!   `NAT-POSTROUTING` (`srcnat`), the iptables nat table's priorities.
//!   A user chain `NAME` is `user-NAME` (nft refuses its keywords as chain
//!   names, and quoted names do not parse in every nft).
//! - A rule the IR has for both families with the same matches (no
//!   addresses, no ICMP types, no `limit` — each family's rule has a token
//!   bucket of its own) becomes one rule; a rule of one family starts with
//!   `meta nfproto ipv4|ipv6` unless an address match already says it.
//!   Within a chain only the order of each family's rules matters, so
//!   rules of one family between two shared rules are written IPv4 first.
//! - Adjacent rules that differ only in one address or port list are one
//!   rule over a set (see `consolidate`). A list of more than one value is
//!   a named interval set of the table, one per distinct list (see
//!   [`Sets`] for why not anonymous sets) — as long as the table has room:
//!   beyond [`SET_BUDGET`] sets, short lists are written as one rule per
//!   value instead (see [`sets_kept`] for why).
//! - Every rule's comment names the policy lines it came from.

use crate::consolidate::{self, Field, Values, SET_FROM};
use crate::ir::*;
use crate::source::{Sources, Span};
use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};
use std::fmt::Write as _;

/// The table fwc owns.
pub const TABLE: &str = "inet fwc";

/// nft keeps at most this many bytes of a rule's comment.
const COMMENT_MAX: usize = 128;

/// `rules.nft` and the number of rules and set members in it.
pub struct Rendered {
    pub text: String,
    pub rules: usize,
    pub set_members: usize,
}

/// Renders `rules.nft`. `sources` names the policy lines in comments.
/// With `merge` false, adjacent rules are not merged into sets, and every
/// list of more than one value is a set.
pub fn render(ruleset: &Ruleset, sources: &Sources, header: &str, merge: bool) -> Rendered {
    render_with(ruleset, sources, header, merge, SET_BUDGET)
}

/// [`render`] with room for `set_budget` sets of short lists instead of
/// [`SET_BUDGET`] (see [`sets_kept`]); tests use a small budget to write
/// both spellings of short lists in small policies.
pub fn render_with(ruleset: &Ruleset, sources: &Sources, header: &str, merge: bool, set_budget: usize) -> Rendered {
    let lines = LineIndex::new(sources);
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("# Load with `nft -f rules.nft`: one transaction that replaces table inet fwc and no other.\n");
    out.push_str(&format!("table {TABLE} {{}}\ndelete table {TABLE}\n\ntable {TABLE} {{\n"));

    let chains = chain_lists(ruleset);
    let nat = ruleset.rules.iter().any(|rule| rule.table == Table::Nat);
    let mut order: Vec<(Table, ChainRef)> =
        Table::Filter.builtin_chains().iter().map(|chain| (Table::Filter, chain.clone())).collect();
    let mut user: Vec<&str> = ruleset.chains.iter().map(|chain| chain.name.as_str()).collect();
    user.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    user.dedup();
    order.extend(user.into_iter().map(|name| (Table::Filter, ChainRef::User(name.to_string()))));
    if nat {
        order.extend(Table::Nat.builtin_chains().iter().map(|chain| (Table::Nat, chain.clone())));
    }
    let empty = Vec::new();
    let plans: Vec<Vec<Planned>> =
        order.iter().map(|(table, chain)| plan(chains.get(&(*table, chain.clone())).unwrap_or(&empty), merge)).collect();
    let kept = if merge { sets_kept(&plans, set_budget) } else { FxHashSet::default() };

    let mut body = String::new();
    let mut sets = Sets::default();
    let mut rules = 0;
    for ((table, chain), planned) in order.iter().zip(&plans) {
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(&format!("\tchain {} {{\n", chain_name(*table, chain)));
        if let Some(hook) = hook(*table, chain) {
            let policy = match (table, ruleset.policies.of(chain)) {
                (Table::Filter, Some(Verdict::Drop)) => "drop",
                _ => "accept",
            };
            body.push_str(&format!("\t\t{hook} policy {policy};\n"));
        }
        for entry in planned {
            let spelled = if merge && entry.vmap.is_none() {
                spell(entry.item.rule, entry.merged.as_ref(), &|key| kept.contains(key))
            } else {
                vec![(std::borrow::Cow::Borrowed(entry.item.rule), entry.merged.clone())]
            };
            for (rule, merged) in &spelled {
                body.push_str("\t\t");
                let item = Item { rule, both: entry.item.both };
                write_rule(item, merged.as_ref(), entry.vmap.as_deref(), &mut sets, &mut body);
                write_comment(&lines, &entry.spans, entry.item.rule.matches.comment.as_deref(), &mut body);
                body.push('\n');
                rules += 1;
            }
        }
        body.push_str("\t}\n");
    }
    let mut set_members = 0;
    for set in &sets.list {
        set_members += set.elements.len();
        let (name, kind) = (&set.name, set.kind);
        if set.elements.len() <= 8 {
            let elements = set.elements.join(", ");
            out.push_str(&format!("\tset {name} {{ type {kind}; flags interval; elements = {{ {elements} }}; }}\n"));
            continue;
        }
        out.push_str(&format!("\tset {name} {{\n\t\ttype {kind}\n\t\tflags interval\n\t\telements = {{\n"));
        for (position, element) in set.elements.iter().enumerate() {
            out.push_str("\t\t\t");
            out.push_str(element);
            out.push_str(if position + 1 < set.elements.len() { ",\n" } else { "\n" });
        }
        out.push_str("\t\t}\n\t}\n");
    }
    if !sets.list.is_empty() {
        out.push('\n');
    }
    out.push_str(&body);
    out.push_str("}\n");
    Rendered { text: out, rules, set_members }
}

/// A chain's name in the table.
pub fn chain_name(table: Table, chain: &ChainRef) -> String {
    match (table, chain) {
        (_, ChainRef::User(name)) => format!("user-{name}"),
        (Table::Filter, builtin) => builtin.name().to_string(),
        (Table::Nat, builtin) => format!("NAT-{}", builtin.name()),
    }
}

/// A built-in chain's `type … hook … priority …;`, as iptables hooks it.
fn hook(table: Table, chain: &ChainRef) -> Option<String> {
    let hook = match chain {
        ChainRef::Input => "input",
        ChainRef::Forward => "forward",
        ChainRef::Output => "output",
        ChainRef::Prerouting => "prerouting",
        ChainRef::Postrouting => "postrouting",
        ChainRef::User(_) => return None,
    };
    let (kind, priority) = match (table, chain) {
        (Table::Filter, _) => ("filter", "filter"),
        (Table::Nat, ChainRef::Prerouting) => ("nat", "dstnat"),
        (Table::Nat, ChainRef::Postrouting) => ("nat", "srcnat"),
        (Table::Nat, ChainRef::Input) => ("nat", "100"),
        (Table::Nat, _) => ("nat", "-100"),
    };
    Some(format!("type {kind} hook {hook} priority {priority};"))
}

/// Each (table, chain)'s rules of both families, in policy order.
fn chain_lists(ruleset: &Ruleset) -> FxHashMap<(Table, ChainRef), Vec<&Rule>> {
    let mut lists: FxHashMap<(Table, ChainRef), Vec<&Rule>> = FxHashMap::default();
    for rule in &ruleset.rules {
        lists.entry((rule.table, rule.chain.clone())).or_default().push(rule);
    }
    lists
}

/// A rule of the table: one IR rule, or an IPv4 rule standing for itself
/// and its IPv6 twin (`both`).
#[derive(Clone, Copy)]
struct Item<'a> {
    rule: &'a Rule,
    both: bool,
}

/// Pairs each policy line's IPv4 rules with its IPv6 rules when they are
/// the same rule but for the family, and orders the rest IPv4 first
/// between shared rules. Each family's order is kept.
fn pair_families<'a>(list: &[&'a Rule]) -> Vec<Item<'a>> {
    let mut paired: Vec<Item<'a>> = Vec::with_capacity(list.len());
    let mut start = 0;
    while start < list.len() {
        let span = list[start].origin.span;
        let mut end = start + 1;
        while end < list.len() && list[end].origin.span == span {
            end += 1;
        }
        let line = &list[start..end];
        let v4: Vec<&Rule> = line.iter().copied().filter(|rule| rule.family == Family::V4).collect();
        let v6: Vec<&Rule> = line.iter().copied().filter(|rule| rule.family == Family::V6).collect();
        if v4.len() == v6.len() && v4.iter().zip(&v6).all(|(a, b)| twins(a, b)) {
            paired.extend(v4.into_iter().map(|rule| Item { rule, both: true }));
        } else {
            paired.extend(v4.into_iter().chain(v6).map(|rule| Item { rule, both: false }));
        }
        start = end;
    }
    // Between shared rules, IPv4's rules first: they may then merge.
    let mut items = Vec::with_capacity(paired.len());
    let mut v6 = Vec::new();
    for item in paired {
        if item.both {
            items.append(&mut v6);
            items.push(item);
        } else if item.rule.family == Family::V4 {
            items.push(item);
        } else {
            v6.push(item);
        }
    }
    items.append(&mut v6);
    items
}

/// The same rule in both families, written the same way in nft.
fn twins(v4: &Rule, v6: &Rule) -> bool {
    let matches = &v4.matches;
    let neutral_protocol = !matches!(matches.protocol, Some(Protocol::ICMP | Protocol::ICMPV6 | Protocol::AH));
    let neutral_target = match &v4.target {
        Target::Reject(with) => icmpx(*with).is_some(),
        Target::Snat { .. } | Target::Dnat { .. } => false,
        _ => true,
    };
    v4.family == Family::V4
        && v6.family == Family::V6
        && v4.table == v6.table
        && v4.chain == v6.chain
        && v4.target == v6.target
        && matches == &v6.matches
        && matches.source.is_none()
        && matches.destination.is_none()
        && matches.icmp_type.is_none()
        && matches.limit.is_none()
        && neutral_protocol
        && neutral_target
}

/// The `icmpx` reject (both families at once) meaning what iptables'
/// answers for IPv4 and IPv6 mean, if there is one.
fn icmpx(with: RejectWith) -> Option<&'static str> {
    match with {
        RejectWith::TcpReset => Some("tcp reset"),
        RejectWith::NetUnreachable => Some("icmpx type no-route"),
        RejectWith::HostUnreachable => Some("icmpx type host-unreachable"),
        RejectWith::PortUnreachable => Some("icmpx type port-unreachable"),
        RejectWith::AdminProhibited => Some("icmpx type admin-prohibited"),
        _ => None,
    }
}

/// The ports and verdict of each run that can share one verdict map with
/// the first: runs equal in everything but their positive destination
/// ports and their verdict (accept, drop, return or a jump), with ports
/// that no two runs share, so that at most one of them matches a packet
/// and the map decides what that one run would. Fewer than two entries, or
/// a single verdict, means no map.
fn verdict_map<'a>(items: &[Item<'a>], runs: &[consolidate::Run]) -> Vec<(Vec<PortRange>, &'a Target)> {
    let ports_of = |run: &consolidate::Run| -> Option<Vec<PortRange>> {
        let rule = items[run.range.start].rule;
        match &run.merged {
            Some((Field::DestinationPorts, Values::Ports(ports))) => Some(ports.clone()),
            Some(_) => None,
            None => rule.matches.destination_ports.as_ref().filter(|ports| !ports.negated).map(|ports| ports.value.clone()),
        }
    };
    let verdict = |target: &Target| matches!(target, Target::Accept | Target::Drop | Target::Return | Target::Jump(_));
    let first = items[runs[0].range.start];
    let mut entries: Vec<(Vec<PortRange>, &'a Target)> = Vec::new();
    for run in runs {
        let item = items[run.range.start];
        let Some(ports) = ports_of(run) else { break };
        let rule = item.rule;
        if item.both != first.both || !verdict(&rule.target) || rule.matches.limit.is_some() {
            break;
        }
        let mut same = rule.clone();
        same.target = first.rule.target.clone();
        same.matches.destination_ports = first.rule.matches.destination_ports.clone();
        let alike = same.family == first.rule.family
            && same.table == first.rule.table
            && same.chain == first.rule.chain
            && same.target == first.rule.target
            && same.matches == first.rule.matches;
        let overlapping = entries.iter().any(|(taken, _)| {
            taken.iter().any(|p| ports.iter().any(|q| p.low <= q.high && q.low <= p.high))
        });
        if !alike || overlapping {
            break;
        }
        entries.push((ports, &rule.target));
    }
    if entries.iter().all(|(_, target)| *target == entries[0].1) {
        entries.clear();
    }
    entries
}

/// A rule of a chain as the consolidation leaves it, before its lists
/// are spelled: one item standing for a run of rules (`merged`), or for
/// several runs sharing a verdict map (`vmap`).
struct Planned<'a> {
    item: Item<'a>,
    merged: Option<(Field, Values)>,
    vmap: Option<Vec<(Vec<PortRange>, &'a Target)>>,
    /// The policy lines of every rule it stands for.
    spans: Vec<Span>,
}

/// One chain's rules: families paired, runs merged (with `merge`), and
/// runs that differ only in their ports and verdict in one verdict map.
fn plan<'a>(list: &[&'a Rule], merge: bool) -> Vec<Planned<'a>> {
    let items = pair_families(list);
    let item_rules: Vec<&Rule> = items.iter().map(|item| item.rule).collect();
    let runs = consolidate::runs(&item_rules, |a, b| merge && items[a].both == items[b].both);
    let mut planned = Vec::with_capacity(runs.len());
    let mut index = 0;
    while index < runs.len() {
        let verdicts = if merge { verdict_map(&items, &runs[index..]) } else { Vec::new() };
        let (taken, vmap) = if verdicts.len() >= 2 { (verdicts.len(), Some(verdicts)) } else { (1, None) };
        let spans = runs[index..index + taken]
            .iter()
            .flat_map(|run| items[run.range.clone()].iter().map(|item| item.rule.origin.span))
            .collect();
        let first = &runs[index];
        planned.push(Planned { item: items[first.range.start], merged: first.merged.clone(), vmap, spans });
        index += taken;
    }
    planned
}

/// How many named sets the table may hold, counting those of lists that
/// can also be written as one rule per value (see [`sets_kept`]).
pub const SET_BUDGET: usize = 4096;

/// A set's type and elements, as written: what makes two lists one set.
type SetKey = (&'static str, Vec<String>);

/// A list of a rule that would be a set, and whether it may be written as
/// one rule per value instead: positive, fewer than [`SET_FROM`] values,
/// and not under a `limit` (each rule has a token bucket of its own).
struct ListUse {
    key: SetKey,
    values: usize,
    splittable: bool,
}

/// The lists of more than one value a rule (or the run merged into it)
/// matches: the merged list, and its own port lists.
fn list_uses(rule: &Rule, merged: Option<&(Field, Values)>) -> Vec<ListUse> {
    let mut uses = Vec::new();
    match merged {
        Some((_, Values::Addresses(nets))) if nets.len() > 1 => {
            let key = address_key(nets, rule.family);
            uses.push(ListUse { values: key.1.len(), splittable: key.1.len() < SET_FROM, key });
        }
        Some((_, Values::Ports(ports))) if ports.len() > 1 => {
            let key = port_key(ports);
            uses.push(ListUse { values: key.1.len(), splittable: key.1.len() < SET_FROM, key });
        }
        _ => {}
    }
    for field in [Field::SourcePorts, Field::DestinationPorts] {
        if merged.is_some_and(|(merged, _)| *merged == field) {
            continue;
        }
        let own = if field == Field::SourcePorts { &rule.matches.source_ports } else { &rule.matches.destination_ports };
        let Some(own) = own.as_ref().filter(|own| own.value.len() > 1) else { continue };
        let key = port_key(&own.value);
        if key.1.len() > 1 {
            let splittable = !own.negated && key.1.len() < SET_FROM && rule.matches.limit.is_none();
            uses.push(ListUse { values: key.1.len(), splittable, key });
        }
    }
    uses
}

/// The short lists that stay named sets; every other short list is
/// written as one rule per value.
///
/// Why a budget: the kernel finds a set by its name by walking the
/// table's list of sets, once when the set is added (to refuse a second
/// set of that name) and once for every rule that uses it, so a
/// transaction costs about sets × (sets + rules using a set). With one set
/// per distinct list, the 100,000-rule benchmark policy has some 31,000
/// sets and takes over a minute to load; its rules cost far less. So the
/// table has at most [`SET_BUDGET`] sets, given to the short lists that
/// save the most rules ((values − 1) × rules using it, ties to the list
/// used first); lists of [`SET_FROM`] values or more, negated lists and
/// lists under a `limit` are sets whatever the budget, and take their
/// share of it first. Policies with fewer distinct lists than the budget
/// keep every list a set.
fn sets_kept(plans: &[Vec<Planned>], budget: usize) -> FxHashSet<SetKey> {
    let mut required: FxHashSet<SetKey> = FxHashSet::default();
    // Per short list: rules saved as a set, and when it is first used.
    let mut saving: FxHashMap<SetKey, (usize, usize)> = FxHashMap::default();
    for entry in plans.iter().flatten().filter(|entry| entry.vmap.is_none()) {
        for ListUse { key, values, splittable } in list_uses(entry.item.rule, entry.merged.as_ref()) {
            if !splittable {
                required.insert(key);
                continue;
            }
            let first = saving.len();
            saving.entry(key).or_insert((0, first)).0 += values - 1;
        }
    }
    let mut candidates: Vec<(SetKey, (usize, usize))> =
        saving.into_iter().filter(|(key, _)| !required.contains(key)).collect();
    candidates.sort_unstable_by(|(_, (a, a_first)), (_, (b, b_first))| b.cmp(a).then(a_first.cmp(b_first)));
    let room = budget.saturating_sub(required.len());
    required.extend(candidates.into_iter().take(room).map(|(key, _)| key));
    required
}

/// A rule to write, and the merged list it matches instead of its own.
type Spelled<'a> = (std::borrow::Cow<'a, Rule>, Option<(Field, Values)>);

/// The rules that write one planned rule: itself, or, for each short list
/// not kept as a set, one rule per value of the list (the product when
/// several lists are short), in the order of the values.
///
/// Why that keeps the behaviour: a list's values are disjoint (blocks
/// are aggregated, port ranges joined), so a packet matches at most one
/// of the rules, and that one does what the single rule would, even when
/// it logs or jumps to a chain that returns. Lists under a `limit` are
/// never split ([`list_uses`]).
fn spell<'a>(rule: &'a Rule, merged: Option<&(Field, Values)>, kept: &dyn Fn(&SetKey) -> bool) -> Vec<Spelled<'a>> {
    use std::borrow::Cow;
    let split = |key: SetKey, splittable: bool| splittable && !kept(&key);
    let mut spelled: Vec<Spelled<'a>> = Vec::new();
    match merged {
        Some((field, Values::Addresses(nets)))
            if nets.len() > 1 && split(address_key(nets, rule.family), nets.len() < SET_FROM) =>
        {
            for net in nets {
                let mut one = rule.clone();
                let side = if *field == Field::Source { &mut one.matches.source } else { &mut one.matches.destination };
                *side = Some(Match::positive(*net));
                spelled.push((Cow::Owned(one), None));
            }
        }
        Some((field, Values::Ports(ports))) if ports.len() > 1 && split(port_key(ports), ports.len() < SET_FROM) => {
            for range in ports {
                let mut one = rule.clone();
                *ports_side(&mut one, *field) = Some(Match::positive(vec![*range]));
                spelled.push((Cow::Owned(one), None));
            }
        }
        _ => spelled.push((Cow::Borrowed(rule), merged.cloned())),
    }
    for field in [Field::SourcePorts, Field::DestinationPorts] {
        if merged.is_some_and(|(merged, _)| *merged == field) {
            continue;
        }
        let own = match field {
            Field::SourcePorts => &rule.matches.source_ports,
            _ => &rule.matches.destination_ports,
        };
        let Some(own) = own.as_ref().filter(|own| own.value.len() > 1) else { continue };
        let ranges = consolidate::merge_ports(own.value.clone());
        let splittable = !own.negated && ranges.len() < SET_FROM && rule.matches.limit.is_none();
        if ranges.len() < 2 || !split(port_key(&ranges), splittable) {
            continue;
        }
        spelled = spelled
            .into_iter()
            .flat_map(|(one, merged)| {
                ranges.iter().map(move |range| {
                    let mut copy = one.clone().into_owned();
                    *ports_side(&mut copy, field) = Some(Match::positive(vec![*range]));
                    (Cow::Owned(copy), merged.clone())
                })
            })
            .collect();
    }
    spelled
}

fn ports_side(rule: &mut Rule, field: Field) -> &mut Option<Match<Vec<PortRange>>> {
    if field == Field::SourcePorts {
        &mut rule.matches.source_ports
    } else {
        &mut rule.matches.destination_ports
    }
}

/// The set an address list is: its blocks, aggregated, as written.
fn address_key(nets: &[IpNet], family: Family) -> SetKey {
    let texts = IpNet::aggregate(&nets.to_vec())
        .iter()
        .map(|net| {
            let mut text = String::new();
            push_net(net, &mut text);
            text
        })
        .collect();
    (if family == Family::V4 { "ipv4_addr" } else { "ipv6_addr" }, texts)
}

/// The set a port list is: its ranges, joined, as written.
fn port_key(ports: &[PortRange]) -> SetKey {
    ("inet_service", consolidate::merge_ports(ports.to_vec()).iter().map(range_text).collect())
}

/// A named set the rules use.
struct NamedSet {
    name: String,
    kind: &'static str,
    elements: Vec<String>,
}

/// The table's named sets, one per distinct list. A list is a named set
/// rather than an anonymous one: the kernel gives an anonymous set its
/// name (`__set%d`) by reading the name of every set of the table, and a
/// rule looks one up by walking them all before it finds it by its id, so
/// a 10,000-rule policy loaded in over 100 s with ~7,000 anonymous sets,
/// in seconds with its ~3,300 distinct lists as named sets.
#[derive(Default)]
struct Sets {
    list: Vec<NamedSet>,
    by_content: FxHashMap<SetKey, usize>,
    /// Sets so far of each kind: ports, IPv4 and IPv6 addresses.
    numbered: [usize; 3],
}

impl Sets {
    /// `@NAME` of the set holding these elements, created on first use.
    fn reference(&mut self, kind: &'static str, elements: Vec<String>) -> String {
        let key = (kind, elements);
        let index = match self.by_content.get(&key) {
            Some(index) => *index,
            None => {
                let (prefix, kind_index) = match kind {
                    "inet_service" => ("ports", 0),
                    "ipv4_addr" => ("addr4", 1),
                    _ => ("addr6", 2),
                };
                self.numbered[kind_index] += 1;
                let number = self.numbered[kind_index];
                self.list.push(NamedSet { name: format!("{prefix}-{number}"), kind, elements: key.1.clone() });
                self.by_content.insert(key, self.list.len() - 1);
                self.list.len() - 1
            }
        };
        format!("@{}", self.list[index].name)
    }

    /// One block inline, several as a set.
    fn addresses(&mut self, nets: &[IpNet], family: Family) -> String {
        let (kind, mut texts) = address_key(nets, family);
        match texts.len() {
            1 => texts.pop().expect("one block"),
            _ => self.reference(kind, texts),
        }
    }

    /// One port or range inline, several as a set.
    fn ports(&mut self, ports: &[PortRange]) -> String {
        let (kind, mut texts) = port_key(ports);
        match texts.len() {
            1 => texts.pop().expect("one range"),
            _ => self.reference(kind, texts),
        }
    }
}

/// Writes one rule (without its comment): matches in a fixed order, then
/// the limit, then the statement or verdict.
/// With `vmap`, the destination port decides the verdict through a map.
fn write_rule(
    item: Item,
    merged: Option<&(Field, Values)>,
    vmap: Option<&[(Vec<PortRange>, &Target)]>,
    sets: &mut Sets,
    out: &mut String,
) {
    let rule = item.rule;
    let matches = &rule.matches;
    let family = rule.family;
    let mut words: Vec<String> = Vec::new();
    let merged_addresses = |field: Field| match merged {
        Some((merged_field, Values::Addresses(nets))) if *merged_field == field => Some(nets),
        _ => None,
    };
    let merged_ports = |field: Field| match merged {
        Some((merged_field, Values::Ports(ports))) if *merged_field == field => Some(ports),
        _ => None,
    };
    let has_address = matches.source.is_some()
        || matches.destination.is_some()
        || merged_addresses(Field::Source).is_some()
        || merged_addresses(Field::Destination).is_some();
    if !item.both && !has_address {
        words.push(format!("meta nfproto {}", if family == Family::V4 { "ipv4" } else { "ipv6" }));
    }
    if let Some(interface) = &matches.in_interface {
        words.push(format!("iifname {}{}", not(interface.negated), interface_text(&interface.value)));
    }
    if let Some(interface) = &matches.out_interface {
        words.push(format!("oifname {}{}", not(interface.negated), interface_text(&interface.value)));
    }
    let ip = if family == Family::V4 { "ip" } else { "ip6" };
    // nft 1.0.6 joins two adjacent `!=` compares of one header into a
    // single compare of both fields, which is not the same condition: a
    // negated single destination next to a negated single source is
    // written as the positive set of everything else.
    let exact = |net: &IpNet| net.prefix_len() == net.max_prefix_len();
    let complement_destination = matches!((&matches.source, &matches.destination),
        (Some(source), Some(destination)) if source.negated && destination.negated && exact(&source.value) && exact(&destination.value));
    for (field, side, name) in
        [(Field::Source, &matches.source, "saddr"), (Field::Destination, &matches.destination, "daddr")]
    {
        if let Some(nets) = merged_addresses(field) {
            words.push(format!("{ip} {name} {}", sets.addresses(nets, family)));
        } else if let Some(side) = side {
            let mut text = format!("{ip} {name} ");
            if field == Field::Destination && complement_destination {
                text.push_str(&address_complement(side.value.addr()));
            } else {
                text.push_str(not(side.negated));
                push_net(&side.value, &mut text);
            }
            words.push(text);
        }
    }
    if let Some(protocol) = matches.protocol {
        let l4 = match protocol {
            Protocol::TCP => Some("tcp"),
            Protocol::UDP => Some("udp"),
            Protocol::SCTP => Some("sctp"),
            Protocol::UDPLITE => Some("udplite"),
            _ => None,
        };
        let has_ports = matches.source_ports.is_some() || matches.destination_ports.is_some();
        let has_flags = matches.tcp_flags.is_some();
        if let (Some(l4), true) = (l4, has_ports || has_flags) {
            let single_negated =
                |side: &Option<Match<Vec<PortRange>>>| side.as_ref().is_some_and(|side| side.negated && side.value.len() == 1 && side.value[0].low == side.value[0].high);
            let complement_port = single_negated(&matches.source_ports) && single_negated(&matches.destination_ports);
            for (field, side, name) in [
                (Field::SourcePorts, &matches.source_ports, "sport"),
                (Field::DestinationPorts, &matches.destination_ports, "dport"),
            ] {
                if field == Field::DestinationPorts && vmap.is_some() {
                    continue;
                }
                if let Some(ports) = merged_ports(field) {
                    words.push(format!("{l4} {name} {}", sets.ports(ports)));
                } else if let Some(side) = side {
                    let mut text = format!("{l4} {name} ");
                    if field == Field::DestinationPorts && complement_port {
                        let port = side.value[0].low;
                        let mut rest = Vec::new();
                        if port > 0 {
                            rest.push(PortRange { low: 0, high: port - 1 });
                        }
                        if port < u16::MAX {
                            rest.push(PortRange { low: port + 1, high: u16::MAX });
                        }
                        list(rest.iter(), &mut text, |range, out| out.push_str(&range_text(range)));
                    } else {
                        text.push_str(not(side.negated));
                        text.push_str(&sets.ports(&side.value));
                    }
                    words.push(text);
                }
            }
            if let Some(flags) = &matches.tcp_flags {
                words.push(format!(
                    "tcp flags & ({}) {} {}",
                    flag_names(flags.value.mask, "|"),
                    if flags.negated { "!=" } else { "==" },
                    if flags.value.set == 0 { "0x0".to_string() } else { flag_names(flags.value.set, "|") }
                ));
            }
        } else if let Some(icmp_type) = &matches.icmp_type {
            let name = if protocol == Protocol::ICMP { "icmp" } else { "icmpv6" };
            let IcmpType { kind, code } = icmp_type.value;
            match (code, icmp_type.negated) {
                (None, negated) => words.push(format!("{name} type {}{kind}", not(negated))),
                (Some(code), false) => words.push(format!("{name} type {kind} {name} code {code}")),
                (Some(code), true) => words.push(format!("{name} type . {name} code != {{ {kind} . {code} }}")),
            }
        } else if protocol == Protocol::AH && family == Family::V6 {
            // ip6tables finds AH with its own match, behind other extension
            // headers too; nft sees the header after the IPv6 header.
            words.push("ip6 nexthdr ah".to_string());
        } else {
            words.push(format!("meta l4proto {}", protocol_name(protocol)));
        }
    }
    if let Some(mac) = &matches.mac_source {
        words.push(format!("ether saddr {}{}", not(mac.negated), mac.value));
    }
    if let Some(states) = &matches.states {
        let names: Vec<String> = states.value.names().iter().map(|name| name.to_ascii_lowercase()).collect();
        // `ct state != a,b` compares the whole value with a|b; "none of
        // these" is a mask.
        if states.negated {
            words.push(format!("ct state & ({}) == 0", names.join("|")));
        } else {
            words.push(format!("ct state {}", names.join(",")));
        }
    }
    if let Some(limit) = &matches.limit {
        let unit = match limit.unit_seconds {
            1 => "second",
            60 => "minute",
            3600 => "hour",
            _ => "day",
        };
        words.push(format!("limit rate {}/{unit} burst {} packets", limit.count, limit.burst));
    }
    if let Some(entries) = vmap {
        let l4 = protocol_name(matches.protocol.expect("port rules have a protocol"));
        let mut text = format!("{l4} dport vmap {{ ");
        let mut keyed: Vec<(PortRange, &Target)> =
            entries.iter().flat_map(|(ports, target)| ports.iter().map(move |range| (*range, *target))).collect();
        keyed.sort_by_key(|(range, _)| *range);
        for (position, (range, target)) in keyed.iter().enumerate() {
            if position > 0 {
                text.push_str(", ");
            }
            text.push_str(&format!("{} : {}", range_text(range), verdict_text(target)));
        }
        text.push_str(" }");
        words.push(text);
        out.push_str(&words.join(" "));
        return;
    }
    words.push(match &rule.target {
        Target::Accept => "accept".to_string(),
        Target::Drop => "drop".to_string(),
        Target::Return => "return".to_string(),
        Target::Jump(chain) => format!("jump {}", chain_name(Table::Filter, &ChainRef::User(chain.clone()))),
        Target::Reject(with) if item.both => format!("reject with {}", icmpx(*with).expect("twins have an icmpx answer")),
        Target::Reject(RejectWith::TcpReset) => "reject with tcp reset".to_string(),
        Target::Reject(with) => {
            let kind = with.spelling(family).expect("lowering checked the family has this answer");
            match family {
                Family::V4 => format!("reject with icmp type {}", kind.trim_start_matches("icmp-").replace("proto-", "prot-")),
                Family::V6 => format!("reject with icmpv6 type {}", icmpv6_reject(kind)),
            }
        }
        Target::Log { prefix } => match prefix {
            Some(prefix) => format!("log prefix {}", quoted(prefix, usize::MAX)),
            None => "log".to_string(),
        },
        Target::Masquerade { ports } => match ports {
            Some(ports) => format!("masquerade to :{}", range_text(ports)),
            None => "masquerade".to_string(),
        },
        Target::Redirect { ports } => match ports {
            Some(ports) => format!("redirect to :{}", range_text(ports)),
            None => "redirect".to_string(),
        },
        Target::Snat { address, ports } => format!("snat {ip} to {}", nat_address(address, ports)),
        Target::Dnat { address, ports } => format!("dnat {ip} to {}", nat_address(address, ports)),
    });
    out.push_str(&words.join(" "));
}

/// A verdict as a map value.
fn verdict_text(target: &Target) -> String {
    match target {
        Target::Accept => "accept".to_string(),
        Target::Drop => "drop".to_string(),
        Target::Return => "return".to_string(),
        Target::Jump(chain) => format!("jump {}", chain_name(Table::Filter, &ChainRef::User(chain.clone()))),
        _ => unreachable!("only verdicts go into a verdict map"),
    }
}

fn not(negated: bool) -> &'static str {
    if negated {
        "!= "
    } else {
        ""
    }
}

/// `eth+` is nft's `eth*`; a literal `*` at the end is escaped.
fn interface_text(name: &str) -> String {
    match name.strip_suffix('+') {
        Some(stem) => quoted(&format!("{stem}*"), usize::MAX),
        None if name.ends_with('*') => quoted(&format!("{}\\*", &name[..name.len() - 1]), usize::MAX),
        None => quoted(name, usize::MAX),
    }
}

/// An nft string: double quotes, which it cannot escape inside a string,
/// become single quotes; at most `max` bytes.
fn quoted(text: &str, max: usize) -> String {
    let mut inner: String = text.replace('"', "'");
    if inner.len() > max {
        let mut cut = max;
        while !inner.is_char_boundary(cut) {
            cut -= 1;
        }
        inner.truncate(cut);
    }
    format!("\"{inner}\"")
}

fn list<T>(items: impl Iterator<Item = T>, out: &mut String, mut push: impl FnMut(T, &mut String)) {
    out.push_str("{ ");
    for (position, item) in items.enumerate() {
        if position > 0 {
            out.push_str(", ");
        }
        push(item, out);
    }
    out.push_str(" }");
}


/// Every address of the family but `address`, as a set of ranges.
fn address_complement(address: std::net::IpAddr) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let (number, max, v4) = match address {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), u128::from(u32::MAX), true),
        IpAddr::V6(v6) => (u128::from(v6), u128::MAX, false),
    };
    let text = |n: u128| if v4 { Ipv4Addr::from(n as u32).to_string() } else { Ipv6Addr::from(n).to_string() };
    let mut ranges = Vec::new();
    if number > 0 {
        ranges.push(format!("{}-{}", text(0), text(number - 1)));
    }
    if number < max {
        ranges.push(format!("{}-{}", text(number + 1), text(max)));
    }
    format!("{{ {} }}", ranges.join(", "))
}

fn range_text(range: &PortRange) -> String {
    if range.low == range.high {
        range.low.to_string()
    } else {
        format!("{}-{}", range.low, range.high)
    }
}

fn push_net(net: &IpNet, out: &mut String) {
    let full = match net {
        IpNet::V4(_) => 32,
        IpNet::V6(_) => 128,
    };
    if net.prefix_len() == full {
        write!(out, "{}", net.addr()).expect("writing to a String");
    } else {
        write!(out, "{}/{}", net.addr(), net.prefix_len()).expect("writing to a String");
    }
}

fn flag_names(bits: u8, separator: &str) -> String {
    TcpFlags::NAMES
        .iter()
        .filter(|(_, bit)| bits & bit != 0)
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(separator)
}

/// nft's names for the protocols it knows as words; others by number.
fn protocol_name(protocol: Protocol) -> String {
    match protocol.0 {
        1 => "icmp".to_string(),
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        50 => "esp".to_string(),
        51 => "ah".to_string(),
        58 => "icmpv6".to_string(),
        132 => "sctp".to_string(),
        136 => "udplite".to_string(),
        number => number.to_string(),
    }
}

fn icmpv6_reject(iptables: &str) -> &'static str {
    match iptables {
        "icmp6-no-route" => "no-route",
        "icmp6-addr-unreachable" => "addr-unreachable",
        "icmp6-port-unreachable" => "port-unreachable",
        _ => "admin-prohibited",
    }
}

fn nat_address(address: &std::net::IpAddr, ports: &Option<PortRange>) -> String {
    match (address, ports) {
        (_, None) => address.to_string(),
        (std::net::IpAddr::V4(v4), Some(ports)) => format!("{v4}:{}", range_text(ports)),
        (std::net::IpAddr::V6(v6), Some(ports)) => format!("[{v6}]:{}", range_text(ports)),
    }
}

/// ` comment "web.fw:12,14: TEXT"`: the policy lines, then the rule's own
/// comment, cut to what nft keeps.
fn write_comment(lines: &LineIndex, spans: &[Span], comment: Option<&str>, out: &mut String) {
    let mut text = String::new();
    let mut last_file = None;
    let mut seen: Vec<(usize, usize)> = Vec::new();
    for span in spans {
        let line = lines.line(span.file, span.start as usize);
        if seen.contains(&(span.file, line)) {
            continue;
        }
        seen.push((span.file, line));
        if seen.len() > 4 {
            text.push_str(",…");
            break;
        }
        if last_file == Some(span.file) {
            text.push(',');
        } else {
            if last_file.is_some() {
                text.push(' ');
            }
            text.push_str(&lines.names[span.file]);
            text.push(':');
            last_file = Some(span.file);
        }
        text.push_str(&line.to_string());
    }
    if let Some(comment) = comment {
        text.push_str(": ");
        text.push_str(comment);
    }
    out.push_str(" comment ");
    out.push_str(&quoted(&text, COMMENT_MAX));
}

/// Line numbers of byte offsets, without scanning a file per rule.
struct LineIndex {
    names: Vec<String>,
    starts: Vec<Vec<usize>>,
}

impl LineIndex {
    fn new(sources: &Sources) -> LineIndex {
        let files = sources.files();
        let names = files
            .iter()
            .map(|file| {
                let name = file.name.trim_start_matches('<').trim_end_matches('>');
                match file.origin {
                    crate::source::Origin::Path(_) => {
                        std::path::Path::new(name).file_name().map_or(name.to_string(), |n| n.to_string_lossy().into_owned())
                    }
                    _ => name.to_string(),
                }
            })
            .collect();
        let starts = files
            .iter()
            .map(|file| {
                std::iter::once(0).chain(file.text.match_indices('\n').map(|(offset, _)| offset + 1)).collect()
            })
            .collect();
        LineIndex { names, starts }
    }

    fn line(&self, file: usize, offset: usize) -> usize {
        match self.starts.get(file) {
            Some(starts) => starts.partition_point(|start| *start <= offset),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// rules.nft of a policy, with room for `budget` sets of short lists.
    fn nft(policy: &str, merge: bool, budget: usize) -> String {
        let fs = crate::source::OneFile { path: PathBuf::from("p.fw"), text: policy.to_string() };
        let compilation = crate::compile(&fs, Path::new("p.fw"), &[]).expect("readable");
        assert!(!compilation.has_errors(), "{}", compilation.render_diagnostics());
        render_with(&compilation.lowered.ruleset, &compilation.sources, "", merge, budget).text
    }

    /// The set declarations and the rules of chain INPUT, without comments.
    fn input(text: &str) -> Vec<String> {
        let sets = text.lines().filter(|line| line.starts_with("\tset "));
        let rules = text
            .lines()
            .skip_while(|line| *line != "\tchain INPUT {")
            .skip(2)
            .take_while(|line| *line != "\t}");
        sets.chain(rules).map(|line| line.trim().split(" comment ").next().unwrap_or_default().to_string()).collect()
    }

    const POLICY: &str = "policy in drop\n\
        allow in tcp 22, 80 from { 198.18.0.1, 198.18.0.9 } stateful\n\
        allow in udp 53, 123\n\
        allow in tcp 1000, 2000, 3000 limit 5/second\n\
        deny in tcp not 7, 9\n";

    #[test]
    fn short_lists_are_sets_while_the_table_has_room() {
        assert_eq!(
            input(&nft(POLICY, true, SET_BUDGET)),
            [
                "set addr4-1 { type ipv4_addr; flags interval; elements = { 198.18.0.1, 198.18.0.9 }; }",
                "set ports-1 { type inet_service; flags interval; elements = { 22, 80 }; }",
                "set ports-2 { type inet_service; flags interval; elements = { 53, 123 }; }",
                "set ports-3 { type inet_service; flags interval; elements = { 1000, 2000, 3000 }; }",
                "set ports-4 { type inet_service; flags interval; elements = { 7, 9 }; }",
                "ip saddr @addr4-1 tcp dport @ports-1 ct state new,established accept",
                "udp dport @ports-2 accept",
                "meta nfproto ipv4 tcp dport @ports-3 limit rate 5/second burst 5 packets accept",
                "meta nfproto ipv6 tcp dport @ports-3 limit rate 5/second burst 5 packets accept",
                "tcp dport != @ports-4 drop",
            ]
        );
    }

    /// Without room, a short list is a rule per value (a product for two
    /// lists); a list under a limit (one token bucket) and a negated list
    /// stay sets.
    #[test]
    fn beyond_the_budget_short_lists_are_one_rule_per_value() {
        assert_eq!(
            input(&nft(POLICY, true, 0)),
            [
                "set ports-1 { type inet_service; flags interval; elements = { 1000, 2000, 3000 }; }",
                "set ports-2 { type inet_service; flags interval; elements = { 7, 9 }; }",
                "ip saddr 198.18.0.1 tcp dport 22 ct state new,established accept",
                "ip saddr 198.18.0.1 tcp dport 80 ct state new,established accept",
                "ip saddr 198.18.0.9 tcp dport 22 ct state new,established accept",
                "ip saddr 198.18.0.9 tcp dport 80 ct state new,established accept",
                "udp dport 53 accept",
                "udp dport 123 accept",
                "meta nfproto ipv4 tcp dport @ports-1 limit rate 5/second burst 5 packets accept",
                "meta nfproto ipv6 tcp dport @ports-1 limit rate 5/second burst 5 packets accept",
                "tcp dport != @ports-2 drop",
            ]
        );
    }

    /// The two sets that must be take two places; the third goes to the
    /// list that saves most rules: the addresses and the ports of line 2
    /// each save two (the allow and its reply), the addresses come first.
    #[test]
    fn the_budget_goes_to_the_lists_that_save_most_rules() {
        assert_eq!(
            input(&nft(POLICY, true, 3)),
            [
                "set addr4-1 { type ipv4_addr; flags interval; elements = { 198.18.0.1, 198.18.0.9 }; }",
                "set ports-1 { type inet_service; flags interval; elements = { 1000, 2000, 3000 }; }",
                "set ports-2 { type inet_service; flags interval; elements = { 7, 9 }; }",
                "ip saddr @addr4-1 tcp dport 22 ct state new,established accept",
                "ip saddr @addr4-1 tcp dport 80 ct state new,established accept",
                "udp dport 53 accept",
                "udp dport 123 accept",
                "meta nfproto ipv4 tcp dport @ports-1 limit rate 5/second burst 5 packets accept",
                "meta nfproto ipv6 tcp dport @ports-1 limit rate 5/second burst 5 packets accept",
                "tcp dport != @ports-2 drop",
            ]
        );
    }

    /// A list of SET_FROM blocks or more is one set lookup whatever the
    /// budget: the per-packet cost of a long deny list.
    #[test]
    fn long_lists_stay_sets_without_room() {
        let blocks: Vec<String> = (0..SET_FROM).map(|n| format!("198.18.{}.0/24", n * 2)).collect();
        let policy = format!("policy in drop\ndeny in from {{ {} }}\nallow in tcp 22\n", blocks.join(", "));
        let rules = input(&nft(&policy, true, 0));
        assert_eq!(rules.len(), 3, "{rules:#?}");
        assert!(rules[0].starts_with("set addr4-1 {"), "{rules:#?}");
        assert_eq!(rules[1..], ["ip saddr @addr4-1 drop", "tcp dport 22 accept"]);
    }

    /// `--no-consolidate`: one kernel rule per rule fwc lowers, lists as sets.
    #[test]
    fn without_consolidation_lists_are_sets() {
        let rules = input(&nft("policy in drop\nallow in udp 53, 123\n", false, 0));
        assert_eq!(
            rules,
            ["set ports-1 { type inet_service; flags interval; elements = { 53, 123 }; }", "udp dport @ports-1 accept"]
        );
    }

    #[test]
    fn the_spelling_is_deterministic() {
        let lists: Vec<String> =
            (0..40).map(|n| format!("allow in tcp {}, {} from 198.18.{n}.1\n", 1000 + n, 2000 + n % 7)).collect();
        let policy = format!("policy in drop\n{}", lists.concat());
        let first = nft(&policy, true, 10);
        assert_eq!(first, nft(&policy, true, 10));
        assert_eq!(first.lines().filter(|line| line.starts_with("\tset ")).count(), 10);
    }
}
