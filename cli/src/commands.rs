use flow_engine::Registry;

use crate::args::{Args, Command};
use crate::cli_error::CliError;
use crate::exit::Exit;
use crate::{load, output};

pub fn run(args: Args, registry: &Registry) -> Exit {
    match args.command {
        Command::Check { files, json } => check(&files, json, registry),
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
                    base: flow_engine::base_dir(&file),
                },
                false,
                registry,
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
        } => crate::plan::plan(&file, &select, env.as_deref(), json, registry),
        Command::Diff {
            file,
            step,
            env,
            json,
        } => crate::diff::diff(&file, env.as_deref(), step.as_deref(), json, registry),
        Command::Rollback { file, step, env } => {
            crate::rollback::rollback(&file, env.as_deref(), step.as_deref(), registry)
        }
        Command::Run { file, select, run } => crate::run::run(&file, &select, &run, registry),
        Command::Db { action } => crate::db::db(&action),
        Command::Schedule {
            list: Some(crate::args::ScheduleCommand::List { files, env, json }),
            ..
        } => crate::schedule::list(&files, env.as_deref(), json, registry),
        Command::Schedule {
            list: None,
            files,
            tick_ms,
            env,
        } => crate::schedule::serve(&files, tick_ms, env.as_deref(), registry),
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
            registry,
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
                registry,
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
        } => crate::plan::graph(&file, &select, format, registry),
        Command::Fmt {
            files,
            check,
            stdout,
        } => fmt(&files, check, stdout),
        Command::Operations => {
            output::out(&operations(registry));
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
