//! `flow check`: every flow file parsed, compiled and its input files
//! looked for, with the problems as diagnostics or JSON.

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
        let result = load::problems(file, registry);
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
