//! A value checked against the type its parameter declares.

use flow_dsl::ast::{Ident, Value, ValueKind};

use crate::ParamType;

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
fn sql_name(name: &Ident, schema: bool) -> Result<(), Mismatch> {
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
    let name = value.as_ident();
    match ty {
        ParamType::String | ParamType::Path => match kind {
            ValueKind::String(_) => Ok(()),
            _ => Err(Mismatch::Type),
        },
        ParamType::Glob => glob(value),
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
        ParamType::SchemaName => sql_name(name.ok_or(Mismatch::Type)?, true),
        ParamType::OneOf(allowed) => one_of(name.ok_or(Mismatch::Type)?, allowed),
        ParamType::Fanout => named_lists(value, ParamType::Strings, scope),
        ParamType::NamedLists => named_lists(value, ParamType::Names, scope),
        ParamType::Map => match kind {
            ValueKind::Map(_) => Ok(()),
            _ => Err(Mismatch::Type),
        },
        ParamType::Names | ParamType::Strings => list(value, ty),
        ParamType::Database => known(name.ok_or(Mismatch::Type)?, "database", scope.databases),
        ParamType::Storage => match kind {
            ValueKind::Reference { path, .. } if path.len() == 1 => {
                known(&path[0], "storage", scope.storages)
            }
            _ => Err(Mismatch::Type),
        },
        ParamType::Schema => qualified(value, 2, scope),
        ParamType::Table => qualified(value, 3, scope),
        // Which steps and groups exist is checked by the compiler, which knows them.
        ParamType::Steps | ParamType::GroupsOrSteps => steps(value, ty),
    }
}

/// A string that is a valid glob.
fn glob(value: &Value) -> Result<(), Mismatch> {
    let ValueKind::String(text) = &value.kind else {
        return Err(Mismatch::Type);
    };
    glob::Pattern::new(text)
        .map(|_| ())
        .map_err(|error| Mismatch::Value {
            message: format!("`{text}` is not a valid glob: {}", error.msg),
            help: Some("`*` matches within a folder, `**` across folders".into()),
            span: value.span,
        })
}

fn one_of(name: &Ident, allowed: &[&str]) -> Result<(), Mismatch> {
    if allowed.contains(&name.as_str()) {
        return Ok(());
    }
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

/// A list of `items`, or named non-empty lists of them: `for_each`
/// (strings) and `history` (names).
fn named_lists(value: &Value, items: ParamType, scope: &Scope<'_>) -> Result<(), Mismatch> {
    match &value.kind {
        ValueKind::List(_) => check(value, items, scope),
        ValueKind::Map(entries) if !entries.is_empty() => {
            for (_, list) in entries {
                check(list, items, scope)?;
                if matches!(&list.kind, ValueKind::List(items) if items.is_empty()) {
                    return Err(Mismatch::Value {
                        message: "this list is empty".into(),
                        help: Some("give each name at least one value".into()),
                        span: list.span,
                    });
                }
            }
            Ok(())
        }
        _ => Err(Mismatch::Type),
    }
}

/// A list of names (each a valid SQL name) or of strings.
fn list(value: &Value, ty: ParamType) -> Result<(), Mismatch> {
    let ValueKind::List(items) = &value.kind else {
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

/// `db.schema` (`parts` 2) or `db.schema.table` (3): a known database and
/// valid SQL names.
fn qualified(value: &Value, parts: usize, scope: &Scope<'_>) -> Result<(), Mismatch> {
    match &value.kind {
        ValueKind::Reference { path, suffix: None } if path.len() == parts => {
            known(&path[0], "database", scope.databases)?;
            sql_name(&path[1], true)?;
            path[2..].iter().try_for_each(|name| sql_name(name, false))
        }
        _ => Err(Mismatch::Type),
    }
}

/// A list of step references (and, for `GroupsOrSteps`, group names).
fn steps(value: &Value, ty: ParamType) -> Result<(), Mismatch> {
    let ValueKind::List(items) = &value.kind else {
        return Err(Mismatch::Type);
    };
    match items.iter().find(|item| {
        !(matches!(item.kind, ValueKind::StepRef { .. } | ValueKind::String(_))
            || ty == ParamType::GroupsOrSteps && item.as_ident().is_some())
    }) {
        Some(item) => Err(Mismatch::Value {
            message: format!("this list holds {}", item.describe()),
            help: Some(format!("expected {}", ty.describe())),
            span: item.span,
        }),
        None => Ok(()),
    }
}

fn known(name: &Ident, what: &'static str, names: &[&str]) -> Result<(), Mismatch> {
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
