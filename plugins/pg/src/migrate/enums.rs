//! Enum changes: labels added, removed, reordered or renamed, made as a new
//! type beside the old and every column using it converted.

use flow_engine::flow_db::{quote_ident, quote_literal};

use super::{Change, Class, CountAt, Shapes, enum_schema, labels, qualified};

/// The one enum migration, for `pg:<db>:push` and populate alike: the type
/// renamed aside, made again with `labels_now`, every table column using it
/// converted (`renames` mapping old labels to new, defaults dropped and set
/// again on the new type), the old type dropped. One script, to run in a
/// transaction.
pub fn recreate_enum(
    schema: &str,
    name: &str,
    labels_now: &[String],
    renames: &[(&str, &str)],
) -> String {
    let type_name = qualified(schema, name);
    let old_name = format!("{name}__flow_old");
    let old = qualified(schema, &old_name);
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
  FOR r IN SELECT a.attrelid::regclass AS rel, quote_ident(a.attname) AS col,
                  pg_get_expr(d.adbin, d.adrelid) AS def
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.atttypid = {}::regtype AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
  LOOP
    IF r.def IS NOT NULL THEN
      EXECUTE format('ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT', r.rel, r.col);
    END IF;
    EXECUTE format({}, r.col, r.rel);
    IF r.def IS NOT NULL THEN
      EXECUTE format('ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s', r.rel, r.col,
                     replace(r.def, {}, {}));
    END IF;
  END LOOP;
END $flow$;
DROP TYPE {old};",
        quote_ident(&old_name),
        labels(labels_now),
        quote_literal(&old),
        quote_literal(&template),
        quote_literal(&old_name),
        quote_literal(name),
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
            changes.push(remove_label(name, label, columns));
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

/// Removing a label: data-dependent, its rows in the columns using the type
/// counted after the load.
fn remove_label(name: &str, label: &str, columns: &[(String, String, String)]) -> Change {
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
    change
}
