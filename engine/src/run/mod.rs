//! A run of a flow, owned by the engine: the CLI, the scheduler and the
//! server start one with [`start`], watch it through an [`Observer`], cancel
//! it through its [`RunHandle`], and read how it ended in a [`RunEnd`].
//!
//! A run opens the databases its steps touch (starting the embedded cluster
//! when one of them lives there), records itself and each step in the flow
//! database's `_flow` schema as it goes, runs the selected steps through the
//! [`crate::executor`], and closes everything whatever the end.

mod events;
mod record;
mod resume;

use std::collections::HashMap;
use std::sync::Arc;

use miette::Diagnostic;
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::environment::Environment;
use crate::executor::{self, Event, Memory, Options, Shared, Status, StepResult};
use crate::flow_file::FlowFile;
use crate::pipeline::StepIndex;
use crate::records::{Records, vars_key};
use crate::session::{self, Session};

pub use events::{RunEvent, Stream, Watch};
pub use record::{render_report, step_end};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The steps to run, by index (see [`crate::Selection::apply`]).
    pub selected: Vec<bool>,
    /// How the selection was asked for, as the records keep it
    /// (`--group seed`, `schedule nightly`).
    pub selection: String,
    /// The run's values (`--var`, a scheduled job's item).
    pub vars: Vec<(String, String)>,
    pub options: Options,
    /// Run again what failed or did not run in the flow's last run, instead
    /// of `selected`.
    pub resume: bool,
    /// Connections per database.
    pub db_connections: usize,
    /// Write into the run this key names (an orchestrator's run id), made by
    /// the first process that attaches: each task of an Airflow DAG run runs
    /// its step into one flow run.
    pub attach: Option<String>,
}

/// Watches a run. Its methods are called on the run's task, in order.
pub trait Observer: Send + 'static {
    /// The run is recorded as `run` and its `steps` are about to start.
    fn started(&mut self, _run: i64, _environment: &str, _steps: usize) {}
    fn event(&mut self, event: &Event<'_>);
    /// Every step has ended; the run is recorded as ended.
    fn finished(
        &mut self,
        _run: i64,
        _status: RunStatus,
        _results: &HashMap<StepIndex, StepResult>,
    ) {
    }
}

impl Observer for Box<dyn Observer> {
    fn started(&mut self, run: i64, environment: &str, steps: usize) {
        (**self).started(run, environment, steps);
    }

    fn event(&mut self, event: &Event<'_>) {
        (**self).event(event);
    }

    fn finished(&mut self, run: i64, status: RunStatus, results: &HashMap<StepIndex, StepResult>) {
        (**self).finished(run, status, results);
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Succeeded,
    /// A step failed.
    Failed,
    /// Cancelled before every step ended, none having failed.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// Why a run could not go on, before or after its steps.
#[derive(Debug, Error, Diagnostic)]
pub enum RunError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Db(#[from] flow_db::DbError),

    #[error("there is no run of `{flow}` to resume")]
    #[diagnostic(
        code(flow::cli::nothing_to_resume),
        help("run it first with `flow run FILE`")
    )]
    NothingToResume { flow: String },

    #[error("the run stopped unexpectedly: {reason}")]
    #[diagnostic(code(flow::run::stopped))]
    Stopped { reason: String },
}

impl RunError {
    /// The request was wrong, rather than something failing on the way.
    pub fn is_invalid(&self) -> bool {
        matches!(self, RunError::NothingToResume { .. })
    }
}

/// The end of a run: its id once recorded, and its status or why it could
/// not go on.
#[derive(Debug)]
pub struct RunEnd {
    pub id: Option<i64>,
    pub status: Result<RunStatus, RunError>,
}

/// A run going on.
pub struct RunHandle<O> {
    cancel: CancellationToken,
    task: JoinHandle<(RunEnd, O)>,
}

impl<O> RunHandle<O> {
    /// Cancels the running steps (they roll back) and starts no new one.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the end; gives the observer back.
    pub async fn finish(self) -> (RunEnd, Option<O>) {
        match self.task.await {
            Ok((end, observer)) => (end, Some(observer)),
            Err(error) => (
                RunEnd {
                    id: None,
                    status: Err(RunError::Stopped {
                        reason: error.to_string(),
                    }),
                },
                None,
            ),
        }
    }
}

/// Starts a run of `flow` in `environment` on the current tokio runtime.
/// `cancel` (or [`RunHandle::cancel`]) stops it cleanly.
pub fn start<O: Observer>(
    flow: Arc<FlowFile>,
    environment: Environment,
    request: RunRequest,
    observer: O,
    cancel: CancellationToken,
) -> RunHandle<O> {
    let task = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut observer = observer;
            let end = execute(&flow, &environment, request, &mut observer, &cancel).await;
            (end, observer)
        })
    };
    RunHandle { cancel, task }
}

async fn execute<O: Observer>(
    flow: &FlowFile,
    environment: &Environment,
    request: RunRequest,
    observer: &mut O,
    cancel: &CancellationToken,
) -> RunEnd {
    let needed = session::databases_needed(&flow.pipeline, &request.selected);
    let session = match Session::open(
        environment,
        &flow.base,
        &needed,
        request.db_connections.max(1),
        &request.vars,
    )
    .await
    {
        Ok(session) => session,
        Err(error) => {
            return RunEnd {
                id: None,
                status: Err(error.into()),
            };
        }
    };
    let mut id = None;
    let status = with_session(
        flow,
        environment,
        request,
        &session,
        observer,
        cancel,
        &mut id,
    )
    .await;
    session.close().await;
    RunEnd { id, status }
}

async fn with_session<O: Observer>(
    flow: &FlowFile,
    environment: &Environment,
    mut request: RunRequest,
    session: &Session,
    observer: &mut O,
    cancel: &CancellationToken,
    recorded_as: &mut Option<i64>,
) -> Result<RunStatus, RunError> {
    let pipeline = &flow.pipeline;
    let records = Records::open(session.database("flow")?).await?;
    if request.resume {
        request.selected = resume::selection(pipeline, &records)
            .await?
            .ok_or_else(|| RunError::NothingToResume {
                flow: pipeline.name.clone(),
            })?;
    }
    let vars_key = vars_key(&request.vars);
    let history = records.successes(&pipeline.name, &vars_key).await?;
    let connections = session::identities(session, environment).await?;
    let ids: Vec<String> = pipeline
        .steps
        .iter()
        .zip(&request.selected)
        .filter(|(_, s)| **s)
        .map(|(step, _)| step.id.to_string())
        .collect();
    let file = flow.file.display().to_string();
    let run_id = records
        .open_run(
            &pipeline.name,
            &file,
            &environment.name,
            &request.selection,
            &ids,
            &vars_key,
            request.attach.as_deref(),
        )
        .await?;
    *recorded_as = Some(run_id);
    let recorder = record::Recorder::start(records.clone(), run_id);
    let vars: std::collections::BTreeMap<String, String> = request.vars.iter().cloned().collect();
    let shared = Shared {
        base_dir: flow.base.clone(),
        databases: Arc::new(session.databases.clone()),
        storages: Arc::new(environment.storages.clone()),
        vars: Arc::new(vars.clone()),
        run: Some(run_id),
    };
    let memory = Memory {
        history,
        connections,
        run_id,
        vars,
    };
    observer.started(run_id, &environment.name, ids.len());
    let results = executor::execute(
        pipeline,
        &request.selected,
        &shared,
        &request.options,
        &memory,
        cancel,
        |event| {
            observer.event(&event);
            recorder.event(pipeline, &event);
        },
    )
    .await;
    recorder.finish().await;
    // Not all done and nothing failed: the run was cancelled.
    let status = if results
        .values()
        .any(|r| matches!(r.status, Status::Failed(_)))
    {
        RunStatus::Failed
    } else if results.values().any(|r| !r.succeeded()) {
        RunStatus::Cancelled
    } else {
        RunStatus::Succeeded
    };
    let ended = match &request.attach {
        Some(_) => records.finish_attached(run_id).await.map(drop),
        None => records.finish_run(run_id, status.as_str()).await,
    };
    if let Err(error) = ended {
        tracing::error!(%error, run = run_id, "could not record the end of the run");
    }
    observer.finished(run_id, status, &results);
    Ok(status)
}
