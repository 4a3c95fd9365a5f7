//! The flow's `check` blocks, run on the tables populate writes before it
//! commits or switches.

use flow_engine::flow_db::Sql;
use flow_engine::flow_db::quote_ident;
use flow_engine::{Check, ParamSpec, ParamType, StepError};

use super::Settings;
use crate::shape;

/// What a `check` block may ask of a table populate writes.
pub(super) const PARAMS: &[ParamSpec] = &[
    ParamSpec::optional("min_rows", ParamType::Count, "at least this many rows"),
    ParamSpec::optional("max_rows", ParamType::Count, "at most this many rows"),
    ParamSpec::optional("not_null", ParamType::Names, "columns without nulls"),
    ParamSpec::optional(
        "unique",
        ParamType::Names,
        "columns whose values are unique together",
    ),
    ParamSpec::optional(
        "valid_geometry",
        ParamType::Names,
        "geometry columns that must be valid (PostGIS's `ST_IsValid`)",
    ),
    ParamSpec::optional(
        "sql",
        ParamType::String,
        "a query returning the failing rows",
    ),
];

/// A `check` block that failed, with what it found.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{} failed; nothing was written to the API database\n{}", if .0.len() == 1 { "a check" } else { "checks" }, .0.join("\n"))]
#[diagnostic(
    code(flow::check::failed),
    help("the checks ran on the new rows inside the load's transaction, which was rolled back")
)]
pub(super) struct CheckFailed(Vec<String>);

pub(super) fn check_failed(failures: &[String]) -> StepError {
    StepError::new(CheckFailed(failures.to_vec()))
}

/// Runs the `check` blocks on the tables this step writes; returns what failed.
pub(super) async fn run_checks(
    client: &impl Sql,
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
