//! Chain-by-chain unified diffs between two [`Rules`] in normal form.
//!
//! `-` lines are only in the first (the live rules), `+` lines only in the
//! second (what fwc would load): the diff reads as "what `fwc apply` would
//! change". Each chain is shown as its `:NAME POLICY` line followed by its
//! rules, so a changed policy, a chain only on one side and a changed rule
//! all appear as lines.

use super::ruleset::{Chain, Rules};
use similar::TextDiff;

/// One chain that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainDiff {
    pub table: String,
    pub chain: String,
    /// The unified diff, headers included.
    pub text: String,
}

/// The chains whose text differs, by table then chain name.
pub fn diff(live: &Rules, wanted: &Rules, live_name: &str, wanted_name: &str) -> Vec<ChainDiff> {
    let mut names: Vec<(&String, &String)> = Vec::new();
    for rules in [live, wanted] {
        for (table_name, table) in &rules.tables {
            for chain_name in table.chains.keys() {
                if !names.contains(&(table_name, chain_name)) {
                    names.push((table_name, chain_name));
                }
            }
        }
    }
    names.sort();
    let mut diffs = Vec::new();
    for (table, chain) in names {
        let old = chain_text(live, table, chain);
        let new = chain_text(wanted, table, chain);
        if old == new {
            continue;
        }
        let text = TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{live_name} {table}/{chain}"), &format!("{wanted_name} {table}/{chain}"))
            .to_string();
        diffs.push(ChainDiff { table: table.clone(), chain: chain.clone(), text });
    }
    diffs
}

/// A chain as lines; empty when the chain does not exist. A built-in chain
/// of a table that is absent is empty and accepting.
fn chain_text(rules: &Rules, table: &str, chain: &str) -> String {
    let builtin = super::ruleset::builtin_chains(table).contains(&chain);
    let found: Option<&Chain> = rules.tables.get(table).and_then(|table| table.chains.get(chain));
    let default_builtin = Chain { policy: Some("ACCEPT".to_string()), rules: Vec::new() };
    let chain_rules = match (found, builtin) {
        (Some(found), _) => found,
        (None, true) => &default_builtin,
        (None, false) => return String::new(),
    };
    let mut text = format!(":{chain} {}\n", chain_rules.policy.as_deref().unwrap_or("-"));
    for rule in &chain_rules.rules {
        text.push_str(rule);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_changed_rules_and_policies_per_chain() {
        let live = Rules::parse("*filter\n:INPUT ACCEPT [0:0]\n:x - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A x -j DROP\nCOMMIT\n").unwrap();
        let wanted = Rules::parse("*filter\n:INPUT DROP [0:0]\n:x - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A x -j DROP\nCOMMIT\n").unwrap();
        let diffs = diff(&live, &wanted, "live", "policy");
        assert_eq!(diffs.len(), 1);
        assert_eq!(
            diffs[0].text,
            "--- live filter/INPUT\n+++ policy filter/INPUT\n@@ -1,2 +1,3 @@\n-:INPUT ACCEPT\n+:INPUT DROP\n -A INPUT -i lo -j ACCEPT\n+-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"
        );
        assert!(diff(&live, &live, "a", "b").is_empty());
    }

    #[test]
    fn a_chain_on_one_side_only() {
        let live = Rules::parse("*filter\n:INPUT ACCEPT [0:0]\n:extra - [0:0]\nCOMMIT\n").unwrap();
        let diffs = diff(&live, &Rules::default(), "live", "policy");
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].text.contains("-:extra -"));
    }
}
