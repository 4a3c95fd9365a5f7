//! `pg:<db>:copy`: schemas of another database into this one, with
//! personal data masked on the way.
//!
//! The source is only read, in one snapshot (`pg_dump --snapshot` writes the
//! schema from it, the data is read in it). Filters, `null` and `fixed` are
//! SQL run on the source server (those values never leave it); `hash` and
//! `fake` are applied to the rows as they stream through this process, so
//! an unmasked value is never written to the target or to disk.
//! The target's schemas are replaced in one transaction: types, tables,
//! views and functions first, then the rows by COPY, then keys, indexes,
//! constraints (checked: foreign keys hold) and triggers, then the
//! sequences set to the source's values; a copy that fails leaves the target
//! as it was. Readers of the target wait for the copy's locks until it
//! commits.

mod catalog;
mod masks;
mod rules;
mod schema;
mod stream;

use flow_engine::flow_db::{CancelOnDrop, Database, DbError, quote_ident};
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};

use self::catalog::Catalog;
use self::rules::{Rule, Rules};

pub struct Copy;

static COPY: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Database,
    operation: "copy",
    summary: "copy schemas of another database into this one, masking personal data on the way",
    params: &[
        ParamSpec::required(
            "from",
            ParamType::Database,
            "the database to copy from (only read)",
        ),
        ParamSpec::optional(
            "schemas",
            ParamType::Names,
            "the schemas to copy (default `[public]`)",
        ),
        ParamSpec::optional(
            "mask",
            ParamType::Map,
            "per table, per column: `hash`, `null`, `keep`, `{ fixed = \"...\" }` or `{ fake = email }` (`name`, `phone`)",
        ),
        ParamSpec::optional(
            "sensitive",
            ParamType::Names,
            "tables whose columns `mask` does not name are masked too: hashed (text, integers, uuids) or nulled",
        ),
        ParamSpec::optional("skip", ParamType::Names, "tables copied without their rows"),
        ParamSpec::optional(
            "where",
            ParamType::Map,
            "per table, SQL that picks the rows copied: `{ events = \"day > current_date - 30\" }`",
        ),
        ParamSpec::optional(
            "sample",
            ParamType::Map,
            "per table, the percent of rows copied: `{ orders = 10 }`; rows whose referenced rows are not copied go too",
        ),
        ParamSpec::optional(
            "mask_on",
            ParamType::OneOf(&["source", "stream"]),
            "where `hash` and `fake` run: `source` (default: in SQL on the source server, so no unmasked value leaves it) or `stream` (in flow's process, faster)",
        ),
        ParamSpec::optional(
            "salt",
            ParamType::String,
            "the environment variable that holds the secret salt of `hash` and `fake` (default `FLOW_MASK_SALT`)",
        ),
    ],
};

struct Settings {
    from: String,
    target: String,
    schemas: Vec<String>,
    rules: Rules,
    salt: String,
    /// `hash` and `fake` in this process (`mask_on = stream`) rather than in
    /// SQL on the source.
    in_stream: bool,
}

impl Operation for Copy {
    fn spec(&self) -> &'static OperationSpec {
        &COPY
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let rules = Rules::parse(step.params)?;
        let from = step.params.str("from").unwrap_or_default().to_owned();
        let target = step.target_database().to_owned();
        if from == target {
            return Err(vec![Problem {
                param: Some("from"),
                message: format!("`{target}` would be copied into itself"),
                help: Some(
                    "a copy reads one database and writes another: `step pg:staging:copy { from = production }`"
                        .into(),
                ),
            }]);
        }
        let schemas: Vec<String> = if step.params.contains("schemas") {
            step.params
                .list("schemas")
                .into_iter()
                .map(str::to_owned)
                .collect()
        } else {
            vec!["public".to_owned()]
        };
        let mut prepared = Prepared::default();
        for schema in &schemas {
            prepared = prepared
                .reads(Resource::table(&from, schema, None))
                .creates(Resource::table(&target, schema, None));
        }
        Ok(prepared.settings(Settings {
            from,
            target,
            schemas,
            rules,
            salt: step
                .params
                .str("salt")
                .unwrap_or("FLOW_MASK_SALT")
                .to_owned(),
            in_stream: step.params.str("mask_on") == Some("stream"),
        }))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(copy(context))
    }
}

inventory::submit!(Registration(&Copy));

/// How one table is copied.
struct Plan {
    table: usize,
    /// The select list: `null` and `fixed` applied.
    select: String,
    /// By column, what the stream masks.
    stream: Vec<Option<stream::Masked>>,
    /// Whether the select list hashes in SQL (and needs the salt as `k.s`).
    salted: bool,
    /// Whether the rows travel in COPY's binary format.
    binary: bool,
    condition: Option<String>,
    masked: Vec<String>,
    skipped: bool,
}

fn failure(code: &'static str, message: String, help: Option<&str>) -> StepError {
    StepError::coded(code, message, help.map(str::to_owned))
}

/// The salt of `hash` and `fake`, from the environment.
fn salt(settings: &Settings) -> Result<Option<String>, StepError> {
    if !settings.rules.salted() {
        return Ok(None);
    }
    match std::env::var(&settings.salt) {
        Ok(salt) if salt.len() >= 16 => Ok(Some(salt)),
        _ => Err(failure(
            "flow::copy::salt",
            format!(
                "`{}` holds no salt of at least 16 characters, and `hash` and `fake` need one",
                settings.salt
            ),
            Some(
                "set it to a secret kept out of the flow (`openssl rand -hex 32`); the same salt gives the same masked values, so joins still match across runs",
            ),
        )),
    }
}

/// Why a copy needs sessions of its source.
const SOURCE_SESSION: &str = "copy it (pg_dump and the readers share one snapshot)";

async fn copy(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &Settings = context.settings()?;
    let source = context.database(&settings.from)?;
    let target = context.database(&settings.target)?;
    let salt = salt(settings)?;
    // pg_dump and the readers share one snapshot while they wait on each
    // other: behind a pooler in transaction mode, on the server's own URL.
    let mut holder = source.session_client(SOURCE_SESSION).await?;
    let snapshot_tx = crate::snapshot::begin(&mut holder, None).await?;
    let snapshot = crate::snapshot::export(&snapshot_tx).await?;
    let mut target_client = target.client().await?;
    refuse_same(&snapshot_tx, &target_client, settings).await?;
    missing_schemas(&snapshot_tx, settings).await?;
    let catalog = catalog::read(&snapshot_tx, &settings.schemas)
        .await
        .map_err(StepError::from)?;
    let mut plans = plan(&catalog, settings)?;
    let mut before = std::collections::BTreeMap::new();
    for plan in plans.iter().filter(|p| p.condition.is_some()) {
        let table = &catalog.tables[plan.table];
        let count: i64 = snapshot_tx
            .query_one(&format!("SELECT count(*) FROM {}", table.qualified()), &[])
            .await
            .map_err(DbError::from)?
            .get(0);
        before.insert(plan.table, count);
    }
    let pre = schema::dump(source, &settings.schemas, &snapshot, "pre-data").await?;
    let post = schema::dump(source, &settings.schemas, &snapshot, "post-data").await?;

    let guard = CancelOnDrop::new(&target_client);
    let transaction = target_client.transaction().await.map_err(DbError::from)?;
    for extension in &catalog.extensions {
        transaction
            .batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS {}",
                quote_ident(extension)
            ))
            .await
            .map_err(|e| {
                failure(
                    "flow::copy::extension",
                    format!(
                        "the source uses extension `{extension}`, which `{}` lacks and this role cannot create: {}",
                        settings.target,
                        DbError::from(e)
                    ),
                    Some(&format!(
                        "an administrator runs `CREATE EXTENSION {};` in `{}`",
                        quote_ident(extension),
                        settings.target
                    )),
                )
            })?;
    }
    schema::clear(&transaction, &settings.schemas)
        .await
        .map_err(StepError::from)?;
    transaction.batch_execute(&pre).await.map_err(|e| {
        failure(
            "flow::copy::schema",
            format!(
                "the source's schema does not apply to `{}`: {}",
                settings.target,
                DbError::from(e)
            ),
            None,
        )
    })?;
    // Binary COPY (less to parse) when both servers keep text as UTF-8, so
    // that a text value's bytes are what is hashed in either format.
    let utf8 = encoding(&snapshot_tx).await? == "UTF8" && encoding(&transaction).await? == "UTF8";
    for plan in &mut plans {
        plan.binary = utf8 && catalog.tables[plan.table].columns.iter().all(|c| c.binary);
    }
    let mut copied = std::collections::BTreeMap::new();
    for plan in plans.iter().filter(|p| !p.skipped) {
        let rows = copy_table(
            context,
            source,
            &snapshot,
            salt.as_deref(),
            &catalog,
            plan,
            &transaction,
        )
        .await?;
        copied.insert(plan.table, rows);
    }
    transaction.batch_execute(&post).await.map_err(|e| {
        // Class 23: integrity constraints.
        let broken = e.code().is_some_and(|c| c.code().starts_with("23"));
        failure(
            if broken { "flow::copy::constraints" } else { "flow::copy::schema" },
            format!(
                "the source's keys, indexes and constraints do not apply to the copied rows: {}",
                DbError::from(e)
            ),
            broken.then_some("a key masked in one table must be masked the same way (same rule) in the tables that reference it, and a unique column cannot be `fixed`"),
        )
    })?;
    for (sequence, value, called) in &catalog.sequences {
        transaction
            .execute(
                "SELECT setval($1::text::regclass, $2, $3)",
                &[sequence, value, called],
            )
            .await
            .map_err(DbError::from)?;
    }
    transaction.commit().await.map_err(DbError::from)?;
    guard.disarm();
    drop(snapshot_tx);
    Ok(report(&catalog, &plans, &copied, &before))
}

async fn encoding(
    client: &flow_engine::flow_db::tokio_postgres::Transaction<'_>,
) -> Result<String, StepError> {
    Ok(client
        .query_one("SELECT current_setting('server_encoding')", &[])
        .await
        .map_err(DbError::from)?
        .get(0))
}

/// A copy never writes into the database it reads: the target must not see
/// the source's own session.
async fn refuse_same(
    source: &flow_engine::flow_db::tokio_postgres::Transaction<'_>,
    target: &flow_engine::flow_db::Client,
    settings: &Settings,
) -> Result<(), StepError> {
    let me = source
        .query_one(
            "SELECT pg_backend_pid(), backend_start::text, current_database()::text
               FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(DbError::from)?;
    let (pid, start, name): (i32, String, String) = (me.get(0), me.get(1), me.get(2));
    let same: bool = target
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_stat_activity
                             WHERE pid = $1 AND backend_start::text = $2 AND datname = $3
                               AND datname = current_database())",
            &[&pid, &start, &name],
        )
        .await
        .map_err(DbError::from)?
        .get(0);
    if same {
        return Err(failure(
            "flow::copy::same_database",
            format!(
                "`{}` and `{}` are the same database ({name}): a copy never writes into the database it reads",
                settings.from, settings.target
            ),
            Some("check the environment's URLs: the target must be another database"),
        ));
    }
    Ok(())
}

async fn missing_schemas(
    source: &flow_engine::flow_db::tokio_postgres::Transaction<'_>,
    settings: &Settings,
) -> Result<(), StepError> {
    let missing: Vec<String> = source
        .query(
            "SELECT s FROM unnest($1::text[]) s WHERE NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = s)",
            &[&settings.schemas],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(failure(
        "flow::copy::no_schema",
        format!(
            "`{}` has no schema {}",
            settings.from,
            missing
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None,
    ))
}

/// Each table's select list and condition, and every rule checked against
/// the source: an unknown table or column, or a rule a column's type cannot
/// take, stops the copy before anything is written.
fn plan(catalog: &Catalog, settings: &Settings) -> Result<Vec<Plan>, StepError> {
    let rules = &settings.rules;
    let mut problems: Vec<String> = Vec::new();
    let mut names = std::collections::BTreeMap::new();
    for (param, name) in rules.named_tables() {
        match catalog.find(name, &settings.schemas) {
            Some(index) => {
                names.insert(index, name.to_owned());
            }
            None => problems.push(format!(
                "`{param}` names table `{name}`, which `{}` does not have in {}: {}",
                settings.from,
                settings.schemas.join(", "),
                flow_engine::did_you_mean(
                    name,
                    "tables",
                    catalog.tables.iter().map(|t| t.name.as_str())
                )
            )),
        }
    }
    let mut own = Vec::new();
    let mut plans = Vec::new();
    for (index, table) in catalog.tables.iter().enumerate() {
        let name = names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| table.name.clone());
        let named = rules.masks.get(&name);
        for column in named.into_iter().flat_map(|n| n.keys()) {
            if table.column(column).is_none() {
                problems.push(format!(
                    "`mask` names column `{name}.{column}`, which the source does not have: {}",
                    flow_engine::did_you_mean(
                        column,
                        "columns",
                        table.columns.iter().map(|c| c.name.as_str())
                    )
                ));
            }
        }
        let column_rules = match masks::column_rules(table, named, rules.sensitive.contains(&name))
        {
            Ok(column_rules) => column_rules,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let mut select = Vec::new();
        let mut in_stream = Vec::new();
        let mut salted = false;
        let mut masked = Vec::new();
        for (column, rule) in table.columns.iter().zip(&column_rules) {
            match masks::expression(table, column, rule) {
                Ok((expression, Some(mask))) if !settings.in_stream => {
                    select.push(masks::sql_of(mask, &expression, &column.sql_type));
                    in_stream.push(None);
                    salted = true;
                }
                Ok((expression, mask)) => {
                    select.push(expression);
                    in_stream.push(mask);
                }
                Err(problem) => problems.push(problem),
            }
            if *rule != Rule::Keep {
                masked.push(column.name.clone());
            }
        }
        own.push(masks::own_condition(table, rules, &name));
        plans.push(Plan {
            table: index,
            select: select.join(", "),
            stream: in_stream,
            salted,
            binary: false,
            condition: None,
            masked,
            skipped: rules.skip.contains(&name),
        });
    }
    if !problems.is_empty() {
        return Err(failure(
            "flow::copy::rules",
            format!(
                "the copy's rules do not fit `{}`: {}",
                settings.from,
                problems.join("; ")
            ),
            Some(
                "nothing was written; fix the step's `mask`, `sensitive`, `skip`, `where` or `sample`",
            ),
        ));
    }
    let filters = masks::Filters::new(catalog, own);
    for plan in &mut plans {
        plan.condition = filters.condition(plan.table, "t");
    }
    Ok(plans)
}

/// One table's rows, masked and filtered on the source, into the target.
/// Tables from this many pages (32 MiB) on are read over several
/// connections, each a range of the table's pages, in the same snapshot:
/// masks in SQL then use several of the source's cores.
const PARALLEL_FROM_PAGES: i64 = 4096;

async fn copy_table(
    context: &RunContext,
    source: &Database,
    snapshot: &str,
    salt: Option<&str>,
    catalog: &Catalog,
    plan: &Plan,
    target: &flow_engine::flow_db::tokio_postgres::Transaction<'_>,
) -> Result<(u64, usize), StepError> {
    let binary = plan.binary;
    let format = if binary { " (FORMAT binary)" } else { "" };
    let table = &catalog.tables[plan.table];
    let readers = if table.pages >= PARALLEL_FROM_PAGES {
        source.pool_size().saturating_sub(1).clamp(1, 4)
    } else {
        1
    };
    let mut clients = Vec::new();
    let mut guards = Vec::new();
    for _ in 0..readers {
        let client = source.session_client(SOURCE_SESSION).await?;
        guards.push(CancelOnDrop::new(&client));
        clients.push(client);
    }
    let salt_from = if plan.salted {
        ", (SELECT current_setting('flow.mask_salt') || '|' AS s) k"
    } else {
        ""
    };
    let mut readings = Vec::new();
    let mut sources = Vec::new();
    for (index, client) in clients.iter_mut().enumerate() {
        let reading = crate::snapshot::begin(client, Some(snapshot)).await?;
        // Masks in SQL read the salt from a setting of this transaction,
        // once per query (`k.s`); it is never part of the query's text.
        if plan.salted {
            reading
                .execute(
                    "SELECT set_config('flow.mask_salt', $1, true)",
                    &[&salt.unwrap_or_default()],
                )
                .await
                .map_err(DbError::from)?;
        }
        let mut conditions: Vec<String> = plan.condition.iter().cloned().collect();
        if readers > 1 {
            // Pages [from, to) of the table; the last range is open, for
            // pages the statistics have not seen yet.
            let page = |i: usize| table.pages * i as i64 / readers as i64;
            if index > 0 {
                conditions.push(format!("t.ctid >= '({},0)'::tid", page(index)));
            }
            if index + 1 < readers {
                conditions.push(format!("t.ctid < '({},0)'::tid", page(index + 1)));
            }
        }
        let condition = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let out = reading
            .copy_out(&format!(
                "COPY (SELECT {} FROM {} t{salt_from}{condition}) TO STDOUT{format}",
                plan.select,
                table.qualified()
            ))
            .await
            .map_err(|e| {
                failure(
                    "flow::copy::read",
                    format!("reading `{}` failed: {}", table.name, DbError::from(e)),
                    Some("check the table's `where`"),
                )
            })?;
        sources.push(out);
        readings.push(reading);
    }
    let columns: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sink = target
        .copy_in(&format!(
            "COPY {} ({}) FROM STDIN{format}",
            table.qualified(),
            columns.join(", ")
        ))
        .await
        .map_err(DbError::from)?;
    let masker = stream::Masker::new(salt.unwrap_or_default(), plan.stream.clone());
    let pumped = if masker.is_empty() && sources.len() == 1 {
        let out = sources.pop().expect("one source");
        crate::populate::copy::pump(context, out, sink).await
    } else {
        stream::pump(context, sources, sink, &masker, binary).await
    };
    let (rows, _) = pumped.map_err(|e| {
        failure(
            "flow::copy::write",
            format!("copying `{}` failed: {}", table.name, e.report),
            None,
        )
    })?;
    drop(readings);
    for guard in guards {
        guard.disarm();
    }
    Ok((rows, readers))
}

/// The note: rows copied, and per table what was masked, filtered, skipped.
fn report(
    catalog: &Catalog,
    plans: &[Plan],
    copied: &std::collections::BTreeMap<usize, (u64, usize)>,
    before: &std::collections::BTreeMap<usize, i64>,
) -> Outcome {
    let rows: u64 = copied.values().map(|(rows, _)| rows).sum();
    let mut parts = Vec::new();
    for plan in plans {
        let name = &catalog.tables[plan.table].name;
        let (got, readers) = copied.get(&plan.table).copied().unwrap_or((0, 1));
        let mut said = Vec::new();
        if plan.skipped {
            said.push(format!(
                "skipped ({} rows)",
                before.get(&plan.table).copied().unwrap_or(0)
            ));
        } else if let Some(total) = before.get(&plan.table) {
            said.push(format!("{got} of {total} rows"));
        }
        if !plan.masked.is_empty() && !plan.skipped {
            said.push(format!("{got} rows masked ({})", plan.masked.join(", ")));
        }
        if readers > 1 {
            said.push(format!("read in {readers} parts"));
        }
        if !said.is_empty() {
            parts.push(format!("{name}: {}", said.join(", ")));
        }
    }
    let mut note = format!("{} tables, {rows} rows", catalog.tables.len());
    if !parts.is_empty() {
        note.push_str("; ");
        note.push_str(&parts.join("; "));
    }
    Outcome {
        rows,
        bytes: 0,
        note: Some(note),
        unchanged: false,
    }
}
