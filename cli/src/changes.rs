//! `flow changes` and `flow listen`: the history populate keeps of the API
//! database's tables, and the notifications it sends after each commit.

use std::collections::BTreeSet;
use std::path::Path;

use flow_engine::flow_db::{DbError, quote_ident};
use flow_engine::{FlowFile, Registry, Session};

use crate::cli_error::CliError;
use crate::exit::Exit;
use crate::{load, output};

/// A table whose history a populate step keeps, and where.
struct Kept {
    database: String,
    history: String,
    table: String,
    notify: Option<String>,
}

/// Every table a `pg:target:populate` step of the flow keeps history of.
fn kept(flow: &FlowFile) -> Vec<Kept> {
    let mut kept = Vec::new();
    for step in &flow.pipeline.steps {
        let spec = step.operation.spec();
        if (spec.tool, spec.operation) != ("pg", "populate") {
            continue;
        }
        let params = &step.params;
        let database = params
            .path("to")
            .and_then(|(path, _)| path.first().map(|d| (*d).to_owned()))
            .unwrap_or_default();
        let history = params.str("history_schema").unwrap_or("history").to_owned();
        let mut tables: Vec<String> = params
            .map("history")
            .into_iter()
            .map(|(t, _)| t.to_owned())
            .collect();
        if tables.is_empty() {
            tables = params
                .list("history")
                .into_iter()
                .map(str::to_owned)
                .collect();
        }
        let notify = params.str("notify").map(str::to_owned);
        if tables.is_empty() && notify.is_some() {
            tables.push(String::new());
        }
        for table in tables {
            kept.push(Kept {
                database: database.clone(),
                history: history.clone(),
                table,
                notify: notify.clone(),
            });
        }
    }
    kept
}

/// What `flow changes` asks for.
pub struct Query<'a> {
    pub table: &'a str,
    pub since: Option<&'a str>,
    pub key: Option<&'a str>,
    pub json: bool,
}

/// `flow changes FILE --table T [--since DATE] [--key K]`: the versions of a
/// table's rows, oldest first for each key.
pub fn changes(file: &Path, query: &Query<'_>, env: Option<&str>, registry: &Registry) -> Exit {
    let table = query.table;
    let find = |flow: &FlowFile| {
        kept(flow)
            .into_iter()
            .find(|k| k.table == table)
            .ok_or_else(|| CliError::NoHistory {
                table: table.to_owned(),
            })
    };
    let needed = |flow: &FlowFile| find(flow).map(|kept| BTreeSet::from([kept.database]));
    load::with_session(file, env, registry, needed, async |session, flow| {
        let Ok(kept) = find(flow) else {
            return Exit::Invalid;
        };
        match versions(session, &kept, query).await {
            Ok(rows) => {
                print_versions(&rows, query.json);
                Exit::Success
            }
            Err(error) => {
                output::error(error);
                Exit::Failure
            }
        }
    })
}

async fn versions(
    session: &Session,
    kept: &Kept,
    query: &Query<'_>,
) -> Result<Vec<serde_json::Value>, DbError> {
    let database = session.database(&kept.database)?;
    let client = database.client().await?;
    let history = format!(
        "{}.{}",
        quote_ident(&kept.history),
        quote_ident(&format!("{}_history", kept.table))
    );
    // The key columns: those of the open-versions index.
    let key: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indexrelid = to_regclass($1) ORDER BY array_position(i.indkey, a.attnum)",
            &[&format!(
                "{}.{}",
                quote_ident(&kept.history),
                quote_ident(&format!("{}_history_open", kept.table))
            )],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let key_text = match key.as_slice() {
        [one] => format!("h.{}::text", quote_ident(one)),
        many => format!(
            "jsonb_build_array({})::text",
            many.iter()
                .map(|k| format!("h.{}", quote_ident(k)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let order = key
        .iter()
        .map(|k| format!("h.{}", quote_ident(k)))
        .chain(["h.valid_from".to_owned()])
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT to_jsonb(h)::text FROM {history} h
         WHERE ($1::text IS NULL OR h.valid_to IS NULL OR h.valid_to >= $1::timestamptz)
           AND ($2::text IS NULL OR {key_text} = $2)
         ORDER BY {order}"
    );
    let rows = client.query(&sql, &[&query.since, &query.key]).await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str(&r.get::<_, String>(0)).ok())
        .collect())
}

fn print_versions(rows: &[serde_json::Value], json: bool) {
    if json {
        output::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(rows).unwrap_or_default()
        ));
        return;
    }
    if rows.is_empty() {
        output::note("no versions");
        return;
    }
    let mut text = String::new();
    for row in rows {
        let Some(object) = row.as_object() else {
            continue;
        };
        let from = object
            .get("valid_from")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let to = object
            .get("valid_to")
            .and_then(|v| v.as_str())
            .unwrap_or("(current)");
        let values: Vec<String> = object
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "valid_from" | "valid_to" | "run_id"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let run = object
            .get("run_id")
            .map(ToString::to_string)
            .unwrap_or_default();
        text.push_str(&format!(
            "{from} .. {to}  run {run}  {}\n",
            values.join(" ")
        ));
    }
    output::out(&text);
}

/// `flow listen FILE`: the notifications of the flow's populate steps, one
/// JSON line each, as they come; Ctrl-C ends it.
pub fn listen(file: &Path, env: Option<&str>, registry: &Registry) -> Exit {
    let needed = |flow: &FlowFile| {
        let channels = channels(flow);
        if channels.is_empty() {
            return Err(CliError::NoHistory {
                table: String::new(),
            });
        }
        Ok(channels.into_iter().map(|(db, _)| db).collect())
    };
    load::with_session(file, env, registry, needed, async |session, flow| {
        let channels = channels(flow);
        let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
        for database in channels.iter().map(|(db, _)| db).collect::<BTreeSet<_>>() {
            let names: Vec<String> = channels
                .iter()
                .filter(|(db, _)| db == database)
                .map(|(_, c)| c.clone())
                .collect();
            let opened = match session.database(database) {
                Ok(db) => db.listen(&names).await,
                Err(error) => Err(error),
            };
            let mut notifications = match opened {
                Ok(notifications) => notifications,
                Err(error) => {
                    output::error(error);
                    return Exit::Failure;
                }
            };
            let sender = sender.clone();
            let database = database.clone();
            tokio::spawn(async move {
                while let Some((channel, payload)) = notifications.recv().await {
                    if sender.send((database.clone(), channel, payload)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let names: Vec<&str> = channels.iter().map(|(_, c)| c.as_str()).collect();
        output::note(&format!("listening on {}", names.join(", ")));
        loop {
            tokio::select! {
                next = received.recv() => match next {
                    Some((database, channel, payload)) => {
                        let payload: serde_json::Value =
                            serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload));
                        let line = serde_json::json!({
                            "database": database, "channel": channel, "change": payload,
                        });
                        output::out(&format!("{line}\n"));
                    }
                    None => {
                        output::note("the connection to the database closed");
                        return Exit::Failure;
                    }
                },
                _ = tokio::signal::ctrl_c() => return Exit::Success,
            }
        }
    })
}

/// The (database, channel) pairs the flow's populate steps notify on.
fn channels(flow: &FlowFile) -> Vec<(String, String)> {
    let mut channels: Vec<(String, String)> = Vec::new();
    for kept in kept(flow) {
        if let Some(channel) = kept.notify
            && !channels.contains(&(kept.database.clone(), channel.clone()))
        {
            channels.push((kept.database, channel));
        }
    }
    channels
}
