//! Reading the policy's files: includes and stdlib modules spliced in place.

use super::Context;
use crate::diagnostics::{Code, Diagnostic};
use crate::source::{FileSystem, Origin, Sources, Span};
use crate::stdlib;
use crate::syntax::{ast, parser};
use std::path::{Path, PathBuf};

/// A statement with its context. `Include` and `Use` never appear: they are
/// replaced by what they bring in.
#[derive(Clone, Debug)]
pub enum Item {
    Statement(ast::Statement, Context),
    /// A chain, its body's includes already spliced in.
    Chain(ast::ChainDecl, Vec<(ast::Rule, Context)>),
}

struct Loader<'a> {
    sources: &'a mut Sources,
    fs: &'a dyn FileSystem,
    diagnostics: &'a mut Vec<Diagnostic>,
    /// Canonical paths of the files being included, for cycle detection.
    stack: Vec<PathBuf>,
    modules: Vec<&'static str>,
}

pub fn load(
    sources: &mut Sources,
    fs: &dyn FileSystem,
    root: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> std::io::Result<Vec<Item>> {
    let text = fs.read(root)?;
    let mut loader = Loader { sources, fs, diagnostics, stack: Vec::new(), modules: Vec::new() };
    let mut items = Vec::new();
    loader.stack.push(fs.canonical(root));
    let file = loader.sources.add(root.display().to_string(), Origin::Path(root.to_path_buf()), text);
    loader.file(file, &Context::default(), &mut items);
    loader.test_file(root, &mut items);
    Ok(items)
}

impl Loader<'_> {
    /// `web.test.fw` next to `web.fw` holds more tests for it, and only tests.
    fn test_file(&mut self, root: &Path, items: &mut Vec<Item>) {
        let (Some(stem), Some(parent)) = (root.file_stem(), root.parent()) else { return };
        if root.to_string_lossy().ends_with(".test.fw") {
            return;
        }
        let path = parent.join(format!("{}.test.fw", stem.to_string_lossy()));
        let Ok(text) = self.fs.read(&path) else { return };
        let file = self.sources.add(path.display().to_string(), Origin::Path(path.clone()), text);
        let Some(parsed) = self.parse(file) else { return };
        for statement in parsed.statements {
            match statement {
                ast::Statement::Test(test) => items.push(Item::Statement(ast::Statement::Test(test), Context::default())),
                other => self.diagnostics.push(
                    Diagnostic::new(Code::MisplacedClause, "a `.test.fw` file holds only `test` blocks")
                        .primary(statement_span(&other), "not a test")
                        .note("move it to the policy; tests see the whole compiled policy"),
                ),
            }
        }
    }

    fn parse(&mut self, file: usize) -> Option<ast::File> {
        let (parsed, diagnostics) = parser::parse_file(file, &self.sources.get(file).text);
        self.diagnostics.extend(diagnostics);
        parsed
    }

    fn file(&mut self, file: usize, context: &Context, items: &mut Vec<Item>) {
        let Some(parsed) = self.parse(file) else { return };
        let directory = self.directory_of(file);
        for statement in parsed.statements {
            match statement {
                ast::Statement::Include(pattern) => {
                    items.extend(self.include(&pattern, &directory, context))
                }
                ast::Statement::Use(module) => self.use_module(&module, context, items),
                ast::Statement::Chain(mut chain) => {
                    let mut body = Vec::new();
                    for statement in std::mem::take(&mut chain.body) {
                        self.chain_statement(statement, &directory, context, &mut body);
                    }
                    items.push(Item::Chain(chain, body));
                }
                other => items.push(Item::Statement(other, context.clone())),
            }
        }
    }

    /// A statement inside a chain body: a rule, or an include of rules.
    fn chain_statement(
        &mut self,
        statement: ast::Statement,
        directory: &Path,
        context: &Context,
        body: &mut Vec<(ast::Rule, Context)>,
    ) {
        match statement {
            ast::Statement::Rule(rule) => body.push((rule, context.clone())),
            ast::Statement::Include(pattern) => {
                for item in self.include(&pattern, directory, context) {
                    let span = match item {
                        Item::Statement(ast::Statement::Rule(rule), context) => {
                            body.push((rule, context));
                            continue;
                        }
                        Item::Statement(statement, _) => statement_span(&statement),
                        Item::Chain(chain, _) => chain.span,
                    };
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::MisplacedClause,
                            "a file included into a chain may only hold rules",
                        )
                        .primary(span, "not a rule")
                        .secondary(pattern.span, "included into a chain here")
                        .note("move declarations to a file included at the top level"),
                    );
                }
            }
            other => unreachable!("the grammar allows only rules and includes in chains: {other:?}"),
        }
    }

    fn directory_of(&self, file: usize) -> PathBuf {
        match &self.sources.get(file).origin {
            Origin::Path(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            _ => PathBuf::new(),
        }
    }

    /// The items of the files an `include` names, in name order.
    fn include(&mut self, pattern: &ast::Spanned<String>, directory: &Path, context: &Context) -> Vec<Item> {
        let mut items = Vec::new();
        let joined = if Path::new(&pattern.value).is_absolute() {
            PathBuf::from(&pattern.value)
        } else {
            directory.join(&pattern.value)
        };
        let is_glob = pattern.value.contains(['*', '?', '[']);
        let mut paths = if is_glob {
            match self.fs.glob(&joined.to_string_lossy()) {
                Ok(paths) => paths,
                Err(error) => {
                    self.diagnostics.push(
                        Diagnostic::new(Code::IncludeNotFound, format!("`{}` is not a valid pattern", pattern.value))
                            .primary(pattern.span, error),
                    );
                    return items;
                }
            }
        } else {
            vec![joined]
        };
        // Sorted bytewise, so drop-ins apply in name order on every machine.
        paths.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
        let mut inner = context.clone();
        inner.via.push(pattern.span);
        for path in paths {
            let canonical = self.fs.canonical(&path);
            if self.stack.contains(&canonical) {
                self.diagnostics.push(
                    Diagnostic::new(Code::IncludeCycle, format!("`{}` includes itself", path.display()))
                        .primary(pattern.span, "this include closes the cycle")
                        .note("a file may be included once along any chain of includes; remove one of them"),
                );
                continue;
            }
            let text = match self.fs.read(&path) {
                Ok(text) => text,
                Err(error) => {
                    let message = if error.kind() == std::io::ErrorKind::NotFound {
                        format!("`{}` does not exist", path.display())
                    } else {
                        format!("`{}` cannot be read: {error}", path.display())
                    };
                    self.diagnostics.push(
                        Diagnostic::new(Code::IncludeNotFound, message)
                            .primary(pattern.span, "included here")
                            .note("paths are relative to the including file; a wildcard that matches nothing is fine"),
                    );
                    continue;
                }
            };
            let file = self.sources.add(path.display().to_string(), Origin::Path(path.clone()), text);
            self.stack.push(canonical);
            self.file(file, &inner, &mut items);
            self.stack.pop();
        }
        items
    }

    fn use_module(&mut self, module: &ast::UseModule, context: &Context, items: &mut Vec<Item>) {
        let Some((file_name, text)) = stdlib::module(&module.module.value) else {
            let known: Vec<&str> = stdlib::module_names().collect();
            self.diagnostics.push(
                Diagnostic::new(Code::UnknownModule, format!("there is no stdlib module `{}`", module.module.value))
                    .primary(module.module.span, "unknown module")
                    .maybe_note(crate::diagnostics::suggestion(&module.module.value, known.iter().copied()))
                    .note(format!("the modules are: {}", known.join(", "))),
            );
            return;
        };
        let name = stdlib::MODULES
            .iter()
            .find(|(name, _, _)| *name == module.module.value)
            .map(|(name, _, _)| *name)
            .expect("found above");
        if self.modules.contains(&name) {
            return; // a module used inside itself; the stdlib has none
        }
        let file = self.sources.add(format!("<stdlib/{file_name}>"), Origin::Stdlib(file_name), text.to_string());
        let Some(parsed) = self.parse(file) else { return };
        let parts: Vec<&ast::UseModule> = parsed
            .statements
            .iter()
            .filter_map(|statement| match statement {
                ast::Statement::Use(part) => Some(part),
                _ => None,
            })
            .collect();
        for except in &module.except {
            if !parts.iter().any(|part| part.module.value == except.value) {
                let names: Vec<&str> = parts.iter().map(|part| part.module.value.as_str()).collect();
                let note = if names.is_empty() {
                    format!("`{}` has no parts", module.module.value)
                } else {
                    format!("the parts of `{}` are: {}", module.module.value, names.join(", "))
                };
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::UnknownPart,
                        format!("`{}` has no part `{}`", module.module.value, except.value),
                    )
                    .primary(except.span, "unknown part")
                    .maybe_note(crate::diagnostics::suggestion(&except.value, names.iter().copied()))
                    .note(note),
                );
            }
        }
        let mut inner = context.clone();
        inner.via.push(module.span);
        inner.stdlib = true;
        self.modules.push(name);
        for statement in parsed.statements {
            match statement {
                ast::Statement::Use(part) => {
                    if !module.except.iter().any(|except| except.value == part.module.value) {
                        self.use_module(&part, &inner, items);
                    }
                }
                ast::Statement::Chain(chain) => {
                    let body = chain
                        .body
                        .iter()
                        .filter_map(|statement| match statement {
                            ast::Statement::Rule(rule) => Some((rule.clone(), inner.clone())),
                            _ => None,
                        })
                        .collect();
                    items.push(Item::Chain(chain, body));
                }
                other => items.push(Item::Statement(other, inner.clone())),
            }
        }
        self.modules.pop();
    }
}

pub fn statement_span(statement: &ast::Statement) -> Span {
    match statement {
        ast::Statement::Rule(rule) => rule.span,
        ast::Statement::Policy(policy) => policy.span,
        ast::Statement::Let(decl) | ast::Statement::Param(decl) => decl.span,
        ast::Statement::Service(service) => service.span,
        ast::Statement::Chain(chain) => chain.span,
        ast::Statement::KeepChains(patterns) => patterns[0].span,
        ast::Statement::Include(pattern) => pattern.span,
        ast::Statement::Use(module) => module.span,
        ast::Statement::Ignore(ignore) => ignore.span,
        ast::Statement::Test(test) => test.span,
    }
}
