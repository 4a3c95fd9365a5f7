//! The runs of one scheduled job: its claimed fires, one after another.

use std::sync::Arc;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::Hooks;
use super::micros;
use crate::executor::Options;
use crate::flow_file::FlowFile;
use crate::pipeline::Schedule;
use crate::records::Records;
use crate::run::{self, RunRequest, RunStatus};
use crate::selection::Selection;

pub(super) struct Job {
    pub flow: Arc<FlowFile>,
    pub schedule: Schedule,
    /// `nightly`, or `nightly[2024]` for an item of `for_each`.
    pub name: String,
    pub values: Vec<(String, String)>,
    pub records: Records,
    pub stop: CancellationToken,
    pub hooks: Arc<dyn Hooks>,
}

impl Job {
    /// Runs each claimed fire and records how it ended; stops at the
    /// service's stop.
    pub(super) async fn fires(&self, claimed: Vec<Timestamp>, late: impl Fn(&Timestamp) -> bool) {
        let (flow, job) = (&self.flow.pipeline.name, &self.name);
        for fire in claimed {
            if late(&fire) {
                self.hooks.note(&format!(
                    "warning: {flow}: schedule `{job}` runs its fire at {fire} late"
                ));
            }
            self.hooks
                .note(&format!("{flow}: schedule `{job}` fires ({fire})"));
            let (status, run_id) = self.run_once().await;
            if let Err(error) = self
                .records
                .finish_fire(flow, job, micros(fire), status, run_id)
                .await
            {
                self.hooks
                    .note(&format!("{flow}: could not record a fire: {error}"));
            }
            if self.stop.is_cancelled() {
                break;
            }
        }
    }

    /// One run of the schedule: its groups and steps, in its environment.
    async fn run_once(&self) -> (&'static str, Option<i64>) {
        let pipeline = &self.flow.pipeline;
        let mut selection = Selection::default();
        for item in &self.schedule.run {
            if pipeline.groups.contains(item) || item == crate::MANUAL_GROUP {
                selection.groups.push(item.clone());
            } else {
                selection.steps.push(item.clone());
            }
        }
        let Ok(selected) = selection.apply(pipeline) else {
            return ("failed", None);
        };
        let environment = match self.flow.environment(self.schedule.env.as_deref()) {
            Ok(environment) => environment,
            Err(error) => {
                self.hooks.note(&format!(
                    "{}: schedule `{}`: {error}",
                    pipeline.name, self.name
                ));
                return ("failed", None);
            }
        };
        let request = RunRequest {
            selected,
            selection: format!("schedule {}", self.name),
            vars: self.values.clone(),
            options: Options::default(),
            resume: false,
            db_connections: 8,
            attach: None,
        };
        let observer = self.hooks.observer(pipeline);
        let handle = run::start(
            Arc::clone(&self.flow),
            environment,
            request,
            observer,
            self.stop.child_token(),
        );
        let (end, _) = handle.finish().await;
        let status = match &end.status {
            Ok(RunStatus::Succeeded) => "succeeded",
            _ if self.stop.is_cancelled() => "cancelled",
            Ok(_) => "failed",
            Err(error) => {
                self.hooks.note(&format!(
                    "{}: schedule `{}`: {error}",
                    pipeline.name, self.name
                ));
                "failed"
            }
        };
        (status, end.id)
    }
}
