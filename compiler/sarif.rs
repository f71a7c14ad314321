//! Diagnostics as a SARIF 2.1.0 log (`fwc check --format sarif`), the
//! format GitHub code scanning and other CI tools read. docs/diagnostics.md
//! ("SARIF output") describes what goes where.
//!
//! One run per policy. Its rules are the codes that have results, each
//! with its one-line summary and, as help, its section of
//! docs/diagnostics.md (compiled in). Each result points at its primary
//! label by a path relative to the directory fwc ran in, columns counting
//! characters, with a fingerprint that survives edits elsewhere in the
//! file. Files that are not in the repository (the stdlib's modules,
//! `--set` values) cannot be pointed at: such a label is told in the
//! message, and the result is placed at a label in a policy file or, with
//! none, on the policy file as a whole.

use crate::diagnostics::{Code, Diagnostic, Label, Severity};
use crate::source::{Origin, Sources, Span};
use serde_json::{json, Value};
use std::path::{Component, Path, PathBuf};

/// The diagnostics page, whose section for a code is that rule's help.
const DIAGNOSTICS_DOC: &str = include_str!("../docs/diagnostics.md");

/// Where the log's paths are relative to, and what it reports on.
pub struct SarifContext<'a> {
    /// The directory fwc ran in: paths under it become relative URIs.
    pub base: &'a Path,
    /// The policy checked, as named on the command line: the run's
    /// category (`automationDetails.id`), so that the logs of several
    /// policies can be uploaded for one commit.
    pub policy: &'a Path,
}

/// The SARIF log, pretty-printed, with a final newline.
pub fn to_sarif(sources: &Sources, diagnostics: &[Diagnostic], context: &SarifContext) -> String {
    let mut codes: Vec<Code> = diagnostics.iter().map(|diagnostic| diagnostic.code).collect();
    codes.sort();
    codes.dedup();
    let rules: Vec<Value> = codes.iter().map(|code| rule(*code)).collect();
    let mut seen: Vec<String> = Vec::new();
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|diagnostic| {
            let index = codes.binary_search(&diagnostic.code).expect("every code has its rule");
            result(sources, diagnostic, index, context, &mut seen)
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "fwc",
                    "version": env!("CARGO_PKG_VERSION"),
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "automationDetails": { "id": format!("fwc/{}/", uri_path(&relative(context.base, context.policy))) },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    let mut text = serde_json::to_string_pretty(&log).expect("a JSON value prints");
    text.push('\n');
    text
}

fn rule(code: Code) -> Value {
    let severity = code.default_severity();
    let level = match severity {
        Severity::Error => "error",
        Severity::Warning | Severity::Allow => "warning",
        Severity::Note => "note",
    };
    let help = help(code);
    // The section's first paragraph, without its "**Error.**" lead.
    let first = help.split("\n\n").next().unwrap_or_default();
    let first = first.split_once(".** ").map_or(first, |(_, rest)| rest);
    json!({
        "id": code.name(),
        "name": rule_name(code),
        "shortDescription": { "text": code.summary() },
        "fullDescription": { "text": first.split_whitespace().collect::<Vec<_>>().join(" ") },
        "help": {
            "text": format!("{}. The section `{}` of fwc's docs/diagnostics.md shows an example and the fix.", code.summary(), code.name()),
            "markdown": help,
        },
        "defaultConfiguration": { "level": level, "enabled": severity != Severity::Allow },
        "properties": {
            "tags": ["firewall"],
            "precision": "very-high",
            "problem.severity": if severity == Severity::Error { "error" } else { "warning" },
        },
    })
}

/// `shadowed-rule` → `ShadowedRule`, the form SARIF suggests for names.
fn rule_name(code: Code) -> String {
    code.name()
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The code's section of docs/diagnostics.md, without its heading.
pub fn help(code: Code) -> String {
    let heading = format!("\n## {}\n", code.name());
    let Some(start) = DIAGNOSTICS_DOC.find(&heading) else {
        return format!("{}. See docs/diagnostics.md.", code.summary());
    };
    let body = &DIAGNOSTICS_DOC[start + heading.len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    body[..end].trim().to_string()
}

fn result(sources: &Sources, diagnostic: &Diagnostic, rule_index: usize, context: &SarifContext, seen: &mut Vec<String>) -> Value {
    let level = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning | Severity::Allow => "warning",
        Severity::Note => "note",
    };
    let in_policy = |label: &Label| matches!(sources.get(label.span.file).origin, Origin::Path(_));
    // Primary label first, as in the text form.
    let mut labels: Vec<&Label> = diagnostic.labels.iter().filter(|label| label.primary).collect();
    labels.extend(diagnostic.labels.iter().filter(|label| !label.primary));
    let anchor = labels.iter().copied().find(|label| in_policy(label));
    let mut message = diagnostic.message.clone();
    for label in labels.iter().filter(|label| !in_policy(label)) {
        let file = sources.get(label.span.file);
        let (line, column) = sources.line_column(label.span.file, label.span.start as usize);
        message.push_str(&format!("\n{}:{line}:{column}: {}", file.name, label.message));
    }
    for note in &diagnostic.notes {
        message.push_str(&format!("\n= {note}"));
    }
    let location = match anchor {
        Some(label) => json!({
            "physicalLocation": physical_location(sources, label.span, context),
            "message": { "text": label.message },
        }),
        None => json!({
            "physicalLocation": {
                "artifactLocation": artifact_location(&relative(context.base, context.policy)),
            }
        }),
    };
    let related: Vec<Value> = labels
        .iter()
        .filter(|label| in_policy(label) && !anchor.is_some_and(|anchor| std::ptr::eq(anchor, **label)))
        .enumerate()
        .map(|(index, label)| {
            json!({
                "id": index + 1,
                "physicalLocation": physical_location(sources, label.span, context),
                "message": { "text": label.message },
            })
        })
        .collect();
    let mut result = json!({
        "ruleId": diagnostic.code.name(),
        "ruleIndex": rule_index,
        "level": level,
        "message": { "text": message },
        "locations": [location],
        "partialFingerprints": { "fwcResultHash/v1": fingerprint(sources, diagnostic, anchor, context, seen) },
    });
    if !related.is_empty() {
        result["relatedLocations"] = Value::Array(related);
    }
    result
}

fn physical_location(sources: &Sources, span: Span, context: &SarifContext) -> Value {
    let (start_line, start_column) = sources.line_column(span.file, span.start as usize);
    let (end_line, end_column) = sources.line_column(span.file, span.end as usize);
    json!({
        "artifactLocation": artifact_location(&file_path(sources, span, context)),
        "region": {
            "startLine": start_line,
            "startColumn": start_column,
            "endLine": end_line,
            "endColumn": end_column,
        },
    })
}

fn artifact_location(path: &Path) -> Value {
    if path.is_absolute() {
        json!({ "uri": format!("file://{}", uri_path(path)) })
    } else {
        json!({ "uri": uri_path(path), "uriBaseId": "%SRCROOT%" })
    }
}

fn file_path(sources: &Sources, span: Span, context: &SarifContext) -> PathBuf {
    match &sources.get(span.file).origin {
        Origin::Path(path) => relative(context.base, path),
        _ => relative(context.base, context.policy),
    }
}

/// `path` relative to `base` when it lies under it, without `.` parts and
/// with `..` resolved where it can be; otherwise as it is.
fn relative(base: &Path, path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() { normalise(path) } else { normalise(&base.join(path)) };
    match absolute.strip_prefix(normalise(base)) {
        Ok(inside) => inside.to_path_buf(),
        Err(_) if path.is_absolute() => absolute,
        Err(_) => normalise(path),
    }
}

fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A path as the path of a URI: `/`-separated, percent-encoded but for
/// the characters a path segment may hold as they are.
fn uri_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A result's identity across commits: its code, its file, the text of
/// the line it points at (spaces collapsed), and how many results before
/// it in the log share all three. A line moving, or an edit elsewhere in
/// the file, leaves it alone; editing the line makes it a new result.
/// FNV-1a, 64 bits, in hexadecimal: stable across versions of Rust.
fn fingerprint(sources: &Sources, diagnostic: &Diagnostic, anchor: Option<&Label>, context: &SarifContext, seen: &mut Vec<String>) -> String {
    let (file, line) = match anchor {
        Some(label) => {
            let text = &sources.get(label.span.file).text;
            let start = text[..label.span.start as usize].rfind('\n').map_or(0, |newline| newline + 1);
            let end = text[start..].find('\n').map_or(text.len(), |newline| start + newline);
            let line: Vec<&str> = text[start..end].split_whitespace().collect();
            (file_path(sources, label.span, context), line.join(" "))
        }
        None => (relative(context.base, context.policy), diagnostic.message.clone()),
    };
    let key = format!("{}\0{}\0{}", diagnostic.code.name(), uri_path(&file), line);
    let occurrence = seen.iter().filter(|earlier| **earlier == key).count();
    seen.push(key.clone());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{key}\0{occurrence}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
