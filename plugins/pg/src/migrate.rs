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

use crate::shape::{Column, Enum, Table, column_ddl, idents};

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

/// Recreates enum `name` with `labels`, converting every column that uses
/// it (found when it runs, so tables made since are included), and renaming
/// the values of `renames` (old, new) on the way.
fn recreate_enum(
    schema: &str,
    name: &str,
    labels_now: &[String],
    renames: &[(&str, &str)],
) -> String {
    let type_name = qualified(schema, name);
    let old = qualified(schema, &format!("{name}__flow_old"));
    // `%1$s` is the column; `%` in a label is doubled for format().
    let mut value = "%1$s::text".to_owned();
    if !renames.is_empty() {
        let whens: String = renames
            .iter()
            .map(|(from, to)| {
                format!(
                    " WHEN {} THEN {}",
                    quote_literal(from).replace('%', "%%"),
                    quote_literal(to).replace('%', "%%")
                )
            })
            .collect();
        value = format!("(CASE %1$s::text{whens} ELSE %1$s::text END)");
    }
    let template =
        format!("ALTER TABLE %2$s ALTER COLUMN %1$s TYPE {type_name} USING {value}::{type_name}");
    format!(
        "ALTER TYPE {type_name} RENAME TO {};
CREATE TYPE {type_name} AS ENUM ({});
DO $flow$ DECLARE r record; BEGIN
  FOR r IN SELECT a.attrelid::regclass AS rel, quote_ident(a.attname) AS col
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           WHERE a.atttypid = {}::regtype AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
  LOOP
    EXECUTE format({}, r.col, r.rel);
  END LOOP;
END $flow$;
DROP TYPE {old};",
        quote_ident(&format!("{name}__flow_old")),
        labels(labels_now),
        quote_literal(&old),
        quote_literal(&template),
    )
}

/// The enum changes, for modes that change the API's tables in place.
pub fn enum_changes(shapes: &Shapes<'_>) -> Vec<Change> {
    let mut changes = Vec::new();
    for (name, wanted) in shapes.model_enums {
        let schema = enum_schema(shapes, name);
        let Some(have) = shapes.target_enums.get(name) else {
            changes.push(
                Change::new(Class::Safe, format!("create type {name}"), None).before(format!(
                    "CREATE TYPE {} AS ENUM ({});",
                    qualified(schema, name),
                    labels(&wanted.labels)
                )),
            );
            continue;
        };
        if have.labels == wanted.labels {
            continue;
        }
        let columns = shapes
            .enum_columns
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let gone: Vec<&String> = have
            .labels
            .iter()
            .filter(|l| !wanted.labels.contains(l))
            .collect();
        let new: Vec<&String> = wanted
            .labels
            .iter()
            .filter(|l| !have.labels.contains(l))
            .collect();
        // A label the flow says was renamed: its rows take the new name.
        let renamed: Vec<(&str, &str)> = shapes
            .renames
            .iter()
            .filter(|(ty, from, to)| ty == name && gone.contains(&from) && new.contains(&to))
            .map(|(_, from, to)| (from.as_str(), to.as_str()))
            .collect();
        let removed: Vec<&String> = gone
            .iter()
            .copied()
            .filter(|l| !renamed.iter().any(|(from, _)| from == l))
            .collect();
        let added: Vec<&String> = new
            .iter()
            .copied()
            .filter(|l| !renamed.iter().any(|(_, to)| to == l))
            .collect();
        // While loading, the type holds old and new labels; after, the model's.
        let mut union = wanted.labels.clone();
        union.extend(gone.iter().map(|l| (*l).clone()));
        let start = changes.len();
        for (from, to) in &renamed {
            changes.push(Change::new(
                Class::Safe,
                format!("rename label {name}.{from} to {to}"),
                None,
            ));
        }
        for label in &added {
            changes.push(Change::new(
                Class::Safe,
                format!("add label {name}.{label}"),
                None,
            ));
        }
        for label in &removed {
            let uses: Vec<String> = columns
                .iter()
                .map(|(s, t, c)| {
                    format!(
                        "SELECT {} AS \"column\", {}::text AS value FROM {} WHERE {}::text = {}",
                        quote_literal(&format!("{t}.{c}")),
                        quote_ident(c),
                        qualified(s, t),
                        quote_ident(c),
                        quote_literal(label)
                    )
                })
                .collect();
            let mut change = Change::new(
                Class::DataDependent,
                format!("remove label {name}.{label}"),
                None,
            );
            if !uses.is_empty() {
                change = change.breaking(CountAt::After, uses.join(" UNION ALL "));
            }
            changes.push(change);
        }
        if added.is_empty() && removed.is_empty() && renamed.is_empty() {
            changes.push(Change::new(
                Class::Safe,
                format!("reorder labels of {name}"),
                None,
            ));
        }
        // The SQL goes on the first change of the type; the others only report.
        if let Some(change) = changes.get_mut(start) {
            change.before.push(recreate_enum(schema, name, &union, &[]));
            if union != wanted.labels {
                change
                    .after
                    .push(recreate_enum(schema, name, &wanted.labels, &renamed));
            }
        }
    }
    changes
}

/// A type change that no value can fail.
pub fn widens(from: &str, to: &str) -> bool {
    let base = |t: &str| t.split('(').next().unwrap_or(t).trim().to_owned();
    let length = |t: &str| -> Option<u32> {
        t.split_once('(').and_then(|(_, rest)| {
            rest.trim_end_matches(')')
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()
        })
    };
    if to == "text" || from == to {
        return true;
    }
    match (base(from).as_str(), base(to).as_str()) {
        ("smallint", "integer" | "bigint" | "numeric")
        | ("integer", "bigint" | "numeric")
        | ("bigint", "numeric")
        | ("real", "double precision")
        | ("timestamp without time zone", "timestamp with time zone") => !to.contains('('),
        (a, b) if a == b => match (length(from), length(to)) {
            (_, None) => a != "geometry" || to == "geometry",
            (Some(f), Some(t)) => a != "geometry" && a != "numeric" && t >= f,
            (None, Some(_)) => false,
        },
        ("character varying", "text") => true,
        _ => false,
    }
}

/// The changes of one table, for modes that change the API's table in place.
pub fn table_changes(shapes: &Shapes<'_>, name: &str) -> Vec<Change> {
    let target = qualified(shapes.schema, name);
    let table = Some(name);
    let (model, current) = (shapes.model.get(name), shapes.target.get(name));
    let (model, current) = match (model, current) {
        (None, Some(_)) => {
            return vec![
                Change::new(Class::Destructive, format!("drop table {name}"), table)
                    .before(format!("DROP TABLE {target};")),
            ];
        }
        (None, None) => return Vec::new(),
        (Some(model), None) => {
            return vec![
                Change::new(Class::Safe, format!("create table {name}"), table).before(format!(
                    "{};",
                    target_table(shapes, model).create(shapes.schema, false)
                )),
            ];
        }
        (Some(model), Some(current)) => (model, current),
    };
    let mut changes = Vec::new();
    if !current.primary_key.is_empty() && current.primary_key != model.primary_key {
        let pk_name = current.primary_key_name.clone().unwrap_or_default();
        changes.push(
            Change::new(
                Class::Safe,
                format!(
                    "drop primary key {name} ({})",
                    current.primary_key.join(", ")
                ),
                table,
            )
            .before(format!(
                "ALTER TABLE {target} DROP CONSTRAINT {};",
                quote_ident(&pk_name)
            )),
        );
    }
    for constraint in &current.constraints {
        if !model
            .constraints
            .iter()
            .any(|c| c.definition == constraint.definition)
        {
            changes.push(
                Change::new(
                    Class::Safe,
                    format!("drop constraint {name}.{}", constraint.name),
                    table,
                )
                .before(format!(
                    "ALTER TABLE {target} DROP CONSTRAINT {};",
                    quote_ident(&constraint.name)
                )),
            );
        }
    }
    for column in &current.columns {
        if model.column(&column.name).is_none() {
            changes.push(
                Change::new(
                    Class::Destructive,
                    format!("drop column {name}.{}", column.name),
                    table,
                )
                .before(format!(
                    "ALTER TABLE {target} DROP COLUMN {};",
                    quote_ident(&column.name)
                )),
            );
        }
    }
    for wanted in &model.columns {
        let wanted = target_column(shapes, wanted);
        let col = quote_ident(&wanted.name);
        let Some(have) = current.column(&wanted.name) else {
            if wanted.not_null && wanted.default.is_none() {
                changes.push(
                    Change::new(
                        Class::DataDependent,
                        format!("add column {name}.{} NOT NULL", wanted.name),
                        table,
                    )
                    .before(format!(
                        "ALTER TABLE {target} ADD COLUMN {};",
                        column_ddl(&wanted, true)
                    ))
                    .after(format!(
                        "ALTER TABLE {target} ALTER COLUMN {col} SET NOT NULL;"
                    ))
                    .breaking(
                        CountAt::After,
                        format!("SELECT * FROM {{t}} WHERE {col} IS NULL"),
                    ),
                );
            } else {
                changes.push(
                    Change::new(
                        Class::Safe,
                        format!("add column {name}.{}", wanted.name),
                        table,
                    )
                    .before(format!(
                        "ALTER TABLE {target} ADD COLUMN {};",
                        column_ddl(
                            &Column {
                                identity: false,
                                ..wanted.clone()
                            },
                            false
                        )
                    )),
                );
            }
            continue;
        };
        if have.type_key() != wanted.type_key() {
            let (from, to) = (have.type_ddl(), wanted.type_ddl());
            let alter =
                format!("ALTER TABLE {target} ALTER COLUMN {col} TYPE {to} USING {col}::{to};");
            if widens(&have.type_sql, &wanted.type_sql) && !have.is_enum && !wanted.is_enum {
                changes.push(
                    Change::new(
                        Class::Safe,
                        format!("widen {name}.{} from {from} to {to}", wanted.name),
                        table,
                    )
                    .before(alter),
                );
            } else {
                changes.push(
                    Change::new(
                        Class::DataDependent,
                        format!("change type {name}.{} from {from} to {to}", wanted.name),
                        table,
                    )
                    .before(alter)
                    .breaking(
                        CountAt::Before,
                        format!(
                            "SELECT * FROM {{t}} WHERE {col} IS NOT NULL AND NOT pg_temp.flow_fits({col}::text, {})",
                            quote_literal(&to)
                        ),
                    ),
                );
            }
        }
        if wanted.not_null && !have.not_null {
            changes.push(
                Change::new(
                    Class::DataDependent,
                    format!("set not null {name}.{}", wanted.name),
                    table,
                )
                .after(format!(
                    "ALTER TABLE {target} ALTER COLUMN {col} SET NOT NULL;"
                ))
                .breaking(
                    CountAt::After,
                    format!("SELECT * FROM {{t}} WHERE {col} IS NULL"),
                ),
            );
        } else if !wanted.not_null && have.not_null {
            changes.push(
                Change::new(
                    Class::Safe,
                    format!("drop not null {name}.{}", wanted.name),
                    table,
                )
                .before(format!(
                    "ALTER TABLE {target} ALTER COLUMN {col} DROP NOT NULL;"
                )),
            );
        }
    }
    if !model.primary_key.is_empty() && current.primary_key != model.primary_key {
        changes.push(tighten_key(
            name,
            &target,
            &model.primary_key,
            &current.primary_key,
        ));
    }
    for constraint in &model.constraints {
        if !current
            .constraints
            .iter()
            .any(|c| c.definition == constraint.definition)
        {
            changes.push(tighten_constraint(name, &target, constraint));
        }
    }
    changes
}

/// A new primary key: applied after the load, when no key is duplicated or null.
pub fn tighten_key(name: &str, target: &str, key: &[String], was: &[String]) -> Change {
    let columns = idents(key);
    let nulls = key
        .iter()
        .map(|k| format!("{} IS NULL", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let label = if was.is_empty() {
        format!("add primary key {name} ({})", key.join(", "))
    } else {
        format!(
            "change primary key {name} from ({}) to ({})",
            was.join(", "),
            key.join(", ")
        )
    };
    Change::new(Class::DataDependent, label, Some(name))
        .after(format!("ALTER TABLE {target} ADD PRIMARY KEY ({columns});"))
        .breaking(
            CountAt::After,
            format!(
                "SELECT {columns}, count(*) AS rows FROM {{t}} GROUP BY {columns} HAVING count(*) > 1 OR {nulls}"
            ),
        )
        .by_key()
}

/// A foreign key's parts as `pg_get_constraintdef` prints it: columns, the
/// table it points at (unqualified), its columns, and the rest (actions).
pub struct ForeignKey<'a> {
    pub columns: Vec<&'a str>,
    pub table: &'a str,
    pub referenced: Vec<&'a str>,
    pub rest: &'a str,
}

pub fn foreign_key<'a>(definition: &'a str) -> Option<ForeignKey<'a>> {
    let rest = definition.strip_prefix("FOREIGN KEY (")?;
    let (columns, rest) = rest.split_once(") REFERENCES ")?;
    let (table, rest) = rest.split_once('(')?;
    let (referenced, rest) = rest.split_once(')')?;
    let split = |list: &'a str| -> Vec<&'a str> { list.split(',').map(str::trim).collect() };
    Some(ForeignKey {
        columns: split(columns),
        table,
        referenced: split(referenced),
        rest,
    })
}

/// A foreign key's definition pointing at `table` in `schema` (quoted).
pub fn qualify_foreign_key(definition: &str, schema: &str) -> String {
    match foreign_key(definition) {
        Some(key) => format!(
            "FOREIGN KEY ({}) REFERENCES {schema}.{}({}){}",
            key.columns.join(", "),
            key.table,
            key.referenced.join(", "),
            key.rest
        ),
        None => definition.to_owned(),
    }
}

/// A new unique, check or foreign key constraint, applied after the load;
/// a new foreign key counts the rows it would orphan.
pub fn tighten_constraint(
    name: &str,
    target: &str,
    constraint: &crate::shape::Constraint,
) -> Change {
    if let Some(key) = foreign_key(&constraint.definition) {
        let schema = target.rsplit_once('.').map_or("", |(s, _)| s);
        let present = key
            .columns
            .iter()
            .map(|c| format!("c.{c} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let matching = key
            .columns
            .iter()
            .zip(&key.referenced)
            .map(|(c, r)| format!("r.{r} = c.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let shown = key
            .columns
            .iter()
            .map(|c| format!("c.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut change = Change::new(
            Class::DataDependent,
            format!("add constraint {name}.{}", constraint.name),
            Some(name),
        )
        .after(format!(
            "ALTER TABLE {target} ADD CONSTRAINT {} {};",
            quote_ident(&constraint.name),
            qualify_foreign_key(&constraint.definition, schema)
        ))
        .breaking(
            CountAt::After,
            format!(
                "SELECT {shown} FROM {{t}} c WHERE {present} AND NOT EXISTS (SELECT FROM {{ref}} r WHERE {matching})"
            ),
        );
        change.references = Some(key.table.trim_matches('"').to_owned());
        return change;
    }
    let definition = &constraint.definition;
    let breaking = if let Some(columns) = definition
        .strip_prefix("UNIQUE (")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        Some(format!(
            "SELECT {columns}, count(*) AS rows FROM {{t}} GROUP BY {columns} HAVING count(*) > 1"
        ))
    } else {
        definition
            .strip_prefix("CHECK ")
            .filter(|expr| !expr.contains("NOT VALID"))
            .map(|expr| format!("SELECT * FROM {{t}} WHERE NOT {expr}"))
    };
    let mut change = Change::new(
        Class::DataDependent,
        format!("add constraint {name}.{}", constraint.name),
        Some(name),
    )
    .after(format!(
        "ALTER TABLE {target} ADD CONSTRAINT {} {definition};",
        quote_ident(&constraint.name)
    ));
    if let Some(query) = breaking {
        let grouped = query.contains("GROUP BY");
        change = change.breaking(CountAt::After, query);
        if grouped {
            change = change.by_key();
        }
    }
    change
}

/// `flow_fits(value, type)`: whether a value converts to a type and back
/// unchanged (an explicit cast to `varchar(3)` truncates, so an error alone is
/// not enough); for counting the rows a narrower type would break.
pub const FITS: &str =
    "CREATE OR REPLACE FUNCTION pg_temp.flow_fits(value text, type text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE same boolean;
BEGIN
  EXECUTE format('SELECT (%L::%s)::text = %L', value, type, value) INTO same;
  RETURN same;
EXCEPTION WHEN others THEN
  RETURN false;
END $$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_widening_from_narrowing() {
        for (from, to) in [
            ("integer", "bigint"),
            ("smallint", "numeric"),
            ("character varying(10)", "character varying(20)"),
            ("character varying(10)", "character varying"),
            ("character varying(10)", "text"),
            ("geometry(Point,4326)", "geometry"),
            ("numeric(10,2)", "numeric"),
            ("real", "double precision"),
        ] {
            assert!(widens(from, to), "{from} -> {to}");
        }
        for (from, to) in [
            ("bigint", "integer"),
            ("text", "character varying(5)"),
            ("character varying(20)", "character varying(10)"),
            ("geometry(Point,4326)", "geometry(Point,3857)"),
            ("geometry", "geometry(Point,4326)"),
            ("numeric(10,2)", "numeric(12,4)"),
            ("double precision", "integer"),
            ("integer", "numeric(5,0)"),
        ] {
            assert!(!widens(from, to), "{from} -> {to}");
        }
    }
}
