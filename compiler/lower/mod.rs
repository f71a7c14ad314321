//! Syntax trees to the flat IR.
//!
//! Three steps, each collecting every diagnostic it can:
//! 1. `load`: parse the policy, splice in `include`d files and `use`d stdlib
//!    modules where they stand, remembering how each statement got there;
//! 2. `resolve`: walk the statements in order, define variables, resolve
//!    every name in every rule (`resolve.rs`);
//! 3. `negation`: turn each `not` before a list into a helper chain;
//! 4. `place`: give chain rules their direction from the jumps into the
//!    chain, then expand each rule into IR rules, one family each
//!    (`expand.rs`).

mod expand;
mod load;
mod negation;
mod resolve;
pub mod values;

use crate::diagnostics::Diagnostic;
use crate::ir::Ruleset;
use crate::source::{FileSystem, Sources, Span};
use crate::syntax::ast;
use std::path::Path;

/// How a statement reached the policy: the `use` and `include` lines that
/// brought its file in, outermost first.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub via: Vec<Span>,
    pub stdlib: bool,
}

/// What lowering hands to later phases besides the rules.
#[derive(Clone, Debug, Default)]
pub struct Lowered {
    pub ruleset: Ruleset,
    pub tests: Vec<(ast::TestBlock, Context)>,
    /// `ignore CODE "reason"` lines, for whole-policy warnings.
    pub ignores: Vec<ast::IgnoreDecl>,
    /// `ignore CODE` on rules: the rule's span and the codes it silences.
    pub rule_ignores: Vec<(Span, Vec<String>)>,
    /// Every variable, for `expect` lines and queries that use them.
    pub variables: values::Variables,
    /// The `policy in …` and `policy out …` lines in force (for a stdlib
    /// module's, the user's `use` line).
    pub policy_spans: (Option<Span>, Option<Span>),
    /// User services no rule uses: name and definition.
    pub unused_services: Vec<(String, Span)>,
}

impl Default for Ruleset {
    fn default() -> Ruleset {
        Ruleset {
            policies: Default::default(),
            chains: Vec::new(),
            rules: Vec::new(),
            keep_patterns: Vec::new(),
        }
    }
}

/// `--set NAME=VALUE` pairs, as given.
pub type Params = [(String, String)];

pub fn lower(
    sources: &mut Sources,
    fs: &dyn FileSystem,
    root: &Path,
    params: &Params,
    diagnostics: &mut Vec<Diagnostic>,
) -> std::io::Result<Lowered> {
    let items = load::load(sources, fs, root, diagnostics)?;
    let mut resolved = resolve::resolve(sources, &items, params, diagnostics);
    negation::split_negated_lists(&mut resolved);
    // The syntax trees are done with: free them before the rules are built.
    drop(items);
    let ruleset = expand::place(&resolved, diagnostics);
    Ok(Lowered {
        ruleset,
        tests: resolved.tests,
        ignores: resolved.ignores,
        rule_ignores: resolved.rule_ignores,
        variables: resolved.variables,
        policy_spans: resolved.policy_spans,
        unused_services: resolved.unused_services,
    })
}
