use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use flow_engine::flow_db::{CancelOnDrop, DbError, quote_ident};
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Params, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};

use crate::DATABASE;
use crate::sql_tables;

pub struct Transform;

static TRANSFORM: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("model"),
    operation: "transform",
    summary: "run SQL files that fill the model tables from the source tables",
    params: &[
        ParamSpec::required(
            "sql",
            ParamType::Glob,
            "the SQL files, like \"transform/*.sql\"",
        ),
        ParamSpec::optional(
            "schema",
            ParamType::SchemaName,
            "the schema it fills (default `model`)",
        ),
        ParamSpec::optional(
            "reads",
            ParamType::Names,
            "the schemas it reads (default `[source]`)",
        ),
        DATABASE,
    ],
};

/// A transform's parameters, with their defaults.
struct Settings {
    /// The SQL files' glob.
    sql: String,
    /// The model schema it fills (default `model`).
    schema: String,
    database: String,
}

impl Settings {
    fn parse(params: &Params) -> Self {
        Self {
            sql: params.str("sql").unwrap_or_default().to_owned(),
            schema: params.str("schema").unwrap_or("model").to_owned(),
            database: params.database().to_owned(),
        }
    }
}

impl Operation for Transform {
    fn spec(&self) -> &'static OperationSpec {
        &TRANSFORM
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let db = step.params.database();
        let mut prepared =
            Prepared::default().reads(Resource::file(step.params.str("sql").unwrap_or_default()));
        let reads = step.params.list("reads");
        for schema in if reads.is_empty() {
            vec!["source"]
        } else {
            reads
        } {
            prepared = prepared.reads(Resource::table(db, schema, None));
        }
        let settings = Settings::parse(step.params);
        Ok(prepared
            .writes(Resource::table(db, &settings.schema, None))
            .settings(settings))
    }

    fn parts(&self, params: &Params, base_dir: &Path) -> Vec<String> {
        let settings = Settings::parse(params);
        match ordered(&settings, base_dir) {
            Ok(files) => files
                .iter()
                .map(|file| {
                    let why: Vec<String> = file
                        .after
                        .iter()
                        .map(|(j, reason)| format!("after {}: {reason}", found_name(&files, *j)))
                        .collect();
                    if why.is_empty() {
                        file.name.clone()
                    } else {
                        format!("{} ({})", file.name, why.join("; "))
                    }
                })
                .collect(),
            Err(error) => vec![format!("(cannot order the files: {})", error.report)],
        }
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(transform(context))
    }
}

/// A transform file, read and scanned.
#[derive(Debug)]
pub struct SqlFile {
    pub path: PathBuf,
    /// As the flow names it, relative to its folder.
    pub name: String,
    pub text: String,
    pub reads: BTreeSet<String>,
    pub writes: BTreeSet<String>,
    /// The files it runs after (by [`SqlFile::found`]), and why.
    pub after: Vec<(usize, String)>,
    /// Its place among the files as found, in name order.
    pub found: usize,
}

/// A table name as the model's search path resolves it: unqualified names are
/// the model schema's.
fn qualify(name: &str, schema: &str) -> String {
    if name.contains('.') {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

/// The transform files of a step in the order they run: a file that reads a
/// table runs after the files that write it, and after those it names in
/// `-- flow: after other.sql`; otherwise by name.
fn ordered(settings: &Settings, base_dir: &Path) -> Result<Vec<SqlFile>, StepError> {
    ordered_with_keys(settings, base_dir, &[])
}

/// [`ordered`], where also a file that writes a table whose foreign key
/// points at another (`keys`: child, parent, qualified) runs after the files
/// that write the parent.
fn ordered_with_keys(
    settings: &Settings,
    base_dir: &Path,
    keys: &[(String, String)],
) -> Result<Vec<SqlFile>, StepError> {
    let schema = settings.schema.as_str();
    let mut files = Vec::new();
    for path in flow_engine::files(base_dir, &settings.sql)? {
        let name = path
            .strip_prefix(base_dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| transform_failed(format!("cannot read `{name}`: {e}"), None))?;
        let tables = sql_tables::scan(&text);
        files.push((
            SqlFile {
                path,
                name,
                reads: tables.reads.iter().map(|t| qualify(t, schema)).collect(),
                writes: tables.writes.iter().map(|t| qualify(t, schema)).collect(),
                text,
                after: Vec::new(),
                found: files.len(),
            },
            tables.after,
        ));
    }
    let by_file_name: BTreeMap<String, usize> = files
        .iter()
        .enumerate()
        .filter_map(|(i, (f, _))| Some((f.path.file_name()?.to_string_lossy().into_owned(), i)))
        .collect();
    let mut after: Vec<Vec<(usize, String)>> = vec![Vec::new(); files.len()];
    for (i, (file, declared)) in files.iter().enumerate() {
        for name in declared {
            let Some(&j) = by_file_name.get(name) else {
                return Err(transform_failed(
                    format!(
                        "`{}` runs after `{name}`, which is not one of the step's files",
                        file.name
                    ),
                    Some(format!(
                        "the files are {}",
                        by_file_name.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                ));
            };
            after[i].push((j, "declared".into()));
        }
        for (j, (other, _)) in files.iter().enumerate() {
            if i != j
                && let Some(table) = file.reads.intersection(&other.writes).next()
            {
                after[i].push((j, format!("reads {table}")));
            } else if i != j
                && let Some((child, parent)) = keys
                    .iter()
                    .find(|(c, p)| file.writes.contains(c) && other.writes.contains(p))
            {
                after[i].push((j, format!("{child} points at {parent}")));
            }
        }
    }
    // Kahn's algorithm, taking the first file by name among those ready.
    let mut done = vec![false; files.len()];
    let mut order = Vec::new();
    while order.len() < files.len() {
        let Some(next) =
            (0..files.len()).find(|&i| !done[i] && after[i].iter().all(|(j, _)| done[*j]))
        else {
            let stuck: Vec<&str> = (0..files.len())
                .filter(|&i| !done[i])
                .map(|i| files[i].0.name.as_str())
                .collect();
            return Err(transform_failed(format!("the transform files wait on each other: {}", stuck.join(", ")),
                Some("each reads a table another writes; split a file, or say the order with `-- flow: after name.sql`".into()),
            ));
        };
        done[next] = true;
        order.push(next);
    }
    let mut slots: Vec<Option<SqlFile>> = files.into_iter().map(|(f, _)| Some(f)).collect();
    Ok(order
        .into_iter()
        .filter_map(|i| {
            let mut file = slots[i].take()?;
            file.after = std::mem::take(&mut after[i]);
            Some(file)
        })
        .collect())
}

/// The file name of the file found `index`th (in name order).
fn found_name(files: &[SqlFile], index: usize) -> String {
    files
        .iter()
        .find(|f| f.found == index)
        .and_then(|f| f.path.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs the files in order in one transaction, after emptying every model
/// table they write: a run gives the same rows however often it runs, and a
/// failed run leaves the model as it was.
async fn transform(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &Settings = context.settings()?;
    let schema = settings.schema.clone();
    // Foreign keys between model tables order the files too: parents first.
    let keys = model_keys(context, settings).await?;
    let files = ordered_with_keys(settings, &context.base_dir, &keys)?;
    let mut client = context.database(&settings.database)?.client().await?;
    let guard = CancelOnDrop::new(&client);
    let prefix = format!("{schema}.");
    let written: BTreeSet<&String> = files
        .iter()
        .flat_map(|f| &f.writes)
        .filter(|t| t.starts_with(&prefix))
        .collect();
    let quoted: Vec<String> = written
        .iter()
        .map(|t| {
            format!(
                "{}.{}",
                quote_ident(&schema),
                quote_ident(&t[prefix.len()..])
            )
        })
        .collect();
    let start = format!(
        "SET LOCAL search_path = {}, public;{}",
        quote_ident(&schema),
        if quoted.is_empty() {
            String::new()
        } else {
            format!("TRUNCATE {}", quoted.join(", "))
        }
    );
    let transaction = client.transaction().await?;
    transaction.batch_execute(&start).await?;
    context
        .progress
        .units_total
        .store(files.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let mut failed = None;
    for (index, file) in files.iter().enumerate() {
        if context.cancel.is_cancelled() {
            return Err(transform_failed("cancelled", None));
        }
        if let Err(error) = transaction.batch_execute(&file.text).await {
            failed = Some((index, error));
            break;
        }
        context
            .progress
            .units_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some((index, error)) = failed {
        drop(transaction);
        let file = &files[index];
        if DbError::has_position(&error) || error.as_db_error().is_none() {
            return Err(DbError::in_file(error, &file.name, &file.text).into());
        }
        // PostgreSQL did not say where: find the statement.
        let located = locate(&mut client, &start, &files[..=index]).await;
        guard.disarm();
        return Err(match located {
            Some(statement) => DbError::in_statement(error, &file.name, &file.text, statement),
            None => DbError::in_file(error, &file.name, &file.text),
        }
        .into());
    }
    let mut rows = 0u64;
    for table in &quoted {
        let count: i64 = transaction
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0);
        rows += count.max(0) as u64;
    }
    transaction.commit().await?;
    guard.disarm();
    context.progress.add_rows(rows);
    Ok(Outcome {
        rows,
        note: Some(format!(
            "{} files, {rows} rows in {} tables",
            files.len(),
            quoted.len()
        )),
        ..Outcome::default()
    })
}

/// The foreign keys between the model's tables, as (child, parent).
async fn model_keys(
    context: &RunContext,
    settings: &Settings,
) -> Result<Vec<(String, String)>, StepError> {
    let client = context.database(&settings.database)?.client().await?;
    let rows = client
        .query(
            "SELECT n.nspname || '.' || c.relname, n.nspname || '.' || p.relname
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE k.contype = 'f' AND n.nspname = $1 AND p.relnamespace = c.relnamespace
               AND k.conrelid <> k.confrelid",
            &[&settings.schema],
        )
        .await
        .map_err(DbError::from)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The statement of the last of `files` that fails: the files before it run
/// again, then its statements one by one, in a transaction rolled back.
async fn locate(
    client: &mut flow_engine::flow_db::Client,
    start: &str,
    files: &[SqlFile],
) -> Option<std::ops::Range<usize>> {
    let (file, earlier) = files.split_last()?;
    let transaction = client.transaction().await.ok()?;
    transaction.batch_execute(start).await.ok()?;
    for earlier in earlier {
        transaction.batch_execute(&earlier.text).await.ok()?;
    }
    for statement in flow_engine::flow_db::statements::statements(&file.text) {
        if transaction
            .batch_execute(&file.text[statement.clone()])
            .await
            .is_err()
        {
            return Some(statement);
        }
    }
    None
}

inventory::submit!(Registration(&Transform));

/// A transform that cannot run.
fn transform_failed(message: impl Into<String>, help: Option<String>) -> StepError {
    StepError::coded("flow::model::transform", message, help)
}
