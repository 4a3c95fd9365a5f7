//! `flow diff`: what the steps with a preview (`pg:target:populate`) would
//! change, found without changing anything.

use std::path::Path;

use flow_engine::review::{self, Hook};
use flow_engine::{Environment, FlowFile, Registry};

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
    let Some((flow, environment)) = open(file, env, step, Hook::Preview, registry) else {
        return Exit::Invalid;
    };
    let steps = review::steps(&flow, Hook::Preview, step);
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

/// The flow and its environment, when it has steps with `hook` (or the one
/// named `step` has it); `None` with the problem printed.
pub fn open(
    file: &Path,
    env: Option<&str>,
    step: Option<&str>,
    hook: Hook,
    registry: &Registry,
) -> Option<(FlowFile, Environment)> {
    let flow = load::flow(file, registry)?;
    if review::steps(&flow, hook, step).is_empty() {
        output::note(&none_to(file, step, hook));
        return None;
    }
    let environment = load::environment(&flow, env)?;
    Some((flow, environment))
}

/// Why there is nothing to do: no step has the hook, or none by that name.
fn none_to(file: &Path, step: Option<&str>, hook: Hook) -> String {
    let hook = match hook {
        Hook::Preview => "a preview",
        Hook::Undo => "an undo",
    };
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
