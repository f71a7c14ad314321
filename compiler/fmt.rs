//! `fwc fmt`: one canonical layout for policies. docs/formatting.md
//! describes the layout; this is how it is made.
//!
//! The formatter reads the parse ([`syntax::tree`]) for what the text
//! means and the text between atoms for what the tree leaves out: comments,
//! line breaks, punctuation. It keeps every atom and every comment as it
//! was written, every line break the user chose (line continuations,
//! address sets over several lines, blank lines, collapsed to one), and
//! decides the rest: indentation, spaces, commas in sets, and columns.
//!
//! Two passes. [`Layout`] turns the file into [`Item`]s, one per output
//! line, each code line cut into cells that know their column kind. Then
//! [`render`] lines up runs of like statements into a table: a cell goes in
//! the column of its kind (direction, `on`, protocol, addresses, options,
//! …), and trailing comments line up after the widest line of the run.
//! Everything is computed from the atoms and the line structure, never
//! from the old spacing, so formatting formatted text changes nothing.

use crate::diagnostics::{Code, Diagnostic};
use crate::source::Span;
use crate::syntax::parser;
use crate::syntax::tree::{Clause, Kind, Node, StatementKind};
use std::ops::Range;

/// Spaces per level of nesting: chain and test bodies, set members,
/// continued lines.
const INDENT: usize = 4;

/// Trailing comments stand this many spaces after the widest line of their run.
const COMMENT_GAP: usize = 2;

/// Formats one policy file. Diagnostics (syntax errors: a file that does
/// not parse is refused, never rewritten) point into file 0, the source.
pub fn format(source: &str) -> Result<String, Vec<Diagnostic>> {
    let (file, diagnostics) = parser::parse_file(0, source);
    if file.is_none() {
        return Err(diagnostics);
    }
    let tree = parser::syntax_tree(source).ok_or_else(|| internal_error(0, "the file did not parse a second time"))?;
    let mut layout = Layout { text: source, items: Vec::new(), trailing: None };
    layout.block(&tree.children, 0..source.len(), 0, false).map_err(|offset| {
        internal_error(offset, "unexpected text between two atoms")
    })?;
    let output = render(&layout.items);
    // The safety net: the output must say what the input said. A failure
    // here is a bug in the formatter; the file is left as it was.
    if words(&output) != words(source) {
        return Err(internal_error(0, "the formatted text would differ from the original in its words or comments"));
    }
    Ok(output)
}

/// Whether `source` is already formatted (it parses, and formatting it
/// changes nothing).
pub fn is_formatted(source: &str) -> Result<bool, Vec<Diagnostic>> {
    format(source).map(|formatted| formatted == source)
}

fn internal_error(offset: usize, what: &str) -> Vec<Diagnostic> {
    vec![Diagnostic::new(Code::SyntaxError, format!("fwc fmt cannot format this file: {what}"))
        .primary(Span::new(0, offset, offset), "here")
        .note("this is a bug in fwc fmt; the file was left as it was")]
}

/// The atoms and the comments of a text, in order: what formatting keeps.
/// `None` when the text does not parse.
fn words(text: &str) -> Option<Vec<&str>> {
    let tree = parser::syntax_tree(text)?;
    let mut words = Vec::new();
    let mut position = 0;
    for atom in tree.atoms() {
        for gap in scan_gap(text, position..atom.range.start).ok()? {
            if let Gap::Comment(comment, _) = gap {
                words.push(comment);
            }
        }
        words.push(&text[atom.range.clone()]);
        position = atom.range.end;
    }
    for gap in scan_gap(text, position..text.len()).ok()? {
        if let Gap::Comment(comment, _) = gap {
            words.push(comment);
        }
    }
    Some(words)
}

// ------------------------------------------------------------------ gaps

/// What the text between two atoms holds, besides spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gap<'a> {
    /// `{ } , = - ->`, with its offset.
    Punct(&'static str, usize),
    Newline,
    /// A backslash at the end of a line: the statement goes on.
    Continuation,
    /// A comment without its trailing spaces, and the column of its `#`.
    Comment(&'a str, usize),
}

/// Reads a gap; `Err` holds the offset of text no gap can hold.
fn scan_gap(text: &str, range: Range<usize>) -> Result<Vec<Gap<'_>>, usize> {
    let bytes = text.as_bytes();
    let newline_length = |at: usize| match bytes.get(at) {
        Some(b'\n') => 1,
        Some(b'\r') if bytes.get(at + 1) == Some(&b'\n') => 2,
        Some(b'\r') => 1,
        _ => 0,
    };
    let mut gaps = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let length = newline_length(at);
        if length > 0 {
            gaps.push(Gap::Newline);
            at += length;
            continue;
        }
        match bytes[at] {
            b' ' | b'\t' => at += 1,
            b'#' => {
                let end = (at..range.end).find(|&position| newline_length(position) > 0).unwrap_or(range.end);
                let line_start = text[..at].rfind(['\n', '\r']).map_or(0, |newline| newline + 1);
                gaps.push(Gap::Comment(text[at..end].trim_end(), text[line_start..at].chars().count()));
                at = end;
            }
            b'\\' if newline_length(at + 1) > 0 => {
                gaps.push(Gap::Continuation);
                at += 1 + newline_length(at + 1);
            }
            b'-' if bytes.get(at + 1) == Some(&b'>') => {
                gaps.push(Gap::Punct("->", at));
                at += 2;
            }
            byte => {
                let punct = match byte {
                    b'{' => "{",
                    b'}' => "}",
                    b',' => ",",
                    b'=' => "=",
                    b'-' => "-",
                    _ => return Err(at),
                };
                gaps.push(Gap::Punct(punct, at));
                at += 1;
            }
        }
    }
    Ok(gaps)
}

/// A statement's text as tokens: its atoms and the gaps between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    Atom(&'a str, usize),
    Gap(Gap<'a>),
}

impl<'a> Token<'a> {
    fn offset(&self) -> Option<usize> {
        match self {
            Token::Atom(_, offset) | Token::Gap(Gap::Punct(_, offset)) => Some(*offset),
            _ => None,
        }
    }

    fn text(&self) -> &'a str {
        match self {
            Token::Atom(text, _) | Token::Gap(Gap::Punct(text, _)) => text,
            _ => "",
        }
    }

    fn is_punct(&self, punct: &str) -> bool {
        matches!(self, Token::Gap(Gap::Punct(text, _)) if *text == punct)
    }
}

/// The tokens of `node` over `range`: its range less what trails its last
/// atom or punctuation.
fn tokens<'a>(text: &'a str, node: &Node, range: Range<usize>) -> Result<Vec<Token<'a>>, usize> {
    let mut tokens = Vec::new();
    let mut position = range.start;
    for atom in node.atoms() {
        tokens.extend(scan_gap(text, position..atom.range.start)?.into_iter().map(Token::Gap));
        tokens.push(Token::Atom(&text[atom.range.clone()], atom.range.start));
        position = atom.range.end;
    }
    tokens.extend(scan_gap(text, position..range.end)?.into_iter().map(Token::Gap));
    Ok(tokens)
}

/// Appends a token to a line or cell, with the space the layout puts
/// before it: none at the start, before a comma, around the `-` of a port
/// range and inside `{}`; one otherwise.
fn push_token<'a>(out: &mut String, previous: &mut Option<Token<'a>>, token: Token<'a>) {
    let space = match (*previous, token) {
        (None, _) => false,
        (_, token) if token.is_punct(",") || token.is_punct("-") => false,
        (Some(previous), token) if previous.is_punct("-") || (previous.is_punct("{") && token.is_punct("}")) => false,
        _ => true,
    };
    if space {
        out.push(' ');
    }
    out.push_str(token.text());
    *previous = Some(token);
}

// ------------------------------------------------------------------ layout

/// One line of output.
#[derive(Clone, Debug)]
enum Item {
    Blank,
    /// A comment on a line of its own. One that `follows` continues the
    /// trailing comment of the line above and lines up with it.
    Comment { indent: usize, text: String, follows: bool },
    Code(CodeLine),
}

#[derive(Clone, Debug)]
struct CodeLine {
    indent: usize,
    cells: Vec<Cell>,
    comment: Option<String>,
    /// Lines of one group in a row line up; `None` for lines that never do.
    group: Option<(Group, usize)>,
    /// The column (in characters) of the line's first atom in the source:
    /// a comment on the next line further right continues this line's.
    source_column: usize,
}

#[derive(Clone, Debug)]
struct Cell {
    column: Column,
    text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Statement(StatementKind),
    /// The members of an address set written over several lines.
    SetMembers,
}

/// Which column of a table a cell goes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    /// The statement's first word.
    Head,
    Clause(Clause),
    /// The cell's place in statements whose parts have no kinds.
    Position(usize),
}

struct Layout<'a> {
    text: &'a str,
    items: Vec<Item>,
    /// While the last line has a trailing comment (or continues one): the
    /// source column of its code.
    trailing: Option<usize>,
}

impl<'a> Layout<'a> {
    fn column(&self, offset: usize) -> usize {
        let line_start = self.text[..offset].rfind(['\n', '\r']).map_or(0, |newline| newline + 1);
        self.text[line_start..offset].chars().count()
    }

    fn push_code(&mut self, line: CodeLine) {
        self.trailing = None;
        self.items.push(Item::Code(line));
    }

    fn push_blank(&mut self, first: usize) {
        if self.items.len() > first && !matches!(self.items.last(), Some(Item::Blank)) {
            self.items.push(Item::Blank);
        }
        self.trailing = None;
    }

    /// A comment: trailing when code precedes it on its line, else on a line
    /// of its own.
    fn push_comment(&mut self, text: &str, column: usize, after_code: bool, indent: usize) {
        if after_code {
            if let Some(Item::Code(line)) = self.items.last_mut() {
                line.comment = Some(text.to_string());
                self.trailing = Some(line.source_column);
                return;
            }
        }
        let follows = self.trailing.is_some_and(|code_column| column > code_column);
        if !follows {
            self.trailing = None;
        }
        self.items.push(Item::Comment { indent, text: text.to_string(), follows });
    }

    fn trim_blanks(&mut self, first: usize) {
        while self.items.len() > first && matches!(self.items.last(), Some(Item::Blank)) {
            self.items.pop();
        }
    }

    /// The statements `children` of a file or a block body over `range`,
    /// with the comments and blank lines between them. `after_code`: the
    /// block starts on a line with code (a `{`).
    fn block(&mut self, children: &[Node], range: Range<usize>, depth: usize, after_code: bool) -> Result<(), usize> {
        let first = self.items.len();
        let mut after_code = after_code;
        let mut line_empty = !after_code;
        let mut position = range.start;
        let ends = children.iter().map(|child| child.range.clone()).chain([range.end..range.end]);
        for (index, child_range) in ends.enumerate() {
            for gap in scan_gap(self.text, position..child_range.start)? {
                match gap {
                    Gap::Newline => {
                        if line_empty {
                            self.push_blank(first);
                        }
                        after_code = false;
                        line_empty = true;
                    }
                    Gap::Comment(text, column) => {
                        self.push_comment(text, column, after_code, depth * INDENT);
                        line_empty = false;
                    }
                    // Between statements a continuation is only a space.
                    Gap::Continuation => {}
                    Gap::Punct(_, offset) => return Err(offset),
                }
            }
            position = child_range.end;
            if let Some(child) = children.get(index) {
                position = self.statement(child, depth)?;
                after_code = true;
                line_empty = false;
            }
        }
        self.trim_blanks(first);
        Ok(())
    }

    /// Lays out a statement; returns where it ends. A statement's node may
    /// take in the spaces and comment after it, which are not its own: it
    /// ends after its last atom or punctuation.
    fn statement(&mut self, node: &Node, depth: usize) -> Result<usize, usize> {
        let last_atom = node.atoms().last().map_or(node.range.start, |atom| atom.range.end);
        let end = scan_gap(self.text, last_atom..node.range.end)?
            .into_iter()
            .filter_map(|gap| match gap {
                Gap::Punct(punct, offset) => Some(offset + punct.len()),
                _ => None,
            })
            .last()
            .unwrap_or(last_atom);
        let range = node.range.start..end;
        match node.kind {
            Kind::Statement(StatementKind::Chain | StatementKind::Test) => self.block_statement(node, range, depth)?,
            Kind::Statement(kind) => self.simple_statement(node, range, kind, depth)?,
            _ => return Err(node.range.start),
        }
        Ok(end)
    }

    /// `chain NAME [keep] { … }` and `test "NAME" { … }`: the header line,
    /// the body one level in, `}` on a line of its own.
    fn block_statement(&mut self, node: &Node, range: Range<usize>, depth: usize) -> Result<(), usize> {
        let header: Vec<&Node> = node.children.iter().take_while(|child| child.is_atom()).collect();
        let body = &node.children[header.len()..];
        let last = header.last().ok_or(node.range.start)?;
        let body_start = body.first().map_or(range.end, |child| child.range.start);
        let brace = scan_gap(self.text, last.range.end..body_start)?
            .into_iter()
            .find_map(|gap| match gap {
                Gap::Punct("{", offset) => Some(offset),
                _ => None,
            })
            .ok_or(last.range.end)?;
        let mut text: Vec<&str> = header.iter().map(|atom| &self.text[atom.range.clone()]).collect();
        text.push("{");
        self.push_code(CodeLine {
            indent: depth * INDENT,
            cells: vec![Cell { column: Column::Head, text: text.join(" ") }],
            comment: None,
            group: None,
            source_column: self.column(node.range.start),
        });
        let header_index = self.items.len() - 1;
        self.block(body, brace + 1..range.end - 1, depth + 1, true)?;
        if self.items.len() == header_index + 1 {
            // Nothing inside: `chain NAME {}`.
            if let Some(Item::Code(line)) = self.items.last_mut() {
                line.cells[0].text.push('}');
            }
        } else {
            let source_column = self.column(range.end - 1);
            self.push_code(CodeLine {
                indent: depth * INDENT,
                cells: vec![Cell { column: Column::Head, text: "}".to_string() }],
                comment: None,
                group: None,
                source_column,
            });
        }
        Ok(())
    }

    fn simple_statement(&mut self, node: &Node, range: Range<usize>, kind: StatementKind, depth: usize) -> Result<(), usize> {
        let tokens = tokens(self.text, node, range.clone())?;
        let source_column = self.column(range.start);
        let multiline = tokens.iter().any(|token| matches!(token, Token::Gap(Gap::Newline | Gap::Continuation)));
        if multiline {
            return self.multiline_statement(node, &tokens, depth);
        }
        // Where each cell starts, and its column.
        let children = &node.children;
        let start = |index: usize| children.get(index).map(|child| child.range.start);
        let equals = tokens.iter().find(|token| token.is_punct("=")).and_then(Token::offset);
        let starts: Vec<(usize, Column)> = match kind {
            StatementKind::Let | StatementKind::Param | StatementKind::Service => {
                [start(0), start(1), equals].into_iter().flatten().enumerate().map(|(index, offset)| (offset, position(index))).collect()
            }
            StatementKind::Use => [start(0), start(1), start(2)].into_iter().flatten().enumerate().map(|(index, offset)| (offset, position(index))).collect(),
            StatementKind::KeepChains => [start(0), start(2)].into_iter().flatten().enumerate().map(|(index, offset)| (offset, position(index))).collect(),
            _ => children
                .iter()
                .enumerate()
                .map(|(index, child)| {
                    let column = match child.kind {
                        _ if index == 0 => Column::Head,
                        Kind::Clause(clause) => Column::Clause(clause),
                        _ => Column::Position(index),
                    };
                    (child.range.start, column)
                })
                .collect(),
        };
        let mut cells: Vec<Cell> = Vec::new();
        let mut previous = None;
        for (index, token) in tokens.iter().enumerate() {
            let Some(offset) = token.offset() else { continue };
            // A trailing comma in a set on one line goes.
            if token.is_punct(",") && tokens.get(index + 1).is_some_and(|next| next.is_punct("}")) {
                continue;
            }
            let cell = starts.partition_point(|(start, _)| *start <= offset).max(1) - 1;
            while cells.len() <= cell {
                cells.push(Cell { column: starts[cells.len()].1, text: String::new() });
                previous = None;
            }
            push_token(&mut cells[cell].text, &mut previous, *token);
        }
        cells.retain(|cell| !cell.text.is_empty());
        self.push_code(CodeLine {
            indent: depth * INDENT,
            cells,
            comment: None,
            // `let` and `param` line up with each other.
            group: Some((Group::Statement(if kind == StatementKind::Param { StatementKind::Let } else { kind }), depth)),
            source_column,
        });
        Ok(())
    }

    /// A statement with line continuations or an address set over several
    /// lines: the user's line breaks stay, nothing lines up with it.
    fn multiline_statement(&mut self, node: &Node, tokens: &[Token<'a>], depth: usize) -> Result<(), usize> {
        let sets = address_sets(node);
        let mut indent = depth * INDENT;
        let mut line = String::new();
        let mut previous = None;
        let mut source_column = self.column(node.range.start);
        let mut index = 0;
        while index < tokens.len() {
            let token = tokens[index];
            index += 1;
            match token {
                Token::Gap(Gap::Continuation) => {
                    line.push_str(" \\");
                    self.push_code(single_cell(indent, std::mem::take(&mut line), source_column));
                    indent = (depth + 1) * INDENT;
                    previous = None;
                    if let Some(offset) = tokens[index..].iter().find_map(Token::offset) {
                        source_column = self.column(offset);
                    }
                }
                Token::Gap(Gap::Punct("{", offset)) if sets.iter().any(|set| set.start == offset && self.text[set.clone()].contains(['\n', '\r'])) => {
                    push_token(&mut line, &mut previous, token);
                    self.push_code(single_cell(indent, std::mem::take(&mut line), source_column));
                    let close = index + tokens[index..].iter().position(|token| token.is_punct("}")).ok_or(offset)?;
                    self.set_members(&tokens[index..close], indent + INDENT)?;
                    index = close;
                    // The `}` starts the next line, with what follows the set.
                    previous = None;
                    source_column = tokens[close].offset().map_or(0, |offset| self.column(offset));
                }
                Token::Gap(Gap::Newline | Gap::Comment(..)) => return Err(node.range.start),
                token => {
                    if token.is_punct(",") && tokens.get(index).is_some_and(|next| next.is_punct("}")) {
                        continue;
                    }
                    push_token(&mut line, &mut previous, token);
                }
            }
        }
        self.push_code(single_cell(indent, line, source_column));
        Ok(())
    }

    /// The members of a set over several lines: the user's lines, one level
    /// in, each ending with a comma.
    fn set_members(&mut self, tokens: &[Token<'a>], indent: usize) -> Result<(), usize> {
        let first = self.items.len();
        // Right after `{`, a comment belongs to the `{` line.
        let mut after_code = true;
        let mut line_empty = false;
        let mut members: Vec<&str> = Vec::new();
        let mut source_column = 0;
        let flush = |layout: &mut Layout, members: &mut Vec<&str>, source_column: usize| {
            if !members.is_empty() {
                let text = format!("{},", members.join(", "));
                members.clear();
                layout.push_code(CodeLine {
                    indent,
                    cells: vec![Cell { column: Column::Head, text }],
                    comment: None,
                    group: Some((Group::SetMembers, indent)),
                    source_column,
                });
            }
        };
        for token in tokens {
            match *token {
                Token::Atom(text, offset) => {
                    if members.is_empty() {
                        source_column = self.column(offset);
                    }
                    members.push(text);
                    after_code = false;
                    line_empty = false;
                }
                Token::Gap(Gap::Punct(",", _)) => {}
                Token::Gap(Gap::Newline | Gap::Continuation) => {
                    flush(self, &mut members, source_column);
                    if line_empty {
                        self.push_blank(first);
                    }
                    after_code = false;
                    line_empty = true;
                }
                Token::Gap(Gap::Comment(text, column)) => {
                    let had_members = !members.is_empty();
                    flush(self, &mut members, source_column);
                    self.push_comment(text, column, after_code || had_members, indent);
                    line_empty = false;
                }
                Token::Gap(Gap::Punct(_, offset)) => return Err(offset),
            }
        }
        flush(self, &mut members, source_column);
        self.trim_blanks(first);
        Ok(())
    }
}

fn position(index: usize) -> Column {
    if index == 0 {
        Column::Head
    } else {
        Column::Position(index)
    }
}

fn single_cell(indent: usize, text: String, source_column: usize) -> CodeLine {
    CodeLine { indent, cells: vec![Cell { column: Column::Head, text }], comment: None, group: None, source_column }
}

fn address_sets(node: &Node) -> Vec<Range<usize>> {
    let mut sets = Vec::new();
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        if node.kind == Kind::AddressSet {
            sets.push(node.range.clone());
        }
        stack.extend(&node.children);
    }
    sets
}

// ------------------------------------------------------------------ render

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Lays the lines out: runs of like lines as tables, comments after them.
fn render(items: &[Item]) -> String {
    // Each code line's text, and the column its comment starts at.
    let mut texts: Vec<String> = vec![String::new(); items.len()];
    let mut comment_columns: Vec<usize> = vec![0; items.len()];
    let mut index = 0;
    while index < items.len() {
        let Item::Code(line) = &items[index] else {
            index += 1;
            continue;
        };
        // The run: lines of this group, with comment lines among them.
        let mut run = vec![index];
        let mut end = index + 1;
        if line.group.is_some() {
            while end < items.len() {
                match &items[end] {
                    Item::Code(next) if next.group == line.group => run.push(end),
                    Item::Comment { .. } => {}
                    _ => break,
                }
                end += 1;
            }
        }
        let lines: Vec<&CodeLine> = run.iter().map(|&at| match &items[at] {
            Item::Code(line) => line,
            _ => unreachable!("runs hold code lines"),
        }).collect();
        let rendered = table(&lines);
        let widest = lines
            .iter()
            .zip(&rendered)
            .filter(|(line, _)| line.comment.is_some())
            .map(|(line, text)| line.indent + width(text))
            .max()
            .unwrap_or(0);
        for ((&at, text), line) in run.iter().zip(rendered).zip(&lines) {
            comment_columns[at] = widest.max(line.indent + width(&text)) + COMMENT_GAP;
            texts[at] = text;
        }
        index = end;
    }
    let mut out = String::new();
    let mut comment_column = 0;
    for (index, item) in items.iter().enumerate() {
        match item {
            Item::Blank => {}
            Item::Code(line) => {
                out.push_str(&" ".repeat(line.indent));
                out.push_str(&texts[index]);
                if let Some(comment) = &line.comment {
                    comment_column = comment_columns[index];
                    let used = line.indent + width(&texts[index]);
                    out.push_str(&" ".repeat(comment_column - used));
                    out.push_str(comment);
                }
            }
            Item::Comment { indent, text, follows } => {
                out.push_str(&" ".repeat(if *follows { comment_column } else { *indent }));
                out.push_str(text);
            }
        }
        out.push('\n');
    }
    out
}

/// The lines of a run as a table: each cell in the column of its kind, one
/// space between columns. Columns come in the order the lines use them; a
/// line that uses a kind in another order gets a column of its own for it.
/// As with tab stops, a line's last cell belongs to no column: only cells
/// that something follows make a column wide, so one long last cell does
/// not push the other lines' cells right. An empty column takes the width
/// of its cells and a space, or nothing when it has no width.
fn table(lines: &[&CodeLine]) -> Vec<String> {
    let mut columns: Vec<Column> = Vec::new();
    let mut placements: Vec<Vec<usize>> = Vec::new();
    for line in lines {
        let mut next = 0;
        let mut placement = Vec::new();
        for cell in &line.cells {
            let at = match columns[next..].iter().position(|column| *column == cell.column) {
                Some(found) => next + found,
                None => {
                    columns.insert(next, cell.column);
                    for placed in placements.iter_mut().flatten() {
                        if *placed >= next {
                            *placed += 1;
                        }
                    }
                    next
                }
            };
            placement.push(at);
            next = at + 1;
        }
        placements.push(placement);
    }
    let mut widths = vec![0; columns.len()];
    for (line, placement) in lines.iter().zip(&placements) {
        let followed = line.cells.len().saturating_sub(1);
        for (cell, &at) in line.cells.iter().zip(placement).take(followed) {
            widths[at] = widths[at].max(width(&cell.text));
        }
    }
    lines
        .iter()
        .zip(&placements)
        .map(|(line, placement)| {
            let mut text = String::new();
            let Some(&last) = placement.last() else { return text };
            let mut cells = line.cells.iter().zip(placement).peekable();
            for column in 0..=last {
                let cell = cells.next_if(|(_, &at)| at == column).map(|(cell, _)| cell.text.as_str());
                if cell.is_none() && widths[column] == 0 {
                    continue;
                }
                if !text.is_empty() {
                    text.push(' ');
                }
                let cell = cell.unwrap_or("");
                text.push_str(cell);
                if column < last {
                    text.push_str(&" ".repeat(widths[column] - width(cell)));
                }
            }
            text
        })
        .collect()
}

/// A unified diff from `old` to `new` (`fwc fmt --check`), with `name`
/// in its header lines; empty when they are equal.
pub fn diff(name: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (as it is)"), &format!("{name} (formatted)"))
        .to_string()
}
