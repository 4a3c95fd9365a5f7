use flow_engine::Registry;

use crate::args::{Args, Command};
use crate::exit::Exit;
use crate::output;

pub fn run(args: Args, registry: &Registry) -> Exit {
    match args.command {
        Command::Check { files, json } => crate::check::check(&files, json, registry),
        Command::Init { dir } => crate::init::init(&dir),
        Command::Completions { shell } => completions(shell),
        Command::Logs {
            file,
            run,
            step,
            env,
        } => crate::history::logs(&file, &run, step, env.as_deref(), registry),
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
        Command::Keys { action } => crate::keys::keys(action, registry),
        Command::Serve {
            files,
            bind,
            env,
            schedule,
            tls_cert,
            tls_key,
        } => {
            let options = flow_server::Options {
                bind,
                env,
                tls: tls_cert.zip(tls_key),
            };
            crate::serve::serve(&files, options, schedule, registry)
        }
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
        } => crate::history::runs(&file, limit, json, env.as_deref(), registry),
        Command::Changes {
            file,
            table,
            since,
            key,
            json,
            env,
        } => {
            let query = crate::changes::Query {
                table: &table,
                since: since.as_deref(),
                key: key.as_deref(),
                json,
            };
            crate::changes::changes(&file, &query, env.as_deref(), registry)
        }
        Command::Listen { file, env } => crate::changes::listen(&file, env.as_deref(), registry),
        Command::Show {
            file,
            run,
            json,
            env,
        } => crate::history::show(&file, &run, json, env.as_deref(), registry),
        Command::Graph {
            file,
            select,
            format,
        } => crate::plan::graph(&file, &select, format, registry),
        Command::Fmt {
            files,
            check,
            stdout,
        } => crate::fmt::fmt(&files, check, stdout),
        Command::Export {
            target:
                crate::args::ExportTarget::Airflow {
                    file,
                    select,
                    out,
                    env,
                    binary,
                    per,
                },
        } => crate::export::airflow(
            &crate::export::AirflowArgs {
                file: &file,
                select: &select,
                out: out.as_deref(),
                env: env.as_deref(),
                binary: binary.as_deref(),
                per,
            },
            registry,
        ),
        Command::Operations => {
            // With the `flow-<tool>` executables of `./plugins/` and PATH.
            let here = std::path::Path::new(".");
            let tools = flow_plugins::executable_tools(here);
            let (registry, broken) = flow_plugins::with_executables(registry, here, &tools);
            output::out(&operations(&registry));
            broken.into_iter().for_each(output::error);
            Exit::Success
        }
    }
}

fn completions(shell: clap_complete::Shell) -> Exit {
    let mut command = <Args as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "flow", &mut script);
    output::out(&String::from_utf8_lossy(&script));
    Exit::Success
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
