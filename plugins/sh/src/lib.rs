//! `sh:run`: a command, for what no plugin covers. It declares the files it
//! reads and writes so that it takes its place in the DAG.
//!
//! A command's processes never outlive its step or flow: see [`supervisor`].

pub mod supervisor;

use std::process::Stdio;

use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
    write_atomically,
};

pub struct Run;

static RUN: OperationSpec = OperationSpec {
    tool: "sh",
    target: Target::None,
    operation: "run",
    summary: "run a command; its output goes to the step's log",
    params: &[
        ParamSpec::required("command", ParamType::String, "the program to run"),
        ParamSpec::optional("args", ParamType::Strings, "its arguments"),
        ParamSpec::optional(
            "dir",
            ParamType::Path,
            "the working directory (default: the flow's)",
        ),
        ParamSpec::optional(
            "reads",
            ParamType::Strings,
            "file globs it reads; without it the step runs every time, since flow cannot tell what changed",
        ),
        ParamSpec::optional("writes", ParamType::Strings, "file globs it writes"),
    ],
};

/// The command to run: its program, arguments and folder (the flow's by
/// default).
struct Settings {
    command: String,
    args: Vec<String>,
    dir: String,
}

impl Operation for Run {
    fn spec(&self) -> &'static OperationSpec {
        &RUN
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        if step
            .params
            .str("command")
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(vec![Problem {
                param: Some("command"),
                message: "the command is empty".into(),
                help: None,
            }]);
        }
        let mut prepared = Prepared::default();
        if !step.params.contains("reads") {
            prepared = prepared.always_runs(
                "its command's reads are not declared (`reads = [...]`, or `reads = []` for none)",
            );
        }
        for glob in step.params.list("reads") {
            prepared = prepared.reads(Resource::file(glob));
        }
        for glob in step.params.list("writes") {
            prepared = prepared.writes(Resource::file(glob));
        }
        let params = step.params;
        Ok(prepared.settings(Settings {
            command: params.str("command").unwrap_or_default().to_owned(),
            args: params.list("args").into_iter().map(str::to_owned).collect(),
            dir: params.str("dir").unwrap_or(".").to_owned(),
        }))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let settings: &Settings = context.settings()?;
            let program = settings.command.as_str();
            let args: Vec<&str> = settings.args.iter().map(String::as_str).collect();
            let dir = context.path(&settings.dir);
            let child =
                supervisor::command(program, &args)
                    .current_dir(&dir)
                    .envs(context.vars.iter().map(|(name, value)| {
                        (format!("FLOW_{}", name.to_ascii_uppercase()), value)
                    }))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| cannot_run(program, &dir, &e.to_string()))?;
            // Cancelling the step drops this future, and with it the group.
            let mut group = supervisor::Group::new(child.id());
            let output = child
                .wait_with_output()
                .await
                .map_err(|e| cannot_run(program, &dir, &e.to_string()))?;
            group.disarm();
            let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
            log.push_str(&String::from_utf8_lossy(&output.stderr));
            let log_file = context.log_path();
            write_atomically(&log_file, log.as_bytes()).await?;
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if output.status.success() {
                Ok(Outcome {
                    bytes: log.len() as u64,
                    note: tail.last().map(|line| (*line).to_owned()),
                    ..Outcome::default()
                })
            } else if let Some(error) = supervisor::spawn_failure(&output) {
                Err(cannot_run(program, &dir, &error))
            } else {
                let status = output
                    .status
                    .code()
                    .map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"));
                Err(StepError::coded(
                    "flow::sh::run",
                    format!("`{program}` exited with {status}"),
                    Some(format!(
                        "its output ends with:\n{}\n(the whole output is in {})",
                        tail.join("\n"),
                        log_file.display()
                    )),
                ))
            }
        })
    }
}

fn cannot_run(program: &str, dir: &std::path::Path, error: &str) -> StepError {
    StepError::coded(
        "flow::sh::run",
        format!("cannot run `{program}` in `{}`: {error}", dir.display()),
        Some("is it installed and on PATH?".into()),
    )
}

inventory::submit!(Registration(&Run));
