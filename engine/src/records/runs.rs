//! The records of runs and their steps.

use std::collections::HashMap;

use flow_db::DbError;
use serde::Serialize;

use super::hostname;
use crate::Records;
use crate::Success;

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
    /// Seconds from the run's start to the step's, when it started.
    pub offset: Option<f64>,
    /// Seconds the step took, or has taken so far while it runs.
    pub elapsed: Option<f64>,
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

pub(super) const RUN_COLUMNS: &str =
    "SELECT id, flow, file, environment, selection, selected, status,
    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    extract(epoch FROM finished_at - started_at)::float8, host FROM _flow.runs";

pub(super) fn run_record(row: &tokio_postgres::Row) -> RunRecord {
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

impl Records {
    pub async fn start_run(
        &self,
        flow: &str,
        file: &str,
        environment: &str,
        selection: &str,
        selected: &[String],
        vars: &str,
    ) -> Result<i64, DbError> {
        self.open_run(flow, file, environment, selection, selected, vars, None)
            .await
    }

    /// Records a run and its selected steps, pending. With `attach`, the
    /// run that key names (an orchestrator's run id), made by whichever
    /// process comes first: each process adds its steps to it, and two
    /// processes attaching at once get the same run.
    #[allow(clippy::too_many_arguments)]
    pub async fn open_run(
        &self,
        flow: &str,
        file: &str,
        environment: &str,
        selection: &str,
        selected: &[String],
        vars: &str,
        attach: Option<&str>,
    ) -> Result<i64, DbError> {
        let client = self.database.client().await?;
        let pid = i32::try_from(std::process::id()).unwrap_or(0);
        let row = client
            .query_one(
                "INSERT INTO _flow.runs (flow, file, environment, selection, selected, status, host, pid, vars, attach)
                 VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9)
                 ON CONFLICT (flow, attach) WHERE attach IS NOT NULL DO UPDATE
                   SET selected = ARRAY(SELECT DISTINCT s FROM unnest(_flow.runs.selected || EXCLUDED.selected) s ORDER BY s),
                       status = 'running', finished_at = NULL
                 RETURNING id",
                &[&flow, &file, &environment, &selection, &selected, &hostname(), &pid, &vars, &attach],
            )
            .await?;
        let id: i64 = row.get(0);
        client
            .execute(
                "INSERT INTO _flow.steps (run_id, step, status) SELECT $1, unnest($2::text[]), 'pending'
                 ON CONFLICT (run_id, step) DO UPDATE SET status = 'pending', error = NULL",
                &[&id, &selected],
            )
            .await?;
        Ok(id)
    }

    /// Ends an attached run's part: the run is failed when a step failed,
    /// going while a step is, and otherwise as its steps ended. Processes
    /// ending at once take turns on the run's row, so the last one sees
    /// every step.
    pub async fn finish_attached(&self, run: i64) -> Result<String, DbError> {
        let mut client = self.database.client().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute("SELECT FROM _flow.runs WHERE id = $1 FOR UPDATE", &[&run])
            .await?;
        let status: String = transaction
            .query_one(
                "UPDATE _flow.runs SET
                   status = s.status,
                   finished_at = CASE WHEN s.status = 'running' THEN NULL ELSE clock_timestamp() END
                 FROM (SELECT CASE
                         WHEN bool_or(status = 'failed') THEN 'failed'
                         WHEN bool_or(status IN ('pending', 'running')) THEN 'running'
                         WHEN bool_or(status = 'interrupted') THEN 'interrupted'
                         WHEN bool_or(status = 'cancelled') THEN 'cancelled'
                         ELSE 'succeeded' END AS status
                       FROM _flow.steps WHERE run_id = $1) s
                 WHERE id = $1 RETURNING _flow.runs.status",
                &[&run],
            )
            .await?
            .get(0);
        transaction.commit().await?;
        Ok(status)
    }

    pub async fn step_started(&self, run: i64, step: &str) -> Result<(), DbError> {
        let client = self.database.client().await?;
        client
            .execute(
                "UPDATE _flow.steps SET status = 'running', started_at = clock_timestamp(), attempts = attempts + 1,
                   host = $3, pid = $4
                 WHERE run_id = $1 AND step = $2",
                &[&run, &step, &hostname(), &i32::try_from(std::process::id()).unwrap_or(0)],
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
                        extract(epoch FROM finished_at - started_at)::float8, rows, bytes, note, error,
                        extract(epoch FROM started_at - (SELECT started_at FROM _flow.runs WHERE id = $1))::float8,
                        extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8
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
                offset: r.get(9),
                elapsed: r.get(10),
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

/// Counts for `/metrics`: runs by flow and status, each step's total time and
/// rows and bytes, and missed fires by schedule.
#[derive(Debug, Default)]
pub struct Counts {
    /// (flow, status, runs).
    pub runs: Vec<(String, String, i64)>,
    /// (flow, step, finished, seconds, rows, bytes).
    pub steps: Vec<(String, String, i64, f64, i64, i64)>,
    /// (flow, schedule, missed fires).
    pub missed: Vec<(String, String, i64)>,
    /// (flow, schedule, seconds the last fired run started after its fire
    /// was due).
    pub lag: Vec<(String, String, f64)>,
}

impl Records {
    pub async fn counts(&self) -> Result<Counts, DbError> {
        let client = self.database.client().await?;
        let runs = client
            .query(
                "SELECT flow, status, count(*) FROM _flow.runs GROUP BY 1, 2 ORDER BY 1, 2",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let steps = client
            .query(
                "SELECT r.flow, s.step, count(*),
                        coalesce(sum(extract(epoch FROM s.finished_at - s.started_at)), 0)::float8,
                        coalesce(sum(s.rows), 0)::bigint, coalesce(sum(s.bytes), 0)::bigint
                 FROM _flow.steps s JOIN _flow.runs r ON r.id = s.run_id
                 WHERE s.finished_at IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        let missed = client
            .query(
                "SELECT flow, schedule, count(*) FROM _flow.fires WHERE status = 'missed'
                 GROUP BY 1, 2 ORDER BY 1, 2",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let lag = client
            .query(
                "SELECT DISTINCT ON (f.flow, f.schedule) f.flow, f.schedule,
                        extract(epoch FROM r.started_at - f.fire_at)::float8
                 FROM _flow.fires f JOIN _flow.runs r ON r.id = f.run_id
                 ORDER BY f.flow, f.schedule, f.fire_at DESC",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Ok(Counts {
            runs,
            steps,
            missed,
            lag,
        })
    }
}
