//! A run's events as owned values: what `flow run --json` prints, one per
//! line, and what a server streams to those watching a run.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::broadcast;

use super::{Observer, RunStatus, step_end};
use crate::executor::{Event, Status, StepResult};
use crate::pipeline::{Pipeline, StepIndex};

/// Something that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run: i64,
        flow: String,
        environment: String,
        steps: usize,
    },
    StepStarted {
        step: String,
    },
    StepRetrying {
        step: String,
        attempt: u32,
        error: String,
        delay_ms: u64,
    },
    StepFinished {
        step: String,
        status: &'static str,
        seconds: f64,
        attempts: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        rows: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    RunFinished {
        run: i64,
        status: &'static str,
        seconds: f64,
    },
}

impl RunEvent {
    /// A step's event, named by the step's id.
    pub fn of_step(pipeline: &Pipeline, event: &Event<'_>) -> Self {
        match event {
            Event::Started { step, .. } => RunEvent::StepStarted {
                step: pipeline.steps[*step].key.clone(),
            },
            Event::Retrying {
                step,
                attempt,
                error,
                delay,
            } => RunEvent::StepRetrying {
                step: pipeline.steps[*step].key.clone(),
                attempt: *attempt,
                error: error.report.to_string(),
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
            Event::Finished { step, result } => finished(&pipeline.steps[*step].key, result),
        }
    }
}

fn finished(step: &str, result: &StepResult) -> RunEvent {
    let end = step_end(result);
    let succeeded = matches!(result.status, Status::Succeeded(_));
    RunEvent::StepFinished {
        step: step.to_owned(),
        status: end.status,
        seconds: end.seconds,
        attempts: end.attempts,
        rows: succeeded.then_some(end.rows),
        bytes: succeeded.then_some(end.bytes),
        note: end.note,
        error: end.error,
    }
}

/// An observer that keeps a run's events and sends each to every receiver
/// subscribed (a server's event streams). A watcher that comes late gets
/// the events so far first, then the rest, none twice and none missed; a
/// receiver that falls behind by more than the capacity misses the oldest
/// of those it has not read.
pub struct Stream {
    pipeline: std::sync::Arc<Pipeline>,
    watch: Watch,
    started: Instant,
}

/// Where a run's events can be watched from, once its [`Stream`] has gone
/// to the run.
#[derive(Clone)]
pub struct Watch {
    shared: std::sync::Arc<std::sync::Mutex<Vec<RunEvent>>>,
    sender: broadcast::Sender<RunEvent>,
}

impl Watch {
    /// The events so far, and a receiver of those after them.
    pub fn subscribe(&self) -> (Vec<RunEvent>, broadcast::Receiver<RunEvent>) {
        match self.shared.lock() {
            Ok(sent) => (sent.clone(), self.sender.subscribe()),
            Err(_) => (Vec::new(), self.sender.subscribe()),
        }
    }

    fn send(&self, event: RunEvent) {
        // Kept and sent under one lock, so a subscriber sees each once.
        if let Ok(mut sent) = self.shared.lock() {
            sent.push(event.clone());
            let _ = self.sender.send(event);
        }
    }
}

impl Stream {
    /// The stream; a receiver may fall `capacity` events behind.
    pub fn new(pipeline: std::sync::Arc<Pipeline>, capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            pipeline,
            watch: Watch {
                shared: std::sync::Arc::default(),
                sender,
            },
            started: Instant::now(),
        }
    }

    /// Where to watch the run from.
    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }
}

impl Observer for Stream {
    fn started(&mut self, run: i64, environment: &str, steps: usize) {
        self.watch.send(RunEvent::RunStarted {
            run,
            flow: self.pipeline.name.clone(),
            environment: environment.to_owned(),
            steps,
        });
    }

    fn event(&mut self, event: &Event<'_>) {
        self.watch.send(RunEvent::of_step(&self.pipeline, event));
    }

    fn finished(&mut self, run: i64, status: RunStatus, _: &HashMap<StepIndex, StepResult>) {
        self.watch.send(RunEvent::RunFinished {
            run,
            status: status.as_str(),
            seconds: self.started.elapsed().as_secs_f64(),
        });
    }
}

/// Two observers of one run, each told everything in turn.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn started(&mut self, run: i64, environment: &str, steps: usize) {
        self.0.started(run, environment, steps);
        self.1.started(run, environment, steps);
    }

    fn event(&mut self, event: &Event<'_>) {
        self.0.event(event);
        self.1.event(event);
    }

    fn finished(&mut self, run: i64, status: RunStatus, results: &HashMap<StepIndex, StepResult>) {
        self.0.finished(run, status, results);
        self.1.finished(run, status, results);
    }
}
