//! Robustness: no input crashes or hangs fwc, and what compiles cleanly
//! the kernel accepts.
//!
//! - `mutated_policies_*`: a bounded proptest run. The example policies and
//!   the ok cases are mutated (tokens and lines deleted, duplicated,
//!   swapped; keywords, boundary numbers, long and non-ASCII strings,
//!   unbalanced braces, deep nesting inserted); each mutant is compiled,
//!   emitted, tested and queried, which must not panic and must finish in
//!   well under a second; a mutant without errors must then load with
//!   ipset restore, iptables-restore, ip6tables-restore and `nft -f` into a
//!   network namespace of its own, without an error or a warning (needs
//!   root, like the kernel tests).
//! - `fuzz_corpus_replays_*`: the fuzzers' minimised corpora (fuzz/corpus)
//!   run again, without a panic or a hang.
//! - regression tests: one per bug the fuzzer or the proptest found. They
//!   fail until the compiler is fixed; meanwhile the proptest and the
//!   corpus replay step around those bugs (`harness::Avoid`,
//!   [`known_kernel_bug`]) so that they keep finding new ones.
//!
//! Every run goes through `fuzz/src/harness.rs`, the same function the
//! cargo-fuzz targets call (see docs/testing.md, "Fuzzing"), so a fuzzer
//! artifact reproduces here byte for byte: `harness::run_text(input)`.

#[allow(dead_code)]
#[path = "../../fuzz/src/harness.rs"]
mod harness;

// The kernel tests' helpers: bounded commands, namespaces that delete
// themselves. A second copy of the module; its names get the role
// `robust`, so they never collide with the kernel tests' own.
#[allow(dead_code)]
#[path = "kernel/support.rs"]
mod support;

use harness::{Avoid, MemoryFs, Outcome, POLICY};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{repo_root, run, Netns, COMMAND_LIMIT};

/// The "no hang" check: a small policy must compile (with diagnostics
/// rendered and outputs emitted) within this, in a debug build. Generous on
/// purpose — it is not a benchmark. A whole run (tests and queries too,
/// whose packet spaces can be large) that goes past [`HANG_LIMIT`] is
/// abandoned as a hang.
const SLOW_LIMIT: Duration = Duration::from_secs(1);
const HANG_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- running

/// Runs the harness on a thread of its own; gives its outcome and the CPU
/// time the thread used. `Err` says how it failed: a panic (with its
/// message) or a hang (the thread is left behind; the test fails anyway).
fn run_bounded(fs: MemoryFs, queries: Vec<String>, avoid: Avoid) -> Result<(Outcome, Duration), String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("robustness-run".to_string())
        .spawn(move || {
            let start = thread_cpu_time();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness::run_fs(&fs, &queries, avoid)));
            let cpu = thread_cpu_time().saturating_sub(start);
            let _ = sender.send(result.map(|outcome| (outcome, cpu)).map_err(panic_message));
        })
        .expect("spawn a thread");
    match receiver.recv_timeout(HANG_LIMIT) {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(message)) => Err(format!("panicked: {message}")),
        Err(_) => Err(format!("did not finish within {} s (a hang)", HANG_LIMIT.as_secs())),
    }
}

/// The calling thread's user + system CPU time, from
/// /proc/thread-self/stat (in clock ticks of 10 ms); zero if unreadable.
/// The time limits look at it as well as at the wall clock, so that a
/// loaded machine (CI runs the kernel tests beside these) does not make a
/// fast compile look slow.
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(|field| field.parse().unwrap_or(0)).collect())
        .unwrap_or_default();
    // Fields 14 and 15 of the line (utime, stime); `rest` starts at field 3.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

/// A fuzzer-style input (policy, then NUL-separated query, test file,
/// included files: see the harness) run with no bug stepped around; the
/// outcome and the CPU time it took.
fn run_input(text: &str) -> Result<(Outcome, Duration), String> {
    let (fs, queries) = harness::prepare(text);
    run_bounded(fs, queries, Avoid::NOTHING)
}

// ---------------------------------------------------------------- seeds

/// A policy to mutate, with the files it includes.
#[derive(Clone, Debug)]
struct Seed {
    name: String,
    text: String,
    /// Included files, by path relative to the policy.
    others: Vec<(PathBuf, String)>,
}

/// policies/*.fw (not `.test.fw`) with conf.d/, and tests/cases/ok/*.fw
/// with include.d/.
fn seeds() -> Vec<Seed> {
    let root = repo_root();
    let mut seeds = Vec::new();
    for (directory, folder) in [("policies", "conf.d"), ("tests/cases/ok", "include.d")] {
        let directory = root.join(directory);
        let mut others = Vec::new();
        for path in support::policy_files(&directory.join(folder), None) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            others.push((Path::new(folder).join(path.file_name().expect("a file")), text));
        }
        for path in support::policy_files(&directory, Some(".test.fw")) {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let name = path.strip_prefix(&root).unwrap_or(&path).display().to_string();
            seeds.push(Seed { name, text, others: others.clone() });
        }
    }
    assert!(seeds.len() > 10, "too few policies to mutate: {}", seeds.len());
    seeds
}

// ---------------------------------------------------------------- mutations

/// Words inserted anywhere: every keyword, punctuation that unbalances,
/// numbers at the edges of the ranges fwc checks, odd characters.
const WORDS: &[&str] = &[
    "allow", "deny", "reject", "jump", "return", "log", "masquerade", "snat", "dnat", "redirect", "forward-port",
    "policy", "let", "param", "service", "chain", "keep", "include", "use", "except", "ignore", "test", "expect", "in",
    "out", "forward", "on", "from", "to", "not", "any", "state", "sport", "flags", "mac", "with", "port", "to-source",
    "to-destination", "to-port", "stateful", "limit", "burst", "rate", "comment", "ipv4", "ipv6", "accept", "drop",
    "tcp", "udp", "icmp", "icmpv6", "sctp", "esp", "new", "established", "syn", "baseline", "{", "}", "{", "}", ",",
    "=", "->", "-", "/", ":", "$", "\"", "\n", "\\\n", "#", "0", "1", "65535", "65536", "4294967295", "4294967296",
    "18446744073709551616", "0/second", "4294967296/minute", "1/day", "0.0.0.0/0", "::/0", "255.255.255.255/32",
    "1.2.3.4/33", "::ffff:1.2.3.4", "ff02::1", "eth0", "lo", "eth+", "+", "é", "😀", "\u{200b}", "\t", "\r",
];

/// What a number may become.
const NUMBERS: &[&str] = &[
    "0", "1", "2", "15", "16", "28", "29", "31", "32", "33", "127", "128", "129", "255", "256", "1023", "1024",
    "65534", "65535", "65536", "2147483647", "2147483648", "4294967295", "4294967296", "18446744073709551615",
    "18446744073709551616", "99999999999999999999999999999999",
];

#[derive(Clone, Debug)]
enum Mutation {
    DeleteToken(usize),
    DuplicateToken(usize),
    SwapTokens(usize, usize),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertWord(usize, &'static str),
    /// The n-th number becomes another.
    ReplaceNumber(usize, &'static str),
    /// The n-th string becomes one of this many characters of this kind.
    ReplaceString(usize, usize, StringKind),
    /// The n-th word (a name, an interface…) becomes one this long.
    ReplaceWord(usize, usize, StringKind),
    /// A construct nested this deep, appended as lines.
    Append(Nesting, usize),
}

#[derive(Clone, Copy, Debug)]
enum StringKind {
    Ascii,
    /// Two bytes a character: the kernel counts bytes, people characters.
    Latin,
    /// Four bytes a character.
    Emoji,
    /// Quotes, backslashes, shell and restore metacharacters.
    Hostile,
}

#[derive(Clone, Copy, Debug)]
enum Nesting {
    /// chain c0 jumps to c1 jumps to c2 …; `jump in to c0`.
    Chains,
    /// let v1 = $v0, let v2 = $v1 …
    Variables,
    /// `{ { { … } } }`: sets do not nest; an error, never a crash.
    Sets,
    /// A set of this many lines of two addresses (at most 100).
    WideSet,
    /// This many `include "inc.fw"` lines, inc.fw including itself.
    Includes,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<usize>();
    let kind = prop_oneof![
        Just(StringKind::Ascii),
        Just(StringKind::Latin),
        Just(StringKind::Emoji),
        Just(StringKind::Hostile)
    ];
    // Lengths around the kernel's limits: log prefix 29, interface 15,
    // chain name 28, comment 255 (bytes, each without its NUL).
    let length = prop_oneof![0..4usize, 13..18usize, 26..32usize, 250..260usize, Just(1000usize)];
    let nesting = prop_oneof![
        Just(Nesting::Chains),
        Just(Nesting::Variables),
        Just(Nesting::Sets),
        Just(Nesting::WideSet),
        Just(Nesting::Includes)
    ];
    prop_oneof![
        3 => index.prop_map(Mutation::DeleteToken),
        2 => index.prop_map(Mutation::DuplicateToken),
        2 => (index, index).prop_map(|(a, b)| Mutation::SwapTokens(a, b)),
        2 => index.prop_map(Mutation::DeleteLine),
        2 => index.prop_map(Mutation::DuplicateLine),
        2 => (index, index).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        4 => (index, prop::sample::select(WORDS)).prop_map(|(at, word)| Mutation::InsertWord(at, word)),
        4 => (index, prop::sample::select(NUMBERS)).prop_map(|(at, number)| Mutation::ReplaceNumber(at, number)),
        3 => (index, length.clone(), kind.clone()).prop_map(|(at, length, kind)| Mutation::ReplaceString(at, length, kind)),
        3 => (index, length, kind).prop_map(|(at, length, kind)| Mutation::ReplaceWord(at, length, kind)),
        1 => (nesting, prop_oneof![1..10usize, 50..300usize]).prop_map(|(nesting, depth)| Mutation::Append(nesting, depth)),
    ]
}

/// Splits text into tokens that join back to it: newlines, runs of other
/// whitespace, strings, comments, words, single other characters.
fn tokenize(text: &str) -> Vec<String> {
    let word = |c: char| c.is_alphanumeric() || "_-.:/$+@".contains(c);
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let mut token = c.to_string();
        match c {
            '\n' => {}
            '"' => {
                while let Some(&next) = chars.peek() {
                    if next == '\n' {
                        break;
                    }
                    token.push(next);
                    chars.next();
                    if next == '\\' {
                        if let Some(escaped) = chars.next_if(|&escaped| escaped != '\n') {
                            token.push(escaped);
                        }
                    } else if next == '"' {
                        break;
                    }
                }
            }
            '#' => {
                while let Some(next) = chars.next_if(|&next| next != '\n') {
                    token.push(next);
                }
            }
            c if c.is_whitespace() => {
                while let Some(next) = chars.next_if(|&next| next != '\n' && next.is_whitespace()) {
                    token.push(next);
                }
            }
            c if word(c) => {
                while let Some(next) = chars.next_if(|&next| word(next)) {
                    token.push(next);
                }
            }
            _ => {}
        }
        tokens.push(token);
    }
    tokens
}

fn is_significant(token: &str) -> bool {
    !token.chars().all(char::is_whitespace) || token == "\n"
}

fn make_string(length: usize, kind: StringKind) -> String {
    let unit = match kind {
        StringKind::Ascii => "x",
        StringKind::Latin => "é",
        StringKind::Emoji => "😀",
        StringKind::Hostile => "'\\\"$`;%",
    };
    unit.chars().cycle().take(length).collect()
}

/// A word of `length` characters: starts with a letter, so it stays a name.
fn make_word(length: usize, kind: StringKind) -> String {
    let mut word = String::from("w");
    word.push_str(&match kind {
        StringKind::Ascii => "a-b_c9".chars().cycle().take(length.saturating_sub(1)).collect::<String>(),
        other => make_string(length.saturating_sub(1), other),
    });
    word
}

fn nested(nesting: Nesting, depth: usize) -> String {
    let mut text = String::from("\n");
    match nesting {
        Nesting::Chains => {
            text.push_str("jump in tcp 22 to c0\n");
            for level in 0..depth {
                text.push_str(&format!("chain c{level} {{\n    jump udp to c{}\n    allow tcp 80\n}}\n", level + 1));
            }
            text.push_str(&format!("chain c{depth} {{\n    deny\n}}\n"));
        }
        Nesting::Variables => {
            text.push_str("let v0 = 198.51.100.1\n");
            for level in 1..=depth {
                text.push_str(&format!("let v{level} = $v{}\n", level - 1));
            }
            text.push_str(&format!("allow in from $v{depth}\n"));
        }
        Nesting::Sets => {
            text.push_str("let s = ");
            text.push_str(&"{ ".repeat(depth));
            text.push_str("198.51.100.1");
            text.push_str(&" }".repeat(depth));
            text.push_str("\nallow in from $s\n");
        }
        Nesting::WideSet => {
            // At most 100 lines (200 addresses): a small input. Tests and
            // queries enumerate a packet class per address, and over ~400
            // addresses they take seconds in a debug build (not a hang).
            text.push_str("allow in tcp 22 from {\n");
            for n in 0..depth.min(100) {
                text.push_str(&format!("    198.51.{}.{}, 2001:db8::{:x},\n", n / 256, n % 256, n));
            }
            text.push_str("}\n");
        }
        Nesting::Includes => {
            for _ in 0..depth {
                text.push_str("include \"inc.fw\"\n");
            }
        }
    }
    text
}

/// Applies `mutation` to `text`. Indices are taken modulo what is there.
fn mutate(text: &str, mutation: &Mutation) -> String {
    let mut tokens = tokenize(text);
    let significant: Vec<usize> = (0..tokens.len()).filter(|&index| is_significant(&tokens[index])).collect();
    let pick = |at: usize, among: &[usize]| (!among.is_empty()).then(|| among[at % among.len()]);
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let line = |at: usize, lines: &Vec<String>| (!lines.is_empty()).then(|| at % lines.len());
    match mutation {
        Mutation::DeleteToken(at) => {
            if let Some(index) = pick(*at, &significant) {
                tokens.remove(index);
            }
        }
        Mutation::DuplicateToken(at) => {
            if let Some(index) = pick(*at, &significant) {
                let copy = tokens[index].clone();
                tokens.insert(index, " ".to_string());
                tokens.insert(index, copy);
            }
        }
        Mutation::SwapTokens(a, b) => {
            if let (Some(a), Some(b)) = (pick(*a, &significant), pick(*b, &significant)) {
                tokens.swap(a, b);
            }
        }
        Mutation::DeleteLine(at) => {
            if let Some(index) = line(*at, &lines) {
                lines.remove(index);
            }
            return lines.concat();
        }
        Mutation::DuplicateLine(at) => {
            if let Some(index) = line(*at, &lines) {
                let mut copy = lines[index].clone();
                if !copy.ends_with('\n') {
                    copy.push('\n');
                }
                lines.insert(index, copy);
            }
            return lines.concat();
        }
        Mutation::SwapLines(a, b) => {
            if let (Some(a), Some(b)) = (line(*a, &lines), line(*b, &lines)) {
                lines.swap(a, b);
            }
            let mut text = lines.concat();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            return text;
        }
        Mutation::InsertWord(at, word) => {
            let index = pick(*at, &significant).unwrap_or(0);
            tokens.insert(index, " ".to_string());
            tokens.insert(index, word.to_string());
            tokens.insert(index, " ".to_string());
        }
        Mutation::ReplaceNumber(at, number) => {
            let numbers: Vec<usize> =
                significant.iter().copied().filter(|&index| tokens[index].bytes().any(|b| b.is_ascii_digit())).collect();
            if let Some(index) = pick(*at, &numbers) {
                // Replace the first run of digits in the token.
                let token = &tokens[index];
                let start = token.find(|c: char| c.is_ascii_digit()).expect("has a digit");
                let end = token[start..].find(|c: char| !c.is_ascii_digit()).map_or(token.len(), |end| start + end);
                tokens[index] = format!("{}{number}{}", &token[..start], &token[end..]);
            }
        }
        Mutation::ReplaceString(at, length, kind) => {
            let strings: Vec<usize> =
                significant.iter().copied().filter(|&index| tokens[index].starts_with('"')).collect();
            if let Some(index) = pick(*at, &strings) {
                let escaped = make_string(*length, *kind).replace('\\', "\\\\").replace('"', "\\\"");
                tokens[index] = format!("\"{escaped}\"");
            } else {
                text_append(&mut tokens, &format!("allow in tcp 1 comment \"{}\"\n", make_string(*length, *kind)));
            }
        }
        Mutation::ReplaceWord(at, length, kind) => {
            let words: Vec<usize> = significant
                .iter()
                .copied()
                .filter(|&index| tokens[index].starts_with(|c: char| c.is_alphabetic() || c == '$'))
                .collect();
            if let Some(index) = pick(*at, &words) {
                let dollar = if tokens[index].starts_with('$') { "$" } else { "" };
                tokens[index] = format!("{dollar}{}", make_word(*length, *kind));
            }
        }
        Mutation::Append(nesting, depth) => text_append(&mut tokens, &nested(*nesting, *depth)),
    }
    tokens.concat()
}

fn text_append(tokens: &mut Vec<String>, text: &str) {
    if tokens.last().is_some_and(|last| !last.ends_with('\n')) {
        tokens.push("\n".to_string());
    }
    tokens.push(text.to_string());
}

// ---------------------------------------------------------------- the kernel

/// Loads rules.v4 and rules.v6 into `namespace`; every problem found.
/// iptables-restore replaces the tables it names, so one namespace serves
/// one policy after another.
fn kernel_refusals(namespace: &Netns, outputs: &[(&'static str, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let loads = [
        ("ipset", "ipsets.restore"),
        ("iptables-restore", "rules.v4"),
        ("ip6tables-restore", "rules.v6"),
        ("nft", "rules.nft"),
    ];
    for (program, output) in loads {
        let Some((_, rules)) = outputs.iter().find(|(name, _)| *name == output) else {
            problems.push(format!("no {output} among the outputs"));
            continue;
        };
        let mut command = namespace.command(program);
        match program {
            "ipset" => command.args(["restore", "-exist"]),
            "nft" => command.args(["-f", "-"]),
            _ => &mut command,
        };
        match run(&mut command, Some(rules.as_bytes()), COMMAND_LIMIT) {
            Err(error) => problems.push(error),
            Ok(ran) if !ran.status.success() => {
                problems.push(format!("`{program} < {output}` failed ({}):\n{}{}", ran.status, ran.stderr, ran.stdout))
            }
            Ok(ran) if !ran.stderr.trim().is_empty() => {
                problems.push(format!("`{program} < {output}` loaded the rules but warned:\n{}", ran.stderr))
            }
            Ok(_) => {}
        }
    }
    problems
}

/// Known bugs, reported, each with a failing regression test below: rules
/// that compile but the kernel refuses. The proptest does not load a
/// mutant whose rules show one, so that it keeps looking for new bugs.
/// Remove an entry once its bug is fixed.
fn known_kernel_bug(outputs: &[(&'static str, String)]) -> Option<&'static str> {
    for (_, rules) in outputs.iter().filter(|(name, _)| name.starts_with("rules.v")) {
        for prefix in rules.split(" --log-prefix ").skip(1).map(restore_word) {
            if prefix.is_empty() {
                return Some("an empty log prefix (empty_log_prefixes_are_refused_or_load)");
            }
            if prefix.len() > 29 {
                return Some("a log prefix over 29 bytes (a_log_statement_prefix_over_29_bytes_is_an_error)");
            }
        }
        if jump_depth(rules) > 15 {
            return Some("chains nested over 15 deep (sixteen_nested_chains_are_refused_or_load)");
        }
    }
    None
}

/// The first word of `text` as iptables-restore reads it: quoted with
/// `"` (backslash escapes) or up to a space.
fn restore_word(text: &str) -> String {
    let Some(quoted) = text.strip_prefix('"') else {
        return text.split([' ', '\n']).next().unwrap_or_default().to_string();
    };
    let mut word = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => word.extend(chars.next()),
            c => word.push(c),
        }
    }
    word
}

/// The longest chain of jumps (`-j`/`-g` to a user chain) from a built-in
/// chain, per table of a restore file.
fn jump_depth(rules: &str) -> usize {
    let mut deepest = 0;
    for table in rules.split("\n*").skip(1) {
        let mut edges: Vec<(&str, &str)> = Vec::new();
        let user: Vec<&str> = table
            .lines()
            .filter_map(|line| line.strip_prefix(':'))
            .filter_map(|line| line.split_once(' '))
            .filter(|(_, policy)| policy.starts_with('-'))
            .map(|(name, _)| name)
            .collect();
        for line in table.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("-A") {
                continue;
            }
            let Some(chain) = words.next() else { continue };
            let words: Vec<&str> = words.collect();
            for pair in words.windows(2) {
                if (pair[0] == "-j" || pair[0] == "-g") && user.contains(&pair[1]) {
                    edges.push((chain, pair[1]));
                }
            }
        }
        // Depth by relaxation; a cycle (which fwc refuses) stops at the bound.
        let mut depth: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for _ in 0..=user.len() {
            for &(from, to) in &edges {
                let from_depth = if user.contains(&from) { depth.get(from).copied() } else { Some(0) };
                if let Some(from_depth) = from_depth {
                    let entry = depth.entry(to).or_insert(0);
                    *entry = (*entry).max(from_depth + 1).min(user.len() + 1);
                }
            }
        }
        deepest = deepest.max(depth.values().copied().max().unwrap_or(0));
    }
    deepest
}

// ---------------------------------------------------------------- the proptest

/// How many mutants one run tries: `FWC_ROBUSTNESS_CASES`, default 500.
fn cases() -> u32 {
    std::env::var("FWC_ROBUSTNESS_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(500)
}

/// The RNG seed: `FWC_ROBUSTNESS_SEED` (a number), else a fixed one, so a
/// CI run is reproducible; set it to explore further.
fn rng() -> TestRng {
    let seed: u64 = std::env::var("FWC_ROBUSTNESS_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(0x0f3c_2026);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

#[test]
fn mutated_policies_compile_without_panic_or_hang_and_load_into_the_kernel() {
    let seeds = seeds();
    let config = Config {
        cases: cases(),
        // A hang costs HANG_LIMIT a try: shrink within a bounded time.
        max_shrink_time: 60_000,
        max_shrink_iters: 256,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng());
    let namespace = Netns::new("robust");
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..5));
    let clean = std::cell::Cell::new(0usize);
    let known = std::cell::Cell::new(0usize);
    let skipped = std::cell::Cell::new(0usize);
    let result = runner.run(&strategy, |(seed, mutations)| {
        let seed = &seeds[seed];
        let mut text = seed.text.clone();
        for mutation in &mutations {
            text = mutate(&text, mutation);
        }
        let mut fs = MemoryFs::default();
        fs.files.insert(PathBuf::from(POLICY), text.clone());
        fs.files.extend(seed.others.iter().cloned());
        fs.files.entry(PathBuf::from("inc.fw")).or_insert_with(|| "include \"inc.fw\"\nallow in tcp 7\n".to_string());
        let queries = harness::FIXED_QUERIES.iter().map(|query| query.to_string()).collect();
        let context = || format!("mutant of {} ({mutations:?}):\n{text}", seed.name);
        let (outcome, cpu) = run_bounded(fs, queries, Avoid::KNOWN_BUGS)
            .map_err(|error| TestCaseError::fail(format!("{error}\n{}", context())))?;
        // Slow only if the wall clock says so for the compile and the CPU
        // time of the whole run does too (not a busy machine).
        if outcome.compile_time > SLOW_LIMIT && cpu > SLOW_LIMIT {
            return Err(TestCaseError::fail(format!(
                "compiling took {:?} (limit {SLOW_LIMIT:?}; {cpu:?} of CPU for the whole run)\n{}",
                outcome.compile_time,
                context()
            )));
        }
        if outcome.skipped {
            skipped.set(skipped.get() + 1);
        }
        if let Some(outputs) = &outcome.outputs {
            clean.set(clean.get() + 1);
            if let Some(bug) = known_kernel_bug(outputs) {
                known.set(known.get() + 1);
                eprintln!("robustness: not loaded, known bug: {bug}");
                return Ok(());
            }
            let problems = kernel_refusals(&namespace, outputs);
            if !problems.is_empty() {
                return Err(TestCaseError::fail(format!(
                    "compiled without errors, but the kernel refuses it:\n{}\n{}",
                    problems.join("\n"),
                    context()
                )));
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    eprintln!(
        "robustness: {} mutants, {} not run (known hang), {} compiled without errors, {} of them loaded into the \
         kernel ({} not: known bugs)",
        cases(),
        skipped.get(),
        clean.get(),
        clean.get() - known.get(),
        known.get()
    );
}

/// The fuzzers' minimised corpora (fuzz/corpus/*) replay without a panic
/// or a hang: every input that once reached new code stays covered.
#[test]
fn fuzz_corpus_replays_without_panic_or_hang() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (target, decode) in [("compile", false), ("compile_tokens", true)] {
        let directory = repo_root().join("fuzz/corpus").join(target);
        let Ok(entries) = std::fs::read_dir(&directory) else { continue };
        let mut paths: Vec<PathBuf> = entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let text =
                if decode { harness::tokens_to_text(&bytes) } else { String::from_utf8_lossy(&bytes).into_owned() };
            let (fs, queries) = harness::prepare(&text);
            count += 1;
            if let Err(error) = run_bounded(fs, queries, Avoid::KNOWN_BUGS) {
                failures.push(format!("{}: {error}", path.display()));
            }
        }
    }
    assert!(count > 0, "no corpus under fuzz/corpus");
    assert!(failures.is_empty(), "{} of {count} corpus inputs failed:\n{}", failures.len(), failures.join("\n"));
}

// ---------------------------------------------------------------- unit checks of the mutator

#[test]
fn tokens_join_back_to_the_text() {
    for seed in seeds() {
        assert_eq!(tokenize(&seed.text).concat(), seed.text, "{}", seed.name);
    }
}

// ---------------------------------------------------------------- regressions

/// How long `fwc` may take on the few-line policies of the regression tests.
const CLI_LIMIT: Duration = Duration::from_secs(10);

/// Runs `fwc ARGS…` on `policy` (written to a temporary file), killed after
/// [`CLI_LIMIT`]; the error says how it went wrong.
fn fwc_finishes(policy: &str, args: &[&str]) -> Result<(), String> {
    let directory = support::TempDir::new("robust");
    let path = directory.write("policy.fw", policy);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fwc"));
    command.arg(args[0]).arg(&path).args(&args[1..]);
    let ran = run(&mut command, None, CLI_LIMIT)?;
    if ran.stderr.contains("panicked") {
        return Err(format!("fwc panicked:\n{}", ran.stderr));
    }
    Ok(())
}

/// Found by the fuzzer on tests/cases/ok/forward-interfaces.fw: evaluating
/// a policy with an interface wildcard `eth+` (also `e+`, `et+`, `+`) for
/// a packet that leaves its interface open never ends:
/// `eval::space::other_interface` tries eth0, eth1, … for a name the
/// wildcard does not match. `fwc query`, `fwc test` and `fwc build` (which
/// runs the tests) hang.
/// The same bug, reached by `fwc check` and `fwc build` since the host
/// analysis enumerates packets while compiling
/// (`analysis::host::any_allowed` → `eval::space::for_each_packet` →
/// `other_interface`). Found by the proptest (forward-interfaces.fw, a line
/// duplicated, a rule appended); minimal policy below.
#[test]
fn compiling_a_forward_rule_with_eth_wildcards_finishes() {
    fwc_finishes("deny forward on eth+ -> eth+\nallow in tcp 1\n", &["check"]).unwrap();
}

#[test]
fn query_with_an_eth_wildcard_finishes() {
    fwc_finishes("allow in on eth+\n", &["query", "in"]).unwrap();
}

#[test]
fn test_block_with_an_eth_wildcard_finishes() {
    fwc_finishes("allow in on eth+\ntest \"t\" {\n    expect allow in tcp 22\n}\n", &["test"]).unwrap();
}

#[test]
fn query_with_an_any_wildcard_finishes() {
    fwc_finishes("deny out on +\n", &["query", "out udp 53"]).unwrap();
}

/// Found by the proptest (bash-setup.fw with 50 nested chains appended):
/// 16 user chains each jumping to the next compile without a diagnostic,
/// but the kernel (nf_tables, iptables 1.8.9) refuses the rules:
/// `RULE_APPEND failed (Too many links)`. 15 load. fwc should say so at
/// compile time (or the kernel accept what fwc emits).
#[test]
fn sixteen_nested_chains_are_refused_or_load() {
    // 15 levels is the deepest that compiles (16 is chain-too-deep).
    let mut policy = String::from("jump in to c0\n");
    for level in 0..14 {
        policy.push_str(&format!("chain c{level} {{\n    jump to c{}\n}}\n", level + 1));
    }
    policy.push_str("chain c14 {\n    deny\n}\n");
    let (outcome, _) = run_input(&policy).unwrap();
    if let Some(outputs) = &outcome.outputs {
        let namespace = Netns::new("robust");
        let problems = kernel_refusals(&namespace, outputs);
        assert!(problems.is_empty(), "compiled without errors, but the kernel refuses it:\n{}\n{policy}", problems.join("\n"));
    }
}

/// Found by the proptest (limits-boundary.fw, its log prefix emptied): an
/// empty log prefix compiles to `-j LOG --log-prefix ""`, which
/// iptables-restore refuses: "Argument must have a minimum length of 1
/// characters". Both the `log` option and the `log` statement.
#[test]
fn empty_log_prefixes_are_refused_or_load() {
    let namespace = Netns::new("robust");
    let mut failures = Vec::new();
    for policy in ["deny in tcp 23 log \"\"\n", "log in \"\"\n"] {
        let (outcome, _) = run_input(policy).unwrap();
        if let Some(outputs) = &outcome.outputs {
            let problems = kernel_refusals(&namespace, outputs);
            if !problems.is_empty() {
                failures.push(format!("{policy}{}", problems.join("\n")));
            }
        }
    }
    assert!(failures.is_empty(), "compiled without errors, but the kernel refuses them:\n{}", failures.join("\n\n"));
}

/// Found by the proptest (log-statement.fw, its prefix made 1000 `é`):
/// the prefix of a `log` statement is not checked against the kernel's 29
/// bytes, as the `log` option's is (error log-prefix-too-long). From 30
/// bytes the kernel cuts it silently (iptables-save no longer prints
/// saved.v4); around 1 KiB iptables-restore refuses the line ("Parameter
/// too long!").
#[test]
fn a_log_statement_prefix_over_29_bytes_is_an_error() {
    for policy in ["log in \"telnet attempts from outside: \"\n", &format!("log in \"{}\"\n", "é".repeat(15))] {
        let (outcome, _) = run_input(policy).unwrap();
        assert!(
            outcome.has_errors && outcome.rendered.contains("log-prefix-too-long"),
            "{policy}: expected error[log-prefix-too-long], got:\n{}",
            outcome.rendered
        );
    }
}

#[test]
fn known_bugs_are_recognised_in_the_rules() {
    // 15 levels is the deepest that compiles (16 is chain-too-deep).
    let mut policy = String::from("jump in to c0\n");
    for level in 0..14 {
        policy.push_str(&format!("chain c{level} {{\n    jump to c{}\n}}\n", level + 1));
    }
    policy.push_str("chain c14 {\n    deny\n}\n");
    let depth = |policy: &str| {
        let (outcome, _) = run_input(policy).unwrap();
        let outputs = outcome.outputs.unwrap_or_else(|| panic!("{}", outcome.rendered));
        jump_depth(&outputs.iter().find(|(name, _)| *name == "rules.v4").unwrap().1)
    };
    assert_eq!(depth(&policy), 15);
    assert_eq!(depth("chain a {\n    deny\n}\njump in to a\njump out to a\n"), 1);
    assert_eq!(restore_word("\"a \\\" b\" -j X"), "a \" b");
    assert_eq!(restore_word("abc -j X"), "abc");
}

#[test]
fn thread_cpu_time_counts_work_not_sleep() {
    let start = thread_cpu_time();
    std::thread::sleep(Duration::from_millis(300));
    assert!(thread_cpu_time() - start < Duration::from_millis(100));
    // Spinning advances it (however busy the machine, within reason).
    let wall = Instant::now();
    let mut x = 0u64;
    while thread_cpu_time() - start < Duration::from_millis(200) {
        assert!(wall.elapsed() < Duration::from_secs(60), "the thread's CPU time does not advance");
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

/// `fwc fmt` on mutants: whatever parses formats idempotently, and the
/// formatted mutant compiles to what the mutant compiled to (the checks
/// of tests/it/fmt.rs). `FWC_ROBUSTNESS_CASES` mutants, as above.
#[test]
fn mutated_policies_format_idempotently_and_compile_alike() {
    let seeds = seeds();
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng());
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..5));
    let formatted = std::cell::Cell::new(0usize);
    let result = runner.run(&strategy, |(seed, mutations)| {
        let seed = &seeds[seed];
        let mut text = seed.text.clone();
        for mutation in &mutations {
            text = mutate(&text, mutation);
        }
        if fwc::fmt::format(&text).is_err() {
            return Ok(());
        }
        formatted.set(formatted.get() + 1);
        let mut files = super::fmt::Files::default();
        files.0.insert(PathBuf::from(POLICY), text.clone());
        files.0.extend(seed.others.iter().cloned());
        files.0.entry(PathBuf::from("inc.fw")).or_insert_with(|| "include \"inc.fw\"\nallow in tcp 7\n".to_string());
        super::fmt::check_formatting(&files, Path::new(POLICY), &[])
            .map_err(|error| TestCaseError::fail(format!("{error}\nmutant of {} ({mutations:?}):\n{text}", seed.name)))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    eprintln!("robustness: {} mutants, {} of them parsed and were formatted", cases(), formatted.get());
    assert!(formatted.get() > 0, "no mutant parsed");
}
