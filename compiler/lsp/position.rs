//! Byte offsets (fwc's spans) to LSP positions and back.
//!
//! LSP positions are a 0-based line and a column counted in UTF-16 code
//! units (the protocol's default encoding, the one every client supports).
//! A character outside the Basic Multilingual Plane is one `char`, four
//! bytes and two UTF-16 units; `é` is one `char`, two bytes, one unit.

use lsp_types::{Position, Range};

/// Line starts of one text, for conversions both ways.
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(index, _)| index + 1)).collect();
        LineIndex { text, starts }
    }

    /// The position of a byte offset. An offset inside a character (never
    /// made by fwc) counts as that character's start; past the end, the end.
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|start| *start <= offset) - 1;
        let start = self.starts[line];
        let column: usize = self.text[start..]
            .char_indices()
            .take_while(|(index, _)| start + index < offset)
            .map(|(_, c)| c.len_utf16())
            .sum();
        Position { line: line as u32, character: column as u32 }
    }

    pub fn range(&self, start: usize, end: usize) -> Range {
        Range { start: self.position(start), end: self.position(end) }
    }

    /// The byte offset of a position. A column past the end of its line
    /// means the line's end (before its newline), as the protocol says; a
    /// line past the last means the end of the text.
    pub fn offset(&self, position: Position) -> usize {
        let Some(&start) = self.starts.get(position.line as usize) else { return self.text.len() };
        let end = self.starts.get(position.line as usize + 1).map_or(self.text.len(), |next| next - 1);
        let line = &self.text[start..end];
        let mut units = 0;
        for (index, c) in line.char_indices() {
            if units >= position.character as usize {
                return start + index;
            }
            units += c.len_utf16();
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_utf16_units() {
        // `é` is 2 bytes and 1 unit, `😀` 4 bytes and 2 units.
        let text = "# é😀\nallow in tcp 22\n";
        let index = LineIndex::new(text);
        let allow = text.find("allow").unwrap();
        assert_eq!(index.position(allow), Position { line: 1, character: 0 });
        assert_eq!(index.position(text.find('😀').unwrap()), Position { line: 0, character: 3 });
        assert_eq!(index.position(text.find('\n').unwrap()), Position { line: 0, character: 5 });
        for offset in [0, 1, 2, 4, 8, 9, allow, allow + 6, text.len()] {
            assert_eq!(index.offset(index.position(offset)), offset, "offset {offset}");
        }
        // Past the end of a line: the line's end.
        assert_eq!(index.offset(Position { line: 0, character: 99 }), text.find('\n').unwrap());
        assert_eq!(index.offset(Position { line: 9, character: 0 }), text.len());
        assert_eq!(index.position(text.len()), Position { line: 2, character: 0 });
    }
}
