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
    tables(ruleset, family, &mut out, true);
    out
}

/// `saved.v4` / `saved.v6`: what `iptables-save` prints once the rules are
/// loaded, without `#` lines and counters.
pub fn saved(ruleset: &Ruleset, family: Family) -> String {
    let mut out = String::new();
    tables(ruleset, family, &mut out, false);
    out
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

fn tables(ruleset: &Ruleset, family: Family, out: &mut String, counters: bool) {
    for table in tables_of(ruleset, family) {
        self::table(ruleset, family, table, out, counters);
    }
}

fn table(ruleset: &Ruleset, family: Family, table: Table, out: &mut String, counters: bool) {
    let counter = if counters { " [0:0]" } else { "" };
    out.push_str(&format!("*{}\n", table.name()));
    for chain in table.builtin_chains() {
        out.push_str(&format!(":{} {}{counter}\n", chain.name(), policy_name(ruleset, table, chain)));
    }
    let chains = if table == Table::Filter { user_chains(ruleset, family) } else { Vec::new() };
    for chain in &chains {
        out.push_str(&format!(":{chain} -{counter}\n"));
    }
    for chain in chain_order(table, &chains) {
        for rule in rules_of(ruleset, family, table, &chain) {
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
pub fn chain_order(table: Table, user: &[String]) -> Vec<ChainRef> {
    let mut order = table.builtin_chains().to_vec();
    order.extend(user.iter().cloned().map(ChainRef::User));
    order
}

pub fn rules_of<'a>(ruleset: &'a Ruleset, family: Family, table: Table, chain: &'a ChainRef) -> impl Iterator<Item = &'a Rule> {
    ruleset.rules.iter().filter(move |rule| rule.family == family && rule.table == table && &rule.chain == chain)
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
    // IPv6 treats AH as an extension header that `-p` skips over; its own
    // match module finds it.
    let ipv6_ah = rule.family == Family::V6 && matches.protocol == Some(Protocol::AH);
    if ipv6_ah {
        args.extend([word("-m"), word("ah")]);
    }
    if let Some(protocol) = matches.protocol.filter(|_| !ipv6_ah) {
        args.push(word("-p"));
        args.push(word(tables::protocol_save_name(protocol.0)));
        port_args(protocol, matches, &mut args);
        if let Some(icmp_type) = matches.icmp_type {
            let value = match icmp_type.value.code {
                Some(code) => format!("{}/{}", icmp_type.value.kind, code),
                None => icmp_type.value.kind.to_string(),
            };
            let (module, flag) =
                if protocol == Protocol::ICMP { ("icmp", "--icmp-type") } else { ("icmp6", "--icmpv6-type") };
            args.extend([word("-m"), word(module)]);
            negatable(&mut args, icmp_type.negated, flag, value);
        }
    }
    if let Some(mac) = &matches.mac_source {
        args.extend([word("-m"), word("mac")]);
        negatable(&mut args, mac.negated, "--mac-source", mac.value.clone());
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
            let kind = with.spelling(rule.family).expect("lowering checked the family has this answer");
            args.extend([word("REJECT"), word("--reject-with"), word(kind)]);
        }
        Target::Masquerade { ports } => {
            args.push(word("MASQUERADE"));
            if let Some(ports) = ports {
                args.extend([word("--to-ports"), word(range_with_dash(ports))]);
            }
        }
        Target::Redirect { ports } => {
            args.push(word("REDIRECT"));
            if let Some(ports) = ports {
                args.extend([word("--to-ports"), word(range_with_dash(ports))]);
            }
        }
        Target::Snat { address, ports } => {
            args.extend([word("SNAT"), word("--to-source"), word(nat_address(address, ports))]);
        }
        Target::Dnat { address, ports } => {
            args.extend([word("DNAT"), word("--to-destination"), word(nat_address(address, ports))]);
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
    if single_source.is_some() || single_destination.is_some() || matches.tcp_flags.is_some() {
        args.extend([word("-m"), word(own_module.expect("flags and single ports have a module"))]);
        for (flag, ports) in [("--sport", &single_source), ("--dport", &single_destination)] {
            if let Some(ports) = ports {
                if ports.negated {
                    args.push(word("!"));
                }
                args.extend([word(flag), word(port_text(&ports.value[0]))]);
            }
        }
        if let Some(flags) = &matches.tcp_flags {
            if flags.negated {
                args.push(word("!"));
            }
            args.extend([
                word("--tcp-flags"),
                word(TcpFlags::names(flags.value.mask)),
                word(TcpFlags::names(flags.value.set)),
            ]);
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
        for table in tables_of(ruleset, family) {
            shell_table(ruleset, family, table, command, &mut out);
        }
    }
    out
}

/// One table's commands. A `keep` chain is created when missing and never
/// flushed: its live contents belong to another program.
fn shell_table(ruleset: &Ruleset, family: Family, table: Table, command: &str, out: &mut String) {
    let run = |out: &mut String, args: &[Arg]| {
        out.push_str(&command_line(command, table, args));
        out.push('\n');
    };
    let chains = if table == Table::Filter { user_chains(ruleset, family) } else { Vec::new() };
    let kept: Vec<&String> =
        chains.iter().filter(|name| ruleset.chains.iter().any(|chain| &chain.name == *name && chain.keep)).collect();
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
    for chain in &chains {
        if kept.contains(&chain) {
            continue;
        }
        run(out, &[word("-N"), word(chain.clone())]);
    }
    // Kept chains get their initial rules only when they are created here.
    for name in &kept {
        let chain = ChainRef::User(name.to_string());
        out.push_str(&format!("if {} 2>/dev/null; then\n", command_line(command, table, &[word("-N"), word(chain.name())])));
        for rule in rules_of(ruleset, family, table, &chain) {
            let mut args = vec![word("-A"), word(chain.name())];
            args.extend(rule_args(rule));
            out.push_str("    ");
            run(out, &args);
        }
        out.push_str("fi\n");
    }
    for chain in chain_order(table, &chains) {
        if kept.iter().any(|name| name.as_str() == chain.name()) {
            continue;
        }
        for rule in rules_of(ruleset, family, table, &chain) {
            let mut args = vec![word("-A"), word(chain.name())];
            args.extend(rule_args(rule));
            run(out, &args);
        }
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
    out.push_str(&text.replace('\'', r"'\''"));
    out.push('\'');
}
