//! What a run is given and what it gives back: options, events, results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pipeline::StepIndex;
use crate::run_context::{Outcome, Progress, StepError};

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub jobs: usize,
    pub keep_going: bool,
    /// Retries for steps that do not set `retries`.
    pub retries: u64,
    /// The first backoff; doubled for each retry, at most 30 seconds.
    pub backoff: Duration,
    /// Run steps even when nothing they depend on changed.
    pub force: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            jobs: 4,
            keep_going: false,
            retries: 2,
            backoff: Duration::from_millis(500),
            force: false,
        }
    }
}

/// Something that happened during a run, for displays and records.
#[derive(Debug)]
pub enum Event<'a> {
    Started {
        step: StepIndex,
        attempt: u32,
        /// The step's counters, which it advances as it works.
        progress: &'a Arc<Progress>,
    },
    Retrying {
        step: StepIndex,
        attempt: u32,
        error: &'a StepError,
        delay: Duration,
    },
    Finished {
        step: StepIndex,
        result: &'a StepResult,
    },
}

/// How a step ended.
#[derive(Debug)]
pub enum Status {
    Succeeded(Outcome),
    Failed(StepError),
    /// Cancelled while running: a sibling failed or a signal arrived.
    Cancelled,
    /// Not started: something it depends on failed (`reason` says what and
    /// how), or the run stopped.
    NotRun {
        reason: Option<String>,
    },
    /// Not run: nothing it depends on changed since its success in run `since`.
    Skipped {
        since: i64,
    },
}

impl Status {
    /// The status as the records and events name it.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Succeeded(_) => "succeeded",
            Status::Failed(_) => "failed",
            Status::Cancelled => "cancelled",
            Status::NotRun { .. } => "not_run",
            Status::Skipped { .. } => "skipped",
        }
    }
}

#[derive(Debug)]
pub struct StepResult {
    pub status: Status,
    pub attempts: u32,
    pub started: Option<Instant>,
    pub duration: Duration,
    pub input_fingerprint: Option<String>,
    pub output_fingerprint: Option<String>,
}

impl StepResult {
    pub(super) fn new(status: Status) -> Self {
        Self {
            status,
            attempts: 0,
            started: None,
            duration: Duration::ZERO,
            input_fingerprint: None,
            output_fingerprint: None,
        }
    }

    /// Succeeded or skipped: what depends on it may go on.
    pub fn succeeded(&self) -> bool {
        matches!(self.status, Status::Succeeded(_) | Status::Skipped { .. })
    }
}

/// The environment of every step of a run.
pub struct Shared {
    pub base_dir: std::path::PathBuf,
    pub databases: Arc<std::collections::BTreeMap<String, flow_db::Database>>,
    pub storages: Arc<std::collections::BTreeMap<String, String>>,
    /// Values of this run that steps may use (a scheduled job's `item`).
    pub vars: Arc<std::collections::BTreeMap<String, String>>,
    /// The run's id, when it is recorded.
    pub run: Option<i64>,
}

pub fn humanize(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1_000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}m{:02}s", millis / 60_000, (millis / 1_000) % 60)
    }
}
