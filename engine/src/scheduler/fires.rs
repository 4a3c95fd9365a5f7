//! When a schedule's fires are due, which of them run, and the records that
//! make each fire happen once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Hooks, from_micros, micros};
use crate::flow_file::FlowFile;
use crate::pipeline::{Missed, Schedule};
use crate::records::Records;

/// How late a fire may be found and still count as on time.
const GRACE: Duration = Duration::from_secs(2);

/// What firing the due fires of a flow's schedules needs.
pub(super) struct Due<'a> {
    pub flow: &'a Arc<FlowFile>,
    pub records: &'a Records,
    pub stop: &'a CancellationToken,
    pub hooks: &'a Arc<dyn Hooks>,
}

impl Due<'_> {
    /// Records the fires of `job` that came since its last one, and starts a
    /// run for those its policy runs (as a task, kept in `running`).
    pub(super) async fn fire(
        &self,
        schedule: &Schedule,
        job: &str,
        values: &[(String, String)],
        running: &mut HashMap<String, JoinHandle<()>>,
    ) -> Result<(), String> {
        let (name, records) = (&self.flow.pipeline.name, self.records);
        let Some(trigger) = schedule.trigger() else {
            return Ok(());
        };
        let now = Timestamp::now();
        let fires = records.fires(name, job).await.map_err(|e| e.to_string())?;
        let Some(origin) = fires.last().map(|f| from_micros(f.fire_at)) else {
            self.claim(job, now, "registered").await?;
            return Ok(());
        };
        let due = trigger.between(origin, now, 10_000);
        if due.is_empty() {
            return Ok(());
        }
        let late = move |fire: &Timestamp| now.duration_since(*fire).unsigned_abs() > GRACE;
        let to_run = catch_up(&due, late, schedule.missed, schedule.max_missed);
        for fire in due.iter().filter(|f| !to_run.contains(f)) {
            if self.claim(job, *fire, "missed").await? {
                self.hooks.note(&format!(
                    "warning: {name}: schedule `{job}` missed its fire at {fire}"
                ));
            }
        }
        if running.get(job).is_some_and(|t| !t.is_finished()) {
            return self
                .skip(job, &to_run, "its previous run is still going")
                .await;
        }
        // Held until the run ends; a live process elsewhere still holding it
        // (a leader cut off from the lock's connection, say) keeps it from
        // running twice.
        let Some(hold) = records
            .try_hold_job(name, job)
            .await
            .map_err(|e| e.to_string())?
        else {
            return self
                .skip(
                    job,
                    &to_run,
                    "a run of it by another scheduler may still be going",
                )
                .await;
        };
        let mut claimed = Vec::new();
        for fire in to_run {
            if self.claim(job, fire, "started").await? {
                claimed.push(fire);
            }
        }
        if claimed.is_empty() {
            return Ok(());
        }
        let run = super::job::Job {
            flow: Arc::clone(self.flow),
            schedule: schedule.clone(),
            name: job.to_owned(),
            values: values.to_vec(),
            records: records.clone(),
            stop: self.stop.clone(),
            hooks: Arc::clone(self.hooks),
        };
        let task = tokio::spawn(async move {
            run.fires(claimed, late).await;
            drop(hold);
        });
        running.insert(job.to_owned(), task);
        Ok(())
    }

    /// Records a fire; whether this call is the one that recorded it.
    async fn claim(&self, job: &str, fire: Timestamp, status: &str) -> Result<bool, String> {
        self.records
            .claim_fire(&self.flow.pipeline.name, job, micros(fire), status)
            .await
            .map_err(|e| e.to_string())
    }

    /// Records each fire as skipped, saying why.
    async fn skip(&self, job: &str, fires: &[Timestamp], why: &str) -> Result<(), String> {
        for fire in fires {
            if self.claim(job, *fire, "skipped").await? {
                self.hooks.note(&format!(
                    "{}: schedule `{job}` fire at {fire} skipped: {why}",
                    self.flow.pipeline.name
                ));
            }
        }
        Ok(())
    }
}

/// Which of the due fires run. `skip`: only those on time; `all`: those on
/// time and the newest `max_missed` of the late ones; `latest`: the newest.
fn catch_up(
    due: &[Timestamp],
    late: impl Fn(&Timestamp) -> bool,
    missed: Missed,
    max_missed: u64,
) -> Vec<Timestamp> {
    match missed {
        Missed::Skip => due.iter().filter(|f| !late(f)).copied().collect(),
        Missed::All => {
            let limit = usize::try_from(max_missed).unwrap_or(usize::MAX);
            let keep_late: Vec<Timestamp> = due
                .iter()
                .filter(|f| late(f))
                .rev()
                .take(limit)
                .copied()
                .collect();
            due.iter()
                .filter(|f| !late(f) || keep_late.contains(f))
                .copied()
                .collect()
        }
        Missed::Latest => due.last().copied().into_iter().collect(),
    }
}

/// Closes the fires left `started` by a scheduler that is gone: those whose
/// job no live process holds.
pub(super) async fn close_orphans(
    name: &str,
    records: &Records,
    hooks: &dyn Hooks,
) -> Result<(), String> {
    for fire in records
        .started_fires(name)
        .await
        .map_err(|e| e.to_string())?
    {
        let Some(hold) = records
            .try_hold_job(name, &fire.schedule)
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        if records
            .interrupt_fire(name, &fire.schedule, fire.fire_at)
            .await
            .map_err(|e| e.to_string())?
        {
            hooks.note(&format!(
                "warning: {name}: schedule `{}` fire at {} was interrupted: the scheduler running it stopped",
                fire.schedule,
                from_micros(fire.fire_at)
            ));
        }
        drop(hold);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(list: &[i64]) -> Vec<Timestamp> {
        list.iter()
            .map(|s| Timestamp::from_second(*s).expect("time"))
            .collect()
    }

    /// Fires at 1..=5 s, found at 5.5 s: 1, 2 and 3 are late.
    fn decide(missed: Missed, max_missed: u64) -> Vec<Timestamp> {
        let due = seconds(&[1, 2, 3, 4, 5]);
        let late = |f: &Timestamp| f.as_second() <= 3;
        catch_up(&due, late, missed, max_missed)
    }

    #[test]
    fn all_runs_at_most_max_missed_late_fires_and_every_one_on_time() {
        assert_eq!(decide(Missed::All, 1), seconds(&[3, 4, 5]));
        assert_eq!(decide(Missed::All, 0), seconds(&[4, 5]));
        assert_eq!(decide(Missed::All, 10), seconds(&[1, 2, 3, 4, 5]));
        let every_one_late = seconds(&[1, 2]);
        assert_eq!(
            catch_up(&every_one_late, |_| true, Missed::All, 1),
            seconds(&[2])
        );
    }

    #[test]
    fn skip_runs_only_fires_on_time_and_latest_only_the_newest() {
        assert_eq!(decide(Missed::Skip, 10), seconds(&[4, 5]));
        assert_eq!(decide(Missed::Latest, 10), seconds(&[5]));
    }
}
