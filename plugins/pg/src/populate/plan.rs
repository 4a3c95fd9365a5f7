//! Populate itself: the model and the target read, their differences
//! classified, and the mode's load run (or, for `flow diff`, rolled back).

use flow_engine::flow_db::Sql;
use std::collections::BTreeMap;

use flow_engine::flow_db::CancelOnDrop;
use flow_engine::{RunContext, StepError};

use super::{Mode, Report, Settings, in_place::in_place, report::refused, swap::swap};
use crate::migrate::{self, Class, Shapes};
use crate::shape::{self};

/// Every column of the API database that uses one of `names` (enums).
pub(super) async fn enum_columns(
    client: &impl Sql,
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

/// Moves the model tables into the API database. With `dry_run`, does all of
/// it (the load too, so that breaking rows are counted on real data) and
/// rolls back: `flow diff`.
pub async fn populate(
    context: &RunContext,
    settings: &Settings,
    dry_run: bool,
) -> Result<Report, StepError> {
    let flow_db = context.database(&settings.database)?;
    let api = context.database(&settings.to_db)?;
    let mut flow = flow_db.client().await?;
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
        return Err(StepError::coded(
            "flow::populate::missing_table",
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
        mode: settings.mode,
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
    let result = if settings.mode == Mode::Swap {
        swap(context, settings, &shapes, &mut report, dry_run).await
    } else {
        in_place(
            context,
            settings,
            &shapes,
            &mut flow,
            &mut client,
            &mut report,
            dry_run,
        )
        .await
    };
    guard.disarm();
    result.map(|()| report)
}
