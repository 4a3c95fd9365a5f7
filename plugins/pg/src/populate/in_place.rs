//! `replace`, `upsert` and `append`: the tables changed and loaded in place,
//! in one transaction.

use flow_engine::flow_db::quote_ident;
use flow_engine::flow_db::tokio_postgres::Transaction;
use flow_engine::{RunContext, StepError};

use super::{
    Mode, Report, Settings,
    breaking::{any_broken, break_help, count_breaking},
    checks::{check_failed, run_checks},
    copy::{copy_in_sql, copy_out_sql, pump},
    report::refused,
};
use crate::migrate::{self, Change, CountAt, Shapes};
use crate::shape::Table;

/// `replace`, `upsert` and `append`: the migration, the load, the checks, all
/// in one transaction of the API database.
pub(super) async fn in_place(
    context: &RunContext,
    settings: &Settings,
    shapes: &Shapes<'_>,
    flow: &mut flow_engine::flow_db::Client,
    client: &mut flow_engine::flow_db::Client,
    report: &mut Report,
    dry_run: bool,
) -> Result<(), StepError> {
    // The model is read in a transaction of its own, where COPY's
    // exchanges stay on one server behind a pooler.
    let reading = flow.transaction().await?;
    let load = Load {
        context,
        settings,
        shapes,
        flow: &reading,
    };
    let transaction = client.transaction().await?;
    let outside_keys = load.prepare(&transaction, report).await?;
    // Tables their foreign keys point at are loaded first, and emptied last.
    let order = parents_first(&settings.tables, shapes);
    if settings.mode == Mode::Replace {
        for name in order.iter().rev() {
            if shapes.target.contains_key(*name) {
                let target = load.qualified(name);
                transaction
                    .batch_execute(&format!("DELETE FROM {target}"))
                    .await?;
            }
        }
    }
    for name in order {
        if !load.table(&transaction, name, report).await? {
            break;
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
        load.qualified(t)
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
    load.finish(&transaction, report, &outside_keys, dry_run)
        .await?;
    if dry_run {
        transaction.rollback().await?;
    } else {
        transaction.commit().await?;
    }
    Ok(())
}

/// What loading the tables in place needs.
struct Load<'a> {
    context: &'a RunContext,
    settings: &'a Settings,
    shapes: &'a Shapes<'a>,
    flow: &'a Transaction<'a>,
}

impl Load<'_> {
    fn qualified(&self, table: &str) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.settings.schema),
            quote_ident(table)
        )
    }

    /// Before any table: what changes that no table owns (enums) do first,
    /// and the foreign keys of other API tables into these let go while the
    /// rows are replaced (they come back, every row checked, in `finish`).
    async fn prepare(
        &self,
        transaction: &Transaction<'_>,
        report: &Report,
    ) -> Result<Vec<String>, StepError> {
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
        let settings = self.settings;
        if settings.mode == Mode::Append {
            return Ok(Vec::new());
        }
        crate::dependents::release_foreign_keys(transaction, &settings.schema, &settings.tables)
            .await
    }

    /// One table: staged (upsert), its rows that would break counted, its
    /// changes made, and its rows loaded. `false` when rows break: nothing
    /// more is loaded.
    async fn table(
        &self,
        transaction: &Transaction<'_>,
        name: &String,
        report: &mut Report,
    ) -> Result<bool, StepError> {
        let Some(model) = self.shapes.model.get(name) else {
            run_before(transaction, &report.changes, name).await?;
            return Ok(true);
        };
        let target = self.qualified(name);
        let staged = match self.settings.mode {
            Mode::Upsert => Some(self.stage(transaction, name, model, report).await?),
            _ => None,
        };
        let mut table_changes: Vec<&mut Change> = report
            .changes
            .iter_mut()
            .filter(|c| c.table.as_deref() == Some(name.as_str()))
            .collect();
        for change in &mut table_changes {
            if let Some((CountAt::Before, _)) = change.breaking {
                let one = std::slice::from_mut(*change);
                count_breaking(transaction, one, CountAt::Before, |_| target.clone()).await?;
            }
        }
        if table_changes
            .iter()
            .any(|c| c.broken.as_ref().is_some_and(|(n, _)| *n > 0))
        {
            return Ok(false);
        }
        for change in &table_changes {
            for sql in &change.before {
                transaction.batch_execute(sql).await?;
            }
        }
        let (rows, bytes) = match staged {
            Some(stage) => {
                let columns = model.column_list();
                let insert =
                    format!("INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage}");
                let rows = transaction.execute(&insert, &[]).await?;
                transaction
                    .batch_execute(&format!("DROP TABLE {stage}"))
                    .await?;
                self.context.progress.add_rows(rows);
                (rows, 0)
            }
            None => self.copy(transaction, model, &target).await?,
        };
        report.rows += rows;
        report.bytes += bytes;
        Ok(true)
    }

    async fn copy(
        &self,
        transaction: &Transaction<'_>,
        model: &Table,
        target: &str,
    ) -> Result<(u64, u64), StepError> {
        let source = self
            .flow
            .copy_out(&copy_out_sql(&self.settings.from, model))
            .await?;
        let sink = transaction.copy_in(&copy_in_sql(target, model)).await?;
        pump(self.context, source, sink).await
    }

    /// `upsert`: the model's rows copied into a temporary table, and the
    /// target's rows with their keys deleted; returns the temporary table.
    async fn stage(
        &self,
        transaction: &Transaction<'_>,
        name: &str,
        model: &Table,
        report: &mut Report,
    ) -> Result<String, StepError> {
        let settings = self.settings;
        let key = if settings.key.is_empty() {
            model.primary_key.clone()
        } else {
            settings.key.clone()
        };
        if key.is_empty() {
            return Err(StepError::coded(
                "flow::populate::failed",
                format!("`{}.{name}` has no primary key to upsert by", settings.from),
                Some("name the key columns: `key = [id]`".into()),
            ));
        }
        let stage = format!("pg_temp.{}", quote_ident(&format!("flow_stage_{name}")));
        let table = migrate::target_table(self.shapes, model);
        let create = table.create("pg_temp", true).replacen(
            &format!("{}.{}", quote_ident("pg_temp"), quote_ident(name)),
            &stage,
            1,
        );
        transaction.batch_execute(&create).await?;
        let (_, bytes) = self.copy(transaction, model, &stage).await?;
        report.bytes += bytes;
        if self.shapes.target.contains_key(name) {
            let matches = key
                .iter()
                .map(|k| format!("t.{0} = s.{0}", quote_ident(k)))
                .collect::<Vec<_>>()
                .join(" AND ");
            let target = self.qualified(name);
            transaction
                .batch_execute(&format!(
                    "DELETE FROM {target} t USING {stage} s WHERE {matches}"
                ))
                .await?;
        }
        Ok(stage)
    }

    /// After every table: the changes' last statements (tables, then enums),
    /// the foreign keys given back, sequences moved past the keys loaded,
    /// materialized views refreshed, and the checks.
    async fn finish(
        &self,
        transaction: &Transaction<'_>,
        report: &mut Report,
        outside_keys: &[String],
        dry_run: bool,
    ) -> Result<(), StepError> {
        let settings = self.settings;
        let (table_afters, enum_afters): (Vec<&Change>, Vec<&Change>) =
            report.changes.iter().partition(|c| c.table.is_some());
        for change in table_afters.into_iter().chain(enum_afters) {
            for sql in &change.after {
                transaction.batch_execute(sql).await?;
            }
        }
        let (schema, tables) = (&settings.schema, &settings.tables);
        crate::dependents::restore(transaction, schema, outside_keys).await?;
        // Keys loaded into identity and serial columns: the product's own
        // inserts go on after them.
        crate::dependents::advance_sequences(transaction, schema, tables).await?;
        // Materialized views over the tables read the new rows.
        crate::dependents::refresh_materialized(transaction, schema, tables).await?;
        // History before the checks, so that checks can read the new versions.
        super::history::record(transaction, settings, self.shapes, self.context.run, report)
            .await?;
        let checks = &self.context.checks;
        let failures = run_checks(transaction, checks, settings, &|t| self.qualified(t)).await?;
        if dry_run {
            report.failed_checks = failures;
        } else if !failures.is_empty() {
            return Err(check_failed(&failures));
        }
        Ok(())
    }
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
    transaction: &Transaction<'_>,
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
