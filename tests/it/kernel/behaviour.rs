//! Real packets through compiled policies: what a policy allows gets
//! through with its replies, over IPv4 and IPv6, and what it does not
//! allow is blocked. See `lab` for the topology and how probes work.

use super::lab::{allows, blocks, ping, tcp, udp, Backend, Host, Lab, Neighbours, Peer};
use super::policies::{BASH_SETUP, STATEFUL_ALONE, WEB_SERVER};

#[test]
fn bash_setup_lets_through_what_the_script_meant_over_both_families() {
    let lab = Lab::start(BASH_SETUP, &[]);
    lab.expect(&[
        // ssh in, over IPv6 too (the script allowed IPv4 only).
        allows(tcp(Peer, Host, 22)),
        allows(tcp(Backend, Host, 22)),
        blocks(tcp(Peer, Host, 80)),
        // etcd: out on eth2 only, and not in.
        allows(tcp(Host, Backend, 4001)),
        blocks(tcp(Host, Peer, 4001)),
        blocks(tcp(Backend, Host, 4001)),
        // DNS and NTP out, answers included; nothing else out.
        allows(udp(Host, Peer, 53)),
        allows(tcp(Host, Peer, 53)),
        allows(udp(Host, Peer, 123)),
        blocks(udp(Host, Peer, 5353)),
        blocks(tcp(Host, Peer, 443)),
        // Ping both ways. IPv6 needs neighbour discovery through baseline's
        // icmpv6 part first, so these also show that it works.
        allows(ping(Peer, Host)),
        allows(ping(Host, Peer)),
        allows(ping(Backend, Host)),
        allows(ping(Host, Backend)),
    ]);
}

#[test]
fn bash_setup_lets_in_only_replies_from_the_dns_ntp_and_etcd_ports() {
    let lab = Lab::start(BASH_SETUP, &[]);
    // The script accepted any packet from port 53; stateful reply rules
    // accept only answers to the host's own queries.
    lab.expect(&[
        blocks(udp(Peer, Host, 40000).sport(53)),
        blocks(tcp(Peer, Host, 40000).sport(53)),
        blocks(udp(Peer, Host, 40001).sport(123)),
        blocks(tcp(Backend, Host, 40002).sport(4001)),
        blocks(tcp(Peer, Host, 40003).sport(22)),
    ]);
}

#[test]
fn bash_setup_applies_fail2ban_bans_before_the_ssh_allow() {
    let lab = Lab::start(BASH_SETUP, &[]);
    // What fail2ban does on a ban: insert a DROP in front of the RETURN,
    // in the table of the banned address's family.
    lab.host_run(&["iptables", "-w", "-I", "fail2ban-ssh", "1", "-s", "198.18.0.2", "-j", "DROP"]);
    lab.expect(&[
        blocks(tcp(Peer, Host, 22).v4()),
        allows(tcp(Peer, Host, 22).v6()),
        allows(tcp(Backend, Host, 22)),
        // The ban is for ssh only.
        allows(ping(Peer, Host)),
    ]);
    lab.host_run(&["ip6tables", "-w", "-I", "fail2ban-ssh", "1", "-s", "fd00::2", "-j", "DROP"]);
    lab.expect(&[blocks(tcp(Peer, Host, 22)), allows(tcp(Backend, Host, 22))]);
}

#[test]
fn web_server_serves_80_and_443_and_nothing_else() {
    let lab = Lab::start(WEB_SERVER, &[]);
    lab.expect(&[
        allows(tcp(Peer, Host, 80)),
        allows(tcp(Peer, Host, 443)),
        allows(tcp(Backend, Host, 443)),
        allows(tcp(Peer, Host, 22)),
        blocks(tcp(Peer, Host, 8080)),
        blocks(tcp(Peer, Host, 23)),
        blocks(udp(Peer, Host, 80)),
        blocks(udp(Peer, Host, 443)),
        // `policy out drop` from baseline: the server opens nothing itself.
        blocks(tcp(Host, Peer, 8080)),
        blocks(tcp(Host, Peer, 80)),
        allows(udp(Host, Peer, 53)),
    ]);
}

#[test]
fn a_stateful_rule_works_without_baseline() {
    // No ICMPv6 is allowed, so IPv6 neighbours are set up front.
    let lab = Lab::start_with(STATEFUL_ALONE, &[], Neighbours::Static);
    lab.expect(&[
        // The answers leave through the derived reply rule alone.
        allows(tcp(Peer, Host, 22)),
        allows(tcp(Backend, Host, 22)),
        // It lets out replies to that flow, and nothing else.
        blocks(tcp(Host, Peer, 22)),
        blocks(tcp(Host, Peer, 80)),
        blocks(udp(Peer, Host, 22)),
        blocks(tcp(Peer, Host, 80)),
        blocks(ping(Peer, Host)),
        blocks(ping(Host, Peer)),
    ]);
    // Not even a connection the host opens from port 22.
    lab.expect(&[blocks(tcp(Host, Peer, 40000).sport(22)), blocks(udp(Host, Peer, 40000).sport(22))]);
}

#[test]
fn a_stateful_rule_in_a_user_chain_gets_its_replies_out() {
    let policy = "\
policy in drop
policy out drop
chain from-peer {
    allow tcp 8000 stateful
    allow udp 8001 stateful
    return
}
jump in from { 198.18.0.2, fd00::2 } to from-peer
";
    let lab = Lab::start_with(policy, &[], Neighbours::Static);
    lab.expect(&[
        allows(tcp(Peer, Host, 8000)),
        allows(udp(Peer, Host, 8001)),
        blocks(tcp(Backend, Host, 8000)),
        blocks(udp(Backend, Host, 8001)),
        blocks(tcp(Peer, Host, 8002)),
        blocks(tcp(Host, Peer, 8000)),
    ]);
}

#[test]
fn interfaces_in_a_policy_are_the_kernel_interfaces() {
    // `on` pins a rule to an interface, here given as a param.
    let policy = "\
param public
use baseline except ssh-in
allow in on $public tcp 8080 stateful
allow out on eth2 udp 9000 stateful
";
    let lab = Lab::start(policy, &[("public", "eth0")]);
    lab.expect(&[
        allows(tcp(Peer, Host, 8080)),
        blocks(tcp(Backend, Host, 8080)),
        blocks(tcp(Peer, Host, 22)),
        allows(udp(Host, Backend, 9000)),
        blocks(udp(Host, Peer, 9000)),
    ]);
}

/// Eight blocks: the deny list becomes one rule over an ipset.
const DENY_LIST: &str = "policy in drop
ignore no-neighbour-discovery \"IPv4 probes only\"
deny in from { 198.18.0.2, 198.18.4.0/24, 198.18.6.0/24, 198.18.8.0/24, 198.18.10.0/24, 198.18.12.0/24, 198.18.14.0/24, 198.18.16.0/24 }
allow in tcp 22
";

#[test]
fn a_deny_list_turned_address_set_blocks_its_members_only() {
    let source = super::support::TempDir::new("deny-list");
    let built = super::support::build(&source.write("deny.fw", DENY_LIST), &[]).expect("builds");
    assert!(built.read("rules.v4").unwrap().contains("-m set --match-set fwc-4-1 src -j DROP"), "the list is a set");
    let lab = Lab::start(DENY_LIST, &[]);
    // The peer (198.18.0.2) is listed; the backend (198.18.2.2) is not.
    lab.expect(&[blocks(tcp(Peer, Host, 22).v4()), allows(tcp(Backend, Host, 22).v4())]);
}
