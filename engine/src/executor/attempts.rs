//! One step as a task of its own: its attempts, retries and timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Options, Shared, Status, StepResult, humanize};
use crate::pipeline::{Pipeline, StepIndex};
use crate::run_context::{Outcome, Progress, RunContext, StepError};

/// A retry a task reports: the step, the attempt that failed, why, and the
/// wait before the next.
pub(super) type Retry = (StepIndex, u32, StepError, Duration);

/// One step, with its retries and timeout, as a task of its own.
pub(super) fn attempts(
    pipeline: &Pipeline,
    index: StepIndex,
    shared: &Shared,
    options: &Options,
    cancel: CancellationToken,
    progress: Arc<Progress>,
    retries_tx: UnboundedSender<Retry>,
) -> impl Future<Output = (StepIndex, StepResult)> + Send + 'static {
    let step = &pipeline.steps[index];
    let mut context = RunContext::for_step(
        step,
        shared.base_dir.clone(),
        Arc::clone(&shared.databases),
        Arc::clone(&pipeline.checks),
    );
    context.storages = Arc::clone(&shared.storages);
    context.vars = Arc::clone(&shared.vars);
    context.run = shared.run;
    context.cancel = cancel;
    context.progress = progress;
    let operation = step.operation;
    let retries = step.retries.unwrap_or(options.retries);
    let timeout = step.timeout;
    let backoff = options.backoff;
    async move {
        let started = Instant::now();
        let mut attempt = 1u32;
        let status = loop {
            let work = operation.run(&context);
            let result = tokio::select! {
                () = context.cancel.cancelled() => break Status::Cancelled,
                result = with_timeout(timeout, work) => result,
            };
            match result {
                Ok(outcome) => break Status::Succeeded(outcome),
                Err(error) if error.transient && u64::from(attempt) <= retries => {
                    let delay = backoff
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(Duration::from_secs(30));
                    let _ = retries_tx.send((index, attempt, error, delay));
                    tokio::select! {
                        () = context.cancel.cancelled() => break Status::Cancelled,
                        () = tokio::time::sleep(delay) => {}
                    }
                    attempt += 1;
                }
                Err(error) => break Status::Failed(error),
            }
        };
        let mut result = StepResult::new(status);
        result.attempts = attempt;
        result.started = Some(started);
        result.duration = started.elapsed();
        (index, result)
    }
}

async fn with_timeout(
    timeout: Option<Duration>,
    work: impl Future<Output = Result<Outcome, StepError>>,
) -> Result<Outcome, StepError> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(StepError::message(
                format!("timed out after {}", humanize(limit)),
                Some("raise the step's `timeout`, or look at what made it slow".into()),
            ))
        }),
        None => work.await,
    }
}
