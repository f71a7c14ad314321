//! Stands in for the crates.io `pest_stack_guard` (see the `[patch]` in
//! fwc's Cargo.toml).
//!
//! pest asks this crate for the remaining native stack on every rule,
//! sequence, optional and repetition it enters, to fail cleanly instead of
//! overflowing on deeply nested input. On Linux, macOS and Windows the
//! probe cannot be turned off by a feature or setting, and it took a fifth
//! of the time fwc spends parsing. fwc's grammar has no recursive rule
//! (`grammar_has_no_recursive_rule` in compiler/syntax/parser.rs checks
//! it), so the depth of pest's calls is bounded by the grammar, whatever
//! the input: the probe could never fire. If the grammar ever becomes
//! recursive, that test fails: remove the patch then.

/// The remaining native stack in bytes: unknown, so pest never stops on it.
#[inline]
pub fn remaining_stack() -> Option<usize> {
    None
}
