//! One diagnostic type for every phase, and the one place that talks to
//! codespan-reporting.
//!
//! Each phase builds [`Diagnostic`]s as plain data; [`render`] turns them
//! into text. Codes are stable kebab-case names: docs/diagnostics.md has a
//! section for each, and `ignore CODE` refers to them.

use crate::source::{Sources, Span};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{self, Files};
use codespan_reporting::term;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Off unless enabled (`-W CODE`): reported as a warning then.
    Allow,
    /// Information, such as the rule `fwc query` found; never counted.
    Note,
    Warning,
    Error,
}

macro_rules! codes {
    ($( $variant:ident = $name:literal, $severity:ident, $summary:literal; )*) => {
        /// Every diagnostic fwc can report. The name is the stable code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $( $variant, )* }

        impl Code {
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            pub fn name(self) -> &'static str {
                match self { $( Code::$variant => $name, )* }
            }

            pub fn default_severity(self) -> Severity {
                match self { $( Code::$variant => Severity::$severity, )* }
            }

            /// One line for `--help` and the docs.
            pub fn summary(self) -> &'static str {
                match self { $( Code::$variant => $summary, )* }
            }

            pub fn from_name(name: &str) -> Option<Code> {
                match name { $( $name => Some(Code::$variant), )* _ => None }
            }
        }
    };
}

codes! {
    SyntaxError = "syntax-error", Error, "the text is not a valid policy";
    UndefinedVariable = "undefined-variable", Error, "a `$name` that no `let` or `param` defines before its use";
    RedefinedVariable = "redefined-variable", Error, "a `let` or `param` name defined twice";
    WrongValueKind = "wrong-value-kind", Error, "a variable of one kind (interface, addresses, ports) used where another kind goes";
    UnsetParam = "unset-param", Error, "a `param` without default that `--set` did not set";
    UnknownParam = "unknown-param", Error, "`--set` names a param the policy does not declare";
    UnknownService = "unknown-service", Error, "a service name that neither the policy nor the stdlib defines";
    RedefinedService = "redefined-service", Error, "a service defined twice in the policy";
    ServiceLacksProtocol = "service-lacks-protocol", Error, "a service used in the ports of a protocol it has no ports for";
    UnknownModule = "unknown-module", Error, "`use` names a module the stdlib does not have";
    UnknownPart = "unknown-part", Error, "`use … except` names a part the module does not have";
    UnknownChain = "unknown-chain", Error, "a jump to a chain the policy does not define";
    RedefinedChain = "redefined-chain", Error, "a chain defined twice";
    ReservedChainName = "reserved-chain-name", Error, "a chain named like a built-in chain or target";
    PortOutOfRange = "port-out-of-range", Error, "a port outside 0-65535";
    ReversedPortRange = "reversed-port-range", Error, "a port range whose start is above its end";
    PortsWithoutProtocol = "ports-without-protocol", Error, "ports given for a protocol that has none (only tcp, udp, udplite and sctp have ports)";
    BadAddress = "bad-address", Error, "an address or CIDR block that does not parse";
    HostBitsSet = "host-bits-set", Warning, "a CIDR block with bits set after the prefix";
    FamilyConflict = "family-conflict", Error, "a rule whose addresses, protocol or options leave no address family";
    BadInterface = "bad-interface", Error, "an interface name the kernel refuses";
    CommentTooLong = "comment-too-long", Error, "a comment over 255 bytes, which the kernel would cut";
    LogPrefixTooLong = "log-prefix-too-long", Error, "a log prefix over 29 bytes, which the kernel would cut";
    BadRate = "bad-rate", Error, "a limit of zero, or a burst of zero";
    IncludeNotFound = "include-not-found", Error, "an `include` of a plain path that does not exist";
    IncludeCycle = "include-cycle", Error, "a file that includes itself, directly or through others";
    StatefulNeedsAllow = "stateful-needs-allow", Error, "`stateful` on a rule whose action is not `allow`";
    DuplicatePolicy = "duplicate-policy", Error, "two `policy` lines for one direction";
    UnknownCode = "unknown-code", Error, "`ignore` names a code fwc does not have";
    MissingDirection = "missing-direction", Error, "a rule outside a chain without `in`, `out` or `forward`";
    DuplicateClause = "duplicate-clause", Error, "a rule that says the same part twice (two `from`, two protocols, …)";
    MisplacedClause = "misplaced-clause", Error, "a part of a rule that does not fit its action or direction";
    DirectionConflict = "direction-conflict", Error, "a chain whose rules need one direction, jumped to from several";
    ChainCycle = "chain-cycle", Error, "chains that jump to each other in a loop";
    ChainTooDeep = "chain-too-deep", Error, "jumps nested deeper than the kernel's 16 levels";
    TestFailed = "test-failed", Error, "an `expect` that some packet it covers does not meet";
    BadPacket = "bad-packet", Error, "an `expect` line or a query that describes no packet, or too many";
    ShadowedRule = "shadowed-rule", Warning, "a rule no packet reaches: earlier rules decide all its packets";
    RedundantRule = "redundant-rule", Warning, "a rule whose removal would change no packet's verdict";
    Lockout = "lockout", Warning, "under `policy in drop`, no rule lets a new SSH connection in";
    NoNeighbourDiscovery = "no-neighbour-discovery", Warning, "an IPv6 drop policy that drops neighbour discovery";
    UnusedChain = "unused-chain", Warning, "a chain never jumped to, or jumped to and empty";
    UnusedVariable = "unused-variable", Warning, "a `let` or `param` never used";
    UnusedService = "unused-service", Warning, "a `service` the policy defines and never uses";
    UnusedIgnore = "unused-ignore", Warning, "an `ignore` that silences nothing";
    ReturnPath = "return-path", Warning, "an allow without `stateful` whose replies the other direction drops";
    Ipv6Gap = "ipv6-gap", Warning, "a service the policy opens over IPv4 only, in an otherwise dual-stack policy";
    Ipv4Gap = "ipv4-gap", Warning, "a service the policy opens over IPv6 only, in an otherwise dual-stack policy";
    AnalysisIncomplete = "analysis-incomplete", Warning, "a policy too large or tangled for the order analysis within its budget";
    ConflictingRules = "conflicting-rules", Allow, "rules that overlap in part with different verdicts, where order decides (off unless enabled)";
}

/// What to do with a code's diagnostics: `-A`, `-W`, `-D` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Allow,
    Warn,
    Deny,
}

/// Level settings for one run. Later settings win, as in a command line.
#[derive(Clone, Debug, Default)]
pub struct Levels {
    settings: Vec<(Option<Code>, Level)>,
}

impl Levels {
    /// `code` None means every warning (`--deny warnings`).
    pub fn set(&mut self, code: Option<Code>, level: Level) {
        self.settings.push((code, level));
    }

    /// Whether a code is reported at all.
    pub fn enabled(&self, code: Code) -> bool {
        self.level(code) != Level::Allow
    }

    pub fn level(&self, code: Code) -> Level {
        let mut level = match code.default_severity() {
            Severity::Allow => Level::Allow,
            Severity::Error => Level::Deny,
            _ => Level::Warn,
        };
        for (target, setting) in &self.settings {
            match target {
                Some(target) if *target == code => level = *setting,
                // `--deny warnings`: whatever warns by then becomes an error.
                None if level == Level::Warn && *setting == Level::Deny => level = Level::Deny,
                _ => {}
            }
        }
        level
    }

    /// Applies the levels: drops allowed diagnostics, turns denied
    /// warnings into errors. Errors of the language stay errors.
    pub fn apply(&self, diagnostics: &mut Vec<Diagnostic>) {
        diagnostics.retain_mut(|diagnostic| {
            if diagnostic.code.default_severity() == Severity::Error || diagnostic.severity == Severity::Note {
                return true;
            }
            match self.level(diagnostic.code) {
                Level::Allow => false,
                Level::Warn => {
                    diagnostic.severity = Severity::Warning;
                    true
                }
                Level::Deny => {
                    diagnostic.severity = Severity::Error;
                    true
                }
            }
        });
    }
}

/// A diagnostic as data. The first label is the primary one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>) -> Diagnostic {
        let severity = match code.default_severity() {
            Severity::Allow => Severity::Warning,
            other => other,
        };
        Diagnostic {
            code,
            severity,
            message: message.into(),
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn primary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into(), primary: true });
        self
    }

    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into(), primary: false });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Adds a note when there is one.
    pub fn maybe_note(mut self, note: Option<String>) -> Diagnostic {
        self.notes.extend(note);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn primary_span(&self) -> Option<Span> {
        self.labels.iter().find(|label| label.primary).map(|label| label.span)
    }
}

/// Renders diagnostics the way a compiler does: the message, the code, the
/// lines involved with their labels, then the notes. No colour. Many
/// diagnostics (a large policy's findings) are rendered on every core, in
/// chunks joined in order: the text is the same.
pub fn render(sources: &Sources, diagnostics: &[Diagnostic]) -> String {
    const CHUNK: usize = 512;
    let size = diagnostics.len().div_ceil(crate::parallel::threads()).max(CHUNK);
    let chunks: Vec<&[Diagnostic]> = diagnostics.chunks(size).collect();
    crate::parallel::map(&chunks, |chunk| render_all(sources, chunk)).concat()
}

fn render_all(sources: &Sources, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diagnostic in diagnostics {
        if !crate::snippets::write(sources, diagnostic, &mut out) {
            out.push_str(&render_with_codespan(sources, diagnostic));
        }
    }
    out
}

/// One diagnostic as codespan-reporting renders it.
pub(crate) fn render_with_codespan(sources: &Sources, diagnostic: &Diagnostic) -> String {
    let files = SourceFiles { sources };
    let config = term::Config::default();
    let mut out = Vec::new();
    let severity = match diagnostic.severity {
        Severity::Error => cs::Severity::Error,
        Severity::Warning | Severity::Allow => cs::Severity::Warning,
        Severity::Note => cs::Severity::Note,
    };
    let labels = diagnostic
        .labels
        .iter()
        .map(|label| {
            let style = if label.primary { cs::LabelStyle::Primary } else { cs::LabelStyle::Secondary };
            cs::Label::new(style, label.span.file, label.span.range()).with_message(label.message.clone())
        })
        .collect();
    let code = if diagnostic.severity == Severity::Note { "" } else { diagnostic.code.name() };
    let rendered = cs::Diagnostic::new(severity)
        .with_code(code)
        .with_message(diagnostic.message.clone())
        .with_labels(labels)
        .with_notes(diagnostic.notes.clone());
    term::emit_to_io_write(&mut out, &config, &files, &rendered).expect("every span points into a known file");
    String::from_utf8(out).expect("rendered from UTF-8 sources")
}

/// Adapts [`Sources`] to codespan-reporting's file database.
struct SourceFiles<'a> {
    sources: &'a Sources,
}

impl SourceFiles<'_> {
    fn line_starts(&self, id: usize) -> Result<&[usize], files::Error> {
        if id >= self.sources.files().len() {
            return Err(files::Error::FileMissing);
        }
        Ok(self.sources.line_starts(id))
    }
}

impl<'a> Files<'a> for SourceFiles<'a> {
    type FileId = usize;
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, id: usize) -> Result<&'a str, files::Error> {
        Ok(&self.sources.files().get(id).ok_or(files::Error::FileMissing)?.name)
    }

    fn source(&'a self, id: usize) -> Result<&'a str, files::Error> {
        Ok(&self.sources.files().get(id).ok_or(files::Error::FileMissing)?.text)
    }

    fn line_index(&'a self, id: usize, byte_index: usize) -> Result<usize, files::Error> {
        // The lines that start at or before the byte, less the first.
        Ok(self.line_starts(id)?.partition_point(|start| *start <= byte_index) - 1)
    }

    fn line_range(
        &'a self,
        id: usize,
        line_index: usize,
    ) -> Result<std::ops::Range<usize>, files::Error> {
        let text = self.source(id)?;
        let starts = self.line_starts(id)?;
        let start = *starts.get(line_index).ok_or(files::Error::LineTooLarge {
            given: line_index,
            max: starts.len() - 1,
        })?;
        let end = starts.get(line_index + 1).copied().unwrap_or(text.len());
        Ok(start..end)
    }
}

/// "did you mean `https`?" for a name close to one of the candidates.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (name.len() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= limit || candidate.starts_with(name) && name.len() >= 3)
        .min()
        .map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

/// Levenshtein distance over bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// One diagnostic as a JSON object on one line (`--format json`). The
/// schema is documented in docs/diagnostics.md; lines and columns are
/// 1-based, columns count characters, byte offsets are 0-based and the end
/// is exclusive.
pub fn to_json(sources: &Sources, diagnostic: &Diagnostic) -> String {
    let location = |span: Span| {
        let file = sources.get(span.file);
        let (line, column) = sources.line_column(span.file, span.start as usize);
        let (end_line, end_column) = sources.line_column(span.file, span.end as usize);
        format!(
            "\"file\":{},\"line\":{line},\"column\":{column},\"end_line\":{end_line},\"end_column\":{end_column},\"start_byte\":{},\"end_byte\":{}",
            json_string(&file.name),
            span.start,
            span.end
        )
    };
    let severity = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning | Severity::Allow => "warning",
        Severity::Note => "note",
    };
    let mut out = format!(
        "{{\"code\":{},\"severity\":\"{severity}\",\"message\":{}",
        json_string(diagnostic.code.name()),
        json_string(&diagnostic.message)
    );
    if let Some(span) = diagnostic.primary_span() {
        out.push(',');
        out.push_str(&location(span));
    }
    out.push_str(",\"labels\":[");
    for (index, label) in diagnostic.labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"primary\":{},\"message\":{},{}}}",
            label.primary,
            json_string(&label.message),
            location(label.span)
        ));
    }
    out.push_str("],\"notes\":[");
    let notes: Vec<String> = diagnostic.notes.iter().map(|note| json_string(note)).collect();
    out.push_str(&notes.join(","));
    out.push_str("]}");
    out
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
