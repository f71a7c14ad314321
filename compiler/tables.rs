//! Protocol names and ICMP types: the spellings the kernel tools print.

/// `iptables-save` prints a protocol by the name getprotobynumber(3) gives,
/// except for its own built-in names. This is Debian netbase's /etc/protocols
/// (which .ci/run installs), so saved files match the live dump byte for byte.
pub const PROTOCOL_NAMES: &[(u8, &str)] = &[
    (0, "ip"),
    (1, "icmp"),
    (2, "igmp"),
    (3, "ggp"),
    (4, "ipencap"),
    (5, "st"),
    (6, "tcp"),
    (8, "egp"),
    (9, "igp"),
    (12, "pup"),
    (17, "udp"),
    (20, "hmp"),
    (22, "xns-idp"),
    (27, "rdp"),
    (29, "iso-tp4"),
    (33, "dccp"),
    (36, "xtp"),
    (37, "ddp"),
    (38, "idpr-cmtp"),
    (41, "ipv6"),
    (43, "ipv6-route"),
    (44, "ipv6-frag"),
    (45, "idrp"),
    (46, "rsvp"),
    (47, "gre"),
    (50, "esp"),
    (51, "ah"),
    (57, "skip"),
    (58, "ipv6-icmp"),
    (59, "ipv6-nonxt"),
    (60, "ipv6-opts"),
    (73, "rspf"),
    (81, "vmtp"),
    (88, "eigrp"),
    (89, "ospf"),
    (93, "ax.25"),
    (94, "ipip"),
    (97, "etherip"),
    (98, "encap"),
    (103, "pim"),
    (108, "ipcomp"),
    (112, "vrrp"),
    (115, "l2tp"),
    (124, "isis"),
    (132, "sctp"),
    (133, "fc"),
    (135, "mobility-header"),
    (136, "udplite"),
    (137, "mpls-in-ip"),
    (138, "manet"),
    (139, "hip"),
    (140, "shim6"),
    (141, "wesp"),
    (142, "rohc"),
    (143, "ethernet"),
];

/// The protocols a policy may name, with their numbers.
pub const PROTOCOL_KEYWORDS: &[(&str, u8)] = &[
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("sctp", 132),
    ("icmp", 1),
    ("icmpv6", 58),
    ("esp", 50),
    ("ah", 51),
    ("gre", 47),
    ("igmp", 2),
    ("ospf", 89),
    ("vrrp", 112),
];

/// The name `iptables-save` prints after `-p`.
pub fn protocol_save_name(number: u8) -> String {
    protocol_name(number).map_or_else(|| number.to_string(), str::to_string)
}

/// [`protocol_save_name`] without allocating; `None` for a protocol
/// printed as its number.
pub fn protocol_name(number: u8) -> Option<&'static str> {
    // iptables' built-in names win over /etc/protocols.
    let builtin = match number {
        6 => Some("tcp"),
        132 => Some("sctp"),
        17 => Some("udp"),
        136 => Some("udplite"),
        1 => Some("icmp"),
        58 => Some("ipv6-icmp"),
        50 => Some("esp"),
        51 => Some("ah"),
        135 => Some("mh"),
        _ => None,
    };
    builtin.or_else(|| PROTOCOL_NAMES.iter().find(|(n, _)| *n == number).map(|(_, name)| *name))
}

/// ICMP (IPv4) type names: nft's spellings, then the iptables ones.
pub const ICMP_TYPES: &[(&str, u8)] = &[
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("router-advertisement", 9),
    ("router-solicitation", 10),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp-request", 13),
    ("timestamp-reply", 14),
    ("info-request", 15),
    ("info-reply", 16),
    ("address-mask-request", 17),
    ("address-mask-reply", 18),
    ("pong", 0),
    ("ping", 8),
];

/// ICMPv6 type names: nft's spellings, then the ip6tables ones.
pub const ICMPV6_TYPES: &[(&str, u8)] = &[
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("mld-listener-query", 130),
    ("mld-listener-report", 131),
    ("mld-listener-done", 132),
    ("nd-router-solicit", 133),
    ("nd-router-advert", 134),
    ("nd-neighbor-solicit", 135),
    ("nd-neighbor-advert", 136),
    ("nd-redirect", 137),
    ("router-renumbering", 138),
    ("ind-neighbor-solicit", 141),
    ("ind-neighbor-advert", 142),
    ("mld2-listener-report", 143),
    ("mld-listener-reduction", 132),
    ("router-solicitation", 133),
    ("router-advertisement", 134),
    ("neighbour-solicitation", 135),
    ("neighbor-solicitation", 135),
    ("neighbour-advertisement", 136),
    ("neighbor-advertisement", 136),
    ("redirect", 137),
    ("ping", 128),
    ("pong", 129),
];

/// The reply type of an ICMP query type, for the reply half of a stateful
/// rule: conntrack tracks these queries, and their answers are ESTABLISHED.
pub fn icmp_reply_type(protocol: u8, kind: u8) -> Option<u8> {
    match (protocol, kind) {
        (1, 8) => Some(0),
        (1, 13) => Some(14),
        (1, 15) => Some(16),
        (1, 17) => Some(18),
        (58, 128) => Some(129),
        (58, 139) => Some(140),
        _ => None,
    }
}
