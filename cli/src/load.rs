use std::path::Path;

use crate::cli_error::CliError;
use crate::output;
use flow_engine::{Pipeline, Registry};

/// Reads, parses and compiles a flow, printing every diagnostic on the way.
/// `None` when anything was wrong.
pub fn load(path: &Path, registry: &Registry) -> Option<Pipeline> {
    let display = path.display().to_string();
    let source = read(path)?;
    let parsed = flow_dsl::parse(&source);
    if !parsed.errors.is_empty() {
        let count = parsed.errors.len();
        output::diagnostics(&display, &source, parsed.errors);
        summary(&display, count);
        return None;
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match flow_engine::compile(&parsed.flow, registry, &stem) {
        Ok(pipeline) => Some(pipeline),
        Err(errors) => {
            let count = errors.len();
            output::diagnostics(&display, &source, errors);
            summary(&display, count);
            None
        }
    }
}

pub fn read(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(source) => Some(source),
        Err(error) => {
            output::error(CliError::Read {
                path: path.display().to_string(),
                reason: error.to_string(),
            });
            None
        }
    }
}

fn summary(path: &str, count: usize) {
    let problems = if count == 1 { "problem" } else { "problems" };
    output::note(&format!("{path}: {count} {problems}"));
}
