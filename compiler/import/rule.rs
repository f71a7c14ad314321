//! One `-A` line's arguments to fwc's IR: the matches and the target, or
//! the reason fwc's language cannot say it.

use super::parse::TableDump;
use crate::ir::*;
use crate::tables;
use ipnet::IpNet;
use std::net::IpAddr;

/// A rule fwc can represent, as the IR holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub matches: Matches,
    pub target: Target,
    /// `-g CHAIN`: a jump that does not come back. The same as `-j CHAIN`
    /// when the chain never returns; the caller decides.
    pub goto: bool,
}

pub fn chain_ref(name: &str) -> ChainRef {
    match name {
        "INPUT" => ChainRef::Input,
        "FORWARD" => ChainRef::Forward,
        "OUTPUT" => ChainRef::Output,
        "PREROUTING" => ChainRef::Prerouting,
        "POSTROUTING" => ChainRef::Postrouting,
        other => ChainRef::User(other.to_string()),
    }
}

/// Reads the arguments after `-A CHAIN`.
pub fn parse_rule(args: &[String], family: Family, table: Table, dump: &TableDump, chain: &ChainRef) -> Result<Parsed, String> {
    let mut reader = Reader { args, position: 0 };
    let mut matches = Matches::default();
    let mut modules: Vec<String> = Vec::new();
    let mut target: Option<Target> = None;
    let mut goto = false;
    while let Some(word) = reader.next() {
        let mut negated = false;
        let mut word = word;
        if word == "!" {
            negated = true;
            word = reader.next().ok_or("`!` ends the rule")?;
        }
        match word {
            "-s" | "--source" | "-d" | "--destination" => {
                let value = reader.value(word)?;
                let net = parse_net(value, family)?;
                let slot = if word.starts_with("-s") || word == "--source" { &mut matches.source } else { &mut matches.destination };
                set_once(slot, Match { negated, value: net }, word)?;
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let value = reader.value(word)?;
                check_interface(value)?;
                let slot = if word == "-i" || word == "--in-interface" { &mut matches.in_interface } else { &mut matches.out_interface };
                set_once(slot, Match { negated, value: value.to_string() }, word)?;
            }
            "-p" | "--protocol" => {
                let value = reader.value(word)?;
                if negated {
                    return Err(format!("`! -p {value}`: fwc has no negated protocol match"));
                }
                matches.protocol = parse_protocol(value, family)?;
            }
            "-f" | "--fragment" => return Err("fragment match (`-f`)".to_string()),
            "-m" | "--match" => {
                let module = reader.value(word)?;
                if !KNOWN_MODULES.contains(&module) {
                    return Err(format!("match `-m {module}`"));
                }
                modules.push(module.to_string());
            }
            "-j" | "--jump" => {
                let name = reader.value(word)?;
                if negated {
                    return Err("a negated target".to_string());
                }
                target = Some(parse_target(name, &mut reader, family, table, dump)?);
                if let Some(extra) = reader.next() {
                    return Err(format!("`{extra}` after the target's options"));
                }
            }
            "-g" | "--goto" => {
                let name = reader.value(word)?;
                if negated || table != Table::Filter || !dump.is_user_chain(name) {
                    return Err(format!("`-g {name}`"));
                }
                target = Some(Target::Jump(name.to_string()));
                goto = true;
                if let Some(extra) = reader.next() {
                    return Err(format!("`{extra}` after the goto"));
                }
            }
            option if option.starts_with("--") => {
                let Some(module) = modules.last() else { return Err(format!("option `{option}` outside a match")) };
                let module = module.clone();
                match_option(&module, option, negated, &mut reader, &mut matches)?;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let target = target.ok_or("a rule without a target (`-j`)")?;
    check_modules(&modules, &matches)?;
    check_placement(&matches, &target, table, chain)?;
    Ok(Parsed { matches, target, goto })
}

const KNOWN_MODULES: &[&str] =
    &["tcp", "udp", "sctp", "multiport", "conntrack", "state", "icmp", "icmp6", "mac", "limit", "comment"];

struct Reader<'a> {
    args: &'a [String],
    position: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let word = self.args.get(self.position)?;
        self.position += 1;
        Some(word.as_str())
    }

    fn value(&mut self, option: &str) -> Result<&'a str, String> {
        self.next().ok_or_else(|| format!("`{option}` without a value"))
    }

    /// The next word if it is not an option: for options with optional values.
    fn peek_option(&self) -> Option<&'a str> {
        self.args.get(self.position).map(String::as_str).filter(|word| word.starts_with("--"))
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, option: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("`{option}` twice in one rule"));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_net(text: &str, family: Family) -> Result<IpNet, String> {
    let net: IpNet = match text.parse() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(address) => IpNet::from(address),
            Err(_) => return Err(format!("address `{text}` (fwc takes prefix lengths, not masks)")),
        },
    };
    if Family::of(&net) != family {
        return Err(format!("address `{text}` in an {} dump", family.name()));
    }
    if net.trunc() != net {
        return Err(format!("address `{text}` has host bits set"));
    }
    Ok(net)
}

fn check_interface(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 15
        || name.contains('/')
        || name.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c.is_control())
        || name == "."
        || name == ".."
        || name[..name.len() - 1].contains('+');
    if bad {
        return Err(format!("interface `{name}`"));
    }
    Ok(())
}

fn parse_protocol(text: &str, family: Family) -> Result<Option<Protocol>, String> {
    let number: u8 = match text {
        "all" | "0" | "ip" => return Ok(None),
        "icmpv6" | "ipv6-icmp" => 58,
        "mh" | "ipv6-mh" => 135,
        _ => match text.parse::<u8>() {
            Ok(number) => number,
            Err(_) => match tables::PROTOCOL_NAMES.iter().find(|(_, name)| *name == text) {
                Some((number, _)) => *number,
                None => return Err(format!("protocol `{text}`")),
            },
        },
    };
    if number == 0 {
        return Ok(None);
    }
    let protocol = Protocol(number);
    let only = match protocol {
        Protocol::ICMP | Protocol::IGMP => Some(Family::V4),
        Protocol::ICMPV6 => Some(Family::V6),
        _ => None,
    };
    if only.is_some_and(|only| only != family) {
        return Err(format!("protocol `{text}` in an {} dump (fwc keeps it to its own family)", family.name()));
    }
    Ok(Some(protocol))
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>().map_err(|_| format!("port `{text}`"))
}

fn parse_range(text: &str) -> Result<PortRange, String> {
    let range = match text.split_once(':') {
        None => {
            let port = parse_port(text)?;
            PortRange { low: port, high: port }
        }
        Some((low, high)) => PortRange {
            low: if low.is_empty() { 0 } else { parse_port(low)? },
            high: if high.is_empty() { 65535 } else { parse_port(high)? },
        },
    };
    if range.low > range.high {
        return Err(format!("port range `{text}` runs backwards"));
    }
    Ok(range)
}

fn set_ports(slot: &mut Option<Match<Vec<PortRange>>>, ports: Match<Vec<PortRange>>, option: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("`{option}` beside another match of the same ports"));
    }
    *slot = Some(ports);
    Ok(())
}

fn flag_bits(text: &str) -> Result<u8, String> {
    let mut bits = 0;
    for name in text.split(',') {
        bits |= match name.to_ascii_uppercase().as_str() {
            "FIN" => 1,
            "SYN" => 2,
            "RST" => 4,
            "PSH" => 8,
            "ACK" => 16,
            "URG" => 32,
            "ALL" => 63,
            "NONE" => 0,
            _ => return Err(format!("TCP flag `{name}`")),
        };
    }
    Ok(bits)
}

fn parse_states(text: &str) -> Result<States, String> {
    let mut states = States::default();
    for name in text.split(',') {
        states = states.union(match name {
            "INVALID" => States::INVALID,
            "NEW" => States::NEW,
            "RELATED" => States::RELATED,
            "ESTABLISHED" => States::ESTABLISHED,
            "UNTRACKED" => States::UNTRACKED,
            _ => return Err(format!("connection state `{name}`")),
        });
    }
    Ok(states)
}

fn parse_icmp(text: &str, protocol: Protocol) -> Result<Option<IcmpType>, String> {
    if text == "any" {
        return Ok(None);
    }
    if text.contains('/') {
        return Err(format!("ICMP type and code `{text}`: fwc matches types only"));
    }
    let names = if protocol == Protocol::ICMP { tables::ICMP_TYPES } else { tables::ICMPV6_TYPES };
    let kind = match text.parse::<u8>() {
        Ok(kind) => kind,
        Err(_) => match names.iter().find(|(name, _)| *name == text) {
            Some((_, kind)) => *kind,
            None => return Err(format!("ICMP type `{text}`")),
        },
    };
    Ok(Some(IcmpType { kind, code: None }))
}

fn parse_limit(text: &str) -> Result<(u32, u32), String> {
    let (count, unit) = text.split_once('/').ok_or_else(|| format!("rate `{text}`"))?;
    let count: u32 = count.parse().map_err(|_| format!("rate `{text}`"))?;
    let unit_seconds = match unit {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86400,
        _ => return Err(format!("rate `{text}`")),
    };
    if count == 0 || count / unit_seconds > 10_000 {
        return Err(format!("rate `{text}` outside 1/day to 10000/second"));
    }
    Ok((count, unit_seconds))
}

fn match_option(module: &str, option: &str, negated: bool, reader: &mut Reader, matches: &mut Matches) -> Result<(), String> {
    let unknown = || format!("option `{option}` of `-m {module}`");
    match (module, option) {
        ("tcp" | "udp" | "sctp", "--sport" | "--source-port" | "--dport" | "--destination-port") => {
            let range = parse_range(reader.value(option)?)?;
            let source = matches!(option, "--sport" | "--source-port");
            let slot = if source { &mut matches.source_ports } else { &mut matches.destination_ports };
            set_ports(slot, Match { negated, value: vec![range] }, option)
        }
        ("tcp", "--tcp-flags") => {
            let mask = flag_bits(reader.value(option)?)?;
            let set = flag_bits(reader.value(option)?)?;
            if set & !mask != 0 {
                return Err("TCP flags set outside their mask".to_string());
            }
            set_once(&mut matches.tcp_flags, Match { negated, value: TcpFlags { mask, set } }, option)
        }
        ("tcp", "--syn") => {
            set_once(&mut matches.tcp_flags, Match { negated, value: TcpFlags { mask: 1 | 2 | 4 | 16, set: 2 } }, option)
        }
        ("multiport", "--sports" | "--source-ports" | "--dports" | "--destination-ports") => {
            let list = reader.value(option)?;
            let ranges = list.split(',').map(parse_range).collect::<Result<Vec<_>, _>>()?;
            let weight: usize = ranges.iter().map(|range| if range.low == range.high { 1 } else { 2 }).sum();
            if weight > 15 {
                return Err("a multiport list over 15 entries".to_string());
            }
            let slot = if option.starts_with("--s") { &mut matches.source_ports } else { &mut matches.destination_ports };
            set_ports(slot, Match { negated, value: ranges }, option)
        }
        ("multiport", "--ports") => Err("`-m multiport --ports` matches either side: fwc has no such match".to_string()),
        ("conntrack", "--ctstate") | ("state", "--state") => {
            let states = parse_states(reader.value(option)?)?;
            set_once(&mut matches.states, Match { negated, value: states }, option)
        }
        ("icmp", "--icmp-type") | ("icmp6", "--icmpv6-type") => {
            let protocol = if module == "icmp" { Protocol::ICMP } else { Protocol::ICMPV6 };
            if matches.protocol != Some(protocol) {
                return Err(format!("`-m {module}` without its protocol"));
            }
            match parse_icmp(reader.value(option)?, protocol)? {
                Some(kind) => set_once(&mut matches.icmp_type, Match { negated, value: kind }, option),
                None if negated => Err("`! --icmp-type any` matches nothing".to_string()),
                None => Ok(()),
            }
        }
        ("mac", "--mac-source") => {
            let value = reader.value(option)?.to_ascii_lowercase();
            let valid = value.len() == 17
                && value.split(':').count() == 6
                && value.split(':').all(|part| part.len() == 2 && part.chars().all(|c| c.is_ascii_hexdigit()));
            if !valid {
                return Err(format!("MAC address `{value}`"));
            }
            set_once(&mut matches.mac_source, Match { negated, value }, option)
        }
        ("limit", "--limit") => {
            if negated {
                return Err("a negated limit".to_string());
            }
            let (count, unit_seconds) = parse_limit(reader.value(option)?)?;
            let burst = matches.limit.map_or(5, |limit| limit.burst);
            matches.limit = Some(Limit { count, unit_seconds, burst });
            Ok(())
        }
        ("limit", "--limit-burst") => {
            let burst: u32 = reader.value(option)?.parse().map_err(|_| "a limit burst that is not a number".to_string())?;
            if burst == 0 || burst > 10_000 {
                return Err(format!("limit burst {burst} outside 1 to 10000"));
            }
            let limit = matches.limit.get_or_insert(Limit { count: 3, unit_seconds: 3600, burst });
            limit.burst = burst;
            Ok(())
        }
        ("comment", "--comment") => {
            let text = reader.value(option)?;
            if text.len() > 255 || text.contains(['\n', '\r', '\0']) {
                return Err("a comment fwc cannot write".to_string());
            }
            set_once(&mut matches.comment, text.to_string(), option)
        }
        _ => Err(unknown()),
    }
}

/// A match module fwc prints only when it has something to match: `-m tcp`
/// alone matches nothing more than `-p tcp`.
fn check_modules(modules: &[String], matches: &Matches) -> Result<(), String> {
    for module in modules {
        let wants = match module.as_str() {
            "tcp" => Some(Protocol::TCP),
            "udp" => Some(Protocol::UDP),
            "sctp" => Some(Protocol::SCTP),
            _ => None,
        };
        if let Some(protocol) = wants {
            if matches.protocol != Some(protocol) {
                return Err(format!("`-m {module}` without `-p {module}`"));
            }
        }
        if module == "multiport" && !matches.protocol.is_some_and(Protocol::has_ports) {
            return Err("`-m multiport` without a protocol that has ports".to_string());
        }
    }
    if matches.tcp_flags.is_some() && matches.protocol != Some(Protocol::TCP) {
        return Err("TCP flags without `-p tcp`".to_string());
    }
    if (matches.source_ports.is_some() || matches.destination_ports.is_some())
        && !matches.protocol.is_some_and(Protocol::has_ports)
    {
        return Err("ports without a protocol that has ports".to_string());
    }
    Ok(())
}

fn parse_target(name: &str, reader: &mut Reader, family: Family, table: Table, dump: &TableDump) -> Result<Target, String> {
    let mut options: Vec<(&str, Option<&str>)> = Vec::new();
    while let Some(option) = reader.peek_option() {
        reader.next();
        let flag_only = matches!(
            option,
            "--log-tcp-sequence" | "--log-tcp-options" | "--log-ip-options" | "--log-uid" | "--log-macdecode" | "--random" | "--random-fully" | "--persistent"
        );
        let value = if flag_only { None } else { Some(reader.value(option)?) };
        options.push((option, value));
    }
    let take = |options: &mut Vec<(&str, Option<&str>)>, wanted: &str| -> Option<String> {
        let index = options.iter().position(|(option, _)| *option == wanted)?;
        options.remove(index).1.map(str::to_string)
    };
    let target = match name {
        "ACCEPT" => Target::Accept,
        "DROP" => Target::Drop,
        "RETURN" => Target::Return,
        "REJECT" => {
            let with = take(&mut options, "--reject-with").unwrap_or_else(|| match family {
                Family::V4 => "icmp-port-unreachable".to_string(),
                Family::V6 => "icmp6-port-unreachable".to_string(),
            });
            let kind = RejectWith::KINDS
                .iter()
                .find(|(kind, ..)| kind.spelling(family) == Some(with.as_str()))
                .map(|(kind, ..)| *kind)
                .ok_or_else(|| format!("`--reject-with {with}`"))?;
            Target::Reject(kind)
        }
        "LOG" => {
            if let Some(level) = take(&mut options, "--log-level") {
                if level != "4" && level != "warning" && level != "warn" {
                    return Err(format!("`--log-level {level}`: fwc logs at level 4 (warning)"));
                }
            }
            let prefix = take(&mut options, "--log-prefix");
            if prefix.as_ref().is_some_and(|prefix| prefix.len() > 29 || prefix.contains(['\n', '\r', '\0'])) {
                return Err("a log prefix fwc cannot write".to_string());
            }
            Target::Log { prefix }
        }
        "MASQUERADE" => Target::Masquerade { ports: nat_ports(take(&mut options, "--to-ports"))? },
        "REDIRECT" => Target::Redirect { ports: nat_ports(take(&mut options, "--to-ports"))? },
        "SNAT" => {
            let to = take(&mut options, "--to-source").ok_or("SNAT without `--to-source`")?;
            let (address, ports) = nat_address(&to, family)?;
            if ports.is_some() {
                return Err("SNAT to ports: fwc's snat translates addresses only".to_string());
            }
            Target::Snat { address, ports }
        }
        "DNAT" => {
            let to = take(&mut options, "--to-destination").ok_or("DNAT without `--to-destination`")?;
            let (address, ports) = nat_address(&to, family)?;
            Target::Dnat { address, ports }
        }
        chain if dump.is_user_chain(chain) => {
            if table != Table::Filter {
                return Err("a jump to a user chain outside the filter table".to_string());
            }
            Target::Jump(chain.to_string())
        }
        other => return Err(format!("target `{other}`")),
    };
    if let Some((option, _)) = options.first() {
        return Err(format!("`{option}` of `-j {name}`"));
    }
    Ok(target)
}

fn nat_ports(text: Option<String>) -> Result<Option<PortRange>, String> {
    let Some(text) = text else { return Ok(None) };
    let range = match text.split_once('-') {
        Some((low, high)) => PortRange { low: parse_port(low)?, high: parse_port(high)? },
        None => {
            let port = parse_port(&text)?;
            PortRange { low: port, high: port }
        }
    };
    if range.low > range.high {
        return Err(format!("port range `{text}` runs backwards"));
    }
    Ok(Some(range))
}

/// `198.51.100.5`, `198.51.100.5:443`, `[2001:db8::5]:443`, `2001:db8::5`.
fn nat_address(text: &str, family: Family) -> Result<(IpAddr, Option<PortRange>), String> {
    let (address, ports) = if let Some(rest) = text.strip_prefix('[') {
        let (address, rest) = rest.split_once(']').ok_or_else(|| format!("NAT address `{text}`"))?;
        (address, rest.strip_prefix(':'))
    } else if family == Family::V4 {
        match text.split_once(':') {
            Some((address, ports)) => (address, Some(ports)),
            None => (text, None),
        }
    } else {
        (text, None)
    };
    if address.contains('-') {
        return Err(format!("NAT to an address range `{address}`: fwc translates to one host"));
    }
    let parsed: IpAddr = address.parse().map_err(|_| format!("NAT address `{text}`"))?;
    if (family == Family::V4) != parsed.is_ipv4() {
        return Err(format!("NAT address `{text}` in an {} dump", family.name()));
    }
    Ok((parsed, nat_ports(ports.map(str::to_string))?))
}

/// What the kernel allows where, narrowed to what fwc's language places
/// there: NAT targets in their chains, interfaces on the side a chain has.
fn check_placement(matches: &Matches, target: &Target, table: Table, chain: &ChainRef) -> Result<(), String> {
    let nat_target = matches!(target, Target::Masquerade { .. } | Target::Snat { .. } | Target::Dnat { .. } | Target::Redirect { .. });
    match table {
        Table::Filter => {
            if nat_target {
                return Err("a NAT target in the filter table".to_string());
            }
            if matches!(target, Target::Return) && chain.is_builtin() {
                return Err("RETURN from a built-in chain: fwc's `return` goes inside a chain".to_string());
            }
        }
        Table::Nat => {
            if !chain.is_builtin() {
                return Err("a user chain in the nat table".to_string());
            }
            let fits = match target {
                Target::Masquerade { .. } | Target::Snat { .. } => *chain == ChainRef::Postrouting,
                Target::Dnat { .. } | Target::Redirect { .. } => matches!(chain, ChainRef::Prerouting | ChainRef::Output),
                Target::Log { .. } => matches!(chain, ChainRef::Prerouting | ChainRef::Output | ChainRef::Postrouting),
                _ => false,
            };
            if !fits {
                return Err(format!("this target in nat {}: fwc writes NAT rules as masquerade, snat, dnat and redirect", chain.name()));
            }
            if matches.limit.is_some() && !matches!(target, Target::Log { .. }) {
                return Err("a limit on a NAT rule".to_string());
            }
            if matches!(target, Target::Redirect { ports: Some(_) } | Target::Masquerade { ports: Some(_) } | Target::Dnat { ports: Some(_), .. })
                && !matches.protocol.is_some_and(Protocol::has_ports)
            {
                return Err("NAT ports without a protocol that has ports".to_string());
            }
        }
    }
    Ok(())
}
