//! Completion and document symbols.
//!
//! Completion reads the line being typed, not the syntax tree: a line
//! half-written is a syntax error, and the file's tree is gone until it is
//! finished. Names come from the compilation of the policy (every file it
//! reads, the stdlib's services too) and from the lines of the document
//! itself that declare them.

use super::analysis::{Kind, Root};
use super::position::LineIndex;
use crate::syntax::ast;
use lsp_types as lsp;
use std::collections::BTreeMap;

/// Words that start a statement.
const STATEMENT_KEYWORDS: &[&str] = &[
    "allow", "deny", "reject", "jump", "log", "return", "masquerade", "snat", "dnat", "redirect", "forward-port",
    "policy", "let", "param", "service", "chain", "keep", "include", "use", "ignore", "test", "expect",
];

/// Words that go inside a rule.
const RULE_KEYWORDS: &[&str] = &[
    "in", "out", "forward", "on", "from", "to", "not", "any", "service", "stateful", "log", "limit", "burst", "rate",
    "comment", "ipv4", "ipv6", "ignore", "state", "sport", "flags", "mac", "with", "port", "to-source",
    "to-destination", "to-port", "tcp", "udp", "udplite", "sctp", "icmp", "icmpv6", "esp", "ah", "gre", "igmp",
    "ospf", "vrrp", "new", "established", "related", "invalid", "untracked",
];

const DIRECTIONS: &[&str] = &["in", "out", "forward"];
const REJECT_KINDS: &[&str] = &[
    "tcp-reset", "net-unreachable", "host-unreachable", "port-unreachable", "admin-prohibited",
    "proto-unreachable", "net-prohibited", "host-prohibited",
];

/// The completions at a byte offset of a document. `root` is the
/// compilation that reads it, when there is one.
pub fn complete(text: &str, offset: usize, root: Option<&Root>) -> Vec<lsp::CompletionItem> {
    let line_start = text[..offset].rfind('\n').map_or(0, |index| index + 1);
    let before = &text[line_start..offset];
    let word_start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$')))
        .map_or(0, |index| index + 1);
    let prefix = &before[word_start..];
    let words: Vec<&str> = before[..word_start].split_whitespace().collect();
    let previous = words.last().copied().unwrap_or("");
    let index = LineIndex::new(text);
    let range = index.range(line_start + word_start, offset);

    let mut candidates: BTreeMap<String, (lsp::CompletionItemKind, String)> = BTreeMap::new();
    let mut add = |label: &str, kind: lsp::CompletionItemKind, detail: String| {
        candidates.entry(label.to_string()).or_insert((kind, detail));
    };
    let names = Names::gather(text, root);
    if prefix.starts_with('$') {
        for (name, detail) in &names.variables {
            add(&format!("${name}"), lsp::CompletionItemKind::VARIABLE, detail.clone());
        }
    } else if matches!(previous, "use" | "except") || previous.ends_with(',') && words.contains(&"except") {
        for module in crate::stdlib::module_names() {
            add(module, lsp::CompletionItemKind::MODULE, "stdlib module".to_string());
        }
    } else if previous == "service" && words.len() > 1 || previous.ends_with(',') && words.contains(&"service") {
        for (name, detail) in &names.services {
            add(name, lsp::CompletionItemKind::CONSTANT, detail.clone());
        }
    } else if previous == "to" && words.first() == Some(&"jump") {
        for (name, detail) in &names.chains {
            add(name, lsp::CompletionItemKind::FUNCTION, detail.clone());
        }
    } else if previous == "ignore" {
        for code in crate::diagnostics::Code::ALL {
            add(code.name(), lsp::CompletionItemKind::ENUM_MEMBER, code.summary().to_string());
        }
    } else if previous == "with" {
        for kind in REJECT_KINDS {
            add(kind, lsp::CompletionItemKind::ENUM_MEMBER, "reject with".to_string());
        }
    } else if previous == "policy" {
        for direction in DIRECTIONS {
            add(direction, lsp::CompletionItemKind::KEYWORD, "direction".to_string());
        }
    } else if words.len() == 2 && words[0] == "policy" {
        for verdict in ["accept", "drop"] {
            add(verdict, lsp::CompletionItemKind::KEYWORD, "default verdict".to_string());
        }
    } else if words.is_empty() {
        for keyword in STATEMENT_KEYWORDS {
            add(keyword, lsp::CompletionItemKind::KEYWORD, "keyword".to_string());
        }
    } else {
        for keyword in RULE_KEYWORDS {
            add(keyword, lsp::CompletionItemKind::KEYWORD, "keyword".to_string());
        }
        // A service name also goes in the ports slot: `tcp http, 8080`.
        for (name, detail) in &names.services {
            add(name, lsp::CompletionItemKind::CONSTANT, detail.clone());
        }
    }
    candidates
        .into_iter()
        .filter(|(label, _)| label.starts_with(prefix))
        .map(|(label, (kind, detail))| lsp::CompletionItem {
            text_edit: Some(lsp::CompletionTextEdit::Edit(lsp::TextEdit { range, new_text: label.clone() })),
            filter_text: Some(label.clone()),
            label,
            kind: Some(kind),
            detail: Some(detail),
            ..Default::default()
        })
        .collect()
}

/// Variables, services and chains a document can use, with a detail line.
#[derive(Default)]
struct Names {
    variables: BTreeMap<String, String>,
    services: BTreeMap<String, String>,
    chains: BTreeMap<String, String>,
}

impl Names {
    fn gather(text: &str, root: Option<&Root>) -> Names {
        let mut names = Names::default();
        if let Some(root) = root {
            let sources = &root.compilation.sources;
            for file in root.names() {
                for occurrence in file.occurrences.iter().filter(|occurrence| occurrence.definition) {
                    let line = first_line(sources.text(occurrence.statement)).to_string();
                    let map = match occurrence.kind {
                        Kind::Variable => &mut names.variables,
                        Kind::Service => &mut names.services,
                        Kind::Chain => &mut names.chains,
                        Kind::Module | Kind::Include => continue,
                    };
                    map.entry(occurrence.name.clone()).or_insert(line);
                }
            }
        }
        // The document's own declarations, also while it does not parse.
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(keyword), Some(name)) = (words.next(), words.next()) else { continue };
            let name = name.trim_end_matches('{');
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
            if !valid {
                continue;
            }
            let map = match keyword {
                "let" | "param" => &mut names.variables,
                "service" if line.contains('=') => &mut names.services,
                "chain" => &mut names.chains,
                _ => continue,
            };
            map.entry(name.to_string()).or_insert_with(|| line.trim().to_string());
        }
        names
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The outline of a document: declarations, chains with their rules, tests.
#[allow(deprecated)] // `DocumentSymbol::deprecated` must be given, as None
pub fn symbols(text: &str, file: &ast::File) -> Vec<lsp::DocumentSymbol> {
    let index = LineIndex::new(text);
    let range = |span: crate::source::Span| index.range(span.start as usize, span.end as usize);
    let symbol = |name: String, kind: lsp::SymbolKind, detail: Option<String>, span, selection, children: Option<Vec<lsp::DocumentSymbol>>| {
        lsp::DocumentSymbol {
            name,
            detail,
            kind,
            tags: None,
            deprecated: None,
            range: range(span),
            selection_range: range(selection),
            children,
        }
    };
    let line = |span: crate::source::Span| first_line(&text[span.range()]).trim().to_string();
    let mut out = Vec::new();
    for statement in &file.statements {
        let made = match statement {
            ast::Statement::Let(decl) | ast::Statement::Param(decl) => {
                let detail = decl.value.as_ref().map(|value| text[value.span().range()].to_string());
                symbol(decl.name.value.clone(), lsp::SymbolKind::VARIABLE, detail, decl.span, decl.name.span, None)
            }
            ast::Statement::Service(service) => {
                let entries = service.entries.iter().map(|entry| text[entry.span.range()].to_string()).collect::<Vec<_>>();
                symbol(service.name.value.clone(), lsp::SymbolKind::CONSTANT, Some(entries.join(", ")), service.span, service.name.span, None)
            }
            ast::Statement::Chain(chain) => {
                let rules = chain
                    .body
                    .iter()
                    .filter_map(|statement| match statement {
                        ast::Statement::Rule(rule) => {
                            Some(symbol(line(rule.span), lsp::SymbolKind::EVENT, None, rule.span, rule.action.span, None))
                        }
                        _ => None,
                    })
                    .collect();
                symbol(chain.name.value.clone(), lsp::SymbolKind::NAMESPACE, None, chain.span, chain.name.span, Some(rules))
            }
            ast::Statement::Test(test) => {
                let name = test.name.value.trim_matches('"').to_string();
                let expects = test
                    .expects
                    .iter()
                    .map(|expect| symbol(line(expect.span), lsp::SymbolKind::EVENT, None, expect.span, expect.verdict.span, None))
                    .collect();
                symbol(format!("test {name}"), lsp::SymbolKind::METHOD, None, test.span, test.name.span, Some(expects))
            }
            ast::Statement::Policy(policy) => {
                symbol(line(policy.span), lsp::SymbolKind::PROPERTY, None, policy.span, policy.direction.span, None)
            }
            ast::Statement::Use(module) => symbol(line(module.span), lsp::SymbolKind::MODULE, None, module.span, module.module.span, None),
            ast::Statement::Include(pattern) => {
                symbol(format!("include {}", pattern.value), lsp::SymbolKind::FILE, None, pattern.span, pattern.span, None)
            }
            ast::Statement::Rule(rule) => symbol(line(rule.span), lsp::SymbolKind::EVENT, None, rule.span, rule.action.span, None),
            ast::Statement::KeepChains(_) | ast::Statement::Ignore(_) => continue,
        };
        out.push(made);
    }
    out
}
