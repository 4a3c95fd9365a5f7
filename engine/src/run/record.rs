//! The records a run writes as it goes: each step's start and end, written
//! off the executor's path, in order.

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use crate::executor::{Event, Status, StepResult};
use crate::pipeline::Pipeline;
use crate::records::{Records, StepEnd};

enum Record {
    Started(String),
    Finished(String, StepEnd),
}

/// Writes the records of one run on a task of its own.
pub(super) struct Recorder {
    sender: UnboundedSender<Record>,
    task: JoinHandle<()>,
}

impl Recorder {
    pub(super) fn start(records: Records, run: i64) -> Self {
        let (sender, mut receiver) = unbounded_channel::<Record>();
        let task = tokio::spawn(async move {
            while let Some(record) = receiver.recv().await {
                let written = match &record {
                    Record::Started(step) => records.step_started(run, step).await,
                    Record::Finished(step, end) => records.step_finished(run, step, end).await,
                };
                if let Err(error) = written {
                    tracing::warn!(%error, "could not record a step");
                }
            }
        });
        Self { sender, task }
    }

    pub(super) fn event(&self, pipeline: &Pipeline, event: &Event<'_>) {
        let record = match event {
            Event::Started { step, .. } => Record::Started(pipeline.steps[*step].key.clone()),
            Event::Finished { step, result } => {
                Record::Finished(pipeline.steps[*step].key.clone(), step_end(result))
            }
            Event::Retrying { .. } => return,
        };
        let _ = self.sender.send(record);
    }

    /// Waits until every record is written.
    pub(super) async fn finish(self) {
        drop(self.sender);
        let _ = self.task.await;
    }
}

/// A step's result as the records keep it.
pub fn step_end(result: &StepResult) -> StepEnd {
    let (rows, bytes, note, error) = match &result.status {
        Status::Succeeded(outcome) => (outcome.rows, outcome.bytes, outcome.note.clone(), None),
        Status::Failed(error) => (0, 0, None, Some(render_report(&error.report))),
        Status::Cancelled => (0, 0, None, None),
        Status::NotRun { reason } => (0, 0, reason.clone(), None),
        Status::Skipped { since } => (0, 0, Some(format!("unchanged since run {since}")), None),
    };
    StepEnd {
        status: result.status.name(),
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

/// A diagnostic as plain text, for records and JSON events.
pub fn render_report(report: &miette::Report) -> String {
    use miette::{GraphicalReportHandler, GraphicalTheme};
    let mut text = String::new();
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_break_words(false);
    if handler.render_report(&mut text, report.as_ref()).is_err() {
        text = report.to_string();
    }
    text.trim_end().to_owned()
}
