//! A block's parameters checked against the schemas that apply.

use std::collections::HashMap;
use std::time::Duration;

use flow_dsl::Span;
use flow_dsl::ast::{Block, Ident, Param, Value, ValueKind};

use super::Compiler;
use crate::CompileError;
use crate::param::{self, Mismatch, ParamSpec, Params, Scope};
use crate::suggest::did_you_mean;

pub(super) fn block_param<'a>(block: &'a Block, key: &str) -> Option<&'a Param> {
    block.params.iter().find(|p| p.key.name == key)
}

pub(super) fn duration(value: &Value) -> Option<Duration> {
    match value.kind {
        ValueKind::Duration { amount, unit } => {
            Some(Duration::from_millis(amount.saturating_mul(unit.millis())))
        }
        _ => None,
    }
}

pub(super) fn wrong_type(
    name: &str,
    expected: &str,
    value: &Value,
    help: Option<String>,
) -> CompileError {
    let help = help.or_else(|| match (&value.kind, expected) {
        (ValueKind::Reference { .. }, e) if e.contains("in quotes") || e == "a string" => {
            Some("put the value in double quotes".into())
        }
        (ValueKind::String(_), e) if e.contains("name") => {
            Some("names are written without quotes".into())
        }
        (ValueKind::StepRef { .. }, _) => Some("step references go in `after = [...]`".into()),
        _ => None,
    });
    let found = match &value.kind {
        ValueKind::Number(text) => format!("`{text}`"),
        _ => value.describe().to_owned(),
    };
    CompileError::WrongType {
        name: name.to_owned(),
        expected: expected.to_owned(),
        found,
        span: value.span.into(),
        help,
    }
}

pub(super) fn unknown(what: &str, name: &Ident, known: &[&str]) -> CompileError {
    let help = did_you_mean(&name.name, &format!("{what}s"), known.iter().copied());
    let (name, span) = (name.name.clone(), name.span.into());
    match what {
        "database" => CompileError::UnknownDatabase { name, span, help },
        "storage" => CompileError::UnknownStorage { name, span, help },
        _ => CompileError::UnknownGroup { name, span, help },
    }
}

pub(super) fn env_help(value: &Value) -> Option<String> {
    matches!(value.kind, ValueKind::Env { .. }).then(|| {
        "`env(...)` is for `database` and `storage` declarations; steps refer to those by name"
            .into()
    })
}

impl Compiler<'_> {
    /// Checks parameters against their schemas: unknown, duplicated, missing,
    /// mistyped. `schemas` are searched in order.
    pub(super) fn params(
        &mut self,
        owner: &str,
        given: &[Param],
        schemas: &[&[ParamSpec]],
        header: Span,
    ) -> Params {
        let databases = self.database_names();
        let storages = self.storage_names();
        let scope = Scope {
            databases: &databases,
            storages: &storages,
        };
        let mut errors = Vec::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let specs = || schemas.iter().flat_map(|s| s.iter());
        for param in given {
            let key = param.key.as_str();
            if let Some(first) = seen.insert(key, param.key.span) {
                errors.push(CompileError::DuplicateParameter {
                    name: key.to_owned(),
                    span: param.key.span.into(),
                    first: first.into(),
                });
                continue;
            }
            let Some(spec) = specs().find(|s| s.name == key) else {
                let names: Vec<&str> = specs().map(|s| s.name).collect();
                errors.push(CompileError::UnknownParameter {
                    name: key.to_owned(),
                    operation: owner.to_owned(),
                    span: param.key.span.into(),
                    help: did_you_mean(key, "parameters", names.iter().copied()),
                });
                continue;
            };
            match param::check(&param.value, spec.ty, &scope) {
                Ok(()) => {}
                Err(Mismatch::Type) => errors.push(wrong_type(
                    key,
                    &spec.ty.describe(),
                    &param.value,
                    env_help(&param.value),
                )),
                Err(Mismatch::Value {
                    message,
                    help,
                    span,
                }) => errors.push(CompileError::InvalidValue {
                    message: format!("`{key}`: {message}"),
                    span: span.into(),
                    help,
                }),
                Err(Mismatch::Unknown {
                    what,
                    name,
                    help,
                    span,
                }) => {
                    let ident = Ident { name, span };
                    let mut error = unknown(what, &ident, &[]);
                    match &mut error {
                        CompileError::UnknownDatabase { help: h, .. }
                        | CompileError::UnknownStorage { help: h, .. } => *h = help,
                        _ => {}
                    }
                    errors.push(error);
                }
            }
        }
        for spec in specs().filter(|s| s.required) {
            if !seen.contains_key(spec.name) {
                errors.push(CompileError::MissingParameter {
                    name: spec.name.to_owned(),
                    operation: owner.to_owned(),
                    span: header.into(),
                    help: format!(
                        "add `{} = ...`: {}, {}",
                        spec.name,
                        spec.ty.describe(),
                        spec.doc
                    ),
                });
            }
        }
        self.errors.extend(errors);
        Params::new(given)
    }
}
