use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use flow_engine::flow_db::{CancelOnDrop, quote_ident};
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};
use futures_util::SinkExt as _;
use tokio::io::AsyncReadExt as _;

use crate::csv_schema;
use crate::{DATABASE, database};

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
            ParamType::Name,
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
            ParamType::Name,
            "the schema of the tables (default `source`)",
        ),
        ParamSpec::optional(
            "max_errors",
            ParamType::Count,
            "bad rows sent to a reject table before the load fails (default 0)",
        ),
        DATABASE,
    ],
};

fn schema<'a>(step: &'a StepContext<'_>) -> &'a str {
    step.params.str("schema").unwrap_or("source")
}

/// The table a CSV file goes to: its name without the extension.
fn table_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn csv_files(context: &RunContext) -> Result<Vec<PathBuf>, StepError> {
    let files = context.files(context.params.str("from").unwrap_or_default())?;
    if let Some(shp) = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("shp")))
    {
        return Err(StepError::message(
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
    let schema = context.params.str("schema").unwrap_or("source").to_owned();
    let declared: Vec<(String, String)> = context
        .params
        .list("columns")
        .into_iter()
        .filter_map(|c| c.split_once(char::is_whitespace))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect();
    let client = context
        .database(context.params.str("database").unwrap_or("flow"))?
        .client()
        .await?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&schema)
        ))
        .await?;
    let mut created = 0;
    let files = csv_files(context)?;
    for file in &files {
        let (path, declared_here) = (file.clone(), declared.clone());
        let columns = tokio::task::spawn_blocking(move || csv_schema::infer(&path, &declared_here))
            .await
            .map_err(|e| StepError::message(e.to_string(), None))?
            .map_err(|e| {
                StepError::message(
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
                return Err(StepError::message(
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
                StepError::message(
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
    if context.params.count("max_errors").unwrap_or(0) > 0 {
        return Err(StepError::message(
            "`max_errors` (a reject table for bad rows) is not built yet",
            Some("remove it: a bad row fails the load with its file, line and column".into()),
        ));
    }
    let schema = Arc::new(context.params.str("schema").unwrap_or("source").to_owned());
    let database = context.database(context.params.str("database").unwrap_or("flow"))?;
    let files = csv_files(context)?;
    let permits = Arc::new(tokio::sync::Semaphore::new(database.pool_size().max(1)));
    let loads = files.iter().map(|file| {
        let (permits, schema) = (Arc::clone(&permits), Arc::clone(&schema));
        async move {
            let _permit = permits.acquire_owned().await;
            load_file(context, database, &schema, file).await
        }
    });
    let mut rows = 0;
    let mut bytes = 0;
    for result in futures_util::future::join_all(loads).await {
        let (file_rows, file_bytes) = result?;
        rows += file_rows;
        bytes += file_bytes;
    }
    Ok(Outcome {
        rows,
        bytes,
        note: Some(format!("{} files, {rows} rows", files.len())),
        unchanged: false,
    })
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
        let mut reader = tokio::fs::File::open(file)
            .await
            .map_err(|e| StepError::message(format!("cannot read `{relative}`: {e}"), None))?;
        let mut bytes = 0u64;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let read = reader
                .read(&mut buffer)
                .await
                .map_err(|e| StepError::message(format!("cannot read `{relative}`: {e}"), None))?;
            if read == 0 {
                break;
            }
            bytes += read as u64;
            context.progress.add_bytes(read as u64);
            sink.send(Bytes::copy_from_slice(&buffer[..read])).await?;
        }
        let rows = sink.as_mut().finish().await?;
        transaction.commit().await?;
        context.progress.add_rows(rows);
        Ok::<(u64, u64), StepError>((rows, bytes))
    }
    .await;
    guard.disarm();
    result.map_err(|error| copy_error(error, &relative))
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
            StepError::message(
                format!("`{file}`, line {line}{}: {message}", if column.is_empty() { String::new() } else { format!(", column {column}") }),
                Some("fix the value, or declare the column's type with `columns = [\"name type\"]` on `pg:source:create`".into()),
            )
        }
        None => StepError::message(format!("`{file}`: {message}"), None),
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
        let db = database(step);
        Ok(Prepared::default()
            .reads(Resource::file(step.params.str("from").unwrap_or_default()))
            .reads(Resource::Types {
                database: db.to_owned(),
            })
            .reads(Resource::Extensions {
                database: db.to_owned(),
            })
            .creates(Resource::table(db, schema(step), None)))
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
        Ok(Prepared::default()
            .reads(Resource::file(step.params.str("from").unwrap_or_default()))
            .writes(Resource::table(database(step), schema(step), None)))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(load(context))
    }
}

inventory::submit!(Registration(&Create));
inventory::submit!(Registration(&Load));
