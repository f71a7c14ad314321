//! The common shape of diagnostic, written directly: the same bytes that
//! codespan-reporting writes, without its cost.
//!
//! codespan-reporting lays out any label on any line, and writes its text
//! a character at a time through `fmt`: about 70,000 instructions for a
//! finding of three labels. A large policy can have tens of thousands of
//! findings (46,000 for the generated 100,000-rule benchmark policy), and
//! nearly all are this shape: every label on one line, no two labels on a
//! line, and the text before each label's end printable ASCII (one column
//! a byte), with no tab on a line shown. Those are written here, with the
//! layout codespan-reporting gives them under `term::Config::default()`;
//! anything else goes to codespan-reporting (`write` returns false). The
//! tests render diagnostics of every shape both ways and compare the bytes.

use crate::diagnostics::{Diagnostic, Severity};
use crate::source::Sources;
use std::fmt::Write;

/// One labelled line: the label's columns (bytes of the line), its
/// message, and whether it is the primary label.
struct Line<'a> {
    index: usize,
    start: usize,
    end: usize,
    message: &'a str,
    primary: bool,
}

/// The labels of one file, in the order codespan-reporting shows them.
struct File<'a> {
    id: usize,
    /// The byte where the snippet's locus points, and whether a primary
    /// label starts there.
    locus: usize,
    locus_primary: bool,
    lines: Vec<Line<'a>>,
}

/// Appends the diagnostic as codespan-reporting renders it; false, with
/// nothing appended, when its shape is not one handled here.
pub fn write(sources: &Sources, diagnostic: &Diagnostic, out: &mut String) -> bool {
    let mut files: Vec<File> = Vec::new();
    let mut widest = 0;
    for label in &diagnostic.labels {
        let Some(file) = sources.files().get(label.span.file) else { return false };
        let span = label.span.range();
        let starts = sources.line_starts(label.span.file);
        let index = starts.partition_point(|start| *start <= span.start) - 1;
        let line_start = starts[index];
        let line_end = starts.get(index + 1).copied().unwrap_or(file.text.len());
        if span.end > line_end || span.end == line_end && index + 1 < starts.len() {
            return false; // ends on another line
        }
        let text = shown(&file.text[line_start..line_end]);
        let start = span.start - line_start;
        let end = (span.end - line_start).max(start + 1);
        if end > text.len() || !text.as_bytes()[..end].iter().all(|byte| (b' '..=b'~').contains(byte)) || text.contains('\t') {
            return false;
        }
        widest = widest.max(digits(index + 1));
        let line = Line { index, start, end, message: &label.message, primary: label.primary };
        match files.iter_mut().find(|known| known.id == label.span.file) {
            Some(known) => {
                if known.lines.iter().any(|other| other.index == index) {
                    return false; // two labels on a line
                }
                if label.primary && !known.locus_primary || label.primary == known.locus_primary && span.start < known.locus {
                    (known.locus, known.locus_primary) = (span.start, label.primary);
                }
                known.lines.push(line);
            }
            None => files.push(File { id: label.span.file, locus: span.start, locus_primary: label.primary, lines: vec![line] }),
        }
    }
    for file in &mut files {
        file.lines.sort_unstable_by_key(|line| line.index);
        // A single line between two shown ones is shown too.
        let starts = sources.line_starts(file.id);
        let text = &sources.get(file.id).text;
        for pair in file.lines.windows(2) {
            if pair[1].index - pair[0].index == 2 && line_text(text, starts, pair[0].index + 1).contains('\t') {
                return false;
            }
        }
    }

    let severity = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning | Severity::Allow => "warning",
        Severity::Note => "note",
    };
    out.push_str(severity);
    if diagnostic.severity != Severity::Note {
        out.push('[');
        out.push_str(diagnostic.code.name());
        out.push(']');
    }
    out.push_str(": ");
    out.push_str(&diagnostic.message);
    out.push('\n');
    let gutter = |out: &mut String| out.extend(std::iter::repeat_n(' ', widest + 1));
    let count = files.len();
    for (number, file) in files.iter().enumerate() {
        let source = sources.get(file.id);
        let starts = sources.line_starts(file.id);
        let (line, column) = sources.line_column(file.id, file.locus);
        gutter(out);
        let _ = writeln!(out, "┌─ {}:{line}:{column}", source.name);
        gutter(out);
        out.push_str("│\n");
        for (at, labelled) in file.lines.iter().enumerate() {
            let text = line_text(&source.text, starts, labelled.index);
            let _ = writeln!(out, "{:>widest$} │ {text}", labelled.index + 1);
            gutter(out);
            out.push_str("│ ");
            out.extend(std::iter::repeat_n(' ', labelled.start));
            let caret = if labelled.primary { '^' } else { '-' };
            out.extend(std::iter::repeat_n(caret, labelled.end - labelled.start));
            if !labelled.message.is_empty() {
                out.push(' ');
                out.push_str(labelled.message);
            }
            out.push('\n');
            match file.lines.get(at + 1).map(|next| next.index - labelled.index) {
                Some(1) | None => {}
                Some(2) => {
                    let between = labelled.index + 1;
                    let _ = writeln!(out, "{:>widest$} │ {}", between + 1, line_text(&source.text, starts, between));
                }
                Some(_) => {
                    gutter(out);
                    out.push_str("·\n");
                }
            }
        }
        if number + 1 < count || !diagnostic.notes.is_empty() {
            gutter(out);
            out.push_str("│\n");
        }
    }
    for note in &diagnostic.notes {
        for (index, line) in note.lines().enumerate() {
            gutter(out);
            out.push_str(if index == 0 { "= " } else { "  " });
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    true
}

/// A line as shown: without its line ending (and trailing NULs).
fn shown(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r', '\0'])
}

fn line_text<'a>(text: &'a str, starts: &[usize], index: usize) -> &'a str {
    let end = starts.get(index + 1).copied().unwrap_or(text.len());
    shown(&text[starts[index]..end])
}

fn digits(number: usize) -> usize {
    number.checked_ilog10().map_or(1, |log| log as usize + 1)
}

#[cfg(test)]
mod tests {
    use crate::diagnostics::{render_with_codespan, Code, Diagnostic, Severity};
    use crate::source::{Origin, Sources, Span};

    /// A small deterministic generator (xorshift), so that a failure
    /// names the case that shows it.
    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound as u64) as usize
        }
    }

    fn sources() -> Sources {
        let mut sources = Sources::new();
        let policy = [
            "policy in drop",
            "allow in tcp 22 from $admins stateful",
            "",
            "deny in from 198.18.0.0/16",
            "\tallow in udp 53",
            "allow out tcp 443 to fd00::1 # über",
            "use established",
            "allow in tcp 80, 443 stateful\r",
            "x",
            "  chain web {",
            "    allow tcp 8080",
            "  }",
        ];
        let mut text = String::new();
        for _ in 0..12 {
            for line in policy {
                text.push_str(line);
                text.push('\n');
            }
        }
        text.push_str("reject in tcp 25");
        sources.add("policy.fw".to_string(), Origin::CommandLine, text);
        sources.add("<stdlib/baseline.fw>".to_string(), Origin::Stdlib("baseline"), "use loopback\nallow in state established, related\n".to_string());
        sources
    }

    /// Diagnostics of every shape (labels across lines and files, several
    /// on a line, empty, at a line's end, on tabs and non-ASCII text;
    /// notes of several lines) render here exactly as codespan-reporting
    /// renders them, or are left to it.
    #[test]
    fn writes_what_codespan_writes() {
        let sources = sources();
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let (mut written, mut left) = (0, 0);
        for case in 0..20_000 {
            let severity = [Severity::Error, Severity::Warning, Severity::Note, Severity::Allow][random.below(4)];
            let mut diagnostic = Diagnostic::new(Code::ShadowedRule, ["never reached", "a message\nof two lines", ""][random.below(3)]);
            diagnostic.severity = severity;
            for _ in 0..random.below(6) {
                let file = usize::from(random.below(5) == 0);
                let text = &sources.get(file).text;
                let starts = sources.line_starts(file);
                let line = random.below(starts.len());
                let line_end = starts.get(line + 1).copied().unwrap_or(text.len());
                let start = starts[line] + random.below(line_end - starts[line] + 1);
                let end = match random.below(8) {
                    0 => start,
                    1 => (start + random.below(200)).min(text.len()),
                    _ => line_end.saturating_sub(random.below(3)).max(start),
                };
                let message = ["", "already allows them", "wins: denies these packets first"][random.below(3)];
                let span = Span::new(file, start, end);
                diagnostic = if random.below(3) == 0 { diagnostic.primary(span, message) } else { diagnostic.secondary(span, message) };
            }
            for _ in 0..random.below(3) {
                diagnostic = diagnostic.note(["remove it", "first line\nsecond line", ""][random.below(3)]);
            }
            let mut fast = String::new();
            if super::write(&sources, &diagnostic, &mut fast) {
                assert_eq!(fast, render_with_codespan(&sources, &diagnostic), "case {case}: {diagnostic:?}");
                written += 1;
            } else {
                assert!(fast.is_empty(), "case {case}: a diagnostic left to codespan-reporting appends nothing");
                left += 1;
            }
        }
        // Both ways are exercised.
        assert!(written > 5_000 && left > 5_000, "{written} written here, {left} left to codespan-reporting");
    }
}
