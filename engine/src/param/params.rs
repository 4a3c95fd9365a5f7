//! A step's parameters after checking, and how operations read them.

use std::collections::BTreeMap;

use flow_dsl::ast::{Param, Value, ValueKind};

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
    /// The database the `database` parameter names, the flow database by
    /// default.
    pub fn database(&self) -> &str {
        self.str("database").unwrap_or(crate::FLOW_DATABASE)
    }

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

pub(super) fn text_of(value: &Value) -> Option<&str> {
    match &value.kind {
        ValueKind::String(text) => Some(text),
        ValueKind::Reference { path, suffix: None } if path.len() == 1 => {
            path.first().map(|p| p.as_str())
        }
        _ => None,
    }
}
