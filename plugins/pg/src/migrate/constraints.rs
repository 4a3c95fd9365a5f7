//! Keys and constraints tightened on the rows there, and foreign keys read
//! and moved between schemas.

use flow_engine::flow_db::quote_ident;

use super::{Change, Class, CountAt};
use super::{foreign_key, qualify_foreign_key};
use crate::shape::idents;

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
