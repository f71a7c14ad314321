//! The analysis is exact: on over a thousand small random policies, a rule
//! is flagged shadowed if and only if no packet reaches it, redundant if
//! and only if removing it changes no packet's outcome, and the rules named
//! on a shadowed rule are exactly those that decide its packets — checked by
//! brute force over one packet of every class, which covers the whole
//! packet space (see compiler/eval/space.rs).

use fwc::analysis::rule_facts;
use fwc::eval::space::{self, Constraint};
use fwc::eval::{Evaluation, Program};
use fwc::ir::{Rule, Ruleset, Table, Target};
use fwc::syntax::ast::{ConnectionState, Direction};
use std::path::{Path, PathBuf};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const ADDRESSES: &[&str] = &[
    "198.18.0.0/24",
    "198.18.0.1",
    "198.18.1.0/24",
    "fd00::/64",
    "fd00::1",
    "{ 198.18.0.0/24, fd00::/64 }",
    "{ 198.18.0.1, fd00::1 }",
];
const PORTS: &[&str] = &["22", "80", "22, 80", "20-25", "not 22"];

fn rule_text(random: &mut Random, in_chain: bool) -> String {
    let mut words = Vec::new();
    let action = random.pick(&["allow", "allow", "deny", "reject"]);
    words.push(action.to_string());
    if !in_chain {
        words.push(random.pick(&["in", "in", "out", "forward"]).to_string());
    }
    if random.chance(25) {
        words.push(format!("on {}", random.pick(&["eth0", "eth1", "not eth0"])));
    }
    if random.chance(70) {
        let protocol = random.pick(&["tcp", "tcp", "udp"]);
        words.push(protocol.to_string());
        if random.chance(70) {
            words.push(random.pick(PORTS).to_string());
        }
    }
    if random.chance(40) {
        words.push(format!("from {}", random.pick(ADDRESSES)));
    }
    if random.chance(25) {
        words.push(format!("to {}", random.pick(ADDRESSES)));
    }
    if action == "allow" && random.chance(30) {
        words.push("stateful".to_string());
    } else if random.chance(20) {
        words.push(format!("state {}", random.pick(&["new", "established", "established, related", "not established"])));
    }
    if random.chance(10) {
        words.push(random.pick(&["ipv4", "ipv6"]).to_string());
    }
    words.join(" ")
}

fn policy_text(seed: u64) -> String {
    let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut lines = Vec::new();
    for direction in ["in", "out", "forward"] {
        if random.chance(50) {
            lines.push(format!("policy {direction} {}", random.pick(&["accept", "drop"])));
        }
    }
    let chains = random.below(3);
    for chain in 0..chains {
        lines.push(format!("chain c{chain} {{"));
        for _ in 0..1 + random.below(3) {
            if random.chance(20) {
                lines.push(format!("    return from {}", random.pick(ADDRESSES)));
            } else {
                lines.push(format!("    {}", rule_text(&mut random, true)));
            }
        }
        lines.push("}".to_string());
    }
    for _ in 0..2 + random.below(6) {
        if chains > 0 && random.chance(20) {
            let chain = random.below(chains);
            let direction = random.pick(&["in", "forward"]);
            let condition = if random.chance(50) { format!(" tcp {}", random.pick(PORTS)) } else { String::new() };
            lines.push(format!("jump {direction}{condition} to c{chain}"));
        } else {
            lines.push(rule_text(&mut random, false));
        }
    }
    lines.join("\n") + "\n"
}

struct Memory(String);

impl fwc::FileSystem for Memory {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path == Path::new("random.fw") {
            Ok(self.0.clone())
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }
    fn glob(&self, _: &str) -> Result<Vec<PathBuf>, String> {
        Ok(Vec::new())
    }
}

/// What happens to a packet: ACCEPT, DROP or REJECT with its answer —
/// the same whether a rule or the policy decided.
fn outcome(ruleset: &Ruleset, evaluation: &Evaluation) -> String {
    match evaluation.rule {
        Some(index) => format!("{:?}", ruleset.rules[index].target),
        None => format!("{:?}", match evaluation.decision {
            fwc::eval::Decision::Accept => Target::Accept,
            _ => Target::Drop,
        }),
    }
}

/// Every class of packet, in every direction and state.
fn every_packet(ruleset: &Ruleset, mut visit: impl FnMut(&fwc::eval::Packet)) {
    use ConnectionState::*;
    for direction in [Direction::In, Direction::Out, Direction::Forward] {
        for state in [New, Established, Related, Invalid, Untracked] {
            let constraint = Constraint { state: Some(state), ..Constraint::default() };
            space::for_each_packet(ruleset, direction, &constraint, |packet| {
                visit(packet);
                true
            })
            .expect("small policies have small spaces");
        }
    }
}

fn builtin_of(direction: Direction) -> fwc::ir::ChainRef {
    match direction {
        Direction::In => fwc::ir::ChainRef::Input,
        Direction::Out => fwc::ir::ChainRef::Output,
        Direction::Forward => fwc::ir::ChainRef::Forward,
    }
}

fn checked(rule: &Rule) -> bool {
    rule.table == Table::Filter && !matches!(rule.target, Target::Log { .. } | Target::Return)
}

/// `FWC_ANALYSIS_CASES=N` (default 1,500) random policies from seed
/// `FWC_ANALYSIS_SEED` (default 1) on.
#[test]
fn shadowed_and_redundant_agree_with_brute_force() {
    let knob = |name: &str, default: u64| std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default);
    let (count, first) = (knob("FWC_ANALYSIS_CASES", 1500), knob("FWC_ANALYSIS_SEED", 1));
    let mut cases = 0;
    let mut compared = 0;
    let mut compared_deciders = 0;
    let mut disagreements = Vec::new();
    for seed in first..first + count {
        let text = policy_text(seed);
        let compilation = fwc::compile(&Memory(text.clone()), Path::new("random.fw"), &[]).expect("in memory");
        if compilation.has_errors() {
            continue;
        }
        cases += 1;
        let ruleset = &compilation.lowered.ruleset;
        let facts = rule_facts(ruleset);
        let program = Program::new(ruleset);
        let mut reached = vec![false; ruleset.rules.len()];
        // Per rule, the packets it decides, with their outcome.
        let mut decided_by: Vec<Vec<(fwc::eval::Packet, String)>> = vec![Vec::new(); ruleset.rules.len()];
        // Per unreached rule of a built-in chain, the rules that decide the
        // packets it matches.
        let unreached: Vec<usize> = (0..ruleset.rules.len())
            .filter(|index| {
                let rule = &ruleset.rules[*index];
                checked(rule) && facts[*index].seen && !facts[*index].reachable && rule.origin.derived.is_none() && rule.chain.is_builtin()
            })
            .collect();
        let mut deciders: Vec<Vec<usize>> = vec![Vec::new(); ruleset.rules.len()];
        every_packet(ruleset, |packet| {
            let evaluation = program.trace(packet, &mut |index| reached[index] = true);
            if let Some(rule) = evaluation.rule {
                decided_by[rule].push((packet.clone(), outcome(ruleset, &evaluation)));
            }
            for index in &unreached {
                let rule = &ruleset.rules[*index];
                if rule.family == packet.family && rule.chain == builtin_of(packet.direction) && fwc::eval::matches(&rule.matches, packet) {
                    deciders[*index].extend(evaluation.rule);
                }
            }
        });
        for index in &unreached {
            let mut expected = std::mem::take(&mut deciders[*index]);
            expected.sort_unstable();
            expected.dedup();
            let mut named = facts[*index].covered_by.clone();
            named.sort_unstable();
            compared_deciders += 1;
            if named != expected {
                disagreements.push(format!(
                    "seed {seed}: rule {index} is decided by rules {expected:?}, the analysis names {named:?}\n{text}"
                ));
            }
        }
        for (index, rule) in ruleset.rules.iter().enumerate() {
            if !checked(rule) || !facts[index].seen {
                continue;
            }
            compared += 1;
            if facts[index].reachable != reached[index] {
                disagreements.push(format!(
                    "seed {seed}: rule {index} reachable: analysis {} brute force {}\n{text}",
                    facts[index].reachable, reached[index]
                ));
                continue;
            }
            if !reached[index] || !matches!(rule.target, Target::Accept | Target::Drop | Target::Reject(_)) {
                continue;
            }
            // Removing a deciding rule can only change the packets it decided.
            let mut reduced = ruleset.clone();
            reduced.rules.remove(index);
            let reduced_program = Program::new(&reduced);
            let changes = decided_by[index]
                .iter()
                .any(|(packet, before)| outcome(&reduced, &reduced_program.evaluate(packet)) != *before);
            if facts[index].redundant == changes {
                disagreements.push(format!(
                    "seed {seed}: rule {index} ({:?}) redundant: analysis {} brute force {}\n{text}",
                    rule.target, facts[index].redundant, !changes
                ));
            }
        }
    }
    assert!(cases * 3 >= count * 2, "only {cases} of {count} random policies compiled; the generator needs fixing");
    assert!(compared_deciders * 20 >= cases, "only {compared_deciders} unreached rules in {cases} policies: the generator needs fixing");
    assert!(disagreements.is_empty(), "{} disagreements over {compared} rules:\n{}", disagreements.len(), disagreements[..disagreements.len().min(5)].join("\n"));
}

/// A policy past the analysis budget says so, instead of taking minutes or
/// staying silent; within it, the same policy is analysed in full. Every
/// rule here is redundant (the policy accepts too) and meets hundreds of
/// others in its port range, so each is settled by decision diagrams over
/// its neighbours.
#[test]
fn large_policies_say_the_analysis_did_not_finish() {
    let mut text = String::from("policy in accept\n");
    for index in 0..600u32 {
        text.push_str(&format!("allow in tcp {}-{} from 198.18.{}.0/24 ipv4\n", 1000 + index * 3, 2000 + index * 3, index % 4));
    }
    let compilation = fwc::compile(&Memory(text), Path::new("random.fw"), &[]).expect("in memory");
    let codes = |budget: u64| -> Vec<fwc::Code> {
        let ruleset = &compilation.lowered.ruleset;
        fwc::analysis::order_checks_within(ruleset, &compilation.sources, &fwc::Levels::default(), budget)
            .iter()
            .map(|diagnostic| diagnostic.code)
            .collect()
    };
    let small = codes(100_000);
    assert_eq!(small, vec![fwc::Code::AnalysisIncomplete], "{small:?}");
    let full = codes(fwc::analysis::BUDGET);
    assert!(!full.contains(&fwc::Code::AnalysisIncomplete), "{full:?}");
    assert!(full.contains(&fwc::Code::RedundantRule), "{full:?}");
}

/// The generated 1,000-rule benchmark policy is analysed in full.
#[test]
fn the_benchmark_policy_of_1000_rules_is_analysed_in_full() {
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/gen_policy.py");
    let output = std::process::Command::new("python3").arg(generator).arg("1000").output().expect("python3 runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("ascii");
    let compilation = fwc::compile(&Memory(text), Path::new("random.fw"), &[]).expect("in memory");
    let codes: Vec<fwc::Code> = compilation.diagnostics.iter().map(|diagnostic| diagnostic.code).collect();
    assert!(!codes.contains(&fwc::Code::AnalysisIncomplete), "{codes:?}");
    assert!(codes.contains(&fwc::Code::ShadowedRule), "{codes:?}");
}

/// The lockout check, answered over the analysis' regions, against the
/// evaluator on every class of new SSH packet of the random policies
/// (those with `policy in drop`): reported if and only if none is
/// accepted. Loopback packets come from the host itself and do not count
/// (the random policies name eth0 and eth1 only).
#[test]
fn lockout_agrees_with_brute_force() {
    let knob = |name: &str, default: u64| std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default);
    let (count, first) = (knob("FWC_ANALYSIS_CASES", 1500), knob("FWC_ANALYSIS_SEED", 1));
    let (mut compared, mut locked_out) = (0, 0);
    for seed in first..first + count {
        let text = policy_text(seed);
        let compilation = fwc::compile(&Memory(text.clone()), Path::new("random.fw"), &[]).expect("in memory");
        let ruleset = &compilation.lowered.ruleset;
        if compilation.has_errors() || ruleset.policies.input != fwc::ir::Verdict::Drop {
            continue;
        }
        let program = Program::new(ruleset);
        let constraint = Constraint {
            protocol: Some(fwc::ir::Protocol::TCP.0),
            destination_ports: Some(vec![fwc::ir::PortRange { low: 22, high: 22 }]),
            state: Some(ConnectionState::New),
            ..Constraint::default()
        };
        let mut accepted = false;
        space::for_each_packet(ruleset, Direction::In, &constraint, |packet| {
            accepted |= program.evaluate(packet).decision == fwc::eval::Decision::Accept;
            !accepted
        })
        .expect("small policies have small spaces");
        let reported = compilation.diagnostics.iter().any(|diagnostic| diagnostic.code == fwc::Code::Lockout);
        assert_eq!(reported, !accepted, "seed {seed}:\n{text}");
        compared += 1;
        locked_out += usize::from(reported);
    }
    // Both answers are exercised.
    assert!(compared > count as usize / 10 && locked_out > 0 && locked_out < compared, "{compared} compared, {locked_out} locked out");
}
