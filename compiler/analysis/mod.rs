//! Static analysis of the compiled rules: exact, over the real evaluation
//! order (chains, jumps, returns, policies, stdlib rules included).
//!
//! - shadowed-rule: no packet reaches the rule (earlier rules decide all of
//!   them);
//! - redundant-rule: removing the rule alone changes no packet's verdict.
//!   When only shadowed rules would take over, the finding is the shadowed
//!   rule, and the redundancy is not reported.
//!
//! Both work over a flattened chain (`flatten.rs`, rules' matches as boxes
//! from `boxes.rs`): a rule's *reach* is its effective match minus
//! everything decided before it. `partition.rs` analyses each chain at
//! once by cutting the packet space into regions until the rules in each
//! are simple; the built-in chains run side by side (`crate::parallel`).
//! See docs/ARCHITECTURE.md for the algorithm and its cost.

mod boxes;
mod flatten;
mod partition;
mod host;
mod unused;

use crate::diagnostics::{Code, Diagnostic};
use crate::ir::*;
use crate::source::{Origin, Sources, Span};
use crate::parallel;
use boxes::Encoder;

pub use host::{drop_gaps_of_shadowed, host_checks, HostContext};
pub use unused::unused_checks;

/// What the analysis found about one IR rule.
#[derive(Clone, Debug, Default)]
pub struct RuleFacts {
    /// Reached by some packet in at least one place it appears.
    pub reachable: bool,
    /// Appears in some flattened chain.
    pub seen: bool,
    /// Removing it changes no verdict, wherever it appears.
    pub redundant: bool,
    /// Earlier rules that decide packets this rule matches.
    pub covered_by: Vec<usize>,
    /// For a redundant rule: later rules (or none: the policy) that decide
    /// its packets the same way.
    pub same_as: Vec<usize>,
}

/// How many steps (entries of the regions' lists looked at and copied,
/// see `partition.rs`) the order analysis may spend. Exact analysis can
/// blow up on a policy built for it (any exact method can): rules that
/// cross each other in every field cut the packet space into a number of
/// regions that grows with the product of their counts. Past this budget
/// the analysis stops and says so rather than hold up a build.
/// Deterministic, unlike a time limit, so the same policy always gets the
/// same diagnostics. Each built-in chain of each family has its own (the
/// second pass spends what the first left). The generated 100,000-rule
/// benchmark policy spends about 5.6 million on its IPv4 input chain
/// (docs/performance.md).
pub const BUDGET: u64 = 100_000_000;

/// Facts for every IR rule of the filter table (index-aligned), with the
/// covering rules of every rule.
pub fn rule_facts(ruleset: &Ruleset) -> Vec<RuleFacts> {
    rule_facts_within(ruleset, u64::MAX, true).expect("no budget")
}

/// Facts within a budget of steps (see `BUDGET`), `None` when it runs
/// out. `covered_by` is filled for unreached rules written in the policy,
/// and for reached ones only when `explain_reached` (a second pass over
/// each chain). The built-in chains of both families are analysed side by
/// side, each with a budget of its own and each through both passes
/// without waiting for the others, so the answer does not depend on
/// their timing.
pub fn rule_facts_within(ruleset: &Ruleset, budget: u64, explain_reached: bool) -> Option<Vec<RuleFacts>> {
    facts_and_chains(ruleset, budget, explain_reached).0
}

/// The built-in chains of both families as the order analysis built them,
/// each with the code of the loopback interface if a rule names it: the
/// host checks ask their questions of them.
#[derive(Default)]
pub struct Built(Vec<((Family, ChainRef), partition::Chain, Option<u128>)>);

/// `rule_facts_within`, and the chains it built.
fn facts_and_chains(ruleset: &Ruleset, budget: u64, explain_reached: bool) -> (Option<Vec<RuleFacts>>, Built) {
    // Each family's encoder and chains, found side by side.
    let by_family: Vec<(Family, Vec<usize>)> = boxes::by_family(ruleset).into_iter().collect();
    let families: Vec<(Encoder, flatten::Chains)> = parallel::map(&by_family, |(family, indices)| {
        let filter: Vec<&Rule> = indices.iter().map(|index| &ruleset.rules[*index]).filter(|rule| rule.table == Table::Filter).collect();
        (Encoder::new(*family, &filter), flatten::chains(ruleset, indices))
    });
    let builtins = [ChainRef::Input, ChainRef::Forward, ChainRef::Output];
    let tasks: Vec<(usize, &ChainRef)> = (0..families.len()).flat_map(|family| builtins.iter().map(move |builtin| (family, builtin))).collect();
    // The longest chains first, so that the cores finish together.
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_by_key(|task| {
        let (family, builtin) = tasks[*task];
        std::cmp::Reverse(families[family].1.get(builtin).map_or(0, Vec::len))
    });
    // Reach and redundancy at every position of every chain, then the
    // rules that decide the packets of the rules it does not reach (of
    // every rule, when `explain_reached`). A rule reached in another chain
    // is asked about too, so that no chain waits for the others; what is
    // found about it is not used.
    let analysed = parallel::map(&order, |task| {
        let (family, builtin) = tasks[*task];
        let (encoder, chains) = &families[family];
        let mut chain = build(ruleset, encoder, chains, builtin);
        let mut left = budget;
        let analysed = (|| {
            let found = chain.analyse(&mut left)?;
            let rules: Vec<usize> = (0..chain.len()).map(|position| chain.rule(position)).collect();
            let mut reached = rustc_hash::FxHashSet::default();
            reached.extend(rules.iter().zip(&found).filter(|(_, found)| found.reachable).map(|(rule, _)| *rule));
            let wanted: Vec<bool> =
                rules.iter().map(|rule| ruleset.rules[*rule].origin.derived.is_none() && (explain_reached || !reached.contains(rule))).collect();
            let deciders = if wanted.contains(&true) { chain.deciders(&wanted, &mut left)? } else { Vec::new() };
            Some((rules, found, deciders))
        })();
        (((by_family[family].0, builtin.clone()), chain, encoder.interface_code("lo")), analysed)
    });
    let mut built = Vec::new();
    let mut chains: Vec<Option<(Vec<usize>, Vec<partition::Found>, Vec<Vec<usize>>)>> = (0..tasks.len()).map(|_| None).collect();
    let mut finished = true;
    for (task, (chain, analysed)) in order.iter().zip(analysed) {
        built.push(chain);
        finished &= analysed.is_some();
        chains[*task] = analysed;
    }
    let built = Built(built);
    if !finished {
        return (None, built);
    }
    let mut facts = vec![RuleFacts { redundant: true, ..RuleFacts::default() }; ruleset.rules.len()];
    for (rules, found, _) in chains.iter_mut().flatten() {
        for (rule, found) in rules.iter().zip(std::mem::take(found)) {
            let fact = &mut facts[*rule];
            fact.seen = true;
            fact.reachable |= found.reachable;
            if let Some((redundant, same_as)) = found.redundancy {
                fact.redundant &= redundant;
                if redundant && fact.same_as.is_empty() {
                    fact.same_as = same_as;
                }
            }
        }
    }
    // The deciders of the rules asked about, from the first chain that
    // has some.
    for (rules, _, deciders) in chains.into_iter().flatten() {
        for (rule, deciders) in rules.into_iter().zip(deciders) {
            let fact = &mut facts[rule];
            let asked = ruleset.rules[rule].origin.derived.is_none() && (!fact.reachable || explain_reached);
            if asked && fact.covered_by.is_empty() {
                fact.covered_by = deciders;
            }
        }
    }
    for fact in &mut facts {
        if !fact.seen || !fact.reachable {
            fact.redundant = false;
        }
    }
    (Some(facts), built)
}


/// One built-in chain of one family, flattened and encoded, for
/// questions about its packets (the host checks), and the code of the
/// loopback interface if a rule names it.
fn chain_of(ruleset: &Ruleset, family: Family, builtin: &ChainRef) -> (partition::Chain, Option<u128>) {
    let indices: Vec<usize> = (0..ruleset.rules.len()).filter(|index| ruleset.rules[*index].family == family).collect();
    let filter: Vec<&Rule> = indices.iter().map(|index| &ruleset.rules[*index]).filter(|rule| rule.table == Table::Filter).collect();
    let encoder = Encoder::new(family, &filter);
    let chains = flatten::chains(ruleset, &indices);
    (build(ruleset, &encoder, &chains, builtin), encoder.interface_code("lo"))
}

/// A built-in chain, flattened and encoded, with its policy.
fn build(ruleset: &Ruleset, encoder: &Encoder, chains: &flatten::Chains, builtin: &ChainRef) -> partition::Chain {
    let flat = flatten::flatten(ruleset, encoder, chains, builtin);
    let policy = match ruleset.policies.of(builtin).expect("built-in") {
        Verdict::Accept => Target::Accept,
        Verdict::Drop => Target::Drop,
    };
    partition::Chain::new(ruleset, &flat, &policy, encoder)
}

fn decides(rule: &Rule) -> bool {
    matches!(rule.target, Target::Accept | Target::Drop | Target::Reject(_))
}

/// A source rule: the IR rules one written rule became.
struct SourceRule {
    span: Span,
    via: Vec<Span>,
    rules: Vec<usize>,
}

/// Shadowed and redundant rules, as diagnostics at the rules as written.
pub fn order_checks(ruleset: &Ruleset, sources: &Sources, levels: &crate::Levels) -> Vec<Diagnostic> {
    order_checks_within(ruleset, sources, levels, BUDGET)
}

/// `order_checks` with a budget of its own (tests use a small one).
pub fn order_checks_within(ruleset: &Ruleset, sources: &Sources, levels: &crate::Levels, budget: u64) -> Vec<Diagnostic> {
    order_checks_keeping(ruleset, sources, levels, budget).0
}

/// `order_checks_within`, and the chains it built, for the host checks.
pub fn order_checks_keeping(ruleset: &Ruleset, sources: &Sources, levels: &crate::Levels, budget: u64) -> (Vec<Diagnostic>, Built) {
    let filter_rules = ruleset.rules.iter().filter(|rule| rule.table == Table::Filter).count();
    if !levels.enabled(Code::ShadowedRule) && !levels.enabled(Code::RedundantRule) && !levels.enabled(Code::ConflictingRules) {
        return (Vec::new(), Built::default());
    }
    let (facts, built) = facts_and_chains(ruleset, budget, levels.enabled(Code::ConflictingRules));
    let Some(facts) = facts else {
        return (vec![Diagnostic::new(
            Code::AnalysisIncomplete,
            format!(
                "the order analysis did not finish ({filter_rules} kernel rules; limit {budget} steps): shadowed and redundant rules are not reported"
            ),
        )
        .note("rules that cross each other in several fields (ranges that overlap without one holding the other) cut the packets into very many regions, which makes the exact analysis expensive; fwc test still checks every expectation")], built);
    };
    // In one pass over the rules: the IR rules of each source rule (a
    // rule from a stdlib module once per `use` that brought it in), in the
    // order of the source; the rules that log; the filter rules that jump
    // to each chain, for rules that no packet entering their chain matches.
    let mut sources_of: Vec<SourceRule> = Vec::new();
    let mut index_of: rustc_hash::FxHashMap<(Span, &[Span]), usize> = rustc_hash::FxHashMap::default();
    let mut logging: rustc_hash::FxHashSet<Span> = Default::default();
    let mut jumps: rustc_hash::FxHashMap<&str, Vec<usize>> = Default::default();
    // The source rule of the rule before: one written rule's IR rules
    // mostly come one after another.
    let mut last: Option<usize> = None;
    for (index, rule) in ruleset.rules.iter().enumerate() {
        match &rule.target {
            Target::Log { .. } => {
                logging.insert(rule.origin.span);
            }
            Target::Jump(chain) if rule.table == Table::Filter => jumps.entry(chain.as_str()).or_default().push(index),
            _ => {}
        }
        // Derived rules (replies, LOG halves, reject answers) never warn.
        if rule.origin.derived.is_some() || rule.table != Table::Filter || !decides(rule) && !matches!(rule.target, Target::Jump(_)) {
            continue;
        }
        let key = (rule.origin.span, rule.origin.via.as_slice());
        let slot = match last {
            Some(slot) if (sources_of[slot].span, sources_of[slot].via.as_slice()) == key => slot,
            _ => *index_of.entry(key).or_insert_with(|| {
                sources_of.push(SourceRule { span: rule.origin.span, via: rule.origin.via.clone(), rules: Vec::new() });
                sources_of.len() - 1
            }),
        };
        sources_of[slot].rules.push(index);
        last = Some(slot);
    }
    sources_of.sort_unstable_by(|a, b| (a.span, &a.via).cmp(&(b.span, &b.via)));
    // The findings, written on every core in chunks of the rules, joined in
    // order.
    let chunks: Vec<&[SourceRule]> = sources_of.chunks(sources_of.len().div_ceil(4 * parallel::threads()).max(1024)).collect();
    let found = parallel::map(&chunks, |chunk| {
        let mut diagnostics = Vec::new();
        for source in *chunk {
            let seen: Vec<usize> = source.rules.iter().copied().filter(|index| facts[*index].seen).collect();
            if seen.is_empty() {
                continue;
            }
            let shadowed = seen.iter().all(|index| !facts[*index].reachable);
            if !shadowed && levels.enabled(Code::ConflictingRules) {
                // Reached, but earlier rules with another verdict take part of
                // its packets: which rule wins depends on the order.
                let first = &ruleset.rules[source.rules[0]];
                let others: Vec<usize> = dedup_sources(
                    ruleset,
                    seen.iter().flat_map(|index| facts[*index].covered_by.iter().copied()).filter(|other| {
                        ruleset.rules[*other].target != first.target && ruleset.rules[*other].origin.span != source.span
                    }),
                );
                if decides(first) && !others.is_empty() {
                    let (primary, _) = report_span(sources, source.span, &source.via);
                    let mut diagnostic = Diagnostic::new(
                        Code::ConflictingRules,
                        "this rule overlaps earlier rules that decide differently: order decides",
                    )
                    .primary(primary, format!("{} the rest", verdict_word(&first.target)));
                    for other in others.iter().take(4) {
                        let rule = &ruleset.rules[*other];
                        let (span, _) = report_span(sources, rule.origin.span, &rule.origin.via);
                        diagnostic = diagnostic.secondary(span, format!("{} some of the same packets first", verdict_word(&rule.target)));
                    }
                    diagnostics.push(diagnostic.note("fine for an exception before its general rule; otherwise make the rules disjoint"));
                }
            }
            if shadowed {
                let covering: Vec<usize> = dedup_sources(ruleset, seen.iter().flat_map(|index| facts[*index].covered_by.iter().copied()));
                diagnostics.push(shadowed_diagnostic(ruleset, sources, source, &covering, &jumps));
                continue;
            }
            let deciding: Vec<usize> = seen.iter().copied().filter(|index| decides(&ruleset.rules[*index])).collect();
            // A rule that logs does something even when its verdict is redundant.
            let logs = logging.contains(&source.span);
            if !logs && !deciding.is_empty() && deciding.iter().all(|index| facts[*index].redundant) {
                let same: Vec<usize> = dedup_sources(ruleset, deciding.iter().flat_map(|index| facts[*index].same_as.iter().copied()));
                // Two copies of a rule: the second is the shadowed finding; do not
                // also call the first redundant because of it.
                if !same.is_empty() && same.iter().all(|index| !facts[*index].reachable) {
                    continue;
                }
                diagnostics.push(redundant_diagnostic(ruleset, sources, source, &same));
            }
        }
        diagnostics
    });
    (found.into_iter().flatten().collect(), built)
}

/// One IR rule per source rule, in order, derived rules left out.
fn dedup_sources(ruleset: &Ruleset, rules: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut seen = rustc_hash::FxHashSet::default();
    rules.filter(|index| seen.insert(ruleset.rules[*index].origin.span)).collect()
}

fn in_stdlib(sources: &Sources, span: Span) -> bool {
    matches!(sources.get(span.file).origin, Origin::Stdlib(_))
}

/// Where to report a rule: itself, or for a stdlib rule the user's line
/// that brought it in.
fn report_span(sources: &Sources, span: Span, via: &[Span]) -> (Span, Option<Span>) {
    if in_stdlib(sources, span) {
        if let Some(user) = via.iter().find(|via| !in_stdlib(sources, **via)) {
            return (*user, Some(span));
        }
    }
    (span, None)
}

/// A secondary label on another rule. A stdlib rule is labelled at the
/// user's `use` line, which may bring in several: the label quotes the
/// stdlib rule, and says it once.
fn push_label(labels: &mut Vec<(Span, String)>, sources: &Sources, rule: &Rule, label: String) {
    let (span, stdlib_rule) = report_span(sources, rule.origin.span, &rule.origin.via);
    let label = match stdlib_rule {
        Some(stdlib_rule) => {
            let words: Vec<&str> = sources.text(stdlib_rule).split_whitespace().collect();
            format!("{label}: `{}`", words.join(" "))
        }
        None => label,
    };
    if !labels.iter().any(|(other_span, other)| *other_span == span && *other == label) {
        labels.push((span, label));
    }
}

fn verdict_word(target: &Target) -> &'static str {
    match target {
        Target::Accept => "allows",
        Target::Drop => "denies",
        Target::Reject(_) => "rejects",
        _ => "decides",
    }
}

fn shadowed_diagnostic(
    ruleset: &Ruleset,
    sources: &Sources,
    source: &SourceRule,
    covering: &[usize],
    jumps: &rustc_hash::FxHashMap<&str, Vec<usize>>,
) -> Diagnostic {
    let first = &ruleset.rules[source.rules[0]];
    let (primary, stdlib_rule) = report_span(sources, source.span, &source.via);
    let mut labels = Vec::new();
    let (message, note) = match (covering.is_empty(), &first.chain) {
        // No earlier rule decides its packets: none gets this far in its
        // chain (the jumps send others, or a `return` before it takes them
        // back). The jumps into the chain are named instead.
        (true, ChainRef::User(chain)) => {
            for index in dedup_sources(ruleset, jumps.get(chain.as_str()).into_iter().flatten().copied()).into_iter().take(4) {
                push_label(&mut labels, sources, &ruleset.rules[index], format!("packets enter `{chain}` here"));
            }
            (
                format!("this rule is never reached: no packet that gets this far in chain `{chain}` matches it"),
                format!("the jumps to `{chain}`, and any `return` before the rule, leave it no packet: make the rule match what they send, or remove it"),
            )
        }
        _ => {
            for index in covering.iter().take(4) {
                let rule = &ruleset.rules[*index];
                let word = verdict_word(&rule.target);
                let label = if rule.target != first.target {
                    format!("wins: {word} these packets first")
                } else {
                    format!("already {word} them")
                };
                push_label(&mut labels, sources, rule, label);
            }
            if covering.iter().any(|index| ruleset.rules[*index].target != first.target) {
                (
                    "this rule is never reached: earlier rules decide all its packets, differently".to_string(),
                    "the first matching rule decides: if this rule is the exception, move it above the rules that win".to_string(),
                )
            } else {
                (
                    "this rule is never reached: earlier rules already decide all its packets".to_string(),
                    "remove it, or move it above the rules that already decide its packets if it should count".to_string(),
                )
            }
        }
    };
    let mut diagnostic = Diagnostic::new(Code::ShadowedRule, message).primary(
        primary,
        if stdlib_rule.is_some() { "a rule this brings in is never reached" } else { "never reached" },
    );
    if let Some(stdlib_rule) = stdlib_rule {
        diagnostic = diagnostic.secondary(stdlib_rule, "this rule");
    }
    for (span, label) in labels {
        diagnostic = diagnostic.secondary(span, label);
    }
    diagnostic.note(note)
}

fn redundant_diagnostic(ruleset: &Ruleset, sources: &Sources, source: &SourceRule, same: &[usize]) -> Diagnostic {
    let (primary, stdlib_rule) = report_span(sources, source.span, &source.via);
    let first = &ruleset.rules[source.rules[0]];
    let mut diagnostic = Diagnostic::new(Code::RedundantRule, "removing this rule would change no packet's verdict")
        .primary(primary, if stdlib_rule.is_some() { "a rule this brings in changes nothing" } else { "changes nothing" });
    if let Some(stdlib_rule) = stdlib_rule {
        diagnostic = diagnostic.secondary(stdlib_rule, "this rule");
    }
    let mut labels = Vec::new();
    for index in same.iter().take(4) {
        let rule = &ruleset.rules[*index];
        push_label(&mut labels, sources, rule, format!("{} them anyway", verdict_word(&rule.target)));
    }
    for (span, label) in labels {
        diagnostic = diagnostic.secondary(span, label);
    }
    let policy_note = if same.is_empty() {
        format!("the chain's policy already {} these packets", verdict_word(&first.target))
    } else {
        "later rules decide these packets the same way".to_string()
    };
    diagnostic.note(policy_note).note("remove it, or `ignore redundant-rule` if it is there for clarity")
}
