use std::path::Path;

use flow_engine::{GraphFormat, Plan, Registry};

use crate::args::{Args, Command, Format, SelectArgs};
use crate::cli_error::CliError;
use crate::exit::Exit;
use crate::{load, output};

pub fn run(args: Args) -> Exit {
    let registry = Registry::installed();
    match args.command {
        Command::Check { files } => check(&files, &registry),
        Command::Plan { file, select, json } => match plan(&file, &select, &registry) {
            Some(plan) if json => {
                output::out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&plan).unwrap_or_default()
                ));
                Exit::Success
            }
            Some(plan) => {
                output::out(&plan.render());
                Exit::Success
            }
            None => Exit::Invalid,
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

fn check(files: &[std::path::PathBuf], registry: &Registry) -> Exit {
    let mut exit = Exit::Success;
    for file in files {
        match load::load(file, registry) {
            Some(pipeline) => output::note(&format!(
                "{}: ok, {} steps",
                file.display(),
                pipeline.steps.len()
            )),
            None => exit = Exit::Invalid,
        }
    }
    exit
}

fn plan(file: &Path, select: &SelectArgs, registry: &Registry) -> Option<Plan> {
    let pipeline = load::load(file, registry)?;
    match select.selection().apply(&pipeline) {
        Ok(selected) => Some(Plan::new(&pipeline, &selected)),
        Err(errors) => {
            for error in errors {
                output::error(error);
            }
            None
        }
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
