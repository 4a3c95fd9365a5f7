//! `flow run`: resolve the environment, bring up the databases, execute,
//! record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flow_engine::executor::{self, Event, Memory, Options, Shared, Status, StepResult};
use flow_engine::{Environment, Pipeline, Records, Registry, StepEnd};
use tokio_util::sync::CancellationToken;

use crate::args::{RunArgs, SelectArgs};
use crate::cli_error::CliError;
use crate::display::Display;
use crate::exit::Exit;
use crate::session::{self, Session};
use crate::{load, output};

pub fn run(file: &Path, select: &SelectArgs, args: &RunArgs, registry: &Registry) -> Exit {
    let Some(pipeline) = load::load(file, registry) else {
        return Exit::Invalid;
    };
    let selected = match select.selection().apply(&pipeline) {
        Ok(selected) => selected,
        Err(errors) => {
            errors.into_iter().for_each(output::error);
            return Exit::Invalid;
        }
    };
    let base = base_dir(file);
    let environment = match resolve_environment(&pipeline, &base, args.env.as_deref()) {
        Ok(environment) => environment,
        Err(error) => {
            output::error(error);
            return Exit::Invalid;
        }
    };
    let selection = describe_selection(select, args);
    block_on(async {
        let cancel = CancellationToken::new();
        let interrupted =
            cancel_on_signal(cancel.clone(), "interrupted: cancelling the running steps");
        let (exit, _) = execute(
            Arc::new(pipeline),
            selected,
            &environment,
            &base,
            file,
            &selection,
            args,
            &cancel,
        )
        .await;
        if interrupted.load(Ordering::SeqCst) {
            Exit::Interrupted
        } else {
            exit
        }
    })
}

pub fn block_on(work: impl Future<Output = Exit>) -> Exit {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(error) => {
            output::note(&format!("cannot start the runtime: {error}"));
            Exit::Failure
        }
    }
}

/// The directory a flow's relative paths start from: the flow file's.
pub fn base_dir(file: &Path) -> PathBuf {
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf())
}

pub fn resolve_environment(
    pipeline: &Pipeline,
    base: &Path,
    flag: Option<&str>,
) -> Result<Environment, flow_engine::EnvironmentError> {
    let name = flow_engine::environment_name(flag);
    flow_engine::load_env_files(base, &name)?;
    Environment::resolve(pipeline, &name)
}

fn describe_selection(select: &SelectArgs, args: &RunArgs) -> String {
    let mut parts = Vec::new();
    for (flag, values) in [
        ("--group", &select.groups),
        ("--step", &select.steps),
        ("--from", &select.from),
        ("--until", &select.until),
        ("--exclude", &select.exclude),
    ] {
        parts.extend(values.iter().map(|v| format!("{flag} {v}")));
    }
    if args.resume {
        parts.push("--resume".into());
    }
    if args.force {
        parts.push("--force".into());
    }
    parts.extend(
        args.vars
            .iter()
            .map(|(name, value)| format!("--var {name}={value}")),
    );
    parts.join(" ")
}

/// Records writes happen off the executor's path, in order, through this.
enum Record {
    Started(String),
    Finished(String, StepEnd),
}

/// Runs the selected steps of a flow and records the run; returns how it
/// ended and the run's id, once there is one. `cancel` stops it cleanly.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    pipeline: Arc<Pipeline>,
    mut selected: Vec<bool>,
    environment: &Environment,
    base: &Path,
    file: &Path,
    selection: &str,
    args: &RunArgs,
    cancel: &CancellationToken,
) -> (Exit, Option<i64>) {
    let session = match Session::open(
        environment,
        base,
        &session::databases_needed(&pipeline, &selected),
        args.db_connections,
        &args.vars,
    )
    .await
    {
        Ok(session) => session,
        Err(error) => {
            output::error(error);
            return (Exit::Failure, None);
        }
    };
    let mut run_id = None;
    let exit = with_session(
        pipeline,
        &mut selected,
        environment,
        base,
        file,
        selection,
        args,
        &session,
        cancel,
        &mut run_id,
    )
    .await;
    session.close().await;
    (exit, run_id)
}

#[allow(clippy::too_many_arguments)]
async fn with_session(
    pipeline: Arc<Pipeline>,
    selected: &mut [bool],
    environment: &Environment,
    base: &Path,
    file: &Path,
    selection: &str,
    args: &RunArgs,
    session: &Session,
    cancel: &CancellationToken,
    recorded_as: &mut Option<i64>,
) -> Exit {
    let Some(flow_db) = session.databases.get("flow") else {
        return Exit::Failure;
    };
    let records = match Records::open(flow_db).await {
        Ok(records) => records,
        Err(error) => {
            output::error(error);
            return Exit::Failure;
        }
    };
    if args.resume {
        match resume_selection(&pipeline, &records).await {
            Ok(Some(resumed)) => selected.copy_from_slice(&resumed),
            Ok(None) => {
                output::error(CliError::NothingToResume {
                    flow: pipeline.name.clone(),
                });
                return Exit::Invalid;
            }
            Err(error) => {
                output::error(error);
                return Exit::Failure;
            }
        }
    }
    let vars_key = flow_engine::vars_key(&args.vars);
    let history = records.successes(&pipeline.name, &vars_key).await;
    let identities = session::identities(session, environment).await;
    let (history, connections) = match (history, identities) {
        (Ok(history), Ok(connections)) => (history, connections),
        (Err(error), _) | (_, Err(error)) => {
            output::error(error);
            return Exit::Failure;
        }
    };
    let ids: Vec<String> = pipeline
        .steps
        .iter()
        .zip(selected.iter())
        .filter(|(_, s)| **s)
        .map(|(step, _)| step.id.to_string())
        .collect();
    let file_text = file.display().to_string();
    let run_id = match records
        .start_run(
            &pipeline.name,
            &file_text,
            &environment.name,
            selection,
            &ids,
            &vars_key,
        )
        .await
    {
        Ok(id) => id,
        Err(error) => {
            output::error(error);
            return Exit::Failure;
        }
    };
    *recorded_as = Some(run_id);
    let (record_tx, mut record_rx) = tokio::sync::mpsc::unbounded_channel::<Record>();
    let recorder = {
        let records = records.clone();
        tokio::spawn(async move {
            while let Some(record) = record_rx.recv().await {
                let written = match &record {
                    Record::Started(step) => records.step_started(run_id, step).await,
                    Record::Finished(step, end) => records.step_finished(run_id, step, end).await,
                };
                if let Err(error) = written {
                    tracing::warn!(%error, "could not record a step");
                }
            }
        })
    };
    let shared = Shared {
        base_dir: base.to_path_buf(),
        databases: Arc::new(session.databases.clone()),
        storages: Arc::new(environment.storages.clone()),
        vars: Arc::new(args.vars.iter().cloned().collect()),
        run: Some(run_id),
    };
    let options = Options {
        jobs: args.jobs,
        keep_going: args.keep_going,
        force: args.force,
        ..Options::default()
    };
    let memory = Memory {
        history,
        connections,
        run_id,
        vars: args.vars.iter().cloned().collect(),
    };
    let mut display = Display::new(Arc::clone(&pipeline), args.json, args.plain, ids.len());
    display.run_started(run_id, &environment.name);
    // The executor runs as a task on the runtime's workers, where starting and
    // finishing steps needs no wake-ups across threads.
    let task = {
        let (pipeline, selected, shared, cancel) = (
            Arc::clone(&pipeline),
            selected.to_vec(),
            Arc::new(shared),
            cancel.clone(),
        );
        tokio::spawn(async move {
            let results = executor::execute(
                &pipeline,
                &selected,
                &shared,
                &options,
                &memory,
                &cancel,
                |event| {
                    display.event(&event);
                    match event {
                        Event::Started { step, .. } => {
                            let _ =
                                record_tx.send(Record::Started(pipeline.steps[step].key.clone()));
                        }
                        Event::Finished { step, result } => {
                            let _ = record_tx.send(Record::Finished(
                                pipeline.steps[step].key.clone(),
                                step_end(result),
                            ));
                        }
                        Event::Retrying { .. } => {}
                    }
                },
            )
            .await;
            (results, display)
        })
    };
    let (results, display) = match task.await {
        Ok(done) => done,
        Err(error) => {
            output::note(&format!("the run stopped unexpectedly: {error}"));
            return Exit::Failure;
        }
    };
    let _ = recorder.await;
    let failed = results.values().any(|r| !r.succeeded());
    // Not all done and nothing failed: a signal stopped the run.
    let status = if results
        .values()
        .any(|r| matches!(r.status, Status::Failed(_)))
    {
        "failed"
    } else if failed {
        "cancelled"
    } else {
        "succeeded"
    };
    if let Err(error) = records.finish_run(run_id, status).await {
        output::error(error);
    }
    display.finish(run_id, status, &results);
    if failed { Exit::Failure } else { Exit::Success }
}

/// The steps of the last run that did not succeed; `None` when there is none.
async fn resume_selection(
    pipeline: &Pipeline,
    records: &Records,
) -> Result<Option<Vec<bool>>, flow_db::DbError> {
    let Some((run, steps)) = records.last_run(&pipeline.name).await? else {
        return Ok(None);
    };
    let done: BTreeMap<&str, &str> = steps
        .iter()
        .map(|s| (s.step.as_str(), s.status.as_str()))
        .collect();
    let again: Vec<&String> = run
        .selected
        .iter()
        .filter(|id| !matches!(done.get(id.as_str()), Some(&"succeeded" | &"skipped")))
        .collect();
    if again.is_empty() {
        return Ok(Some(vec![false; pipeline.steps.len()]));
    }
    Ok(Some(
        pipeline
            .steps
            .iter()
            .map(|step| again.iter().any(|id| **id == step.id.to_string()))
            .collect(),
    ))
}

fn step_end(result: &StepResult) -> StepEnd {
    let (status, rows, bytes, note, error) = match &result.status {
        Status::Succeeded(outcome) => (
            "succeeded",
            outcome.rows,
            outcome.bytes,
            outcome.note.clone(),
            None,
        ),
        Status::Failed(error) => ("failed", 0, 0, None, Some(output::render(&error.report))),
        Status::Cancelled => ("cancelled", 0, 0, None, None),
        Status::NotRun { reason } => ("not_run", 0, 0, reason.clone(), None),
        Status::Skipped { since } => (
            "skipped",
            0,
            0,
            Some(format!("unchanged since run {since}")),
            None,
        ),
    };
    StepEnd {
        status,
        attempts: result.attempts,
        seconds: result.duration.as_secs_f64(),
        rows,
        bytes,
        note,
        error,
        input_fingerprint: result.input_fingerprint.clone(),
        output_fingerprint: result.output_fingerprint.clone(),
    }
}

/// Cancels `cancel` on Ctrl-C or SIGTERM, saying so with `message`; returns
/// whether a signal came.
pub fn cancel_on_signal(cancel: CancellationToken, message: &'static str) -> Arc<AtomicBool> {
    let signalled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&signalled);
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        flag.store(true, Ordering::SeqCst);
        output::note(message);
        cancel.cancel();
    });
    signalled
}
