//! Which environment a run is in, and the connections it resolves to.
//!
//! The environment is `--env NAME`, else `FLOW_ENV`, else `ENV`, else
//! `default`. Before `env(...)` values are read, flow loads, without
//! overriding variables already set: `.env.NAME` and `.env` beside the flow,
//! then the file named by `CONFIG_PATH`. An environment's block in the flow
//! (`env prod { ... }`) overrides the declarations it names.

use std::collections::BTreeMap;

use flow_db::Location;
use flow_dsl::ast::{Value, ValueKind};
use miette::Diagnostic;
use thiserror::Error;

use crate::DEFAULT_DATABASES;
use crate::pipeline::{Declaration, Pipeline};

/// The environment's connections, resolved. Their `Display` hides passwords.
#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    pub databases: BTreeMap<String, Location>,
    /// Storage URLs, as resolved (`s3://...`, `file://...`).
    pub storages: BTreeMap<String, String>,
}

#[derive(Debug, Error, Diagnostic)]
pub enum EnvironmentError {
    #[error("unknown environment `{name}`")]
    #[diagnostic(code(flow::env::unknown))]
    Unknown {
        name: String,
        #[help]
        help: String,
    },
    #[error("`{variable}` is not set, and {what} `{name}` has no default")]
    #[diagnostic(
        code(flow::env::missing_variable),
        help(
            "set it in the environment, in `.env` beside the flow, or in the file `CONFIG_PATH` names"
        )
    )]
    MissingVariable {
        variable: String,
        what: &'static str,
        name: String,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Location(#[from] flow_db::DbError),
    #[error("cannot read `{path}`: {reason}")]
    #[diagnostic(code(flow::env::config))]
    Config { path: String, reason: String },
}

impl Environment {
    /// Resolves the pipeline's declarations in environment `name`, reading
    /// `env(...)` values from the process environment.
    pub fn resolve(pipeline: &Pipeline, name: &str) -> Result<Self, EnvironmentError> {
        let overrides = match pipeline.environments.get(name) {
            Some(overrides) => Some(overrides),
            None if name == "default" => None,
            None => {
                let known: Vec<&str> = pipeline.environments.keys().map(String::as_str).collect();
                return Err(EnvironmentError::Unknown {
                    name: name.to_owned(),
                    help: crate::suggest::did_you_mean(name, "environments", known.iter().copied()),
                });
            }
        };
        let pick = |declared: &BTreeMap<String, Declaration>, key: &str| -> Option<Declaration> {
            overrides
                .and_then(|o| o.get(key))
                .or_else(|| declared.get(key))
                .cloned()
        };
        let mut databases = BTreeMap::new();
        let mut names: Vec<&str> = pipeline.databases.keys().map(String::as_str).collect();
        names.extend(DEFAULT_DATABASES);
        names.sort_unstable();
        names.dedup();
        for db in names {
            let location = match pick(&pipeline.databases, db) {
                Some(declaration) => location_of(&declaration.value, db)?,
                None => Location::parse("embedded", db)?,
            };
            databases.insert(db.to_owned(), location);
        }
        let mut storages = BTreeMap::new();
        for storage in pipeline.storages.keys() {
            if let Some(declaration) = pick(&pipeline.storages, storage) {
                storages.insert(
                    storage.clone(),
                    text_of(&declaration.value, "storage", storage)?,
                );
            }
        }
        Ok(Self {
            name: name.to_owned(),
            databases,
            storages,
        })
    }
}

/// A database's location: a string, or a map with the URL of a pooler,
/// its `pool_mode` and the `direct` URL of the server behind it.
fn location_of(value: &Value, db: &str) -> Result<Location, EnvironmentError> {
    let ValueKind::Map(entries) = &value.kind else {
        return Ok(Location::parse(&text_of(value, "database", db)?, db)?);
    };
    let entry = |key: &str| entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v);
    let url = match entry("url") {
        Some(url) => text_of(url, "database", db)?,
        None => String::new(),
    };
    let transaction = entry("pool_mode")
        .is_some_and(|mode| matches!(&mode.kind, ValueKind::String(m) if m == "transaction"));
    if !transaction {
        return Ok(Location::parse(&url, db)?);
    }
    let direct = entry("direct")
        .map(|direct| text_of(direct, "database", db))
        .transpose()?;
    Ok(Location::pooled(&url, direct.as_deref(), db)?)
}

fn text_of(value: &Value, what: &'static str, name: &str) -> Result<String, EnvironmentError> {
    match &value.kind {
        ValueKind::String(text) => Ok(text.clone()),
        ValueKind::Env {
            name: variable,
            default,
        } => match std::env::var(variable) {
            Ok(value) if !value.is_empty() => Ok(value),
            _ => match default.as_deref().map(|d| &d.kind) {
                Some(ValueKind::String(text)) => Ok(text.clone()),
                _ => Err(EnvironmentError::MissingVariable {
                    variable: variable.clone(),
                    what,
                    name: name.to_owned(),
                }),
            },
        },
        _ => Ok(String::new()),
    }
}
