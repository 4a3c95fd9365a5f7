//! The syntax tree of a `.flow` file, as written. Every node carries its span;
//! nothing here is resolved or checked against the registry of operations (the
//! engine does that).

use crate::Span;

/// A parsed `.flow` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Flow {
    pub items: Vec<Item>,
    /// Comments in source order; kept so that `flow fmt` never drops one.
    pub comments: Vec<Comment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    /// The text after `#`, as written.
    pub text: String,
    pub span: Span,
}

/// A top-level statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Name(Ident),
    Database(Binding),
    Storage(Binding),
    Groups(Groups),
    Step(Step),
    Env(EnvBlock),
    Schedule(Block),
    Check(Block),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Name(ident) => ident.span,
            Item::Database(binding) | Item::Storage(binding) => binding.span,
            Item::Groups(groups) => groups.span,
            Item::Step(step) => step.span,
            Item::Env(env) => env.span,
            Item::Schedule(block) | Item::Check(block) => block.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl Ident {
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

/// `database NAME = VALUE` or `storage NAME = VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub name: Ident,
    pub value: Value,
    pub span: Span,
}

/// `groups a -> b -> c`: the order in which groups run.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    pub groups: Vec<Ident>,
    pub span: Span,
}

/// `step tool:target:operation [name] { params }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The segments of the operation as written (`pg`, `source`, `load`).
    pub operation: Vec<Ident>,
    pub operation_span: Span,
    pub name: Option<Ident>,
    pub params: Vec<Param>,
    pub span: Span,
}

/// `env NAME { database ... storage ... }`: connection overrides for one environment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvBlock {
    pub name: Ident,
    pub databases: Vec<Binding>,
    pub storages: Vec<Binding>,
    /// The bindings in the order written, for formatting.
    pub order: Vec<BindingKind>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    Database,
    Storage,
}

/// `schedule NAME { params }` and `check NAME { params }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub name: Ident,
    pub params: Vec<Param>,
    pub span: Span,
}

/// `key = value` inside a block.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub key: Ident,
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// A string literal, escapes resolved.
    String(String),
    /// A number as written (`42`, `-1.5`); `Value::as_f64` reads it.
    Number(String),
    Bool(bool),
    /// `30s`, `10m`, `250ms`, `2h`, `1d`.
    Duration {
        amount: u64,
        unit: DurationUnit,
    },
    List(Vec<Value>),
    /// Named values: `{ vendor = [a, b], year = ["2024"] }`.
    Map(Vec<(Ident, Value)>),
    /// `env("NAME", default)`: read from the environment when the flow is resolved.
    Env {
        name: String,
        default: Option<Box<Value>>,
    },
    /// A dotted name, optionally followed by a string: `postgis`, `api.public`,
    /// `spaces "shapefiles/"`.
    Reference {
        path: Vec<Ident>,
        suffix: Option<String>,
    },
    /// A reference to a step by operation (and name): `pg:source:create`,
    /// `pg:model:transform/zoning`.
    StepRef {
        operation: Vec<Ident>,
        name: Option<Ident>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    Millis,
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl DurationUnit {
    pub const fn suffix(self) -> &'static str {
        match self {
            DurationUnit::Millis => "ms",
            DurationUnit::Seconds => "s",
            DurationUnit::Minutes => "m",
            DurationUnit::Hours => "h",
            DurationUnit::Days => "d",
        }
    }

    pub const fn millis(self) -> u64 {
        match self {
            DurationUnit::Millis => 1,
            DurationUnit::Seconds => 1_000,
            DurationUnit::Minutes => 60_000,
            DurationUnit::Hours => 3_600_000,
            DurationUnit::Days => 86_400_000,
        }
    }
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match &self.kind {
            ValueKind::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// A single bare name (`postgis`, `seed`), if that is what this value is.
    pub fn as_ident(&self) -> Option<&Ident> {
        match &self.kind {
            ValueKind::Reference { path, suffix: None } if path.len() == 1 => path.first(),
            _ => None,
        }
    }

    /// A short description of the kind of value, for diagnostics.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            ValueKind::String(_) => "a string",
            ValueKind::Number(_) => "a number",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Duration { .. } => "a duration",
            ValueKind::List(_) => "a list",
            ValueKind::Map(_) => "a map",
            ValueKind::Env { .. } => "an `env(...)` value",
            ValueKind::Reference {
                suffix: Some(_), ..
            } => "a storage path",
            ValueKind::Reference { path, .. } if path.len() == 1 => "a name",
            ValueKind::Reference { .. } => "a dotted name",
            ValueKind::StepRef { .. } => "a step reference",
        }
    }
}

impl Step {
    /// The operation as written, `tool:target:operation`.
    pub fn operation_text(&self) -> String {
        join_segments(&self.operation)
    }

    pub fn param(&self, key: &str) -> Option<&Param> {
        self.params.iter().find(|param| param.key.name == key)
    }
}

/// Joins operation segments with `:`.
pub fn join_segments(segments: &[Ident]) -> String {
    let mut text = String::new();
    for (index, segment) in segments.iter().enumerate() {
        if index > 0 {
            text.push(':');
        }
        text.push_str(&segment.name);
    }
    text
}
