//! iptables-restore text, the saved form, and the shell script.
//!
//! Rules are written in the exact form `iptables-save` prints them — its
//! option order, `/32` spelled out, numeric ICMP types, chains sorted
//! bytewise — so that the saved file is the restore file without counters,
//! and a plain diff against a live dump shows drift.

use crate::ir::*;
use crate::tables;

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
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    table(ruleset, family, &mut out, true);
    out
}

/// `saved.v4` / `saved.v6`: what `iptables-save` prints once the rules are
/// loaded, without `#` lines and counters.
pub fn saved(ruleset: &Ruleset, family: Family) -> String {
    let mut out = String::new();
    table(ruleset, family, &mut out, false);
    out
}

fn table(ruleset: &Ruleset, family: Family, out: &mut String, counters: bool) {
    let counter = if counters { " [0:0]" } else { "" };
    out.push_str("*filter\n");
    for chain in [ChainRef::Input, ChainRef::Forward, ChainRef::Output] {
        let policy = match ruleset.policies.of(&chain).expect("built-in") {
            Verdict::Accept => "ACCEPT",
            Verdict::Drop => "DROP",
        };
        out.push_str(&format!(":{} {policy}{counter}\n", chain.name()));
    }
    let chains = user_chains(ruleset, family);
    for chain in &chains {
        out.push_str(&format!(":{chain} -{counter}\n"));
    }
    for chain in chain_order(&chains) {
        for rule in rules_of(ruleset, family, &chain) {
            out.push_str("-A ");
            out.push_str(chain.name());
            for arg in rule_args(rule) {
                out.push(' ');
                match arg {
                    Arg::Word(word) => out.push_str(&word),
                    Arg::Text(text) => save_string(&text, out),
                }
            }
            out.push('\n');
        }
    }
    out.push_str("COMMIT\n");
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
pub fn chain_order(user: &[String]) -> Vec<ChainRef> {
    let mut order = vec![ChainRef::Input, ChainRef::Forward, ChainRef::Output];
    order.extend(user.iter().cloned().map(ChainRef::User));
    order
}

pub fn rules_of<'a>(ruleset: &'a Ruleset, family: Family, chain: &'a ChainRef) -> impl Iterator<Item = &'a Rule> {
    ruleset.rules.iter().filter(move |rule| rule.family == family && &rule.chain == chain)
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

/// The arguments after `-A CHAIN`, in `iptables-save`'s order.
pub fn rule_args(rule: &Rule) -> Vec<Arg> {
    let mut args = Vec::new();
    let matches = &rule.matches;
    let negatable = |args: &mut Vec<Arg>, negated: bool, flag: &str, value: String| {
        if negated {
            args.push(word("!"));
        }
        args.push(word(flag));
        args.push(word(value));
    };
    if let Some(source) = &matches.source {
        negatable(&mut args, source.negated, "-s", source.value.to_string());
    }
    if let Some(destination) = &matches.destination {
        negatable(&mut args, destination.negated, "-d", destination.value.to_string());
    }
    if let Some(interface) = &matches.in_interface {
        negatable(&mut args, interface.negated, "-i", interface.value.clone());
    }
    if let Some(interface) = &matches.out_interface {
        negatable(&mut args, interface.negated, "-o", interface.value.clone());
    }
    if let Some(protocol) = matches.protocol {
        args.push(word("-p"));
        args.push(word(tables::protocol_save_name(protocol.0)));
        port_args(protocol, matches, &mut args);
        if let Some(icmp_type) = matches.icmp_type {
            let value = match icmp_type.code {
                Some(code) => format!("{}/{}", icmp_type.kind, code),
                None => icmp_type.kind.to_string(),
            };
            if protocol == Protocol::ICMP {
                args.extend([word("-m"), word("icmp"), word("--icmp-type"), word(value)]);
            } else {
                args.extend([word("-m"), word("icmp6"), word("--icmpv6-type"), word(value)]);
            }
        }
    }
    if let Some(states) = &matches.states {
        args.extend([word("-m"), word("conntrack")]);
        negatable(&mut args, states.negated, "--ctstate", states.value.names().join(","));
    }
    if let Some(limit) = &matches.limit {
        args.extend([word("-m"), word("limit"), word("--limit"), word(limit_rate(limit))]);
        if limit.burst != 5 {
            args.extend([word("--limit-burst"), word(limit.burst.to_string())]);
        }
    }
    if let Some(comment) = &matches.comment {
        args.extend([word("-m"), word("comment"), word("--comment"), Arg::Text(comment.clone())]);
    }
    args.push(word("-j"));
    match &rule.target {
        Target::Accept => args.push(word("ACCEPT")),
        Target::Drop => args.push(word("DROP")),
        Target::Return => args.push(word("RETURN")),
        Target::Jump(chain) => args.push(word(chain.clone())),
        Target::Reject(with) => {
            let kind = match (with, rule.family) {
                (RejectWith::TcpReset, _) => "tcp-reset",
                (RejectWith::PortUnreachable, Family::V4) => "icmp-port-unreachable",
                (RejectWith::PortUnreachable, Family::V6) => "icmp6-port-unreachable",
            };
            args.extend([word("REJECT"), word("--reject-with"), word(kind)]);
        }
        Target::Log { prefix } => {
            args.push(word("LOG"));
            if let Some(prefix) = prefix {
                args.extend([word("--log-prefix"), Arg::Text(prefix.clone())]);
            }
        }
    }
    args
}

/// Ports: one port or range per side goes in the protocol's own match
/// (`-m tcp --sport A --dport B`), longer lists in `-m multiport`.
fn port_args(protocol: Protocol, matches: &Matches, args: &mut Vec<Arg>) {
    let single = |ports: &Option<Match<Vec<PortRange>>>| {
        ports.as_ref().filter(|ports| ports.value.len() == 1).cloned()
    };
    // udplite has no match module of its own; multiport covers it.
    let own_module = match protocol {
        Protocol::TCP => Some("tcp"),
        Protocol::UDP => Some("udp"),
        Protocol::SCTP => Some("sctp"),
        _ => None,
    };
    let (single_source, single_destination) = match own_module {
        Some(_) => (single(&matches.source_ports), single(&matches.destination_ports)),
        None => (None, None),
    };
    if single_source.is_some() || single_destination.is_some() {
        args.extend([word("-m"), word(own_module.expect("checked"))]);
        for (flag, ports) in [("--sport", &single_source), ("--dport", &single_destination)] {
            if let Some(ports) = ports {
                if ports.negated {
                    args.push(word("!"));
                }
                args.extend([word(flag), word(port_text(&ports.value[0]))]);
            }
        }
    }
    for (flag, ports, done) in [
        ("--sports", &matches.source_ports, single_source.is_some()),
        ("--dports", &matches.destination_ports, single_destination.is_some()),
    ] {
        let Some(ports) = ports.as_ref().filter(|_| !done) else { continue };
        args.extend([word("-m"), word("multiport")]);
        if ports.negated {
            args.push(word("!"));
        }
        let list: Vec<String> = ports.value.iter().map(port_text).collect();
        args.extend([word(flag), word(list.join(","))]);
    }
}

fn port_text(range: &PortRange) -> String {
    if range.low == range.high {
        range.low.to_string()
    } else {
        format!("{}:{}", range.low, range.high)
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

/// `rules.sh`: the same rules as a POSIX shell script of single commands.
/// Every argument is single-quoted, so no text from a policy can run.
pub fn shell(ruleset: &Ruleset, header: &str) -> String {
    let mut out = String::from("#!/bin/sh\n");
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("set -eu\n");
    for family in Family::BOTH {
        let command = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        out.push_str(&format!("\n# {}\n", family.name()));
        let run = |out: &mut String, args: &[Arg]| {
            out.push_str(command);
            out.push_str(" -w -t filter");
            for arg in args {
                out.push(' ');
                match arg {
                    Arg::Word(text) | Arg::Text(text) => shell_quote(text, out),
                }
            }
            out.push('\n');
        };
        run(&mut out, &[word("-F")]);
        run(&mut out, &[word("-X")]);
        for chain in [ChainRef::Input, ChainRef::Forward, ChainRef::Output] {
            let policy = match ruleset.policies.of(&chain).expect("built-in") {
                Verdict::Accept => "ACCEPT",
                Verdict::Drop => "DROP",
            };
            run(&mut out, &[word("-P"), word(chain.name()), word(policy)]);
        }
        let chains = user_chains(ruleset, family);
        for chain in &chains {
            run(&mut out, &[word("-N"), word(chain.clone())]);
        }
        for chain in chain_order(&chains) {
            for rule in rules_of(ruleset, family, &chain) {
                let mut args = vec![word("-A"), word(chain.name())];
                args.extend(rule_args(rule));
                run(&mut out, &args);
            }
        }
    }
    out
}

/// Every value in single quotes (`'` becomes `'\''`); only option flags
/// such as `-A` and `--dport`, and `!`, stay bare.
fn shell_quote(text: &str, out: &mut String) {
    let flag = text.starts_with('-')
        && text.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_uppercase() || byte == b'-');
    if flag || text == "!" {
        out.push_str(text);
        return;
    }
    out.push('\'');
    out.push_str(&text.replace('\'', r"'\''"));
    out.push('\'');
}
