use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flow_engine::flow_db::tokio_postgres::CopyInSink;
use flow_engine::flow_db::{CancelOnDrop, names, quote_ident};
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};
use futures_util::SinkExt as _;
use tokio::io::AsyncReadExt as _;

use crate::DATABASE;
use crate::csv_schema;

pub struct Create;
pub struct Load;

static CREATE: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("source"),
    operation: "create",
    summary: "create a table per CSV file, typed from the data",
    params: &[
        ParamSpec::required(
            "from",
            ParamType::Glob,
            "the CSV files, like \"data/csv/*.csv\"",
        ),
        ParamSpec::optional(
            "schema",
            ParamType::SchemaName,
            "the schema of the tables (default `source`)",
        ),
        ParamSpec::optional(
            "columns",
            ParamType::Strings,
            "declared column types, as \"column type\"",
        ),
        DATABASE,
    ],
};

static LOAD: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("source"),
    operation: "load",
    summary: "COPY each CSV file into its table, replacing its rows in one transaction",
    params: &[
        ParamSpec::required("from", ParamType::Glob, "the CSV (or .shp) files"),
        ParamSpec::optional(
            "schema",
            ParamType::SchemaName,
            "the schema of the tables (default `source`)",
        ),
        ParamSpec::optional(
            "max_errors",
            ParamType::Count,
            "bad rows sent to the table's `<table>_rejects` table, with their line and reason, before the load fails (default 0)",
        ),
        DATABASE,
    ],
};

/// What `pg:source:create` and `pg:source:load` read of their parameters,
/// with the defaults.
struct Settings {
    /// The CSV files' glob.
    from: String,
    /// The schema of the tables (default `source`).
    schema: String,
    /// The database (default the flow database).
    database: String,
    /// Columns declared by hand, as (name, type) (`create`).
    columns: Vec<(String, String)>,
    /// Bad rows a load may send to the rejects table (default 0).
    max_errors: u64,
}

impl Settings {
    fn parse(params: &flow_engine::Params) -> Self {
        Self {
            from: params.str("from").unwrap_or_default().to_owned(),
            schema: params.str("schema").unwrap_or("source").to_owned(),
            database: params.database().to_owned(),
            columns: params
                .list("columns")
                .into_iter()
                .filter_map(|c| c.split_once(char::is_whitespace))
                .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
                .collect(),
            max_errors: params.count("max_errors").unwrap_or(0),
        }
    }

    /// What a load reads (its files) and writes (its tables).
    fn prepared(self) -> Prepared {
        Prepared::default()
            .reads(Resource::file(&self.from))
            .writes(Resource::table(&self.database, &self.schema, None))
            .settings(self)
    }
}

/// The table a CSV file goes to: its name without the extension, as
/// `flow_db::names` fits it.
fn table_of(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    names::fit(&stem).unwrap_or(stem)
}

/// Refuses, before anything is written, files that would write one table:
/// two names equal once fitted, or (with `rejects`) a file whose table is
/// another's reject table.
fn distinct_tables(
    context: &RunContext,
    schema: &str,
    files: &[PathBuf],
    rejects: bool,
) -> Result<(), StepError> {
    let relative: Vec<String> = files.iter().map(|f| context.relative(f)).collect();
    let mut tables: Vec<(String, &str)> = files
        .iter()
        .zip(&relative)
        .map(|(file, name)| (table_of(file), name.as_str()))
        .collect();
    if let Some(file) = files
        .iter()
        .zip(&relative)
        .find(|(f, _)| f.file_stem().is_none_or(|s| s.is_empty()))
    {
        return Err(failed(
            format!("`{}` gives no table name", file.1),
            Some("name the file after its table, like `parcels.csv`".into()),
        ));
    }
    if rejects {
        let reject_tables: Vec<(String, &str)> = tables
            .iter()
            .map(|(table, file)| (reject_table(table), *file))
            .collect();
        tables.extend(reject_tables);
    }
    match names::shared(tables) {
        None => Ok(()),
        Some((table, first, second)) => Err(failed(
            format!("`{first}` and `{second}` would both write table `{schema}.{table}`"),
            Some(if table.ends_with("_rejects") && rejects {
                "a file named like another's reject table (`<table>_rejects`) cannot load beside it with `max_errors`: rename one".into()
            } else {
                "PostgreSQL keeps 63 bytes of a name, so names longer than that are cut and given a hash (see the README); rename one of the files".into()
            }),
        )),
    }
}

/// Sends the rows of a CSV file with the right number of fields to a COPY
/// (as CSV, each with its line first), and returns the others as rejects:
/// line, reason, fields.
fn stage(
    path: &Path,
    width: usize,
    send: &tokio::sync::mpsc::Sender<Bytes>,
) -> Result<Vec<(i64, String, Vec<String>)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .map_err(|e| e.to_string())?;
    let mut ragged = Vec::new();
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(256 * 1024));
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => return Err(error.to_string()),
        }
        let line = record.position().map_or(0, |p| p.line()) as i64;
        if record.len() != width {
            ragged.push((
                line,
                format!("it has {} fields; the header has {width}", record.len()),
                record
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
            ));
            continue;
        }
        let line_text = line.to_string();
        writer
            .write_record(std::iter::once(line_text.as_bytes()).chain(record.iter()))
            .map_err(|e| e.to_string())?;
        if writer.get_ref().len() >= 256 * 1024 {
            let full = std::mem::replace(
                &mut writer,
                csv::Writer::from_writer(Vec::with_capacity(256 * 1024)),
            );
            let chunk = full.into_inner().map_err(|e| e.to_string())?;
            if send.blocking_send(Bytes::from(chunk)).is_err() {
                return Err("the load stopped".into());
            }
        }
    }
    let rest = writer.into_inner().map_err(|e| e.to_string())?;
    if !rest.is_empty() && send.blocking_send(Bytes::from(rest)).is_err() {
        return Err("the load stopped".into());
    }
    Ok(ragged)
}

/// A dollar-quote tag that `body` does not hold, so no name inside it can
/// end the quote.
fn dollar_tag(body: &str) -> String {
    (0u64..)
        .map(|n| format!("$flow{n}$"))
        .find(|tag| !body.contains(tag.as_str()))
        .unwrap_or_default()
}

/// The table rows a load rejects go to.
fn reject_table(table: &str) -> String {
    names::fit_with(table, "_rejects")
}

fn csv_files(context: &RunContext) -> Result<Vec<PathBuf>, StepError> {
    let files = context.files(&context.settings::<Settings>()?.from)?;
    if let Some(shp) = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("shp")))
    {
        return Err(failed(
            format!(
                "`{}` is a shapefile; loading shapefiles directly is not built yet",
                context.relative(shp)
            ),
            Some("convert it with `shp:convert` first, and load the CSV files".into()),
        ));
    }
    Ok(files)
}

/// A table per CSV file, typed from its data; an existing table is kept when
/// its columns are the file's header, and reported when they are not.
async fn create(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &Settings = context.settings()?;
    let schema = settings.schema.clone();
    let declared = &settings.columns;
    let client = context.database(&settings.database)?.client().await?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&schema)
        ))
        .await?;
    let mut created = 0;
    let files = csv_files(context)?;
    distinct_tables(context, &schema, &files, false)?;
    for file in &files {
        let (path, declared_here) = (file.clone(), declared.clone());
        let columns = tokio::task::spawn_blocking(move || csv_schema::infer(&path, &declared_here))
            .await
            .map_err(|e| failed(e.to_string(), None))?
            .map_err(|e| {
                failed(
                    format!("cannot read `{}`: {e}", context.relative(file)),
                    None,
                )
            })?;
        let table = table_of(file);
        let existing: Vec<String> = client
            .query(
                "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&schema, &table],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let header: Vec<&String> = columns.iter().map(|(name, _)| name).collect();
        if !existing.is_empty() {
            if existing.iter().collect::<Vec<_>>() != header {
                return Err(failed(
                    format!(
                        "the header of `{}` changed: table `{schema}.{table}` has columns {}, the file has {}",
                        context.relative(file),
                        existing.join(", "),
                        header
                            .iter()
                            .map(|h| h.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some(format!(
                        "drop the table (`DROP TABLE {}.{}`) to create it again from the file",
                        quote_ident(&schema),
                        quote_ident(&table)
                    )),
                ));
            }
            continue;
        }
        let definition: Vec<String> = columns
            .iter()
            .map(|(name, kind)| format!("{} {kind}", quote_ident(name)))
            .collect();
        client
            .batch_execute(&format!(
                "CREATE TABLE {}.{} ({})",
                quote_ident(&schema),
                quote_ident(&table),
                definition.join(", ")
            ))
            .await
            .map_err(|e| {
                failed(
                    format!(
                        "cannot create the table of `{}`: {}",
                        context.relative(file),
                        flow_engine::flow_db::DbError::from(e)
                    ),
                    None,
                )
            })?;
        created += 1;
    }
    Ok(Outcome::note(format!(
        "{created} created, {} already there",
        files.len() - created
    ))
    .unchanged(created == 0))
}

/// Each CSV file streamed into its table with COPY, the table's rows replaced
/// in one transaction; files in parallel up to the database's pool.
async fn load(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &Settings = context.settings()?;
    let schema = Arc::new(settings.schema.clone());
    let database = context.database(&settings.database)?;
    let files = csv_files(context)?;
    let max_errors = settings.max_errors;
    distinct_tables(context, &schema, &files, max_errors > 0)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(database.pool_size().max(1)));
    let loads = files.iter().map(|file| {
        let (permits, schema) = (Arc::clone(&permits), Arc::clone(&schema));
        async move {
            let _permit = permits.acquire_owned().await;
            if let Some(done) = load_in_parallel(context, database, &schema, file).await {
                return Ok((done.0, done.1, 0));
            }
            match load_file(context, database, &schema, file).await {
                Err(_) if max_errors > 0 => {
                    load_with_rejects(context, database, &schema, file, max_errors).await
                }
                loaded => loaded.map(|(rows, bytes)| (rows, bytes, 0)),
            }
        }
    });
    let (mut rows, mut bytes, mut rejected) = (0, 0, 0);
    for result in futures_util::future::join_all(loads).await {
        let (file_rows, file_bytes, file_rejected) = result?;
        rows += file_rows;
        bytes += file_bytes;
        rejected += file_rejected;
    }
    let mut note = format!("{} files, {rows} rows", files.len());
    if rejected > 0 {
        note.push_str(&format!(
            ", {rejected} rejected (see the `*_rejects` tables of `{schema}`)"
        ));
    }
    Ok(Outcome {
        rows,
        bytes,
        note: Some(note),
        unchanged: false,
    })
}

/// A large file over several streams, when its table can be replaced
/// (see `parallel_copy`); `None` when the single stream is the way: a small
/// file, a table others refer to, or a load that failed (the single stream
/// then says where, or rejects the bad rows).
async fn load_in_parallel(
    context: &RunContext,
    database: &flow_engine::flow_db::Database,
    schema: &str,
    file: &Path,
) -> Option<(u64, u64)> {
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let streams = crate::parallel_copy::streams(database);
    if size < crate::parallel_copy::PARALLEL_FROM || streams < 2 {
        return None;
    }
    let name = table_of(file);
    let table = format!("{}.{}", quote_ident(schema), quote_ident(&name));
    if !crate::parallel_copy::replaceable(database, &table)
        .await
        .unwrap_or(false)
    {
        return None;
    }
    crate::parallel_copy::load(context, database, schema, &name, file, streams)
        .await
        .ok()
}

async fn load_file(
    context: &RunContext,
    database: &flow_engine::flow_db::Database,
    schema: &str,
    file: &Path,
) -> Result<(u64, u64), StepError> {
    let relative = context.relative(file);
    let table = format!("{}.{}", quote_ident(schema), quote_ident(&table_of(file)));
    let mut client = database.client().await?;
    let guard = CancelOnDrop::new(&client);
    let result = async {
        let transaction = client.transaction().await?;
        transaction
            .batch_execute(&format!("TRUNCATE {table}"))
            .await?;
        let sink = transaction
            .copy_in::<_, Bytes>(&format!(
                "COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)"
            ))
            .await?;
        futures_util::pin_mut!(sink);
        let bytes = stream_file(context, sink.as_mut(), file, &relative).await?;
        let rows = sink.as_mut().finish().await?;
        transaction.commit().await?;
        context.progress.add_rows(rows);
        Ok::<(u64, u64), StepError>((rows, bytes))
    }
    .await;
    guard.disarm();
    result.map_err(|error| copy_error(error, &relative))
}

/// Sends a file to a COPY sink in 256 KiB pieces; returns its size.
async fn stream_file(
    context: &RunContext,
    mut sink: std::pin::Pin<&mut CopyInSink<Bytes>>,
    file: &Path,
    relative: &str,
) -> Result<u64, StepError> {
    let unreadable = |e: std::io::Error| failed(format!("cannot read `{relative}`: {e}"), None);
    let mut reader = tokio::fs::File::open(file).await.map_err(unreadable)?;
    let mut bytes = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = reader.read(&mut buffer).await.map_err(unreadable)?;
        if read == 0 {
            return Ok(bytes);
        }
        bytes += read as u64;
        context.progress.add_bytes(read as u64);
        sink.send(Bytes::copy_from_slice(&buffer[..read])).await?;
    }
}

/// The slow path for a file with bad rows, when `max_errors` allows some:
/// the file goes into a table of text columns (which takes any value), then
/// row by row into the real table; a row that does not convert goes to
/// `<table>_rejects` with its line and the reason. More than `max_errors` bad
/// rows fail the load; either way the table is replaced in one transaction.
async fn load_with_rejects(
    context: &RunContext,
    database: &flow_engine::flow_db::Database,
    schema: &str,
    file: &Path,
    max_errors: u64,
) -> Result<(u64, u64, u64), StepError> {
    let relative = context.relative(file);
    let name = table_of(file);
    let table = format!("{}.{}", quote_ident(schema), quote_ident(&name));
    let reject_name = reject_table(&name);
    let rejects = format!("{}.{}", quote_ident(schema), quote_ident(&reject_name));
    let mut client = database.client().await?;
    let guard = CancelOnDrop::new(&client);
    let result = async {
        let transaction = client.transaction().await?;
        let columns: Vec<(String, String)> = transaction
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&table],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let names: Vec<String> = columns.iter().map(|(n, _)| quote_ident(n)).collect();
        // The staging table's line number, under a name no column has.
        let mut all: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        all.push("flow_line");
        let line = names::columns(&all)
            .ok()
            .and_then(|mut all| all.pop())
            .unwrap_or_else(|| "flow_line".into());
        let line_ident = quote_ident(&line);
        let text_columns: Vec<String> = names.iter().map(|n| format!("{n} text")).collect();
        transaction
            .batch_execute(&format!(
                "CREATE TEMP TABLE flow_stage ({line_ident} bigint, {}) ON COMMIT DROP;
                 CREATE TABLE IF NOT EXISTS {rejects} (line bigint, reason text, row jsonb);
                 TRUNCATE {rejects}, {table}",
                text_columns.join(", ")
            ))
            .await?;
        let (bytes, ragged) = stage_file(context, &transaction, file, &names, &line_ident).await?;
        if ragged.len() as u64 > max_errors {
            let (line, reason, _) = &ragged[max_errors as usize];
            return Err(failed(format!("more than {max_errors} bad rows: line {line}: {reason}"),
                None,
            ));
        }
        for (line, reason, fields) in &ragged {
            transaction
                .execute(
                    &format!("INSERT INTO {rejects} VALUES ($1, $2, to_jsonb($3::text[]))"),
                    &[line, reason, fields],
                )
                .await?;
        }
        let body = convert_rows(&columns, &table, &rejects, &line, ragged.len(), max_errors);
        let tag = dollar_tag(&body);
        transaction
            .batch_execute(&format!("DO {tag}{body}{tag}"))
            .await?;
        let count = |sql: String| {
            let transaction = &transaction;
            async move {
                transaction
                    .query_one(&sql, &[])
                    .await
                    .map(|row| row.get::<_, i64>(0).max(0) as u64)
            }
        };
        let rows = count(format!("SELECT count(*) FROM {table}")).await?;
        let rejected = count(format!("SELECT count(*) FROM {rejects}")).await?;
        transaction.commit().await?;
        context.progress.add_rows(rows);
        Ok::<(u64, u64, u64), StepError>((rows, bytes, rejected))
    }
    .await;
    guard.disarm();
    result.map_err(|error| {
        failed(format!("`{relative}`: {}", error.report),
            Some(format!(
                "`max_errors = {max_errors}` sends up to {max_errors} bad rows to `{schema}.{reject_name}`; raise it, or fix the rows"
            )),
        )
    })
}

/// The block that moves the staged rows into the table one by one, a row
/// that does not convert going to the rejects with PostgreSQL's reason;
/// past `max_errors` (with `already` rejected), the load fails.
fn convert_rows(
    columns: &[(String, String)],
    table: &str,
    rejects: &str,
    line: &str,
    already: usize,
    max_errors: u64,
) -> String {
    let names: Vec<String> = columns.iter().map(|(n, _)| quote_ident(n)).collect();
    let (line_ident, line_literal) = (quote_ident(line), flow_engine::flow_db::quote_literal(line));
    let values: Vec<String> = columns
        .iter()
        .map(|(n, kind)| format!("r.{}::{kind}", quote_ident(n)))
        .collect();
    format!(
        "DECLARE r record; bad bigint := {already}; BEGIN
  FOR r IN SELECT * FROM flow_stage ORDER BY {line_ident} LOOP
BEGIN
  INSERT INTO {table} ({names}) VALUES ({values});
EXCEPTION WHEN others THEN
  bad := bad + 1;
  IF bad > {max_errors} THEN
    RAISE EXCEPTION 'more than {max_errors} bad rows: line %: %', r.{line_ident}, SQLERRM;
  END IF;
  INSERT INTO {rejects} VALUES (r.{line_ident}, SQLERRM, to_jsonb(r) - {line_literal});
END;
  END LOOP;
END",
        names = names.join(", "),
        values = values.join(", "),
    )
}

/// The file copied into the staging table as text, a line number on each
/// row; rows with too many or too few fields come back as rejects.
async fn stage_file(
    context: &RunContext,
    transaction: &flow_engine::flow_db::tokio_postgres::Transaction<'_>,
    file: &Path,
    names: &[String],
    line_ident: &str,
) -> Result<(u64, Vec<(i64, String, Vec<String>)>), StepError> {
    let relative = context.relative(file);
    let sink = transaction
        .copy_in::<_, Bytes>(&format!(
            "COPY flow_stage ({line_ident}, {}) FROM STDIN WITH (FORMAT csv)",
            names.join(", ")
        ))
        .await?;
    futures_util::pin_mut!(sink);
    // The file is read here, not by COPY, so that a row with too many or
    // too few fields is a reject of its own instead of the end of the
    // load.
    let (send, mut receive) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (path, width) = (file.to_path_buf(), names.len());
    let reader = tokio::task::spawn_blocking(move || stage(&path, width, &send));
    let mut bytes = 0u64;
    let mut sent = Ok(());
    while let Some(chunk) = receive.recv().await {
        bytes += chunk.len() as u64;
        context.progress.add_bytes(chunk.len() as u64);
        if sent.is_ok() {
            sent = sink.send(chunk).await;
        }
    }
    let ragged = reader
        .await
        .map_err(|e| failed(e.to_string(), None))?
        .map_err(|e| failed(format!("cannot read `{relative}`: {e}"), None))?;
    sent?;
    sink.as_mut().finish().await?;
    Ok((bytes, ragged))
}

/// A COPY error says where: `COPY t, line 3, column area: "abc"`.
fn copy_error(error: StepError, file: &str) -> StepError {
    let help = error
        .report
        .help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let place = help
        .lines()
        .find_map(|line| line.split("where: COPY ").nth(1).map(str::to_owned));
    let message = error.report.to_string();
    match place.and_then(|p| p.split_once(", line ").map(|(_, rest)| rest.to_owned())) {
        Some(rest) => {
            let (line, column) = rest.split_once(", column ").unwrap_or((rest.as_str(), ""));
            failed(format!("`{file}`, line {line}{}: {message}", if column.is_empty() { String::new() } else { format!(", column {column}") }),
                Some("fix the value, or declare the column's type with `columns = [\"name type\"]` on `pg:source:create`".into()),
            )
        }
        None => failed(format!("`{file}`: {message}"), None),
    }
}

impl Operation for Create {
    fn spec(&self) -> &'static OperationSpec {
        &CREATE
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let problems: Vec<Problem> = step
            .params
            .list("columns")
            .into_iter()
            .filter(|column| column.split_whitespace().count() < 2)
            .map(|column| Problem {
                param: Some("columns"),
                message: format!("`{column}` declares no type"),
                help: Some(
                    "write each column as \"name type\", like \"area_m2 double precision\"".into(),
                ),
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let settings = Settings::parse(step.params);
        let db = settings.database.clone();
        Ok(Prepared::default()
            .reads(Resource::file(&settings.from))
            .reads(Resource::Types {
                database: db.clone(),
            })
            .reads(Resource::Extensions {
                database: db.clone(),
            })
            .creates(Resource::table(&db, &settings.schema, None))
            .settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(create(context))
    }
}

impl Operation for Load {
    fn spec(&self) -> &'static OperationSpec {
        &LOAD
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        Ok(Settings::parse(step.params).prepared())
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(load(context))
    }
}

inventory::submit!(Registration(&Create));
inventory::submit!(Registration(&Load));

/// A source that cannot be made or loaded.
fn failed(message: impl Into<String>, help: Option<String>) -> StepError {
    StepError::coded("flow::source::load", message, help)
}
