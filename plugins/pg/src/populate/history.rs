//! History tables and change notifications. For each table that keeps
//! history, `<history_schema>.<table>_history` holds one row per version:
//! the key, the tracked values, `valid_from`, `valid_to` (open for the
//! current version) and the run that made it. After the load, in the same
//! transaction, two set-based statements compare the table with the open
//! versions: a version whose row is gone or whose tracked values changed is
//! closed, a row without an open version with its values gets one. Rows whose
//! tracked values did not change write nothing.
//!
//! With `notify`, each changed table's counts (and keys, up to a limit) are
//! sent with `pg_notify` in that transaction: PostgreSQL delivers them when
//! it commits, and never when it rolls back.

use flow_engine::StepError;
use flow_engine::flow_db::Sql;
use flow_engine::flow_db::quote_ident;
use serde_json::json;

use super::{Mode, Report, Settings};
use crate::migrate::Shapes;

/// Keys of each kind a notification carries at most.
const KEYS_SENT: i64 = 100;
/// PostgreSQL refuses a payload of 8,000 bytes or more.
const PAYLOAD_LIMIT: usize = 7_900;

/// What one table's history recorded in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    pub table: String,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
}

impl Changed {
    pub fn any(&self) -> bool {
        self.inserted + self.updated + self.deleted > 0
    }
}

fn q(name: &str) -> String {
    quote_ident(name)
}

/// The history of every table that keeps one, after the load; the
/// notifications queued for the commit.
pub(super) async fn record(
    client: &impl Sql,
    settings: &Settings,
    shapes: &Shapes<'_>,
    run: Option<i64>,
    report: &mut Report,
) -> Result<(), StepError> {
    for (table, columns) in &settings.history {
        let Some(model) = shapes.model.get(table) else {
            continue;
        };
        let key = if settings.mode == Mode::Upsert && !settings.key.is_empty() {
            settings.key.clone()
        } else {
            model.primary_key.clone()
        };
        if key.is_empty() {
            return Err(StepError::coded(
                "flow::populate::history_key",
                format!("`{table}` keeps history but has no primary key to tell its rows apart"),
                Some(format!("give `{}.{table}` a primary key", settings.from)),
            ));
        }
        let target = format!("{}.{}", q(&settings.schema), q(table));
        let types = column_types(client, &target).await?;
        let tracked: Vec<String> = if columns.is_empty() {
            types
                .iter()
                .map(|(name, _)| name.clone())
                .filter(|name| !key.contains(name))
                .collect()
        } else {
            columns.clone()
        };
        if let Some(unknown) = tracked
            .iter()
            .find(|c| !types.iter().any(|(name, _)| name == *c))
        {
            return Err(StepError::coded(
                "flow::populate::history_column",
                format!("`{table}` keeps the history of `{unknown}`, which it does not have"),
                Some(format!(
                    "its columns: {}",
                    types
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        }
        let table_history = History {
            target,
            history: format!(
                "{}.{}",
                q(&settings.history_schema),
                q(&format!("{table}_history"))
            ),
            key,
            tracked,
            types,
        };
        table_history
            .ensure(client, &settings.history_schema, table)
            .await?;
        let (changed, keys) = table_history.diff(client, table, run).await?;
        if let Some(channel) = &settings.notify
            && changed.any()
        {
            let shown = format!("{}.{table}_history", settings.history_schema);
            let payload = payload(settings, &changed, run, keys, &shown);
            client
                .execute("SELECT pg_notify($1, $2)", &[channel, &payload])
                .await?;
        }
        report.history.push(changed);
    }
    Ok(())
}

/// One table's history, as SQL.
struct History {
    target: String,
    history: String,
    key: Vec<String>,
    tracked: Vec<String>,
    /// Every column of the target, with its type as PostgreSQL prints it.
    types: Vec<(String, String)>,
}

impl History {
    fn type_of(&self, column: &str) -> &str {
        self.types
            .iter()
            .find(|(name, _)| name == column)
            .map_or("text", |(_, ty)| ty.as_str())
    }

    /// The history table, its indexes, and columns a release began to track
    /// (their open versions take the current value: tracking starts now).
    async fn ensure(&self, client: &impl Sql, schema: &str, table: &str) -> Result<(), StepError> {
        let mut columns: Vec<String> = self
            .key
            .iter()
            .map(|k| format!("{} {} NOT NULL", q(k), self.type_of(k)))
            .collect();
        columns.extend(
            self.tracked
                .iter()
                .map(|c| format!("{} {}", q(c), self.type_of(c))),
        );
        let keys = self.key.iter().map(|k| q(k)).collect::<Vec<_>>().join(", ");
        let open = q(&format!("{table}_history_open"));
        let by_key = q(&format!("{table}_history_key"));
        let schema_q = q(schema);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema_q};
                 CREATE TABLE IF NOT EXISTS {history} ({columns},
                   valid_from timestamptz NOT NULL, valid_to timestamptz, run_id bigint);
                 CREATE UNIQUE INDEX IF NOT EXISTS {open} ON {history} ({keys}) WHERE valid_to IS NULL;
                 CREATE INDEX IF NOT EXISTS {by_key} ON {history} ({keys}, valid_from);",
                history = self.history,
                columns = columns.join(", "),
            ))
            .await?;
        let have: Vec<String> = client
            .query(
                "SELECT attname::text FROM pg_attribute
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                &[&self.history],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for column in self.tracked.iter().filter(|c| !have.contains(c)) {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {history} ADD COLUMN {c} {ty};
                     UPDATE {history} h SET {c} = t.{c} FROM {target} t
                     WHERE h.valid_to IS NULL AND {matches};",
                    history = self.history,
                    c = q(column),
                    ty = self.type_of(column),
                    target = self.target,
                    matches = self.keys_match("h", "t"),
                ))
                .await?;
        }
        Ok(())
    }

    fn keys_match(&self, a: &str, b: &str) -> String {
        self.key
            .iter()
            .map(|k| format!("{a}.{0} = {b}.{0}", q(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// Whether two rows' tracked values are the same (json compared as
    /// text: it has no equality).
    fn same_values(&self, a: &str, b: &str) -> String {
        if self.tracked.is_empty() {
            return "true".into();
        }
        self.tracked
            .iter()
            .map(|c| {
                let cast = if self.type_of(c) == "json" {
                    "::text"
                } else {
                    ""
                };
                format!("{a}.{0}{cast} IS NOT DISTINCT FROM {b}.{0}{cast}", q(c))
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The key as JSON; `prefix` is `h.` or nothing.
    fn key_json(&self, prefix: &str) -> String {
        match self.key.as_slice() {
            [one] => format!("to_jsonb({prefix}{})", q(one)),
            many => format!(
                "jsonb_build_array({})",
                many.iter()
                    .map(|k| format!("{prefix}{}", q(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Closes the versions that changed or went away, opens those that
    /// changed or came; the counts and (some of) the keys of each kind.
    async fn diff(
        &self,
        client: &impl Sql,
        table: &str,
        run: Option<i64>,
    ) -> Result<(Changed, serde_json::Value), StepError> {
        let columns: Vec<String> = self.key.iter().chain(&self.tracked).map(|c| q(c)).collect();
        // One pass compares the table with the open versions (a full join by
        // key) and keeps only what differs: new rows, gone rows, changed
        // values. Closing and opening then touch those rows alone, through
        // the open-version index. The join's hash table is given room, so a
        // million rows are not spilled to disk in batches (the default 4 MB
        // would); `SET LOCAL` ends with the transaction.
        let run = run.map_or_else(|| "NULL".to_owned(), |r| r.to_string());
        let first = q(&self.key[0]);
        let keys: Vec<String> = self
            .key
            .iter()
            .map(|k| format!("coalesce(t.{0}, h.{0}) AS {0}", q(k)))
            .collect();
        let tracked: Vec<String> = self.tracked.iter().map(|c| format!("t.{}", q(c))).collect();
        let open_columns = columns.join(", ");
        let from_diff: Vec<String> = columns.iter().map(|c| format!("d.{c}")).collect();
        let changes = format!(
            "SET LOCAL work_mem = '256MB';
             CREATE TEMP TABLE flow_diff ON COMMIT DROP AS
             SELECT {keys}{tracked_list}, t.{first} IS NOT NULL AS opens, h.{first} IS NOT NULL AS closes
             FROM {target} t
             FULL JOIN (SELECT {open_columns} FROM {history} WHERE valid_to IS NULL) h ON {matches}
             WHERE t.{first} IS NULL OR h.{first} IS NULL OR NOT ({same});
             UPDATE {history} h SET valid_to = now() FROM flow_diff d
             WHERE d.closes AND h.valid_to IS NULL AND {closing};
             INSERT INTO {history} ({open_columns}, valid_from, run_id)
             SELECT {from_diff}, now(), {run} FROM flow_diff d WHERE d.opens;",
            keys = keys.join(", "),
            tracked_list = if tracked.is_empty() {
                String::new()
            } else {
                format!(", {}", tracked.join(", "))
            },
            history = self.history,
            target = self.target,
            matches = self.keys_match("t", "h"),
            same = self.same_values("t", "h"),
            closing = self.keys_match("h", "d"),
            from_diff = from_diff.join(", "),
        );
        client.batch_execute(&changes).await?;
        let sql = &format!(
            "SELECT count(*) FILTER (WHERE opens AND NOT closes),
                    count(*) FILTER (WHERE opens AND closes),
                    count(*) FILTER (WHERE closes AND NOT opens),
                    jsonb_build_object(
                      'inserted', (SELECT coalesce(jsonb_agg(k ORDER BY k), '[]') FROM
                        (SELECT {key} AS k FROM flow_diff d WHERE opens AND NOT closes ORDER BY 1 LIMIT $1) s),
                      'updated', (SELECT coalesce(jsonb_agg(k ORDER BY k), '[]') FROM
                        (SELECT {key} AS k FROM flow_diff d WHERE opens AND closes ORDER BY 1 LIMIT $1) s),
                      'deleted', (SELECT coalesce(jsonb_agg(k ORDER BY k), '[]') FROM
                        (SELECT {key} AS k FROM flow_diff d WHERE closes AND NOT opens ORDER BY 1 LIMIT $1) s)
                    )::text
             FROM flow_diff",
            key = self.key_json("d."),
        );
        let row = client.query_one(sql, &[&KEYS_SENT]).await?;
        client.batch_execute("DROP TABLE flow_diff").await?;
        let keys: String = row.get(3);
        let changed = Changed {
            table: table.to_owned(),
            inserted: row.get(0),
            updated: row.get(1),
            deleted: row.get(2),
        };
        Ok((changed, serde_json::from_str(&keys).unwrap_or_default()))
    }
}

/// The target's columns and their types, as PostgreSQL prints them.
async fn column_types(client: &impl Sql, target: &str) -> Result<Vec<(String, String)>, StepError> {
    Ok(client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&target],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// A notification: the table, the run, the counts, and the keys while they
/// fit in PostgreSQL's limit; else where to read them.
fn payload(
    settings: &Settings,
    changed: &Changed,
    run: Option<i64>,
    keys: serde_json::Value,
    history: &str,
) -> String {
    let mut message = json!({
        "schema": settings.schema,
        "table": changed.table,
        "run": run,
        "inserted": changed.inserted,
        "updated": changed.updated,
        "deleted": changed.deleted,
        "history": history,
    });
    let all_keys = [changed.inserted, changed.updated, changed.deleted]
        .iter()
        .all(|n| *n <= KEYS_SENT);
    let read = json!(format!(
        "every key is in {history}: the versions with run_id = {}",
        run.map_or_else(|| "NULL".to_owned(), |r| r.to_string())
    ));
    message["keys"] = keys;
    if !all_keys {
        message["keys_complete"] = json!(false);
        message["read"] = read.clone();
    }
    if message.to_string().len() >= PAYLOAD_LIMIT {
        if let Some(fields) = message.as_object_mut() {
            fields.remove("keys");
        }
        message["keys_complete"] = json!(false);
        message["read"] = read;
    }
    message.to_string()
}
