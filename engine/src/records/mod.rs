//! Run records in the `_flow` schema of the flow database: every run, every
//! step of it, with status, attempts, timings, rows, bytes, error and
//! fingerprints. `flow runs`, `flow show`, `--resume` and skip-unchanged read
//! them back.
//!
//! A run that is still `running` but whose process is gone (killed, machine
//! rebooted) is marked `interrupted` the next time anyone reads the records
//! on that host.

use flow_db::{Database, DbError};

mod fires;
mod keys;
mod locks;
mod runs;
mod scope;

pub use fires::FireRecord;
pub use keys::{KeyCheck, KeyRecord, Scope};
pub use runs::{Counts, RunRecord, StepEnd, StepRecord};

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
CREATE TABLE IF NOT EXISTS _flow.keys (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    scope text NOT NULL,
    hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_active_name ON _flow.keys (name) WHERE revoked_at IS NULL;
ALTER TABLE _flow.runs ADD COLUMN IF NOT EXISTS attach text;
ALTER TABLE _flow.steps ADD COLUMN IF NOT EXISTS host text;
ALTER TABLE _flow.steps ADD COLUMN IF NOT EXISTS pid integer;
CREATE UNIQUE INDEX IF NOT EXISTS runs_attach ON _flow.runs (flow, attach) WHERE attach IS NOT NULL;
";

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
    /// An attached run belongs to no one process (its steps come from many,
    /// one after the other): there, a step left `running` by a process of
    /// this host that is gone is interrupted, and the run's status follows
    /// its steps again (an orchestrator's retry attaches the step anew).
    async fn mark_interrupted(&self) -> Result<(), DbError> {
        self.mark_interrupted_runs().await?;
        self.mark_interrupted_steps().await
    }

    async fn mark_interrupted_steps(&self) -> Result<(), DbError> {
        let client = self.database.client().await?;
        let host = hostname();
        let rows = client
            .query(
                "SELECT s.run_id, s.step, s.pid FROM _flow.steps s JOIN _flow.runs r ON r.id = s.run_id
                 WHERE r.attach IS NOT NULL AND s.status = 'running' AND s.host = $1 AND s.pid IS NOT NULL",
                &[&host],
            )
            .await?;
        let mut runs = std::collections::BTreeSet::new();
        for row in rows {
            let (run, step, pid): (i64, String, i32) = (row.get(0), row.get(1), row.get(2));
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let error = format!("its process ({pid} on {host}) ended before the step did");
            let changed = client
                .execute(
                    "UPDATE _flow.steps SET status = 'interrupted', finished_at = clock_timestamp(), error = $4
                     WHERE run_id = $1 AND step = $2 AND status = 'running' AND pid = $3",
                    &[&run, &step, &pid, &error],
                )
                .await?;
            if changed > 0 {
                runs.insert(run);
            }
        }
        // One connection at a time: a command's pool may hold only one.
        drop(client);
        for run in runs {
            self.finish_attached(run).await?;
        }
        Ok(())
    }

    async fn mark_interrupted_runs(&self) -> Result<(), DbError> {
        let client = self.database.client().await?;
        let host = hostname();
        let rows = client
            .query(
                "SELECT id, pid FROM _flow.runs WHERE status = 'running' AND host = $1 AND attach IS NULL",
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

    async fn try_lock(
        &self,
        space: &str,
        name: &str,
    ) -> Result<Option<flow_db::ClientWrapper>, DbError> {
        // Behind a pooler in transaction mode, a session lock needs the
        // server's own URL.
        let client = self
            .database
            .session_client("hold the schedule's advisory locks")
            .await?;
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
}

/// This machine's name, for telling whose runs were interrupted.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
