//! What populate must change in the API database for the model's shape, and
//! how dangerous each change is.
//!
//! Every difference between a model table and its target table becomes a
//! [`Change`]: SQL run before the load (loosening: new tables and columns,
//! wider types, enums with the union of old and new labels, constraints
//! dropped), SQL run after it (tightening: NOT NULL, keys, constraints, the
//! final enum), and for a data-dependent change a query for the rows that
//! would break, run on the rows that are there after the load.

use std::collections::BTreeMap;
use std::fmt;

use flow_engine::flow_db::{quote_ident, quote_literal};

use crate::shape::{Column, Enum, Table};

mod constraints;
mod enums;
mod foreign_keys;
mod tables;

pub use constraints::{FITS, tighten_constraint, tighten_key};
pub use enums::{enum_changes, recreate_enum};
pub use foreign_keys::{foreign_key, qualify_foreign_key};
pub use tables::table_changes;

/// How dangerous a change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Nothing can break: a new table, a new nullable column, a new label.
    Safe,
    /// Breaks if rows disagree: a new NOT NULL, a key change, a label removed,
    /// a narrower type. Applied when no row breaks.
    DataDependent,
    /// Loses data: a dropped column or table. Only when allowed by name.
    Destructive,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Safe => "safe",
            Class::DataDependent => "data-dependent",
            Class::Destructive => "destructive",
        })
    }
}

/// When a change's breaking rows are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountAt {
    /// Before the load, on the rows that stay (a narrower type must fit them
    /// before the column can change).
    Before,
    /// After the load, on every row the table will hold.
    After,
}

/// One difference and what it takes.
#[derive(Debug, Clone)]
pub struct Change {
    pub class: Class,
    /// How the change is named in the report and in `allow`:
    /// `drop column parcels.old_id`.
    pub name: String,
    /// The target table it concerns, if one.
    pub table: Option<String>,
    pub before: Vec<String>,
    pub after: Vec<String>,
    /// A query returning the rows that would break (data-dependent changes).
    pub breaking: Option<(CountAt, String)>,
    /// Filled when counted: how many rows break, and a few of them.
    pub broken: Option<(i64, Vec<String>)>,
    /// For a key or a unique constraint, the query lists key values (with
    /// the number of their rows in `rows`); filled with how many values
    /// are shared or null, `broken` counting their rows.
    pub grouped: Option<i64>,
    /// Destructive and not allowed by the flow.
    pub refused: bool,
    /// For a foreign key, the table it points at: `{ref}` in `breaking`.
    pub references: Option<String>,
}

impl Change {
    fn new(class: Class, name: impl Into<String>, table: Option<&str>) -> Self {
        Self {
            class,
            name: name.into(),
            table: table.map(str::to_owned),
            before: Vec::new(),
            after: Vec::new(),
            breaking: None,
            broken: None,
            grouped: None,
            references: None,
            refused: false,
        }
    }

    fn before(mut self, sql: String) -> Self {
        self.before.push(sql);
        self
    }

    fn after(mut self, sql: String) -> Self {
        self.after.push(sql);
        self
    }

    fn breaking(mut self, at: CountAt, sql: String) -> Self {
        self.breaking = Some((at, sql));
        self
    }

    /// The breaking query lists key values with their `rows`.
    fn by_key(mut self) -> Self {
        self.grouped = Some(0);
        self
    }
}

/// What the diff works from.
pub struct Shapes<'a> {
    /// The model's tables and enums (flow database).
    pub model: &'a BTreeMap<String, Table>,
    pub model_enums: &'a BTreeMap<String, Enum>,
    /// The target's tables (API database) and every enum there, by name.
    pub target: &'a BTreeMap<String, Table>,
    pub target_enums: &'a BTreeMap<String, Enum>,
    /// For each API enum, the columns that use it: `(schema, table, column)`.
    pub enum_columns: &'a BTreeMap<String, Vec<(String, String, String)>>,
    pub schema: &'a str,
    /// Enum labels the flow says were renamed: (type, old, new).
    pub renames: &'a [(String, String, String)],
}

/// The schema an enum has (or will have) in the API database.
pub fn enum_schema<'a>(shapes: &'a Shapes<'_>, name: &str) -> &'a str {
    shapes
        .target_enums
        .get(name)
        .map_or(shapes.schema, |e| e.schema.as_str())
}

/// A model column as the API database writes it: its enums are the API's.
pub fn target_column(shapes: &Shapes<'_>, column: &Column) -> Column {
    let mut column = column.clone();
    if let Some((_, name)) = &column.custom {
        let schema = if column.is_enum {
            enum_schema(shapes, name).to_owned()
        } else {
            shapes.schema.to_owned()
        };
        column.custom = Some((schema, name.clone()));
    }
    column
}

/// A model table as the API database creates it.
pub fn target_table(shapes: &Shapes<'_>, table: &Table) -> Table {
    Table {
        columns: table
            .columns
            .iter()
            .map(|c| target_column(shapes, c))
            .collect(),
        ..table.clone()
    }
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

fn labels(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| quote_literal(l))
        .collect::<Vec<_>>()
        .join(", ")
}
