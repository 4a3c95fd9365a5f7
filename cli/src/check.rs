//! `flow check`: every flow file parsed, compiled and its input files
//! looked for, with the problems as diagnostics or JSON.

use std::path::Path;

use flow_engine::Registry;

use crate::exit::Exit;
use crate::{load, output};

pub fn check(files: &[std::path::PathBuf], json: bool, registry: &Registry) -> Exit {
    if json {
        return check_json(files, registry);
    }
    let mut exit = Exit::Success;
    for file in files {
        let Some(pipeline) = load::load(file, registry) else {
            exit = Exit::Invalid;
            continue;
        };
        let missing = flow_engine::missing_files(&pipeline, &flow_engine::base_dir(file));
        if !missing.is_empty() {
            let count = missing.len();
            if let Some(source) = load::read(file) {
                output::diagnostics(&file.display().to_string(), &source, missing);
            }
            output::note(&format!(
                "{}: {count} {}",
                file.display(),
                if count == 1 { "problem" } else { "problems" }
            ));
            exit = Exit::Invalid;
            continue;
        }
        let steps = pipeline.steps.len();
        output::note(&format!(
            "{}: ok, {steps} {}",
            file.display(),
            if steps == 1 { "step" } else { "steps" }
        ));
    }
    exit
}

/// `flow check --json`: one JSON object per file, on one line each, with
/// its steps or its problems (code, message, line, column).
fn check_json(files: &[std::path::PathBuf], registry: &Registry) -> Exit {
    let mut exit = Exit::Success;
    for file in files {
        let result = problems(file, registry);
        let value = match result {
            Ok(steps) => serde_json::json!({
                "file": file.display().to_string(), "ok": true, "steps": steps
            }),
            Err(problems) => {
                exit = Exit::Invalid;
                serde_json::json!({
                    "file": file.display().to_string(), "ok": false, "problems": problems
                })
            }
        };
        output::out(&format!("{value}\n"));
    }
    exit
}

/// The problems of a flow file as JSON values (code, message, line, column,
/// help), with the missing files `flow check` looks for; its step ids when
/// there are none.
fn problems(path: &Path, registry: &Registry) -> Result<Vec<String>, Vec<serde_json::Value>> {
    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(error) => {
            return Err(vec![serde_json::json!({
                "code": "flow::cli::read", "message": format!("cannot read `{}`: {error}", path.display())
            })]);
        }
    };
    let parsed = flow_dsl::parse(&source);
    if !parsed.errors.is_empty() {
        return Err(parsed.errors.iter().map(|e| problem(&source, e)).collect());
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pipeline = flow_engine::compile(&parsed.flow, registry, &stem).map_err(|errors| {
        errors
            .iter()
            .map(|e| problem(&source, e))
            .collect::<Vec<_>>()
    })?;
    let missing = flow_engine::missing_files(&pipeline, &flow_engine::base_dir(path));
    if !missing.is_empty() {
        return Err(missing.iter().map(|e| problem(&source, e)).collect());
    }
    Ok(pipeline.steps.iter().map(|s| s.id.to_string()).collect())
}

fn problem(source: &str, error: &dyn miette::Diagnostic) -> serde_json::Value {
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = offset.map_or((None, None), |offset| {
        let before = &source[..offset.min(source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (Some(line), Some(column))
    });
    serde_json::json!({
        "code": error.code().map(|c| c.to_string()),
        "message": error.to_string(),
        "line": line,
        "column": column,
        "help": error.help().map(|h| h.to_string()),
    })
}
