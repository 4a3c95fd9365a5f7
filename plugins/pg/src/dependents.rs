//! What an API table's readers depend on, carried over to the table that
//! replaces it in a `swap`.
//!
//! A swap puts new tables in place of the API's by moving schemas, so what
//! refers to the old tables by their identity would stay with them: views
//! would go on reading the previous release, the API role would lose its
//! grants, indexes and triggers would be gone. Inside the switch
//! transaction, before the move, this reads all of that from the catalog as
//! SQL (with the API schema alone on the search path, so that names come out
//! unqualified), and after the move runs it again on the new tables: owner,
//! comments, grants, row-level security and its policies, secondary
//! indexes, triggers, views and materialized views (made again, their own
//! indexes and grants too), and the foreign keys of other tables that point
//! at a swapped table (made again, so every row is checked). A statement
//! that no longer fits the new table (an index on a column the release
//! dropped) fails the switch, and the API stays as it was.

use flow_engine::StepError;
use flow_engine::flow_db::tokio_postgres::Transaction;
use flow_engine::flow_db::{DbError, quote_ident, quote_literal};

/// The statements that give the new tables what the old ones had, in the
/// order they run after the move.
pub async fn capture(
    transaction: &Transaction<'_>,
    schema: &str,
    tables: &[String],
) -> Result<Vec<String>, StepError> {
    let q = quote_ident;
    transaction
        .batch_execute(&format!("SET LOCAL search_path = {}", q(schema)))
        .await
        .map_err(DbError::from)?;
    let me: String = transaction
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(DbError::from)?
        .get(0);
    let mut statements = Vec::new();
    let mut later = Vec::new();
    for table in tables {
        let name = format!("{}.{}", q(schema), q(table));
        let Some(row) = transaction
            .query_opt(
                "SELECT c.oid, pg_get_userbyid(c.relowner)::text, c.relrowsecurity, c.relforcerowsecurity,
                        obj_description(c.oid, 'pg_class')
                 FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&name],
            )
            .await
            .map_err(DbError::from)?
        else {
            continue;
        };
        let oid: u32 = row.get(0);
        let owner: String = row.get(1);
        if owner != me {
            statements.push(format!("ALTER TABLE {name} OWNER TO {};", q(&owner)));
        }
        if let Some(comment) = row.get::<_, Option<String>>(4) {
            statements.push(format!(
                "COMMENT ON TABLE {name} IS {};",
                quote_literal(&comment)
            ));
        }
        statements.extend(column_comments(transaction, oid, &name).await?);
        statements.extend(grants(transaction, oid, &name, "TABLE").await?);
        if row.get::<_, bool>(2) {
            statements.push(format!("ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;"));
        }
        if row.get::<_, bool>(3) {
            statements.push(format!("ALTER TABLE {name} FORCE ROW LEVEL SECURITY;"));
        }
        statements.extend(policies(transaction, schema, table, &name).await?);
        // Secondary indexes: those no constraint of the table makes.
        statements.extend(
            definitions(
                transaction,
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                 WHERE i.indrelid = $1
                   AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
                oid,
            )
            .await?,
        );
        statements.extend(
            definitions(
                transaction,
                "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = $1 AND NOT t.tgisinternal",
                oid,
            )
            .await?,
        );
        later.extend(views(transaction, oid).await?);
        later.extend(sequences(transaction, oid, &name).await?);
        // Foreign keys of other tables that point at this one.
        for (other, constraint, definition) in
            foreign_keys_into(transaction, std::slice::from_ref(&name)).await?
        {
            if tables
                .iter()
                .any(|t| other == format!("{}.{}", q(schema), q(t)))
            {
                continue;
            }
            later.push(format!(
                "ALTER TABLE {other} DROP CONSTRAINT {0}, ADD CONSTRAINT {0} {definition};",
                q(&constraint)
            ));
        }
    }
    statements.extend(later);
    transaction
        .batch_execute("SET LOCAL search_path TO DEFAULT")
        .await
        .map_err(DbError::from)?;
    Ok(statements)
}

/// The comments on the table's columns.
async fn column_comments(
    transaction: &Transaction<'_>,
    oid: u32,
    name: &str,
) -> Result<Vec<String>, StepError> {
    let q = quote_ident;
    let mut statements = Vec::new();
    for row in transaction
        .query(
            "SELECT a.attname::text, col_description(a.attrelid, a.attnum) FROM pg_attribute a
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
               AND col_description(a.attrelid, a.attnum) IS NOT NULL",
            &[&oid],
        )
        .await
        .map_err(DbError::from)?
    {
        statements.push(format!(
            "COMMENT ON COLUMN {name}.{} IS {};",
            q(&row.get::<_, String>(0)),
            quote_literal(&row.get::<_, String>(1))
        ));
    }
    Ok(statements)
}

/// The table's row-level security policies.
async fn policies(
    transaction: &Transaction<'_>,
    schema: &str,
    table: &str,
    name: &str,
) -> Result<Vec<String>, StepError> {
    let q = quote_ident;
    let mut statements = Vec::new();
    for row in transaction
        .query(
            "SELECT policyname::text, permissive, cmd, roles::text[], qual, with_check
             FROM pg_policies WHERE schemaname = $1 AND tablename = $2",
            &[&schema, &table],
        )
        .await
        .map_err(DbError::from)?
    {
        let roles: Vec<String> = row.get(3);
        let mut policy = format!(
            "CREATE POLICY {} ON {name} AS {} FOR {} TO {}",
            q(&row.get::<_, String>(0)),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            roles
                .iter()
                .map(|r| if r == "public" {
                    "PUBLIC".to_owned()
                } else {
                    q(r)
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(using) = row.get::<_, Option<String>>(4) {
            policy.push_str(&format!(" USING ({using})"));
        }
        if let Some(check) = row.get::<_, Option<String>>(5) {
            policy.push_str(&format!(" WITH CHECK ({check})"));
        }
        statements.push(format!("{policy};"));
    }
    Ok(statements)
}

/// Views and materialized views that read the table, made again over the
/// new one (a materialized view with its indexes and grants).
async fn views(transaction: &Transaction<'_>, oid: u32) -> Result<Vec<String>, StepError> {
    let mut later = Vec::new();
    for row in transaction
        .query(
            "SELECT DISTINCT v.oid, quote_ident(n.nspname) || '.' || quote_ident(v.relname), v.relkind::text,
                    pg_get_viewdef(v.oid)
             FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
             JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace n ON n.oid = v.relnamespace
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1 AND v.oid <> $1",
            &[&oid],
        )
        .await
        .map_err(DbError::from)?
    {
        let view_oid: u32 = row.get(0);
        let view: String = row.get(1);
        let definition: String = row.get(3);
        let definition = definition.trim_end().trim_end_matches(';');
        if row.get::<_, String>(2) == "m" {
            later.push(format!("DROP MATERIALIZED VIEW {view};"));
            later.push(format!("CREATE MATERIALIZED VIEW {view} AS {definition};"));
            later.extend(
                definitions(
                    transaction,
                    "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = $1",
                    view_oid,
                )
                .await?,
            );
            later.extend(grants(transaction, view_oid, &view, "TABLE").await?);
        } else {
            later.push(format!("CREATE OR REPLACE VIEW {view} AS {definition};"));
        }
    }
    Ok(later)
}

/// Identity and serial columns go on from where the old table was, so that
/// the product's own inserts do not meet taken keys.
async fn sequences(
    transaction: &Transaction<'_>,
    oid: u32,
    name: &str,
) -> Result<Vec<String>, StepError> {
    let q = quote_ident;
    let mut later = Vec::new();
    for row in transaction
        .query(
            "SELECT a.attname::text, s.last_value
             FROM pg_attribute a
             JOIN pg_sequences s ON quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename)
                                    = pg_get_serial_sequence($2, a.attname)
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
               AND pg_get_serial_sequence($2, a.attname) IS NOT NULL",
            &[&oid, &name],
        )
        .await
        .map_err(DbError::from)?
    {
        let column: String = row.get(0);
        let last: Option<i64> = row.get(1);
        later.push(format!(
            "SELECT setval(pg_get_serial_sequence({0}, {1}), greatest({2}, (SELECT max({3}) FROM {name})), true) WHERE pg_get_serial_sequence({0}, {1}) IS NOT NULL AND greatest({2}, (SELECT max({3}) FROM {name})) IS NOT NULL;",
            quote_literal(name),
            quote_literal(&column),
            last.map_or_else(|| "NULL".to_owned(), |l| l.to_string()),
            q(&column)
        ));
    }
    Ok(later)
}

/// The grants on a relation to others than its owner, as `GRANT` statements.
async fn grants(
    transaction: &Transaction<'_>,
    oid: u32,
    name: &str,
    kind: &str,
) -> Result<Vec<String>, StepError> {
    Ok(transaction
        .query(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                    a.privilege_type, a.is_grantable
             FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.oid = $1 AND a.grantee <> c.relowner",
            &[&oid],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|row| {
            format!(
                "GRANT {} ON {kind} {name} TO {}{};",
                row.get::<_, String>(1),
                row.get::<_, String>(0),
                if row.get::<_, bool>(2) {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            )
        })
        .collect())
}

/// Runs the captured statements, with the API schema on the search path as
/// when they were read.
pub async fn restore(
    transaction: &Transaction<'_>,
    schema: &str,
    statements: &[String],
) -> Result<(), StepError> {
    if statements.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SET LOCAL search_path = {};\n{}\nSET LOCAL search_path TO DEFAULT;",
        quote_ident(schema),
        statements.join("\n")
    );
    transaction.batch_execute(&sql).await.map_err(|error| {
        StepError::coded(
"flow::populate::dependents",
            format!(
                "what the API's readers depend on does not fit the new tables or rows: {}",
                DbError::from(error)
            ),
            Some("nothing was written: a view, index, trigger, policy or foreign key of the API uses what the release changes, or a row of another table points at one that is gone; change the API or the release".into()),
        )
    })?;
    Ok(())
}

/// Refreshes the materialized views that read `tables` (of `schema`), so
/// that they show the rows just loaded.
pub async fn refresh_materialized(
    transaction: &Transaction<'_>,
    schema: &str,
    tables: &[String],
) -> Result<(), StepError> {
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("{}.{}", quote_ident(schema), quote_ident(t)))
        .collect();
    let views: Vec<String> = transaction
        .query(
            "SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(v.relname)
             FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
             JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace n ON n.oid = v.relnamespace
             WHERE d.classid = 'pg_rewrite'::regclass AND v.relkind = 'm'
               AND d.refobjid IN (SELECT to_regclass(t) FROM unnest($1::text[]) t)",
            &[&names],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for view in views {
        transaction
            .batch_execute(&format!("REFRESH MATERIALIZED VIEW {view}"))
            .await
            .map_err(DbError::from)?;
    }
    Ok(())
}

/// Drops the foreign keys of other tables that point at `tables` (of
/// `schema`), and returns the statements that make them again, as they were
/// (names unqualified, for [`restore`] with the schema on the search path).
pub async fn release_foreign_keys(
    transaction: &Transaction<'_>,
    schema: &str,
    tables: &[String],
) -> Result<Vec<String>, StepError> {
    let q = quote_ident;
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("{}.{}", q(schema), q(t)))
        .collect();
    transaction
        .batch_execute(&format!("SET LOCAL search_path = {}", q(schema)))
        .await
        .map_err(DbError::from)?;
    let keys = foreign_keys_into(transaction, &names).await?;
    transaction
        .batch_execute("SET LOCAL search_path TO DEFAULT")
        .await
        .map_err(DbError::from)?;
    let mut again = Vec::new();
    for (other, name, definition) in keys {
        transaction
            .batch_execute(&format!("ALTER TABLE {other} DROP CONSTRAINT {}", q(&name)))
            .await
            .map_err(DbError::from)?;
        again.push(format!(
            "ALTER TABLE {other} ADD CONSTRAINT {} {definition};",
            q(&name)
        ));
    }
    Ok(again)
}

/// Moves the sequences of the identity and serial columns of `tables` past
/// the largest key they hold, where the rows loaded went beyond them.
pub async fn advance_sequences(
    transaction: &Transaction<'_>,
    schema: &str,
    tables: &[String],
) -> Result<(), StepError> {
    for table in tables {
        let name = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let columns: Vec<String> = transaction
            .query(
                "SELECT a.attname::text FROM pg_attribute a
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                   AND pg_get_serial_sequence($1, a.attname) IS NOT NULL",
                &[&name],
            )
            .await
            .map_err(DbError::from)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for column in columns {
            transaction
                .batch_execute(&format!(
                    "SELECT setval(pg_get_serial_sequence({0}, {1}), m) FROM (SELECT max({2}) AS m FROM {name}) x
                     WHERE m IS NOT NULL AND m > (SELECT coalesce(last_value, 0)
                                                  FROM pg_sequences s
                                                  WHERE quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename)
                                                        = pg_get_serial_sequence({0}, {1}))",
                    quote_literal(&name),
                    quote_literal(&column),
                    quote_ident(&column)
                ))
                .await
                .map_err(DbError::from)?;
        }
    }
    Ok(())
}

/// One definition a row, each made a statement.
async fn definitions(
    transaction: &Transaction<'_>,
    sql: &str,
    oid: u32,
) -> Result<Vec<String>, StepError> {
    Ok(transaction
        .query(sql, &[&oid])
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|row| format!("{};", row.get::<_, String>(0)))
        .collect())
}

/// The foreign keys that point at the tables `names` (qualified) from
/// tables not among them: the table (qualified), the key's name, its definition
/// as the search path prints it.
async fn foreign_keys_into(
    transaction: &Transaction<'_>,
    names: &[String],
) -> Result<Vec<(String, String, String)>, StepError> {
    Ok(transaction
        .query(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), k.conname::text,
                    pg_get_constraintdef(k.oid)
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE k.contype = 'f'
               AND k.confrelid IN (SELECT to_regclass(t) FROM unnest($1::text[]) t)
               AND k.conrelid NOT IN (SELECT to_regclass(t) FROM unnest($1::text[]) t)",
            &[&names],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
