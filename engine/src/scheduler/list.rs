//! `flow schedule list`: each job's last fire, how it ended, and its next.

use jiff::Timestamp;

use super::{Scheduled, from_micros};
use crate::pipeline::Pipeline;
use crate::records::{FireRecord, Records};

/// A scheduled job as it stands.
#[derive(Debug, Clone)]
pub struct JobState {
    pub flow: String,
    pub job: String,
    pub last_fire: Option<Timestamp>,
    pub result: Option<String>,
    pub next_fire: Option<Timestamp>,
}

/// The jobs of a flow's schedules, with their last fires when the records
/// can be read (`Err` says why not, with the jobs still listed).
pub async fn jobs(flow: &Scheduled, now: Timestamp) -> (Vec<JobState>, Option<String>) {
    match flow.records().await {
        Ok((session, records)) => {
            let jobs = jobs_in(&records, &flow.flow.pipeline, now).await;
            session.close().await;
            (jobs, None)
        }
        Err(error) => (states(&flow.flow.pipeline, &[], now), Some(error)),
    }
}

/// The jobs of a pipeline's schedules, with their last fires as `records`
/// (already open: a server's) keep them.
pub async fn jobs_in(records: &Records, pipeline: &Pipeline, now: Timestamp) -> Vec<JobState> {
    let fires = records
        .last_fires(&pipeline.name, true)
        .await
        .unwrap_or_default();
    states(pipeline, &fires, now)
}

fn states(pipeline: &Pipeline, last: &[FireRecord], now: Timestamp) -> Vec<JobState> {
    let mut jobs = Vec::new();
    for schedule in &pipeline.schedules {
        let next = schedule.trigger().and_then(|t| t.next_after(now));
        for (job, _) in schedule.jobs() {
            let fire = last.iter().find(|f| f.schedule == job);
            jobs.push(JobState {
                flow: pipeline.name.clone(),
                last_fire: fire.map(|f| from_micros(f.fire_at)),
                result: fire.map(|f| f.status.clone()),
                next_fire: next,
                job,
            });
        }
    }
    jobs
}
