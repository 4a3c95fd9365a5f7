//! The rows a data-dependent schema change would break, counted before
//! anything is written, and what to say about them.

use flow_engine::StepError;
use flow_engine::flow_db::Sql;

use super::Mode;
use crate::migrate::{Change, CountAt};

/// Counts the rows each data-dependent change would break, on `table_of(t)`.
pub(super) async fn count_breaking(
    client: &impl Sql,
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

pub(super) fn any_broken(changes: &[Change]) -> bool {
    changes
        .iter()
        .any(|c| c.broken.as_ref().is_some_and(|(n, _)| *n > 0))
}

pub(super) const BREAK_HELP: &str = "fix the rows in the model (or its transforms) so they fit the new schema; nothing was written to the API database";

/// What to do about rows that break, by mode: under `append` and `upsert`
/// the API's own rows stay, and may be the ones that break.
pub(super) fn break_help(mode: Mode) -> String {
    match mode {
        Mode::Append | Mode::Upsert => format!(
            "with `mode = {mode}` the API table keeps its rows, and the rows that break may be those (the samples show them): fix them in the API database, fix the model, or load with `mode = replace`; nothing was written to the API database"
        ),
        _ => BREAK_HELP.to_owned(),
    }
}
