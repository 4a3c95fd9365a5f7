//! Custom types (enums, domains, composites): read from a database, written as
//! SQL, and read back from that SQL.
//!
//! The SQL form is what `drizzle:<db>:pull` writes and `pg:<db>:push` applies:
//! one `CREATE` statement per type, names schema-qualified and quoted, types
//! written by the server's `format_type` with an empty search path, so the
//! file is the same byte for byte whenever the types are the same.

use std::fmt::Write as _;

use crate::Sql;

use crate::{DbError, quote_ident, quote_literal};

/// A custom type as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomType {
    Enum {
        schema: String,
        name: String,
        labels: Vec<String>,
    },
    Domain {
        schema: String,
        name: String,
        definition: String,
    },
    Composite {
        schema: String,
        name: String,
        attributes: Vec<(String, String)>,
    },
}

impl CustomType {
    pub fn schema(&self) -> &str {
        match self {
            CustomType::Enum { schema, .. }
            | CustomType::Domain { schema, .. }
            | CustomType::Composite { schema, .. } => schema,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            CustomType::Enum { name, .. }
            | CustomType::Domain { name, .. }
            | CustomType::Composite { name, .. } => name,
        }
    }

    /// `"schema"."name"`.
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(self.schema()),
            quote_ident(self.name())
        )
    }

    /// The statement that creates it.
    pub fn create(&self) -> String {
        match self {
            CustomType::Enum { labels, .. } => {
                let labels: Vec<String> = labels.iter().map(|l| quote_literal(l)).collect();
                format!(
                    "CREATE TYPE {} AS ENUM ({});",
                    self.qualified(),
                    labels.join(", ")
                )
            }
            CustomType::Domain { definition, .. } => {
                format!("CREATE DOMAIN {} AS {definition};", self.qualified())
            }
            CustomType::Composite { attributes, .. } => {
                let attributes: Vec<String> = attributes
                    .iter()
                    .map(|(n, t)| format!("{} {t}", quote_ident(n)))
                    .collect();
                format!(
                    "CREATE TYPE {} AS ({});",
                    self.qualified(),
                    attributes.join(", ")
                )
            }
        }
    }

    fn kind_rank(&self) -> u8 {
        match self {
            CustomType::Enum { .. } => 0,
            CustomType::Domain { .. } => 1,
            CustomType::Composite { .. } => 2,
        }
    }
}

const USER_TYPES: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    AND ($1::text[] IS NULL OR n.nspname = ANY($1))
    AND NOT EXISTS (SELECT 1 FROM pg_depend d
        WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')";

/// Reads the custom types of every user schema (or of `schemas`), leaving out
/// those that belong to extensions such as PostGIS. Enums come first, then
/// domains, then composites, each sorted by schema and name.
pub async fn introspect(
    client: &impl Sql,
    schemas: Option<&[String]>,
) -> Result<Vec<CustomType>, DbError> {
    let schemas: Option<Vec<String>> = schemas.map(<[String]>::to_vec);
    // Qualify every type name that format_type prints.
    client
        .execute("SELECT set_config('search_path', '', true)", &[])
        .await?;
    let mut types = Vec::new();
    let enums = format!(
        "SELECT n.nspname, t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
         WHERE t.typtype = 'e' AND {USER_TYPES}
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    for row in client.query(&enums, &[&schemas]).await? {
        types.push(CustomType::Enum {
            schema: row.get(0),
            name: row.get(1),
            labels: row.get(2),
        });
    }
    let domains = format!(
        "SELECT n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod)
            || CASE WHEN t.typcollation <> 0 AND t.typcollation <> (SELECT typcollation FROM pg_type b WHERE b.oid = t.typbasetype)
                    THEN ' COLLATE ' || (SELECT quote_ident(collname) FROM pg_collation WHERE oid = t.typcollation) ELSE '' END
            || CASE WHEN t.typdefault IS NOT NULL THEN ' DEFAULT ' || t.typdefault ELSE '' END
            || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
            || coalesce((SELECT string_agg(' CONSTRAINT ' || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid), '' ORDER BY c.conname)
                         FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c'), '')
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE t.typtype = 'd' AND {USER_TYPES}
         ORDER BY 1, 2"
    );
    for row in client.query(&domains, &[&schemas]).await? {
        types.push(CustomType::Domain {
            schema: row.get(0),
            name: row.get(1),
            definition: row.get(2),
        });
    }
    let composites = format!(
        "SELECT n.nspname, t.typname, array_agg(a.attname::text ORDER BY a.attnum), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE t.typtype = 'c' AND {USER_TYPES}
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    for row in client.query(&composites, &[&schemas]).await? {
        let names: Vec<String> = row.get(2);
        let kinds: Vec<String> = row.get(3);
        types.push(CustomType::Composite {
            schema: row.get(0),
            name: row.get(1),
            attributes: names.into_iter().zip(kinds).collect(),
        });
    }
    types.sort_by(|a, b| {
        (a.kind_rank(), a.schema(), a.name()).cmp(&(b.kind_rank(), b.schema(), b.name()))
    });
    Ok(types)
}

/// The types file: a header, the schemas, then one statement per type.
pub fn render(database: &str, types: &[CustomType]) -> String {
    let mut out = format!(
        "-- Custom types of database `{database}`, written by `drizzle:{database}:pull`.\n\
         -- Applied by `pg:<db>:push`; also applies as written to an empty database.\n"
    );
    let mut schemas: Vec<&str> = types.iter().map(CustomType::schema).collect();
    schemas.sort_unstable();
    schemas.dedup();
    if !schemas.is_empty() {
        out.push('\n');
    }
    for schema in schemas {
        let _ = writeln!(out, "CREATE SCHEMA IF NOT EXISTS {};", quote_ident(schema));
    }
    for ty in types {
        let _ = write!(out, "\n{}\n", ty.create());
    }
    out
}

/// A statement of a types file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeStatement {
    Schema { name: String, sql: String },
    Type(CustomType),
}

impl TypeStatement {
    /// The type it creates, if it creates one.
    pub fn into_type(self) -> Option<CustomType> {
        match self {
            TypeStatement::Type(ty) => Some(ty),
            TypeStatement::Schema { .. } => None,
        }
    }
}

/// An error in a types file, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypesFileError {
    pub line: usize,
    pub message: String,
}

/// Reads a types file back: `CREATE SCHEMA`, `CREATE TYPE ... AS ENUM`,
/// `CREATE TYPE ... AS (...)` and `CREATE DOMAIN`. Names default to `public`.
pub fn parse(sql: &str) -> Result<Vec<TypeStatement>, TypesFileError> {
    let mut statements = Vec::new();
    for (start, text) in split_statements(sql) {
        let line = sql[..start].matches('\n').count() + 1;
        let error = |message: String| TypesFileError { line, message };
        let tokens = tokenize(text).map_err(error)?;
        let words: Vec<String> = tokens.iter().map(|t| t.text.to_ascii_uppercase()).collect();
        let word = |i: usize| words.get(i).map_or("", String::as_str);
        if word(0) != "CREATE" {
            return Err(error(format!(
                "expected a `CREATE` statement, found `{}`",
                first_words(text)
            )));
        }
        match word(1) {
            "SCHEMA" => {
                let at = if word(2) == "IF" { 5 } else { 2 };
                let name = tokens
                    .get(at)
                    .map(Token::name)
                    .ok_or_else(|| error("`CREATE SCHEMA` without a name".into()))?;
                statements.push(TypeStatement::Schema {
                    name,
                    sql: text.trim().to_owned(),
                });
            }
            "TYPE" | "DOMAIN" => {
                let (schema, name, next) = qualified_name(&tokens, 2)
                    .ok_or_else(|| error("expected a type name".into()))?;
                if word(next) != "AS" {
                    return Err(error(format!("expected `AS` after the name of `{name}`")));
                }
                let rest_start = tokens.get(next).map_or(text.len(), |t| t.end);
                let rest = text[rest_start..].trim();
                let ty = if word(1) == "DOMAIN" {
                    CustomType::Domain {
                        schema,
                        name,
                        definition: rest.to_owned(),
                    }
                } else if word(next + 1) == "ENUM" {
                    let labels = tokens[next + 2..]
                        .iter()
                        .filter(|t| t.string)
                        .map(|t| t.value.clone())
                        .collect();
                    CustomType::Enum {
                        schema,
                        name,
                        labels,
                    }
                } else if tokens.get(next + 1).is_some_and(|t| t.text == "(") {
                    CustomType::Composite {
                        schema,
                        name,
                        attributes: attributes(rest).map_err(error)?,
                    }
                } else {
                    return Err(error(format!(
                        "`{name}` is neither an enum nor a composite type"
                    )));
                };
                statements.push(TypeStatement::Type(ty));
            }
            _ => {
                return Err(error(format!(
                    "flow applies enums, domains and composite types, not `{}`",
                    first_words(text)
                )));
            }
        }
    }
    Ok(statements)
}

fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `name type` pairs of `( a text, b public.zone )`.
fn attributes(rest: &str) -> Result<Vec<(String, String)>, String> {
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.trim_end().strip_suffix(')'))
        .ok_or("a composite type's attributes go in parentheses")?;
    let mut attributes = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let mut quoted = false;
    let mut parts = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let tokens = tokenize(part)?;
        let first = tokens.first().ok_or("an empty attribute")?;
        let kind = part[first.end..].trim();
        if kind.is_empty() {
            return Err(format!("attribute `{}` has no type", first.name()));
        }
        attributes.push((first.name(), kind.to_owned()));
    }
    Ok(attributes)
}

fn qualified_name(tokens: &[Token], at: usize) -> Option<(String, String, usize)> {
    let first = tokens.get(at)?;
    if tokens.get(at + 1).is_some_and(|t| t.text == ".") {
        let second = tokens.get(at + 2)?;
        Some((first.name(), second.name(), at + 3))
    } else {
        Some(("public".to_owned(), first.name(), at + 1))
    }
}

#[derive(Debug)]
struct Token {
    text: String,
    /// The unquoted value of an identifier or string.
    value: String,
    quoted: bool,
    string: bool,
    end: usize,
}

impl Token {
    fn name(&self) -> String {
        if self.quoted {
            self.value.clone()
        } else {
            self.value.to_lowercase()
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1).is_some_and(|(_, n)| *n == '-') {
            while i < chars.len() && chars[i].1 != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' {
            let mut value = String::new();
            i += 1;
            loop {
                let Some(&(_, d)) = chars.get(i) else {
                    return Err(format!(
                        "unterminated {}",
                        if c == '"' { "identifier" } else { "string" }
                    ));
                };
                i += 1;
                if d == c {
                    if chars.get(i).is_some_and(|(_, n)| *n == c) {
                        value.push(c);
                        i += 1;
                        continue;
                    }
                    break;
                }
                value.push(d);
            }
            let end = chars.get(i).map_or(text.len(), |(p, _)| *p);
            tokens.push(Token {
                text: text[at..end].to_owned(),
                value,
                quoted: c == '"',
                string: c == '\'',
                end,
            });
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].1.is_alphanumeric() || chars[i].1 == '_' || chars[i].1 == '$')
            {
                i += 1;
            }
            let end = chars.get(i).map_or(text.len(), |(p, _)| *p);
            let word = text[chars[start].0..end].to_owned();
            tokens.push(Token {
                text: word.clone(),
                value: word,
                quoted: false,
                string: false,
                end,
            });
        } else {
            i += 1;
            let end = chars.get(i).map_or(text.len(), |(p, _)| *p);
            tokens.push(Token {
                text: c.to_string(),
                value: c.to_string(),
                quoted: false,
                string: false,
                end,
            });
        }
    }
    Ok(tokens)
}

/// Statements of a SQL text, split at `;` outside strings, identifiers and
/// comments, with the offset where each starts.
fn split_statements(sql: &str) -> Vec<(usize, &str)> {
    let mut statements = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    let mut comment = false;
    let bytes: Vec<(usize, char)> = sql.char_indices().collect();
    let mut i = 0;
    while i < bytes.len() {
        let (at, c) = bytes[i];
        match (quote, comment, c) {
            (_, true, '\n') => comment = false,
            (_, true, _) => {}
            (Some(q), _, c) if c == q => quote = None,
            (Some(_), _, _) => {}
            (None, _, '-') if bytes.get(i + 1).is_some_and(|(_, n)| *n == '-') => comment = true,
            (None, _, '\'' | '"') => quote = Some(c),
            (None, _, ';') => {
                statements.push((start, &sql[start..at]));
                start = at + 1;
            }
            _ => {}
        }
        i += 1;
    }
    statements.push((start, &sql[start..]));
    statements
        .into_iter()
        .filter(|(_, text)| {
            text.lines().any(|line| {
                let line = line.trim();
                !line.is_empty() && !line.starts_with("--")
            })
        })
        .map(|(start, text)| {
            let skipped = text.len() - text.trim_start().len();
            (start + skipped, text.trim_start())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_types_parse_back() {
        let types = vec![
            CustomType::Enum {
                schema: "public".into(),
                name: "zone".into(),
                labels: vec!["a".into(), "it's".into()],
            },
            CustomType::Domain {
                schema: "api".into(),
                name: "area".into(),
                definition:
                    "numeric(12,2) NOT NULL CONSTRAINT \"positive\" CHECK ((VALUE >= (0)::numeric))"
                        .into(),
            },
            CustomType::Composite {
                schema: "public".into(),
                name: "Address".into(),
                attributes: vec![
                    ("street".into(), "text".into()),
                    ("zone".into(), "public.zone".into()),
                ],
            },
        ];
        let sql = render("api", &types);
        let parsed: Vec<CustomType> = parse(&sql)
            .expect("parses")
            .into_iter()
            .filter_map(TypeStatement::into_type)
            .collect();
        assert_eq!(parsed, types);
    }

    #[test]
    fn hand_written_files_parse_too() {
        let sql = "-- types\ncreate type Zone as enum ('a', 'b');\nCREATE TYPE s.pt AS (x float8, y numeric(10, 2));";
        let parsed = parse(sql).expect("parses");
        assert_eq!(
            parsed[0],
            TypeStatement::Type(CustomType::Enum {
                schema: "public".into(),
                name: "zone".into(),
                labels: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(
            parsed[1],
            TypeStatement::Type(CustomType::Composite {
                schema: "s".into(),
                name: "pt".into(),
                attributes: vec![
                    ("x".into(), "float8".into()),
                    ("y".into(), "numeric(10, 2)".into())
                ]
            })
        );
    }

    #[test]
    fn other_statements_are_refused_with_their_line() {
        let error =
            parse("CREATE TYPE a AS ENUM ('x');\n\nDROP TABLE parcels;").expect_err("refused");
        assert_eq!(error.line, 3);
        assert!(
            error.message.contains("DROP TABLE parcels"),
            "{}",
            error.message
        );
    }
}
