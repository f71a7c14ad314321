//! Source files and byte spans.
//!
//! Every piece of text fwc reads — a user's policy, an included drop-in, a
//! stdlib module — gets a [`FileId`] here, so a diagnostic can point into any
//! of them, stdlib included.

use std::io;
use std::path::{Path, PathBuf};

/// Index of a file in [`Sources`].
pub type FileId = usize;

/// A byte range in one file. Invariant: `start <= end <= text.len()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start: start as u32, end: end as u32 }
    }

    /// The smallest span that covers both (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where a file came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk, named as the user gave it (relative paths stay relative).
    Path(PathBuf),
    /// A stdlib module compiled into the binary, shown as `<stdlib/NAME.fw>`.
    Stdlib(&'static str),
    /// Text that came from the command line (`--set NAME=VALUE`).
    CommandLine,
}

#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub origin: Origin,
    pub text: String,
    /// Where each line begins, computed on the first `line_column`.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

/// All files of one compilation.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    pub fn new() -> Sources {
        Sources::default()
    }

    pub fn add(&mut self, name: String, origin: Origin, text: String) -> FileId {
        self.files.push(SourceFile { name, origin, text, line_starts: std::sync::OnceLock::new() });
        self.files.len() - 1
    }

    pub fn get(&self, file: FileId) -> &SourceFile {
        &self.files[file]
    }

    pub fn text(&self, span: Span) -> &str {
        &self.files[span.file].text[span.range()]
    }

    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, file: FileId, offset: usize) -> (usize, usize) {
        let text = &self.files[file].text;
        let offset = offset.min(text.len());
        let starts = self.line_starts(file);
        let line = starts.partition_point(|start| *start <= offset);
        (line, text[starts[line - 1]..offset].chars().count() + 1)
    }

    /// Where each line of the file begins, found once: a large policy with
    /// many findings asks for lines thousands of times.
    pub fn line_starts(&self, file: FileId) -> &[usize] {
        let file = &self.files[file];
        file.line_starts.get_or_init(|| std::iter::once(0).chain(file.text.match_indices('\n').map(|(index, _)| index + 1)).collect())
    }
}

/// How the compiler reaches files for `include`. The compiler itself never
/// touches the disk: the CLI passes [`OsFileSystem`], tests may pass a map.
pub trait FileSystem {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Paths matching a glob pattern, in any order (the caller sorts).
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;
    /// Canonical form of a path, used to detect include cycles.
    fn canonical(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// The real filesystem.
pub struct OsFileSystem;

impl FileSystem for OsFileSystem {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let paths = glob::glob(pattern).map_err(|error| error.msg.to_string())?;
        Ok(paths.filter_map(Result::ok).filter(|path| path.is_file()).collect())
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// A file system of one file: a policy that includes nothing, such as one
/// `fwc import` wrote.
pub struct OneFile {
    pub path: PathBuf,
    pub text: String,
}

impl FileSystem for OneFile {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path == self.path {
            Ok(self.text.clone())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, "this policy includes nothing"))
        }
    }

    fn glob(&self, _pattern: &str) -> Result<Vec<PathBuf>, String> {
        Ok(Vec::new())
    }
}
