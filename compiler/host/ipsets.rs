//! The address sets a build's rules match (`ipsets.restore`) against the
//! live ones (`ipset save`): which sets are missing or hold other members.
//!
//! Only the sets the build names are compared; other sets, and sets an
//! earlier build left behind, are none of fwc's business here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Set name → members, each member in one spelling.
pub type Sets = BTreeMap<String, BTreeSet<String>>;

/// The sets `ipsets.restore` fills: each is filled under `NAME-new` and
/// swapped in as `NAME`.
pub fn from_restore(text: &str) -> Sets {
    let mut sets = Sets::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["swap", _, name] => {
                sets.entry(name.to_string()).or_default();
            }
            ["add", temporary, member, ..] => {
                let name = temporary.strip_suffix("-new").unwrap_or(temporary);
                sets.entry(name.to_string()).or_default().insert(member_text(member));
            }
            _ => {}
        }
    }
    sets
}

/// The sets `ipset save` prints.
pub fn from_save(text: &str) -> Sets {
    let mut sets = Sets::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["create", name, ..] => {
                sets.entry(name.to_string()).or_default();
            }
            ["add", name, member, ..] => {
                sets.entry(name.to_string()).or_default().insert(member_text(member));
            }
            _ => {}
        }
    }
    sets
}

/// One spelling of a member: the address as `IpAddr` prints it, without a
/// prefix length that covers one address (`ipset save` leaves it out).
fn member_text(member: &str) -> String {
    let (address, length) = match member.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (member, None),
    };
    let Ok(parsed) = address.parse::<IpAddr>() else {
        return member.to_string();
    };
    let whole = if parsed.is_ipv4() { "32" } else { "128" };
    match length {
        Some(length) if length != whole => format!("{parsed}/{length}"),
        _ => parsed.to_string(),
    }
}

/// What the live sets lack of the build's, set by set, as diff lines
/// (`+ NAME MEMBER` to add, `- NAME MEMBER` to remove); empty when every
/// set of the build is live with exactly its members.
pub fn diff(live: &Sets, built: &Sets) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, members) in built {
        match live.get(name) {
            None => lines.push(format!("+ set {name} ({} member(s)), not live\n", members.len())),
            Some(current) => {
                for member in current.difference(members) {
                    lines.push(format!("- set {name} {member}\n"));
                }
                for member in members.difference(current) {
                    lines.push(format!("+ set {name} {member}\n"));
                }
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILT: &str = "# Generated\ncreate fwc-4-1 hash:net family inet -exist\ncreate fwc-4-1-new hash:net family inet -exist\n\
flush fwc-4-1-new\nadd fwc-4-1-new 198.18.1.0/24\nadd fwc-4-1-new 198.18.16.7/32\nswap fwc-4-1-new fwc-4-1\ndestroy fwc-4-1-new\n";

    #[test]
    fn the_live_sets_match_in_ipset_saves_spelling() {
        let live = "create fwc-4-1 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n\
add fwc-4-1 198.18.16.7\nadd fwc-4-1 198.18.1.0/24\ncreate other hash:ip family inet\nadd other 198.18.9.9\n";
        assert_eq!(diff(&from_save(live), &from_restore(BUILT)), Vec::<String>::new());
    }

    #[test]
    fn missing_sets_and_members_are_reported() {
        assert_eq!(diff(&Sets::new(), &from_restore(BUILT)), ["+ set fwc-4-1 (2 member(s)), not live\n"]);
        let live = "create fwc-4-1 hash:net family inet\nadd fwc-4-1 198.18.1.0/24\nadd fwc-4-1 198.18.2.0/24\n";
        assert_eq!(diff(&from_save(live), &from_restore(BUILT)), ["- set fwc-4-1 198.18.2.0/24\n", "+ set fwc-4-1 198.18.16.7\n"]);
    }

    #[test]
    fn ipv6_members_are_spelled_one_way() {
        assert_eq!(member_text("fd00:0:0::1/128"), "fd00::1");
        assert_eq!(member_text("fd00:1::/48"), "fd00:1::/48");
    }
}
