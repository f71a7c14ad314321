//! `table inet fwc` as `nft -j list table inet fwc` prints it, in the
//! normal form apply and diff compare.
//!
//! Predicting nft's listing from `rules.nft` is fragile (nft merges,
//! reorders and respells what it is given), so the expected table is the
//! listing of `rules.nft` loaded into a scratch network namespace, and the
//! live one the listing of the kernel: both come from the same `nft`, and
//! this module reads both the same way.
//!
//! The normal form is a [`Rules`] with one table, `inet fwc`: each chain
//! has its rules as lines, with the base-chain line (`type filter hook
//! input priority 0; policy drop;`) in the place of an iptables policy;
//! each named set is an entry `set NAME` whose header is its type and flags
//! and whose lines are its elements, sorted (a set's members have no
//! order). Handles and counters (what changes between two listings of the
//! same table) are left out; everything else of a rule — matches,
//! statements, verdicts, its comment — is in its line, spelled close to
//! nft's own syntax so that a diff reads like `nft list`.

use super::ruleset::{Chain, Rules, Table};
use serde_json::{Map, Value};

/// The table's name in the normal form and in diffs, as nft writes it.
pub const TABLE: &str = crate::emit::nft::TABLE;

/// The family and name of the table, as the JSON listing has them.
const FAMILY: &str = "inet";
const NAME: &str = "fwc";

/// Reads `nft -j list table inet fwc` (or `nft -j list ruleset`: other
/// tables are skipped). No `table inet fwc` in the listing: no tables.
pub fn from_json(listing: &str) -> Result<Rules, String> {
    let value: Value = serde_json::from_str(listing).map_err(|error| format!("not nft's JSON: {error}"))?;
    let items = value.get("nftables").and_then(Value::as_array).ok_or("not nft's JSON: no `nftables` list")?;
    let ours = |object: &Map<String, Value>| {
        let (family, table) = match object.get("table") {
            // A table object names itself with `name`; the rest name their table.
            Some(Value::String(table)) => (object.get("family"), Some(table.as_str())),
            _ => (object.get("family"), object.get("name").and_then(Value::as_str)),
        };
        family.and_then(Value::as_str) == Some(FAMILY) && table == Some(NAME)
    };
    let mut table: Option<Table> = None;
    for item in items {
        let Some((kind, Value::Object(object))) = item.as_object().and_then(|item| item.iter().next()) else { continue };
        match kind.as_str() {
            "table" if ours(object) => {
                table.get_or_insert_with(Table::default);
            }
            "chain" if ours(object) => {
                let name = string(object, "name")?;
                let chain = table.get_or_insert_with(Table::default).chains.entry(name).or_default();
                chain.policy = base_chain(object);
            }
            "set" | "map" if ours(object) => {
                let name = format!("{kind} {}", string(object, "name")?);
                let mut elements: Vec<String> =
                    object.get("elem").and_then(Value::as_array).map(|list| list.iter().map(render).collect()).unwrap_or_default();
                elements.sort();
                let header = set_header(object);
                table.get_or_insert_with(Table::default).chains.insert(name, Chain { policy: Some(header), rules: elements });
            }
            "rule" if ours(object) => {
                let chain = string(object, "chain")?;
                let line = rule_line(object);
                table.get_or_insert_with(Table::default).chains.entry(chain).or_default().rules.push(line);
            }
            _ => {}
        }
    }
    let mut rules = Rules::default();
    if let Some(table) = table {
        rules.tables.insert(TABLE.to_string(), table);
    }
    Ok(rules)
}

/// Whether `nft -j list tables` lists `table inet fwc`.
pub fn has_table(tables: &str) -> Result<bool, String> {
    Ok(!from_json(tables)?.tables.is_empty())
}

/// The `nft -f` input that puts back the table `listing` (`nft list table
/// inet fwc`) shows, or, with none, leaves no `table inet fwc`: in one
/// transaction, as rules.nft does, and touching no other table.
pub fn restore_text(listing: Option<&str>) -> String {
    let mut text = format!("table {TABLE} {{}}\ndelete table {TABLE}\n");
    if let Some(listing) = listing {
        text.push_str(listing);
    }
    text
}

fn string(object: &Map<String, Value>, key: &str) -> Result<String, String> {
    object.get(key).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("nft's JSON: an object without `{key}`"))
}

/// A base chain's `type … hook … priority …; policy …;`; none for a
/// chain without a hook.
fn base_chain(chain: &Map<String, Value>) -> Option<String> {
    let hook = chain.get("hook")?;
    let mut line = format!("type {} hook {}", render(chain.get("type").unwrap_or(&Value::Null)), render(hook));
    if let Some(device) = chain.get("dev") {
        line.push_str(&format!(" device {}", render(device)));
    }
    line.push_str(&format!(" priority {};", render(chain.get("prio").unwrap_or(&Value::Null))));
    if let Some(policy) = chain.get("policy") {
        line.push_str(&format!(" policy {};", render(policy)));
    }
    Some(line)
}

/// A set's everything but its name, table and elements: `type ipv4_addr;
/// flags interval;` and whatever else the listing says (timeouts, maps'
/// value types, sizes).
fn set_header(set: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for (key, value) in set {
        if matches!(key.as_str(), "family" | "name" | "table" | "handle" | "elem") {
            continue;
        }
        let value = match value {
            Value::Array(list) => list.iter().map(render).collect::<Vec<_>>().join(", "),
            other => render(other),
        };
        parts.push(format!("{key} {value};"));
    }
    parts.join(" ")
}

/// A rule as one line: its statements in order, then its comment.
fn rule_line(rule: &Map<String, Value>) -> String {
    let mut words: Vec<String> = rule.get("expr").and_then(Value::as_array).map(|list| list.iter().map(render).collect()).unwrap_or_default();
    words.retain(|word| !word.is_empty());
    if let Some(comment) = rule.get("comment") {
        words.push(format!("comment {}", quoted(comment)));
    }
    words.join(" ")
}

/// An expression or statement, spelled close to nft's syntax; counters
/// without their numbers. What it does not know it spells `key value` for
/// each of an object's keys, so that two different expressions never
/// print the same.
fn render(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => word(text),
        Value::Array(list) => format!("{{ {} }}", list.iter().map(render).collect::<Vec<_>>().join(", ")),
        Value::Object(object) => {
            let single = if object.len() == 1 { object.iter().next() } else { None };
            match single {
                Some((key, inner)) => statement(key, inner),
                None => fields(object),
            }
        }
    }
}

/// One `{"KEY": INNER}` object.
fn statement(key: &str, inner: &Value) -> String {
    let field = |name: &str| inner.get(name).map(render).unwrap_or_default();
    match (key, inner) {
        ("match", _) => {
            let op = inner.get("op").and_then(Value::as_str).unwrap_or("==");
            let op = if op == "==" { String::new() } else { format!("{op} ") };
            format!("{} {op}{}", field("left"), field("right"))
        }
        ("payload", Value::Object(object)) if object.contains_key("protocol") => format!("{} {}", field("protocol"), field("field")),
        ("meta", Value::Object(_)) => format!("meta {}", field("key")),
        ("ct", Value::Object(object)) => match object.get("dir") {
            Some(direction) => format!("ct {} {}", render(direction), field("key")),
            None => format!("ct {}", field("key")),
        },
        ("prefix", Value::Object(_)) => format!("{}/{}", field("addr"), field("len")),
        ("range", Value::Array(ends)) if ends.len() == 2 => format!("{}-{}", render(&ends[0]), render(&ends[1])),
        ("set", Value::Array(list)) => format!("{{ {} }}", list.iter().map(element).collect::<Vec<_>>().join(", ")),
        ("concat", Value::Array(list)) => list.iter().map(render).collect::<Vec<_>>().join(" . "),
        ("&" | "|" | "^" | "<<" | ">>", Value::Array(operands)) if operands.len() == 2 => {
            format!("{} {key} {}", render(&operands[0]), render(&operands[1]))
        }
        ("vmap" | "map", Value::Object(_)) => format!("{} {key} {}", field("key"), field("data")),
        ("counter", _) => "counter".to_string(),
        ("jump" | "goto", Value::Object(_)) => format!("{key} {}", field("target")),
        (_, Value::Null) => key.to_string(),
        (_, Value::Object(object)) => format!("{key} {}", fields(object)),
        (_, other) => format!("{key} {}", render(other)),
    }
}

/// A set element: a value, or a map's `key : value` pair.
fn element(value: &Value) -> String {
    match value {
        Value::Array(pair) if pair.len() == 2 => format!("{} : {}", render(&pair[0]), render(&pair[1])),
        other => render(other),
    }
}

/// `key value` for each field of an object.
fn fields(object: &Map<String, Value>) -> String {
    object.iter().map(|(key, value)| format!("{key} {}", render(value))).collect::<Vec<_>>().join(" ")
}

/// A string as a word of its own, quoted unless it is one already.
fn word(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@' | '*'));
    if plain {
        text.to_string()
    } else {
        quoted(&Value::String(text.to_string()))
    }
}

fn quoted(value: &Value) -> String {
    match value {
        Value::String(text) => serde_json::to_string(text).expect("a string serialises"),
        other => serde_json::to_string(other).expect("a value serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list table inet fwc` of a table with a set, a base chain and
    /// a user chain, from nft 1.0.6 (counters and handles included).
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "fwc", "handle": 2}},
{"set": {"family": "inet", "name": "ports-1", "table": "fwc", "type": "inet_service", "handle": 7, "flags": ["interval"], "elem": [22, 80, {"range": [8000, 8080]}]}},
{"chain": {"family": "inet", "table": "fwc", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
{"chain": {"family": "inet", "table": "fwc", "name": "user-audit", "handle": 3}},
{"rule": {"family": "inet", "table": "fwc", "chain": "INPUT", "handle": 9, "comment": "web.fw:3", "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"counter": {"packets": 12, "bytes": 3400}}, {"accept": null}]}},
{"rule": {"family": "inet", "table": "fwc", "chain": "INPUT", "handle": 10, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@ports-1"}}, {"jump": {"target": "user-audit"}}]}},
{"rule": {"family": "inet", "table": "fwc", "chain": "user-audit", "handle": 11, "expr": [{"log": {"prefix": "x'; rm -rf / #"}}, {"reject": {"type": "tcp reset"}}]}},
{"rule": {"family": "inet", "table": "other", "chain": "INPUT", "handle": 4, "expr": [{"drop": null}]}}]}"#;

    #[test]
    fn reads_chains_rules_and_sets_without_handles_or_counters() {
        let rules = from_json(LISTING).unwrap();
        assert_eq!(rules.tables.keys().collect::<Vec<_>>(), ["inet fwc"], "other tables are skipped");
        let table = &rules.tables["inet fwc"];
        let input = &table.chains["INPUT"];
        assert_eq!(input.policy.as_deref(), Some("type filter hook input priority 0; policy drop;"));
        assert_eq!(
            input.rules,
            [
                "ct state in { established, related } counter accept comment \"web.fw:3\"",
                "tcp dport @ports-1 jump user-audit",
            ]
        );
        assert_eq!(table.chains["user-audit"].policy, None);
        assert_eq!(table.chains["user-audit"].rules, ["log prefix \"x'; rm -rf / #\" reject type \"tcp reset\""]);
        let set = &table.chains["set ports-1"];
        assert_eq!(set.policy.as_deref(), Some("flags interval; type inet_service;"));
        assert_eq!(set.rules, ["22", "80", "8000-8080"]);
        // The same table with other counters and handles reads the same.
        let recounted = LISTING.replace("\"packets\": 12, \"bytes\": 3400", "\"packets\": 0, \"bytes\": 0").replace("\"handle\": 9", "\"handle\": 90");
        assert_eq!(from_json(&recounted).unwrap(), rules);
    }

    #[test]
    fn a_changed_element_verdict_or_policy_is_a_difference() {
        let rules = from_json(LISTING).unwrap();
        for (from, to) in [("{\"range\": [8000, 8080]}", "{\"range\": [8000, 8081]}"), ("\"policy\": \"drop\"", "\"policy\": \"accept\""), ("{\"accept\": null}", "{\"drop\": null}"), ("\"op\": \"in\"", "\"op\": \"!=\"")] {
            assert!(LISTING.contains(from), "{from}");
            assert_ne!(from_json(&LISTING.replace(from, to)).unwrap(), rules, "{from} → {to}");
        }
    }

    #[test]
    fn no_table_is_no_rules_and_the_rollback_then_deletes_it() {
        let tables = r#"{"nftables": [{"metainfo": {"json_schema_version": 1}}, {"table": {"family": "ip", "name": "fwc", "handle": 1}}, {"table": {"family": "inet", "name": "other", "handle": 2}}]}"#;
        assert!(!has_table(tables).unwrap(), "ip fwc and inet other are not inet fwc");
        assert!(has_table(&tables.replace("\"ip\"", "\"inet\"")).unwrap());
        assert_eq!(from_json(tables).unwrap(), Rules::default());
        assert_eq!(restore_text(None), "table inet fwc {}\ndelete table inet fwc\n");
        assert!(restore_text(Some("table inet fwc {\n}\n")).ends_with("delete table inet fwc\ntable inet fwc {\n}\n"));
        assert!(from_json("Error: no").is_err());
    }
}
