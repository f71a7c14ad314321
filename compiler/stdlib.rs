//! The standard library: ordinary .fw source embedded in the binary.
//!
//! Modules go through the same parser and checks as a user's policy; a
//! diagnostic in one points at `<stdlib/NAME.fw>`. A module's parts are the
//! modules it `use`s, so `use baseline except icmp` needs no special case.

/// `(module name, file name, source)`.
pub const MODULES: &[(&str, &str, &str)] = &[
    ("baseline", "baseline.fw", include_str!("../stdlib/baseline.fw")),
    ("policies", "baseline/policies.fw", include_str!("../stdlib/baseline/policies.fw")),
    ("loopback", "baseline/loopback.fw", include_str!("../stdlib/baseline/loopback.fw")),
    ("established", "baseline/established.fw", include_str!("../stdlib/baseline/established.fw")),
    ("icmp", "baseline/icmp.fw", include_str!("../stdlib/baseline/icmp.fw")),
    ("icmpv6", "baseline/icmpv6.fw", include_str!("../stdlib/baseline/icmpv6.fw")),
    ("ssh-in", "baseline/ssh-in.fw", include_str!("../stdlib/baseline/ssh-in.fw")),
    ("dns-out", "baseline/dns-out.fw", include_str!("../stdlib/baseline/dns-out.fw")),
    ("ntp-out", "baseline/ntp-out.fw", include_str!("../stdlib/baseline/ntp-out.fw")),
];

/// The service catalogue, an outer scope for every policy.
pub const SERVICES: (&str, &str) = ("services.fw", include_str!("../stdlib/services.fw"));

pub fn module(name: &str) -> Option<(&'static str, &'static str)> {
    MODULES.iter().find(|(module, _, _)| *module == name).map(|(_, file, text)| (*file, *text))
}

pub fn module_names() -> impl Iterator<Item = &'static str> {
    MODULES.iter().map(|(name, _, _)| *name)
}
