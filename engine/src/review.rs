//! `flow diff` and `flow rollback`: what a step would change, looked at
//! without a run, and what its last run replaced, put back. The operations
//! do the work ([`Operation::preview`](crate::Operation::preview),
//! [`Operation::undo`](crate::Operation::undo)); this opens the databases
//! the steps touch and keeps an undo in the records.

use std::sync::Arc;

use flow_db::DbError;

use crate::environment::Environment;
use crate::flow_file::FlowFile;
use crate::operation::Preview;
use crate::pipeline::StepNode;
use crate::records::{Records, StepEnd};
use crate::run_context::{RunContext, StepError};
use crate::session::{self, Session};

/// Which hook of the operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Preview,
    Undo,
}

/// The steps of a flow that have the hook, or the one of them named `name`
/// (by key or id).
pub fn steps<'p>(flow: &'p FlowFile, hook: Hook, name: Option<&str>) -> Vec<&'p StepNode> {
    flow.pipeline
        .steps
        .iter()
        .filter(|s| match hook {
            Hook::Preview => s.operation.previews(),
            Hook::Undo => s.operation.undoes(),
        })
        .filter(|s| name.is_none_or(|name| s.key == name || s.id.to_string() == name))
        .collect()
}

/// Each step's preview, by step key.
pub async fn previews(
    flow: &FlowFile,
    environment: &Environment,
    steps: &[&StepNode],
) -> Result<Vec<(String, Result<Preview, StepError>)>, DbError> {
    let session = open(flow, environment, steps).await?;
    let mut previews = Vec::new();
    for step in steps {
        let context = context(flow, &session, step);
        let preview = step.operation.preview(&context, &flow.pipeline).await;
        previews.push((step.key.clone(), preview));
    }
    session.close().await;
    Ok(previews)
}

/// Undoes each step; what each did, by step key. Each undo is recorded as a
/// run of its own (`flow runs` shows it), its step `rolled_back`: the next
/// run does not take the step's last success for its own, and runs it again.
pub async fn undo(
    flow: &FlowFile,
    environment: &Environment,
    steps: &[&StepNode],
) -> Result<Vec<(String, Result<String, StepError>)>, DbError> {
    let session = open(flow, environment, steps).await?;
    let mut done = Vec::new();
    for step in steps {
        let context = context(flow, &session, step);
        let undone = step.operation.undo(&context).await;
        if let Ok(line) = &undone
            && let Err(error) = record(flow, environment, &session, step, line).await
        {
            tracing::warn!(%error, "the rollback was not recorded");
        }
        done.push((step.key.clone(), undone));
    }
    session.close().await;
    Ok(done)
}

async fn open(
    flow: &FlowFile,
    environment: &Environment,
    steps: &[&StepNode],
) -> Result<Session, DbError> {
    let selected: Vec<bool> = flow
        .pipeline
        .steps
        .iter()
        .map(|s| steps.iter().any(|t| t.key == s.key))
        .collect();
    let needed = session::databases_needed(&flow.pipeline, &selected);
    Session::open(environment, &flow.base, &needed, 4, &[]).await
}

fn context(flow: &FlowFile, session: &Session, step: &StepNode) -> RunContext {
    RunContext::for_step(
        step,
        flow.base.clone(),
        Arc::new(session.databases.clone()),
        Arc::clone(&flow.pipeline.checks),
    )
}

async fn record(
    flow: &FlowFile,
    environment: &Environment,
    session: &Session,
    step: &StepNode,
    line: &str,
) -> Result<(), DbError> {
    let records = Records::open(session.database("flow")?).await?;
    let id = step.id.to_string();
    let run = records
        .start_run(
            &flow.pipeline.name,
            &flow.file.display().to_string(),
            &environment.name,
            "rollback",
            std::slice::from_ref(&id),
            "",
        )
        .await?;
    let end = StepEnd {
        status: "rolled_back",
        note: Some(line.to_owned()),
        ..StepEnd::default()
    };
    records.step_finished(run, &id, &end).await?;
    records.finish_run(run, "succeeded").await
}
