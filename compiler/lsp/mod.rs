//! `fwc lsp`: a language server over a JSON-RPC connection.
//!
//! The server compiles the open documents with the same pipeline as
//! `fwc check` (`crate::compile_with`), reading files through an overlay
//! in which the editor's unsaved text stands in for each open document.
//! It publishes every diagnostic to the file it points into (included
//! files too), and answers hover, go to definition, completion, document
//! symbols and formatting.
//!
//! The loop is synchronous: one message at a time, and the documents are
//! compiled again when no message is waiting after a change, so a burst of
//! edits costs one compilation. Positions are UTF-16 columns (the
//! protocol's default); see `position.rs`.

mod analysis;
mod complete;
mod documents;
mod position;

use crate::source::FileSystem;
use analysis::{Analysis, Kind, Settings, Target};
use documents::{path_of, Document, Documents, Overlay};
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types as lsp;
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use position::LineIndex;
use std::collections::BTreeMap;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Serves one client until it says `exit`. The caller makes the connection
/// (`Connection::stdio()` for `fwc lsp`) and joins its I/O threads.
pub fn run(connection: &Connection, disk: &dyn FileSystem) -> Result<(), Error> {
    let capabilities = lsp::ServerCapabilities {
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Options(lsp::TextDocumentSyncOptions {
            open_close: Some(true),
            change: Some(lsp::TextDocumentSyncKind::FULL),
            // A saved file may be one an open policy includes.
            save: Some(lsp::TextDocumentSyncSaveOptions::Supported(true)),
            ..Default::default()
        })),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        definition_provider: Some(lsp::OneOf::Left(true)),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(vec!["$".to_string()]),
            ..Default::default()
        }),
        document_symbol_provider: Some(lsp::OneOf::Left(true)),
        document_formatting_provider: Some(lsp::OneOf::Left(true)),
        ..Default::default()
    };
    let initialize = connection.initialize(serde_json::to_value(capabilities)?)?;
    let initialize: lsp::InitializeParams = serde_json::from_value(initialize)?;
    let settings = settings(initialize.initialization_options.as_ref())?;
    let mut server = Server { disk, settings, documents: Documents::default(), analysis: None, published: BTreeMap::new() };
    loop {
        let message = match connection.receiver.try_recv() {
            Ok(message) => message,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                // Idle: bring the diagnostics up to date before waiting.
                server.publish(connection)?;
                match connection.receiver.recv() {
                    Ok(message) => message,
                    Err(_) => return Ok(()),
                }
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Ok(()),
        };
        match message {
            Message::Request(request) => {
                if connection.handle_shutdown(&request)? {
                    return Ok(());
                }
                let response = server.request(request);
                connection.sender.send(Message::Response(response))?;
            }
            Message::Notification(notification) => {
                // A notification has no answer: a bad one is logged, and the
                // server goes on.
                if let Err(error) = server.notification(notification) {
                    let message = lsp::LogMessageParams { typ: lsp::MessageType::ERROR, message: format!("fwc lsp: {error}") };
                    let log = Notification::new(lsp::notification::LogMessage::METHOD.to_string(), message);
                    connection.sender.send(Message::Notification(log))?;
                }
            }
            Message::Response(_) => {}
        }
    }
}

/// `initializationOptions`: `{"params": {"NAME": "VALUE"}, "allow": [CODE],
/// "warn": [CODE], "deny": [CODE or "warnings"]}`, as `--set`, `-A`, `-W`
/// and `-D` on the command line.
fn settings(options: Option<&serde_json::Value>) -> Result<Settings, Error> {
    let mut settings = Settings::default();
    let Some(options) = options else { return Ok(settings) };
    if let Some(params) = options.get("params").and_then(|params| params.as_object()) {
        for (name, value) in params {
            let value = value.as_str().ok_or_else(|| format!("params.{name}: expected a string"))?;
            settings.params.push((name.clone(), value.to_string()));
        }
    }
    for (key, level) in [("allow", crate::Level::Allow), ("warn", crate::Level::Warn), ("deny", crate::Level::Deny)] {
        for code in options.get(key).and_then(|codes| codes.as_array()).into_iter().flatten() {
            let name = code.as_str().unwrap_or_default();
            match crate::Code::from_name(name) {
                Some(code) => settings.options.levels.set(Some(code), level),
                None if name == "warnings" && level == crate::Level::Deny => settings.options.levels.set(None, level),
                None => return Err(format!("{key}: `{name}` is not a diagnostic code").into()),
            }
        }
    }
    Ok(settings)
}

struct Server<'a> {
    disk: &'a dyn FileSystem,
    settings: Settings,
    documents: Documents,
    /// `None` after a change, until the documents are compiled again.
    analysis: Option<Analysis>,
    /// What was last published for each URI.
    published: BTreeMap<lsp::Url, Vec<lsp::Diagnostic>>,
}

impl Server<'_> {
    fn analysis(&mut self) -> &Analysis {
        if self.analysis.is_none() {
            self.analysis = Some(Analysis::new(&self.documents, self.disk, &self.settings));
        }
        self.analysis.as_ref().expect("made above")
    }

    /// After a change, compiles the documents again and sends the
    /// diagnostics that changed, and empty lists to files that no longer
    /// have any.
    fn publish(&mut self, connection: &Connection) -> Result<(), Error> {
        if self.analysis.is_some() {
            return Ok(());
        }
        self.analysis();
        let mut current = self.analysis.as_ref().expect("made above").diagnostics(&self.documents);
        let open = self.documents.iter().map(|(_, document)| &document.uri);
        for uri in self.published.keys().chain(open) {
            current.entry(uri.clone()).or_default();
        }
        for (uri, diagnostics) in &current {
            let open = self.documents.get(uri).is_some();
            // An open document hears once that it has none.
            if self.published.get(uri) == Some(diagnostics) || !open && diagnostics.is_empty() && !self.published.contains_key(uri) {
                continue;
            }
            let version = self.documents.get(uri).map(|document| document.version);
            let params = lsp::PublishDiagnosticsParams { uri: uri.clone(), diagnostics: diagnostics.clone(), version };
            let notification = Notification::new(lsp::notification::PublishDiagnostics::METHOD.to_string(), params);
            connection.sender.send(Message::Notification(notification))?;
        }
        current.retain(|uri, diagnostics| !diagnostics.is_empty() || self.documents.get(uri).is_some());
        self.published = current;
        Ok(())
    }

    fn notification(&mut self, notification: Notification) -> Result<(), Error> {
        use lsp::notification as n;
        match notification.method.as_str() {
            n::DidOpenTextDocument::METHOD => {
                let params: lsp::DidOpenTextDocumentParams = serde_json::from_value(notification.params)?;
                let item = params.text_document;
                self.documents.open(Document { uri: item.uri, version: item.version, text: item.text });
            }
            n::DidChangeTextDocument::METHOD => {
                let params: lsp::DidChangeTextDocumentParams = serde_json::from_value(notification.params)?;
                let Some(document) = self.documents.get_mut(&params.text_document.uri) else { return Ok(()) };
                document.version = params.text_document.version;
                for change in params.content_changes {
                    match change.range {
                        // Full sync is what the server asks for; a range
                        // edit from a client that sends them anyway still
                        // applies.
                        Some(range) => {
                            let index = LineIndex::new(&document.text);
                            let (start, end) = (index.offset(range.start), index.offset(range.end));
                            document.text.replace_range(start..end, &change.text);
                        }
                        None => document.text = change.text,
                    }
                }
            }
            n::DidCloseTextDocument::METHOD => {
                let params: lsp::DidCloseTextDocumentParams = serde_json::from_value(notification.params)?;
                self.documents.close(&params.text_document.uri);
            }
            // A saved file may be included by an open one: compile again.
            n::DidSaveTextDocument::METHOD | n::DidChangeWatchedFiles::METHOD => {}
            _ => return Ok(()),
        }
        self.analysis = None;
        Ok(())
    }

    fn request(&mut self, request: Request) -> Response {
        use lsp::request as r;
        let id = request.id.clone();
        let result = match request.method.as_str() {
            r::HoverRequest::METHOD => self.handle(request, Server::hover),
            r::GotoDefinition::METHOD => self.handle(request, Server::definition),
            r::Completion::METHOD => self.handle(request, Server::completion),
            r::DocumentSymbolRequest::METHOD => self.handle(request, Server::symbols),
            r::Formatting::METHOD => self.handle(request, Server::format),
            _ => return Response::new_err(id, ErrorCode::MethodNotFound as i32, format!("fwc lsp does not answer {}", request.method)),
        };
        match result {
            Ok(value) => Response::new_ok(id, value),
            Err(error) => Response::new_err(id, ErrorCode::InvalidParams as i32, error.to_string()),
        }
    }

    fn handle<P: serde::de::DeserializeOwned, R: serde::Serialize>(
        &mut self,
        request: Request,
        handler: fn(&mut Self, P) -> Option<R>,
    ) -> Result<serde_json::Value, Error> {
        let params: P = serde_json::from_value(request.params)?;
        Ok(serde_json::to_value(handler(self, params))?)
    }

    fn hover(&mut self, params: lsp::HoverParams) -> Option<lsp::Hover> {
        self.analysis();
        let (root, file, offset) = locate(self.analysis.as_ref()?, &params.text_document_position_params)?;
        let overlay = Overlay { documents: &self.documents, disk: self.disk };
        let (span, text) = root.hover(&overlay, file, offset)?;
        let range = LineIndex::new(&root.compilation.sources.get(file).text).range(span.start as usize, span.end as usize);
        let contents = lsp::MarkupContent { kind: lsp::MarkupKind::Markdown, value: text };
        Some(lsp::Hover { contents: lsp::HoverContents::Markup(contents), range: Some(range) })
    }

    fn definition(&mut self, params: lsp::GotoDefinitionParams) -> Option<lsp::GotoDefinitionResponse> {
        self.analysis();
        let (root, file, offset) = locate(self.analysis.as_ref()?, &params.text_document_position_params)?;
        let Target::Name(occurrence) = root.target(file, offset)? else { return None };
        let locations: Vec<lsp::Location> = match occurrence.kind {
            Kind::Include => {
                let overlay = Overlay { documents: &self.documents, disk: self.disk };
                root.included_files(&overlay, occurrence)
                    .iter()
                    .filter_map(|path| documents::uri_of(&self.documents, path))
                    .map(|uri| lsp::Location { uri, range: lsp::Range::default() })
                    .collect()
            }
            // The stdlib is not a file the editor can open.
            Kind::Module => Vec::new(),
            kind => root
                .definitions(kind, &occurrence.name)
                .into_iter()
                .filter_map(|span| root.location_of(&self.documents, span))
                .collect(),
        };
        (!locations.is_empty()).then_some(lsp::GotoDefinitionResponse::Array(locations))
    }

    fn completion(&mut self, params: lsp::CompletionParams) -> Option<lsp::CompletionResponse> {
        let position = &params.text_document_position;
        let text = self.documents.get(&position.text_document.uri)?.text.clone();
        let offset = LineIndex::new(&text).offset(position.position);
        let path = path_of(&position.text_document.uri);
        let root = self.analysis().locate(&path).map(|(root, _)| root);
        Some(lsp::CompletionResponse::Array(complete::complete(&text, offset, root)))
    }

    fn symbols(&mut self, params: lsp::DocumentSymbolParams) -> Option<lsp::DocumentSymbolResponse> {
        let text = &self.documents.get(&params.text_document.uri)?.text;
        let file = crate::syntax::parser::parse_file(0, text).0?;
        Some(lsp::DocumentSymbolResponse::Nested(complete::symbols(text, &file)))
    }

    /// `fwc fmt`'s layout, as edits of the lines that change. A document
    /// that does not parse gets none (its diagnostics say why).
    fn format(&mut self, params: lsp::DocumentFormattingParams) -> Option<Vec<lsp::TextEdit>> {
        let text = &self.documents.get(&params.text_document.uri)?.text;
        let formatted = crate::fmt::format(text).ok()?;
        let index = LineIndex::new(text);
        let starts: Vec<usize> = std::iter::once(0).chain(text.split_inclusive('\n').scan(0, |end, line| {
            *end += line.len();
            Some(*end)
        })).collect();
        let new_lines: Vec<&str> = formatted.split_inclusive('\n').collect();
        let diff = similar::TextDiff::from_lines(text.as_str(), formatted.as_str());
        let edits = diff
            .ops()
            .iter()
            .filter(|op| op.tag() != similar::DiffTag::Equal)
            .map(|op| {
                let (old, new) = (op.old_range(), op.new_range());
                lsp::TextEdit {
                    range: index.range(starts[old.start], starts[old.end]),
                    new_text: new_lines[new].concat(),
                }
            })
            .collect();
        Some(edits)
    }
}

/// The compilation that reads a document, the document's id in it, and
/// the byte offset of a position in it.
fn locate<'a>(analysis: &'a Analysis, position: &lsp::TextDocumentPositionParams) -> Option<(&'a analysis::Root, usize, usize)> {
    let (root, file) = analysis.locate(&path_of(&position.text_document.uri))?;
    let offset = LineIndex::new(&root.compilation.sources.get(file).text).offset(position.position);
    Some((root, file, offset))
}
