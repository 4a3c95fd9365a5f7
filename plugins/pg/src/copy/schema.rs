//! The schema of a copy: written by `pg_dump` (`--schema-only`, in the
//! copy's snapshot) as the statements before the data (types, tables,
//! sequences, views, functions) and after it (keys, indexes, constraints,
//! triggers), and made room for in the target.

use flow_engine::StepError;
use flow_engine::flow_db::tokio_postgres::Transaction;
use flow_engine::flow_db::{Database, DbError, quote_ident};

/// `pg_dump --schema-only --section=<section>` of `schemas`, in `snapshot`,
/// made to apply to a target where the schemas may exist: `CREATE SCHEMA`
/// becomes `CREATE SCHEMA IF NOT EXISTS`, and psql's commands and schema
/// comments (which need the schema's owner) are left out.
pub(crate) async fn dump(
    source: &Database,
    schemas: &[String],
    snapshot: &str,
    section: &str,
) -> Result<String, StepError> {
    let mut command = tokio::process::Command::new("pg_dump");
    command
        .args(["--schema-only", "--no-owner", "--no-privileges"])
        .arg(format!("--section={section}"))
        .arg(format!("--snapshot={snapshot}"));
    for schema in schemas {
        command.arg(format!("--schema={}", quote_ident(schema)));
    }
    for (name, value) in source.session_env(super::SOURCE_SESSION)? {
        command.env(name, value);
    }
    command.kill_on_drop(true);
    let output = command.output().await.map_err(|e| {
        StepError::coded(
            "flow::copy::pg_dump",
            format!("cannot run pg_dump: {e}"),
            Some("install PostgreSQL's client programs (Debian: `apt-get install postgresql-client`)".into()),
        )
    })?;
    if !output.status.success() {
        return Err(StepError::coded(
            "flow::copy::pg_dump",
            format!(
                "pg_dump of `{}` failed: {}",
                source.name,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Some("pg_dump must be as new as the source's server".into()),
        ));
    }
    Ok(adapt(&String::from_utf8_lossy(&output.stdout)))
}

fn adapt(dump: &str) -> String {
    let mut out = String::with_capacity(dump.len());
    for line in dump.lines() {
        if line.starts_with('\\') || line.starts_with("COMMENT ON SCHEMA ") {
            continue;
        }
        // pg_dump's settings last for the target's transaction only, so
        // none stays on a connection (a pooler's, lent to others next).
        if let Some(rest) = line.strip_prefix("SET ") {
            out.push_str("SET LOCAL ");
            out.push_str(rest);
        } else if line == "SELECT pg_catalog.set_config('search_path', '', false);" {
            out.push_str("SELECT pg_catalog.set_config('search_path', '', true);");
        } else {
            match line.strip_prefix("CREATE SCHEMA ") {
                Some(rest) if !rest.starts_with("IF NOT EXISTS") => {
                    out.push_str("CREATE SCHEMA IF NOT EXISTS ");
                    out.push_str(rest);
                }
                _ => out.push_str(line),
            }
        }
        out.push('\n');
    }
    out
}

/// Empties the target's schemas for the copy, in its transaction: a schema
/// that holds no extension's objects is dropped whole; from one that does
/// (PostGIS in `public`), everything but those objects goes.
pub(crate) async fn clear(target: &Transaction<'_>, schemas: &[String]) -> Result<(), DbError> {
    for schema in schemas {
        let row = target
            .query_one(
                "SELECT (SELECT oid FROM pg_namespace WHERE nspname = $1::text) IS NOT NULL,
                        EXISTS (SELECT FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
                                 WHERE d.deptype = 'e' AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text))
                        OR EXISTS (SELECT FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
                                 WHERE d.deptype = 'e' AND p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text))
                        OR EXISTS (SELECT FROM pg_depend d JOIN pg_type t ON t.oid = d.objid
                                 WHERE d.deptype = 'e' AND t.typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text))",
                &[schema],
            )
            .await?;
        let (exists, extensions): (bool, bool) = (row.get(0), row.get(1));
        if !exists {
            continue;
        }
        if !extensions {
            target
                .batch_execute(&format!("DROP SCHEMA {} CASCADE", quote_ident(schema)))
                .await?;
            continue;
        }
        let drops: Vec<String> = target
            .query(
                "SELECT format('DROP %s IF EXISTS %s CASCADE',
                         CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                              WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                         c.oid::regclass)
                   FROM pg_class c
                  WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                    AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
                 UNION ALL
                 SELECT format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::regprocedure)
                   FROM pg_proc p
                  WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text) AND p.prokind IN ('f', 'p')
                    AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
                 UNION ALL
                 SELECT format('DROP TYPE IF EXISTS %s CASCADE', t.oid::regtype)
                   FROM pg_type t
                  WHERE t.typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1::text) AND t.typtype IN ('e', 'd', 'r', 'c')
                    AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
                    AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')",
                &[schema],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for drop in drops {
            target.batch_execute(&drop).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::adapt;

    #[test]
    fn dumps_apply_where_the_schema_exists() {
        let dump = "\\restrict abc\nSET lock_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\nCREATE SCHEMA public;\nCOMMENT ON SCHEMA public IS 'standard public schema';\nCREATE SCHEMA billing;\nCREATE TABLE public.t (id int);\n\\unrestrict abc\n";
        assert_eq!(
            adapt(dump),
            "SET LOCAL lock_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', true);\nCREATE SCHEMA IF NOT EXISTS public;\nCREATE SCHEMA IF NOT EXISTS billing;\nCREATE TABLE public.t (id int);\n"
        );
    }
}
