//! `flow diff`: what the steps with a preview (`pg:target:populate`) would
//! change, found without changing anything.

use std::path::Path;

use flow_engine::Registry;
use flow_engine::review::{self, Hook};

use crate::exit::Exit;
use crate::run::block_on;
use crate::{load, output};

pub fn diff(
    file: &Path,
    env: Option<&str>,
    step: Option<&str>,
    json: bool,
    registry: &Registry,
) -> Exit {
    let Some(flow) = load::flow(file, registry) else {
        return Exit::Invalid;
    };
    let steps = review::steps(&flow, Hook::Preview, step);
    if steps.is_empty() {
        output::note(&none_to(file, step, "preview"));
        return Exit::Invalid;
    }
    let Some(environment) = load::environment(&flow, env) else {
        return Exit::Invalid;
    };
    block_on(async {
        let previews = match review::previews(&flow, &environment, &steps).await {
            Ok(previews) => previews,
            Err(error) => {
                output::error(error);
                return Exit::Failure;
            }
        };
        let mut exit = Exit::Success;
        let mut values = Vec::new();
        for (step, preview) in previews {
            match preview {
                Ok(preview) => {
                    if preview.would_fail {
                        exit = Exit::Failure;
                    }
                    if json {
                        let mut value = preview.json;
                        value["step"] = serde_json::json!(step);
                        values.push(value);
                    } else {
                        output::out(&format!("{step}\n{}", preview.text));
                    }
                }
                Err(error) => {
                    output::report(error.report);
                    exit = Exit::Failure;
                }
            }
        }
        if json {
            output::out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&values).unwrap_or_default()
            ));
        }
        exit
    })
}

/// Why there is nothing to do: no step has the hook, or none by that name.
pub fn none_to(file: &Path, step: Option<&str>, hook: &str) -> String {
    match step {
        Some(name) => {
            format!("no step named `{name}` has {hook} (`pg:target:populate` steps have one)")
        }
        None => format!(
            "`{}` has no step with {hook} (`pg:target:populate` steps have one)",
            file.display()
        ),
    }
}
