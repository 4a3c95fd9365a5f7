//! Run records in the `_flow` schema of the flow database: every run, every
//! step of it, with status, attempts, timings, rows, bytes, error and
//! fingerprints. `flow runs`, `flow show`, `--resume` and skip-unchanged read
//! them back.
//!
//! A run that is still `running` but whose process is gone (killed, machine
//! rebooted) is marked `interrupted` the next time anyone reads the records
//! on that host.

use std::collections::HashMap;

use flow_db::{Database, DbError};
use serde::Serialize;

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS _flow;
CREATE TABLE IF NOT EXISTS _flow.runs (
    id bigserial PRIMARY KEY,
    flow text NOT NULL,
    file text NOT NULL,
    environment text NOT NULL,
    selection text NOT NULL,
    selected text[] NOT NULL,
    status text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    host text NOT NULL,
    pid integer NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_flow ON _flow.runs (flow, id DESC);
CREATE TABLE IF NOT EXISTS _flow.steps (
    run_id bigint NOT NULL REFERENCES _flow.runs ON DELETE CASCADE,
    step text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    started_at timestamptz,
    finished_at timestamptz,
    rows bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    note text,
    error text,
    input_fingerprint text,
    output_fingerprint text,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS _flow.units (
    run_id bigint NOT NULL,
    step text NOT NULL,
    unit text NOT NULL,
    status text NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    rows bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    error text,
    PRIMARY KEY (run_id, step, unit),
    FOREIGN KEY (run_id, step) REFERENCES _flow.steps ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS _flow.fires (
    flow text NOT NULL,
    schedule text NOT NULL,
    fire_at timestamptz NOT NULL,
    status text NOT NULL,
    run_id bigint,
    host text,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (flow, schedule, fire_at)
);
ALTER TABLE _flow.fires ADD COLUMN IF NOT EXISTS closed_at timestamptz;
ALTER TABLE _flow.runs ADD COLUMN IF NOT EXISTS vars text NOT NULL DEFAULT '';
";

/// A schedule's fire as recorded: `registered` (when the scheduler first saw
/// it, the origin for missed fires), `started`, `succeeded`, `failed`,
/// `cancelled`, `missed`, `skipped` (a run of it was still going) or
/// `interrupted` (the scheduler running it died; `closed_at` is when another
/// noticed).
#[derive(Debug, Clone, Serialize)]
pub struct FireRecord {
    pub schedule: String,
    /// Microseconds since the Unix epoch.
    pub fire_at: i64,
    pub status: String,
    pub run_id: Option<i64>,
}

const MICROS: &str = "timestamptz 'epoch' + $3::bigint * interval '1 microsecond'";

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub flow: String,
    pub file: String,
    pub environment: String,
    pub selection: String,
    pub selected: Vec<String>,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seconds: Option<f64>,
    pub host: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: String,
    pub status: String,
    pub attempts: i32,
    pub started_at: Option<String>,
    pub seconds: Option<f64>,
    pub rows: i64,
    pub bytes: i64,
    pub note: Option<String>,
    pub error: Option<String>,
}

/// The run's values as one text, the key of a fan-out item's history.
pub fn vars_key(vars: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = vars.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last success of a step: what skip-unchanged compares against.
#[derive(Debug, Clone)]
pub struct Success {
    pub run_id: i64,
    pub input: String,
    pub output: String,
}

/// What is written when a step ends.
#[derive(Debug, Clone, Default)]
pub struct StepEnd {
    pub status: &'static str,
    pub attempts: u32,
    pub seconds: f64,
    pub rows: u64,
    pub bytes: u64,
    pub note: Option<String>,
    pub error: Option<String>,
    pub input_fingerprint: Option<String>,
    pub output_fingerprint: Option<String>,
}

#[derive(Clone)]
pub struct Records {
    database: Database,
}

impl Records {
    /// Opens the records, creating the schema on first use.
    pub async fn open(database: &Database) -> Result<Self, DbError> {
        let mut client = database.client().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext('flow records schema'))",
                &[],
            )
            .await?;
        transaction.batch_execute(SCHEMA).await?;
        transaction.commit().await?;
        let records = Self {
            database: database.clone(),
        };
        records.mark_interrupted().await?;
        Ok(records)
    }

    /// The records, if this database has any; creates and changes nothing.
    pub async fn existing(database: &Database) -> Result<Option<Self>, DbError> {
        let client = database.client().await?;
        let present: bool = client
            .query_one("SELECT to_regclass('_flow.steps') IS NOT NULL", &[])
            .await?
            .get(0);
        Ok(present.then(|| Self {
            database: database.clone(),
        }))
    }

    /// Runs left `running` by a process of this host that no longer exists.
    async fn mark_interrupted(&self) -> Result<(), DbError> {
        let client = self.database.client().await?;
        let host = hostname();
        let rows = client
            .query(
                "SELECT id, pid FROM _flow.runs WHERE status = 'running' AND host = $1",
                &[&host],
            )
            .await?;
        for row in rows {
            let (id, pid): (i64, i32) = (row.get(0), row.get(1));
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                client
                    .execute("UPDATE _flow.runs SET status = 'interrupted' WHERE id = $1 AND status = 'running'", &[&id])
                    .await?;
                client
                    .execute(
                        "UPDATE _flow.steps SET status = 'interrupted' WHERE run_id = $1 AND status IN ('running', 'pending')",
                        &[&id],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn start_run(
        &self,
        flow: &str,
        file: &str,
        environment: &str,
        selection: &str,
        selected: &[String],
        vars: &str,
    ) -> Result<i64, DbError> {
        let client = self.database.client().await?;
        let pid = i32::try_from(std::process::id()).unwrap_or(0);
        let row = client
            .query_one(
                "INSERT INTO _flow.runs (flow, file, environment, selection, selected, status, host, pid, vars)
                 VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8) RETURNING id",
                &[&flow, &file, &environment, &selection, &selected, &hostname(), &pid, &vars],
            )
            .await?;
        let id: i64 = row.get(0);
        client
            .execute(
                "INSERT INTO _flow.steps (run_id, step, status) SELECT $1, unnest($2::text[]), 'pending'",
                &[&id, &selected],
            )
            .await?;
        Ok(id)
    }

    pub async fn step_started(&self, run: i64, step: &str) -> Result<(), DbError> {
        let client = self.database.client().await?;
        client
            .execute(
                "UPDATE _flow.steps SET status = 'running', started_at = clock_timestamp(), attempts = attempts + 1
                 WHERE run_id = $1 AND step = $2",
                &[&run, &step],
            )
            .await?;
        Ok(())
    }

    pub async fn step_finished(&self, run: i64, step: &str, end: &StepEnd) -> Result<(), DbError> {
        let client = self.database.client().await?;
        let (rows, bytes) = (
            i64::try_from(end.rows).unwrap_or(i64::MAX),
            i64::try_from(end.bytes).unwrap_or(i64::MAX),
        );
        let attempts = i32::try_from(end.attempts).unwrap_or(i32::MAX);
        client
            .execute(
                "UPDATE _flow.steps SET status = $3, attempts = $4,
                    started_at = coalesce(started_at, clock_timestamp() - make_interval(secs => $5)),
                    finished_at = clock_timestamp(), rows = $6, bytes = $7, note = $8, error = $9,
                    input_fingerprint = $10, output_fingerprint = $11
                 WHERE run_id = $1 AND step = $2",
                &[
                    &run,
                    &step,
                    &end.status,
                    &attempts,
                    &end.seconds,
                    &rows,
                    &bytes,
                    &end.note,
                    &end.error,
                    &end.input_fingerprint,
                    &end.output_fingerprint,
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn finish_run(&self, run: i64, status: &str) -> Result<(), DbError> {
        let client = self.database.client().await?;
        client
            .execute(
                "UPDATE _flow.runs SET status = $2, finished_at = clock_timestamp() WHERE id = $1",
                &[&run, &status],
            )
            .await?;
        Ok(())
    }

    /// Records a fire unless one is recorded already for that time: the one
    /// place that decides that a fire happens, so it happens once whatever
    /// the number of schedulers. Returns whether this call recorded it.
    pub async fn claim_fire(
        &self,
        flow: &str,
        schedule: &str,
        fire_at: i64,
        status: &str,
    ) -> Result<bool, DbError> {
        let client = self.database.client().await?;
        let inserted = client
            .execute(
                &format!(
                    "INSERT INTO _flow.fires (flow, schedule, fire_at, status, host) VALUES ($1, $2, {MICROS}, $4, $5)
                     ON CONFLICT DO NOTHING"
                ),
                &[&flow, &schedule, &fire_at, &status, &hostname()],
            )
            .await?;
        Ok(inserted == 1)
    }

    pub async fn finish_fire(
        &self,
        flow: &str,
        schedule: &str,
        fire_at: i64,
        status: &str,
        run_id: Option<i64>,
    ) -> Result<(), DbError> {
        let client = self.database.client().await?;
        client
            .execute(
                &format!("UPDATE _flow.fires SET status = $4, run_id = $5, closed_at = clock_timestamp() WHERE flow = $1 AND schedule = $2 AND fire_at = {MICROS}"),
                &[&flow, &schedule, &fire_at, &status, &run_id],
            )
            .await?;
        Ok(())
    }

    /// The newest recorded fire of each schedule of a flow (of any status,
    /// or only of real fires).
    pub async fn last_fires(
        &self,
        flow: &str,
        real_only: bool,
    ) -> Result<Vec<FireRecord>, DbError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT ON (schedule) schedule, (extract(epoch FROM fire_at) * 1000000)::bigint, status, run_id
                 FROM _flow.fires WHERE flow = $1 AND (NOT $2 OR status <> 'registered')
                 ORDER BY schedule, fire_at DESC",
                &[&flow, &real_only],
            )
            .await?;
        Ok(rows.iter().map(fire_record).collect())
    }

    /// Every recorded fire of a schedule, oldest first.
    pub async fn fires(&self, flow: &str, schedule: &str) -> Result<Vec<FireRecord>, DbError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT schedule, (extract(epoch FROM fire_at) * 1000000)::bigint, status, run_id
                 FROM _flow.fires WHERE flow = $1 AND schedule = $2 ORDER BY fire_at",
                &[&flow, &schedule],
            )
            .await?;
        Ok(rows.iter().map(fire_record).collect())
    }

    /// The fires of a flow still marked `started`, oldest first.
    pub async fn started_fires(&self, flow: &str) -> Result<Vec<FireRecord>, DbError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT schedule, (extract(epoch FROM fire_at) * 1000000)::bigint, status, run_id
                 FROM _flow.fires WHERE flow = $1 AND status = 'started' ORDER BY fire_at",
                &[&flow],
            )
            .await?;
        Ok(rows.iter().map(fire_record).collect())
    }

    /// Closes a fire whose scheduler died while running it: `interrupted`,
    /// with the time this was noticed, unless it was closed meanwhile.
    pub async fn interrupt_fire(
        &self,
        flow: &str,
        schedule: &str,
        fire_at: i64,
    ) -> Result<bool, DbError> {
        let client = self.database.client().await?;
        let closed = client
            .execute(
                &format!(
                    "UPDATE _flow.fires SET status = 'interrupted', closed_at = clock_timestamp()
                     WHERE flow = $1 AND schedule = $2 AND fire_at = {MICROS} AND status = 'started'"
                ),
                &[&flow, &schedule, &fire_at],
            )
            .await?;
        Ok(closed == 1)
    }

    /// Holds a schedule job for the process that runs it, on a connection of
    /// its own (a session advisory lock): while that process lives, no other
    /// scheduler can start the job; when it dies, the server lets go.
    pub async fn try_hold_job(
        &self,
        flow: &str,
        job: &str,
    ) -> Result<Option<flow_db::ClientWrapper>, DbError> {
        self.try_lock(&format!("flow job {flow}"), job).await
    }

    /// Takes the scheduler's leadership for a flow on a connection of its own,
    /// held as long as the returned client lives (a session advisory lock).
    pub async fn try_lead(&self, flow: &str) -> Result<Option<flow_db::ClientWrapper>, DbError> {
        self.try_lock("flow schedule", flow).await
    }

    async fn try_lock(
        &self,
        space: &str,
        name: &str,
    ) -> Result<Option<flow_db::ClientWrapper>, DbError> {
        let client = self.database.client().await?;
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))",
                &[&space, &name],
            )
            .await?
            .get(0);
        // Taken out of the pool: when it is dropped, the connection closes and
        // the lock goes with it, for another scheduler to take.
        Ok(locked.then(|| flow_db::Client::take(client)))
    }

    /// The latest runs, newest first.
    pub async fn runs(&self, flow: Option<&str>, limit: i64) -> Result<Vec<RunRecord>, DbError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                &format!(
                    "{RUN_COLUMNS} WHERE $1::text IS NULL OR flow = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[&flow, &limit],
            )
            .await?;
        Ok(rows.iter().map(run_record).collect())
    }

    pub async fn run(&self, id: i64) -> Result<Option<(RunRecord, Vec<StepRecord>)>, DbError> {
        let client = self.database.client().await?;
        let Some(row) = client
            .query_opt(&format!("{RUN_COLUMNS} WHERE id = $1"), &[&id])
            .await?
        else {
            return Ok(None);
        };
        let steps = client
            .query(
                "SELECT step, status, attempts, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        extract(epoch FROM finished_at - started_at)::float8, rows, bytes, note, error
                 FROM _flow.steps WHERE run_id = $1 ORDER BY started_at NULLS LAST, step",
                &[&id],
            )
            .await?;
        let steps = steps
            .iter()
            .map(|r| StepRecord {
                step: r.get(0),
                status: r.get(1),
                attempts: r.get(2),
                started_at: r.get(3),
                seconds: r.get(4),
                rows: r.get(5),
                bytes: r.get(6),
                note: r.get(7),
                error: r.get(8),
            })
            .collect();
        Ok(Some((run_record(&row), steps)))
    }

    /// The newest run of a flow.
    pub async fn last_run(
        &self,
        flow: &str,
    ) -> Result<Option<(RunRecord, Vec<StepRecord>)>, DbError> {
        let client = self.database.client().await?;
        let id: Option<i64> = client
            .query_opt(
                "SELECT id FROM _flow.runs WHERE flow = $1 ORDER BY id DESC LIMIT 1",
                &[&flow],
            )
            .await?
            .map(|r| r.get(0));
        match id {
            Some(id) => self.run(id).await,
            None => Ok(None),
        }
    }

    /// For every step of a flow, its latest success with fingerprints (a skip
    /// carries the same ones, so it adds nothing).
    /// The last success of each step of a flow among the runs with the same
    /// values (`vars_key`): a fan-out job's item has a history of its own.
    pub async fn successes(
        &self,
        flow: &str,
        vars_key: &str,
    ) -> Result<HashMap<String, Success>, DbError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT ON (s.step) s.step, s.run_id, s.input_fingerprint, s.output_fingerprint
                 FROM _flow.steps s JOIN _flow.runs r ON r.id = s.run_id
                 WHERE r.flow = $1 AND r.vars = $2 AND s.status = 'succeeded' AND s.output_fingerprint IS NOT NULL
                   -- a rollback since undoes what the success did
                   AND NOT EXISTS (SELECT FROM _flow.steps u JOIN _flow.runs ur ON ur.id = u.run_id
                                   WHERE ur.flow = $1 AND u.step = s.step AND u.status = 'rolled_back'
                                     AND u.run_id > s.run_id)
                 ORDER BY s.step, s.run_id DESC",
                &[&flow, &vars_key],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    Success {
                        run_id: r.get(1),
                        input: r.get::<_, Option<String>>(2).unwrap_or_default(),
                        output: r.get(3),
                    },
                )
            })
            .collect())
    }
}

const RUN_COLUMNS: &str = "SELECT id, flow, file, environment, selection, selected, status,
    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    extract(epoch FROM finished_at - started_at)::float8, host FROM _flow.runs";

fn fire_record(row: &tokio_postgres::Row) -> FireRecord {
    FireRecord {
        schedule: row.get(0),
        fire_at: row.get(1),
        status: row.get(2),
        run_id: row.get(3),
    }
}

fn run_record(row: &tokio_postgres::Row) -> RunRecord {
    RunRecord {
        id: row.get(0),
        flow: row.get(1),
        file: row.get(2),
        environment: row.get(3),
        selection: row.get(4),
        selected: row.get(5),
        status: row.get(6),
        started_at: row.get(7),
        finished_at: row.get(8),
        seconds: row.get(9),
        host: row.get(10),
    }
}

/// This machine's name, for telling whose runs were interrupted.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
