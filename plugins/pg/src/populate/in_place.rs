//! `replace`, `upsert` and `append`: the tables changed and loaded in place,
//! in one transaction.

use flow_engine::flow_db::quote_ident;
use flow_engine::flow_db::tokio_postgres;
use flow_engine::{RunContext, StepError};

use super::{
    Mode, Report, Settings,
    breaking::{any_broken, break_help, count_breaking},
    checks::{check_failed, run_checks},
    copy::{copy_in_sql, copy_out_sql, pump},
    report::refused,
};
use crate::migrate::{self, Change, CountAt, Shapes};

/// `replace`, `upsert` and `append`: the migration, the load, the checks, all
/// in one transaction of the API database.
pub(super) async fn in_place(
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
    let outside_keys = if settings.mode == Mode::Append {
        Vec::new()
    } else {
        crate::dependents::release_foreign_keys(&transaction, schema, &settings.tables).await?
    };
    // Tables their foreign keys point at are loaded first, and emptied last.
    let order = parents_first(&settings.tables, shapes);
    if settings.mode == Mode::Replace {
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
        if settings.mode == Mode::Upsert {
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
            break_help(settings.mode),
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
            break_help(settings.mode),
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
pub(super) fn parents_first<'a>(tables: &'a [String], shapes: &Shapes<'_>) -> Vec<&'a String> {
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

pub(super) async fn run_before(
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
