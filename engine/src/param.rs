//! Parameter schemas, and the one generic check of a value against its type.

use std::collections::BTreeMap;

use flow_dsl::ast::{Param, Value, ValueKind};

/// One parameter an operation accepts.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub required: bool,
    pub doc: &'static str,
}

impl ParamSpec {
    pub const fn required(name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        Self {
            name,
            ty,
            required: true,
            doc,
        }
    }

    pub const fn optional(name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        Self {
            name,
            ty,
            required: false,
            doc,
        }
    }
}

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Any string.
    String,
    /// A file or directory path, relative to the flow's directory.
    Path,
    /// A file glob (`data/csv/*.csv`).
    Glob,
    /// A whole number, at least zero.
    Count,
    /// A duration (`30s`, `10m`).
    Duration,
    Bool,
    /// A bare name (`source`, `postgis`).
    Name,
    /// A schema of the step's database, by name (`source`): at most 63 bytes,
    /// and not one of PostgreSQL's or flow's own.
    SchemaName,
    /// One of a fixed set of bare names.
    OneOf(&'static [&'static str]),
    /// A list of bare names.
    Names,
    /// A list of strings.
    Strings,
    /// A list of strings, or named lists: `{ vendor = [a, b], year = [...] }`
    /// (one item per combination).
    Fanout,
    /// A declared database.
    Database,
    /// A declared storage, optionally followed by a path: `spaces "shapefiles/"`.
    Storage,
    /// A schema of a declared database: `api.public`.
    Schema,
    /// A table of a declared database: `api.public.parcels`.
    Table,
    /// A list of steps: `[pg:source:create, "pg:model:*"]`.
    Steps,
    /// A list of groups or steps.
    GroupsOrSteps,
}

impl ParamType {
    /// What a user should write, for "expected ..." messages.
    pub fn describe(self) -> String {
        match self {
            ParamType::String => "a string".into(),
            ParamType::Path => "a path in quotes".into(),
            ParamType::Glob => "a file glob in quotes, like \"data/*.csv\"".into(),
            ParamType::Count => "a whole number".into(),
            ParamType::Duration => "a duration, like `30s` or `10m`".into(),
            ParamType::Bool => "`true` or `false`".into(),
            ParamType::Name => "a name".into(),
            ParamType::SchemaName => "a schema name, like `source`".into(),
            ParamType::OneOf(names) => {
                let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                format!("one of {}", names.join(", "))
            }
            ParamType::Names => "a list of names, like `[a, b]`".into(),
            ParamType::Strings => "a list of strings, like `[\"a\", \"b\"]`".into(),
            ParamType::Fanout => {
                "a list of strings, or named lists like `{ vendor = [\"a\", \"b\"], year = [\"2024\"] }`".into()
            }
            ParamType::Database => "a database name".into(),
            ParamType::Storage => "a storage with an optional path, like `spaces \"dir/\"`".into(),
            ParamType::Schema => "a database and schema, like `api.public`".into(),
            ParamType::Table => "a table, like `api.public.parcels`".into(),
            ParamType::Steps => "a list of steps, like `[pg:source:load]`".into(),
            ParamType::GroupsOrSteps => "a list of groups or steps, like `[seed, populate]`".into(),
        }
    }
}

/// A step's parameters after checking: every value has the type its operation
/// declared, so the accessors only need to say whether a value is present.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: BTreeMap<String, Value>,
}

impl Params {
    pub(crate) fn new(params: &[Param]) -> Self {
        Self {
            values: params
                .iter()
                .map(|p| (p.key.name.clone(), p.value.clone()))
                .collect(),
        }
    }

    /// These parameters with `key` set to the bare name `name` (for `flow
    /// diff`, which builds a step's model in a scratch schema).
    pub fn with_name(&self, key: &str, name: &str) -> Self {
        let mut values = self.values.clone();
        values.insert(
            key.to_owned(),
            Value {
                kind: ValueKind::Reference {
                    path: vec![flow_dsl::ast::Ident {
                        name: name.to_owned(),
                        span: flow_dsl::Span::default(),
                    }],
                    suffix: None,
                },
                span: flow_dsl::Span::default(),
            },
        );
        Self { values }
    }

    /// Every parameter in canonical form, in key order: what a step's
    /// fingerprint is made of.
    pub fn canonical(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={}\n", flow_dsl::format_value(v)))
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Where a value that is, or lists, `text` is written.
    pub fn span_of(&self, text: &str) -> Option<flow_dsl::Span> {
        self.values.values().find_map(|value| match &value.kind {
            ValueKind::String(s) if s == text => Some(value.span),
            ValueKind::List(items) => items.iter().find_map(|item| match &item.kind {
                ValueKind::String(s) if s == text => Some(item.span),
                _ => None,
            }),
            _ => None,
        })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// A string, or a bare name, as text.
    pub fn str(&self, key: &str) -> Option<&str> {
        match &self.get(key)?.kind {
            ValueKind::String(text) => Some(text),
            ValueKind::Reference { path, suffix: None } if path.len() == 1 => {
                path.first().map(|p| p.as_str())
            }
            _ => None,
        }
    }

    pub fn count(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_f64().map(|n| n as u64)
    }

    pub fn duration(&self, key: &str) -> Option<std::time::Duration> {
        match self.get(key)?.kind {
            ValueKind::Duration { amount, unit } => Some(std::time::Duration::from_millis(
                amount.saturating_mul(unit.millis()),
            )),
            _ => None,
        }
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)?.kind {
            ValueKind::Bool(flag) => Some(flag),
            _ => None,
        }
    }

    /// The dotted path of a reference: `api.public` is `["api", "public"]`; a
    /// storage reference's path string comes second.
    pub fn path(&self, key: &str) -> Option<(Vec<&str>, Option<&str>)> {
        match &self.get(key)?.kind {
            ValueKind::Reference { path, suffix } => {
                Some((path.iter().map(|p| p.as_str()).collect(), suffix.as_deref()))
            }
            _ => None,
        }
    }

    /// The named lists of a map, each item as text, in the order written.
    pub fn map(&self, key: &str) -> Vec<(&str, Vec<&str>)> {
        match self.get(key).map(|v| &v.kind) {
            Some(ValueKind::Map(entries)) => entries
                .iter()
                .map(|(name, value)| {
                    let items = match &value.kind {
                        ValueKind::List(items) => items.iter().filter_map(text_of).collect(),
                        _ => Vec::new(),
                    };
                    (name.name.as_str(), items)
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The items of a list, each as text (strings and names alike).
    pub fn list(&self, key: &str) -> Vec<&str> {
        match self.get(key).map(|v| &v.kind) {
            Some(ValueKind::List(items)) => items.iter().filter_map(text_of).collect(),
            _ => Vec::new(),
        }
    }
}

fn text_of(value: &Value) -> Option<&str> {
    match &value.kind {
        ValueKind::String(text) => Some(text),
        ValueKind::Reference { path, suffix: None } if path.len() == 1 => {
            path.first().map(|p| p.as_str())
        }
        _ => None,
    }
}

/// Why a value does not fit its type.
#[derive(Debug)]
pub(crate) enum Mismatch {
    /// The value is of another kind altogether.
    Type,
    /// The value is of the right kind but names something unknown or invalid.
    Value {
        message: String,
        help: Option<String>,
        span: flow_dsl::Span,
    },
    /// The value names a database or storage that is not declared.
    Unknown {
        what: &'static str,
        name: String,
        help: String,
        span: flow_dsl::Span,
    },
}

/// The most bytes of a name PostgreSQL keeps; it cuts longer ones in silence.
const MAX_SQL_NAME: usize = 63;

/// A name the flow gives PostgreSQL as written: refused when PostgreSQL would
/// cut it, or (for a schema) when it is PostgreSQL's or flow's own: `pg_*`
/// and `information_schema` are the system's, `_flow` holds flow's run
/// history, and `*__flow_next`, `*__flow_prev_*` are populate's scratch and
/// previous releases.
fn sql_name(name: &flow_dsl::ast::Ident, schema: bool) -> Result<(), Mismatch> {
    let text = name.name.as_str();
    if text.len() > MAX_SQL_NAME {
        return Err(Mismatch::Value {
            message: format!(
                "`{text}` is {} bytes long; PostgreSQL keeps {MAX_SQL_NAME}",
                text.len()
            ),
            help: Some(format!(
                "shorten it: PostgreSQL would cut it to `{}`",
                cut(text, MAX_SQL_NAME)
            )),
            span: name.span,
        });
    }
    let reserved = text == "_flow"
        || text.starts_with("pg_")
        || text == "information_schema"
        || text.ends_with("__flow_next")
        || text.contains("__flow_prev_")
        || text.contains("__flow_undone_");
    if schema && reserved {
        return Err(Mismatch::Value {
            message: format!("schema `{text}` is reserved"),
            help: Some(
                "`_flow` holds flow's run history, `pg_*` and `information_schema` are PostgreSQL's, and `*__flow_next`/`*__flow_prev_*` are populate's: choose another name".into(),
            ),
            span: name.span,
        });
    }
    Ok(())
}

/// The first `bytes` bytes of `text`, at a character boundary.
fn cut(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Names that a value may refer to.
pub(crate) struct Scope<'a> {
    pub databases: &'a [&'a str],
    pub storages: &'a [&'a str],
}

pub(crate) fn check(value: &Value, ty: ParamType, scope: &Scope<'_>) -> Result<(), Mismatch> {
    let kind = &value.kind;
    let is_string = matches!(kind, ValueKind::String(_));
    let name = value.as_ident();
    match ty {
        ParamType::String | ParamType::Path | ParamType::Glob => {
            if !is_string {
                return Err(Mismatch::Type);
            }
            if ty == ParamType::Glob
                && let ValueKind::String(text) = kind
                && let Err(error) = glob::Pattern::new(text)
            {
                return Err(Mismatch::Value {
                    message: format!("`{text}` is not a valid glob: {}", error.msg),
                    help: Some("`*` matches within a folder, `**` across folders".into()),
                    span: value.span,
                });
            }
            Ok(())
        }
        ParamType::Count => match value.as_f64() {
            Some(n) if n >= 0.0 && n.fract() == 0.0 => Ok(()),
            _ => Err(Mismatch::Type),
        },
        ParamType::Duration => match kind {
            ValueKind::Duration { .. } => Ok(()),
            _ => Err(Mismatch::Type),
        },
        ParamType::Bool => match kind {
            ValueKind::Bool(_) => Ok(()),
            _ => Err(Mismatch::Type),
        },
        ParamType::Name => name.map(|_| ()).ok_or(Mismatch::Type),
        ParamType::SchemaName => {
            let name = name.ok_or(Mismatch::Type)?;
            sql_name(name, true)
        }
        ParamType::OneOf(allowed) => {
            let name = name.ok_or(Mismatch::Type)?;
            if allowed.contains(&name.as_str()) {
                Ok(())
            } else {
                Err(Mismatch::Value {
                    message: format!("`{}` is not allowed here", name.name),
                    help: Some(crate::suggest::did_you_mean(
                        &name.name,
                        "values",
                        allowed.iter().copied(),
                    )),
                    span: name.span,
                })
            }
        }
        ParamType::Fanout => match kind {
            ValueKind::List(_) => check(value, ParamType::Strings, scope),
            ValueKind::Map(entries) if !entries.is_empty() => {
                for (_, list) in entries {
                    check(list, ParamType::Strings, scope)?;
                    if matches!(&list.kind, ValueKind::List(items) if items.is_empty()) {
                        return Err(Mismatch::Value {
                            message: "this list is empty: no job would run".into(),
                            help: Some("give each name at least one value".into()),
                            span: list.span,
                        });
                    }
                }
                Ok(())
            }
            _ => Err(Mismatch::Type),
        },
        ParamType::Names | ParamType::Strings => {
            let ValueKind::List(items) = kind else {
                return Err(Mismatch::Type);
            };
            let fits = |item: &Value| match ty {
                ParamType::Names => item.as_ident().is_some(),
                _ => matches!(item.kind, ValueKind::String(_)),
            };
            match items.iter().find(|item| !fits(item)) {
                Some(item) => Err(Mismatch::Value {
                    message: format!("this list holds {}", item.describe()),
                    help: Some(format!("expected {}", ty.describe())),
                    span: item.span,
                }),
                None if ty == ParamType::Names => items
                    .iter()
                    .filter_map(Value::as_ident)
                    .try_for_each(|name| sql_name(name, false)),
                None => Ok(()),
            }
        }
        ParamType::Database => {
            let name = name.ok_or(Mismatch::Type)?;
            known(name, "database", scope.databases)
        }
        ParamType::Storage => match kind {
            ValueKind::Reference { path, .. } if path.len() == 1 => {
                known(&path[0], "storage", scope.storages)
            }
            _ => Err(Mismatch::Type),
        },
        ParamType::Schema | ParamType::Table => {
            let parts = if ty == ParamType::Schema { 2 } else { 3 };
            match kind {
                ValueKind::Reference { path, suffix: None } if path.len() == parts => {
                    known(&path[0], "database", scope.databases)?;
                    sql_name(&path[1], true)?;
                    path[2..].iter().try_for_each(|name| sql_name(name, false))
                }
                _ => Err(Mismatch::Type),
            }
        }
        // Which steps and groups exist is checked by the compiler, which knows them.
        ParamType::Steps | ParamType::GroupsOrSteps => match kind {
            ValueKind::List(items) => match items.iter().find(|item| {
                !(matches!(item.kind, ValueKind::StepRef { .. } | ValueKind::String(_))
                    || ty == ParamType::GroupsOrSteps && item.as_ident().is_some())
            }) {
                Some(item) => Err(Mismatch::Value {
                    message: format!("this list holds {}", item.describe()),
                    help: Some(format!("expected {}", ty.describe())),
                    span: item.span,
                }),
                None => Ok(()),
            },
            _ => Err(Mismatch::Type),
        },
    }
}

fn known(name: &flow_dsl::ast::Ident, what: &'static str, names: &[&str]) -> Result<(), Mismatch> {
    if names.contains(&name.as_str()) {
        Ok(())
    } else {
        Err(Mismatch::Unknown {
            what,
            name: name.name.clone(),
            help: crate::suggest::did_you_mean(
                &name.name,
                &format!("{what}s"),
                names.iter().copied(),
            ),
            span: name.span,
        })
    }
}
