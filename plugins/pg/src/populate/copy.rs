//! Binary COPY from the flow database to the API database.

use bytes::Bytes;
use flow_engine::flow_db::quote_ident;
use flow_engine::flow_db::tokio_postgres::{CopyInSink, CopyOutStream};
use flow_engine::{RunContext, StepError};
use futures_util::{SinkExt as _, StreamExt as _};

use crate::shape::Table;

/// Streams a model table into a COPY sink: binary COPY from one connection
/// to the other, chunk by chunk, nothing whole in memory.
pub(crate) async fn pump(
    context: &RunContext,
    source: CopyOutStream,
    sink: CopyInSink<Bytes>,
) -> Result<(u64, u64), StepError> {
    futures_util::pin_mut!(source, sink);
    // COPY TO sends a message per row: gather them into larger writes.
    const BATCH: usize = 256 * 1024;
    let mut buffer = bytes::BytesMut::with_capacity(BATCH);
    let mut bytes = 0u64;
    while let Some(chunk) = source.next().await {
        let chunk = chunk?;
        buffer.extend_from_slice(&chunk);
        if buffer.len() >= BATCH {
            bytes += buffer.len() as u64;
            context.progress.add_bytes(buffer.len() as u64);
            sink.feed(buffer.split().freeze()).await?;
        }
    }
    if !buffer.is_empty() {
        bytes += buffer.len() as u64;
        context.progress.add_bytes(buffer.len() as u64);
        sink.feed(buffer.split().freeze()).await?;
    }
    let rows = sink.as_mut().finish().await?;
    context.progress.add_rows(rows);
    Ok((rows, bytes))
}

pub(super) fn copy_out_sql(schema: &str, table: &Table) -> String {
    format!(
        "COPY {}.{} ({}) TO STDOUT (FORMAT binary)",
        quote_ident(schema),
        quote_ident(&table.name),
        table.column_list()
    )
}

pub(super) fn copy_in_sql(target: &str, table: &Table) -> String {
    format!(
        "COPY {target} ({}) FROM STDIN (FORMAT binary)",
        table.column_list()
    )
}
