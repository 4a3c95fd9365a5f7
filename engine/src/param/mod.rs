//! Parameter schemas, and the one generic check of a value against its type.

mod check;
mod params;

pub(crate) use check::{Mismatch, Scope, check};
pub use params::Params;

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
    /// A list of names, or named lists of names: `[products]` or
    /// `{ products = [price, availability] }`.
    NamedLists,
    /// Named values of any kind, nested as the operation reads them:
    /// `{ users = { email = hash } }`; the operation checks what is inside.
    Map,
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
            ParamType::NamedLists => {
                "a list of names, or named lists like `{ products = [price, availability] }`".into()
            }
            ParamType::Map => "named values, like `{ users = { email = hash } }`".into(),
            ParamType::Database => "a database name".into(),
            ParamType::Storage => "a storage with an optional path, like `spaces \"dir/\"`".into(),
            ParamType::Schema => "a database and schema, like `api.public`".into(),
            ParamType::Table => "a table, like `api.public.parcels`".into(),
            ParamType::Steps => "a list of steps, like `[pg:source:load]`".into(),
            ParamType::GroupsOrSteps => "a list of groups or steps, like `[seed, populate]`".into(),
        }
    }
}
