//! Policies the kernel tests write themselves, so that they do not depend
//! on the example policies in policies/. Their addresses, like all test
//! addresses, are in 198.18.0.0/15 and fd00::/8.

use super::support::TempDir;
use std::path::PathBuf;

/// The old bash master script and its etcd drop-in, as fwc writes them
/// (see shared/design/BASH-SETUP.md): fail2ban's chain first, so that its
/// bans apply before any allow; the baseline; etcd out on the backend.
pub const BASH_SETUP: &str = "\
chain fail2ban-ssh keep {
    return
}
jump in tcp 22 to fail2ban-ssh

use baseline

allow out on eth2 tcp 4001 stateful
";

/// A web server: the baseline, the web ports, telnet explicitly denied.
pub const WEB_SERVER: &str = "\
use baseline
allow in tcp 80, 443 stateful
deny in tcp 23
";

/// One stateful rule and drop policies, without the baseline: the derived
/// reply rule alone must carry the answers.
pub const STATEFUL_ALONE: &str = "\
policy in drop
policy out drop
allow in tcp 22 stateful
";

/// A policy using every form of the core language, and some of part B, to
/// check that what iptables-save prints matches saved.v4 / saved.v6 for
/// each: params, sets, port lists and ranges, services, chains, every
/// action, log, limit, comments with quotes, negation, ICMP types, states,
/// forward, family options, includes.
const EVERY_FORM: &str = r#"# A policy using every core form (written by the kernel tests).
param public = eth0
param backend
let admins = {
    198.19.100.0/24,    # IPv4 admins
    fd00:100::/48,      # and IPv6 ones
}
let web = 80, 443
let monitor = 198.19.200.7

chain fail2ban-ssh keep {
    return
}
jump in tcp 22 to fail2ban-ssh

chain from-admins {
    allow tcp 9100 stateful
    return
}
jump in from $admins to from-admins

use baseline except ntp-out
keep chain "f2b-*"

service etcd-client = tcp 2379, 4001
service metrics = tcp 9100-9102, udp 8125

allow  in on $public tcp $web stateful
allow  in tcp 9100 from $admins stateful comment "node exporter"
allow  out on $backend service etcd-client stateful
allow  out service metrics to $monitor stateful
allow  in udp 60000-61000 stateful
allow  in tcp 1000, 1002, 1004-1006, 2000 comment "it's \"quoted\" \\ here"
reject in tcp 113
reject in udp 113
deny   in tcp 23 log "telnet: "
deny   in udp 69 log
allow  in tcp 8080 from 198.19.0.0/16 stateful limit 25/minute burst 100
allow  in tcp 8081 limit 60/minute
allow  in tcp 8082 limit 3/hour burst 5
allow  in tcp 8083 limit 2/second
allow  in tcp 8084 from { 0.0.0.0/0, ::/0 }     # everyone, written out
allow  in tcp not 22 from 198.19.1.7 to 198.18.0.1
deny   in on not eth0 from not 198.19.0.0/16 tcp 5555
allow  out udp 514 to fd00:514::1
allow  in tcp 5201 ipv4
allow  in udp 5201 ipv6
allow  in esp
allow  in ah
allow  in gre
allow  in 132
allow  in sctp 9999
allow  in udplite 7000-7010
allow  in icmp echo-request from 198.19.2.0/24
allow  in icmpv6 128, 2 from fd00:2::/32
allow  forward on eth0 -> eth2 tcp 80 stateful
deny   in state invalid
allow  in service http-alt, https-alt stateful

include "conf.d/*.fw"
"#;

const EVERY_FORM_DROP_INS: [(&str, &str); 2] = [
    ("conf.d/10-postgres.fw", "allow out tcp 5432 to 198.19.9.9 stateful\n"),
    ("conf.d/20-syslog.fw", "allow out udp 514 to { 198.19.9.10, fd00:9::10 } comment \"drop-in\"\n"),
];

/// The `--set` arguments [`write_every_form`]'s policy needs.
pub fn every_form_args() -> Vec<String> {
    vec!["--set".to_string(), "backend=eth2".to_string()]
}

/// Writes the every-form policy and its drop-ins into `directory`; gives
/// the policy's path.
pub fn write_every_form(directory: &TempDir) -> PathBuf {
    for (name, text) in EVERY_FORM_DROP_INS {
        directory.write(name, text);
    }
    directory.write("every-form.fw", EVERY_FORM)
}
