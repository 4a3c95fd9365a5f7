//! Read-only transactions that see one snapshot of a database: one
//! connection exports it, the others take it, so that an export's files or a
//! copy's tables (and `pg_dump --snapshot`) all see the same moment, as
//! `pg_dump -j` does.

use flow_engine::flow_db::tokio_postgres::{IsolationLevel, Transaction};
use flow_engine::flow_db::{Client, ClientTransaction, DbError, quote_literal};

/// A repeatable-read, read-only transaction on `client`: in the snapshot
/// `taken` names, or in a new one.
pub(crate) async fn begin<'a>(
    client: &'a mut Client,
    taken: Option<&str>,
) -> Result<ClientTransaction<'a>, DbError> {
    let values = client.values();
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    if let Some(id) = taken {
        transaction
            .batch_execute(&format!("SET TRANSACTION SNAPSHOT {}", quote_literal(id)))
            .await?;
    }
    // Behind a pooler the run's values come with each transaction (after
    // the snapshot, which must come first).
    flow_engine::flow_db::set_values(&transaction, values.as_deref()).await?;
    Ok(transaction)
}

/// Names the transaction's snapshot for others to take, while it lasts.
pub(crate) async fn export(transaction: &Transaction<'_>) -> Result<String, DbError> {
    Ok(transaction
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0))
}
