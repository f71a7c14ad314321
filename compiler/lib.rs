//! fwc: a firewall policy compiler.
//!
//! The library is pure: [`compile`] reads files only through the
//! [`FileSystem`] it is given, runs nothing, prints nothing. The `fwc`
//! binary (compiler/cli) does the I/O and picks exit codes.
//!
//! Pipeline: syntax (pest, in `syntax::parser` only) → AST → `lower`
//! (includes, stdlib modules, names, families) → IR (`ir`) → `emit`.

pub mod analysis;
pub mod diagnostics;
pub mod emit;
pub mod eval;
pub mod import;
pub mod ir;
pub mod lower;
pub mod source;
pub mod stdlib;
pub mod syntax;
pub mod tables;

pub use diagnostics::{Code, Diagnostic, Severity};
pub use source::{FileSystem, OsFileSystem, Sources};

use std::path::Path;

/// The result of compiling one policy.
pub struct Compilation {
    pub sources: Sources,
    /// Every diagnostic, in the order found. Errors mean `lowered` must not
    /// be emitted.
    pub diagnostics: Vec<Diagnostic>,
    pub lowered: lower::Lowered,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The output files, or `None` if the policy has errors.
    pub fn outputs(&self, policy_name: &str) -> Option<Vec<(&'static str, String)>> {
        (!self.has_errors()).then(|| emit::all(&self.lowered.ruleset, policy_name))
    }

    pub fn render_diagnostics(&self) -> String {
        diagnostics::render(&self.sources, &self.diagnostics)
    }

    /// Runs the policy's `test` blocks against its compiled rules.
    pub fn run_tests(&self) -> Vec<eval::expect::TestOutcome> {
        let mut variables = self.lowered.variables.clone();
        eval::expect::run_tests(&self.lowered.ruleset, &self.lowered.tests, &mut variables)
    }

    /// Renders diagnostics made after compiling (test failures, queries).
    pub fn render(&self, diagnostics: &[Diagnostic]) -> String {
        diagnostics::render(&self.sources, diagnostics)
    }

    /// Evaluates a packet written like an `expect` line without its verdict.
    /// `Err` holds diagnostics for a packet that cannot be read.
    pub fn query(&mut self, text: &str) -> Result<eval::query::QueryResult, Vec<Diagnostic>> {
        let file = self.sources.add("<query>".to_string(), source::Origin::CommandLine, text.to_string());
        let packet = syntax::parser::parse_packet(file, text).map_err(|diagnostic| vec![diagnostic])?;
        let mut variables = self.lowered.variables.clone();
        eval::query::run(&self.lowered.ruleset, &packet, &mut variables)
    }
}

/// Compiles the policy at `root`. `params` are the `--set NAME=VALUE`
/// pairs. Fails only when `root` itself cannot be read.
pub fn compile(fs: &dyn FileSystem, root: &Path, params: &[(String, String)]) -> std::io::Result<Compilation> {
    let mut sources = Sources::new();
    let mut diagnostics = Vec::new();
    let lowered = lower::lower(&mut sources, fs, root, params, &mut diagnostics)?;
    if !diagnostics.iter().any(Diagnostic::is_error) {
        diagnostics.extend(analysis::order_checks(&lowered.ruleset, &sources));
        diagnostics.extend(analysis::host_checks(&lowered.ruleset, &host_context(&lowered)));
    }
    apply_ignores(&lowered, &mut diagnostics);
    Ok(Compilation { sources, diagnostics, lowered })
}

fn host_context(lowered: &lower::Lowered) -> analysis::HostContext {
    let ssh_port = lowered.variables.map.get("ssh_port").and_then(|variable| match &variable.value {
        lower::values::VariableValue::Ports(ports) => match ports.as_slice() {
            [lower::values::PortEntry::Range(range, _)] if range.low == range.high => Some((range.low, variable.span)),
            _ => None,
        },
        _ => None,
    });
    analysis::HostContext { input_policy: lowered.policy_spans.0, output_policy: lowered.policy_spans.1, ssh_port }
}

/// `ignore CODE "reason"` silences a warning everywhere; `ignore CODE` on
/// a rule silences it for warnings about that rule. Errors stay.
fn apply_ignores(lowered: &lower::Lowered, diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.retain(|diagnostic| {
        if diagnostic.is_error() {
            return true;
        }
        let code = diagnostic.code.name();
        let everywhere = lowered.ignores.iter().any(|ignore| ignore.code.value == code);
        let on_rule = diagnostic.primary_span().is_some_and(|span| {
            lowered.rule_ignores.iter().any(|(rule, codes)| {
                rule.file == span.file
                    && rule.start <= span.start
                    && span.end <= rule.end
                    && codes.iter().any(|ignored| ignored == code)
            })
        });
        !(everywhere || on_rule)
    });
}
