//! The editor's open documents, and the file system the compiler sees
//! through them: an open document's unsaved text stands in for its file,
//! everything else is read from the file system underneath.

use crate::source::FileSystem;
use lsp_types::Url;
use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// An open document: its text as the editor has it now.
#[derive(Clone, Debug)]
pub struct Document {
    pub uri: Url,
    pub version: i32,
    pub text: String,
}

/// Open documents by their normalised path. Documents that are not files
/// (`untitled:` URIs) are kept by a path of their own under `/untitled/`,
/// so they compile, but nothing on disk can include them.
#[derive(Default)]
pub struct Documents {
    by_path: BTreeMap<PathBuf, Document>,
}

impl Documents {
    pub fn open(&mut self, document: Document) {
        self.by_path.insert(path_of(&document.uri), document);
    }

    pub fn close(&mut self, uri: &Url) {
        self.by_path.remove(&path_of(uri));
    }

    pub fn get_mut(&mut self, uri: &Url) -> Option<&mut Document> {
        self.by_path.get_mut(&path_of(uri))
    }

    pub fn get(&self, uri: &Url) -> Option<&Document> {
        self.by_path.get(&path_of(uri))
    }

    /// Every open document with its path, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&PathBuf, &Document)> {
        self.by_path.iter()
    }

    pub fn by_path(&self, path: &Path) -> Option<&Document> {
        self.by_path.get(&normalize(path))
    }
}

/// The path the compiler knows a document by.
pub fn path_of(uri: &Url) -> PathBuf {
    match uri.to_file_path() {
        Ok(path) => normalize(&path),
        Err(()) => Path::new("/untitled").join(uri.as_str().replace('/', "%2F")),
    }
}

/// The URI of a file the compiler read: an open document's own URI, or a
/// `file:` URI for the path.
pub fn uri_of(documents: &Documents, path: &Path) -> Option<Url> {
    match documents.by_path(path) {
        Some(document) => Some(document.uri.clone()),
        None => Url::from_file_path(normalize(path)).ok(),
    }
}

/// `a/./b/../c` → `a/c`, without asking the disk: an unsaved document may
/// not exist there.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The open documents over another file system.
pub struct Overlay<'a> {
    pub documents: &'a Documents,
    pub disk: &'a dyn FileSystem,
}

impl FileSystem for Overlay<'_> {
    fn read(&self, path: &Path) -> io::Result<String> {
        match self.documents.by_path(path) {
            Some(document) => Ok(document.text.clone()),
            None => self.disk.read(path),
        }
    }

    /// The disk's matches, and open documents that match but are not saved
    /// yet.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let mut paths: Vec<PathBuf> = self.disk.glob(pattern)?.iter().map(|path| normalize(path)).collect();
        let compiled = glob::Pattern::new(&normalize(Path::new(pattern)).to_string_lossy()).map_err(|error| error.msg.to_string())?;
        for (path, _) in self.documents.iter() {
            if compiled.matches_path(path) && !paths.contains(path) {
                paths.push(path.clone());
            }
        }
        Ok(paths)
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        if self.documents.by_path(path).is_some() {
            return normalize(path);
        }
        normalize(&self.disk.canonical(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapFs(HashMap<PathBuf, String>);

    impl FileSystem for MapFs {
        fn read(&self, path: &Path) -> io::Result<String> {
            self.0.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }

        fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
            let pattern = glob::Pattern::new(pattern).map_err(|error| error.msg.to_string())?;
            Ok(self.0.keys().filter(|path| pattern.matches_path(path)).cloned().collect())
        }
    }

    #[test]
    fn open_documents_stand_in_for_their_files() {
        let disk = MapFs(HashMap::from([
            (PathBuf::from("/p/main.fw"), "on disk".to_string()),
            (PathBuf::from("/p/conf.d/a.fw"), "a on disk".to_string()),
        ]));
        let mut documents = Documents::default();
        for (path, text) in [("/p/conf.d/a.fw", "a edited"), ("/p/conf.d/b.fw", "b unsaved")] {
            let uri = Url::from_file_path(path).unwrap();
            documents.open(Document { uri, version: 1, text: text.to_string() });
        }
        let overlay = Overlay { documents: &documents, disk: &disk };
        assert_eq!(overlay.read(Path::new("/p/main.fw")).unwrap(), "on disk");
        assert_eq!(overlay.read(Path::new("/p/./conf.d/../conf.d/a.fw")).unwrap(), "a edited");
        let mut matches = overlay.glob("/p/conf.d/*.fw").unwrap();
        matches.sort();
        assert_eq!(matches, [PathBuf::from("/p/conf.d/a.fw"), PathBuf::from("/p/conf.d/b.fw")]);
        assert_eq!(overlay.canonical(Path::new("/p/conf.d/../conf.d/b.fw")), PathBuf::from("/p/conf.d/b.fw"));
    }
}
