use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use flow_engine::flow_db::tokio_postgres::{self, CopyInSink, CopyOutStream};
use flow_engine::flow_db::{CancelOnDrop, quote_ident, quote_literal};
use flow_engine::{
    BoxFuture, Check, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};
use futures_util::{SinkExt as _, StreamExt as _};

use crate::migrate::{self, Change, Class, CountAt, Shapes};
use crate::shape::{self, Table};
use crate::{DATABASE, database};

pub struct Populate;

/// How populate replaces the target tables' rows.
pub const MODES: &[&str] = &["replace", "upsert", "append", "swap"];

static POPULATE: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("target"),
    operation: "populate",
    summary: "move model tables into the API database's tables, checked and in one transaction",
    params: &[
        ParamSpec::optional(
            "from",
            ParamType::SchemaName,
            "the model schema (default `model`)",
        ),
        ParamSpec::required(
            "to",
            ParamType::Schema,
            "the target schema, like `api.public`",
        ),
        ParamSpec::required("tables", ParamType::Names, "the tables to move"),
        ParamSpec::optional(
            "mode",
            ParamType::OneOf(MODES),
            "`replace` (default), `upsert`, `append` or `swap`",
        ),
        ParamSpec::optional(
            "key",
            ParamType::Names,
            "with `mode = upsert`, the key columns (default: the primary key)",
        ),
        ParamSpec::optional(
            "renames",
            ParamType::Strings,
            "enum labels renamed in the release, as \"type.old=new\": rows that stay keep their value under the new name",
        ),
        ParamSpec::optional(
            "allow",
            ParamType::Strings,
            "schema changes allowed by name, like \"drop column parcels.old_id\"",
        ),
        DATABASE,
    ],
};

impl Operation for Populate {
    fn spec(&self) -> &'static OperationSpec {
        &POPULATE
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let params = step.params;
        let bad: Vec<Problem> = params
            .list("renames")
            .into_iter()
            .filter(|rename| crate::push::parse_rename(rename).is_none())
            .map(|rename| Problem {
                param: Some("renames"),
                message: format!("`{rename}` is not a rename"),
                help: Some("write renames as \"type.old_label=new_label\"".into()),
            })
            .collect();
        if !bad.is_empty() {
            return Err(bad);
        }
        if params.contains("key") && params.str("mode") != Some("upsert") {
            return Err(vec![Problem {
                param: Some("key"),
                message: "`key` only applies with `mode = upsert`".into(),
                help: Some("remove `key`, or set `mode = upsert`".into()),
            }]);
        }
        let db = database(step);
        let from = params.str("from").unwrap_or("model");
        let (to, _) = params.path("to").unwrap_or_default();
        let [to_db, to_schema] = to.as_slice() else {
            return Ok(Prepared::default());
        };
        let mut prepared = Prepared::default().reads(Resource::Extensions {
            database: (*to_db).to_owned(),
        });
        for table in params.list("tables") {
            prepared = prepared
                .reads(Resource::table(db, from, Some(table)))
                .writes(Resource::table(to_db, to_schema, Some(table)));
        }
        Ok(prepared)
    }

    fn runs_checks(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let report = populate(context, false).await?;
            Ok(Outcome {
                rows: report.rows,
                bytes: report.bytes,
                note: Some(report.summary()),
                unchanged: false,
            })
        })
    }
}

inventory::submit!(Registration(&Populate));

/// What populate did, or would do.
#[derive(Debug, Default)]
pub struct Report {
    pub target: String,
    pub mode: String,
    pub changes: Vec<Change>,
    pub rows: u64,
    pub bytes: u64,
    /// The schema the previous tables went to (`swap`).
    pub previous: Option<String>,
    /// What the checks found, for `flow diff` (a run fails instead).
    pub failed_checks: Vec<String>,
    /// For `swap`, the statements it runs (the changes' SQL is for the
    /// modes that change tables in place).
    pub swap_sql: Vec<String>,
}

impl Report {
    /// The report as JSON, for `flow diff --json`: what a CI job reads to
    /// decide.
    pub fn to_json(&self) -> serde_json::Value {
        let changes: Vec<serde_json::Value> = self
            .changes
            .iter()
            .filter(|c| !c.name.is_empty())
            .map(|c| {
                serde_json::json!({
                    "change": c.name,
                    "class": match c.class {
                        Class::Safe => "safe",
                        Class::DataDependent => "data_dependent",
                        Class::Destructive => "destructive",
                    },
                    "table": c.table,
                    "breaking_rows": c.broken.as_ref().map(|(n, _)| n),
                    "samples": c.broken.as_ref().map(|(_, s)| s),
                    "refused": c.refused,
                    "sql": c.before.iter().chain(&c.after).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "target": self.target,
            "mode": self.mode,
            "rows": self.rows,
            "would_fail": self.would_fail(),
            "changes": changes,
            "failed_checks": self.failed_checks,
            "swap_sql": self.swap_sql,
        })
    }

    /// One line: what moved and what changed.
    pub fn summary(&self) -> String {
        let mut line = format!("{} rows into {} ({})", self.rows, self.target, self.mode);
        let changes: Vec<&Change> = self.changes.iter().filter(|c| !c.name.is_empty()).collect();
        if !changes.is_empty() {
            let names: Vec<&str> = changes.iter().map(|c| c.name.as_str()).collect();
            let _ = write!(line, "; migrated: {}", names.join(", "));
        }
        if let Some(previous) = &self.previous {
            let _ = write!(line, "; previous tables in {previous}");
        }
        line
    }

    /// Whether populate would refuse or fail: a destructive change not
    /// allowed, rows that would break, a check that would fail.
    pub fn would_fail(&self) -> bool {
        !self.failed_checks.is_empty()
            || self
                .changes
                .iter()
                .any(|c| c.refused || c.broken.as_ref().is_some_and(|(n, _)| *n > 0))
    }

    /// The changes, classified, with the rows that break and the SQL.
    pub fn render(&self, sql: bool) -> String {
        let mut text = format!("{} ({})\n", self.target, self.mode);
        if self.changes.is_empty() {
            text.push_str("  no schema change\n");
        }
        for change in &self.changes {
            let _ = write!(text, "  {:<15} {}", change.class.to_string(), change.name);
            match &change.broken {
                Some((0, _)) => text.push_str(": no row breaks"),
                Some((n, samples)) => {
                    let rows = format!("{n} row{}", if *n == 1 { "" } else { "s" });
                    let _ = match change.grouped {
                        Some(values) => write!(
                            text,
                            ": {values} key value{} shared by {rows} would break",
                            if values == 1 { "" } else { "s" }
                        ),
                        None => write!(text, ": {rows} would break"),
                    };
                    for sample in samples {
                        let _ = write!(text, "\n                    {sample}");
                    }
                }
                None => {}
            }
            if change.refused {
                text.push_str(": refused unless allowed by name");
            }
            text.push('\n');
        }
        if !self.failed_checks.is_empty() {
            text.push_str("\n  checks that would fail:\n");
            for failure in &self.failed_checks {
                let _ = writeln!(text, "  {}", failure.trim_start());
            }
        }
        if sql {
            let (statements, title): (Vec<&String>, &str) = if self.swap_sql.is_empty() {
                (
                    self.changes
                        .iter()
                        .flat_map(|c| c.before.iter().chain(&c.after))
                        .collect(),
                    "SQL, in the load's transaction",
                )
            } else {
                (
                    self.swap_sql.iter().collect(),
                    "SQL: the new tables, loaded with COPY, then constrained and switched in one transaction",
                )
            };
            if !statements.is_empty() {
                let _ = writeln!(text, "\n  {title}:");
                for statement in statements {
                    for line in statement.lines() {
                        let _ = writeln!(text, "    {line}");
                    }
                }
            }
        }
        text
    }
}

/// A populate that must not go on, with the report that says why.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}\n{report}")]
#[diagnostic(code(flow::populate::refused))]
struct Refused {
    message: String,
    report: String,
    #[help]
    help: Option<String>,
}

fn refused(message: impl Into<String>, report: &Report, help: impl Into<String>) -> StepError {
    StepError::new(Refused {
        message: message.into(),
        report: report.render(false),
        help: Some(help.into()),
    })
}

/// The parameters of a populate step.
struct Settings {
    from: String,
    to_db: String,
    schema: String,
    tables: Vec<String>,
    mode: String,
    key: Vec<String>,
    allow: Vec<String>,
    /// (type, old label, new label).
    renames: Vec<(String, String, String)>,
}

fn settings(context: &RunContext) -> Result<Settings, StepError> {
    let params = &context.params;
    let (to, _) = params.path("to").unwrap_or_default();
    let [to_db, schema] = to.as_slice() else {
        return Err(StepError::message(
            "`to` names a database and a schema, like `api.public`",
            None,
        ));
    };
    Ok(Settings {
        from: params.str("from").unwrap_or("model").to_owned(),
        to_db: (*to_db).to_owned(),
        schema: (*schema).to_owned(),
        tables: params
            .list("tables")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        mode: params.str("mode").unwrap_or("replace").to_owned(),
        key: params.list("key").into_iter().map(str::to_owned).collect(),
        allow: params
            .list("allow")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        renames: params
            .list("renames")
            .into_iter()
            .filter_map(crate::push::parse_rename)
            .map(|(ty, from, to)| {
                let ty = ty.rsplit('.').next().unwrap_or(ty);
                (ty.to_owned(), from.to_owned(), to.to_owned())
            })
            .collect(),
    })
}

/// Every column of the API database that uses one of `names` (enums).
async fn enum_columns(
    client: &impl tokio_postgres::GenericClient,
    names: Vec<String>,
) -> Result<BTreeMap<String, Vec<(String, String, String)>>, StepError> {
    let mut columns: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for row in client
        .query(
            "SELECT t.typname::text, n.nspname::text, c.relname::text, a.attname::text
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
             WHERE t.typtype = 'e' AND t.typname = ANY($1) AND c.relkind IN ('r', 'p')
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY 1, 2, 3, 4",
            &[&names],
        )
        .await?
    {
        columns
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2), row.get(3)));
    }
    Ok(columns)
}

/// Streams a model table into a COPY sink: binary COPY from one connection
/// to the other, chunk by chunk, nothing whole in memory.
async fn pump(
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

fn copy_out_sql(schema: &str, table: &Table) -> String {
    format!(
        "COPY {}.{} ({}) TO STDOUT (FORMAT binary)",
        quote_ident(schema),
        quote_ident(&table.name),
        table.column_list()
    )
}

fn copy_in_sql(target: &str, table: &Table) -> String {
    format!(
        "COPY {target} ({}) FROM STDIN (FORMAT binary)",
        table.column_list()
    )
}

/// Counts the rows each data-dependent change would break, on `table_of(t)`.
async fn count_breaking(
    client: &impl tokio_postgres::GenericClient,
    changes: &mut [Change],
    at: CountAt,
    table_of: impl Fn(&str) -> String,
) -> Result<(), StepError> {
    for change in changes.iter_mut() {
        let Some((when, query)) = &change.breaking else {
            continue;
        };
        if *when != at {
            continue;
        }
        let query = query.replace(
            "{t}",
            &table_of(change.table.as_deref().unwrap_or_default()),
        );
        let query = match &change.references {
            Some(parent) => query.replace("{ref}", &table_of(parent)),
            None => query,
        };
        // By key: how many values, and how many rows share them.
        let count: i64 = if change.grouped.is_some() {
            let row = client
                .query_one(
                    &format!("SELECT count(*), coalesce(sum(rows), 0)::bigint FROM ({query}) b"),
                    &[],
                )
                .await?;
            change.grouped = Some(row.get(0));
            row.get(1)
        } else {
            client
                .query_one(&format!("SELECT count(*) FROM ({query}) b"), &[])
                .await?
                .get(0)
        };
        let samples = if count > 0 {
            client
                .query(
                    &format!("SELECT row_to_json(b)::text FROM ({query}) b LIMIT 3"),
                    &[],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            Vec::new()
        };
        change.broken = Some((count, samples));
    }
    Ok(())
}

fn any_broken(changes: &[Change]) -> bool {
    changes
        .iter()
        .any(|c| c.broken.as_ref().is_some_and(|(n, _)| *n > 0))
}

const BREAK_HELP: &str = "fix the rows in the model (or its transforms) so they fit the new schema; nothing was written to the API database";

/// What to do about rows that break, by mode: under `append` and `upsert`
/// the API's own rows stay, and may be the ones that break.
fn break_help(mode: &str) -> String {
    match mode {
        "append" | "upsert" => format!(
            "with `mode = {mode}` the API table keeps its rows, and the rows that break may be those (the samples show them): fix them in the API database, fix the model, or load with `mode = replace`; nothing was written to the API database"
        ),
        _ => BREAK_HELP.to_owned(),
    }
}

/// Moves the model tables into the API database. With `dry_run`, does all of
/// it (the load too, so that breaking rows are counted on real data) and
/// rolls back: `flow diff`.
pub async fn populate(context: &RunContext, dry_run: bool) -> Result<Report, StepError> {
    let settings = settings(context)?;
    let flow_db = context.database(context.params.str("database").unwrap_or("flow"))?;
    let api = context.database(&settings.to_db)?;
    let flow = flow_db.client().await?;
    let (model, model_enums) = shape::read(&**flow, &settings.from, &settings.tables).await?;
    let mut client = api.client().await?;
    let guard = CancelOnDrop::new(&client);
    let (target, target_enums) = {
        let (tables, _) = shape::read(&**client, &settings.schema, &settings.tables).await?;
        (tables, shape::enums(&**client).await?)
    };
    let missing: Vec<&String> = settings
        .tables
        .iter()
        .filter(|t| !model.contains_key(*t) && !target.contains_key(*t))
        .collect();
    if !missing.is_empty() {
        return Err(StepError::message(
            format!(
                "neither `{}` nor `{}.{}` has table {}",
                settings.from,
                settings.to_db,
                settings.schema,
                missing
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some("create the model tables first (`pg:model:create`)".into()),
        ));
    }
    let columns = enum_columns(&**client, model_enums.keys().cloned().collect()).await?;
    let shapes = Shapes {
        model: &model,
        model_enums: &model_enums,
        target: &target,
        target_enums: &target_enums,
        enum_columns: &columns,
        schema: &settings.schema,
        renames: &settings.renames,
    };
    let mut changes = migrate::enum_changes(&shapes);
    for table in &settings.tables {
        changes.extend(migrate::table_changes(&shapes, table));
    }
    let mut report = Report {
        target: format!("{}.{}", settings.to_db, settings.schema),
        mode: settings.mode.clone(),
        changes,
        ..Report::default()
    };
    for change in &mut report.changes {
        change.refused =
            change.class == Class::Destructive && !settings.allow.contains(&change.name);
    }
    let refused_names: Vec<String> = report
        .changes
        .iter()
        .filter(|c| c.refused)
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    if !refused_names.is_empty() && !dry_run {
        return Err(refused(
            "populate would destroy data in the API database; nothing was written",
            &report,
            format!(
                "allow it by name if it is meant: allow = [{}]",
                refused_names.join(", ")
            ),
        ));
    }
    let result = if settings.mode == "swap" {
        swap(context, &settings, &shapes, &mut report, dry_run).await
    } else {
        in_place(
            context,
            &settings,
            &shapes,
            &flow,
            &mut client,
            &mut report,
            dry_run,
        )
        .await
    };
    guard.disarm();
    result.map(|()| report)
}

/// `replace`, `upsert` and `append`: the migration, the load, the checks, all
/// in one transaction of the API database.
async fn in_place(
    context: &RunContext,
    settings: &Settings,
    shapes: &Shapes<'_>,
    flow: &tokio_postgres::Client,
    client: &mut flow_engine::flow_db::Client,
    report: &mut Report,
    dry_run: bool,
) -> Result<(), StepError> {
    let schema = &settings.schema;
    let qualified = |t: &str| format!("{}.{}", quote_ident(schema), quote_ident(t));
    let transaction = client.transaction().await?;
    if report
        .changes
        .iter()
        .any(|c| matches!(c.breaking, Some((CountAt::Before, _))))
    {
        transaction.batch_execute(migrate::FITS).await?;
    }
    for change in report.changes.iter().filter(|c| c.table.is_none()) {
        for sql in &change.before {
            transaction.batch_execute(sql).await?;
        }
    }
    // Foreign keys of other API tables into these let go while the rows are
    // replaced, and come back (every row checked) before the commit.
    let outside_keys = if settings.mode == "append" {
        Vec::new()
    } else {
        crate::dependents::release_foreign_keys(&transaction, schema, &settings.tables).await?
    };
    // Tables their foreign keys point at are loaded first, and emptied last.
    let order = parents_first(&settings.tables, shapes);
    if settings.mode == "replace" {
        for name in order.iter().rev() {
            if shapes.target.contains_key(*name) {
                transaction
                    .batch_execute(&format!("DELETE FROM {}", qualified(name)))
                    .await?;
            }
        }
    }
    for name in order {
        let Some(model) = shapes.model.get(name) else {
            run_before(&transaction, &report.changes, name).await?;
            continue;
        };
        let target = qualified(name);
        let exists = shapes.target.contains_key(name);
        let mut staged = None;
        if settings.mode == "upsert" {
            let key = if settings.key.is_empty() {
                model.primary_key.clone()
            } else {
                settings.key.clone()
            };
            if key.is_empty() {
                return Err(StepError::message(
                    format!("`{}.{name}` has no primary key to upsert by", settings.from),
                    Some("name the key columns: `key = [id]`".into()),
                ));
            }
            let stage = format!("pg_temp.{}", quote_ident(&format!("flow_stage_{name}")));
            let table = migrate::target_table(shapes, model);
            transaction
                .batch_execute(&table.create("pg_temp", true).replacen(
                    &format!("{}.{}", quote_ident("pg_temp"), quote_ident(name)),
                    &stage,
                    1,
                ))
                .await?;
            let source = flow.copy_out(&copy_out_sql(&settings.from, model)).await?;
            let sink = transaction.copy_in(&copy_in_sql(&stage, model)).await?;
            let (_, bytes) = pump(context, source, sink).await?;
            report.bytes += bytes;
            if exists {
                let matches = key
                    .iter()
                    .map(|k| format!("t.{0} = s.{0}", quote_ident(k)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                transaction
                    .batch_execute(&format!(
                        "DELETE FROM {target} t USING {stage} s WHERE {matches}"
                    ))
                    .await?;
            }
            staged = Some(stage);
        }
        let mut table_changes: Vec<&mut Change> = report
            .changes
            .iter_mut()
            .filter(|c| c.table.as_deref() == Some(name.as_str()))
            .collect();
        for change in &mut table_changes {
            if let Some((CountAt::Before, _)) = change.breaking {
                count_breaking(
                    &*transaction,
                    std::slice::from_mut(*change),
                    CountAt::Before,
                    |_| target.clone(),
                )
                .await?;
            }
        }
        if table_changes
            .iter()
            .any(|c| c.broken.as_ref().is_some_and(|(n, _)| *n > 0))
        {
            break;
        }
        for change in &table_changes {
            for sql in &change.before {
                transaction.batch_execute(sql).await?;
            }
        }
        match staged {
            Some(stage) => {
                let rows = transaction
                    .execute(
                        &format!(
                            "INSERT INTO {target} ({0}) SELECT {0} FROM {stage}",
                            model.column_list()
                        ),
                        &[],
                    )
                    .await?;
                transaction
                    .batch_execute(&format!("DROP TABLE {stage}"))
                    .await?;
                report.rows += rows;
                context.progress.add_rows(rows);
            }
            None => {
                let source = flow.copy_out(&copy_out_sql(&settings.from, model)).await?;
                let sink = transaction.copy_in(&copy_in_sql(&target, model)).await?;
                let (rows, bytes) = pump(context, source, sink).await?;
                report.rows += rows;
                report.bytes += bytes;
            }
        }
    }
    if any_broken(&report.changes) {
        return Err(refused(
            "rows of the API database would not fit the new schema; nothing was written",
            report,
            break_help(&settings.mode),
        ));
    }
    count_breaking(&*transaction, &mut report.changes, CountAt::After, |t| {
        qualified(t)
    })
    .await?;
    if any_broken(&report.changes) {
        if dry_run {
            transaction.rollback().await?;
            return Ok(());
        }
        return Err(refused(
            "the rows after the load would break the new schema; nothing was written",
            report,
            break_help(&settings.mode),
        ));
    }
    let (table_afters, enum_afters): (Vec<&Change>, Vec<&Change>) =
        report.changes.iter().partition(|c| c.table.is_some());
    for change in table_afters.into_iter().chain(enum_afters) {
        for sql in &change.after {
            transaction.batch_execute(sql).await?;
        }
    }
    crate::dependents::restore(&transaction, schema, &outside_keys).await?;
    // Keys loaded into identity and serial columns: the product's own
    // inserts go on after them.
    crate::dependents::advance_sequences(&transaction, schema, &settings.tables).await?;
    // Materialized views over the tables read the new rows.
    crate::dependents::refresh_materialized(&transaction, &settings.schema, &settings.tables)
        .await?;
    let failures = run_checks(&*transaction, &context.checks, settings, &|t| qualified(t)).await?;
    if dry_run {
        report.failed_checks = failures;
    } else if !failures.is_empty() {
        return Err(check_failed(&failures));
    }
    if dry_run {
        transaction.rollback().await?;
    } else {
        transaction.commit().await?;
    }
    Ok(())
}

/// The tables in an order where a table comes after the tables (of the
/// list) its foreign keys, in the model or the target, point at; otherwise as
/// listed. Tables that point at each other stay as listed.
fn parents_first<'a>(tables: &'a [String], shapes: &Shapes<'_>) -> Vec<&'a String> {
    let references = |name: &str| -> Vec<&str> {
        [shapes.model.get(name), shapes.target.get(name)]
            .into_iter()
            .flatten()
            .flat_map(|t| t.references.iter().map(String::as_str))
            .filter(|r| *r != name && tables.iter().any(|t| t == r))
            .collect()
    };
    let mut placed: Vec<&String> = Vec::with_capacity(tables.len());
    while placed.len() < tables.len() {
        let next = tables
            .iter()
            .filter(|t| !placed.contains(t))
            .find(|t| references(t).iter().all(|r| placed.iter().any(|p| p == r)))
            .or_else(|| tables.iter().find(|t| !placed.contains(t)));
        match next {
            Some(table) => placed.push(table),
            None => break,
        }
    }
    placed
}

async fn run_before(
    transaction: &tokio_postgres::Transaction<'_>,
    changes: &[Change],
    table: &str,
) -> Result<(), StepError> {
    for change in changes.iter().filter(|c| c.table.as_deref() == Some(table)) {
        for sql in &change.before {
            transaction.batch_execute(sql).await?;
        }
    }
    Ok(())
}

/// `swap`: load fresh tables into a scratch schema (in parallel, one
/// connection per table), constrain and check them, then in one transaction
/// move the current tables to a `__flow_prev_` schema and the new ones in.
async fn swap(
    context: &RunContext,
    settings: &Settings,
    shapes: &Shapes<'_>,
    report: &mut Report,
    dry_run: bool,
) -> Result<(), StepError> {
    let schema = &settings.schema;
    let next = format!("{schema}__flow_next");
    let q = quote_ident;
    let api = context.database(&settings.to_db)?;
    let flow_db = context.database(context.params.str("database").unwrap_or("flow"))?;
    // Enums whose labels change travel with the tables: made in the scratch
    // schema, moved in at the switch; the previous tables keep theirs.
    let swapped: Vec<&String> = shapes
        .model_enums
        .iter()
        .filter(|(name, e)| {
            shapes
                .target_enums
                .get(*name)
                .is_none_or(|have| have.labels != e.labels)
        })
        .map(|(name, _)| name)
        .collect();
    for name in &swapped {
        if let Some(have) = shapes.target_enums.get(*name)
            && have.schema != *schema
        {
            return Err(StepError::message(
                format!("enum `{name}` changes, but it lives in schema `{}`, not `{schema}`", have.schema),
                Some("swap moves the enums of the target schema only; use `mode = replace` to change it in place".into()),
            ));
        }
    }
    let mut setup = format!(
        "DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0};\n",
        q(&next)
    );
    for name in &swapped {
        let labels: Vec<String> = shapes.model_enums[*name]
            .labels
            .iter()
            .map(|l| quote_literal(l))
            .collect();
        let _ = writeln!(
            setup,
            "CREATE TYPE {}.{} AS ENUM ({});",
            q(&next),
            q(name),
            labels.join(", ")
        );
    }
    let mut tables: Vec<Table> = Vec::new();
    for name in &settings.tables {
        let Some(model) = shapes.model.get(name) else {
            continue;
        };
        let mut table = migrate::target_table(shapes, model);
        for column in &mut table.columns {
            if let Some((s, n)) = &mut column.custom
                && column.is_enum
                && swapped.contains(&&*n)
            {
                *s = next.clone();
            }
        }
        let _ = writeln!(setup, "{};", table.create(&next, true));
        tables.push(table);
    }
    let scratch = api.client().await?;
    scratch.batch_execute(&setup).await?;
    report.swap_sql.push(setup);
    let loads = tables.iter().map(|table| async {
        let flow = flow_db.client().await?;
        let client = api.client().await?;
        let guard = CancelOnDrop::new(&client);
        let source = flow.copy_out(&copy_out_sql(&settings.from, table)).await?;
        let sink = client
            .copy_in(&copy_in_sql(
                &format!("{}.{}", q(&next), q(&table.name)),
                table,
            ))
            .await?;
        let moved = pump(context, source, sink).await;
        guard.disarm();
        moved
    });
    let mut result = Ok(());
    for loaded in futures_util::future::join_all(loads).await {
        match loaded {
            Ok((rows, bytes)) => {
                report.rows += rows;
                report.bytes += bytes;
            }
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    if result.is_ok() {
        result = switch(
            context, settings, shapes, report, &tables, &swapped, &next, dry_run,
        )
        .await;
    }
    if result.is_err() || dry_run {
        let _ = scratch
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", q(&next)))
            .await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn switch(
    context: &RunContext,
    settings: &Settings,
    shapes: &Shapes<'_>,
    report: &mut Report,
    tables: &[Table],
    swapped: &[&String],
    next: &str,
    dry_run: bool,
) -> Result<(), StepError> {
    let schema = &settings.schema;
    let q = quote_ident;
    let mut client = context.database(&settings.to_db)?.client().await?;
    let guard = CancelOnDrop::new(&client);
    let transaction = client.transaction().await?;
    // Breaking rows are counted on the new tables, before their constraints;
    // the previous tables keep their enums, so no old row breaks a label.
    for change in report.changes.iter_mut().filter(|c| c.table.is_none()) {
        if change.breaking.take().is_some() {
            change.broken = Some((0, Vec::new()));
        }
    }
    count_breaking(&*transaction, &mut report.changes, CountAt::After, |t| {
        format!("{}.{}", q(next), q(t))
    })
    .await?;
    if any_broken(&report.changes) {
        guard.disarm();
        if dry_run {
            return Ok(());
        }
        return Err(refused(
            "the new tables would break the schema; nothing was switched",
            report,
            BREAK_HELP,
        ));
    }
    let mut constrain = String::new();
    for table in tables {
        let name = format!("{}.{}", q(next), q(&table.name));
        for column in table.columns.iter().filter(|c| c.not_null) {
            let _ = writeln!(
                constrain,
                "ALTER TABLE {name} ALTER COLUMN {} SET NOT NULL;",
                q(&column.name)
            );
        }
        // Identity columns: made loose for the load, given their identity
        // back, numbered on from the rows loaded (the API's position comes
        // after the switch, see `dependents`).
        for column in table.columns.iter().filter(|c| c.identity) {
            let _ = writeln!(
                constrain,
                "ALTER TABLE {name} ALTER COLUMN {0} SET NOT NULL, ALTER COLUMN {0} ADD GENERATED BY DEFAULT AS IDENTITY;
SELECT setval(pg_get_serial_sequence({1}, {2}), coalesce((SELECT max({0}) FROM {name}), 0) + 1, false);",
                q(&column.name),
                quote_literal(&name),
                quote_literal(&column.name)
            );
        }
        if !table.primary_key.is_empty() {
            let _ = writeln!(
                constrain,
                "ALTER TABLE {name} ADD PRIMARY KEY ({});",
                shape::idents(&table.primary_key)
            );
        }
        for constraint in &table.constraints {
            // A foreign key points at the new table when that is swapped
            // too, else at the API's.
            let definition = match migrate::foreign_key(&constraint.definition) {
                Some(key) => {
                    let parent = key.table.trim_matches('"');
                    let home = if tables.iter().any(|t| t.name == parent) {
                        q(next)
                    } else {
                        q(schema)
                    };
                    migrate::qualify_foreign_key(&constraint.definition, &home)
                }
                None => constraint.definition.clone(),
            };
            let _ = writeln!(
                constrain,
                "ALTER TABLE {name} ADD CONSTRAINT {} {definition};",
                q(&constraint.name),
            );
        }
    }
    transaction.batch_execute(&constrain).await?;
    report.swap_sql.push(constrain);
    let stamp: String = transaction
        .query_one(
            "SELECT to_char(clock_timestamp(), 'YYYYMMDD_HH24MISS_US')",
            &[],
        )
        .await?
        .get(0);
    let previous = format!("{schema}__flow_prev_{stamp}");
    // What the API's readers depend on moves to the new tables.
    let replaced: Vec<String> = settings
        .tables
        .iter()
        .filter(|name| shapes.target.contains_key(*name) && shapes.model.contains_key(*name))
        .cloned()
        .collect();
    let carried = crate::dependents::capture(&transaction, schema, &replaced).await?;
    let mut moves = format!(
        "CREATE SCHEMA {0};\nCOMMENT ON SCHEMA {0} IS {1};\n",
        q(&previous),
        quote_literal(&format!(
            "flow swap tables={} types={}",
            settings.tables.join(","),
            swapped
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ))
    );
    for name in &settings.tables {
        if shapes.target.contains_key(name) {
            let _ = writeln!(
                moves,
                "ALTER TABLE {}.{} SET SCHEMA {};",
                q(schema),
                q(name),
                q(&previous)
            );
        }
        if shapes.model.contains_key(name) {
            let _ = writeln!(
                moves,
                "ALTER TABLE {}.{} SET SCHEMA {};",
                q(next),
                q(name),
                q(schema)
            );
        }
    }
    for name in swapped {
        if shapes.target_enums.contains_key(*name) {
            let _ = writeln!(
                moves,
                "ALTER TYPE {}.{} SET SCHEMA {};",
                q(schema),
                q(name),
                q(&previous)
            );
        }
        let _ = writeln!(
            moves,
            "ALTER TYPE {}.{} SET SCHEMA {};",
            q(next),
            q(name),
            q(schema)
        );
    }
    let _ = writeln!(moves, "DROP SCHEMA {};", q(next));
    transaction.batch_execute(&moves).await?;
    report.swap_sql.push(moves);
    crate::dependents::restore(&transaction, schema, &carried).await?;
    if !carried.is_empty() {
        report.swap_sql.push(carried.join("\n"));
    }
    let failures = run_checks(&*transaction, &context.checks, settings, &|t| {
        format!("{}.{}", q(schema), q(t))
    })
    .await?;
    if dry_run {
        report.failed_checks = failures;
    } else if !failures.is_empty() {
        return Err(check_failed(&failures));
    }
    prune_previous(&transaction, schema).await?;
    if dry_run {
        transaction.rollback().await?;
    } else {
        transaction.commit().await?;
        report.previous = Some(previous);
    }
    guard.disarm();
    Ok(())
}

/// How many previous releases `swap` keeps for `flow rollback`.
const KEEP_PREVIOUS: i64 = 2;

/// Drops the previous schemas beyond the last [`KEEP_PREVIOUS`], unless a
/// table elsewhere still uses one of their types.
async fn prune_previous(
    transaction: &tokio_postgres::Transaction<'_>,
    schema: &str,
) -> Result<(), StepError> {
    let old = transaction
        .query(
            "SELECT n.nspname::text FROM pg_namespace n
             WHERE n.nspname LIKE $1 || '\\_\\_flow\\_prev\\_%'
               AND NOT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                               JOIN pg_class c ON c.oid = a.attrelid
                               WHERE t.typnamespace = n.oid AND c.relnamespace <> n.oid)
             ORDER BY n.nspname DESC OFFSET $2",
            &[&schema, &KEEP_PREVIOUS],
        )
        .await?;
    for row in old {
        transaction
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", quote_ident(row.get(0))))
            .await?;
    }
    Ok(())
}

/// Puts back the tables (and enums) of the last `swap`: the current ones go
/// to a `__flow_undone_` schema. Returns a line saying what moved.
pub async fn rollback(context: &RunContext) -> Result<String, StepError> {
    let settings = settings(context)?;
    let schema = &settings.schema;
    let q = quote_ident;
    let mut client = context.database(&settings.to_db)?.client().await?;
    let transaction = client.transaction().await?;
    let Some(previous) = transaction
        .query_opt(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 || '\\_\\_flow\\_prev\\_%'
             ORDER BY nspname DESC LIMIT 1",
            &[schema],
        )
        .await?
        .map(|row| row.get::<_, String>(0))
    else {
        return Err(StepError::message(
            format!("`{}.{schema}` has no previous release to go back to", settings.to_db),
            Some("`mode = swap` keeps the tables it replaces; other modes keep nothing".into()),
        ));
    };
    let comment: String = transaction
        .query_one(
            "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') FROM pg_namespace WHERE nspname = $1",
            &[&previous],
        )
        .await?
        .get(0);
    let listed = |key: &str| -> Vec<String> {
        comment
            .split_whitespace()
            .find_map(|part| part.strip_prefix(key))
            .map(|names| {
                names
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (names, types) = (listed("tables="), listed("types="));
    // Which tables the previous release had: those come back; the others
    // were new with the release, and go.
    let mut back = Vec::new();
    let mut removed = Vec::new();
    for name in &names {
        let existed: bool = transaction
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("{}.{}", q(&previous), q(name))],
            )
            .await?
            .get(0);
        if existed {
            back.push(name.clone());
        } else {
            removed.push(name.clone());
        }
    }
    let undone = previous.replace("__flow_prev_", "__flow_undone_");
    let mut moves = format!("CREATE SCHEMA {};\n", q(&undone));
    for (kind, list) in [("TABLE", &names), ("TYPE", &types)] {
        for name in list {
            let current = format!("{}.{}", q(schema), q(name));
            let old = format!("{}.{}", q(&previous), q(name));
            let exists = if kind == "TABLE" {
                "to_regclass"
            } else {
                "to_regtype"
            };
            let _ = writeln!(
                moves,
                "DO $flow$ BEGIN
  IF {exists}({0}) IS NOT NULL THEN ALTER {kind} {current} SET SCHEMA {1}; END IF;
  IF {exists}({2}) IS NOT NULL THEN ALTER {kind} {old} SET SCHEMA {3}; END IF;
END $flow$;",
                quote_literal(&current),
                q(&undone),
                quote_literal(&old),
                q(schema)
            );
        }
    }
    let _ = writeln!(moves, "DROP SCHEMA {};", q(&previous));
    transaction.batch_execute(&moves).await?;
    transaction.commit().await?;
    let mut message = format!("{}.{schema}: ", settings.to_db);
    if back.is_empty() {
        message.push_str("there was no previous release; ");
    } else {
        let _ = write!(
            message,
            "{} back from the previous release; ",
            back.join(", ")
        );
    }
    if !removed.is_empty() {
        let _ = write!(
            message,
            "{} {} new with the release, removed; ",
            removed.join(", "),
            if removed.len() == 1 { "was" } else { "were" }
        );
    }
    let _ = write!(message, "the tables taken out are kept in {undone}");
    Ok(message)
}

/// A `check` block that failed, with what it found.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} failed; nothing was written to the API database\n{}", if .0.len() == 1 { "a check" } else { "checks" }, .0.join("\n"))]
#[diagnostic(
    code(flow::check::failed),
    help("the checks ran on the new rows inside the load's transaction, which was rolled back")
)]
struct CheckFailed(Vec<String>);

fn check_failed(failures: &[String]) -> StepError {
    StepError::new(CheckFailed(failures.to_vec()))
}

/// Runs the `check` blocks on the tables this step writes; returns what failed.
async fn run_checks(
    client: &impl tokio_postgres::GenericClient,
    checks: &[Check],
    settings: &Settings,
    table_of: &(dyn Fn(&str) -> String + Sync),
) -> Result<Vec<String>, StepError> {
    let mut failures = Vec::new();
    for check in checks.iter().filter(|c| {
        c.database == settings.to_db
            && c.schema == settings.schema
            && settings.tables.contains(&c.table)
    }) {
        let table = table_of(&check.table);
        let place = format!("check `{}` on {}.{}", check.name, check.schema, check.table);
        let count = |sql: String| async move {
            client
                .query_one(&sql, &[])
                .await
                .map(|row| row.get::<_, i64>(0))
        };
        let rows = count(format!("SELECT count(*) FROM {table}")).await?;
        if let Some(min) = check.params.count("min_rows")
            && rows < min as i64
        {
            failures.push(format!("  {place}: {rows} rows, at least {min} expected"));
        }
        if let Some(max) = check.params.count("max_rows")
            && rows > max as i64
        {
            failures.push(format!("  {place}: {rows} rows, at most {max} expected"));
        }
        for column in check.params.list("not_null") {
            let nulls = count(format!(
                "SELECT count(*) FROM {table} WHERE {} IS NULL",
                quote_ident(column)
            ))
            .await?;
            if nulls > 0 {
                failures.push(format!("  {place}: {nulls} rows have no `{column}`"));
            }
        }
        let unique = check.params.list("unique");
        if !unique.is_empty() {
            let columns = shape::idents(&unique);
            let duplicated = count(format!(
                "SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {columns} HAVING count(*) > 1) d"
            ))
            .await?;
            if duplicated > 0 {
                failures.push(format!(
                    "  {place}: {duplicated} values of ({}) appear more than once",
                    unique.join(", ")
                ));
            }
        }
        for column in check.params.list("valid_geometry") {
            let invalid = count(format!(
                "SELECT count(*) FROM {table} WHERE NOT ST_IsValid({})",
                quote_ident(column)
            ))
            .await?;
            if invalid > 0 {
                failures.push(format!(
                    "  {place}: {invalid} rows have an invalid `{column}` (see ST_IsValidReason)"
                ));
            }
        }
        if let Some(sql) = check.params.str("sql") {
            let query = sql.trim().trim_end_matches(';');
            let failing = count(format!("SELECT count(*) FROM ({query}) f")).await?;
            if failing > 0 {
                let samples: Vec<String> = client
                    .query(
                        &format!("SELECT row_to_json(f)::text FROM ({query}) f LIMIT 3"),
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|r| format!("      {}", r.get::<_, String>(0)))
                    .collect();
                failures.push(format!(
                    "  {place}: its query returned {failing} failing rows\n{}",
                    samples.join("\n")
                ));
            }
        }
    }
    Ok(failures)
}
