//! `flow schedule`: the schedules of flow files as a long-lived service, and
//! `flow schedule list`.
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
//! that process (see `flow_plugin_sh::supervisor`). A leader that takes over
//! waits `SETTLE` before firing, so that the processes of a leader that died
//! are gone, then closes the fires that leader left `started` as
//! `interrupted`; a job still held by a live process elsewhere is not started
//! again but recorded `skipped`.
//! SIGTERM or Ctrl-C stop the service: running runs are cancelled cleanly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flow_engine::{Pipeline, Records, Registry, Schedule, Selection};
use jiff::Timestamp;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::args::{RunArgs, SelectArgs};
use crate::exit::Exit;
use crate::run::{base_dir, block_on, resolve_environment};
use crate::session::Session;
use crate::{load, output};

/// How late a fire may be found and still count as on time.
const GRACE: Duration = Duration::from_secs(2);

/// How long a new leader waits before firing: longer than a dead leader's
/// commands take to end (their supervisors look every 50 ms).
const SETTLE: Duration = Duration::from_secs(1);

struct Flow {
    file: PathBuf,
    base: PathBuf,
    pipeline: Arc<Pipeline>,
    /// The environment whose flow database keeps the records.
    env: Option<String>,
}

fn load_all(files: &[PathBuf], env: Option<&str>, registry: &Registry) -> Option<Vec<Flow>> {
    let mut flows = Vec::new();
    for file in files {
        let pipeline = load::load(file, registry)?;
        flows.push(Flow {
            file: file.clone(),
            base: base_dir(file),
            pipeline: Arc::new(pipeline),
            env: env.map(str::to_owned),
        });
    }
    Some(flows)
}

fn micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

fn from_micros(value: i64) -> Timestamp {
    Timestamp::from_microsecond(value).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Opens the flow database of a flow (the records live there).
async fn records(flow: &Flow) -> Result<(Session, Records), String> {
    let environment = resolve_environment(&flow.pipeline, &flow.base, flow.env.as_deref())
        .map_err(|e| e.to_string())?;
    let needed = std::collections::BTreeSet::from(["flow".to_owned()]);
    let session = Session::open(&environment, &flow.base, &needed, 4, &[])
        .await
        .map_err(|e| e.to_string())?;
    let records = match session.databases.get("flow") {
        Some(database) => Records::open(database).await.map_err(|e| e.to_string())?,
        None => return Err("no flow database".into()),
    };
    Ok((session, records))
}

pub fn list(files: &[PathBuf], env: Option<&str>, json: bool, registry: &Registry) -> Exit {
    let Some(flows) = load_all(files, env, registry) else {
        return Exit::Invalid;
    };
    block_on(async move {
        let now = Timestamp::now();
        let mut text = format!(
            "{:<12} {:<16} {:<26} {:<12} {:<26}\n",
            "flow", "schedule", "last fire (UTC)", "result", "next fire (UTC)"
        );
        let mut jobs_json = Vec::new();
        for flow in &flows {
            let last = match records(flow).await {
                Ok((session, records)) => {
                    let fires = records
                        .last_fires(&flow.pipeline.name, true)
                        .await
                        .unwrap_or_default();
                    session.close().await;
                    fires
                }
                Err(error) => {
                    output::note(&format!(
                        "{}: run history not read: {error}",
                        flow.file.display()
                    ));
                    Vec::new()
                }
            };
            for schedule in &flow.pipeline.schedules {
                let next = schedule.trigger().and_then(|t| t.next_after(now));
                for (job, _) in schedule.jobs() {
                    let fire = last.iter().find(|f| f.schedule == job);
                    jobs_json.push(serde_json::json!({
                        "flow": flow.pipeline.name,
                        "job": job,
                        "last_fire": fire.map(|f| from_micros(f.fire_at).to_string()),
                        "result": fire.map(|f| f.status.clone()),
                        "next_fire": next.map(|n| n.to_string()),
                    }));
                    text.push_str(&format!(
                        "{:<12} {:<16} {:<26} {:<12} {:<26}\n",
                        flow.pipeline.name,
                        job,
                        fire.map_or_else(
                            || "-".into(),
                            |f| from_micros(f.fire_at).strftime("%F %T").to_string()
                        ),
                        fire.map_or("-", |f| f.status.as_str()),
                        next.map_or_else(|| "-".into(), |n| n.strftime("%F %T").to_string()),
                    ));
                }
            }
        }
        if json {
            output::out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&jobs_json).unwrap_or_default()
            ));
        } else {
            output::out(&text);
        }
        Exit::Success
    })
}

pub fn serve(files: &[PathBuf], tick_ms: u64, env: Option<&str>, registry: &Registry) -> Exit {
    if files.is_empty() {
        output::note(
            "name the flow files whose schedules to run: `flow schedule flows/parcels.flow`",
        );
        return Exit::Invalid;
    }
    let Some(flows) = load_all(files, env, registry) else {
        return Exit::Invalid;
    };
    if flows.iter().all(|f| f.pipeline.schedules.is_empty()) {
        output::note("these flows have no `schedule` blocks");
        return Exit::Invalid;
    }
    block_on(async move {
        let stop = CancellationToken::new();
        let _ = crate::run::cancel_on_signal(stop.clone(), "stopping: cancelling running runs");
        let tick = Duration::from_millis(tick_ms.max(50));
        let services: Vec<JoinHandle<()>> = flows
            .into_iter()
            .map(|flow| tokio::spawn(service(flow, tick, stop.clone())))
            .collect();
        for service in services {
            let _ = service.await;
        }
        output::note("scheduler stopped");
        Exit::Success
    })
}

/// One flow's schedules: stand by until leader, then fire on time.
async fn service(flow: Flow, tick: Duration, stop: CancellationToken) {
    let name = flow.pipeline.name.clone();
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut leading = None;
    let mut connected: Option<(Session, Records)> = None;
    let mut settled = tokio::time::Instant::now();
    let mut closed_orphans = false;
    while !stop.is_cancelled() {
        if connected.is_none() {
            match records(&flow).await {
                Ok(opened) => connected = Some(opened),
                Err(error) => {
                    output::note(&format!("{name}: cannot reach the flow database: {error}"))
                }
            }
        }
        if let Some((_, records)) = &connected {
            if leading.is_none() {
                match records.try_lead(&name).await {
                    Ok(Some(lock)) => {
                        output::note(&format!("{name}: leading the schedules"));
                        leading = Some(lock);
                        settled = tokio::time::Instant::now() + SETTLE;
                        closed_orphans = false;
                    }
                    Ok(None) => {}
                    Err(error) => output::note(&format!("{name}: cannot take the lead: {error}")),
                }
            }
            if let Some(lock) = &leading
                && lock.simple_query("SELECT 1").await.is_err()
            {
                output::note(&format!("{name}: lost the lead"));
                leading = None;
            }
            if leading.is_some() && tokio::time::Instant::now() >= settled {
                if !closed_orphans {
                    match close_orphans(&name, records).await {
                        Ok(()) => closed_orphans = true,
                        Err(error) => output::note(&format!(
                            "{name}: cannot close the fires a previous leader left: {error}"
                        )),
                    }
                }
                running.retain(|_, task| !task.is_finished());
                for schedule in &flow.pipeline.schedules {
                    for (job, values) in schedule.jobs() {
                        let fired =
                            fire_due(&flow, schedule, &job, &values, records, &mut running, &stop)
                                .await;
                        if let Err(error) = fired {
                            output::note(&format!("{name}: schedule `{job}`: {error}"));
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
}

#[allow(clippy::too_many_arguments)]
async fn fire_due(
    flow: &Flow,
    schedule: &Schedule,
    job: &str,
    values: &[(String, String)],
    records: &Records,
    running: &mut HashMap<String, JoinHandle<()>>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let name = &flow.pipeline.name;
    let Some(trigger) = schedule.trigger() else {
        return Ok(());
    };
    let now = Timestamp::now();
    let fires = records.fires(name, job).await.map_err(|e| e.to_string())?;
    let Some(origin) = fires.last().map(|f| from_micros(f.fire_at)) else {
        records
            .claim_fire(name, job, micros(now), "registered")
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    };
    let due = trigger.between(origin, now, 10_000);
    if due.is_empty() {
        return Ok(());
    }
    let late = move |fire: &Timestamp| now.duration_since(*fire).unsigned_abs() > GRACE;
    let to_run = catch_up(&due, late, &schedule.missed, schedule.max_missed);
    for fire in due.iter().filter(|f| !to_run.contains(f)) {
        if records
            .claim_fire(name, job, micros(*fire), "missed")
            .await
            .map_err(|e| e.to_string())?
        {
            output::note(&format!(
                "warning: {name}: schedule `{job}` missed its fire at {fire}"
            ));
        }
    }
    // Records each fire as skipped, saying why.
    let skip = |why: &'static str| {
        let to_run = &to_run;
        async move {
            for fire in to_run {
                if records
                    .claim_fire(name, job, micros(*fire), "skipped")
                    .await
                    .map_err(|e| e.to_string())?
                {
                    output::note(&format!(
                        "{name}: schedule `{job}` fire at {fire} skipped: {why}"
                    ));
                }
            }
            Ok::<(), String>(())
        }
    };
    if running.get(job).is_some_and(|t| !t.is_finished()) {
        return skip("its previous run is still going").await;
    }
    // Held until the run ends; a live process elsewhere still holding it
    // (a leader cut off from the lock's connection, say) keeps it from
    // running twice.
    let Some(hold) = records
        .try_hold_job(name, job)
        .await
        .map_err(|e| e.to_string())?
    else {
        return skip("a run of it by another scheduler may still be going").await;
    };
    let mut claimed = Vec::new();
    for fire in to_run {
        if records
            .claim_fire(name, job, micros(fire), "started")
            .await
            .map_err(|e| e.to_string())?
        {
            claimed.push(fire);
        }
    }
    if claimed.is_empty() {
        return Ok(());
    }
    let task = {
        let (pipeline, file, base, schedule, records, stop) = (
            Arc::clone(&flow.pipeline),
            flow.file.clone(),
            flow.base.clone(),
            schedule.clone(),
            records.clone(),
            stop.clone(),
        );
        let (job, values) = (job.to_owned(), values.to_vec());
        tokio::spawn(async move {
            for fire in claimed {
                if late(&fire) {
                    output::note(&format!(
                        "warning: {}: schedule `{job}` runs its fire at {fire} late",
                        pipeline.name
                    ));
                }
                output::note(&format!(
                    "{}: schedule `{job}` fires ({fire})",
                    pipeline.name
                ));
                let (status, run_id) =
                    run_once(&pipeline, &file, &base, &schedule, &job, &values, &stop).await;
                if let Err(error) = records
                    .finish_fire(&pipeline.name, &job, micros(fire), status, run_id)
                    .await
                {
                    output::note(&format!(
                        "{}: could not record a fire: {error}",
                        pipeline.name
                    ));
                }
                if stop.is_cancelled() {
                    break;
                }
            }
            drop(hold);
        })
    };
    running.insert(job.to_owned(), task);
    Ok(())
}

/// Which of the due fires run. `skip`: only those on time; `all`: those on
/// time and the newest `max_missed` of the late ones; `latest`: the newest.
fn catch_up(
    due: &[Timestamp],
    late: impl Fn(&Timestamp) -> bool,
    missed: &str,
    max_missed: u64,
) -> Vec<Timestamp> {
    match missed {
        "skip" => due.iter().filter(|f| !late(f)).copied().collect(),
        "all" => {
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
        _ => due.last().copied().into_iter().collect(),
    }
}

/// Closes the fires left `started` by a scheduler that is gone: those whose
/// job no live process holds.
async fn close_orphans(name: &str, records: &Records) -> Result<(), String> {
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
            output::note(&format!(
                "warning: {name}: schedule `{}` fire at {} was interrupted: the scheduler running it stopped",
                fire.schedule,
                from_micros(fire.fire_at)
            ));
        }
        drop(hold);
    }
    Ok(())
}

/// One run of a schedule: its groups and steps, in its environment.
async fn run_once(
    pipeline: &Arc<Pipeline>,
    file: &Path,
    base: &Path,
    schedule: &Schedule,
    job: &str,
    values: &[(String, String)],
    stop: &CancellationToken,
) -> (&'static str, Option<i64>) {
    let mut select = SelectArgs::default();
    for item in &schedule.run {
        if pipeline.groups.contains(item) || item == flow_engine::MANUAL_GROUP {
            select.groups.push(item.clone());
        } else {
            select.steps.push(item.clone());
        }
    }
    let selection: Selection = select.selection();
    let Ok(selected) = selection.apply(pipeline) else {
        return ("failed", None);
    };
    let environment = match resolve_environment(pipeline, base, schedule.env.as_deref()) {
        Ok(environment) => environment,
        Err(error) => {
            output::error(error);
            return ("failed", None);
        }
    };
    let args = RunArgs {
        env: schedule.env.clone(),
        jobs: 4,
        keep_going: false,
        db_connections: 8,
        resume: false,
        force: false,
        json: false,
        plain: true,
        vars: values.to_vec(),
    };
    let text = format!("schedule {job}");
    let (exit, run_id) = crate::run::execute(
        Arc::clone(pipeline),
        selected,
        &environment,
        base,
        file,
        &text,
        &args,
        &stop.child_token(),
    )
    .await;
    let status = match exit {
        Exit::Success => "succeeded",
        _ if stop.is_cancelled() => "cancelled",
        _ => "failed",
    };
    (status, run_id)
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
    fn decide(missed: &str, max_missed: u64) -> Vec<Timestamp> {
        let due = seconds(&[1, 2, 3, 4, 5]);
        let late = |f: &Timestamp| f.as_second() <= 3;
        catch_up(&due, late, missed, max_missed)
    }

    #[test]
    fn all_runs_at_most_max_missed_late_fires_and_every_one_on_time() {
        assert_eq!(decide("all", 1), seconds(&[3, 4, 5]));
        assert_eq!(decide("all", 0), seconds(&[4, 5]));
        assert_eq!(decide("all", 10), seconds(&[1, 2, 3, 4, 5]));
        let every_one_late = seconds(&[1, 2]);
        assert_eq!(catch_up(&every_one_late, |_| true, "all", 1), seconds(&[2]));
    }

    #[test]
    fn skip_runs_only_fires_on_time_and_latest_only_the_newest() {
        assert_eq!(decide("skip", 10), seconds(&[4, 5]));
        assert_eq!(decide("latest", 10), seconds(&[5]));
    }
}
