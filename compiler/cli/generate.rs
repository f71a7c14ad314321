//! `fwc generate` (hidden): the man pages and shell completions, made from
//! the clap definitions, for packages and installs (dist/build-deb.sh).

use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum What {
    /// Write the man pages into DIR: fwc.1, and fwc-COMMAND.1 for each command
    Man {
        #[arg(value_name = "DIR")]
        directory: PathBuf,
    },
    /// Print the completion script for SHELL, or write it into DIR under its usual name
    Completions {
        shell: clap_complete::Shell,
        #[arg(value_name = "DIR")]
        directory: Option<PathBuf>,
    },
}

pub fn run(what: What, command: clap::Command) -> ExitCode {
    let written = match what {
        What::Man { directory } => man_pages(command, &directory),
        What::Completions { shell, directory: None } => {
            clap_complete::generate(shell, &mut command.clone(), "fwc", &mut std::io::stdout());
            Ok(Vec::new())
        }
        What::Completions { shell, directory: Some(directory) } => std::fs::create_dir_all(&directory)
            .and_then(|()| clap_complete::generate_to(shell, &mut command.clone(), "fwc", &directory))
            .map(|path| vec![path]),
    };
    match written {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: fwc generate: {error}");
            ExitCode::from(2)
        }
    }
}

/// fwc.1 with the list of commands, and a page per visible command, named
/// and headed as `man fwc-build` expects.
fn man_pages(command: clap::Command, directory: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(directory)?;
    // `help` has no page of its own: `man fwc` is the help.
    let command = command.disable_help_subcommand(true);
    let source = format!("fwc {}", command.get_version().unwrap_or_default());
    let mut pages = vec![("fwc".to_string(), command.clone())];
    for subcommand in command.get_subcommands().filter(|subcommand| !subcommand.is_hide_set()) {
        let name = format!("fwc-{}", subcommand.get_name());
        let page = subcommand.clone().name(name.clone()).bin_name(format!("fwc {}", subcommand.get_name()));
        pages.push((name, page));
    }
    let mut written = Vec::new();
    for (name, page) in pages {
        let path = directory.join(format!("{name}.1"));
        let mut text = Vec::new();
        clap_mangen::Man::new(page).source(source.clone()).manual("fwc manual").render(&mut text)?;
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}
