//! Table changes: columns added, dropped, retyped, made NOT NULL, keys and
//! constraints, each classified safe, data-dependent or destructive.

use flow_engine::flow_db::{quote_ident, quote_literal};

use super::{
    Change, Class, CountAt, Shapes, qualified, target_column, target_table, tighten_constraint,
    tighten_key,
};
use crate::shape::{Column, Table, column_ddl};

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
    let mut changes = loosened(name, &target, model, current);
    for wanted in &model.columns {
        changes.extend(column_changes(shapes, name, &target, wanted, current));
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

/// What the model no longer has: the primary key when it changes, the
/// constraints and the columns it dropped.
fn loosened(name: &str, target: &str, model: &Table, current: &Table) -> Vec<Change> {
    let table = Some(name);
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
    changes
}

/// The changes of one column the model has: added, retyped, made NOT NULL
/// or nullable.
fn column_changes(
    shapes: &Shapes<'_>,
    name: &str,
    target: &str,
    wanted: &Column,
    current: &Table,
) -> Vec<Change> {
    let table = Some(name);
    let mut changes = Vec::new();
    let wanted = target_column(shapes, wanted);
    let col = quote_ident(&wanted.name);
    let Some(have) = current.column(&wanted.name) else {
        return vec![added_column(name, target, &wanted)];
    };
    if have.type_key() != wanted.type_key() {
        let (from, to) = (have.type_ddl(), wanted.type_ddl());
        let alter = format!("ALTER TABLE {target} ALTER COLUMN {col} TYPE {to} USING {col}::{to};");
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
    changes
}

/// A column the model adds: NOT NULL without a default is data-dependent
/// (the rows there must get a value).
fn added_column(name: &str, target: &str, wanted: &Column) -> Change {
    let table = Some(name);
    let col = quote_ident(&wanted.name);
    if wanted.not_null && wanted.default.is_none() {
        return Change::new(
            Class::DataDependent,
            format!("add column {name}.{} NOT NULL", wanted.name),
            table,
        )
        .before(format!(
            "ALTER TABLE {target} ADD COLUMN {};",
            column_ddl(wanted, true)
        ))
        .after(format!(
            "ALTER TABLE {target} ALTER COLUMN {col} SET NOT NULL;"
        ))
        .breaking(
            CountAt::After,
            format!("SELECT * FROM {{t}} WHERE {col} IS NULL"),
        );
    }
    let loose = Column {
        identity: false,
        ..wanted.clone()
    };
    Change::new(
        Class::Safe,
        format!("add column {name}.{}", wanted.name),
        table,
    )
    .before(format!(
        "ALTER TABLE {target} ADD COLUMN {};",
        column_ddl(&loose, false)
    ))
}

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
