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
use flow_engine::flow_db::{CancelOnDrop, Database, quote_ident};
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};
use futures_util::SinkExt as _;
use shapefile::ShapeType;

use crate::dbf::{Column, Value};
use crate::open::Options;
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
            "the .dbf's text encoding, overriding its .cpg and language driver byte",
        ),
        crate::SKIP_FAILURES,
    ],
};

impl Operation for Load {
    fn spec(&self) -> &'static OperationSpec {
        &LOAD
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let schema = step.params.str("schema").unwrap_or("source").to_owned();
        let settings = crate::Settings::parse(step, schema, false)?;
        let db = step.params.database();
        Ok(Prepared::default()
            .reads(Resource::file(&settings.from))
            .reads(Resource::Extensions {
                database: db.to_owned(),
            })
            .creates(Resource::table(db, &settings.to, None))
            .settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(load(context))
    }
}

inventory::submit!(Registration(&Load));

/// The PostGIS type of a shapefile's geometry, as `shp:convert` writes it:
/// the `Z` types with M only when the file uses measures.
fn geometry_type(shape: ShapeType, measures: bool) -> &'static str {
    match (shape, measures) {
        (ShapeType::Point, _) => "Point",
        (ShapeType::PointM, _) => "PointM",
        (ShapeType::PointZ, true) => "PointZM",
        (ShapeType::PointZ, false) => "PointZ",
        (ShapeType::Multipoint, _) => "MultiPoint",
        (ShapeType::MultipointM, _) => "MultiPointM",
        (ShapeType::MultipointZ, true) => "MultiPointZM",
        (ShapeType::MultipointZ, false) => "MultiPointZ",
        (ShapeType::Polyline, _) => "MultiLineString",
        (ShapeType::PolylineM, _) => "MultiLineStringM",
        (ShapeType::PolylineZ, true) => "MultiLineStringZM",
        (ShapeType::PolylineZ, false) => "MultiLineStringZ",
        (ShapeType::Polygon, _) => "MultiPolygon",
        (ShapeType::PolygonM, _) => "MultiPolygonM",
        (ShapeType::PolygonZ, true) => "MultiPolygonZM",
        (ShapeType::PolygonZ, false) => "MultiPolygonZ",
        (ShapeType::NullShape | ShapeType::Multipatch, _) => "Geometry",
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
/// Returns what is wrong with a value that cannot be of its column's type
/// (written as NULL).
fn put_value(out: &mut BytesMut, column: Column, value: Value<'_>) -> Option<String> {
    let integral = |value: &Value<'_>| -> Result<Option<i64>, String> {
        match value {
            Value::Null => Ok(None),
            Value::Integer(n) => Ok(Some(*n)),
            Value::Decimal(text) => match text.trim_start_matches('+').parse::<i64>() {
                Ok(n) => Ok(Some(n)),
                Err(_) => match text.parse::<f64>() {
                    Ok(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Ok(Some(n as i64)),
                    _ => Err(format!("`{text}` is not a whole number; written as NULL")),
                },
            },
            other => Err(format!("{other:?} is not a whole number; written as NULL")),
        }
    };
    match (column, value) {
        (_, Value::Null) => out.put_i32(-1),
        (Column::Text, Value::Text(text)) => {
            out.put_i32(text.len() as i32);
            out.put_slice(text.as_bytes());
        }
        (Column::Integer | Column::Bigint, value) => match integral(&value) {
            Ok(Some(n)) if column == Column::Bigint => {
                out.put_i32(8);
                out.put_i64(n);
            }
            Ok(Some(n)) => match i32::try_from(n) {
                Ok(n) => {
                    out.put_i32(4);
                    out.put_i32(n);
                }
                Err(_) => {
                    out.put_i32(-1);
                    return Some(format!("{n} does not fit an integer; written as NULL"));
                }
            },
            Ok(None) => out.put_i32(-1),
            Err(message) => {
                out.put_i32(-1);
                return Some(message);
            }
        },
        (Column::Numeric, Value::Decimal(text)) => crate::numeric::put(out, text),
        (Column::Double, Value::Double(n)) => {
            out.put_i32(8);
            out.put_f64(n);
        }
        (Column::Boolean, Value::Bool(flag)) => {
            out.put_i32(1);
            out.put_u8(u8::from(flag));
        }
        (Column::Date, Value::Date { year, month, day }) => {
            out.put_i32(4);
            let days = days_since_2000(i64::from(year), i64::from(month), i64::from(day));
            out.put_i32(days as i32);
        }
        (Column::Timestamp, Value::Timestamp(micros)) => {
            out.put_i32(8);
            out.put_i64(micros);
        }
        (column, value) => {
            out.put_i32(-1);
            return Some(format!(
                "{value:?} is not a {}; written as NULL",
                column.sql()
            ));
        }
    }
    None
}

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const CHUNK: usize = 256 * 1024;

/// Reads a part of a shapefile and sends its records, in binary COPY
/// format, in chunks; the first part starts with COPY's header, the last
/// ends with its trailer.
fn encode(
    shp: &Path,
    options: &Options,
    columns: &[Column],
    part: &Part,
    cancel: &tokio_util::sync::CancellationToken,
    send: &tokio::sync::mpsc::Sender<Bytes>,
) -> Result<(u64, Option<String>), String> {
    let mut opened = crate::open::open_part(shp, options, part)?;
    let mut out = BytesMut::with_capacity(CHUNK + 4096);
    if part.first {
        out.put_slice(HEADER);
    }
    let mut records = 0u64;
    let mut problems = crate::open::Problems::new();
    let fields = opened.fields.clone();
    let count = i16::try_from(columns.len() + 1).map_err(|_| "too many attributes")?;
    let limit = if part.whole {
        usize::MAX
    } else {
        part.records.len()
    };
    let (srid, measures) = (opened.srid, opened.shapes.measures);
    while (records as usize) < limit {
        let number = part.records.start as u64 + records + 1;
        let Some(item) = opened.next_row(number, &mut problems) else {
            break;
        };
        let (shape, values) = item?;
        out.put_i16(count);
        for (index, (value, column)) in values.into_iter().zip(columns).enumerate() {
            if let Some(message) = put_value(&mut out, *column, value) {
                problems.add(number, &fields[index], &message);
            }
        }
        match crate::geometry::ewkb(&shape, srid, measures) {
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
    Ok((records, problems.warning()))
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

/// A file's fields, shape type, measures, SRID, warnings and record count.
type Header = (
    Vec<crate::dbf::Field>,
    ShapeType,
    bool,
    u32,
    Vec<String>,
    Option<usize>,
);

/// One file into its table; returns records and bytes.
async fn load_file(
    context: &RunContext,
    database: &Database,
    schema: &str,
    shp: &Path,
    options: &Arc<Options>,
) -> Result<(u64, u64, Vec<String>), String> {
    let name = table_of(shp);
    let table = format!("{}.{}", quote_ident(schema), quote_ident(&name));
    let (fields, shape_type, measures, srid, warnings, count) = header(shp, options).await?;
    let columns: Vec<Column> = fields.iter().map(crate::dbf::Field::column).collect();
    let geom = crate::open::geometry_column(&fields, "geom");
    let geometry = format!("geometry({}, {srid})", geometry_type(shape_type, measures));
    let mut wanted: Vec<(String, String)> = fields
        .iter()
        .zip(&columns)
        .map(|(f, c)| (f.name.clone(), c.sql().to_owned()))
        .collect();
    wanted.push((geom, geometry));
    let definition: Vec<String> = wanted
        .iter()
        .map(|(name, kind)| format!("{} {kind}", quote_ident(name)))
        .collect();
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
    check_columns(&transaction, &table, &wanted, &format!("{schema}.{name}")).await?;
    let sink = transaction
        .copy_in::<_, Bytes>(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await
        .map_err(db)?;
    futures_util::pin_mut!(sink);
    // Large files are read by a thread per core, each its share of the
    // records; the shares go into the COPY in order, each buffering at most
    // four chunks ahead.
    let columns = Arc::new(columns);
    let mut readers = Vec::new();
    for part in crate::open::parts(count, crate::open::cores()) {
        let (send, receive) = tokio::sync::mpsc::channel::<Bytes>(4);
        let (path, options, columns, cancel) = (
            shp.to_path_buf(),
            Arc::clone(options),
            Arc::clone(&columns),
            context.cancel.clone(),
        );
        let reader = tokio::task::spawn_blocking(move || {
            encode(&path, &options, &columns, &part, &cancel, &send)
        });
        readers.push((receive, reader));
    }
    let mut bytes = 0u64;
    let mut records = 0u64;
    let mut warnings = warnings;
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
            Ok((read, problems)) => {
                records += read;
                warnings.extend(problems);
            }
            Err(error) if sent.is_ok() => sent = Err(error),
            Err(_) => {}
        }
    }
    sent?;
    sink.as_mut().finish().await.map_err(db)?;
    transaction.commit().await.map_err(db)?;
    guard.disarm();
    context.progress.add_rows(records);
    Ok((records, bytes, warnings))
}

/// What a file's headers say: its fields, shape type, measures, SRID,
/// warnings and record count (read off the async threads).
async fn header(shp: &Path, options: &Arc<Options>) -> Result<Header, String> {
    let (path, options) = (shp.to_path_buf(), Arc::clone(options));
    tokio::task::spawn_blocking(move || {
        crate::open::open(&path, &options).map(|o| {
            let count = o.shapes.count();
            (
                o.fields,
                o.shape_type,
                o.shapes.measures,
                o.srid,
                o.warnings,
                count,
            )
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The table, made before or by this load, has the columns the file gives.
async fn check_columns(
    transaction: &flow_engine::flow_db::tokio_postgres::Transaction<'_>,
    table: &str,
    wanted: &[(String, String)],
    shown: &str,
) -> Result<(), String> {
    let db = |e: flow_engine::flow_db::tokio_postgres::Error| {
        flow_engine::flow_db::DbError::from(e).to_string()
    };
    let existing: Vec<(String, String)> = transaction
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1)
             AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&table],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let same = existing.len() == wanted.len()
        && existing.iter().zip(wanted).all(|((n, t), (wn, wt))| {
            // PostgreSQL writes `geometry(Point, 0)` as `geometry(Point)`.
            let canonical = |t: &str| t.replace(' ', "").replace(",0)", ")").to_ascii_lowercase();
            n == wn && canonical(t) == canonical(wt)
        });
    if !same {
        let list = |columns: &[(String, String)]| {
            columns
                .iter()
                .map(|(n, t)| format!("{n} {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "table `{shown}` has columns ({}), the file gives ({}); drop the table to load the file",
            list(&existing),
            list(wanted)
        ));
    }
    Ok(())
}

async fn load(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &crate::Settings = context.settings()?;
    let schema = Arc::new(settings.to.clone());
    let database = context.database(&settings.database)?;
    let files: Vec<_> = context
        .files(&settings.from)?
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("shp")))
        .collect();
    let relative: Vec<String> = files.iter().map(|f| context.relative(f)).collect();
    let tables = files
        .iter()
        .zip(&relative)
        .map(|(f, r)| (table_of(f), r.as_str()));
    if let Some((table, first, second)) = flow_engine::flow_db::names::shared(tables) {
        return Err(StepError::coded(
"flow::shp::load",
            format!("`{first}` and `{second}` would both write table `{schema}.{table}`"),
            Some("a table is named after its file (names past 63 bytes cut and given a hash): rename one of the files".into()),
        ));
    }
    let options = Arc::new(settings.options.clone());
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
    let (mut rows, mut bytes, mut warnings, mut failures) = (0, 0, Vec::new(), Vec::new());
    for (result, shp) in futures_util::future::join_all(loads)
        .await
        .into_iter()
        .zip(&files)
    {
        let (file_rows, file_bytes, file_warnings) = match result {
            Ok(done) => done,
            Err(error) => {
                failures.push(error);
                continue;
            }
        };
        rows += file_rows;
        bytes += file_bytes;
        for warning in file_warnings {
            warnings.push(format!("`{}`: {warning}", context.relative(shp)));
        }
    }
    crate::failed_files(
        context,
        "load",
        failures,
        &mut warnings,
        "each file loads in one transaction: a table whose file failed keeps its rows",
    )?;
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
