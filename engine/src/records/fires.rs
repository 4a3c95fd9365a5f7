//! The records of schedules' fires, and the advisory locks that elect a
//! leader and hold a job while it runs.

use flow_db::DbError;
use serde::Serialize;

use super::hostname;
use crate::Records;

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

pub(super) const MICROS: &str = "timestamptz 'epoch' + $3::bigint * interval '1 microsecond'";

impl Records {
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
}

pub(super) fn fire_record(row: &tokio_postgres::Row) -> FireRecord {
    FireRecord {
        schedule: row.get(0),
        fire_at: row.get(1),
        status: row.get(2),
        run_id: row.get(3),
    }
}
