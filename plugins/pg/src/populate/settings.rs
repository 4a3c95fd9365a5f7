//! The parameters of a populate step, parsed once when the flow is checked.

use flow_engine::{Params, Problem};

/// How populate replaces the target tables' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Deletes the rows and copies the model's, in one transaction.
    #[default]
    Replace,
    /// Stages the model's rows, deletes those with their keys, inserts.
    Upsert,
    /// Adds the model's rows to those there.
    Append,
    /// Loads fresh tables beside the current ones and switches them in.
    Swap,
}

impl Mode {
    pub const NAMES: &[&str] = &["replace", "upsert", "append", "swap"];

    fn parse(text: &str) -> Option<Self> {
        match text {
            "replace" => Some(Mode::Replace),
            "upsert" => Some(Mode::Upsert),
            "append" => Some(Mode::Append),
            "swap" => Some(Mode::Swap),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Replace => "replace",
            Mode::Upsert => "upsert",
            Mode::Append => "append",
            Mode::Swap => "swap",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A populate step's parameters, with their defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The database the model lives in (`database`, default `flow`).
    pub database: String,
    /// The model schema (`from`, default `model`).
    pub from: String,
    /// The target database and schema (`to = api.public`).
    pub to_db: String,
    pub schema: String,
    pub tables: Vec<String>,
    /// `mode`, default `replace`.
    pub mode: Mode,
    pub key: Vec<String>,
    pub allow: Vec<String>,
    /// (type, old label, new label).
    pub renames: Vec<(String, String, String)>,
    /// Tables whose versions are kept, with the columns that count (none:
    /// every column but the key).
    pub history: Vec<(String, Vec<String>)>,
    /// Where the history tables live in the API database (`history_schema`,
    /// default `history`).
    pub history_schema: String,
    /// The channel changes are announced on after commit (`notify`).
    pub notify: Option<String>,
}

fn owned(list: Vec<&str>) -> Vec<String> {
    list.into_iter().map(str::to_owned).collect()
}

impl Settings {
    pub fn parse(params: &Params) -> Result<Self, Vec<Problem>> {
        let mut problems = crate::push::rename_problems(params);
        let mode = params
            .str("mode")
            .and_then(Mode::parse)
            .unwrap_or(Mode::Replace);
        if params.contains("key") && mode != Mode::Upsert {
            problems.push(Problem {
                param: Some("key"),
                message: "`key` only applies with `mode = upsert`".into(),
                help: Some("remove `key`, or set `mode = upsert`".into()),
            });
        }
        let (to, _) = params.path("to").unwrap_or_default();
        let target = match to.as_slice() {
            [db, schema] => Some(((*db).to_owned(), (*schema).to_owned())),
            _ => {
                problems.push(Problem {
                    param: Some("to"),
                    message: "`to` names a database and a schema, like `api.public`".into(),
                    help: None,
                });
                None
            }
        };
        let tables = owned(params.list("tables"));
        let history = history(params);
        for (table, _) in &history {
            if !tables.contains(table) {
                problems.push(Problem {
                    param: Some("history"),
                    message: format!("`{table}` keeps history but is not one of `tables`"),
                    help: Some(format!(
                        "add `{table}` to `tables`, or remove it from `history`"
                    )),
                });
            }
        }
        let Some((to_db, schema)) = target.filter(|_| problems.is_empty()) else {
            return Err(problems);
        };
        Ok(Self {
            database: params.database().to_owned(),
            from: params.str("from").unwrap_or("model").to_owned(),
            to_db,
            schema,
            tables,
            mode,
            key: owned(params.list("key")),
            allow: owned(params.list("allow")),
            renames: params
                .list("renames")
                .into_iter()
                .filter_map(crate::push::parse_rename)
                .map(|(ty, from, to)| {
                    let ty = ty.rsplit('.').next().unwrap_or(ty);
                    (ty.to_owned(), from.to_owned(), to.to_owned())
                })
                .collect(),
            history,
            history_schema: params.str("history_schema").unwrap_or("history").to_owned(),
            notify: params.str("notify").map(str::to_owned),
        })
    }
}

/// `history = [products]` (every column) or `history = { products = [price] }`.
fn history(params: &Params) -> Vec<(String, Vec<String>)> {
    let named = params.map("history");
    if named.is_empty() {
        return params
            .list("history")
            .into_iter()
            .map(|t| (t.to_owned(), Vec::new()))
            .collect();
    }
    named
        .into_iter()
        .map(|(table, columns)| (table.to_owned(), owned(columns)))
        .collect()
}
