//! A large CSV file into its table over several connections at once.
//!
//! One COPY is one server process parsing one stream, so a single large file
//! uses one core of the server however many it has. Here the file is cut
//! into blocks at record boundaries (a newline outside quotes: the reader
//! only counts quote characters, it does not parse), and the blocks go round
//! robin to several COPY streams into a new table beside the old one. When
//! every stream has committed, one short transaction puts the new table in
//! the old one's place by renaming, so a reader sees the old rows or the new
//! ones, never a mix.
//!
//! The rename keeps what `CREATE TABLE ... (LIKE ... INCLUDING ALL)`
//! carries (columns, defaults, constraints, indexes, comments) but not
//! what depends on the old table by its identity: a table that a view, a
//! foreign key or a grant refers to is loaded by the single stream instead
//! (in one transaction, as before). So is a file whose load fails: the
//! single stream then reports the line and column at fault, or sends bad
//! rows to the reject table under `max_errors`.

use std::path::Path;

use bytes::Bytes;
use flow_engine::flow_db::{CancelOnDrop, Database, DbError, names, quote_ident};
use flow_engine::{RunContext, StepError};
use futures_util::SinkExt as _;

/// Files from this size on are loaded over several streams.
pub const PARALLEL_FROM: u64 = 64 * 1024 * 1024;

/// The size of the blocks dealt to the streams.
const BLOCK: usize = 1024 * 1024;

/// How many streams: one per core of this machine, within the pool.
pub fn streams(database: &Database) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    cores.min(database.pool_size()).min(8)
}

/// Whether a table can be replaced by a new one under its name: nothing
/// refers to it by identity (views, foreign keys, grants to others).
pub async fn replaceable(database: &Database, table: &str) -> Result<bool, StepError> {
    let client = database.client().await?;
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL
                AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.refobjid = to_regclass($1)
                                AND d.classid = 'pg_rewrite'::regclass)
                AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.confrelid = to_regclass($1))
                AND (SELECT relacl IS NULL FROM pg_class WHERE oid = to_regclass($1))",
            &[&table],
        )
        .await?;
    Ok(row.get(0))
}

/// Loads `file` into `schema.name` over `streams` connections; returns rows
/// and bytes. On failure the new table is dropped and the old one is as it
/// was.
pub async fn load(
    context: &RunContext,
    database: &Database,
    schema: &str,
    name: &str,
    file: &Path,
    streams: usize,
) -> Result<(u64, u64), StepError> {
    let table = format!("{}.{}", quote_ident(schema), quote_ident(name));
    let staging_name = names::fit_with(name, "__flow_load");
    let staging = format!("{}.{}", quote_ident(schema), quote_ident(&staging_name));
    let old = quote_ident(&names::fit_with(name, "__flow_old"));
    database
        .client()
        .await?
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {staging}; CREATE TABLE {staging} (LIKE {table} INCLUDING ALL)"
        ))
        .await
        .map_err(DbError::from)?;
    let loaded = copy_streams(context, database, &staging, file, streams).await;
    let client = database.client().await?;
    let (rows, bytes) = match loaded {
        Ok(done) => done,
        Err(error) => {
            let _ = client
                .batch_execute(&format!("DROP TABLE IF EXISTS {staging}"))
                .await;
            return Err(error);
        }
    };
    let switched = client
        .batch_execute(&format!(
            "BEGIN;
             ALTER TABLE {table} RENAME TO {old};
             ALTER TABLE {staging} RENAME TO {};
             DROP TABLE {schema_q}.{old};
             COMMIT",
            quote_ident(name),
            schema_q = quote_ident(schema)
        ))
        .await;
    if let Err(error) = switched {
        let _ = client
            .batch_execute(&format!("ROLLBACK; DROP TABLE IF EXISTS {staging}"))
            .await;
        return Err(DbError::from(error).into());
    }
    context.progress.add_rows(rows);
    Ok((rows, bytes))
}

async fn copy_streams(
    context: &RunContext,
    database: &Database,
    staging: &str,
    file: &Path,
    streams: usize,
) -> Result<(u64, u64), StepError> {
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..streams {
        let (send, mut receive) = tokio::sync::mpsc::channel::<Bytes>(4);
        senders.push(send);
        let mut client = database.client().await?;
        let copy = format!("COPY {staging} FROM STDIN WITH (FORMAT csv)");
        workers.push(async move {
            let guard = CancelOnDrop::new(&client);
            // In a transaction, where COPY's exchanges stay on one server
            // behind a pooler.
            let transaction = client.transaction().await?;
            let sink = transaction.copy_in::<_, Bytes>(&copy).await?;
            futures_util::pin_mut!(sink);
            while let Some(block) = receive.recv().await {
                sink.feed(block).await?;
            }
            let rows = sink.as_mut().finish().await?;
            transaction.commit().await?;
            guard.disarm();
            Ok::<u64, DbError>(rows)
        });
    }
    let path = file.to_path_buf();
    let progress = std::sync::Arc::clone(&context.progress);
    let reader =
        tokio::task::spawn_blocking(move || deal(&path, &senders, |n| progress.add_bytes(n)));
    let (read, copied) = tokio::join!(reader, futures_util::future::join_all(workers));
    let bytes = read
        .map_err(|e| StepError::coded("flow::source::load", e.to_string(), None))?
        .map_err(|e| StepError::coded("flow::source::load", e, None))?;
    let mut rows = 0;
    for result in copied {
        rows += result?;
    }
    Ok((rows, bytes))
}

/// Reads `path` and deals it in blocks that end at a record boundary to the
/// streams, round robin, without its header line. Returns the bytes read.
/// The bytes are read once into a buffer and handed on without copying.
fn deal(
    path: &Path,
    streams: &[tokio::sync::mpsc::Sender<Bytes>],
    progress: impl Fn(u64),
) -> Result<u64, String> {
    use std::io::Read as _;
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut pending = bytes::BytesMut::with_capacity(BLOCK * 2);
    // Whether the end of `pending` is inside quotes, and how much of it
    // that covers.
    let (mut quoted, mut scanned) = (false, 0);
    let mut header = true;
    let mut next = 0;
    let mut total = 0u64;
    loop {
        if pending.capacity() - pending.len() < BLOCK {
            pending.reserve(BLOCK);
        }
        let start = pending.len();
        let room = pending.capacity() - start;
        pending.resize(start + room, 0);
        let read = file
            .read(&mut pending[start..])
            .map_err(|e| e.to_string())?;
        pending.truncate(start + read);
        total += read as u64;
        progress(read as u64);
        let mut cut = if read == 0 {
            pending.len()
        } else {
            match last_boundary(&pending, scanned, &mut quoted) {
                Some(cut) => cut,
                None => {
                    scanned = pending.len();
                    continue;
                }
            }
        };
        scanned = pending.len() - cut;
        if header {
            // The header is the first record: up to its first newline
            // outside quotes.
            let mut inside = false;
            match pending[..cut].iter().position(|b| {
                if *b == b'"' {
                    inside = !inside;
                }
                *b == b'\n' && !inside
            }) {
                Some(end) => {
                    let _ = pending.split_to(end + 1);
                    cut -= end + 1;
                    header = false;
                }
                None => {
                    pending.clear();
                    cut = 0;
                }
            }
        }
        let block = pending.split_to(cut).freeze();
        if !block.is_empty() {
            if streams[next % streams.len()].blocking_send(block).is_err() {
                return Err("the load stopped".into());
            }
            next += 1;
        }
        if read == 0 {
            return Ok(total);
        }
    }
}

/// The end of the last complete record in `data` (just after a newline
/// outside quotes), scanning from `from` with `quoted` the state there;
/// `quoted` becomes the state at the end of `data`, where the next scan
/// goes on. Counting quotes is what a vectorised loop does fast; a record's
/// fields are never parsed here.
fn last_boundary(data: &[u8], from: usize, quoted: &mut bool) -> Option<usize> {
    let count = |bytes: &[u8]| bytes.iter().filter(|b| **b == b'"').count();
    let fresh = &data[from..];
    let at_end = *quoted ^ (count(fresh) % 2 == 1);
    // The last newline whose quote state is "outside": walk newlines back
    // from the end, flipping the state for the quotes stepped over.
    let mut state = at_end;
    let mut end = fresh.len();
    let mut cut = None;
    while let Some(newline) = fresh[..end].iter().rposition(|b| *b == b'\n') {
        state ^= count(&fresh[newline..end]) % 2 == 1;
        if !state {
            cut = Some(from + newline + 1);
            break;
        }
        end = newline;
    }
    *quoted = at_end;
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_end_at_newlines_outside_quotes() {
        let data = b"a,\"x\ny\"\nb,c\nd,\"e";
        let mut quoted = false;
        assert_eq!(last_boundary(data, 0, &mut quoted), Some(12));
        assert!(quoted, "the last field opens a quote");
        let mut quoted = false;
        assert_eq!(last_boundary(b"a,\"x\ny", 0, &mut quoted), None);
        assert!(quoted);
        // Going on where the last scan stopped, inside quotes.
        assert_eq!(last_boundary(b"a,\"x\ny\"\nz", 6, &mut quoted), Some(8));
    }
}
