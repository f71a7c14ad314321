//! A small network of namespaces for sending real packets through a policy.
//!
//! ```text
//!   peer  eth0 ──── eth0  host  eth2 ──── eth0  backend
//!   198.18.0.2    198.18.0.1    198.18.2.1    198.18.2.2
//!   fd00::2       fd00::1       fd00:0:0:2::1 fd00:0:0:2::2
//! ```
//!
//! The policy is loaded into `host` with ipset restore (its address sets),
//! iptables-restore and ip6tables-restore, or (`Load::FwcApplyNft`) with
//! `fwc apply --backend nft`; `peer` and `backend` have no firewall. A test states
//! what should get through:
//!
//! ```ignore
//! let lab = Lab::start(policy, &[]);
//! lab.expect(&[
//!     allows(tcp(Peer, Host, 22)),           // IPv4 and IPv6
//!     blocks(udp(Peer, Host, 9000).sport(53)),
//!     allows(ping(Host, Backend).v6()),
//! ]);
//! ```
//!
//! `expect` starts servers for every destination port (a TCP server that
//! answers, a UDP echo server), sends every probe at once, and counts a
//! probe as let through only when the answer comes back — so replies are
//! tested with every flow. Each probe that was blocked is sent again with
//! the host's firewall opened: it must then get through, which shows that
//! the policy, not the lab, blocked it. The policy is put back afterwards.

use super::support::{build, run, tools, Built, Netns, TempDir};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use Side::{Backend, Host, Peer};

/// How long a probe waits for an answer when the flow should be blocked.
/// On a veth pair answers take well under a millisecond; the margin is for
/// a loaded machine. Probes run at once, so this is about what a batch of
/// probes takes.
const BLOCKED_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a probe waits for an answer that should come: longer, as it
/// costs nothing unless the answer is missing.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a server may take to start listening.
const SERVER_START_LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The firewalled namespace: eth0 to `Peer`, eth2 to `Backend`.
    Host,
    /// On the host's eth0.
    Peer,
    /// On the host's eth2.
    Backend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP / ICMPv6 echo request and reply.
    Ping,
}

/// Whether the IPv6 neighbours are resolved by neighbour discovery through
/// the policy (the default), or written into the neighbour tables up front
/// for policies that do not allow ICMPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Neighbours {
    Discovered,
    Static,
}

/// A flow one side opens to another, in one or both address families.
#[derive(Clone, Debug)]
pub struct Flow {
    protocol: Protocol,
    from: Side,
    to: Side,
    port: u16,
    source_port: Option<u16>,
    families: Vec<Family>,
}

pub fn tcp(from: Side, to: Side, port: u16) -> Flow {
    Flow::new(Protocol::Tcp, from, to, port)
}

pub fn udp(from: Side, to: Side, port: u16) -> Flow {
    Flow::new(Protocol::Udp, from, to, port)
}

pub fn ping(from: Side, to: Side) -> Flow {
    Flow::new(Protocol::Ping, from, to, 0)
}

impl Flow {
    fn new(protocol: Protocol, from: Side, to: Side, port: u16) -> Flow {
        assert!((from == Host) != (to == Host), "a flow goes between the host and a neighbour, not {from:?} to {to:?}");
        Flow { protocol, from, to, port, source_port: None, families: vec![Family::V4, Family::V6] }
    }

    /// IPv4 only.
    pub fn v4(mut self) -> Flow {
        self.families = vec![Family::V4];
        self
    }

    /// IPv6 only.
    pub fn v6(mut self) -> Flow {
        self.families = vec![Family::V6];
        self
    }

    /// Sent from this source port rather than an ephemeral one.
    pub fn sport(mut self, port: u16) -> Flow {
        assert!(self.protocol != Protocol::Ping, "pings have no ports");
        self.source_port = Some(port);
        self
    }
}

/// A flow and whether the policy should let it through.
pub struct Expectation {
    flow: Flow,
    passes: bool,
}

/// The flow, replies included, gets through.
pub fn allows(flow: Flow) -> Expectation {
    Expectation { flow, passes: true }
}

/// The flow gets no answer: dropped or rejected on the way in or out.
pub fn blocks(flow: Flow) -> Expectation {
    Expectation { flow, passes: false }
}

/// One flow in one family: what a client process sends.
#[derive(Clone, Debug)]
struct Probe {
    protocol: Protocol,
    from: Side,
    to: Side,
    port: u16,
    source_port: Option<u16>,
    family: Family,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Ping => "ping",
        };
        write!(f, "{protocol} {:?} -> {:?}", self.from, self.to)?;
        if self.protocol != Protocol::Ping {
            write!(f, " port {}", self.port)?;
        }
        if let Some(port) = self.source_port {
            write!(f, " from source port {port}")?;
        }
        write!(
            f,
            " over {} ({} -> {})",
            self.family.name(),
            address(self.from, self.to, self.family),
            address(self.to, self.from, self.family)
        )
    }
}

/// The address `side` has on its link with `other`.
fn address(side: Side, other: Side, family: Family) -> &'static str {
    let link = if side == Backend || other == Backend { Backend } else { Peer };
    match (link, side == Host, family) {
        (Peer, true, Family::V4) => "198.18.0.1",
        (Peer, false, Family::V4) => "198.18.0.2",
        (Peer, true, Family::V6) => "fd00::1",
        (Peer, false, Family::V6) => "fd00::2",
        (_, true, Family::V4) => "198.18.2.1",
        (_, false, Family::V4) => "198.18.2.2",
        (_, true, Family::V6) => "fd00:0:0:2::1",
        (_, false, Family::V6) => "fd00:0:0:2::2",
    }
}

/// What a probe saw, as the client script reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Answered,
    /// Anything else: `timeout`, `refused`, `not-permitted` (dropped on the
    /// way out), … — the flow did not get through.
    Blocked(String),
}

/// How the policy gets into the host namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// `ipset restore`, `iptables-restore`, `ip6tables-restore` of the build.
    Restore,
    /// `fwc apply --backend nft --confirm 0`, with a state directory of the
    /// lab's own.
    FwcApplyNft,
}

/// Three namespaces joined by veth pairs, the policy loaded into `host`.
/// Dropping it deletes the namespaces.
pub struct Lab {
    policy: String,
    built: Built,
    host: Netns,
    peer: Netns,
    backend: Netns,
    source: TempDir,
}

impl Lab {
    /// Builds `policy` with `--set NAME=VALUE` for each of `params`, sets up
    /// the namespaces and loads the rules. IPv6 neighbours are discovered
    /// through the policy.
    pub fn start(policy: &str, params: &[(&str, &str)]) -> Lab {
        Lab::start_with(policy, params, Neighbours::Discovered)
    }

    pub fn start_with(policy: &str, params: &[(&str, &str)], neighbours: Neighbours) -> Lab {
        Lab::start_loaded(policy, params, neighbours, Load::Restore)
    }

    pub fn start_loaded(policy: &str, params: &[(&str, &str)], neighbours: Neighbours, load: Load) -> Lab {
        let source = TempDir::new("lab-policy");
        let path = source.write("lab.fw", policy);
        let args: Vec<String> =
            params.iter().flat_map(|(name, value)| ["--set".to_string(), format!("{name}={value}")]).collect();
        let built = build(&path, &args).unwrap_or_else(|error| panic!("{error}\npolicy:\n{policy}"));
        let lab = Lab {
            policy: policy.to_string(),
            built,
            host: Netns::new("host"),
            peer: Netns::new("peer"),
            backend: Netns::new("backend"),
            source,
        };
        lab.link(&lab.peer, "eth0", "01", "198.18.0", "fd00:", neighbours);
        lab.link(&lab.backend, "eth2", "02", "198.18.2", "fd00:0:0:2:", neighbours);
        match load {
            Load::Restore => lab.load_policy(),
            Load::FwcApplyNft => lab.apply_nft(params),
        }
        lab
    }

    fn apply_nft(&self, params: &[(&str, &str)]) {
        let mut command = self.host.command(env!("CARGO_BIN_EXE_fwc"));
        command.arg("apply").arg(self.source.path().join("lab.fw")).args(["--backend", "nft", "--confirm", "0"]);
        for (name, value) in params {
            command.arg("--set").arg(format!("{name}={value}"));
        }
        command.env("FWC_STATE_DIR", self.source.path().join("state")).env("PATH", &tools().path).env_remove("SSH_CONNECTION");
        if let Err(error) = super::support::run_ok(&mut command, None, Duration::from_secs(60)) {
            panic!("fwc apply --backend nft in the host namespace: {error}\npolicy:\n{}", self.policy);
        }
    }

    /// A veth pair from the host's `host_interface` to `other`'s eth0.
    fn link(
        &self,
        other: &Netns,
        host_interface: &str,
        link: &str,
        v4_prefix: &str,
        v6_prefix: &str,
        neighbours: Neighbours,
    ) {
        let host_mac = format!("02:00:00:00:{link}:01");
        let other_mac = format!("02:00:00:00:{link}:02");
        let other_name = other.name();
        ip(&self.host, &format!(
            "link add {host_interface} address {host_mac} type veth peer name eth0 netns {other_name} address {other_mac}"
        ));
        for (namespace, interface, number, mac_of_other) in
            [(&self.host, host_interface, "1", &other_mac), (other, "eth0", "2", &host_mac)]
        {
            ip(namespace, &format!("addr add {v4_prefix}.{number}/24 dev {interface}"));
            ip(namespace, &format!("addr add {v6_prefix}:{number}/64 dev {interface} nodad"));
            ip(namespace, &format!("link set {interface} up"));
            if neighbours == Neighbours::Static {
                let other_number = if number == "1" { "2" } else { "1" };
                ip(
                    namespace,
                    &format!(
                        "neigh replace {v6_prefix}:{other_number} lladdr {mac_of_other} dev {interface} nud permanent"
                    ),
                );
            }
        }
    }

    fn load_policy(&self) {
        // The address sets the rules match against come first, as with
        // `fwc apply`.
        let sets = self.built.read("ipsets.restore").unwrap_or_else(|error| panic!("{error}"));
        if sets.lines().any(|line| !line.is_empty() && !line.starts_with('#')) {
            if let Err(error) = self.host.exec(&["ipset", "restore"], Some(sets.as_bytes())) {
                panic!("loading ipsets.restore into the host namespace: {error}\npolicy:\n{}", self.policy);
            }
        }
        for (program, output) in [("iptables-restore", "rules.v4"), ("ip6tables-restore", "rules.v6")] {
            let rules = self.built.read(output).unwrap_or_else(|error| panic!("{error}"));
            if let Err(error) = self.host.exec(&[program], Some(rules.as_bytes())) {
                panic!("loading {output} into the host namespace: {error}\npolicy:\n{}", self.policy);
            }
        }
    }

    /// Runs a command in the host namespace — say, to add a ban the way
    /// fail2ban does. Panics if it fails.
    pub fn host_run(&self, args: &[&str]) {
        if let Err(error) = self.host.exec(args, None) {
            panic!("{error}");
        }
    }

    fn namespace(&self, side: Side) -> &Netns {
        match side {
            Host => &self.host,
            Peer => &self.peer,
            Backend => &self.backend,
        }
    }

    /// Sends every flow and checks it got through or not as expected;
    /// panics listing every flow that did not behave, with the host's live
    /// rules and their counters.
    pub fn expect(&self, expectations: &[Expectation]) {
        let probes: Vec<(Probe, bool)> = expectations
            .iter()
            .flat_map(|expectation| {
                let flow = &expectation.flow;
                flow.families.iter().map(move |&family| {
                    let probe = Probe {
                        protocol: flow.protocol,
                        from: flow.from,
                        to: flow.to,
                        port: flow.port,
                        source_port: flow.source_port,
                        family,
                    };
                    (probe, expectation.passes)
                })
            })
            .collect();
        let _servers = self.start_servers(probes.iter().map(|(probe, _)| probe));
        let outcomes = self
            .send(probes.iter().map(|(probe, passes)| (probe, if *passes { ANSWER_TIMEOUT } else { BLOCKED_TIMEOUT })));

        let mut failures = Vec::new();
        let mut to_control = Vec::new();
        for ((probe, passes), outcome) in probes.iter().zip(&outcomes) {
            match (passes, outcome) {
                (true, Outcome::Answered) => {}
                (true, Outcome::Blocked(how)) => failures.push(format!("{probe}: should get through, but {how}")),
                (false, Outcome::Answered) => failures.push(format!("{probe}: should be blocked, but was answered")),
                (false, Outcome::Blocked(_)) => to_control.push(probe),
            }
        }
        let live_rules = self.live_rules();
        if !to_control.is_empty() {
            let controls =
                self.with_firewall_open(|| self.send(to_control.iter().map(|probe| (*probe, ANSWER_TIMEOUT))));
            for (probe, outcome) in to_control.iter().zip(controls) {
                if let Outcome::Blocked(how) = outcome {
                    failures.push(format!(
                        "{probe}: blocked as expected, but also with the host's firewall open ({how}), so \
                         this probe shows nothing about the policy"
                    ));
                }
            }
        }
        if !failures.is_empty() {
            panic!(
                "{} of {} probes went wrong:\n  {}\n\npolicy:\n{}\nhost's rules when probed:\n{live_rules}",
                failures.len(),
                probes.len(),
                failures.join("\n  "),
                self.policy
            );
        }
    }

    /// One server process per side that is sent to, listening on every
    /// TCP and UDP port probed there.
    fn start_servers<'a>(&self, probes: impl Iterator<Item = &'a Probe>) -> Vec<Server> {
        let mut ports: BTreeMap<Side, (BTreeSet<u16>, BTreeSet<u16>)> = BTreeMap::new();
        let mut source_ports = Vec::new();
        for probe in probes {
            let (tcp, udp) = ports.entry(probe.to).or_default();
            match probe.protocol {
                Protocol::Tcp => tcp.insert(probe.port),
                Protocol::Udp => udp.insert(probe.port),
                Protocol::Ping => false,
            };
            if let Some(port) = probe.source_port {
                source_ports.push((probe.from, probe.protocol, port));
            }
        }
        for (side, protocol, port) in source_ports {
            let (tcp, udp) = ports.get(&side).cloned().unwrap_or_default();
            let listening = if protocol == Protocol::Tcp { tcp } else { udp };
            assert!(
                !listening.contains(&port),
                "{side:?} sends from {protocol:?} port {port} while a server listens there: put these flows in \
                 separate `expect` calls"
            );
        }
        ports
            .into_iter()
            .filter(|(_, (tcp, udp))| !tcp.is_empty() || !udp.is_empty())
            .map(|(side, (tcp, udp))| Server::start(self.namespace(side), &tcp, &udp))
            .collect()
    }

    /// Sends the probes, all at once, each waiting for its answer as long
    /// as given; what each saw.
    fn send<'a>(&self, probes: impl Iterator<Item = (&'a Probe, Duration)>) -> Vec<Outcome> {
        let probes: Vec<(&Probe, Duration)> = probes.collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                probes.iter().map(|&(probe, timeout)| scope.spawn(move || self.send_one(probe, timeout))).collect();
            handles.into_iter().map(|handle| handle.join().expect("probe thread")).collect()
        })
    }

    fn send_one(&self, probe: &Probe, timeout: Duration) -> Outcome {
        let protocol = match probe.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Ping => "ping",
        };
        let family = match probe.family {
            Family::V4 => "4",
            Family::V6 => "6",
        };
        let mut command = self.namespace(probe.from).command(&tools().python);
        command.args(["-c", CLIENT, protocol, family, address(probe.to, probe.from, probe.family)]).args([
            probe.port.to_string(),
            probe.source_port.unwrap_or(0).to_string(),
            timeout.as_secs_f64().to_string(),
        ]);
        let ran = match run(&mut command, None, timeout + Duration::from_secs(30)) {
            Ok(ran) => ran,
            Err(error) => panic!("probe {probe}: {error}"),
        };
        match ran.stdout.trim() {
            "answered" => Outcome::Answered,
            "" => panic!("probe {probe}: the client reported nothing ({}):\n{}", ran.status, ran.stderr),
            other => Outcome::Blocked(other.to_string()),
        }
    }

    /// The host's rules with counters, for failure messages.
    fn live_rules(&self) -> String {
        let mut rules: String = ["iptables-save", "ip6tables-save"]
            .iter()
            .map(|program| self.host.exec(&[program, "-c"], None).unwrap_or_else(|error| error))
            .collect();
        rules.push_str(&self.host.exec(&["nft", "list", "table", "inet", "fwc"], None).unwrap_or_default());
        rules
    }

    /// Runs `f` with every host chain accepting, then puts the rules back.
    fn with_firewall_open<T>(&self, f: impl FnOnce() -> T) -> T {
        let saved: Vec<(&str, String)> = ["iptables", "ip6tables"]
            .iter()
            .map(|program| {
                let dump = self.host.save(&format!("{program}-save")).unwrap_or_else(|error| panic!("{error}"));
                (*program, dump)
            })
            .collect();
        for (program, _) in &saved {
            let open = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
            if let Err(error) = self.host.exec(&[&format!("{program}-restore")], Some(open.as_bytes())) {
                panic!("opening the firewall: {error}");
            }
        }
        // rules.nft's table, when the policy was loaded with nft.
        let table = self.host.exec(&["nft", "list", "table", "inet", "fwc"], None).ok();
        if table.is_some() {
            if let Err(error) = self.host.exec(&["nft", "delete", "table", "inet", "fwc"], None) {
                panic!("opening the firewall: {error}");
            }
        }
        // Neighbour discovery the policy blocked leaves failed entries that
        // would fail the controls too; static entries stay.
        for namespace in [&self.host, &self.peer, &self.backend] {
            ip(namespace, "neigh flush all");
        }
        let result = f();
        if let Some(table) = table {
            if let Err(error) = self.host.exec(&["nft", "-f", "-"], Some(table.as_bytes())) {
                panic!("putting the nft table back: {error}");
            }
        }
        for (program, dump) in &saved {
            if let Err(error) = self.host.exec(&[&format!("{program}-restore")], Some(dump.as_bytes())) {
                panic!("putting the rules back: {error}");
            }
        }
        result
    }
}

/// `ip -n NAMESPACE WORDS…`, the words split at spaces.
fn ip(namespace: &Netns, words: &str) {
    namespace.ip(&words.split_whitespace().collect::<Vec<_>>());
}

/// A server process in a namespace, killed on drop. It also exits by
/// itself when its standard input closes, so it cannot outlive the test
/// process.
struct Server {
    child: Child,
    _stdin: ChildStdin,
}

impl Server {
    fn start(namespace: &Netns, tcp_ports: &BTreeSet<u16>, udp_ports: &BTreeSet<u16>) -> Server {
        let list = |ports: &BTreeSet<u16>| ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let mut command = namespace.command(&tools().python);
        command
            .args(["-c", SERVER, &list(tcp_ports), &list(udp_ports)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start a server: {error}"));
        let stdin = child.stdin.take().expect("piped");
        let mut server = Server { child, _stdin: stdin };
        let stdout = server.child.stdout.take().expect("piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        match receiver.recv_timeout(SERVER_START_LIMIT) {
            Ok(line) if line.trim() == "ready" => server,
            outcome => {
                let _ = server.child.kill();
                let mut stderr = String::new();
                if let Some(mut pipe) = server.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                panic!(
                    "the server in {} (tcp {}, udp {}) did not start: {outcome:?}\n{stderr}",
                    namespace.name(),
                    list(tcp_ports),
                    list(udp_ports)
                );
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lab's servers: `SERVER TCP-PORTS UDP-PORTS` (comma lists). Each TCP
/// connection gets `fwc-ok ` and what the client sent; each UDP datagram is
/// answered the same way. Listens on IPv4 and IPv6 at once; prints `ready`
/// once every port is bound, and exits when its standard input closes.
const SERVER: &str = r#"
import socket, sys, threading

def listener(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    return s

def answer(conn):
    try:
        conn.settimeout(5)
        data = conn.recv(64)
        conn.sendall(b"fwc-ok " + data + b"\n")
    except OSError:
        pass
    finally:
        conn.close()

def serve_tcp(s):
    while True:
        try:
            conn, _ = s.accept()
        except OSError:
            continue
        threading.Thread(target=answer, args=(conn,), daemon=True).start()

def serve_udp(s):
    while True:
        try:
            data, peer = s.recvfrom(2048)
            s.sendto(b"fwc-ok " + data + b"\n", peer)
        except OSError:
            pass

for port in filter(None, sys.argv[1].split(",")):
    s = listener(socket.SOCK_STREAM, int(port))
    s.listen(128)
    threading.Thread(target=serve_tcp, args=(s,), daemon=True).start()
for port in filter(None, sys.argv[2].split(",")):
    s = listener(socket.SOCK_DGRAM, int(port))
    threading.Thread(target=serve_udp, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

/// The lab's client: `CLIENT tcp|udp|ping 4|6 ADDRESS PORT SOURCE-PORT
/// TIMEOUT` (source port 0: any). Prints one word: `answered` when the
/// server's answer (or the echo reply) came back, otherwise how it failed —
/// `timeout`, `refused`, `reset`, `not-permitted` (the local firewall
/// dropped it on the way out), `wrong-answer` or `error: …`.
const CLIENT: &str = r#"
import os, select, socket, struct, sys, time

protocol, family, address = sys.argv[1], sys.argv[2], sys.argv[3]
port, source_port, timeout = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
af = socket.AF_INET if family == "4" else socket.AF_INET6
anywhere = "0.0.0.0" if family == "4" else "::"

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF

def stream_or_datagram(kind):
    s = socket.socket(af, kind)
    s.settimeout(timeout)
    if source_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((anywhere, source_port))
    s.connect((address, port))
    s.sendall(b"probe")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(128)
        if not chunk:
            break
        data += chunk
        if kind == socket.SOCK_DGRAM:
            break
    return data.startswith(b"fwc-ok probe")

def ping():
    ident = os.getpid() & 0xFFFF
    payload = b"fwc-probe"
    if family == "4":
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        header = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, 1)
        reply_type = 0
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        header = struct.pack("!BBHHH", 128, 0, 0, ident, 1)  # the kernel fills in the checksum
        reply_type = 129
    s.sendto(header + payload, (address, 0))
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            raise socket.timeout()
        data, sender = s.recvfrom(2048)
        if family == "4":
            data = data[(data[0] & 0x0F) * 4:]
        if socket.inet_pton(af, sender[0]) != socket.inet_pton(af, address) or len(data) < 8:
            continue
        kind, _, _, got_ident, _ = struct.unpack("!BBHHH", data[:8])
        if kind == reply_type and got_ident == ident:
            return True

try:
    if protocol == "tcp":
        ok = stream_or_datagram(socket.SOCK_STREAM)
    elif protocol == "udp":
        ok = stream_or_datagram(socket.SOCK_DGRAM)
    else:
        ok = ping()
    print("answered" if ok else "wrong-answer")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except ConnectionResetError:
    print("reset")
except PermissionError:
    print("not-permitted")
except OSError as error:
    print("error: %s" % error)
"#;
