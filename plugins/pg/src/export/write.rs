//! One file of an export: streamed from PostgreSQL to a temporary name,
//! counted and hashed on the way.

use std::path::Path;

use flow_engine::flow_db::tokio_postgres::Transaction;
use flow_engine::flow_db::tokio_postgres::types::ToSql;
use flow_engine::flow_db::{CancelOnDrop, Database, DbError, quote_ident};
use flow_engine::{PartialFile, RunContext, StepError};
use futures_util::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{Format, Job, Source};

/// What every file of one export shares.
pub(crate) struct Options<'a> {
    pub schema: &'a str,
    /// The snapshot every file is read in.
    pub snapshot: &'a str,
    pub format: Format,
    pub reproject: bool,
    pub geometry: Option<&'a str>,
}

/// A file written under its temporary name.
pub(crate) struct Written {
    partial: PartialFile,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl Written {
    /// Puts the file under its name.
    pub fn commit(self) -> Result<(), StepError> {
        let target = self.partial.target().to_path_buf();
        self.partial
            .commit()
            .map_err(|e| io_error("write", &target, &e))
    }
}

/// The file's bytes as they go out: to disk, into the hash, into the count.
struct Sink {
    file: tokio::io::BufWriter<tokio::fs::File>,
    hash: Sha256,
    bytes: u64,
}

impl Sink {
    async fn write(
        &mut self,
        chunk: &[u8],
        context: &RunContext,
        path: &Path,
    ) -> Result<(), StepError> {
        self.hash.update(chunk);
        self.bytes += chunk.len() as u64;
        context.progress.add_bytes(chunk.len() as u64);
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| io_error("write", path, &e))
    }
}

pub(crate) async fn one(
    context: &RunContext,
    database: &Database,
    job: &Job,
    options: &Options<'_>,
) -> Result<Written, StepError> {
    if let Some(parent) = job.path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_error("create", parent, &e))?;
    }
    let partial = PartialFile::beside(&job.path);
    let file = tokio::fs::File::create(partial.path())
        .await
        .map_err(|e| io_error("write", partial.path(), &e))?;
    let mut sink = Sink {
        file: tokio::io::BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut client = database.direct_client().await?;
    let guard = CancelOnDrop::new(&client);
    let transaction = crate::snapshot::begin(&mut client, Some(options.snapshot)).await?;
    transaction
        .batch_execute(&format!(
            "SET LOCAL search_path = {}, public",
            quote_ident(options.schema)
        ))
        .await
        .map_err(DbError::from)?;
    let rows = match options.format {
        Format::Csv => csv(&transaction, job, &mut sink, context).await,
        Format::GeoJson => geojson(&transaction, job, options, &mut sink, context).await,
    }
    .map_err(|error| about(error, job))?;
    guard.disarm();
    drop(transaction);
    sink.file
        .flush()
        .await
        .map_err(|e| io_error("write", partial.path(), &e))?;
    sink.file
        .get_mut()
        .sync_all()
        .await
        .map_err(|e| io_error("write", partial.path(), &e))?;
    context.progress.add_rows(rows);
    Ok(Written {
        partial,
        rows,
        bytes: sink.bytes,
        sha256: sink
            .hash
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

/// Says which table or SQL file a failure is about.
fn about(error: StepError, job: &Job) -> StepError {
    let what = match &job.source {
        Source::Table(table) => format!("table `{table}`"),
        Source::Query { file, .. } => format!("the query in `{file}`"),
    };
    StepError::coded(
        "flow::export::read",
        format!("exporting {what} failed: {}", error.report),
        error.report.help().map(|h| h.to_string()),
    )
}

/// CSV through `COPY ... TO STDOUT`: a header, then the rows as PostgreSQL
/// writes them (what `pg:source:load` reads back: NULL unquoted and empty,
/// an empty string as `""`, geometry as hex EWKB).
async fn csv(
    client: &Transaction<'_>,
    job: &Job,
    sink: &mut Sink,
    context: &RunContext,
) -> Result<u64, StepError> {
    let from = match &job.source {
        Source::Table(table) => table.clone(),
        Source::Query { sql, .. } => format!("({sql})"),
    };
    let stream = client
        .copy_out(&format!("COPY {from} TO STDOUT WITH (FORMAT csv, HEADER)"))
        .await
        .map_err(DbError::from)?;
    futures_util::pin_mut!(stream);
    let mut records = Records::default();
    while let Some(chunk) = stream.next().await {
        if context.cancel.is_cancelled() {
            return Err(StepError::message("cancelled", None));
        }
        let chunk = chunk.map_err(DbError::from)?;
        records.feed(&chunk);
        sink.write(&chunk, context, &job.path).await?;
    }
    Ok(records.ended.saturating_sub(1))
}

/// Counts CSV records: a newline outside quotes ends one. A quote inside a
/// quoted field is written twice, so counting quotes keeps track.
#[derive(Default)]
struct Records {
    quoted: bool,
    ended: u64,
}

impl Records {
    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match byte {
                b'"' => self.quoted = !self.quoted,
                b'\n' if !self.quoted => self.ended += 1,
                _ => {}
            }
        }
    }
}

/// The most decimal places PostGIS may write: it writes the shortest digits
/// that read back as the same double, so with room for any double's digits
/// no coordinate is rounded (the default, 9, would round them).
const DIGITS: u32 = 40;

/// A column of the rows: its name and type.
struct Column {
    name: String,
    geometry: bool,
}

/// GeoJSON (RFC 7946): a FeatureCollection with one Feature per row, the
/// geometry column as its geometry and every other column among its
/// properties, written by PostGIS (`ST_AsGeoJSON` of the row), one row at a
/// time.
async fn geojson(
    client: &Transaction<'_>,
    job: &Job,
    options: &Options<'_>,
    sink: &mut Sink,
    context: &RunContext,
) -> Result<u64, StepError> {
    let query = job.source.query();
    let described = client
        .prepare(&format!("SELECT * FROM ({query}) q LIMIT 0"))
        .await
        .map_err(DbError::from)?;
    let columns: Vec<Column> = described
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            geometry: c.type_().name() == "geometry",
        })
        .collect();
    let geometry = match options.geometry {
        Some(name) => columns.iter().find(|c| c.name == name).ok_or_else(|| {
            StepError::coded(
                "flow::export::geometry",
                format!("`{}` has no column `{name}`", job.name),
                Some(format!(
                    "its columns: {}",
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            )
        })?,
        None => columns.iter().find(|c| c.geometry).ok_or_else(|| {
            StepError::coded(
                "flow::export::geometry",
                format!("`{}` has no geometry column for GeoJSON", job.name),
                Some("export it as CSV, or name the column with `geometry`".into()),
            )
        })?,
    };
    let g = quote_ident(&geometry.name);
    let crs = if options.reproject {
        None
    } else {
        crs(client, &query, &g, &job.name).await?
    };
    let rows_sql = if options.reproject {
        let mut select: Vec<String> = columns
            .iter()
            .filter(|c| c.name != geometry.name)
            .map(|c| format!("q.{}", quote_ident(&c.name)))
            .collect();
        select.push(format!("ST_Transform(q.{g}, 4326) AS {g}"));
        format!("SELECT {} FROM ({query}) q", select.join(", "))
    } else {
        query
    };
    let name: &(dyn ToSql + Sync) = &geometry.name;
    let stream = client
        .query_raw(
            &format!("SELECT ST_AsGeoJSON(f.*, $1, {DIGITS}) FROM ({rows_sql}) f"),
            [name],
        )
        .await
        .map_err(DbError::from)?;
    futures_util::pin_mut!(stream);
    let mut head = format!(
        "{{\"type\":\"FeatureCollection\",\"name\":{}",
        serde_json::Value::from(job.name.as_str())
    );
    if let Some(srid) = crs {
        head.push_str(&format!(
            ",\"crs\":{{\"type\":\"name\",\"properties\":{{\"name\":\"urn:ogc:def:crs:EPSG::{srid}\"}}}}"
        ));
    }
    head.push_str(",\"features\":[\n");
    sink.write(head.as_bytes(), context, &job.path).await?;
    let mut rows = 0u64;
    while let Some(row) = stream.try_next().await.map_err(DbError::from)? {
        if context.cancel.is_cancelled() {
            return Err(StepError::message("cancelled", None));
        }
        let feature: &str = row.get(0);
        if rows > 0 {
            sink.write(b",\n", context, &job.path).await?;
        }
        sink.write(feature.as_bytes(), context, &job.path).await?;
        rows += 1;
    }
    sink.write(b"\n]}\n", context, &job.path).await?;
    Ok(rows)
}

/// The one SRID of the geometries, to name in the file; none for WGS 84
/// (GeoJSON's own) or no geometry. Several is an error: one file has one CRS.
async fn crs(
    client: &Transaction<'_>,
    query: &str,
    g: &str,
    name: &str,
) -> Result<Option<i32>, StepError> {
    let srids: Vec<i32> = client
        .query(
            &format!(
                "SELECT DISTINCT ST_SRID(q.{g}) FROM ({query}) q WHERE q.{g} IS NOT NULL LIMIT 2"
            ),
            &[],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    match srids.as_slice() {
        [] | [4326] => Ok(None),
        [0] => Err(StepError::coded(
            "flow::export::crs",
            format!("the geometries of `{name}` have no SRID, so their CRS cannot be named"),
            Some("set one with ST_SetSRID in a query, or export as CSV".into()),
        )),
        [srid] => Ok(Some(*srid)),
        _ => Err(StepError::coded(
            "flow::export::crs",
            format!(
                "the geometries of `{name}` are in several CRSs ({} and more)",
                srids[0]
            ),
            Some("`reproject = true` writes them all in WGS 84".into()),
        )),
    }
}

fn io_error(verb: &str, path: &Path, error: &std::io::Error) -> StepError {
    StepError::coded(
        "flow::export::write",
        format!("cannot {verb} `{}`: {error}", path.display()),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::Records;

    #[test]
    fn newlines_inside_quotes_do_not_end_records() {
        let mut records = Records::default();
        records.feed(b"id,note\n1,\"two\nlines\"\n2,\"say \"\"hi\"\"\"");
        records.feed(b"\n3,\n");
        assert_eq!(records.ended - 1, 3);
    }
}
