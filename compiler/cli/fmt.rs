//! `fwc fmt`: the files and exit codes around `fwc::fmt::format`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Formats each file in place, or with `check` reports those that are not
/// formatted. `-` is standard input (formatted to standard output); a
/// directory stands for every `.fw` file under it.
///
/// Exit: 0 all formatted (or rewritten), 1 `--check` found a file to
/// format, 2 a file does not parse or cannot be read or written.
pub fn run(paths: &[PathBuf], check: bool) -> ExitCode {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            if let Err(error) = policy_files(path, &mut files) {
                eprintln!("error: cannot read {}: {error}", path.display());
                return ExitCode::from(2);
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut unformatted = 0;
    let mut failed = false;
    for path in &files {
        let stdin = path.as_os_str() == "-";
        let name = if stdin { "<stdin>".to_string() } else { path.display().to_string() };
        let read = if stdin { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) };
        let source = match read {
            Ok(source) => source,
            Err(error) => {
                eprintln!("error: cannot read {name}: {error}");
                failed = true;
                continue;
            }
        };
        let formatted = match fwc::fmt::format(&source) {
            Ok(formatted) => formatted,
            Err(diagnostics) => {
                let mut sources = fwc::Sources::new();
                sources.add(name.clone(), fwc::source::Origin::Path(path.clone()), source);
                eprint!("{}", fwc::diagnostics::render(&sources, &diagnostics));
                failed = true;
                continue;
            }
        };
        if check {
            if formatted != source {
                // A closed pipe (`| head`) is no error of the files'.
                let _ = std::io::stdout().write_all(fwc::fmt::diff(&name, &source, &formatted).as_bytes());
                unformatted += 1;
            }
        } else if stdin {
            if let Err(error) = std::io::stdout().write_all(formatted.as_bytes()) {
                eprintln!("error: cannot write standard output: {error}");
                failed = true;
            }
        } else if formatted != source {
            if let Err(error) = replace(path, &formatted) {
                eprintln!("error: cannot write {name}: {error}");
                failed = true;
            }
        }
    }
    let _ = std::io::stdout().flush();
    if failed {
        ExitCode::from(2)
    } else if unformatted > 0 {
        eprintln!("{unformatted} file(s) not formatted; `fwc fmt FILE` formats them");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The `.fw` files under `directory`, in name order, skipping hidden
/// directories (`.git`) and `target`.
fn policy_files(directory: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(directory)?.map(|entry| entry.map(|entry| entry.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                policy_files(&path, files)?;
            }
        } else if name.ends_with(".fw") {
            files.push(path);
        }
    }
    Ok(())
}

/// Writes `text` over `path` atomically: a temporary file beside it, with
/// the same permissions, renamed into place.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.fmt.tmp"));
    std::fs::write(&temporary, text)?;
    let permissions = std::fs::metadata(path)?.permissions();
    std::fs::set_permissions(&temporary, permissions)?;
    std::fs::rename(&temporary, path)
}
