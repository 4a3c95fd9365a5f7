//! `flow plan` and `flow graph`: what a run would do, without running it.

use std::path::Path;

use flow_engine::{FlowFile, GraphFormat, Plan, Registry};

use crate::args::{Format, SelectArgs};
use crate::exit::Exit;
use crate::run::block_on;
use crate::{load, output};

pub fn plan(
    file: &Path,
    select: &SelectArgs,
    env: Option<&str>,
    json: bool,
    registry: &Registry,
) -> Exit {
    let Some((flow, selected, mut plan)) = load_and_plan(file, select, registry) else {
        return Exit::Invalid;
    };
    // An environment the flow does not have is a mistake, as for `run`; a
    // variable not set only shows in the plan.
    let environment = flow
        .load_env_files(env)
        .and_then(|()| flow.environment(env));
    if let Err(error @ flow_engine::EnvironmentError::Unknown { .. }) = environment {
        output::error(error);
        return Exit::Invalid;
    }
    let mut note = None;
    if let Ok(environment) = &environment {
        block_on(async {
            match flow_engine::predict::predict_from_records(&flow, environment, &selected).await {
                Ok(predictions) => {
                    for step in &mut plan.steps {
                        step.prediction = predictions.get(&step.index).map(ToString::to_string);
                    }
                }
                Err(why) => note = Some(format!("({why})")),
            }
            Exit::Success
        });
    }
    let connections = flow.connections(env);
    if json {
        let value = flow_engine::plan_json(&plan, &connections);
        output::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ));
    } else {
        let mut header = format!("environment `{}`\n", connections.environment);
        for (kind, entries) in [
            ("database", &connections.databases),
            ("storage", &connections.storages),
        ] {
            for (name, location) in entries {
                header.push_str(&format!("  {kind} {name}: {location}\n"));
            }
        }
        output::out(&format!("{header}\n{}", plan.render()));
        if let Some(note) = note {
            output::out(&format!("\n{note}\n"));
        }
    }
    Exit::Success
}

pub fn graph(file: &Path, select: &SelectArgs, format: Format, registry: &Registry) -> Exit {
    let Some((_, _, plan)) = load_and_plan(file, select, registry) else {
        return Exit::Invalid;
    };
    let format = match format {
        Format::Dot => GraphFormat::Dot,
        Format::Mermaid => GraphFormat::Mermaid,
    };
    output::out(&flow_engine::render_graph(&plan, format));
    Exit::Success
}

fn load_and_plan(
    file: &Path,
    select: &SelectArgs,
    registry: &Registry,
) -> Option<(FlowFile, Vec<bool>, Plan)> {
    let flow = load::flow(file, registry)?;
    match select.selection().apply(&flow.pipeline) {
        Ok(selected) => {
            let plan = Plan::with_parts(&flow.pipeline, &selected, &flow.base);
            Some((flow, selected, plan))
        }
        Err(errors) => {
            errors.into_iter().for_each(output::error);
            None
        }
    }
}
