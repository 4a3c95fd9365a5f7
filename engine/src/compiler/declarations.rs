//! The declarations of a flow: its name, groups, databases, storages and
//! environments.

use std::collections::BTreeMap;

use flow_dsl::Span;
use flow_dsl::ast::{Binding, Flow, Ident, Item, Value, ValueKind};

use super::{
    Compiler,
    params::{unknown, wrong_type},
};
use crate::pipeline::Declaration;
use crate::{CompileError, DEFAULT_DATABASES, MANUAL_GROUP};

impl Compiler<'_> {
    pub(super) fn declarations(&mut self, flow: &Flow) {
        let mut groups_span: Option<Span> = None;
        let mut env_spans: BTreeMap<String, Span> = BTreeMap::new();
        for item in &flow.items {
            match item {
                Item::Name(name) => self.name.clone_from(&name.name),
                Item::Database(binding) => self.declare("database", binding),
                Item::Storage(binding) => self.declare("storage", binding),
                Item::Groups(groups) => {
                    if let Some(first) = groups_span {
                        self.errors.push(CompileError::DuplicateDeclaration {
                            kind: "the group order",
                            name: "groups".into(),
                            span: groups.span.into(),
                            first: first.into(),
                        });
                        continue;
                    }
                    groups_span = Some(groups.span);
                    for group in &groups.groups {
                        if let Some(first) = self.groups.iter().find(|g| g.name == group.name) {
                            self.errors.push(CompileError::DuplicateDeclaration {
                                kind: "group",
                                name: group.name.clone(),
                                span: group.span.into(),
                                first: first.span.into(),
                            });
                        } else if group.name == MANUAL_GROUP {
                            self.errors.push(CompileError::InvalidValue {
                                message: "`manual` cannot be in the group order".into(),
                                span: group.span.into(),
                                help: Some("steps in `group = manual` run only when selected by name, outside the order".into()),
                            });
                        } else {
                            self.groups.push(group.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        for item in &flow.items {
            let Item::Env(env) = item else { continue };
            if let Some(first) = env_spans.insert(env.name.name.clone(), env.name.span) {
                self.errors.push(CompileError::DuplicateDeclaration {
                    kind: "environment",
                    name: env.name.name.clone(),
                    span: env.name.span.into(),
                    first: first.into(),
                });
                continue;
            }
            let mut overrides = BTreeMap::new();
            for (kind, bindings) in [("database", &env.databases), ("storage", &env.storages)] {
                for binding in bindings {
                    let known = if kind == "database" {
                        self.database_names()
                    } else {
                        self.storage_names()
                    };
                    if !known.contains(&binding.name.as_str()) {
                        self.errors.push(unknown(kind, &binding.name, &known));
                    }
                    self.check_connection(kind, binding);
                    overrides.insert(
                        binding.name.name.clone(),
                        Declaration {
                            value: binding.value.clone(),
                            span: binding.span,
                        },
                    );
                }
            }
            self.environments.insert(env.name.name.clone(), overrides);
        }
    }

    pub(super) fn declare(&mut self, kind: &'static str, binding: &Binding) {
        self.check_connection(kind, binding);
        let table = if kind == "database" {
            &mut self.databases
        } else {
            &mut self.storages
        };
        let declaration = Declaration {
            value: binding.value.clone(),
            span: binding.span,
        };
        if let Some(first) = table.insert(binding.name.name.clone(), declaration) {
            self.errors.push(CompileError::DuplicateDeclaration {
                kind,
                name: binding.name.name.clone(),
                span: binding.name.span.into(),
                first: first.span.into(),
            });
        }
    }

    /// A connection is a string, or `env("NAME")` with an optional string
    /// default; a database may also be a map: `url`, `pool_mode` and `direct`.
    pub(super) fn check_connection(&mut self, kind: &str, binding: &Binding) {
        match &binding.value.kind {
            ValueKind::Map(entries) if kind == "database" => self.check_pooled(binding, entries),
            _ => self.check_location(kind, &binding.name.name, &binding.value),
        }
    }

    /// `{ url = ..., pool_mode = "transaction", direct = ... }`: a database
    /// behind a pooler, and the server's own URL for what needs a session.
    fn check_pooled(&mut self, binding: &Binding, entries: &[(Ident, Value)]) {
        const KEYS: [&str; 3] = ["url", "pool_mode", "direct"];
        for (key, value) in entries {
            match key.name.as_str() {
                "url" | "direct" => self.check_location("database", &key.name, value),
                "pool_mode" => {
                    let help = "the pooler's own `pool_mode`: `\"transaction\"` when it lends a server for one transaction at a time, `\"session\"` (PgBouncer's default) for a whole connection";
                    match &value.kind {
                        ValueKind::String(mode) if mode == "session" || mode == "transaction" => {}
                        ValueKind::String(mode) => self.errors.push(CompileError::InvalidValue {
                            message: format!("`{mode}` is not a pool mode"),
                            span: value.span.into(),
                            help: Some(help.into()),
                        }),
                        _ => self.errors.push(wrong_type(
                            "pool_mode",
                            "`\"session\"` or `\"transaction\"`",
                            value,
                            Some(help.into()),
                        )),
                    }
                }
                other => self.errors.push(CompileError::InvalidValue {
                    message: format!("`{other}` is not a setting of a database"),
                    span: key.span.into(),
                    help: Some(crate::suggest::did_you_mean(
                        other,
                        "settings",
                        KEYS.iter().copied(),
                    )),
                }),
            }
        }
        if !entries.iter().any(|(key, _)| key.name == "url") {
            self.errors.push(CompileError::InvalidValue {
                message: format!("database `{}` has no `url`", binding.name.name),
                span: binding.value.span.into(),
                help: Some("`{ url = env(\"API_URL\"), pool_mode = \"transaction\", direct = env(\"API_DIRECT_URL\") }`".into()),
            });
        }
    }

    fn check_location(&mut self, kind: &str, name: &str, value: &Value) {
        let literal = match &value.kind {
            ValueKind::String(text) => Some((text.as_str(), value.span)),
            ValueKind::Env { default: None, .. } => None,
            ValueKind::Env {
                default: Some(default),
                ..
            } => match &default.kind {
                ValueKind::String(text) => Some((text.as_str(), default.span)),
                _ => {
                    self.errors
                        .push(wrong_type("default", "a string", default, None));
                    None
                }
            },
            _ => {
                self.errors.push(wrong_type(
                    name,
                    "a string or `env(\"NAME\", \"default\")`",
                    value,
                    None,
                ));
                None
            }
        };
        let Some((text, span)) = literal else { return };
        let valid = if kind == "database" {
            text == "embedded"
                || text.starts_with("postgres://")
                || text.starts_with("postgresql://")
        } else {
            text.starts_with("s3://") || text.starts_with("file://")
        };
        if !valid {
            let help = if kind == "database" {
                "a database is `\"embedded\"` (a local cluster flow starts itself) or a URL like `\"postgres://user@host:5432/name\"`"
            } else {
                "a storage is `\"s3://bucket/prefix\"` or a local folder `\"file://path\"`"
            };
            self.errors.push(CompileError::InvalidValue {
                message: format!("`{text}` is not a {kind} location"),
                span: span.into(),
                help: Some(help.into()),
            });
        }
    }

    pub(super) fn database_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.databases.keys().map(String::as_str).collect();
        for default in DEFAULT_DATABASES {
            if !names.contains(&default) {
                names.push(default);
            }
        }
        names.sort_unstable();
        names
    }

    pub(super) fn storage_names(&self) -> Vec<&str> {
        self.storages.keys().map(String::as_str).collect()
    }

    pub(super) fn group_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.groups.iter().map(|g| g.as_str()).collect();
        names.push(MANUAL_GROUP);
        names
    }
}
