//! fwc: a firewall policy compiler.
//!
//! The library is pure: [`compile`] reads files only through the
//! [`FileSystem`] it is given, runs nothing, prints nothing. The `fwc`
//! binary (compiler/cli) does the I/O and picks exit codes.
//!
//! Pipeline: syntax (pest, in `syntax::parser` only) → AST → `lower`
//! (includes, stdlib modules, names, families) → IR (`ir`) → `emit`.

pub mod analysis;
pub mod consolidate;
pub mod diagnostics;
pub mod emit;
pub mod fmt;
pub mod eval;
pub mod host;
pub mod import;
pub mod ir;
pub mod lower;
pub mod lsp;
pub mod parallel;
pub mod sarif;
mod snippets;
pub mod source;
pub mod stdlib;
pub mod syntax;
pub mod tables;

pub use diagnostics::{Code, Diagnostic, Level, Levels, Severity};
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
        (!self.has_errors()).then(|| emit::all(&self.lowered.ruleset, &self.sources, policy_name))
    }

    pub fn render_diagnostics(&self) -> String {
        diagnostics::render(&self.sources, &self.diagnostics)
    }

    /// Runs the policy's `test` blocks against its compiled rules.
    pub fn run_tests(&self) -> Vec<eval::expect::TestOutcome> {
        // No test, no evaluator to build (it indexes every rule).
        if self.lowered.tests.is_empty() {
            return Vec::new();
        }
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

/// How to compile: the level of each diagnostic code.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub levels: Levels,
}

/// Compiles the policy at `root`. `params` are the `--set NAME=VALUE`
/// pairs. Fails only when `root` itself cannot be read.
pub fn compile(fs: &dyn FileSystem, root: &Path, params: &[(String, String)]) -> std::io::Result<Compilation> {
    compile_with(fs, root, params, &Options::default())
}

pub fn compile_with(
    fs: &dyn FileSystem,
    root: &Path,
    params: &[(String, String)],
    options: &Options,
) -> std::io::Result<Compilation> {
    let mut compilation = lower_policy(fs, root, params)?;
    compilation.diagnostics = compilation.checked_diagnostics(options);
    Ok(compilation)
}

/// The first half of [`compile_with`]: the policy read and lowered, its
/// checks not run and its diagnostics' levels not applied
/// ([`Compilation::checked_diagnostics`] does both). With no error, its
/// rules can be emitted while the checks run: `fwc build` does.
pub fn lower_policy(fs: &dyn FileSystem, root: &Path, params: &[(String, String)]) -> std::io::Result<Compilation> {
    let mut sources = Sources::new();
    let mut diagnostics = Vec::new();
    let lowered = lower::lower(&mut sources, fs, root, params, &mut diagnostics)?;
    Ok(Compilation { sources, diagnostics, lowered })
}

impl Compilation {
    /// The second half of [`compile_with`], for a compilation from
    /// [`lower_policy`]: its diagnostics with the checks' findings (when
    /// lowering found no error), `ignore`s and levels applied.
    pub fn checked_diagnostics(&self, options: &Options) -> Vec<Diagnostic> {
        let (sources, lowered) = (&self.sources, &self.lowered);
        let mut diagnostics = self.diagnostics.clone();
        // Checks whose every code is switched off (`-A CODE`) do not run.
        let skipped: Vec<Code> = [Check::Order, Check::Host]
            .iter()
            .filter(|check| !check.codes().iter().any(|code| options.levels.enabled(*code)))
            .flat_map(|check| check.codes().iter().copied())
            .collect();
        if !diagnostics.iter().any(Diagnostic::is_error) {
            let mut context = host_context(lowered);
            context.stdlib_files = (0..sources.files().len())
                .filter(|file| matches!(sources.get(*file).origin, source::Origin::Stdlib(_)))
                .collect();
            // The host checks ask their questions of the chains the order
            // analysis built, when it ran.
            let runs = |check: Check| !skipped.contains(&check.codes()[0]);
            let (order, built) = if runs(Check::Order) {
                analysis::order_checks_keeping(&lowered.ruleset, sources, &options.levels, analysis::BUDGET)
            } else {
                (Vec::new(), analysis::Built::default())
            };
            diagnostics.extend(order);
            if runs(Check::Host) {
                diagnostics.extend(analysis::host_checks(&lowered.ruleset, &context, built));
            }
            analysis::drop_gaps_of_shadowed(&mut diagnostics);
            diagnostics.extend(analysis::unused_checks(lowered, sources));
        }
        apply_ignores(lowered, &mut diagnostics, &skipped);
        options.levels.apply(&mut diagnostics);
        diagnostics
    }
}

/// The checks of a compiled policy.
#[derive(Clone, Copy)]
enum Check {
    Order,
    Host,
}

impl Check {
    /// The codes a check reports.
    fn codes(&self) -> &'static [Code] {
        match self {
            Check::Order => &[Code::ShadowedRule, Code::RedundantRule, Code::ConflictingRules],
            Check::Host => &[Code::Lockout, Code::NoNeighbourDiscovery, Code::UnusedChain, Code::ReturnPath, Code::Ipv6Gap, Code::Ipv4Gap],
        }
    }
}

fn host_context(lowered: &lower::Lowered) -> analysis::HostContext {
    let ssh_port = lowered.variables.map.get("ssh_port").and_then(|variable| match &variable.value {
        lower::values::VariableValue::Ports(ports) => match ports.as_slice() {
            [lower::values::PortEntry::Range(range, _)] if range.low == range.high => Some((range.low, variable.span)),
            _ => None,
        },
        _ => None,
    });
    analysis::HostContext {
        stdlib_files: Vec::new(),
        input_policy: lowered.policy_spans.0,
        output_policy: lowered.policy_spans.1,
        ssh_port,
    }
}

/// `ignore CODE "reason"` silences a warning everywhere; `ignore CODE` on
/// a rule silences it for warnings about that rule. Errors stay. An
/// `ignore` that silences nothing is itself a warning, unless the check
/// of its code did not run (`skipped`).
fn apply_ignores(lowered: &lower::Lowered, diagnostics: &mut Vec<Diagnostic>, skipped: &[Code]) {
    let checked = |name: &str| Code::from_name(name).is_some_and(|code| !skipped.contains(&code));
    let mut global_used = vec![false; lowered.ignores.len()];
    let mut rule_used = vec![false; lowered.rule_ignores.len()];
    diagnostics.retain(|diagnostic| {
        if diagnostic.is_error() {
            return true;
        }
        let code = diagnostic.code.name();
        let mut silenced = false;
        for (index, ignore) in lowered.ignores.iter().enumerate() {
            if ignore.code.value == code {
                global_used[index] = true;
                silenced = true;
            }
        }
        if let Some(span) = diagnostic.primary_span() {
            for (index, (rule, codes)) in lowered.rule_ignores.iter().enumerate() {
                let inside = rule.file == span.file && rule.start <= span.start && span.end <= rule.end;
                if inside && codes.iter().any(|ignored| ignored == code) {
                    rule_used[index] = true;
                    silenced = true;
                }
            }
        }
        !silenced
    });
    for (ignore, used) in lowered.ignores.iter().zip(global_used) {
        if !used && checked(&ignore.code.value) {
            diagnostics.push(
                Diagnostic::new(Code::UnusedIgnore, format!("`ignore {}` silences nothing", ignore.code.value))
                    .primary(ignore.code.span, "no such warning in this policy")
                    .note("remove it; errors cannot be ignored, only warnings"),
            );
        }
    }
    for ((rule, codes), used) in lowered.rule_ignores.iter().zip(rule_used) {
        if !used && codes.iter().all(|code| checked(code)) {
            diagnostics.push(
                Diagnostic::new(Code::UnusedIgnore, format!("`ignore {}` on this rule silences nothing", codes.join(", ")))
                    .primary(*rule, "no such warning about this rule")
                    .note("remove it; errors cannot be ignored, only warnings"),
            );
        }
    }
}
