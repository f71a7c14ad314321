//! The lockout guard: the SSH sessions in progress, and what a policy
//! would do to each.
//!
//! A session is an established TCP connection to a port sshd listens on
//! (or 22, or the server port of `SSH_CONNECTION`). For each, the
//! evaluator answers three questions: does the client's next packet get in
//! (established), does the server's reply get out (established), and could
//! the client connect again (new). A "no" is a cut, with the rule (or the
//! chain policy) that decided it.

use crate::eval::{Decision, Evaluation, Packet, Program};
use crate::ir::{Family, Ruleset};
use crate::syntax::ast::{ConnectionState, Direction};
use std::net::{IpAddr, SocketAddr};

/// One SSH connection, seen from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The interface the peer is reached by (`ip route get`), when known.
    pub interface: Option<String>,
}

/// A session the policy would cut: which packet, and the evaluation.
#[derive(Clone, Debug)]
pub struct Cut {
    pub session: Session,
    /// "established traffic from the client", …
    pub what: &'static str,
    pub packet: Packet,
    pub evaluation: Evaluation,
}

/// The established TCP connections in `ss -Htn state established` output
/// (`RECV-Q SEND-Q LOCAL PEER`, with or without `-p`'s process column)
/// whose local port is one of `ports`.
pub fn sessions_from_ss(text: &str, ports: &[u16]) -> Vec<Session> {
    let mut sessions = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // With a state filter, ss leaves the state column out.
        let addresses: Vec<SocketAddr> = words.iter().filter_map(|word| socket_address(word)).collect();
        let [local, peer, ..] = addresses.as_slice() else { continue };
        if ports.contains(&local.port()) {
            sessions.push(Session { local: *local, peer: *peer, interface: None });
        }
    }
    sessions
}

/// The ports sshd listens on, from `ss -Htlnp` output.
pub fn sshd_ports(text: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for line in text.lines().filter(|line| line.contains("\"sshd")) {
        if let Some(local) = line.split_whitespace().find_map(socket_address) {
            if !ports.contains(&local.port()) {
                ports.push(local.port());
            }
        }
    }
    ports
}

/// `SSH_CONNECTION`: "CLIENT-ADDRESS CLIENT-PORT SERVER-ADDRESS SERVER-PORT".
pub fn session_from_env(value: &str) -> Option<Session> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let [client, client_port, server, server_port] = words.as_slice() else { return None };
    let peer = SocketAddr::new(plain_address(client)?, client_port.parse().ok()?);
    let local = SocketAddr::new(plain_address(server)?, server_port.parse().ok()?);
    Some(Session { local, peer, interface: None })
}

/// The `dev NAME` of `ip route get ADDRESS` output.
pub fn route_device(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.windows(2).find(|pair| pair[0] == "dev").map(|pair| pair[1].to_string())
}

/// `198.18.0.1:22`, `[fd00::1]:22`, `[::ffff:198.18.0.1]:22`,
/// `[fe80::1]%eth0:22`, `*:22`: IPv4-mapped addresses become IPv4.
fn socket_address(word: &str) -> Option<SocketAddr> {
    let (address, port) = word.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let address = address.strip_prefix('[').map_or(address, |rest| rest.split(']').next().unwrap_or(rest));
    let address = address.split('%').next()?;
    Some(SocketAddr::new(plain_address(address)?, port))
}

fn plain_address(text: &str) -> Option<IpAddr> {
    let address: IpAddr = text.parse().ok()?;
    Some(match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    })
}

/// Every way `ruleset` would cut each session.
pub fn check(ruleset: &Ruleset, sessions: &[Session]) -> Vec<Cut> {
    let program = Program::new(ruleset);
    let mut cuts = Vec::new();
    for session in sessions {
        let family = if session.local.is_ipv4() { Family::V4 } else { Family::V6 };
        let interface = session.interface.clone().unwrap_or_else(|| "eth0".to_string());
        let packet = |direction, state, tcp_flags| {
            let (source, destination) = match direction {
                Direction::Out => (session.local, session.peer),
                _ => (session.peer, session.local),
            };
            let (in_interface, out_interface) = match direction {
                Direction::Out => (None, Some(interface.clone())),
                _ => (Some(interface.clone()), None),
            };
            Packet {
                family,
                direction,
                protocol: 6,
                source: source.ip(),
                destination: destination.ip(),
                source_port: source.port(),
                destination_port: destination.port(),
                in_interface,
                out_interface,
                state,
                icmp_type: 0,
                tcp_flags,
                mac_source: None,
            }
        };
        let questions = [
            ("established traffic from the client", packet(Direction::In, ConnectionState::Established, 0x10)),
            ("the server's replies", packet(Direction::Out, ConnectionState::Established, 0x10)),
            ("a new connection from the same client", packet(Direction::In, ConnectionState::New, 0x02)),
        ];
        for (what, packet) in questions {
            let evaluation = program.evaluate(&packet);
            if evaluation.decision != Decision::Accept {
                cuts.push(Cut { session: session.clone(), what, packet, evaluation });
                // One cut per session is enough to refuse; the first is the
                // most telling (established before new).
                break;
            }
        }
    }
    cuts
}

/// "198.18.0.2 port 40000 to 198.18.0.1 port 22".
pub fn describe(session: &Session) -> String {
    let on = session.interface.as_ref().map(|name| format!(" on {name}")).unwrap_or_default();
    format!(
        "{} port {} to {} port {}{on}",
        session.peer.ip(),
        session.peer.port(),
        session.local.ip(),
        session.local.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ss_output() {
        let text = "0      0      198.18.0.1:22     198.18.0.2:40000 users:((\"sshd\",pid=1,fd=4))\n\
                    0      0      [fd00::1]:22      [fd00::2]:50000\n\
                    0      0      [::ffff:198.18.0.1]:22 [::ffff:198.18.0.3]:40001\n\
                    0      0      198.18.0.1:80     198.18.0.2:40002\n";
        let sessions = sessions_from_ss(text, &[22]);
        assert_eq!(sessions.len(), 3);
        assert_eq!(sessions[0].peer, "198.18.0.2:40000".parse().unwrap());
        assert_eq!(sessions[1].local, "[fd00::1]:22".parse().unwrap());
        assert_eq!(sessions[2].local, "198.18.0.1:22".parse().unwrap());
    }

    #[test]
    fn reads_listening_sshd_and_the_environment() {
        let text = "LISTEN 0 128 0.0.0.0:2222 0.0.0.0:* users:((\"sshd\",pid=7,fd=3))\nLISTEN 0 128 0.0.0.0:80 0.0.0.0:* users:((\"nginx\",pid=8,fd=3))\n";
        assert_eq!(sshd_ports(text), [2222]);
        let session = session_from_env("198.18.0.2 40000 198.18.0.1 22").unwrap();
        assert_eq!(session.local.port(), 22);
        assert!(session_from_env("nonsense").is_none());
        assert_eq!(route_device("198.18.0.2 dev veth0 src 198.18.0.1 uid 0\n    cache").as_deref(), Some("veth0"));
    }
}
