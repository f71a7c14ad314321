//! The host side of `fwc apply` and `fwc diff`, as pure functions of text.
//!
//! The binary runs `iptables-save`, `iptables-restore`, `ss` and `ip` and
//! hands their output here: [`ruleset`] reads dumps into a normal form,
//! splices in what belongs to other programs (`keep`), and renders restore
//! files; [`diff`] compares two normal forms chain by chain; [`lockout`]
//! finds the SSH sessions a policy would cut; [`ipsets`] compares the
//! address sets a build fills with the live ones; [`emergency`] is the ruleset
//! of last resort at boot; [`nft`] reads `nft -j` listings of `table inet
//! fwc` into the same normal form, for the nftables backend.

pub mod diff;
pub mod emergency;
pub mod ipsets;
pub mod lockout;
pub mod nft;
pub mod ruleset;
