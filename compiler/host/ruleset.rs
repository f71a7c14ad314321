//! Live and built rules in one normal form, and what fwc owns of them.
//!
//! A [`Rules`] is one family's tables, chains and rule lines with what
//! changes between two dumps of the same rules taken away: `#` lines,
//! counters, the order of tables and of chains (which differs between the
//! nf_tables and legacy backends), and tables that hold nothing (the
//! nf_tables backend prints no table it never created, legacy prints an
//! empty one). Rule lines are kept exactly as `iptables-save` prints them:
//! fwc's restore files use the same spelling, so equal rules are equal text.

use crate::import::parse::{parse_dump, DumpError};
use std::collections::BTreeMap;

/// One family's rules in normal form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// By table name.
    pub tables: BTreeMap<String, Table>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// By chain name; built-in chains have a policy, user chains `None`.
    pub chains: BTreeMap<String, Chain>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    pub policy: Option<String>,
    /// `-A CHAIN …` lines in order, without counters.
    pub rules: Vec<String>,
}

/// What of a table belongs to other programs: `chain NAME keep` (fwc
/// creates the chain, another program fills it) and `keep chain "PATTERN"`
/// (fwc never creates, flushes or reports the chains).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    /// Chains whose live contents are kept.
    pub chains: Vec<String>,
    /// Glob patterns of foreign chains.
    pub patterns: Vec<String>,
}

/// The built-in chains of each table, in the kernel's order.
pub fn builtin_chains(table: &str) -> &'static [&'static str] {
    match table {
        "filter" | "security" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        _ => &[],
    }
}

/// Tables in the order restore files list them: iptables-save's.
const TABLE_ORDER: [&str; 5] = ["raw", "mangle", "security", "nat", "filter"];

impl Rules {
    /// Reads `iptables-save` output (or a restore file).
    pub fn parse(text: &str) -> Result<Rules, DumpError> {
        let dump = parse_dump(text)?;
        let mut rules = Rules::default();
        for table_dump in dump.tables {
            let table = rules.tables.entry(table_dump.name.clone()).or_default();
            for declaration in &table_dump.chains {
                table.chains.entry(declaration.name.clone()).or_default().policy = declaration.policy.clone();
            }
            for rule in table_dump.rules {
                table.chains.entry(rule.chain.clone()).or_default().rules.push(rule.text);
            }
        }
        rules.drop_empty_tables();
        Ok(rules)
    }

    /// Removes the tables that hold nothing: only built-in chains, each
    /// empty and accepting. Loading such a table is the same as not having it.
    fn drop_empty_tables(&mut self) {
        self.tables.retain(|name, table| !table.is_empty_table(name));
    }

    /// The restore file that loads exactly these rules: each table it
    /// names is replaced whole. `empty_tables` names tables to reset to
    /// empty and accepting (loaded by fwc, absent here).
    pub fn restore_text(&self, empty_tables: &[String]) -> String {
        let mut names: Vec<&str> = self.tables.keys().map(String::as_str).collect();
        for name in empty_tables {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names.sort_by_key(|name| (TABLE_ORDER.iter().position(|known| known == name).unwrap_or(0), name.to_string()));
        let empty = Table::default();
        let mut text = String::new();
        for name in names {
            let table = self.tables.get(name).unwrap_or(&empty);
            text.push('*');
            text.push_str(name);
            text.push('\n');
            for (chain_name, chain) in table.ordered_chains(name) {
                let policy = chain.policy.as_deref().unwrap_or("-");
                text.push_str(&format!(":{chain_name} {policy} [0:0]\n"));
            }
            for (_, chain) in table.ordered_chains(name) {
                for rule in &chain.rules {
                    text.push_str(rule);
                    text.push('\n');
                }
            }
            text.push_str("COMMIT\n");
        }
        text
    }

    /// The tables of `self` that `other` lacks.
    pub fn tables_missing_from(&self, other: &Rules) -> Vec<String> {
        self.tables.keys().filter(|name| !other.tables.contains_key(*name)).cloned().collect()
    }

    /// Only the named tables.
    pub fn only_tables(&self, names: &[String]) -> Rules {
        Rules { tables: self.tables.iter().filter(|(name, _)| names.contains(name)).map(|(n, t)| (n.clone(), t.clone())).collect() }
    }
}

impl Table {
    fn is_empty_table(&self, name: &str) -> bool {
        self.chains.iter().all(|(chain_name, chain)| {
            builtin_chains(name).contains(&chain_name.as_str())
                && chain.rules.is_empty()
                && chain.policy.as_deref().map_or(true, |policy| policy == "ACCEPT")
        })
    }

    /// Built-in chains first in the kernel's order (every one of them, so a
    /// restore file sets every policy), then user chains by name.
    fn ordered_chains<'a>(&'a self, table: &str) -> Vec<(String, std::borrow::Cow<'a, Chain>)> {
        let mut chains = Vec::new();
        for builtin in builtin_chains(table) {
            match self.chains.get(*builtin) {
                Some(chain) => chains.push((builtin.to_string(), std::borrow::Cow::Borrowed(chain))),
                None => chains.push((
                    builtin.to_string(),
                    std::borrow::Cow::Owned(Chain { policy: Some("ACCEPT".to_string()), rules: Vec::new() }),
                )),
            }
        }
        for (name, chain) in &self.chains {
            if !builtin_chains(table).contains(&name.as_str()) {
                chains.push((name.clone(), std::borrow::Cow::Borrowed(chain)));
            }
        }
        chains
    }
}

/// The first word of the header lines fwc writes into rules.v4 / rules.v6
/// for what it keeps: `# fwc keep chain NAME`, `# fwc keep pattern GLOB`.
const KEEP_MARK: &str = "# fwc keep ";

impl Keep {
    /// Reads the `keep` header lines of a restore file fwc wrote.
    pub fn from_restore(text: &str) -> Keep {
        let mut keep = Keep::default();
        for line in text.lines().take_while(|line| line.starts_with('#')) {
            let Some(rest) = line.strip_prefix(KEEP_MARK) else { continue };
            match rest.split_once(' ') {
                Some(("chain", name)) => keep.chains.push(name.to_string()),
                Some(("pattern", pattern)) => keep.patterns.push(pattern.to_string()),
                _ => {}
            }
        }
        keep
    }

    /// The header lines for a restore file.
    pub fn header_lines(&self) -> String {
        let mut text = String::new();
        for name in &self.chains {
            text.push_str(&format!("{KEEP_MARK}chain {name}\n"));
        }
        for pattern in &self.patterns {
            text.push_str(&format!("{KEEP_MARK}pattern {pattern}\n"));
        }
        text
    }

    /// A chain of another program: matched by a `keep chain` pattern.
    pub fn is_foreign(&self, chain: &str) -> bool {
        self.patterns.iter().any(|pattern| glob::Pattern::new(pattern).is_ok_and(|glob| glob.matches(chain)))
    }
}

/// The chain a rule line jumps or goes to (`-j NAME`, `-g NAME`).
pub fn jump_target(rule: &str) -> Option<String> {
    let words = crate::import::parse::tokenize(rule).ok()?;
    words.windows(2).find(|pair| pair[0] == "-j" || pair[0] == "-g" || pair[0] == "--jump" || pair[0] == "--goto").map(|pair| pair[1].clone())
}

/// What of the live rules apply keeps: each a table and a chain, for the
/// report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// `chain NAME keep` chains whose live rules were taken over.
    pub contents: Vec<(String, String)>,
    /// Foreign chains (by pattern) carried over whole.
    pub foreign: Vec<(String, String)>,
    /// Rules of built-in chains that jump into foreign chains, carried over
    /// at the head of their chain.
    pub jumps: Vec<(String, String)>,
}

/// The rules to load: `built` (fwc's rules for the tables it owns) with the
/// live contents of `keep` chains, the live foreign chains of those tables,
/// and the live jumps into them from built-in chains (put first, in their
/// live order: fail2ban and Docker insert theirs at the head). Tables fwc
/// does not own are not in the result: a restore file leaves them alone.
pub fn splice(built: &Rules, live: &Rules, keep: &Keep) -> (Rules, Kept) {
    let mut result = built.clone();
    let mut kept = Kept::default();
    for (table_name, table) in result.tables.iter_mut() {
        let Some(live_table) = live.tables.get(table_name) else { continue };
        for name in &keep.chains {
            if let (Some(chain), Some(live_chain)) = (table.chains.get_mut(name), live_table.chains.get(name)) {
                chain.rules = live_chain.rules.clone();
                kept.contents.push((table_name.clone(), name.clone()));
            }
        }
        for (name, live_chain) in &live_table.chains {
            if keep.is_foreign(name) && !table.chains.contains_key(name) {
                table.chains.insert(name.clone(), live_chain.clone());
                kept.foreign.push((table_name.clone(), name.clone()));
            }
        }
        for builtin in builtin_chains(table_name) {
            let Some(live_chain) = live_table.chains.get(*builtin) else { continue };
            let jumps: Vec<String> = live_chain
                .rules
                .iter()
                .filter(|rule| jump_target(rule).is_some_and(|target| is_foreign_chain(built, table_name, &target, keep)))
                .cloned()
                .collect();
            if jumps.is_empty() {
                continue;
            }
            let chain = table.chains.entry(builtin.to_string()).or_insert_with(|| Chain { policy: Some("ACCEPT".into()), rules: Vec::new() });
            for _ in &jumps {
                kept.jumps.push((table_name.clone(), builtin.to_string()));
            }
            let mut rules = jumps;
            rules.append(&mut chain.rules);
            chain.rules = rules;
        }
    }
    (result, kept)
}

/// A chain matched by a pattern that fwc's own rules do not define.
fn is_foreign_chain(built: &Rules, table: &str, chain: &str, keep: &Keep) -> bool {
    keep.is_foreign(chain) && !built.tables.get(table).is_some_and(|table| table.chains.contains_key(chain))
}

/// Chains left out of a comparison, for the report: foreign chains, and
/// jumps into them from built-in chains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unmanaged {
    /// `table/chain` of each foreign chain.
    pub chains: Vec<String>,
    /// `table/chain: rule` of each jump into one.
    pub jumps: Vec<String>,
    /// Tables the policy does not own.
    pub tables: Vec<String>,
}

/// The part of `rules` fwc manages, for comparison with its build: only the
/// `owned` tables, without foreign chains or jumps into them, and with the
/// contents of `keep` chains left out (the chains themselves stay).
pub fn managed(rules: &Rules, owned: &[String], keep: &Keep, built: &Rules) -> (Rules, Unmanaged) {
    let mut unmanaged = Unmanaged::default();
    let mut result = Rules::default();
    for (table_name, table) in &rules.tables {
        if !owned.contains(table_name) {
            unmanaged.tables.push(table_name.clone());
            continue;
        }
        let mut kept_table = Table::default();
        for (name, chain) in &table.chains {
            if is_foreign_chain(built, table_name, name, keep) {
                unmanaged.chains.push(format!("{table_name}/{name}"));
                continue;
            }
            let mut chain = chain.clone();
            if keep.chains.contains(name) {
                chain.rules.clear();
            }
            chain.rules.retain(|rule| {
                let foreign = jump_target(rule).is_some_and(|target| is_foreign_chain(built, table_name, &target, keep));
                if foreign {
                    unmanaged.jumps.push(format!("{table_name}/{name}: {rule}"));
                }
                !foreign
            });
            kept_table.chains.insert(name.clone(), chain);
        }
        result.tables.insert(table_name.clone(), kept_table);
    }
    result.drop_empty_tables();
    (result, unmanaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [3:4]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -j DOCKER\nCOMMIT\n*filter\n:INPUT DROP [10:20]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:f2b-sshd - [0:0]\n:fail2ban-ssh - [0:0]\n[1:2] -A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n-A INPUT -j fail2ban-ssh\n-A INPUT -i lo -j ACCEPT\n-A f2b-sshd -s 198.18.0.9/32 -j REJECT --reject-with icmp-port-unreachable\n-A f2b-sshd -j RETURN\n-A fail2ban-ssh -s 198.18.0.7/32 -j DROP\n-A fail2ban-ssh -j RETURN\nCOMMIT\n";

    const BUILT: &str = "# fwc keep chain fail2ban-ssh\n# fwc keep pattern f2b-*\n*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:fail2ban-ssh - [0:0]\n-A INPUT -j fail2ban-ssh\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A fail2ban-ssh -j RETURN\nCOMMIT\n";

    #[test]
    fn normal_form_ignores_counters_comments_and_order() {
        let a = Rules::parse("*filter\n:OUTPUT ACCEPT [5:6]\n:INPUT DROP [1:2]\n:x - [0:0]\n-A INPUT -j x\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").unwrap();
        let b = Rules::parse("# c\n*filter\n:x - [9:9]\n:INPUT DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n[7:8] -A INPUT -j x\nCOMMIT\n").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Rules::parse("*filter\n:INPUT ACCEPT [0:0]\n:x - [0:0]\n-A INPUT -j x\nCOMMIT\n").unwrap());
    }

    #[test]
    fn keep_lines_round_trip() {
        let keep = Keep::from_restore(BUILT);
        assert_eq!(keep.chains, ["fail2ban-ssh"]);
        assert_eq!(keep.patterns, ["f2b-*"]);
        assert_eq!(Keep::from_restore(&keep.header_lines()), keep);
        assert!(keep.is_foreign("f2b-sshd") && !keep.is_foreign("fail2ban-ssh"));
    }

    #[test]
    fn splice_keeps_bans_foreign_chains_and_their_jumps() {
        let live = Rules::parse(LIVE).unwrap();
        let built = Rules::parse(BUILT).unwrap();
        let keep = Keep::from_restore(BUILT);
        let (spliced, kept) = splice(&built, &live, &keep);
        let filter = &spliced.tables["filter"];
        assert_eq!(filter.chains["fail2ban-ssh"].rules, ["-A fail2ban-ssh -s 198.18.0.7/32 -j DROP", "-A fail2ban-ssh -j RETURN"]);
        assert_eq!(filter.chains["f2b-sshd"].rules.len(), 2);
        assert_eq!(filter.chains["INPUT"].rules[0], "-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd");
        assert_eq!(filter.chains["INPUT"].rules.len(), 4);
        assert!(!spliced.tables.contains_key("nat"), "nat is not fwc's: the restore file leaves it alone");
        assert_eq!(kept.foreign, [("filter".to_string(), "f2b-sshd".to_string())]);
        // The spliced rules, loaded, are exactly what a later dump shows.
        let again = Rules::parse(&spliced.restore_text(&[])).unwrap();
        assert_eq!(again, spliced);
    }

    #[test]
    fn managed_view_hides_what_belongs_to_others() {
        let live = Rules::parse(LIVE).unwrap();
        let built = Rules::parse(BUILT).unwrap();
        let keep = Keep::from_restore(BUILT);
        let owned = vec!["filter".to_string()];
        let (live_view, unmanaged) = managed(&live, &owned, &keep, &built);
        let (spliced, _) = splice(&built, &live, &keep);
        let (built_view, _) = managed(&spliced, &owned, &keep, &built);
        assert_eq!(unmanaged.chains, ["filter/f2b-sshd"]);
        assert_eq!(unmanaged.tables, ["nat"]);
        assert_eq!(unmanaged.jumps.len(), 1);
        assert!(live_view.tables["filter"].chains["fail2ban-ssh"].rules.is_empty());
        // The live rules lack the ssh allow and FORWARD's policy differs.
        assert_ne!(live_view, built_view);
    }

    #[test]
    fn empty_tables_equal_missing_ones() {
        let empty = Rules::parse("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n").unwrap();
        assert_eq!(empty, Rules::default());
        let reset = Rules::default().restore_text(&["filter".to_string()]);
        assert_eq!(reset, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n");
    }

    #[test]
    fn jump_targets() {
        assert_eq!(jump_target("-A INPUT -p tcp -j f2b-x").as_deref(), Some("f2b-x"));
        assert_eq!(jump_target("-A INPUT -g DOCKER").as_deref(), Some("DOCKER"));
        assert_eq!(jump_target("-A INPUT -m comment --comment \"-j x\" -j ACCEPT").as_deref(), Some("ACCEPT"));
    }
}
