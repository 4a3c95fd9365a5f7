use std::collections::BTreeMap;
use std::path::Path;

use flow_engine::{GraphFormat, Plan, Registry};

use crate::args::{Args, Command, Format, SelectArgs};
use crate::cli_error::CliError;
use crate::exit::Exit;
use crate::{load, output};

pub fn run(args: Args) -> Exit {
    let registry = Registry::installed();
    match args.command {
        Command::Check { files, json } => check(&files, json, &registry),
        Command::Init { dir } => crate::init::init(&dir),
        Command::Completions { shell } => {
            let mut command = <Args as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "flow", &mut script);
            output::out(&String::from_utf8_lossy(&script));
            Exit::Success
        }
        Command::Logs {
            file,
            run,
            step,
            env,
        } => match crate::history::parse_run(&run) {
            Ok(run) => crate::history::history(
                &file,
                env.as_deref(),
                &crate::history::Query::Logs {
                    run,
                    step,
                    base: crate::run::base_dir(&file),
                },
                false,
                &registry,
            ),
            Err(error) => {
                output::error(error);
                Exit::Invalid
            }
        },
        Command::Plan {
            file,
            select,
            env,
            json,
        } => match load_and_plan(&file, &select, &registry) {
            Some((pipeline, selected, mut plan)) => {
                let base = crate::run::base_dir(&file);
                // An environment the flow does not have is a mistake, as for
                // `run`; a variable not set only shows in the plan.
                if let Err(error @ flow_engine::EnvironmentError::Unknown { .. }) =
                    crate::run::resolve_environment(&pipeline, &base, env.as_deref())
                {
                    output::error(error);
                    return Exit::Invalid;
                }
                let note =
                    crate::history::predict(&pipeline, &selected, &mut plan, &base, env.as_deref());
                let connections = connections(&pipeline, &file, env.as_deref());
                if json {
                    let mut value = serde_json::to_value(&plan).unwrap_or_default();
                    value["environment"] = serde_json::json!(connections.0);
                    value["databases"] = serde_json::json!(connections.1);
                    value["storages"] = serde_json::json!(connections.2);
                    output::out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&value).unwrap_or_default()
                    ));
                } else {
                    let mut header = format!("environment `{}`\n", connections.0);
                    for (kind, entries) in
                        [("database", &connections.1), ("storage", &connections.2)]
                    {
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
            None => Exit::Invalid,
        },
        Command::Diff {
            file,
            step,
            env,
            json,
        } => crate::populate::command(
            &file,
            env.as_deref(),
            step.as_deref(),
            crate::populate::Action::Diff { json },
            &registry,
        ),
        Command::Rollback { file, step, env } => crate::populate::command(
            &file,
            env.as_deref(),
            step.as_deref(),
            crate::populate::Action::Rollback,
            &registry,
        ),
        Command::Run { file, select, run } => crate::run::run(&file, &select, &run, &registry),
        Command::Db { action } => crate::db::db(&action),
        Command::Schedule {
            list: Some(crate::args::ScheduleCommand::List { files, env, json }),
            ..
        } => crate::schedule::list(&files, env.as_deref(), json, &registry),
        Command::Schedule {
            list: None,
            files,
            tick_ms,
            env,
        } => crate::schedule::serve(&files, tick_ms, env.as_deref(), &registry),
        Command::Runs {
            file,
            limit,
            json,
            env,
        } => crate::history::history(
            &file,
            env.as_deref(),
            &crate::history::Query::Runs { limit },
            json,
            &registry,
        ),
        Command::Show {
            file,
            run,
            json,
            env,
        } => match crate::history::parse_run(&run) {
            Ok(run) => crate::history::history(
                &file,
                env.as_deref(),
                &crate::history::Query::Show { run },
                json,
                &registry,
            ),
            Err(error) => {
                output::error(error);
                Exit::Invalid
            }
        },
        Command::Graph {
            file,
            select,
            format,
        } => match plan(&file, &select, &registry) {
            Some(plan) => {
                let format = match format {
                    Format::Dot => GraphFormat::Dot,
                    Format::Mermaid => GraphFormat::Mermaid,
                };
                output::out(&flow_engine::render_graph(&plan, format));
                Exit::Success
            }
            None => Exit::Invalid,
        },
        Command::Fmt {
            files,
            check,
            stdout,
        } => fmt(&files, check, stdout),
        Command::Operations => {
            output::out(&operations(&registry));
            Exit::Success
        }
    }
}

fn check(files: &[std::path::PathBuf], json: bool, registry: &Registry) -> Exit {
    if json {
        return check_json(files, registry);
    }
    let mut exit = Exit::Success;
    for file in files {
        let Some(pipeline) = load::load(file, registry) else {
            exit = Exit::Invalid;
            continue;
        };
        let missing = flow_engine::missing_files(&pipeline, &crate::run::base_dir(file));
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

fn plan(file: &Path, select: &SelectArgs, registry: &Registry) -> Option<Plan> {
    load_and_plan(file, select, registry).map(|(_, _, plan)| plan)
}

fn load_and_plan(
    file: &Path,
    select: &SelectArgs,
    registry: &Registry,
) -> Option<(flow_engine::Pipeline, Vec<bool>, Plan)> {
    let pipeline = load::load(file, registry)?;
    match select.selection().apply(&pipeline) {
        Ok(selected) => {
            let mut plan = Plan::new(&pipeline, &selected);
            let base = crate::run::base_dir(file);
            for step in &mut plan.steps {
                let node = &pipeline.steps[step.index];
                step.parts = node.operation.parts(&node.params, &base);
            }
            Some((pipeline, selected, plan))
        }
        Err(errors) => {
            for error in errors {
                output::error(error);
            }
            None
        }
    }
}

type Connections = (String, BTreeMap<String, String>, BTreeMap<String, String>);

/// The environment and its connections, passwords hidden; a variable that is
/// not set shows as such instead of failing the plan.
fn connections(pipeline: &flow_engine::Pipeline, file: &Path, env: Option<&str>) -> Connections {
    let base = crate::run::base_dir(file);
    let name = flow_engine::environment_name(env);
    match crate::run::resolve_environment(pipeline, &base, env) {
        Ok(environment) => (
            environment.name,
            environment
                .databases
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            environment
                .storages
                .iter()
                .map(|(k, v)| (k.clone(), flow_db::redact(v)))
                .collect(),
        ),
        Err(error) => (
            name,
            BTreeMap::from([("error".to_owned(), error.to_string())]),
            BTreeMap::new(),
        ),
    }
}

fn fmt(files: &[std::path::PathBuf], check: bool, stdout: bool) -> Exit {
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

fn operations(registry: &Registry) -> String {
    let mut out = String::new();
    for op in registry.operations() {
        let spec = op.spec();
        out.push_str(&format!("{}\n    {}\n", spec.pattern(), spec.summary));
        for param in spec.params {
            let required = if param.required { " (required)" } else { "" };
            out.push_str(&format!(
                "    {:<16}{}{required}: {}\n",
                param.name,
                param.ty.describe(),
                param.doc
            ));
        }
        out.push('\n');
    }
    out
}
