//! Advisory locks on the flow database: the leader of a flow's schedules,
//! and a job held while its run goes.

use flow_db::DbError;

use crate::Records;

impl Records {
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
}
