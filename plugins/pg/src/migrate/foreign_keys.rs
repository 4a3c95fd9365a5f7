//! Foreign keys as PostgreSQL prints them: read, and pointed at another
//! schema.

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
