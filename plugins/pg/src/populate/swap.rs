//! `swap`: fresh tables loaded beside the current ones.

use std::fmt::Write as _;

use flow_engine::flow_db::{CancelOnDrop, quote_ident, quote_literal};
use flow_engine::{RunContext, StepError};

use super::{
    Report, Settings,
    copy::{copy_in_sql, copy_out_sql, pump},
    switch::switch,
};
use crate::migrate::{self, Shapes};
use crate::shape::Table;

/// `swap`: load fresh tables into a scratch schema (in parallel, one
/// connection per table), constrain and check them, then in one transaction
/// move the current tables to a `__flow_prev_` schema and the new ones in.
pub(super) async fn swap(
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
    let flow_db = context.database(&settings.database)?;
    let swapped = swapped_enums(shapes, schema)?;
    let (setup, tables) = scratch_sql(settings, shapes, &swapped, &next);
    let scratch = api.client().await?;
    scratch.batch_execute(&setup).await?;
    report.swap_sql.push(setup);
    let loads = tables.iter().map(|table| async {
        let mut flow = flow_db.client().await?;
        let mut client = api.client().await?;
        let guard = CancelOnDrop::new(&client);
        // Each side in a transaction, where COPY's exchanges stay on one
        // server behind a pooler.
        let reading = flow.transaction().await?;
        let writing = client.transaction().await?;
        let source = reading
            .copy_out(&copy_out_sql(&settings.from, table))
            .await?;
        let sink = writing
            .copy_in(&copy_in_sql(
                &format!("{}.{}", q(&next), q(&table.name)),
                table,
            ))
            .await?;
        let moved = pump(context, source, sink).await?;
        writing.commit().await?;
        guard.disarm();
        Ok::<_, StepError>(moved)
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

/// Enums whose labels change travel with the tables: made in the scratch
/// schema, moved in at the switch; the previous tables keep theirs. Only the
/// target schema's enums can move.
fn swapped_enums<'s>(shapes: &'s Shapes<'_>, schema: &str) -> Result<Vec<&'s String>, StepError> {
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
            return Err(StepError::coded(
"flow::populate::enum_elsewhere",
                format!("enum `{name}` changes, but it lives in schema `{}`, not `{schema}`", have.schema),
                Some("swap moves the enums of the target schema only; use `mode = replace` to change it in place".into()),
            ));
        }
    }
    Ok(swapped)
}

/// The scratch schema `next`: the swapped enums and the new tables, loose
/// (constraints come after the load).
fn scratch_sql(
    settings: &Settings,
    shapes: &Shapes<'_>,
    swapped: &[&String],
    next: &str,
) -> (String, Vec<Table>) {
    let q = quote_ident;
    let mut setup = format!(
        "DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0};\n",
        q(next)
    );
    for name in swapped {
        let labels: Vec<String> = shapes.model_enums[*name]
            .labels
            .iter()
            .map(|l| quote_literal(l))
            .collect();
        let _ = writeln!(
            setup,
            "CREATE TYPE {}.{} AS ENUM ({});",
            q(next),
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
                *s = next.to_owned();
            }
        }
        let _ = writeln!(setup, "{};", table.create(next, true));
        tables.push(table);
    }
    (setup, tables)
}
