//! iptables-restore text, the saved form, and the shell script.
//!
//! Rules are written in the exact form `iptables-save` prints them — its
//! option order, `/32` spelled out, numeric ICMP types, chains sorted
//! bytewise — so that the saved file is the restore file without counters,
//! and a plain diff against a live dump shows drift.
//!
//! One function, [`write_args`], walks a rule's arguments; the outputs
//! differ only in how each argument is quoted. A family's outputs are
//! written in one pass over its rules, grouped by chain once: each rule's
//! line is rendered once in the saved form (which `rules.vN` and `saved.vN`
//! share) and once in the shell form, straight into buffers that go to the
//! writers in large pieces.

use crate::consolidate::{self, Field, IptRule, SetMatch};
use crate::ir::*;
use crate::tables;
use std::collections::HashMap;
use std::io::{self, Write};

/// One argument of an iptables command line, before quoting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A fixed word: an option, a number, an address, a name fwc checked.
    Word(String),
    /// Text from the policy (a comment, a log prefix): quoted when printed.
    Text(String),
}

fn word(text: impl Into<String>) -> Arg {
    Arg::Word(text.into())
}

/// `rules.v4` / `rules.v6`: iptables-restore input.
pub fn restore(ruleset: &Ruleset, family: Family, header: &str) -> String {
    let mut restore = Vec::new();
    let rules = consolidate::iptables(ruleset, true);
    self::family(ruleset, &rules, family, header, &mut restore, &mut io::sink(), &mut io::sink())
        .expect("writing to memory");
    into_string(restore)
}

/// `saved.v4` / `saved.v6`: what `iptables-save` prints once the rules are
/// loaded, without `#` lines and counters.
pub fn saved(ruleset: &Ruleset, family: Family) -> String {
    saved_with(ruleset, family, true)
}

/// [`saved`], with `consolidate` false: one kernel rule per IR rule.
pub fn saved_with(ruleset: &Ruleset, family: Family, consolidate: bool) -> String {
    let mut saved = Vec::new();
    let rules = consolidate::iptables(ruleset, consolidate);
    self::family(ruleset, &rules, family, "", &mut io::sink(), &mut saved, &mut io::sink()).expect("writing to memory");
    into_string(saved)
}

/// `rules.sh`: the same rules as a POSIX shell script of single commands.
/// Every argument is single-quoted, so no text from a policy can run.
pub fn shell(ruleset: &Ruleset, header: &str) -> String {
    let mut out = Vec::new();
    let rules = consolidate::iptables(ruleset, true);
    shell_prelude(header, &rules.sets, &mut out).expect("writing to memory");
    for family in Family::BOTH {
        self::family(ruleset, &rules, family, header, &mut io::sink(), &mut io::sink(), &mut out)
            .expect("writing to memory");
    }
    into_string(out)
}

fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("the emitter writes only text")
}

/// Where the five outputs go.
pub struct Writers<'a> {
    pub rules_v4: &'a mut (dyn Write + Send),
    pub rules_v6: &'a mut (dyn Write + Send),
    pub rules_sh: &'a mut (dyn Write + Send),
    pub saved_v4: &'a mut (dyn Write + Send),
    pub saved_v6: &'a mut (dyn Write + Send),
}

/// Below this many rules, both families are written on the calling thread.
pub const PARALLEL_FROM: usize = 2048;

/// Writes all five outputs. The two families are independent: with enough
/// rules, IPv6 is written on a second thread (its part of `rules.sh`, which
/// comes after IPv4's, is held until IPv4's is written).
pub fn write_all(ruleset: &Ruleset, rules: &consolidate::Iptables, header: &str, out: Writers) -> io::Result<()> {
    let Writers { rules_v4, rules_v6, rules_sh, saved_v4, saved_v6 } = out;
    shell_prelude(header, &rules.sets, rules_sh)?;
    let mut v6_shell = Vec::new();
    if ruleset.rules.len() < PARALLEL_FROM {
        family(ruleset, rules, Family::V4, header, rules_v4, saved_v4, rules_sh)?;
        family(ruleset, rules, Family::V6, header, rules_v6, saved_v6, &mut v6_shell)?;
    } else {
        std::thread::scope(|scope| {
            let v6 = scope.spawn(|| family(ruleset, rules, Family::V6, header, rules_v6, saved_v6, &mut v6_shell));
            let v4 = family(ruleset, rules, Family::V4, header, rules_v4, saved_v4, rules_sh);
            let v6 = v6.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            v4.and(v6)
        })?;
    }
    rules_sh.write_all(&v6_shell)
}

fn shell_prelude(header: &str, sets: &[consolidate::AddressSet], out: &mut dyn Write) -> io::Result<()> {
    let mut text = String::from("#!/bin/sh\n");
    for line in header.lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("set -eu\n");
    if !sets.is_empty() {
        // The address sets the rules match against, before the rules.
        text.push_str("ipset restore <<'FWC_IPSETS'\n");
        ipsets(sets, "", &mut text);
        text.push_str("FWC_IPSETS\n");
    }
    out.write_all(text.as_bytes())
}

/// `ipsets.restore`: `ipset restore` input creating or replacing every set
/// the rules use. Each set is filled under a temporary name and swapped in,
/// so rules already using it never see it half full.
pub fn ipsets(sets: &[consolidate::AddressSet], header: &str, out: &mut String) {
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    let mut value = String::new();
    for set in sets {
        let family = if set.family == Family::V4 { "inet" } else { "inet6" };
        let size = if set.members.len() > 65536 { format!(" maxelem {}", set.members.len()) } else { String::new() };
        let temporary = format!("{}-new", set.name);
        out.push_str(&format!("create {} hash:net family {family}{size} -exist\n", set.name));
        out.push_str(&format!("create {temporary} hash:net family {family}{size} -exist\n"));
        out.push_str(&format!("flush {temporary}\n"));
        for member in &set.members {
            out.push_str("add ");
            out.push_str(&temporary);
            out.push(' ');
            out.push_str(net_text(member, &mut value));
            out.push('\n');
        }
        out.push_str(&format!("swap {temporary} {}\n", set.name));
        out.push_str(&format!("destroy {temporary}\n"));
    }
}

/// The tables a family's rules use, in `iptables-save`'s order: filter
/// always (it carries the policies), nat only when there are NAT rules.
pub fn tables_of(ruleset: &Ruleset, family: Family) -> Vec<Table> {
    let mut tables = vec![Table::Filter];
    if ruleset.rules.iter().any(|rule| rule.family == family && rule.table == Table::Nat) {
        tables.push(Table::Nat);
    }
    tables
}

fn policy_name(ruleset: &Ruleset, table: Table, chain: &ChainRef) -> &'static str {
    match (table, ruleset.policies.of(chain)) {
        (Table::Filter, Some(Verdict::Drop)) => "DROP",
        _ => "ACCEPT",
    }
}

/// User chains of a family, sorted bytewise as `iptables-save` lists them.
pub fn user_chains(ruleset: &Ruleset, family: Family) -> Vec<String> {
    let mut names: Vec<String> = ruleset
        .chains
        .iter()
        .filter(|chain| chain.families.contains(&family))
        .map(|chain| chain.name.clone())
        .collect();
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    names
}

/// Built-in chains first, then user chains in sorted order.
pub fn chain_order(table: Table, user: &[String]) -> Vec<ChainRef> {
    let mut order = table.builtin_chains().to_vec();
    order.extend(user.iter().cloned().map(ChainRef::User));
    order
}

pub fn rules_of<'a>(ruleset: &'a Ruleset, family: Family, table: Table, chain: &'a ChainRef) -> impl Iterator<Item = &'a Rule> {
    ruleset.rules.iter().filter(move |rule| rule.family == family && rule.table == table && &rule.chain == chain)
}

/// One family's rules grouped by (table, chain), in policy order within
/// each chain: what `rules_of` gives, for every chain at once.
struct Index<'a> {
    /// Slots of the built-in chains, by [`builtin_key`].
    builtin: [Option<usize>; 10],
    user: HashMap<(Table, &'a str), usize>,
    rules: Vec<Vec<&'a IptRule<'a>>>,
    nat: bool,
}

/// A built-in chain's place in [`Index::builtin`].
fn builtin_key(table: Table, chain: &ChainRef) -> Option<usize> {
    let chain = match chain {
        ChainRef::Input => 0,
        ChainRef::Forward => 1,
        ChainRef::Output => 2,
        ChainRef::Prerouting => 3,
        ChainRef::Postrouting => 4,
        ChainRef::User(_) => return None,
    };
    Some(chain + if table == Table::Nat { 5 } else { 0 })
}

impl<'a> Index<'a> {
    fn new(rules: &'a [IptRule<'a>], family: Family) -> Index<'a> {
        let mut index = Index { builtin: [None; 10], user: HashMap::new(), rules: Vec::new(), nat: false };
        for emitted in rules.iter().filter(|emitted| emitted.rule.family == family) {
            let rule: &'a Rule = &emitted.rule;
            let next = index.rules.len();
            let slot = match (builtin_key(rule.table, &rule.chain), &rule.chain) {
                (Some(key), _) => *index.builtin[key].get_or_insert(next),
                (None, chain) => *index.user.entry((rule.table, chain.name())).or_insert(next),
            };
            if slot == next {
                index.rules.push(Vec::new());
            }
            index.rules[slot].push(emitted);
            index.nat |= rule.table == Table::Nat;
        }
        index
    }

    fn tables(&self) -> Vec<Table> {
        if self.nat {
            vec![Table::Filter, Table::Nat]
        } else {
            vec![Table::Filter]
        }
    }

    fn rules(&self, table: Table, chain: &ChainRef) -> &[&'a IptRule<'a>] {
        let slot = match builtin_key(table, chain) {
            Some(key) => self.builtin[key],
            None => self.user.get(&(table, chain.name())).copied(),
        };
        slot.map_or(&[], |slot| &self.rules[slot])
    }
}

/// Text is handed to the writers in pieces of about this size.
const PIECE: usize = 1 << 16;

/// The three outputs of one family, buffered. `restore` and `saved` get the
/// same rule lines; only their headers and chain lines differ.
struct FamilyOut<'w> {
    restore: String,
    saved: String,
    shell: String,
    restore_writer: &'w mut dyn Write,
    saved_writer: &'w mut dyn Write,
    shell_writer: &'w mut dyn Write,
}

impl FamilyOut<'_> {
    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.restore.len() >= PIECE || self.saved.len() >= PIECE || self.shell.len() >= PIECE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        for (text, writer) in [
            (&mut self.restore, &mut self.restore_writer),
            (&mut self.saved, &mut self.saved_writer),
            (&mut self.shell, &mut self.shell_writer),
        ] {
            writer.write_all(text.as_bytes())?;
            text.clear();
        }
        Ok(())
    }

    /// Text both saved forms share.
    fn both(&mut self, text: &str) {
        self.restore.push_str(text);
        self.saved.push_str(text);
    }
}

/// Writes one family: its restore file, its saved file and its part of
/// the shell script.
fn family(
    ruleset: &Ruleset,
    consolidated: &consolidate::Iptables,
    family: Family,
    header: &str,
    restore: &mut dyn Write,
    saved: &mut dyn Write,
    shell: &mut dyn Write,
) -> io::Result<()> {
    let index = Index::new(&consolidated.rules, family);
    let mut out = FamilyOut {
        restore: String::with_capacity(PIECE + 4096),
        saved: String::with_capacity(PIECE + 4096),
        shell: String::with_capacity(PIECE + 4096),
        restore_writer: restore,
        saved_writer: saved,
        shell_writer: shell,
    };
    for line in header.lines() {
        out.restore.push_str("# ");
        out.restore.push_str(line);
        out.restore.push('\n');
    }
    let user = user_chains(ruleset, family);
    // What fwc keeps of the live rules, for `fwc apply` and `fwc diff`
    // reading these files later (iptables-restore skips comments).
    let keep = crate::host::ruleset::Keep {
        chains: user.iter().filter(|name| ruleset.chains.iter().any(|chain| &chain.name == *name && chain.keep)).cloned().collect(),
        patterns: ruleset.keep_patterns.clone(),
    };
    out.restore.push_str(&keep.header_lines());
    let command = match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    };
    out.shell.push_str("\n# ");
    out.shell.push_str(family.name());
    out.shell.push('\n');
    let mut value = String::new();
    for table in index.tables() {
        let chains: &[String] = if table == Table::Filter { &user } else { &[] };
        let kept: Vec<&String> =
            chains.iter().filter(|name| ruleset.chains.iter().any(|chain| &chain.name == *name && chain.keep)).collect();

        // The saved forms: the table's chains and policies.
        for (counter, text) in [(" [0:0]", &mut out.restore), ("", &mut out.saved)] {
            text.push('*');
            text.push_str(table.name());
            text.push('\n');
            for chain in table.builtin_chains() {
                text.push(':');
                text.push_str(chain.name());
                text.push(' ');
                text.push_str(policy_name(ruleset, table, chain));
                text.push_str(counter);
                text.push('\n');
            }
            for chain in chains {
                text.push(':');
                text.push_str(chain);
                text.push_str(" -");
                text.push_str(counter);
                text.push('\n');
            }
        }

        // The shell form: everything before the rules.
        shell_table_start(ruleset, table, command, chains, &kept, &mut out.shell);
        // Kept chains get their initial rules only when they are created here.
        for name in &kept {
            let chain = ChainRef::User(name.to_string());
            let create = command_line(command, table, &[word("-N"), word(chain.name())]);
            out.shell.push_str(&format!("if {create} 2>/dev/null; then\n"));
            let prefix = command_line(command, table, &[word("-A"), word(chain.name())]);
            for rule in index.rules(table, &chain) {
                out.shell.push_str("    ");
                out.shell.push_str(&prefix);
                write_args(&rule.rule, rule.set.as_ref(), &mut Shell(&mut out.shell), &mut value);
                out.shell.push('\n');
                out.flush_if_full()?;
            }
            out.shell.push_str("fi\n");
        }

        // The rules, in chain order: each line rendered once per form.
        for chain in chain_order(table, chains) {
            let in_shell = !kept.iter().any(|name| name.as_str() == chain.name());
            let prefix = command_line(command, table, &[word("-A"), word(chain.name())]);
            for rule in index.rules(table, &chain) {
                let start = out.restore.len();
                out.restore.push_str("-A ");
                out.restore.push_str(chain.name());
                if in_shell {
                    out.shell.push_str(&prefix);
                    let both = &mut SavedAndShell { saved: &mut out.restore, shell: &mut out.shell };
                    write_args(&rule.rule, rule.set.as_ref(), both, &mut value);
                    out.shell.push('\n');
                } else {
                    write_args(&rule.rule, rule.set.as_ref(), &mut Saved(&mut out.restore), &mut value);
                }
                out.restore.push('\n');
                let (restore, saved) = (&out.restore, &mut out.saved);
                saved.push_str(&restore[start..]);
                out.flush_if_full()?;
            }
        }
        out.both("COMMIT\n");
    }
    out.flush()
}

/// A table's shell commands before its rules. A `keep` chain is created
/// when missing and never flushed: its live contents belong to another
/// program.
fn shell_table_start(ruleset: &Ruleset, table: Table, command: &str, chains: &[String], kept: &[&String], out: &mut String) {
    let run = |out: &mut String, args: &[Arg]| {
        out.push_str(&command_line(command, table, args));
        out.push('\n');
    };
    for chain in table.builtin_chains() {
        run(out, &[word("-F"), word(chain.name())]);
    }
    // Delete every other user chain: flush them all first, since a chain
    // still referenced by another cannot be deleted.
    let mut patterns: Vec<String> = kept.iter().map(|name| quoted(name)).collect();
    patterns.extend(ruleset.keep_patterns.iter().map(|pattern| glob_pattern(pattern)));
    let listing = command_line(command, table, &[word("-S")]);
    out.push_str(&format!("chains=$({listing} | sed -n 's/^-N //p')\n"));
    for flag in ["-F", "-X"] {
        let action = format!("{} \"$chain\"", command_line(command, table, &[word(flag)]));
        if patterns.is_empty() {
            out.push_str(&format!("for chain in $chains; do {action}; done\n"));
        } else {
            out.push_str(&format!(
                "for chain in $chains; do case \"$chain\" in {}) ;; *) {action} ;; esac; done\n",
                patterns.join("|")
            ));
        }
    }
    for chain in table.builtin_chains() {
        run(out, &[word("-P"), word(chain.name()), word(policy_name(ruleset, table, chain))]);
    }
    for chain in chains {
        if kept.contains(&chain) {
            continue;
        }
        run(out, &[word("-N"), word(chain.clone())]);
    }
}

fn command_line(command: &str, table: Table, args: &[Arg]) -> String {
    let mut line = format!("{command} -w -t {}", table.name());
    for arg in args {
        line.push(' ');
        match arg {
            Arg::Word(text) | Arg::Text(text) => shell_quote(text, &mut line),
        }
    }
    line
}

/// Receives a rule's arguments in order; the outputs differ only in how
/// they quote each one.
trait ArgSink {
    /// A fixed word: an option, a number, an address, a name fwc checked.
    fn word(&mut self, word: &str);
    /// Text from the policy (a comment, a log prefix).
    fn text(&mut self, text: &str);
}

/// The arguments as values, for [`rule_args`].
struct Collect(Vec<Arg>);

impl ArgSink for Collect {
    fn word(&mut self, word: &str) {
        self.0.push(Arg::Word(word.to_string()));
    }

    fn text(&mut self, text: &str) {
        self.0.push(Arg::Text(text.to_string()));
    }
}

/// The saved form: each argument after a space, text quoted as
/// `iptables-save` quotes it.
struct Saved<'a>(&'a mut String);

impl ArgSink for Saved<'_> {
    fn word(&mut self, word: &str) {
        self.0.push(' ');
        self.0.push_str(word);
    }

    fn text(&mut self, text: &str) {
        self.0.push(' ');
        save_string(text, self.0);
    }
}

/// The shell form: each argument after a space, single-quoted.
struct Shell<'a>(&'a mut String);

impl ArgSink for Shell<'_> {
    fn word(&mut self, word: &str) {
        self.0.push(' ');
        shell_quote(word, self.0);
    }

    fn text(&mut self, text: &str) {
        self.word(text);
    }
}

/// Both forms from one walk over the rule.
struct SavedAndShell<'a> {
    saved: &'a mut String,
    shell: &'a mut String,
}

impl ArgSink for SavedAndShell<'_> {
    fn word(&mut self, word: &str) {
        Saved(self.saved).word(word);
        Shell(self.shell).word(word);
    }

    fn text(&mut self, text: &str) {
        Saved(self.saved).text(text);
        Shell(self.shell).text(text);
    }
}

/// Quotes text the way `iptables-save` does: bare when it is only letters,
/// digits, `_` and `-`; otherwise in double quotes with `"`, `\` and `'`
/// escaped by a backslash.
fn save_string(text: &str, out: &mut String) {
    let plain = !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if plain {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// One rule as `iptables-save` prints it: `-A CHAIN` and its arguments
/// (the line `saved.vN` has for it, without the table).
pub fn rule_line(rule: &Rule) -> String {
    let mut line = format!("-A {}", rule.chain.name());
    write_args(rule, None, &mut Saved(&mut line), &mut String::new());
    line
}

/// The arguments after `-A CHAIN`, in `iptables-save`'s order.
pub fn rule_args(rule: &Rule) -> Vec<Arg> {
    let mut args = Collect(Vec::new());
    write_args(rule, None, &mut args, &mut String::new());
    args.0
}

/// `value` holds the text of one argument at a time while it is formatted.
/// `set` replaces the rule's source or destination (which is then `None`).
fn write_args(rule: &Rule, set: Option<&SetMatch>, args: &mut impl ArgSink, value: &mut String) {
    let matches = &rule.matches;
    if let Some(source) = &matches.source {
        negatable(args, source.negated, "-s", net_text(&source.value, value));
    }
    if let Some(destination) = &matches.destination {
        negatable(args, destination.negated, "-d", net_text(&destination.value, value));
    }
    if let Some(interface) = &matches.in_interface {
        negatable(args, interface.negated, "-i", &interface.value);
    }
    if let Some(interface) = &matches.out_interface {
        negatable(args, interface.negated, "-o", &interface.value);
    }
    // IPv6 treats AH as an extension header that `-p` skips over; its own
    // match module finds it.
    let ipv6_ah = rule.family == Family::V6 && matches.protocol == Some(Protocol::AH);
    if ipv6_ah {
        args.word("-m");
        args.word("ah");
    }
    if let Some(protocol) = matches.protocol.filter(|_| !ipv6_ah) {
        args.word("-p");
        match tables::protocol_name(protocol.0) {
            Some(name) => args.word(name),
            None => args.word(number_text(protocol.0.into(), value)),
        }
        port_args(protocol, matches, args, value);
        if let Some(icmp_type) = matches.icmp_type {
            value.clear();
            push_number(value, icmp_type.value.kind.into());
            if let Some(code) = icmp_type.value.code {
                value.push('/');
                push_number(value, code.into());
            }
            let (module, flag) =
                if protocol == Protocol::ICMP { ("icmp", "--icmp-type") } else { ("icmp6", "--icmpv6-type") };
            args.word("-m");
            args.word(module);
            negatable(args, icmp_type.negated, flag, value);
        }
    }
    if let Some(set) = set {
        args.word("-m");
        args.word("set");
        args.word("--match-set");
        args.word(&set.name);
        args.word(if set.field == Field::Source { "src" } else { "dst" });
    }
    if let Some(mac) = &matches.mac_source {
        args.word("-m");
        args.word("mac");
        negatable(args, mac.negated, "--mac-source", &mac.value);
    }
    if let Some(states) = &matches.states {
        args.word("-m");
        args.word("conntrack");
        value.clear();
        for (position, name) in states.value.names().into_iter().enumerate() {
            if position > 0 {
                value.push(',');
            }
            value.push_str(name);
        }
        negatable(args, states.negated, "--ctstate", value);
    }
    if let Some(limit) = &matches.limit {
        args.word("-m");
        args.word("limit");
        args.word("--limit");
        args.word(&limit_rate(limit));
        if limit.burst != 5 {
            args.word("--limit-burst");
            args.word(number_text(limit.burst, value));
        }
    }
    if let Some(comment) = &matches.comment {
        args.word("-m");
        args.word("comment");
        args.word("--comment");
        args.text(comment);
    }
    args.word("-j");
    match &rule.target {
        Target::Accept => args.word("ACCEPT"),
        Target::Drop => args.word("DROP"),
        Target::Return => args.word("RETURN"),
        Target::Jump(chain) => args.word(chain),
        Target::Reject(with) => {
            let kind = with.spelling(rule.family).expect("lowering checked the family has this answer");
            args.word("REJECT");
            args.word("--reject-with");
            args.word(kind);
        }
        Target::Masquerade { ports } => {
            args.word("MASQUERADE");
            if let Some(ports) = ports {
                args.word("--to-ports");
                args.word(&range_with_dash(ports));
            }
        }
        Target::Redirect { ports } => {
            args.word("REDIRECT");
            if let Some(ports) = ports {
                args.word("--to-ports");
                args.word(&range_with_dash(ports));
            }
        }
        Target::Snat { address, ports } => {
            args.word("SNAT");
            args.word("--to-source");
            args.word(&nat_address(address, ports));
        }
        Target::Dnat { address, ports } => {
            args.word("DNAT");
            args.word("--to-destination");
            args.word(&nat_address(address, ports));
        }
        Target::Log { prefix } => {
            args.word("LOG");
            if let Some(prefix) = prefix {
                args.word("--log-prefix");
                args.text(prefix);
            }
        }
    }
}

fn negatable(args: &mut impl ArgSink, negated: bool, flag: &str, value: &str) {
    if negated {
        args.word("!");
    }
    args.word(flag);
    args.word(value);
}

/// Ports: one port or range per side goes in the protocol's own match
/// (`-m tcp --sport A --dport B`), longer lists in `-m multiport`.
fn port_args(protocol: Protocol, matches: &Matches, args: &mut impl ArgSink, value: &mut String) {
    fn single(ports: &Option<Match<Vec<PortRange>>>) -> Option<&Match<Vec<PortRange>>> {
        ports.as_ref().filter(|ports| ports.value.len() == 1)
    }
    // udplite has no match module of its own; multiport covers it.
    let own_module = match protocol {
        Protocol::TCP => Some("tcp"),
        Protocol::UDP => Some("udp"),
        Protocol::SCTP => Some("sctp"),
        _ => None,
    };
    let (mut single_source, single_destination) = match own_module {
        Some(_) => (single(&matches.source_ports), single(&matches.destination_ports)),
        None => (None, None),
    };
    // iptables-nft 1.8.9 turns `! --sport A ! --dport B` in one match into
    // a single compare of both ports, which is not the same condition: the
    // negated source port goes to multiport instead.
    let negated = |ports: &Option<&Match<Vec<PortRange>>>| ports.is_some_and(|ports| ports.negated);
    if negated(&single_source) && negated(&single_destination) {
        single_source = None;
    }
    if single_source.is_some() || single_destination.is_some() || matches.tcp_flags.is_some() {
        args.word("-m");
        args.word(own_module.expect("flags and single ports have a module"));
        for (flag, ports) in [("--sport", single_source), ("--dport", single_destination)] {
            if let Some(ports) = ports {
                if ports.negated {
                    args.word("!");
                }
                args.word(flag);
                value.clear();
                push_port(value, &ports.value[0]);
                args.word(value);
            }
        }
        if let Some(flags) = &matches.tcp_flags {
            if flags.negated {
                args.word("!");
            }
            args.word("--tcp-flags");
            args.word(&TcpFlags::names(flags.value.mask));
            args.word(&TcpFlags::names(flags.value.set));
        }
    }
    for (flag, ports, done) in [
        ("--sports", &matches.source_ports, single_source.is_some()),
        ("--dports", &matches.destination_ports, single_destination.is_some()),
    ] {
        let Some(ports) = ports.as_ref().filter(|_| !done) else { continue };
        args.word("-m");
        args.word("multiport");
        if ports.negated {
            args.word("!");
        }
        value.clear();
        for (position, range) in ports.value.iter().enumerate() {
            if position > 0 {
                value.push(',');
            }
            push_port(value, range);
        }
        args.word(flag);
        args.word(value);
    }
}

/// `net` as `iptables-save` prints it (`/32` and `/128` spelled out), in `value`.
fn net_text<'v>(net: &ipnet::IpNet, value: &'v mut String) -> &'v str {
    value.clear();
    match net {
        ipnet::IpNet::V4(net) => {
            for (position, octet) in net.addr().octets().into_iter().enumerate() {
                if position > 0 {
                    value.push('.');
                }
                push_number(value, octet.into());
            }
        }
        ipnet::IpNet::V6(net) => {
            use std::fmt::Write as _;
            write!(value, "{}", net.addr()).expect("writing to a String");
        }
    }
    value.push('/');
    push_number(value, net.prefix_len().into());
    value
}

fn number_text(number: u32, value: &mut String) -> &str {
    value.clear();
    push_number(value, number);
    value
}

/// Decimal digits, as `Display` writes them.
fn push_number(out: &mut String, number: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    let mut rest = number;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"));
}

/// `443` or `1024:2000`, as `--dport` and `--dports` take them.
fn push_port(out: &mut String, range: &PortRange) {
    push_number(out, range.low.into());
    if range.low != range.high {
        out.push(':');
        push_number(out, range.high.into());
    }
}

/// `198.51.100.5:443`, `[2001:db8::5]:443`, or the address alone.
fn nat_address(address: &std::net::IpAddr, ports: &Option<PortRange>) -> String {
    match (address, ports) {
        (_, None) => address.to_string(),
        (std::net::IpAddr::V4(v4), Some(ports)) => format!("{v4}:{}", range_with_dash(ports)),
        (std::net::IpAddr::V6(v6), Some(ports)) => format!("[{v6}]:{}", range_with_dash(ports)),
    }
}

fn range_with_dash(range: &PortRange) -> String {
    if range.low == range.high {
        range.low.to_string()
    } else {
        format!("{}-{}", range.low, range.high)
    }
}

/// The rate as `iptables-save` prints it. iptables stores the interval
/// between packets in units of 1/10000 s and prints the largest unit that
/// divides it without loss, so `60/minute` comes back as `1/sec`.
pub fn limit_rate(limit: &Limit) -> String {
    const SCALE: u64 = 10_000;
    const UNITS: [(&str, u64); 4] =
        [("day", SCALE * 86_400), ("hour", SCALE * 3_600), ("min", SCALE * 60), ("sec", SCALE)];
    let period = SCALE * u64::from(limit.unit_seconds) / u64::from(limit.count);
    let mut chosen = 0;
    for (index, (_, multiple)) in UNITS.iter().enumerate().skip(1) {
        if period > *multiple || multiple / period < multiple % period {
            break;
        }
        chosen = index;
    }
    let (name, multiple) = UNITS[chosen];
    format!("{}/{}", multiple / period, name)
}

/// A `keep chain` pattern as a shell `case` pattern: `*` and `?` stay
/// wildcards, everything else is quoted literally.
fn glob_pattern(pattern: &str) -> String {
    let mut out = String::new();
    let mut literal = String::new();
    for c in pattern.chars() {
        if c == '*' || c == '?' {
            if !literal.is_empty() {
                out.push_str(&quoted(&literal));
                literal.clear();
            }
            out.push(c);
        } else {
            literal.push(c);
        }
    }
    if !literal.is_empty() || out.is_empty() {
        out.push_str(&quoted(&literal));
    }
    out
}

fn quoted(text: &str) -> String {
    let mut out = String::new();
    shell_quote(text, &mut out);
    out
}

/// Every value in single quotes (`'` becomes `'\''`); only option flags
/// such as `-A` and `--dport`, and `!`, stay bare.
fn shell_quote(text: &str, out: &mut String) {
    let flag = text.starts_with('-')
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    if flag || text == "!" {
        out.push_str(text);
        return;
    }
    out.push('\'');
    if text.contains('\'') {
        out.push_str(&text.replace('\'', r"'\''"));
    } else {
        out.push_str(text);
    }
    out.push('\'');
}
