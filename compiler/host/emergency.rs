//! The ruleset of last resort: what `fwc apply --boot` loads when neither
//! the confirmed build nor the previous one loads. It never fails open:
//! every policy drops, and only loopback, established connections, SSH in
//! (port 22) and, for IPv6, neighbour discovery get through — enough to log
//! in and repair the host.

use crate::ir::Family;

/// The restore file for one family.
pub fn restore_text(family: Family) -> &'static str {
    match family {
        Family::V4 => V4,
        Family::V6 => V6,
    }
}

const V4: &str = "# fwc emergency ruleset: drop everything but loopback, established connections and ssh in\n\
*filter\n\
:INPUT DROP [0:0]\n\
:FORWARD DROP [0:0]\n\
:OUTPUT DROP [0:0]\n\
-A INPUT -i lo -j ACCEPT\n\
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT\n\
-A OUTPUT -o lo -j ACCEPT\n\
-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
COMMIT\n";

const V6: &str = "# fwc emergency ruleset: drop everything but loopback, established connections, neighbour discovery and ssh in\n\
*filter\n\
:INPUT DROP [0:0]\n\
:FORWARD DROP [0:0]\n\
:OUTPUT DROP [0:0]\n\
-A INPUT -i lo -j ACCEPT\n\
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT\n\
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT\n\
-A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT\n\
-A OUTPUT -o lo -j ACCEPT\n\
-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A OUTPUT -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT\n\
-A OUTPUT -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT\n\
COMMIT\n";

/// The same for the nftables backend: `nft -f` input replacing `table inet
/// fwc`, both families in one table. Its drop policies hold whatever other
/// tables accept: a packet a base chain drops is dropped.
pub fn nft_text() -> String {
    format!("# fwc emergency ruleset: drop everything but loopback, established connections, neighbour discovery and ssh in\n{}{NFT}", super::nft::restore_text(None))
}

const NFT: &str = "table inet fwc {
\tchain INPUT {
\t\ttype filter hook input priority filter; policy drop;
\t\tiif \"lo\" accept
\t\tct state established,related accept
\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
\t\ttcp dport 22 ct state new accept
\t}

\tchain FORWARD {
\t\ttype filter hook forward priority filter; policy drop;
\t}

\tchain OUTPUT {
\t\ttype filter hook output priority filter; policy drop;
\t\toif \"lo\" accept
\t\tct state established,related accept
\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
\t}
}
";
