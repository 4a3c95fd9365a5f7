//! `flow rollback`: the tables of the last `swap` put back.

use std::fmt::Write as _;

use flow_engine::flow_db::{quote_ident, quote_literal};
use flow_engine::{RunContext, StepError};

use super::Settings;

/// Puts back the tables (and enums) of the last `swap`: the current ones go
/// to a `__flow_undone_` schema. Returns a line saying what moved.
pub async fn rollback(context: &RunContext) -> Result<String, StepError> {
    let settings: &Settings = context.settings()?;
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
        return Err(StepError::coded(
"flow::populate::nothing_to_roll_back",
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
    let moves = undo_sql(schema, &previous, &undone, &names, &types);
    transaction.batch_execute(&moves).await?;
    transaction.commit().await?;
    Ok(said(
        &format!("{}.{schema}", settings.to_db),
        &back,
        &removed,
        &undone,
    ))
}

/// The tables and types of the schema to `undone`, those of `previous` back
/// in; each only if it is there.
fn undo_sql(
    schema: &str,
    previous: &str,
    undone: &str,
    names: &[String],
    types: &[String],
) -> String {
    let q = quote_ident;
    let mut moves = format!("CREATE SCHEMA {};\n", q(undone));
    for (kind, list) in [("TABLE", names), ("TYPE", types)] {
        for name in list {
            let current = format!("{}.{}", q(schema), q(name));
            let old = format!("{}.{}", q(previous), q(name));
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
                q(undone),
                quote_literal(&old),
                q(schema)
            );
        }
    }
    let _ = writeln!(moves, "DROP SCHEMA {};", q(previous));
    moves
}

/// What a rollback did, in a line.
fn said(target: &str, back: &[String], removed: &[String], undone: &str) -> String {
    let mut message = format!("{target}: ");
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
    message
}
