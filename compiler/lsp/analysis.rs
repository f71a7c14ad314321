//! What the server knows: every open document compiled by the same
//! pipeline as `fwc check`, and the names in the syntax trees of every file
//! those compilations read.
//!
//! A document that another open document includes is not compiled on its
//! own: its diagnostics, hovers and definitions come from the compilation
//! of the document that includes it, where its variables and services are
//! those of the whole policy.

use super::documents::{normalize, uri_of, Documents, Overlay};
use super::position::LineIndex;
use crate::diagnostics::Severity;
use crate::ir::{Derivation, Family, Rule, Table};
use crate::lower::values::{PortEntry, VariableValue};
use crate::source::{FileId, FileSystem, Origin, Span};
use crate::syntax::{ast, parser};
use crate::{Compilation, Options};
use lsp_types as lsp;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// How the server compiles: what `--set`, `-A`, `-W` and `-D` give `fwc check`.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub params: Vec<(String, String)>,
    pub options: Options,
}

/// The compilations of the open documents that no other open document
/// includes.
pub struct Analysis {
    pub roots: Vec<Root>,
}

pub struct Root {
    pub compilation: Compilation,
    /// The names of each file of the compilation, found on first use.
    names: OnceCell<Vec<Names>>,
}

impl Analysis {
    pub fn new(documents: &Documents, disk: &dyn FileSystem, settings: &Settings) -> Analysis {
        let overlay = Overlay { documents, disk };
        let mut compiled = Vec::new();
        for (path, _) in documents.iter() {
            // The overlay reads every open document, so this cannot fail.
            let Ok(compilation) = crate::compile_with(&overlay, path, &settings.params, &settings.options) else {
                continue;
            };
            let files: BTreeSet<PathBuf> = compilation.sources.files()[1..]
                .iter()
                .filter_map(|file| match &file.origin {
                    Origin::Path(path) => Some(normalize(path)),
                    _ => None,
                })
                .collect();
            compiled.push((path.clone(), compilation, files));
        }
        // Included by another document that it does not include in turn (a
        // cycle of includes leaves both as roots, each with its error).
        let included: Vec<bool> = (0..compiled.len())
            .map(|index| {
                let path = &compiled[index].0;
                compiled.iter().any(|(other, _, files)| other != path && files.contains(path) && !compiled[index].2.contains(other))
            })
            .collect();
        let roots = compiled
            .into_iter()
            .zip(included)
            .filter(|(_, included)| !included)
            .map(|((_, compilation, _), _)| Root { compilation, names: OnceCell::new() })
            .collect();
        Analysis { roots }
    }

    /// Every diagnostic of every root, by the URI of the file it points
    /// into. A diagnostic that points into no file on disk (a stdlib
    /// module, a `--set` value) goes where its first label in a file
    /// points, or else to the start of the root document.
    pub fn diagnostics(&self, documents: &Documents) -> BTreeMap<lsp::Url, Vec<lsp::Diagnostic>> {
        let mut out: BTreeMap<lsp::Url, Vec<lsp::Diagnostic>> = BTreeMap::new();
        for root in &self.roots {
            let mut lines = Lines::new(&root.compilation);
            for diagnostic in &root.compilation.diagnostics {
                let span = diagnostic
                    .primary_span()
                    .filter(|span| root.on_disk(span.file).is_some())
                    .or_else(|| diagnostic.labels.iter().map(|label| label.span).find(|span| root.on_disk(span.file).is_some()))
                    .unwrap_or(Span::new(0, 0, 0));
                let Some(location) = root.location(documents, &mut lines, span) else { continue };
                // The labels' own words, then the notes, as related information.
                let mut related = Vec::new();
                for label in &diagnostic.labels {
                    let shown_here = label.primary && label.span == span;
                    if label.message.is_empty() || label.primary && !shown_here {
                        continue;
                    }
                    if let Some(location) = root.location(documents, &mut lines, label.span) {
                        related.push(lsp::DiagnosticRelatedInformation { location, message: label.message.clone() });
                    }
                }
                for note in &diagnostic.notes {
                    related.push(lsp::DiagnosticRelatedInformation { location: location.clone(), message: format!("note: {note}") });
                }
                let code = diagnostic.code.name();
                let unused = matches!(code, "unused-variable" | "unused-service" | "unused-chain" | "unused-ignore");
                let converted = lsp::Diagnostic {
                    range: location.range,
                    severity: Some(match diagnostic.severity {
                        Severity::Error => lsp::DiagnosticSeverity::ERROR,
                        Severity::Warning | Severity::Allow => lsp::DiagnosticSeverity::WARNING,
                        Severity::Note => lsp::DiagnosticSeverity::INFORMATION,
                    }),
                    code: Some(lsp::NumberOrString::String(code.to_string())),
                    code_description: None,
                    source: Some("fwc".to_string()),
                    message: diagnostic.message.clone(),
                    related_information: (!related.is_empty()).then_some(related),
                    tags: unused.then(|| vec![lsp::DiagnosticTag::UNNECESSARY]),
                    data: None,
                };
                // A file two open policies include gets each diagnostic once.
                let list = out.entry(location.uri).or_default();
                if !list.contains(&converted) {
                    list.push(converted);
                }
            }
        }
        out
    }

    /// The compilation that reads the file at `path`, and the file's id in it.
    pub fn locate(&self, path: &Path) -> Option<(&Root, FileId)> {
        self.roots.iter().find_map(|root| {
            let file = root.compilation.sources.files().iter().position(|file| match &file.origin {
                Origin::Path(origin) => normalize(origin) == path,
                _ => false,
            })?;
            Some((root, file))
        })
    }
}

/// Line indexes of a compilation's files, made when first needed.
struct Lines<'a> {
    compilation: &'a Compilation,
    indexes: HashMap<FileId, LineIndex<'a>>,
}

impl<'a> Lines<'a> {
    fn new(compilation: &'a Compilation) -> Lines<'a> {
        Lines { compilation, indexes: HashMap::new() }
    }

    fn range(&mut self, span: Span) -> lsp::Range {
        let compilation = self.compilation;
        let index = self.indexes.entry(span.file).or_insert_with(|| LineIndex::new(&compilation.sources.get(span.file).text));
        index.range(span.start as usize, span.end as usize)
    }
}

/// The kinds of name a policy uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Variable,
    Service,
    Chain,
    /// A stdlib module, or a part in `use … except PART`.
    Module,
    /// The pattern of an `include`.
    Include,
}

/// One name where it is written.
#[derive(Clone, Debug)]
pub struct Occurrence {
    pub kind: Kind,
    pub name: String,
    pub span: Span,
    /// The statement it is part of: the rule, the declaration, the `use`.
    pub statement: Span,
    /// This is where the name is defined.
    pub definition: bool,
}

/// The names of one file, and its rules.
#[derive(Debug, Default)]
pub struct Names {
    pub occurrences: Vec<Occurrence>,
    pub rules: Vec<Span>,
}

impl Names {
    pub fn of(file: &ast::File) -> Names {
        let mut names = Names::default();
        for statement in &file.statements {
            names.statement(statement);
        }
        names
    }

    fn add(&mut self, kind: Kind, name: &str, span: Span, statement: Span, definition: bool) {
        self.occurrences.push(Occurrence { kind, name: name.to_string(), span, statement, definition });
    }

    fn statement(&mut self, statement: &ast::Statement) {
        match statement {
            ast::Statement::Rule(rule) => self.rule(rule),
            ast::Statement::Let(decl) | ast::Statement::Param(decl) => {
                self.add(Kind::Variable, &decl.name.value, decl.name.span, decl.span, true);
                match &decl.value {
                    Some(ast::Value::Addresses(addresses)) => self.addresses(addresses, decl.span),
                    Some(ast::Value::Ports(ports)) => self.ports(ports, decl.span),
                    Some(ast::Value::Interface(_)) | None => {}
                }
            }
            ast::Statement::Service(service) => {
                self.add(Kind::Service, &service.name.value, service.name.span, service.span, true);
                for entry in &service.entries {
                    self.protocol(entry, service.span);
                }
            }
            ast::Statement::Chain(chain) => {
                self.add(Kind::Chain, &chain.name.value, chain.name.span, chain.span, true);
                for statement in &chain.body {
                    self.statement(statement);
                }
            }
            ast::Statement::Include(pattern) => self.add(Kind::Include, &pattern.value, pattern.span, pattern.span, false),
            ast::Statement::Use(module) => {
                self.add(Kind::Module, &module.module.value, module.module.span, module.span, false);
                for part in &module.except {
                    self.add(Kind::Module, &part.value, part.span, module.span, false);
                }
            }
            ast::Statement::Test(test) => {
                for expect in &test.expects {
                    if let Some(on) = &expect.packet.on {
                        self.on(on, expect.span);
                    }
                    if let Some(protocol) = &expect.packet.protocol {
                        self.protocol(protocol, expect.span);
                    }
                    for addresses in [&expect.packet.from, &expect.packet.to].into_iter().flatten() {
                        self.addresses(addresses, expect.span);
                    }
                }
            }
            ast::Statement::Policy(_) | ast::Statement::KeepChains(_) | ast::Statement::Ignore(_) => {}
        }
    }

    fn rule(&mut self, rule: &ast::Rule) {
        self.rules.push(rule.span);
        let statement = rule.span;
        if let Some(on) = &rule.on {
            self.on(on, statement);
        }
        if let Some(protocol) = &rule.protocol {
            self.protocol(protocol, statement);
        }
        if let Some(services) = &rule.services {
            for service in &services.value {
                self.add(Kind::Service, &service.value, service.span, statement, false);
            }
        }
        for addresses in [&rule.from, &rule.to].into_iter().flatten() {
            self.addresses(addresses, statement);
        }
        if let Some(target) = &rule.jump_target {
            self.add(Kind::Chain, &target.value, target.span, statement, false);
        }
        for ports in [rule.source_ports.as_deref(), rule.port.as_deref()].into_iter().flatten() {
            self.ports(ports, statement);
        }
        if let Some(target) = &rule.nat_target {
            if let ast::NatTarget::Ports(_, ports) = target.as_ref() {
                self.ports(ports, statement);
            }
        }
    }

    fn on(&mut self, on: &ast::OnClause, statement: Span) {
        for interface in std::iter::once(&on.first).chain(&on.second) {
            if let ast::InterfaceValue::Variable(name) = &interface.value {
                // The span covers `not` too: the name is at its end.
                let end = interface.span.end;
                let start = end - name.len() as u32 - 1;
                self.add(Kind::Variable, name, Span { start, ..interface.span }, statement, false);
            }
        }
    }

    fn protocol(&mut self, protocol: &ast::ProtocolClause, statement: Span) {
        if let Some(ports) = &protocol.ports {
            self.ports(ports, statement);
        }
    }

    fn ports(&mut self, ports: &ast::PortList, statement: Span) {
        for item in &ports.items {
            match item {
                ast::PortItem::Variable(name) => self.add(Kind::Variable, &name.value, name.span, statement, false),
                ast::PortItem::Name(name) => self.add(Kind::Service, &name.value, name.span, statement, false),
                ast::PortItem::Single(_) | ast::PortItem::Range(..) => {}
            }
        }
    }

    fn addresses(&mut self, addresses: &ast::Addresses, statement: Span) {
        for item in &addresses.items {
            self.address(item, statement);
        }
    }

    fn address(&mut self, item: &ast::AddressItem, statement: Span) {
        match item {
            ast::AddressItem::Variable(name) => self.add(Kind::Variable, &name.value, name.span, statement, false),
            ast::AddressItem::Set(_, items) => {
                for item in items {
                    self.address(item, statement);
                }
            }
            ast::AddressItem::Literal(_) => {}
        }
    }
}

/// What is under the cursor.
pub enum Target<'a> {
    Name(&'a Occurrence),
    Rule(Span),
}

impl Root {
    /// The path of a file read from disk (or an open document).
    pub fn on_disk(&self, file: FileId) -> Option<&Path> {
        match &self.compilation.sources.get(file).origin {
            Origin::Path(path) => Some(path),
            _ => None,
        }
    }

    fn location(&self, documents: &Documents, lines: &mut Lines, span: Span) -> Option<lsp::Location> {
        let uri = uri_of(documents, self.on_disk(span.file)?)?;
        Some(lsp::Location { uri, range: lines.range(span) })
    }

    pub fn location_of(&self, documents: &Documents, span: Span) -> Option<lsp::Location> {
        self.location(documents, &mut Lines::new(&self.compilation), span)
    }

    pub fn names(&self) -> &[Names] {
        self.names.get_or_init(|| {
            self.compilation
                .sources
                .files()
                .iter()
                .enumerate()
                .map(|(id, file)| match parser::parse_file(id, &file.text).0 {
                    Some(parsed) => Names::of(&parsed),
                    None => Names::default(),
                })
                .collect()
        })
    }

    /// The innermost name at a byte offset of a file, or else the rule
    /// around it.
    pub fn target(&self, file: FileId, offset: usize) -> Option<Target<'_>> {
        let names = self.names().get(file)?;
        let offset = offset as u32;
        let inside = |span: &Span| span.start <= offset && offset <= span.end;
        if let Some(occurrence) = names.occurrences.iter().filter(|occurrence| inside(&occurrence.span)).min_by_key(|occurrence| occurrence.span.end - occurrence.span.start) {
            return Some(Target::Name(occurrence));
        }
        names.rules.iter().filter(|span| inside(span)).min_by_key(|span| span.end - span.start).map(|span| Target::Rule(*span))
    }

    /// Where a name is defined: the variable in force at the end of the
    /// policy, and every `service` or `chain` of that name, policy files
    /// first, then the stdlib.
    pub fn definitions(&self, kind: Kind, name: &str) -> Vec<Span> {
        if kind == Kind::Variable {
            if let Some(variable) = self.compilation.lowered.variables.map.get(name) {
                return vec![variable.span];
            }
        }
        let mut spans: Vec<(bool, Span)> = Vec::new();
        for names in self.names() {
            for occurrence in &names.occurrences {
                if occurrence.definition && occurrence.kind == kind && occurrence.name == name {
                    spans.push((self.on_disk(occurrence.span.file).is_none(), occurrence.span));
                }
            }
        }
        spans.sort();
        spans.into_iter().map(|(_, span)| span).collect()
    }

    /// The definition's statement (`service https = tcp 443`).
    fn statement_of(&self, definition: Span) -> Option<Span> {
        self.names()
            .get(definition.file)?
            .occurrences
            .iter()
            .find(|occurrence| occurrence.definition && occurrence.span == definition)
            .map(|occurrence| occurrence.statement)
    }

    /// The hover text for what is at a byte offset of a file, in Markdown.
    pub fn hover(&self, overlay: &dyn FileSystem, file: FileId, offset: usize) -> Option<(Span, String)> {
        match self.target(file, offset)? {
            Target::Rule(span) => {
                let rules: Vec<&Rule> = self.compilation.lowered.ruleset.rules.iter().filter(|rule| rule.origin.span == span).collect();
                Some((span, format!("This rule compiles to:\n\n{}", self.render_rules(&rules))))
            }
            Target::Name(occurrence) => {
                let text = match occurrence.kind {
                    Kind::Variable => self.hover_variable(&occurrence.name),
                    Kind::Service => self.hover_definitions("service", Kind::Service, &occurrence.name),
                    Kind::Chain => {
                        let mut text = self.hover_definitions("chain", Kind::Chain, &occurrence.name);
                        let chain = crate::ir::ChainRef::User(occurrence.name.clone());
                        let rules: Vec<&Rule> = self.compilation.lowered.ruleset.rules.iter().filter(|rule| rule.chain == chain).collect();
                        text.push_str(&format!("\n\nIts rules:\n\n{}", self.render_rules(&rules)));
                        text
                    }
                    Kind::Module => self.hover_module(occurrence),
                    Kind::Include => self.hover_include(overlay, occurrence),
                };
                Some((occurrence.span, text))
            }
        }
    }

    fn hover_variable(&self, name: &str) -> String {
        let Some(variable) = self.compilation.lowered.variables.map.get(name) else {
            return format!("`${name}` is not defined");
        };
        let mut text = String::new();
        if let Some(statement) = self.statement_of(variable.span) {
            text.push_str(&format!("```fw\n{}\n```\n\n", self.compilation.sources.text(statement)));
        }
        let value = match &variable.value {
            VariableValue::Interface(name) => format!("the interface `{name}`"),
            VariableValue::Addresses(addresses) => {
                let nets: Vec<String> = addresses.iter().map(|address| format!("`{}`", address.net)).collect();
                format!("addresses: {}", nets.join(", "))
            }
            VariableValue::Ports(ports) => {
                let entries: Vec<String> = ports
                    .iter()
                    .map(|entry| match entry {
                        PortEntry::Range(range, _) if range.low == range.high => format!("`{}`", range.low),
                        PortEntry::Range(range, _) => format!("`{}-{}`", range.low, range.high),
                        PortEntry::Service(name) => format!("the ports of service `{}`", name.value),
                    })
                    .collect();
                format!("ports: {}", entries.join(", "))
            }
        };
        text.push_str(&format!("`${name}`: {value}"));
        text
    }

    fn hover_definitions(&self, what: &str, kind: Kind, name: &str) -> String {
        let definitions = self.definitions(kind, name);
        let Some(first) = definitions.first() else { return format!("no {what} `{name}` is defined") };
        let statement = self.statement_of(*first).unwrap_or(*first);
        let mut text = self.compilation.sources.text(statement).to_string();
        if kind == Kind::Chain {
            // The chain's first line is enough: its rules follow compiled.
            text = text.lines().next().unwrap_or_default().to_string();
        }
        format!("```fw\n{}\n```\n\nfrom {}", text, self.file_name(first.file))
    }

    fn file_name(&self, file: FileId) -> String {
        match &self.compilation.sources.get(file).origin {
            Origin::Stdlib(name) => format!("the stdlib (`stdlib/{name}`)"),
            _ => format!("`{}`", self.compilation.sources.get(file).name),
        }
    }

    fn hover_module(&self, occurrence: &Occurrence) -> String {
        let Some((file_name, source)) = crate::stdlib::module(&occurrence.name) else {
            return format!("there is no stdlib module `{}`", occurrence.name);
        };
        // The first paragraph of a module's leading comment says what it is.
        let about: Vec<&str> = source
            .lines()
            .map_while(|line| line.strip_prefix('#').map(str::trim))
            .take_while(|line| !line.is_empty())
            .collect();
        let mut text = format!("stdlib module `{}` (`stdlib/{file_name}`)\n\n{}", occurrence.name, about.join("\n"));
        let is_part = self.compilation.sources.text(occurrence.statement).split_whitespace().nth(1) != Some(occurrence.name.as_str());
        if is_part {
            text.push_str("\n\nLeft out here.");
        } else {
            let rules: Vec<&Rule> = self.compilation.lowered.ruleset.rules.iter().filter(|rule| rule.origin.via.contains(&occurrence.statement)).collect();
            text.push_str(&format!("\n\nHere it compiles to:\n\n{}", self.render_rules(&rules)));
        }
        text
    }

    fn hover_include(&self, overlay: &dyn FileSystem, occurrence: &Occurrence) -> String {
        let files = self.included_files(overlay, occurrence);
        let names: Vec<String> = files.iter().map(|path| format!("- `{}`", path.display())).collect();
        let rules: Vec<&Rule> = self.compilation.lowered.ruleset.rules.iter().filter(|rule| rule.origin.via.contains(&occurrence.statement)).collect();
        let listed = if names.is_empty() { "no file".to_string() } else { names.join("\n") };
        format!("includes:\n{listed}\n\nwhich compile to:\n\n{}", self.render_rules(&rules))
    }

    /// The files an `include` names, as the loader finds them.
    pub fn included_files(&self, overlay: &dyn FileSystem, occurrence: &Occurrence) -> Vec<PathBuf> {
        let directory = self.on_disk(occurrence.span.file).and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let joined = directory.join(&occurrence.name);
        let mut files = if occurrence.name.contains(['*', '?', '[']) {
            overlay.glob(&joined.to_string_lossy()).unwrap_or_default()
        } else {
            vec![joined]
        };
        files.sort();
        files.into_iter().map(|path| normalize(&path)).collect()
    }

    /// IR rules as the iptables emitter writes them, by family and table.
    fn render_rules(&self, rules: &[&Rule]) -> String {
        const SHOWN: usize = 40;
        if rules.is_empty() {
            return "no rules".to_string();
        }
        let mut text = String::from("```text\n");
        let mut shown = 0;
        for family in Family::BOTH {
            for table in [Table::Filter, Table::Nat] {
                let group: Vec<&&Rule> = rules.iter().filter(|rule| rule.family == family && rule.table == table).collect();
                if group.is_empty() {
                    continue;
                }
                let file = if family == Family::V4 { "rules.v4" } else { "rules.v6" };
                text.push_str(&format!("# {file}, table {}\n", table.name()));
                for rule in group {
                    if shown == SHOWN {
                        break;
                    }
                    shown += 1;
                    text.push_str(&crate::emit::iptables::rule_line(rule));
                    if let Some(derived) = rule.origin.derived {
                        text.push_str(match derived {
                            Derivation::Reply => "   # the replies (stateful)",
                            Derivation::ReplyJump => "   # the replies' way through the chain",
                            Derivation::Log => "   # log",
                            Derivation::Established => "   # the established half, unlimited",
                            Derivation::RejectOther => "   # everything but TCP",
                            Derivation::ForwardAllow => "   # the forward allow",
                            Derivation::RejectAnswer => "   # the reject's answer",
                            Derivation::Negation => "   # `not` before a list: its helper chain",
                        });
                    }
                    text.push('\n');
                }
            }
        }
        if rules.len() > shown {
            text.push_str(&format!("# … and {} more\n", rules.len() - shown));
        }
        text.push_str("```");
        text
    }
}
