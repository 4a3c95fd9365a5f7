//! The schedules of flow files as a long-lived service (`flow schedule`,
//! `flow serve --schedule`).
//!
//! Every fire is recorded in `_flow.fires` of the flow's database, keyed by
//! flow, schedule and fire time: inserting that row is what makes a fire
//! happen, so a fire runs once whatever the number of schedulers and restarts.
//! Instances elect one leader per flow with a PostgreSQL advisory lock held on
//! a connection of its own; the others stand by and take over when the
//! leader's connection goes. On start, a schedule with no fires yet records a
//! `registered` row, the origin from which missed fires are counted after a
//! restart. A fire found later than `GRACE` is missed, and the schedule's
//! `missed` policy applies: `skip` records it and runs nothing, `latest`
//! (default) runs only the newest, `all` runs each, at most `max_missed`, one
//! after another. A fire that comes while the schedule's previous run is still
//! going is recorded as `skipped`: runs of one schedule never overlap.
//!
//! A run of a job holds the job (an advisory lock on a connection of the
//! process that runs it) until it ends, and the commands of its steps die with
//! that process. A leader that takes over waits `SETTLE` before firing, so
//! that the processes of a leader that died are gone, then closes the fires
//! that leader left `started` as `interrupted`; a job still held by a live
//! process elsewhere is not started again but recorded `skipped`.
//! Cancelling the service's token stops it: running runs are cancelled
//! cleanly.

mod fires;
mod job;
mod list;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::flow_file::FlowFile;
use crate::pipeline::Pipeline;
use crate::records::Records;
use crate::run::Observer;
use crate::session::Session;

pub use list::{JobState, jobs, jobs_in};

/// How long a new leader waits before firing: longer than a dead leader's
/// commands take to end (their supervisors look every 50 ms).
const SETTLE: Duration = Duration::from_secs(1);

/// A fire's time as the records keep it: microseconds since the epoch.
fn micros(at: jiff::Timestamp) -> i64 {
    at.as_microsecond()
}

fn from_micros(value: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(value).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// What the scheduler tells the one who started it.
pub trait Hooks: Send + Sync + 'static {
    /// A line for the operator: leading, a missed or skipped fire, a failure.
    fn note(&self, text: &str);
    /// What watches a scheduled run of `pipeline`.
    fn observer(&self, pipeline: &Arc<Pipeline>) -> Box<dyn Observer>;
}

/// A flow whose schedules run, and the environment whose flow database keeps
/// its records.
pub struct Scheduled {
    pub flow: Arc<FlowFile>,
    pub env: Option<String>,
}

impl Scheduled {
    /// Opens the flow database (the records live there).
    async fn records(&self) -> Result<(Session, Records), String> {
        let environment = self
            .flow
            .environment(self.env.as_deref())
            .map_err(|e| e.to_string())?;
        let needed = std::collections::BTreeSet::from(["flow".to_owned()]);
        let session = Session::open(&environment, &self.flow.base, &needed, 4, &[])
            .await
            .map_err(|e| e.to_string())?;
        let records = Records::open(session.database("flow").map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        Ok((session, records))
    }
}

/// Runs the schedules of `flows` until `stop` is cancelled, looking every
/// `tick`; returns when every running run has ended: whether every flow was
/// served until then (false when one could not be, as behind a pooler
/// without a direct URL).
pub async fn serve(
    flows: Vec<Scheduled>,
    tick: Duration,
    stop: CancellationToken,
    hooks: Arc<dyn Hooks>,
) -> bool {
    let services: Vec<JoinHandle<bool>> = flows
        .into_iter()
        .map(|flow| tokio::spawn(service(flow, tick, stop.clone(), Arc::clone(&hooks))))
        .collect();
    let mut served = true;
    for service in services {
        served &= service.await.unwrap_or(false);
    }
    served
}

/// One flow's schedules: stand by until leader, then fire on time.
/// Whether the flow was served until `stop`.
async fn service(
    flow: Scheduled,
    tick: Duration,
    stop: CancellationToken,
    hooks: Arc<dyn Hooks>,
) -> bool {
    let name = flow.flow.pipeline.name.clone();
    let note = |text: String| hooks.note(&format!("{name}: {text}"));
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut leading = None;
    let mut connected: Option<(Session, Records)> = None;
    let mut settled = tokio::time::Instant::now();
    let mut closed_orphans = false;
    let mut served = true;
    while !stop.is_cancelled() {
        if connected.is_none() {
            match flow.records().await {
                Ok(opened) => connected = Some(opened),
                Err(error) => note(format!("cannot reach the flow database: {error}")),
            }
        }
        if let Some((_, records)) = &connected {
            if leading.is_none() {
                match records.try_lead(&name).await {
                    Ok(Some(lock)) => {
                        note("leading the schedules".into());
                        leading = Some(lock);
                        settled = tokio::time::Instant::now() + SETTLE;
                        closed_orphans = false;
                    }
                    Ok(None) => {}
                    // Behind a pooler in transaction mode without `direct`:
                    // no lock would hold, so this flow is not scheduled.
                    Err(error @ flow_db::DbError::SessionNeeded { .. }) => {
                        let help = miette::Diagnostic::help(&error)
                            .map(|h| format!("; {h}"))
                            .unwrap_or_default();
                        note(format!("not scheduling: {error}{help}"));
                        served = false;
                        break;
                    }
                    Err(error) => note(format!("cannot take the lead: {error}")),
                }
            }
            if let Some(lock) = &leading
                && lock.simple_query("SELECT 1").await.is_err()
            {
                note("lost the lead".into());
                leading = None;
            }
            if leading.is_some() && tokio::time::Instant::now() >= settled {
                if !closed_orphans {
                    match fires::close_orphans(&name, records, &*hooks).await {
                        Ok(()) => closed_orphans = true,
                        Err(error) => note(format!(
                            "cannot close the fires a previous leader left: {error}"
                        )),
                    }
                }
                running.retain(|_, task| !task.is_finished());
                let due = fires::Due {
                    flow: &flow.flow,
                    records,
                    stop: &stop,
                    hooks: &hooks,
                };
                for schedule in &flow.flow.pipeline.schedules {
                    for (job, values) in schedule.jobs() {
                        if let Err(error) = due.fire(schedule, &job, &values, &mut running).await {
                            note(format!("schedule `{job}`: {error}"));
                        }
                    }
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(tick) => {}
        }
    }
    for (_, task) in running {
        let _ = task.await;
    }
    drop(leading);
    if let Some((session, _)) = connected {
        session.close().await;
    }
    served
}
