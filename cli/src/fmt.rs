//! `flow fmt`: flow files in their canonical layout.

use crate::cli_error::CliError;
use crate::exit::Exit;
use crate::{load, output};

pub fn fmt(files: &[std::path::PathBuf], check: bool, stdout: bool) -> Exit {
    let mut exit = Exit::Success;
    for file in files {
        let display = file.display().to_string();
        let Some(source) = load::read(file) else {
            exit = Exit::Invalid;
            continue;
        };
        let formatted = match flow_dsl::format(&source) {
            Ok(formatted) => formatted,
            Err(errors) => {
                output::diagnostics(&display, &source, errors);
                exit = Exit::Invalid;
                continue;
            }
        };
        if stdout {
            output::out(&formatted);
        } else if formatted != source {
            if check {
                output::note(&format!(
                    "{display}: not formatted (run `flow fmt {display}`)"
                ));
                if exit == Exit::Success {
                    exit = Exit::Failure;
                }
            } else if let Err(error) = std::fs::write(file, formatted) {
                output::error(CliError::Write {
                    path: display,
                    reason: error.to_string(),
                });
                exit = Exit::Invalid;
            }
        }
    }
    exit
}
