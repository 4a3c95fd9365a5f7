//! `shp:load`: shapefiles straight into PostGIS tables, without CSV files.
//!
//! Each file becomes the table named after it: a column per DBF attribute and
//! `geom`, typed `geometry(<type>, <srid>)` from the file's header and .prj.
//! Records are encoded in PostgreSQL's binary COPY format on a blocking
//! thread and streamed through a bounded channel (memory stays flat) into
//! `COPY ... FROM STDIN (FORMAT binary)`; the table's rows are replaced in
//! one transaction. Files load in parallel up to the database's pool.

use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use dbase::{FieldType, FieldValue};
use flow_engine::flow_db::{CancelOnDrop, Database, quote_ident};
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};
use futures_util::SinkExt as _;
use shapefile::ShapeType;

use crate::convert::Options;
use crate::open::Part;

pub struct Load;

static LOAD: OperationSpec = OperationSpec {
    tool: "shp",
    target: Target::None,
    operation: "load",
    summary: "load shapefiles straight into PostGIS tables with binary COPY",
    params: &[
        ParamSpec::required(
            "from",
            ParamType::Glob,
            "the shapefiles, like \"data/raw/**/*.shp\"",
        ),
        ParamSpec::optional(
            "schema",
            ParamType::SchemaName,
            "the schema of the tables (default `source`)",
        ),
        ParamSpec::optional(
            "database",
            ParamType::Database,
            "the database to load into (default `flow`)",
        ),
        ParamSpec::optional("srid", ParamType::Count, "the SRID, overriding the .prj"),
        ParamSpec::optional(
            "encoding",
            ParamType::String,
            "the .dbf encoding when there is no .cpg (default utf-8)",
        ),
    ],
};

impl Operation for Load {
    fn spec(&self) -> &'static OperationSpec {
        &LOAD
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        crate::check_encoding(step)?;
        let db = step.params.str("database").unwrap_or("flow");
        Ok(Prepared::default()
            .reads(Resource::file(step.params.str("from").unwrap_or_default()))
            .reads(Resource::Extensions {
                database: db.to_owned(),
            })
            .creates(Resource::table(
                db,
                step.params.str("schema").unwrap_or("source"),
                None,
            )))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(load(context))
    }
}

inventory::submit!(Registration(&Load));

/// How a DBF type is stored, and written in binary COPY.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Double,
    Integer,
    Boolean,
    Date,
    Timestamp,
}

impl Kind {
    fn of(field: FieldType) -> Self {
        match field {
            FieldType::Numeric | FieldType::Float | FieldType::Double | FieldType::Currency => {
                Kind::Double
            }
            FieldType::Integer => Kind::Integer,
            FieldType::Logical => Kind::Boolean,
            FieldType::Date => Kind::Date,
            FieldType::DateTime => Kind::Timestamp,
            FieldType::Character | FieldType::Memo => Kind::Text,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Double => "double precision",
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
            Kind::Date => "date",
            Kind::Timestamp => "timestamp",
        }
    }
}

/// The PostGIS type of a shapefile's geometry, as `shp:convert` writes it.
fn geometry_type(shape: ShapeType) -> &'static str {
    match shape {
        ShapeType::Point => "Point",
        ShapeType::PointM => "PointM",
        ShapeType::PointZ => "PointZM",
        ShapeType::Multipoint => "MultiPoint",
        ShapeType::MultipointM => "MultiPointM",
        ShapeType::MultipointZ => "MultiPointZM",
        ShapeType::Polyline => "MultiLineString",
        ShapeType::PolylineM => "MultiLineStringM",
        ShapeType::PolylineZ => "MultiLineStringZM",
        ShapeType::Polygon => "MultiPolygon",
        ShapeType::PolygonM => "MultiPolygonM",
        ShapeType::PolygonZ => "MultiPolygonZM",
        ShapeType::NullShape | ShapeType::Multipatch => "Geometry",
    }
}

/// Days from 2000-01-01 (PostgreSQL's epoch) to a civil date.
fn days_since_2000(year: i64, month: i64, day: i64) -> i64 {
    // Howard Hinnant's days_from_civil, shifted from 1970 to 2000.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 - 10_957
}

/// One DBF value in binary COPY: its length, then its bytes; -1 for NULL.
fn put_value(out: &mut BytesMut, kind: Kind, value: Option<FieldValue>) {
    let null = |out: &mut BytesMut| out.put_i32(-1);
    match (kind, value) {
        (Kind::Text, Some(FieldValue::Character(Some(text)))) => {
            let text = text.trim_end();
            out.put_i32(text.len() as i32);
            out.put_slice(text.as_bytes());
        }
        (Kind::Text, Some(FieldValue::Memo(text))) => {
            out.put_i32(text.len() as i32);
            out.put_slice(text.as_bytes());
        }
        (Kind::Double, Some(FieldValue::Numeric(Some(n)))) => {
            out.put_i32(8);
            out.put_f64(n);
        }
        (Kind::Double, Some(FieldValue::Float(Some(n)))) => {
            out.put_i32(8);
            out.put_f64(f64::from(n));
        }
        (Kind::Double, Some(FieldValue::Double(n) | FieldValue::Currency(n))) => {
            out.put_i32(8);
            out.put_f64(n);
        }
        (Kind::Integer, Some(FieldValue::Integer(n))) => {
            out.put_i32(4);
            out.put_i32(n);
        }
        (Kind::Boolean, Some(FieldValue::Logical(Some(flag)))) => {
            out.put_i32(1);
            out.put_u8(u8::from(flag));
        }
        (Kind::Date, Some(FieldValue::Date(Some(date)))) => {
            out.put_i32(4);
            let days = days_since_2000(
                i64::from(date.year()),
                i64::from(date.month()),
                i64::from(date.day()),
            );
            out.put_i32(days as i32);
        }
        (Kind::Timestamp, Some(FieldValue::DateTime(time))) => {
            let (date, clock) = (time.date(), time.time());
            let days = days_since_2000(
                i64::from(date.year()),
                i64::from(date.month()),
                i64::from(date.day()),
            );
            let seconds = days * 86_400
                + i64::from(clock.hours()) * 3_600
                + i64::from(clock.minutes()) * 60
                + i64::from(clock.seconds());
            out.put_i32(8);
            out.put_i64(seconds * 1_000_000);
        }
        _ => null(out),
    }
}

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const CHUNK: usize = 256 * 1024;

/// Reads a part of a shapefile and sends its records, in binary COPY
/// format, in chunks; the first part starts with COPY's header, the last
/// ends with its trailer.
fn encode(
    shp: &Path,
    options: &Options,
    kinds: &[Kind],
    part: &Part,
    cancel: &tokio_util::sync::CancellationToken,
    send: &tokio::sync::mpsc::Sender<Bytes>,
) -> Result<u64, String> {
    let mut opened = crate::open::open_part(shp, options, part)?;
    let mut out = BytesMut::with_capacity(CHUNK + 4096);
    if part.first {
        out.put_slice(HEADER);
    }
    let mut records = 0u64;
    let columns = i16::try_from(opened.fields.len() + 1).map_err(|_| "too many attributes")?;
    let limit = if part.whole {
        usize::MAX
    } else {
        part.records.len()
    };
    for item in opened.reader.iter_shapes_and_records().take(limit) {
        let number = part.records.start as u64 + records + 1;
        let (shape, mut record) = item.map_err(|e| format!("record {number}: {e}"))?;
        out.put_i16(columns);
        for ((name, _), kind) in opened.fields.iter().zip(kinds) {
            put_value(&mut out, *kind, record.remove(name));
        }
        match crate::geometry::ewkb(&shape, opened.srid) {
            Some(bytes) => {
                out.put_i32(bytes.len() as i32);
                out.put_slice(&bytes);
            }
            None => out.put_i32(-1),
        }
        records += 1;
        if out.len() >= CHUNK {
            if cancel.is_cancelled() {
                return Err("cancelled".into());
            }
            if send.blocking_send(out.split().freeze()).is_err() {
                return Err("the load stopped".into());
            }
        }
    }
    crate::open::check_count(&opened, part, records)?;
    if part.last {
        out.put_i16(-1);
    }
    if !out.is_empty() {
        send.blocking_send(out.freeze())
            .map_err(|_| "the load stopped".to_owned())?;
    }
    Ok(records)
}

/// The table a shapefile goes to: its name without the extension, as
/// `flow_db::names` fits it.
fn table_of(shp: &Path) -> String {
    let stem = shp
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    flow_engine::flow_db::names::fit(&stem).unwrap_or(stem)
}

/// One file into its table; returns records and bytes.
async fn load_file(
    context: &RunContext,
    database: &Database,
    schema: &str,
    shp: &Path,
    options: &Arc<Options>,
) -> Result<(u64, u64, Option<String>), String> {
    let name = table_of(shp);
    let table = format!("{}.{}", quote_ident(schema), quote_ident(&name));
    let (opened_fields, shape_type, srid, warning, count) = {
        let (path, options) = (shp.to_path_buf(), Arc::clone(options));
        tokio::task::spawn_blocking(move || {
            crate::open::open(&path, &options).map(|o| {
                let count = o.reader.shape_count().ok();
                (o.fields, o.shape_type, o.srid, o.warning, count)
            })
        })
        .await
        .map_err(|e| e.to_string())??
    };
    let kinds: Vec<Kind> = opened_fields.iter().map(|(_, t)| Kind::of(*t)).collect();
    let mut definition: Vec<String> = opened_fields
        .iter()
        .zip(&kinds)
        .map(|((n, _), k)| format!("{} {}", quote_ident(n), k.sql()))
        .collect();
    let geom = crate::open::geometry_column(&opened_fields, "geom");
    definition.push(format!(
        "{} geometry({}, {srid})",
        quote_ident(&geom),
        geometry_type(shape_type)
    ));
    let mut client = database.client().await.map_err(|e| e.to_string())?;
    let guard = CancelOnDrop::new(&client);
    let db = |e: flow_engine::flow_db::tokio_postgres::Error| {
        flow_engine::flow_db::DbError::from(e).to_string()
    };
    let transaction = client.transaction().await.map_err(db)?;
    transaction
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} ({}); TRUNCATE {table}",
            definition.join(", ")
        ))
        .await
        .map_err(db)?;
    let existing: Vec<String> = transaction
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1)
             AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&table],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut wanted: Vec<String> = opened_fields.iter().map(|(n, _)| n.clone()).collect();
    wanted.push(geom);
    if existing != wanted {
        return Err(format!(
            "table `{schema}.{name}` has columns {}, the file has {}; drop the table to load the file",
            existing.join(", "),
            wanted.join(", ")
        ));
    }
    let sink = transaction
        .copy_in::<_, Bytes>(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await
        .map_err(db)?;
    futures_util::pin_mut!(sink);
    // Large files are read by a thread per core, each its share of the
    // records; the shares go into the COPY in order, each buffering at most
    // four chunks ahead.
    let kinds = Arc::new(kinds);
    let mut readers = Vec::new();
    for part in crate::open::parts(count, crate::open::cores()) {
        let (send, receive) = tokio::sync::mpsc::channel::<Bytes>(4);
        let (path, options, kinds, cancel) = (
            shp.to_path_buf(),
            Arc::clone(options),
            Arc::clone(&kinds),
            context.cancel.clone(),
        );
        let reader = tokio::task::spawn_blocking(move || {
            encode(&path, &options, &kinds, &part, &cancel, &send)
        });
        readers.push((receive, reader));
    }
    let mut bytes = 0u64;
    let mut records = 0u64;
    let mut sent = Ok(());
    for (mut receive, reader) in readers {
        while sent.is_ok()
            && let Some(chunk) = receive.recv().await
        {
            bytes += chunk.len() as u64;
            context.progress.add_bytes(chunk.len() as u64);
            if let Err(error) = sink.feed(chunk).await {
                sent = Err(db(error));
            }
        }
        drop(receive);
        match reader.await.map_err(|e| e.to_string())? {
            Ok(read) => records += read,
            Err(error) if sent.is_ok() => sent = Err(error),
            Err(_) => {}
        }
    }
    sent?;
    sink.as_mut().finish().await.map_err(db)?;
    transaction.commit().await.map_err(db)?;
    guard.disarm();
    context.progress.add_rows(records);
    Ok((records, bytes, warning))
}

async fn load(context: &RunContext) -> Result<Outcome, StepError> {
    let params = &context.params;
    let schema = Arc::new(params.str("schema").unwrap_or("source").to_owned());
    let database = context.database(params.str("database").unwrap_or("flow"))?;
    let files: Vec<_> = context
        .files(params.str("from").unwrap_or_default())?
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("shp")))
        .collect();
    let relative: Vec<String> = files.iter().map(|f| context.relative(f)).collect();
    let tables = files
        .iter()
        .zip(&relative)
        .map(|(f, r)| (table_of(f), r.as_str()));
    if let Some((table, first, second)) = flow_engine::flow_db::names::shared(tables) {
        return Err(StepError::message(
            format!("`{first}` and `{second}` would both write table `{schema}.{table}`"),
            Some("a table is named after its file (names past 63 bytes cut and given a hash): rename one of the files".into()),
        ));
    }
    let options = Arc::new(Options {
        wkt: false,
        srid: params.count("srid").and_then(|s| u32::try_from(s).ok()),
        encoding: params.str("encoding").map(str::to_owned),
    });
    database
        .client()
        .await?
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&schema)
        ))
        .await
        .map_err(flow_engine::flow_db::DbError::from)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(database.pool_size().max(1)));
    let loads = files.iter().map(|shp| {
        let (permits, schema, options) = (
            Arc::clone(&permits),
            Arc::clone(&schema),
            Arc::clone(&options),
        );
        async move {
            let _permit = permits.acquire_owned().await;
            load_file(context, database, &schema, shp, &options)
                .await
                .map_err(|e| format!("`{}`: {e}", context.relative(shp)))
        }
    });
    let (mut rows, mut bytes, mut warnings) = (0, 0, Vec::new());
    for (result, shp) in futures_util::future::join_all(loads)
        .await
        .into_iter()
        .zip(&files)
    {
        let (file_rows, file_bytes, warning) = result.map_err(|e| {
            StepError::message(
                e,
                Some("the table keeps its rows: each file loads in one transaction".into()),
            )
        })?;
        rows += file_rows;
        bytes += file_bytes;
        if let Some(warning) = warning {
            warnings.push(format!("`{}`: {warning}", context.relative(shp)));
        }
    }
    let mut note = format!("{} files, {rows} records", files.len());
    if !warnings.is_empty() {
        note.push_str(&format!("; warning: {}", warnings.join("; ")));
    }
    Ok(Outcome {
        rows,
        bytes,
        note: Some(note),
        unchanged: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_from_2000() {
        assert_eq!(days_since_2000(2000, 1, 1), 0);
        assert_eq!(days_since_2000(2000, 3, 1), 60);
        assert_eq!(days_since_2000(1999, 12, 31), -1);
        assert_eq!(days_since_2000(2024, 1, 31), 8796);
        assert_eq!(days_since_2000(1970, 1, 1), -10_957);
    }
}
