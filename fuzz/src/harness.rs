//! The one function every robustness check calls: policy text in, the whole
//! library exercised, nothing returned but what a caller may want to check.
//!
//! It depends on `fwc` and `std` only, so that both the cargo-fuzz targets
//! (fuzz/fuzz_targets/) and the integration tests (tests/it/robustness.rs,
//! through `#[path]`) run exactly the same code on a crashing input.
//!
//! An input is policy text with optional extra files, separated by NUL
//! characters: `POLICY \0 QUERY \0 TESTS \0 INCLUDED…`.
//! - POLICY is `policy.fw`;
//! - QUERY, when not blank, is one packet for `Compilation::query` per
//!   line, tried besides a few fixed ones;
//! - TESTS is `policy.test.fw` (the test blocks the loader looks for);
//! - each INCLUDED part is `conf.d/N.fw` (N from 0), and the first one is
//!   also `inc.fw`, so `include "inc.fw"` and `include "conf.d/*.fw"` find
//!   something.
//! `# args: --set NAME=VALUE` header lines set params, as in tests/cases.
//!
//! Contract followed, as the CLI does: outputs, tests and queries only for
//! a compilation without errors.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The root policy's path in the in-memory file system.
pub const POLICY: &str = "policy.fw";

/// Packets every compilation without errors is queried with.
pub const FIXED_QUERIES: [&str; 5] = [
    "in tcp 22 from 198.51.100.7",
    "out udp 53 to 2001:db8::53",
    "forward on eth0 -> eth1 tcp 80 established",
    "in icmp",
    "in",
];

/// Files served from memory. Paths are normalised (`.` dropped, `..`
/// applied) for reading, globbing and cycle detection, like a real
/// file system's canonical paths.
#[derive(Default, Debug, Clone)]
pub struct MemoryFs {
    pub files: BTreeMap<PathBuf, String>,
}

pub fn normalise(path: &Path) -> PathBuf {
    let mut out: Vec<String> = Vec::new();
    let mut absolute = false;
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                absolute = true;
                out.clear();
            }
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part.to_string_lossy().into_owned()),
        }
    }
    let mut normal = if absolute { PathBuf::from("/") } else { PathBuf::new() };
    normal.extend(out);
    normal
}

impl fwc::FileSystem for MemoryFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(&normalise(path))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not in the in-memory file system"))
    }

    /// `*` matches within one path component, `?` one character; `[` is
    /// matched literally (the OS glob's classes are not needed here).
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let pattern = normalise(Path::new(pattern)).to_string_lossy().into_owned();
        Ok(self
            .files
            .keys()
            .filter(|path| wildcard(pattern.as_bytes(), path.to_string_lossy().as_bytes()))
            .cloned()
            .collect())
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        normalise(path)
    }
}

/// `*` (not crossing `/`) and `?`; iterative, linear-ish, cannot blow up.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' && text[t] != b'/' || pattern[p] == text[t] && pattern[p] != b'*') {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star.filter(|&(_, star_t)| text[star_t] != b'/') {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// The `--set` pairs named by `# args:` header lines; malformed words are
/// skipped (fuzzed headers are malformed more often than not).
pub fn header_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    for line in text.lines().take_while(|line| line.starts_with('#')) {
        let Some(args) = line.strip_prefix("# args:") else { continue };
        let mut words = args.split_whitespace();
        while let Some(word) = words.next() {
            if word != "--set" {
                continue;
            }
            if let Some((name, value)) = words.next().and_then(|pair| pair.split_once('=')) {
                params.push((name.to_string(), value.to_string()));
            }
        }
    }
    params
}

/// Splits an input into its file system and queries (see the module doc).
pub fn prepare(text: &str) -> (MemoryFs, Vec<String>) {
    let mut parts = text.split('\0');
    let mut fs = MemoryFs::default();
    fs.files.insert(PathBuf::from(POLICY), parts.next().unwrap_or_default().to_string());
    let mut queries: Vec<String> = FIXED_QUERIES.iter().map(|query| query.to_string()).collect();
    if let Some(query) = parts.next() {
        queries.extend(query.lines().filter(|line| !line.trim().is_empty()).map(str::to_string));
    }
    if let Some(tests) = parts.next() {
        fs.files.insert(PathBuf::from("policy.test.fw"), tests.to_string());
    }
    for (index, included) in parts.enumerate() {
        if index == 0 {
            fs.files.insert(PathBuf::from("inc.fw"), included.to_string());
        }
        fs.files.insert(PathBuf::from(format!("conf.d/{index}.fw")), included.to_string());
    }
    (fs, queries)
}

/// What one run produced, for callers that check more than "no panic".
#[derive(Debug, Default)]
pub struct Outcome {
    pub has_errors: bool,
    /// `(file name, content)` of the five outputs, when there were no errors.
    pub outputs: Option<Vec<(&'static str, String)>>,
    pub rendered: String,
    /// How long compiling, rendering the diagnostics and emitting took
    /// (not the tests and queries, whose packet spaces may be large).
    pub compile_time: std::time::Duration,
    /// Not run: a known bug that `Avoid` names would hang on it.
    pub skipped: bool,
}

/// Bugs already reported whose inputs the fuzz targets (and the proptest
/// and corpus replay in tests/it/robustness.rs) step around, so that a run
/// keeps finding new bugs instead of the same one again. Each gets a field
/// here, set in `KNOWN_BUGS`, and a regression test in robustness.rs that
/// does not step around it; remove the field once the bug is fixed.
///
/// None is open. The last one, an endless search for a free `ethN` in
/// `eval::space::other_interface` on any input with an interface wildcard
/// `eth+` or `+`, was fixed in de47efe; its regression tests stay.
#[derive(Clone, Copy, Debug, Default)]
pub struct Avoid {}

impl Avoid {
    pub const KNOWN_BUGS: Avoid = Avoid {};
    pub const NOTHING: Avoid = Avoid {};

    /// Whether `fs` holds an input a known bug would hang on.
    pub fn skips(self, _fs: &MemoryFs) -> bool {
        false
    }
}

/// Compiles, renders diagnostics, emits, runs the tests and the queries.
/// Panics only if the library does.
pub fn run_text(text: &str) -> Outcome {
    run_text_avoiding(text, Avoid::NOTHING)
}

/// [`run_text`], stepping around the known bugs `avoid` names.
pub fn run_text_avoiding(text: &str, avoid: Avoid) -> Outcome {
    let (fs, queries) = prepare(text);
    run_fs(&fs, &queries, avoid)
}

/// Compiles `policy.fw` of `fs` (params from its `# args:` header) and
/// runs everything on it, `queries` included.
pub fn run_fs(fs: &MemoryFs, queries: &[String], avoid: Avoid) -> Outcome {
    if avoid.skips(fs) {
        return Outcome { skipped: true, ..Outcome::default() };
    }
    let policy = fs.files.get(Path::new(POLICY)).cloned().unwrap_or_default();
    let params = header_params(&policy);
    let start = std::time::Instant::now();
    let mut compilation = match fwc::compile(fs, Path::new(POLICY), &params) {
        Ok(compilation) => compilation,
        Err(error) => panic!("the in-memory root policy could not be read: {error}"),
    };
    let mut rendered = compilation.render_diagnostics();
    let has_errors = compilation.has_errors();
    let outputs = compilation.outputs(POLICY);
    let compile_time = start.elapsed();
    if !has_errors {
        for outcome in compilation.run_tests() {
            rendered.push_str(&compilation.render(&outcome.failures));
        }
        for query in queries {
            match compilation.query(query) {
                Err(diagnostics) => rendered.push_str(&compilation.render(&diagnostics)),
                Ok(result) => {
                    for answer in &result.answers {
                        let notes: Vec<fwc::Diagnostic> = answer
                            .outcomes
                            .iter()
                            .map(|(packet, evaluation)| {
                                fwc::eval::query::explain(&compilation.lowered.ruleset, packet, evaluation)
                            })
                            .collect();
                        rendered.push_str(&compilation.render(&notes));
                    }
                    let _ = result.all_allowed();
                }
            }
        }
    }
    Outcome { has_errors, outputs, rendered, compile_time, skipped: false }
}

/// The raw fuzz target's entry point: lossy UTF-8, then [`run_text`]
/// stepping around known bugs.
pub fn run_bytes(data: &[u8]) {
    run_text_avoiding(&String::from_utf8_lossy(data), Avoid::KNOWN_BUGS);
}

// ---------------------------------------------------------------- tokens

/// Pieces of fwc policies for the structure-aware target: each input byte
/// picks one, so every input is a policy made of real words. Keywords,
/// punctuation, the numbers at the edges of every range the compiler
/// checks, addresses of both families, strings, names and variables.
pub const TOKENS: &[&str] = &[
    // line structure
    "\n", "\n", "\n", " ", "{", "}", "{\n", "\n}\n", ",", "=", "->", "-", "/", ":", "\\\n", "# c\n", "\0",
    // statements
    "allow", "deny", "reject", "jump", "return", "log", "masquerade", "snat", "dnat", "redirect", "forward-port",
    "policy", "let", "param", "service", "chain", "keep", "include", "use", "except", "ignore", "test", "expect",
    // directions and clauses
    "in", "out", "forward", "on", "from", "to", "not", "any", "state", "sport", "flags", "mac", "with", "port",
    "to-source", "to-destination", "to-port", "stateful", "limit", "burst", "rate", "comment", "ipv4", "ipv6",
    "accept", "drop",
    // protocols, states, flags, units
    "tcp", "udp", "udplite", "sctp", "icmp", "icmpv6", "esp", "ah", "gre", "igmp", "ospf", "vrrp", "132", "0", "255",
    "256", "new", "established", "related", "invalid", "untracked", "syn", "fin,syn,rst,ack", "all", "none",
    "10/second", "3/minute", "1/hour", "0/day", "4294967296/second", "echo-request", "nd-neighbor-solicit",
    "tcp-reset", "icmp-port-unreachable", "icmp6-adm-prohibited",
    // modules, services, codes
    "baseline", "ssh-in", "icmp", "loopback", "established", "dns-out", "ntp-out", "policies", "http", "https", "ssh",
    "postgres", "shadowed-rule", "unused-variable",
    // numbers at boundaries
    "1", "22", "80", "443", "1024", "65535", "65536", "4294967295", "4294967296", "18446744073709551616",
    "99999999999999999999999999", "00", "22-80", "80-22", "0-65535",
    // addresses
    "0.0.0.0/0", "::/0", "198.51.100.7", "198.51.100.0/24", "198.51.100.1/24", "10.0.0.0/33", "256.1.1.1",
    "2001:db8::1", "2001:db8::/32", "2001:db8::/129", "fd00::1", "::", "::1", "::ffff:1.2.3.4", "1.2.3.4.5", "1:2",
    "00:11:22:33:44:55",
    // interfaces
    "eth0", "eth1", "lo", "eth+", "wlan0.5", "abcdefghijklmnop", "abcdefghijklmnopq",
    // names, variables, strings
    "a", "b", "web", "x-y", "_", "$a", "$b", "$web", "$undefined", "\"\"", "\"x\"", "\"a \\\" b\"", "\"conf.d/*.fw\"",
    "\"inc.fw\"", "\"policy.fw\"", "\"./policy.fw\"", "\"../x.fw\"", "\"[\"", "\"f2b-*\"", "\"é ü 😀\"", "\"\\\"",
    "\"0123456789012345678901234567890123456789\"",
    "\"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"",
    // odd characters
    "é", "😀", "\u{200b}", "\t", "\r\n", "\r", "$", "\"", "#",
];

/// Each byte picks a token; a space goes between two word tokens.
pub fn tokens_to_text(data: &[u8]) -> String {
    let mut text = String::new();
    for &byte in data {
        let token = TOKENS[byte as usize % TOKENS.len()];
        let word = |c: char| c.is_alphanumeric() || "$\"_".contains(c);
        if text.chars().next_back().is_some_and(word) && token.chars().next().is_some_and(word) {
            text.push(' ');
        }
        text.push_str(token);
    }
    text
}
