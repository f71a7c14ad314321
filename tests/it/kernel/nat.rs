//! NAT and reject, with real packets.
//!
//! ```text
//!   lan  eth0 ──── lan0  router  wan0 ──── eth0  wan
//!   198.18.1.2     198.18.1.1    198.18.2.1      198.18.2.2
//!   fd00:1::2      fd00:1::1     fd00:2::1       fd00:2::2
//! ```
//!
//! The router forwards (in its own namespace) and runs the policy; `lan`
//! has a default route through it, `wan` has none: it can only answer the
//! router's own addresses, so any answer that reaches a LAN host went
//! through the router's source NAT. Servers answer with the address they
//! saw the client as. Each link's two ends share a MAC address and do not
//! use ARP, so no neighbour discovery is needed.
//!
//! The reject tests use the differential test's host and peer namespaces.

use super::agent::{Agent, Mode, Proto, Request, Seen};
use super::differential::{compile, predict, sysctl, Backend, Compiled, Expect, Lanes, Probe};
use super::support::{run, Netns, COMMAND_LIMIT};
use fwc::eval::Program;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

/// Long enough for answers on a loaded machine; blocked flows wait it out.
const DEADLINE: Duration = Duration::from_secs(4);

struct Router {
    // Agents first: they are killed before their namespaces are deleted.
    lan_agent: Agent,
    wan_agent: Agent,
    _lan: Netns,
    router: Netns,
    _wan: Netns,
}

fn ip(namespace: &Netns, words: &str) {
    namespace.ip(&words.split_whitespace().collect::<Vec<_>>());
}

impl Router {
    fn start(compiled: &Compiled, backend: Backend) -> Router {
        let lan = Netns::new("nat-lan");
        let router = Netns::new("nat-router");
        let wan = Netns::new("nat-wan");
        for (other, router_end, link, v4, v6) in
            [(&lan, "lan0", "01", "198.18.1", "fd00:1:"), (&wan, "wan0", "02", "198.18.2", "fd00:2:")]
        {
            let mac = format!("02:00:00:00:{link}:01");
            ip(
                &router,
                &format!(
                    "link add {router_end} address {mac} type veth peer name eth0 netns {} address {mac}",
                    other.name()
                ),
            );
            for (namespace, interface, number) in [(&router, router_end, "1"), (other, "eth0", "2")] {
                ip(namespace, &format!("link set {interface} arp off"));
                ip(namespace, &format!("addr add {v4}.{number}/24 dev {interface}"));
                ip(namespace, &format!("addr add {v6}:{number}/64 dev {interface} nodad"));
                ip(namespace, &format!("link set {interface} up"));
            }
        }
        ip(&lan, "route add default via 198.18.1.1 dev eth0");
        ip(&lan, "route add default via fd00:1::1 dev eth0");
        sysctl(&router, &[("net/ipv4/ip_forward", "1", false), ("net/ipv6/conf/all/forwarding", "1", false)]);
        let loads: &[(&str, &str)] = match backend {
            Backend::Iptables => &[("iptables-restore", "rules.v4"), ("ip6tables-restore", "rules.v6")],
            Backend::Nft => &[("nft", "rules.nft")],
        };
        for (program, output) in loads {
            let mut command = router.command(program);
            if backend == Backend::Nft {
                command.args(["-f", "-"]);
            }
            match run(&mut command, Some(compiled.outputs[output].as_bytes()), COMMAND_LIMIT) {
                Ok(ran) if ran.status.success() && ran.stderr.trim().is_empty() => {}
                Ok(ran) => panic!(
                    "loading {output} into the router: {program} {}:\n{}{}\npolicy:\n{}",
                    ran.status, ran.stderr, ran.stdout, compiled.text
                ),
                Err(error) => panic!("{error}"),
            }
        }
        let lan_agent = Agent::spawn(&lan);
        let wan_agent = Agent::spawn(&wan);
        Router { lan_agent, wan_agent, _lan: lan, router, _wan: wan }
    }

    /// The router's live NAT and filter rules with counters, for messages.
    fn live_rules(&self) -> String {
        let mut text: String = ["iptables-save", "ip6tables-save"]
            .iter()
            .map(|program| self.router.exec(&[program, "-c"], None).unwrap_or_else(|error| error))
            .collect();
        text.push_str(&self.router.exec(&["nft", "list", "ruleset"], None).unwrap_or_else(|error| error));
        text
    }
}

/// A TCP or UDP flow: from, to, and what the client should see.
struct Flow {
    proto: Proto,
    from: &'static str,
    to: &'static str,
    port: u16,
    /// `Some(address)`: answered, the server saw the client as `address`;
    /// `None`: not answered.
    seen_as: Option<&'static str>,
    why: &'static str,
}

fn flow(
    proto: Proto,
    from: &'static str,
    to: &'static str,
    port: u16,
    seen_as: Option<&'static str>,
    why: &'static str,
) -> Flow {
    Flow { proto, from, to, port, seen_as, why }
}

/// Sends every flow at once from the agent on `from_lan`'s side; panics
/// listing each flow that did not behave, with the router's rules.
fn expect(router: &mut Router, flows: &[Flow], servers: &[(bool, Proto, u16)]) {
    for (on_lan, proto, port) in servers {
        let agent = if *on_lan { &mut router.lan_agent } else { &mut router.wan_agent };
        let one = BTreeSet::from([*port]);
        match proto {
            Proto::Tcp => agent.serve(&one, &BTreeSet::new()),
            _ => agent.serve(&BTreeSet::new(), &one),
        }
    }
    let mut by_side: BTreeMap<bool, Vec<Request>> = BTreeMap::new();
    for (index, flow) in flows.iter().enumerate() {
        let from_lan = flow.from.starts_with("198.18.1.") || flow.from.starts_with("fd00:1:");
        by_side.entry(from_lan).or_default().push(Request {
            id: index as u32,
            mode: Mode::New,
            proto: flow.proto,
            source: flow.from.parse().expect("literal"),
            source_port: 40000 + index as u16,
            destination: flow.to.parse().expect("literal"),
            destination_port: flow.port,
        });
    }
    for (from_lan, requests) in &by_side {
        let agent = if *from_lan { &mut router.lan_agent } else { &mut router.wan_agent };
        agent.start(requests, DEADLINE);
    }
    let mut seen = BTreeMap::new();
    for from_lan in by_side.keys() {
        let agent = if *from_lan { &mut router.lan_agent } else { &mut router.wan_agent };
        seen.extend(agent.finish(DEADLINE));
    }
    let mut failures = Vec::new();
    for (index, flow) in flows.iter().enumerate() {
        let got = &seen[&(index as u32)];
        let ok = match (flow.seen_as, got) {
            (Some(expected), Seen::Answered(address)) => {
                address.parse::<IpAddr>().ok() == expected.parse::<IpAddr>().ok()
            }
            (None, Seen::Answered(_)) => false,
            (None, _) => true,
            (Some(_), _) => false,
        };
        if !ok {
            let wanted = match flow.seen_as {
                Some(address) => format!("an answer from a server that saw {address}"),
                None => "no answer".to_string(),
            };
            failures.push(format!(
                "{} {} -> {} port {} ({}): wanted {wanted}, got {got}",
                flow.proto.name(),
                flow.from,
                flow.to,
                flow.port,
                flow.why
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} flows went wrong:\n  {}\n\nrouter's rules:\n{}",
        failures.len(),
        flows.len(),
        failures.join("\n  "),
        router.live_rules()
    );
}

const ROUTER_POLICY: &str = "\
policy forward drop
masquerade out on wan0 from 198.18.1.0/24
masquerade out on wan0 from fd00:1::/64
allow forward on lan0 -> wan0 tcp 80 stateful
allow forward on lan0 -> wan0 udp 53 stateful
forward-port in on wan0 tcp 8443 to 198.18.1.2 port 443
forward-port in on wan0 tcp 8443 to fd00:1::2 port 443
";

#[test]
fn masquerade_lets_lan_hosts_reach_the_wan_as_the_router() {
    let compiled = compile(ROUTER_POLICY).unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    for backend in Backend::BOTH {
    let mut router = Router::start(&compiled, backend);
    use Proto::{Tcp, Udp};
    expect(
        &mut router,
        &[
            flow(Tcp, "198.18.1.2", "198.18.2.2", 80, Some("198.18.2.1"), "masqueraded as the router's wan0"),
            flow(Tcp, "fd00:1::2", "fd00:2::2", 80, Some("fd00:2::1"), "masqueraded as the router's wan0"),
            flow(Udp, "198.18.1.2", "198.18.2.2", 53, Some("198.18.2.1"), "masqueraded as the router's wan0"),
            flow(Udp, "fd00:1::2", "fd00:2::2", 53, Some("fd00:2::1"), "masqueraded as the router's wan0"),
            flow(Tcp, "198.18.1.2", "198.18.2.2", 81, None, "not forwarded: the forward policy drops it"),
            flow(Tcp, "fd00:1::2", "fd00:2::2", 81, None, "not forwarded: the forward policy drops it"),
            flow(Udp, "198.18.1.2", "198.18.2.2", 54, None, "not forwarded: the forward policy drops it"),
        ],
        &[(false, Tcp, 80), (false, Tcp, 81), (false, Udp, 53), (false, Udp, 54)],
    );
    }
}

#[test]
fn a_port_forward_reaches_the_lan_server_from_the_wan() {
    let compiled = compile(ROUTER_POLICY).unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    for backend in Backend::BOTH {
    let mut router = Router::start(&compiled, backend);
    use Proto::Tcp;
    // The LAN server listens on 443 (and 8444, to show it is not reached
    // there); the router listens on nothing, so an answer on 8443 can only
    // come from the LAN server, which sees the WAN client's own address.
    expect(
        &mut router,
        &[
            flow(Tcp, "198.18.2.2", "198.18.2.1", 8443, Some("198.18.2.2"), "forwarded to 198.18.1.2 port 443"),
            flow(Tcp, "fd00:2::2", "fd00:2::1", 8443, Some("fd00:2::2"), "forwarded to fd00:1::2 port 443"),
            flow(Tcp, "198.18.2.2", "198.18.2.1", 8444, None, "no port forward for 8444"),
            flow(Tcp, "fd00:2::2", "fd00:2::1", 8444, None, "no port forward for 8444"),
            flow(Tcp, "198.18.2.2", "198.18.1.2", 443, None, "the WAN has no route to the LAN"),
        ],
        &[(true, Tcp, 443), (true, Tcp, 8444)],
    );
    }
}

// ---------------------------------------------------------------- reject

const REJECT_POLICY: &str = "\
policy in drop
policy out drop
reject in tcp 113
reject in udp 514 with port-unreachable
reject in udp 515 with host-unreachable
reject in tcp 116 with admin-prohibited
";

/// Sends the flows through the policy on the differential lane; checks
/// each outcome against `wanted` (the client's words) and against the
/// evaluator's prediction.
fn expect_outcomes(policy: &str, wanted: &[(&str, &str)]) {
    let compiled = compile(policy).unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let probes: Vec<Probe> = wanted.iter().map(|(probe, _)| Probe::parse(probe)).collect();
    let outcomes = Lanes::new().run(&compiled, &probes, DEADLINE);
    let program = Program::new(&compiled.compilation.lowered.ruleset);
    let mut failures = Vec::new();
    for (backend, outcome) in Backend::BOTH.into_iter().zip(&outcomes) {
    assert!(outcome.load_problems.is_empty(), "{}", outcome.load_problems.join("\n"));
    for ((probe, (_, word)), seen) in probes.iter().zip(wanted).zip(&outcome.seen) {
        let probe = format!("{probe} ({})", backend.name());
        let got = match seen {
            Seen::Answered(_) => "answered".to_string(),
            Seen::Refused(how) => how.clone(),
            Seen::Silent(how) => how.clone(),
        };
        if got != *word {
            failures.push(format!("{probe}: wanted `{word}`, the client saw `{got}`"));
        }
        let expect = predict(&program, &Probe::parse(&probe[..probe.rfind(" (").unwrap_or(probe.len())])).expect;
        let agrees = matches!(
            (expect, seen),
            (Expect::Answered, Seen::Answered(_))
                | (Expect::Refused, Seen::Refused(_))
                | (Expect::Silent, Seen::Silent(_))
        );
        if !agrees {
            failures.push(format!("{probe}: the evaluator predicts {expect:?}, the client saw `{got}`"));
        }
    }
    }
    assert!(failures.is_empty(), "{}\npolicy:\n{policy}", failures.join("\n"));
}

#[test]
fn rejects_answer_at_once_under_an_output_drop_policy() {
    // `refused` is ECONNREFUSED from connect() or recv() — the answer came
    // back — where a dropped flow would only time out.
    expect_outcomes(
        REJECT_POLICY,
        &[
            ("tcp new in 198.18.0.2:40000 -> 198.19.0.1:113", "refused"),
            ("tcp new in [fd00:18::2]:40000 -> [fd00:19::1]:113", "refused"),
            ("udp new in 198.18.0.2:40001 -> 198.19.0.1:514", "refused"),
            ("udp new in [fd00:18::2]:40001 -> [fd00:19::1]:514", "refused"),
            ("udp new in 198.18.0.2:40002 -> 198.19.0.1:515", "unreachable EHOSTUNREACH"),
            ("udp new in [fd00:18::2]:40002 -> [fd00:19::1]:515", "unreachable EHOSTUNREACH"),
            ("tcp new in 198.18.0.2:40003 -> 198.19.0.1:116", "unreachable EHOSTUNREACH"),
            ("tcp new in [fd00:18::2]:40003 -> [fd00:19::1]:116", "unreachable EACCES"),
            // Not rejected: dropped, so the client waits in vain.
            ("tcp new in 198.18.0.2:40004 -> 198.19.0.1:114", "timeout"),
            ("udp new in [fd00:18::2]:40004 -> [fd00:19::1]:516", "timeout"),
        ],
    );
}
