//! A traffic agent: one long-lived process per network namespace that is
//! both the servers and the clients of many probes at once.
//!
//! `lab` starts a Python process per probe, which is fine for a dozen
//! flows; the differential and NAT tests send thousands, from chosen source
//! addresses and ports, so they talk to one agent per namespace instead:
//!
//! ```text
//! reset                                   close every socket            -> ok
//! serve tcp|udp PORT,PORT…                listen on IPv4 and IPv6       -> ok
//! probe ID new|open|again PROTO 4|6 SRC SPORT DST DPORT                 (queued)
//! run SECONDS                             start the queued probes       -> result ID OUTCOME…, done
//! ```
//!
//! `new` opens a flow (TCP connect, UDP datagram, ICMP echo with SPORT as
//! its identifier), sends one line and waits for the answer; `open` does the
//! same and keeps the flow; `again` sends another line on a kept flow. All
//! queued probes run at once and share one deadline. Outcomes:
//! `answered ADDRESS` (the server saw the client as ADDRESS), `refused`,
//! `reset`, `unreachable ERRNO` (an ICMP error came back), `timeout`,
//! `not-permitted` (the local firewall refused to send), `error …`.
//!
//! Servers answer each line with `fwc-ok PEER LINE`, UDP from the address
//! the datagram was sent to. Every socket is closed with a reset (linger
//! 0), so no TIME_WAIT or half-closed state outlives a `reset`.

use super::support::{tools, Netns};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How long an agent may take to start or to acknowledge a command.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP or ICMPv6 echo.
    Ping,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Ping => "ping",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// A new flow.
    New,
    /// A new flow that is kept open for `Again`.
    Open,
    /// One more exchange on a flow `Open` made.
    Again,
}

/// One probe as the agent runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: u32,
    pub mode: Mode,
    pub proto: Proto,
    pub source: IpAddr,
    /// The client's port (the echo identifier for pings).
    pub source_port: u16,
    pub destination: IpAddr,
    pub destination_port: u16,
}

/// What a probe's client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The answer came; the server saw the client with this address.
    Answered(String),
    /// An error answer: a TCP reset or an ICMP error (the word says which).
    Refused(String),
    /// Nothing came back in time, or the local firewall refused to send.
    Silent(String),
}

impl Seen {
    fn parse(text: &str) -> Result<Seen, String> {
        let mut words = text.splitn(2, ' ');
        let word = words.next().unwrap_or("");
        let rest = words.next().unwrap_or("").to_string();
        match word {
            "answered" => Ok(Seen::Answered(rest)),
            "refused" | "reset" | "unreachable" => Ok(Seen::Refused(text.to_string())),
            "timeout" | "not-permitted" => Ok(Seen::Silent(word.to_string())),
            _ => Err(text.to_string()),
        }
    }

    pub fn class(&self) -> &'static str {
        match self {
            Seen::Answered(_) => "answered",
            Seen::Refused(_) => "refused",
            Seen::Silent(_) => "silent",
        }
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::Answered(address) => write!(f, "answered (the server saw {address})"),
            Seen::Refused(how) => write!(f, "refused ({how})"),
            Seen::Silent(how) => write!(f, "silent ({how})"),
        }
    }
}

/// The agent process of one namespace; killed on drop (it also exits when
/// its standard input closes, so it cannot outlive the test process).
pub struct Agent {
    namespace: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    pub fn spawn(namespace: &Netns) -> Agent {
        let mut command = namespace.command(&tools().python);
        command.args(["-c", AGENT]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the traffic agent in {}: {error}", namespace.name()));
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr_pipe = child.stderr.take().expect("piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stderr_pipe.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                collected.lock().unwrap_or_else(|p| p.into_inner()).push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
        let mut agent = Agent { namespace: namespace.name().to_string(), child, stdin, lines, stderr };
        agent.expect("ready");
        agent
    }

    fn fail(&self, what: &str) -> ! {
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
        panic!("the traffic agent in {}: {what}\nits stderr:\n{stderr}", self.namespace);
    }

    fn send(&mut self, text: &str) {
        if let Err(error) = self.stdin.write_all(text.as_bytes()).and_then(|()| self.stdin.flush()) {
            self.fail(&format!("cannot send it a command: {error}"));
        }
    }

    fn line(&mut self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => self.fail(&format!("no answer within {} s", limit.as_secs())),
            Err(mpsc::RecvTimeoutError::Disconnected) => self.fail("it exited"),
        }
    }

    fn expect(&mut self, word: &str) {
        let line = self.line(COMMAND_LIMIT);
        if line != word {
            self.fail(&format!("expected `{word}`, got `{line}`"));
        }
    }

    /// Closes every socket: listeners, connections, kept flows.
    pub fn reset(&mut self) {
        self.send("reset\n");
        self.expect("ok");
    }

    /// Listens on these ports, IPv4 and IPv6, on every address.
    pub fn serve(&mut self, tcp: &BTreeSet<u16>, udp: &BTreeSet<u16>) {
        for (name, ports) in [("tcp", tcp), ("udp", udp)] {
            if ports.is_empty() {
                continue;
            }
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            self.send(&format!("serve {name} {}\n", list.join(",")));
            self.expect("ok");
        }
    }

    /// Starts the probes; [`Agent::finish`] collects what they saw. Two
    /// agents can run batches at the same time this way.
    pub fn start(&mut self, requests: &[Request], deadline: Duration) {
        let mut text = String::new();
        for request in requests {
            let mode = match request.mode {
                Mode::New => "new",
                Mode::Open => "open",
                Mode::Again => "again",
            };
            let family = if request.source.is_ipv4() { "4" } else { "6" };
            text.push_str(&format!(
                "probe {} {mode} {} {family} {} {} {} {}\n",
                request.id,
                request.proto.name(),
                request.source,
                request.source_port,
                request.destination,
                request.destination_port
            ));
        }
        text.push_str(&format!("run {}\n", deadline.as_secs_f64()));
        self.send(&text);
    }

    pub fn finish(&mut self, deadline: Duration) -> BTreeMap<u32, Seen> {
        let mut results = BTreeMap::new();
        loop {
            let line = self.line(deadline + COMMAND_LIMIT);
            if line == "done" {
                return results;
            }
            let parsed = line
                .strip_prefix("result ")
                .and_then(|rest| rest.split_once(' '))
                .and_then(|(id, outcome)| Some((id.parse::<u32>().ok()?, outcome.to_string())));
            let Some((id, outcome)) = parsed else { self.fail(&format!("unexpected line `{line}`")) };
            match Seen::parse(&outcome) {
                Ok(seen) => {
                    results.insert(id, seen);
                }
                Err(other) => self.fail(&format!("probe {id} failed in the agent: {other}")),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent (see the module comment). Single-threaded: one selector loop
/// over standard input, listeners, server connections and probe sockets.
const AGENT: &str = r#"
import errno, os, selectors, socket, struct, sys, time

IP_RECVERR, IPV6_RECVERR, IP_PKTINFO = 11, 25, 8
IPV6_RECVPKTINFO, IPV6_PKTINFO = 49, 50
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
sel = selectors.DefaultSelector()
sockets = set()      # every socket we own, to close on reset
kept = {}            # id -> probe kept open by `open`
queued = []          # probes waiting for `run`
running = {}         # id -> probe
deadline = None
results = []

def say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

def family(word):
    return socket.AF_INET if word == "4" else socket.AF_INET6

def close(s):
    try:
        sel.unregister(s)
    except (KeyError, ValueError):
        pass
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()
    sockets.discard(s)

def own(s):
    sockets.add(s)
    return s

def classify(number):
    if number == errno.ECONNREFUSED:
        return "refused"
    if number == errno.ECONNRESET:
        return "reset"
    if number == errno.EPERM:
        return "not-permitted"
    if number == errno.ETIMEDOUT:
        return "timeout"
    if number in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.ENOPROTOOPT,
                  errno.EHOSTDOWN, errno.ENONET, errno.EPROTO):
        return "unreachable " + errno.errorcode[number]
    return "error " + errno.errorcode.get(number, str(number))

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF

# ---------------------------------------------------------------- servers

def serve(kind, ports):
    for port in ports:
        for af, anywhere in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = own(socket.socket(af, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if af == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == "udp":
                if af == socket.AF_INET:
                    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                else:
                    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            s.bind((anywhere, port))
            s.setblocking(False)
            if kind == "tcp":
                s.listen(512)
                sel.register(s, READ, ("accept", None))
            else:
                sel.register(s, READ, ("udp-server", af))

def on_accept(s):
    try:
        conn, peer = s.accept()
    except OSError:
        return
    own(conn)
    conn.setblocking(False)
    sel.register(conn, READ, ("conn", {"buffer": b"", "peer": peer[0]}))

def on_conn(conn, state):
    try:
        data = conn.recv(4096)
    except OSError:
        data = b""
    if not data:
        close(conn)
        return
    state["buffer"] += data
    while b"\n" in state["buffer"]:
        line, state["buffer"] = state["buffer"].split(b"\n", 1)
        try:
            conn.send(b"fwc-ok " + state["peer"].encode() + b" " + line + b"\n")
        except OSError:
            pass

def on_udp_server(s, af):
    try:
        data, ancillary, _, peer = s.recvmsg(2048, socket.CMSG_SPACE(64))
    except OSError:
        return
    local = None
    for level, kind, value in ancillary:
        if af == socket.AF_INET and level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            local = value[8:12]
        if af == socket.AF_INET6 and level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO:
            local = value[0:16]
    line = data.split(b"\n", 1)[0]
    reply = b"fwc-ok " + peer[0].encode() + b" " + line + b"\n"
    try:
        if local is None:
            s.sendto(reply, peer)
        elif af == socket.AF_INET:
            s.sendmsg([reply], [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, local, b"\0" * 4))], 0, peer)
        else:
            s.sendmsg([reply], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, struct.pack("=16sI", local, 0))], 0, peer)
    except OSError:
        pass

# ---------------------------------------------------------------- probes

class Probe:
    pass

def finish(p, outcome):
    if p.id not in running:
        return
    if outcome.startswith("error"):
        outcome += " (%s %s %s, while %s)" % (p.mode, p.proto, p.src, getattr(p, "state", "starting"))
    del running[p.id]
    results.append("result %d %s" % (p.id, outcome))
    if p.mode == "open" and outcome.startswith("answered"):
        try:
            sel.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        p.buffer = b""
        kept[p.id] = p
    elif p.sock is not None:
        close(p.sock)

def start_probe(p):
    running[p.id] = p
    p.buffer = b""
    if p.mode == "again":
        old = kept.pop(p.id, None)
        if old is None:
            finish(p, "error no-kept-flow")
            return
        p.sock, p.proto, p.af, p.dst = old.sock, old.proto, old.af, old.dst
        send_line(p)
        return
    p.sock = None
    try:
        if p.proto == "ping":
            start_ping(p)
            return
        kind = socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM
        s = p.sock = own(socket.socket(p.af, kind))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if p.af == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        s.bind((p.src, p.sport))
        s.setblocking(False)
        if p.proto == "tcp":
            code = s.connect_ex((p.dst, p.dport))
            if code not in (0, errno.EINPROGRESS):
                finish(p, classify(code))
                return
            p.state = "connecting"
            sel.register(s, WRITE, ("probe", p))
        else:
            s.connect((p.dst, p.dport))
            send_line(p)
    except OSError as error:
        if error.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EINVAL):
            finish(p, "error %s binding %s port %d" % (errno.errorcode.get(error.errno), p.src, p.sport))
        else:
            finish(p, classify(error.errno))

def send_line(p):
    p.state = "sending"
    try:
        p.sock.send(("%s %d\n" % (p.mode, p.id)).encode())
    except OSError as error:
        finish(p, classify(error.errno))
        return
    p.state = "waiting"
    try:
        sel.register(p.sock, READ, ("probe", p))
    except KeyError:
        sel.modify(p.sock, READ, ("probe", p))

def on_probe(p, events):
    if p.id not in running:
        return
    if p.proto == "ping":
        on_ping(p)
        return
    if p.state == "connecting":
        code = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            finish(p, classify(code))
            return
        sel.unregister(p.sock)
        send_line(p)
        return
    try:
        data = p.sock.recv(4096)
    except BlockingIOError:
        return
    except OSError as error:
        finish(p, classify(error.errno))
        return
    if not data:
        finish(p, "error closed-without-answer")
        return
    p.buffer += data
    if b"\n" in p.buffer or p.proto == "udp":
        line = p.buffer.split(b"\n", 1)[0]
        words = line.split(b" ")
        if len(words) >= 2 and words[0] == b"fwc-ok":
            finish(p, "answered " + words[1].decode())
        else:
            finish(p, "error wrong-answer %r" % line)

def start_ping(p):
    proto = socket.IPPROTO_ICMP if p.af == socket.AF_INET else socket.IPPROTO_ICMPV6
    s = p.sock = own(socket.socket(p.af, socket.SOCK_RAW, proto))
    s.bind((p.src, 0))
    s.setblocking(False)
    payload = b"fwc-probe %d" % p.id
    if p.af == socket.AF_INET:
        header = struct.pack("!BBHHH", 8, 0, 0, p.sport, 1)
        header = struct.pack("!BBHHH", 8, 0, checksum(header + payload), p.sport, 1)
    else:
        header = struct.pack("!BBHHH", 128, 0, 0, p.sport, 1)
    sel.register(s, READ, ("probe", p))
    try:
        s.sendto(header + payload, (p.dst, 0))
    except OSError as error:
        finish(p, classify(error.errno))

def on_ping(p):
    while p.id in running:
        try:
            data, sender = p.sock.recvfrom(4096)
        except BlockingIOError:
            return
        except OSError as error:
            finish(p, classify(error.errno))
            return
        if p.af == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) < 8:
            continue
        kind, code, _, ident, _ = struct.unpack("!BBHHH", data[:8])
        same = socket.inet_pton(p.af, sender[0]) == socket.inet_pton(p.af, p.dst)
        if p.af == socket.AF_INET:
            if kind == 0 and ident == p.sport and same:
                finish(p, "answered " + p.src)
            elif kind in (3, 11, 12) and len(data) >= 8 + 20 + 8:
                inner = data[8:]
                inner_icmp = inner[(inner[0] & 0x0F) * 4:]
                if inner[9] == 1 and len(inner_icmp) >= 8 and inner_icmp[0] == 8 and struct.unpack("!H", inner_icmp[4:6])[0] == p.sport:
                    finish(p, "unreachable icmp-%d-%d" % (kind, code))
        else:
            if kind == 129 and ident == p.sport and same:
                finish(p, "answered " + p.src)
            elif kind in (1, 3, 4) and len(data) >= 8 + 40 + 8:
                inner = data[8:]
                inner_icmp = inner[40:]
                if inner[6] == 58 and inner_icmp[0] == 128 and struct.unpack("!H", inner_icmp[4:6])[0] == p.sport:
                    finish(p, "unreachable icmp6-%d-%d" % (kind, code))

# ---------------------------------------------------------------- commands

def command(line):
    global deadline
    words = line.split()
    if not words:
        return
    if words[0] == "reset":
        for s in list(sockets):
            close(s)
        kept.clear()
        running.clear()
        say("ok")
    elif words[0] == "serve":
        try:
            serve(words[1], [int(port) for port in words[2].split(",") if port])
            say("ok")
        except OSError as error:
            say("error serve %s %s: %s" % (words[1], words[2], error))
    elif words[0] == "probe":
        p = Probe()
        p.id, p.mode, p.proto = int(words[1]), words[2], words[3]
        p.af, p.src, p.sport = family(words[4]), words[5], int(words[6])
        p.dst, p.dport = words[7], int(words[8])
        queued.append(p)
    elif words[0] == "run":
        deadline = time.monotonic() + float(words[1])
        batch = list(queued)
        queued.clear()
        for p in batch:
            start_probe(p)
        check_done()
    else:
        say("error unknown command %r" % line)

def check_done():
    global deadline
    if deadline is None:
        return
    if running and time.monotonic() < deadline:
        return
    for p in list(running.values()):
        finish(p, "timeout")
    deadline = None
    for line in results:
        say(line)
    results.clear()
    say("done")

os.set_blocking(0, False)
sel.register(0, READ, ("stdin", None))
pending = b""
say("ready")
while True:
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    for key, events in sel.select(timeout):
        what, data = key.data
        if what == "stdin":
            try:
                chunk = os.read(0, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                sys.exit(0)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                command(line.decode())
        elif what == "accept":
            on_accept(key.fileobj)
        elif what == "conn":
            on_conn(key.fileobj, data)
        elif what == "udp-server":
            on_udp_server(key.fileobj, data)
        elif what == "probe":
            on_probe(data, events)
    check_done()
"#;
