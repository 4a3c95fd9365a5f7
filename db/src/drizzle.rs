//! Custom types as a TypeScript module for drizzle-orm's `pg-core`, written
//! by `drizzle:<db>:pull` (`out = "....ts"`) and read back by `pg:<db>:push`.
//!
//! Enums are `pgEnum(...)`, or `pgSchema(...).enum(...)` outside `public`,
//! labels in order. drizzle-orm has no domains and no composite types: each
//! is a `customType` whose SQL type is the type's qualified name, so a
//! column can use it, and its definition is kept in a `@flow` line of its
//! comment, which is what `push` applies. Every type has a `@flow` line;
//! enums take their labels from the `pgEnum` call, so an edited label list
//! is what is pushed. Names become valid TypeScript identifiers in camel
//! case, made unique in the order the types come; the same types give the
//! same bytes.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::quote_ident;
use crate::types::{CustomType, TypeStatement, TypesFileError, parse as parse_sql};

/// Words TypeScript does not take as a `const`'s name.
const RESERVED: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "as",
    "implements",
    "interface",
    "let",
    "package",
    "private",
    "protected",
    "public",
    "static",
    "yield",
    "any",
    "boolean",
    "number",
    "string",
    "symbol",
    "type",
    "from",
    "of",
    "await",
    "async",
    "undefined",
];

/// `zoning_class` → `zoningClass`, `Status Code` → `statusCode`, `2fa` →
/// `_2fa`; never a reserved word.
pub fn identifier(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            if upper && !out.is_empty() {
                out.extend(c.to_uppercase());
            } else if out.is_empty() {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.is_empty() {
        out.push_str("unnamed");
    }
    if out.starts_with(|c: char| c.is_numeric()) {
        out.insert(0, '_');
    }
    if RESERVED.contains(&out.as_str()) {
        out.push_str("Type");
    }
    out
}

/// A string as a JSON (and so TypeScript) literal.
fn literal(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// The module.
pub fn render(types: &[CustomType]) -> String {
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut unique = |wanted: String| {
        let mut name = wanted.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("{wanted}{n}");
            n += 1;
        }
        name
    };
    let schemas: BTreeSet<&str> = types
        .iter()
        .filter(|t| matches!(t, CustomType::Enum { .. }) && t.schema() != "public")
        .map(CustomType::schema)
        .collect();
    let mut imports = Vec::new();
    if types.iter().any(|t| !matches!(t, CustomType::Enum { .. })) {
        imports.push("customType");
    }
    if types
        .iter()
        .any(|t| matches!(t, CustomType::Enum { .. }) && t.schema() == "public")
    {
        imports.push("pgEnum");
    }
    if !schemas.is_empty() {
        imports.push("pgSchema");
    }
    let mut out = String::from(
        "// The custom types of the database, for drizzle-orm's pg-core: written by\n\
         // flow's `drizzle:<db>:pull` and read back by `pg:<db>:push` (the `@flow`\n\
         // lines are what it applies). Pull again rather than edit by hand.\n",
    );
    if imports.is_empty() {
        out.push_str("\nexport {};\n");
        return out;
    }
    let _ = writeln!(
        out,
        "import {{ {} }} from \"drizzle-orm/pg-core\";",
        imports.join(", ")
    );
    let mut schema_consts = Vec::new();
    if !schemas.is_empty() {
        out.push('\n');
    }
    for schema in &schemas {
        let name = unique(format!("{}Schema", identifier(schema)));
        let _ = writeln!(out, "export const {name} = pgSchema({});", literal(schema));
        schema_consts.push(((*schema).to_owned(), name));
    }
    for ty in types {
        let qualified = format!("{}.{}", quote_ident(ty.schema()), quote_ident(ty.name()));
        let base = if ty.schema() == "public" {
            identifier(ty.name())
        } else {
            identifier(&format!("{} {}", ty.schema(), ty.name()))
        };
        let name = unique(base);
        out.push('\n');
        match ty {
            CustomType::Enum { schema, labels, .. } => {
                let labels: Vec<String> = labels.iter().map(|l| literal(l)).collect();
                let maker = match schema_consts.iter().find(|(s, _)| s == schema) {
                    Some((_, constant)) => format!("{constant}.enum"),
                    None => "pgEnum".to_owned(),
                };
                let _ = writeln!(out, "/** @flow enum {qualified} */");
                let _ = writeln!(
                    out,
                    "export const {name} = {maker}({}, [{}]);",
                    literal(ty.name()),
                    labels.join(", ")
                );
            }
            CustomType::Domain { definition, .. } => {
                let _ = writeln!(
                    out,
                    "/**\n * Domain {qualified}: drizzle-orm has no domains; a column of it holds\n * its base type's values, as text here.\n * @flow domain {qualified} AS {}\n */",
                    definition.replace("*/", "* /")
                );
                let _ = writeln!(out, "{}", custom(&name, &qualified));
            }
            CustomType::Composite { attributes, .. } => {
                let attributes: Vec<String> = attributes
                    .iter()
                    .map(|(n, t)| format!("{} {t}", quote_ident(n)))
                    .collect();
                let _ = writeln!(
                    out,
                    "/**\n * Composite type {qualified}: drizzle-orm has no composite types; a column\n * of it holds the server's text form of a row, like `(a,b)`.\n * @flow composite {qualified} ({})\n */",
                    attributes.join(", ").replace("*/", "* /")
                );
                let _ = writeln!(out, "{}", custom(&name, &qualified));
            }
        }
    }
    out
}

fn custom(name: &str, qualified: &str) -> String {
    format!(
        "export const {name} = customType<{{ data: string }}>({{\n  dataType() {{\n    return {};\n  }},\n}});",
        literal(qualified)
    )
}

/// Reads a module `render` wrote (or one edited in its form) back into the
/// statements `push` applies.
pub fn parse(text: &str) -> Result<Vec<TypeStatement>, TypesFileError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut sql = String::new();
    let mut schemas: BTreeSet<String> = BTreeSet::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(rest) = line.split_once("@flow ").map(|(_, r)| r.trim()) else {
            continue;
        };
        let rest = rest.trim_end_matches("*/").trim();
        let error = |message: String| TypesFileError {
            line: at + 1,
            message,
        };
        let (kind, definition) = rest
            .split_once(' ')
            .ok_or_else(|| error(format!("`@flow {rest}` names no type")))?;
        match kind {
            "enum" => {
                // The labels are those of the next `enum(...)` call.
                let call = lines[at + 1..]
                    .iter()
                    .find(|l| l.contains("export const"))
                    .ok_or_else(|| {
                        error("an enum's `@flow` line comes before its `pgEnum`".into())
                    })?;
                let open = call
                    .find('[')
                    .ok_or_else(|| error("no label list".into()))?;
                let close = call
                    .rfind(']')
                    .ok_or_else(|| error("no label list".into()))?;
                let labels: Vec<String> = serde_json::from_str(&call[open..=close])
                    .map_err(|e| error(format!("the labels are not a list of strings: {e}")))?;
                let labels: Vec<String> = labels.iter().map(|l| crate::quote_literal(l)).collect();
                let _ = writeln!(
                    sql,
                    "CREATE TYPE {} AS ENUM ({});",
                    definition.trim(),
                    labels.join(", ")
                );
            }
            "domain" => {
                let _ = writeln!(sql, "CREATE DOMAIN {definition};");
            }
            "composite" => {
                let (name, attributes) = definition.split_once(" (").ok_or_else(|| {
                    error("a composite type's attributes go in parentheses".into())
                })?;
                let _ = writeln!(sql, "CREATE TYPE {name} AS ({attributes};");
            }
            other => return Err(error(format!("`@flow {other}` is not a kind of type"))),
        }
    }
    let mut statements = Vec::new();
    for statement in parse_sql(&sql)? {
        if let TypeStatement::Type(ty) = &statement
            && schemas.insert(ty.schema().to_owned())
        {
            statements.push(TypeStatement::Schema {
                name: ty.schema().to_owned(),
                sql: format!("CREATE SCHEMA IF NOT EXISTS {};", quote_ident(ty.schema())),
            });
        }
        statements.push(statement);
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers() {
        assert_eq!(identifier("zoning_class"), "zoningClass");
        assert_eq!(identifier("Status Code"), "statusCode");
        assert_eq!(identifier("2fa"), "_2fa");
        assert_eq!(identifier("class"), "classType");
        assert_eq!(identifier("été"), "été");
        assert_eq!(identifier("__"), "unnamed");
    }

    #[test]
    fn a_module_reads_back_as_the_types_it_was_written_from() {
        let types = vec![
            CustomType::Enum {
                schema: "public".into(),
                name: "zoning_class".into(),
                labels: vec!["it's \"open\"".into(), "with space".into()],
            },
            CustomType::Enum {
                schema: "billing".into(),
                name: "status".into(),
                labels: vec!["a".into()],
            },
            CustomType::Domain {
                schema: "public".into(),
                name: "amount".into(),
                definition: "numeric(12,2) CHECK ((VALUE > (0)::numeric))".into(),
            },
            CustomType::Composite {
                schema: "public".into(),
                name: "address".into(),
                attributes: vec![
                    ("street".into(), "text".into()),
                    ("zip".into(), "character varying(10)".into()),
                ],
            },
        ];
        let text = render(&types);
        assert!(
            text.contains("import { customType, pgEnum, pgSchema } from \"drizzle-orm/pg-core\";"),
            "{text}"
        );
        assert!(
            text.contains("export const billingStatus = billingSchema.enum(\"status\", [\"a\"]);"),
            "{text}"
        );
        let back: Vec<CustomType> = parse(&text)
            .expect("parses")
            .into_iter()
            .filter_map(TypeStatement::into_type)
            .collect();
        assert_eq!(back, types);
    }
}
