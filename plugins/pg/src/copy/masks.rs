//! How each column is read for the copy: as it is, replaced in SQL on the
//! source (`null`, `fixed`), or masked in the stream (`hash`, `fake`; see
//! `stream`); and which rows are read.

use flow_engine::flow_db::{quote_ident, quote_literal};

use super::catalog::{Catalog, Column, Table};
use super::rules::{Fake, Rule, Rules};
use super::stream::Masked;

/// The SQL that masks `value` on the source server as the stream would in
/// this process (the same bytes hashed, the same text out), with the salt
/// and `|` as `k.s`.
pub(crate) fn sql_of(mask: Masked, value: &str, sql_type: &str) -> String {
    let hex = format!("encode(sha256(convert_to(k.s || ({value})::text, 'UTF8')), 'hex')");
    let leading = |digits: usize| {
        format!(
            "('x' || substr({hex}, 1, {digits}))::bit({})::bigint",
            digits * 4
        )
    };
    let list = |words: &[&str]| {
        let items: Vec<String> = words.iter().map(|w| quote_literal(w)).collect();
        format!("(ARRAY[{}]::text[])", items.join(", "))
    };
    let sql = match mask {
        Masked::Hex(digits) => format!("left({hex}, {digits})"),
        Masked::Number(digits) => leading(digits),
        Masked::Uuid => format!("substr({hex}, 1, 32)::uuid"),
        Masked::Email => format!("'user' || substr({hex}, 1, 12) || '@example.com'"),
        Masked::Name => {
            let (first, last) = (super::stream::FIRST, super::stream::LAST);
            let n = leading(8);
            format!(
                "{}[1 + ({n}) % {}] || ' ' || {}[1 + ({n}) / {} % {}]",
                list(first),
                first.len(),
                list(last),
                first.len(),
                last.len()
            )
        }
        Masked::Phone => format!(
            "'+1-555-' || lpad((({}) % 10000000)::text, 7, '0')",
            leading(8)
        ),
    };
    format!("({sql})::{sql_type}")
}

fn is_text(column: &Column) -> bool {
    matches!(
        column.base.as_str(),
        "text" | "varchar" | "bpchar" | "citext" | "name"
    )
}

/// How a column is read: its SQL in the select list, and the mask the
/// stream applies to it; or why the rule cannot be applied to it.
pub(crate) fn expression(
    table: &Table,
    column: &Column,
    rule: &Rule,
) -> Result<(String, Option<Masked>), String> {
    let value = format!("t.{}", quote_ident(&column.name));
    let place = format!("`{}.{}` ({})", table.name, column.name, column.sql_type);
    let fits = |needed: i32| -> Result<(), String> {
        match column.length {
            Some(length) if length < needed => Err(format!(
                "{place} holds at most {length} characters; `{}` needs {needed}",
                rule.describe()
            )),
            _ => Ok(()),
        }
    };
    let masked = |mask: Masked| Ok((value.clone(), Some(mask)));
    match rule {
        Rule::Keep => Ok((value.clone(), None)),
        Rule::Null if column.not_null => Err(format!(
            "{place} is NOT NULL, so it cannot be nulled: use `hash`, `fixed` or `fake`"
        )),
        Rule::Null => Ok((format!("NULL::{}", column.sql_type), None)),
        Rule::Fixed(text) => Ok((
            format!("{}::{}", quote_literal(text), column.sql_type),
            None,
        )),
        Rule::Hash => match column.base.as_str() {
            _ if is_text(column) => {
                let length = column.length.map_or(32, |l| l.min(32));
                if length < 8 {
                    return Err(format!(
                        "{place} is too short for a hash that keeps values apart: use `fixed` or `null`"
                    ));
                }
                masked(Masked::Hex(usize::try_from(length).unwrap_or(32)))
            }
            "int8" => masked(Masked::Number(15)),
            "int4" => masked(Masked::Number(7)),
            "int2" => masked(Masked::Number(3)),
            "uuid" => masked(Masked::Uuid),
            _ => Err(format!(
                "`hash` keeps a column's type for text, integers and uuids; {place} is none of them: use `null`, `fixed` or `keep`"
            )),
        },
        Rule::Fake(fake) => {
            if !is_text(column) {
                return Err(format!(
                    "{place} is not text, so it cannot hold a fake value"
                ));
            }
            match fake {
                Fake::Email => fits(28).and_then(|()| masked(Masked::Email)),
                Fake::Name => fits(20).and_then(|()| masked(Masked::Name)),
                Fake::Phone => fits(15).and_then(|()| masked(Masked::Phone)),
            }
        }
    }
}

/// The rule of each column of a table: what `mask` says, else for a
/// sensitive table a hash (text, integers, uuids) or NULL, else keep.
pub(crate) fn column_rules(
    table: &Table,
    named: Option<&std::collections::BTreeMap<String, Rule>>,
    sensitive: bool,
) -> Result<Vec<Rule>, String> {
    table
        .columns
        .iter()
        .map(|column| {
            if let Some(rule) = named.and_then(|n| n.get(&column.name)) {
                return Ok(rule.clone());
            }
            if !sensitive {
                return Ok(Rule::Keep);
            }
            if expression(table, column, &Rule::Hash).is_ok() {
                Ok(Rule::Hash)
            } else if !column.not_null {
                Ok(Rule::Null)
            } else {
                Err(format!(
                    "`{}.{}` ({}) of sensitive table `{}` needs a rule: it is NOT NULL and `hash` cannot keep its type",
                    table.name, column.name, column.sql_type, table.name
                ))
            }
        })
        .collect()
}

/// Which rows of each table are copied: its own `where` and `sample`, and,
/// so that foreign keys hold, only rows whose referenced rows are copied
/// too. `None` is every row.
pub(crate) struct Filters<'a> {
    catalog: &'a Catalog,
    own: Vec<Option<String>>,
}

impl<'a> Filters<'a> {
    /// `own[i]` is table `i`'s own condition, over the alias `{t}`.
    pub fn new(catalog: &'a Catalog, own: Vec<Option<String>>) -> Self {
        Self { catalog, own }
    }

    /// The condition on table `index` under `alias`, following foreign keys
    /// to filtered tables (cycles are cut).
    pub fn condition(&self, index: usize, alias: &str) -> Option<String> {
        self.condition_in(index, alias, &mut vec![index])
    }

    fn condition_in(&self, index: usize, alias: &str, path: &mut Vec<usize>) -> Option<String> {
        let mut parts: Vec<String> = self.own[index]
            .iter()
            .map(|own| own.replace("{t}", alias))
            .collect();
        for key in self
            .catalog
            .foreign_keys
            .iter()
            .filter(|k| k.child == index)
        {
            if path.contains(&key.parent) {
                continue;
            }
            path.push(key.parent);
            let inner = format!("p{}", path.len());
            let parent_condition = self.condition_in(key.parent, &inner, path);
            path.pop();
            let Some(parent_condition) = parent_condition else {
                continue;
            };
            let nulls: Vec<String> = key
                .child_columns
                .iter()
                .map(|c| format!("{alias}.{} IS NULL", quote_ident(c)))
                .collect();
            let joins: Vec<String> = key
                .child_columns
                .iter()
                .zip(&key.parent_columns)
                .map(|(c, p)| format!("{inner}.{} = {alias}.{}", quote_ident(p), quote_ident(c)))
                .collect();
            parts.push(format!(
                "({} OR EXISTS (SELECT FROM {} {inner} WHERE {} AND {parent_condition}))",
                nulls.join(" OR "),
                self.catalog.tables[key.parent].qualified(),
                joins.join(" AND ")
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" AND "))
    }
}

/// A table's own condition: its `where`, its sample, or FALSE when skipped.
pub(crate) fn own_condition(table: &Table, rules: &Rules, name: &str) -> Option<String> {
    if rules.skip.contains(name) {
        return Some("FALSE".into());
    }
    let mut parts = Vec::new();
    if let Some(condition) = rules.filters.get(name) {
        // Unqualified names in the user's condition resolve to the table:
        // wherever the condition is used, the table is the innermost FROM.
        parts.push(format!("({condition})"));
    }
    if let Some(percent) = rules.sample.get(name) {
        let key = if table.primary_key.is_empty() {
            "{t}::text".to_owned()
        } else {
            let columns: Vec<String> = table
                .primary_key
                .iter()
                .map(|c| format!("{{t}}.{}", quote_ident(c)))
                .collect();
            format!("ROW({})::text", columns.join(", "))
        };
        parts.push(format!(
            "('x' || substr(md5({key}), 1, 8))::bit(32)::bigint % 1000000 < {}",
            (percent * 10000.0).round() as i64
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" AND "))
}
