//! `sql:<db>:run`: SQL files against a database, in file-name order, each in
//! its own transaction. It declares the tables it reads and writes, so that it
//! takes its place in the DAG.

use flow_engine::flow_db::DbError;
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory, table_ref,
};

pub struct Run;

/// The parameters `run` uses.
struct Settings {
    /// The glob of the SQL files.
    sql: String,
}

static RUN: OperationSpec = OperationSpec {
    tool: "sql",
    target: Target::Database,
    operation: "run",
    summary: "run SQL files against a database, each in one transaction",
    params: &[
        ParamSpec::required("sql", ParamType::Glob, "the SQL files, like \"sql/*.sql\""),
        ParamSpec::optional(
            "reads",
            ParamType::Strings,
            "tables it reads, like \"source.parcels\" or \"source.*\"",
        ),
        ParamSpec::optional("writes", ParamType::Strings, "tables it writes"),
    ],
};

impl Operation for Run {
    fn spec(&self) -> &'static OperationSpec {
        &RUN
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let database = step.target_database();
        let sql = step.params.str("sql").unwrap_or_default().to_owned();
        let mut prepared = Prepared::default().reads(Resource::file(&sql));
        let mut problems = Vec::new();
        for key in ["reads", "writes"] {
            for text in step.params.list(key) {
                match table_ref(database, text) {
                    Ok(resource) if key == "reads" => prepared = prepared.reads(resource),
                    Ok(resource) => prepared = prepared.writes(resource),
                    Err(message) => problems.push(Problem {
                        param: Some(if key == "reads" { "reads" } else { "writes" }),
                        message,
                        help: Some("write tables as `schema.table`, or `schema.*` for every table of a schema".into()),
                    }),
                }
            }
        }
        if problems.is_empty() {
            Ok(prepared.settings(Settings { sql }))
        } else {
            Err(problems)
        }
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let settings: &Settings = context.settings()?;
            let files = context.files(&settings.sql)?;
            let database = context.target_database()?;
            let mut client = database.client().await?;
            let mut rows = 0u64;
            for file in &files {
                let relative = file
                    .strip_prefix(context.base_dir())
                    .unwrap_or(file)
                    .display()
                    .to_string();
                let sql = tokio::fs::read_to_string(file).await.map_err(|e| {
                    StepError::coded(
                        "flow::sql::run",
                        format!("cannot read `{relative}`: {e}"),
                        None,
                    )
                })?;
                // Armed while the file runs: if the step is dropped (cancelled,
                // timed out) the server stops the query. Every normal return
                // disarms it, so it never cancels the connection's next user.
                let guard = flow_engine::flow_db::CancelOnDrop::new(&client);
                let result = async {
                    // The run's values are settings of every connection
                    // (`current_setting('flow.item')`), set by the session.
                    let transaction = client.transaction().await?;
                    match transaction.simple_query(&sql).await {
                        Ok(messages) => {
                            transaction.commit().await?;
                            Ok(messages
                                .iter()
                                .filter_map(|m| match m {
                                    flow_engine::flow_db::tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                                    _ => None,
                                })
                                .sum::<u64>())
                        }
                        Err(error) => Err(error),
                    }
                }
                .await;
                let result = match result {
                    Ok(count) => Ok(count),
                    Err(error)
                        if DbError::has_position(&error) || error.as_db_error().is_none() =>
                    {
                        Err(StepError::from(DbError::in_file(error, &relative, &sql)))
                    }
                    // PostgreSQL did not say where: find the statement by
                    // running them one by one in a transaction rolled back.
                    Err(error) => Err(StepError::from(
                        match failing_statement(&mut client, &sql).await {
                            Some(statement) => {
                                DbError::in_statement(error, &relative, &sql, statement)
                            }
                            None => DbError::in_file(error, &relative, &sql),
                        },
                    )),
                };
                guard.disarm();
                let count = result?;
                rows += count;
                context.progress.add_rows(count);
            }
            Ok(Outcome {
                rows,
                note: Some(format!(
                    "{} SQL {}",
                    files.len(),
                    if files.len() == 1 { "file" } else { "files" }
                )),
                ..Outcome::default()
            })
        })
    }
}

/// The statement of `sql` that fails, run one by one in a transaction that
/// is rolled back.
async fn failing_statement(
    client: &mut flow_engine::flow_db::Client,
    sql: &str,
) -> Option<std::ops::Range<usize>> {
    let transaction = client.transaction().await.ok()?;
    for statement in flow_engine::flow_db::statements::statements(sql) {
        if transaction
            .simple_query(&sql[statement.clone()])
            .await
            .is_err()
        {
            return Some(statement);
        }
    }
    None
}

inventory::submit!(Registration(&Run));
