//! What the source database holds: the tables of the copied schemas, their
//! columns, keys, foreign keys and sequences, read in the copy's snapshot.

use std::collections::BTreeMap;

use flow_engine::flow_db::DbError;
use flow_engine::flow_db::tokio_postgres::Transaction;

#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    /// `format_type`: `character varying(40)`, `public.mood`, `geometry(Point,4326)`.
    pub sql_type: String,
    /// The base type's name in `pg_type` (`varchar`, `int4`, `text`, ...).
    pub base: String,
    /// For `varchar(n)` and `char(n)`, `n`.
    pub length: Option<i32>,
    pub not_null: bool,
    /// Whether its values travel in COPY's binary format between two
    /// databases: the type has binary I/O and its values carry no type
    /// OIDs (arrays of user types and composites do, and OIDs differ
    /// between databases).
    pub binary: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub schema: String,
    pub name: String,
    /// Columns written by COPY: generated columns are left out.
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// Its size in pages, as the statistics last saw it.
    pub pages: i64,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            flow_engine::flow_db::quote_ident(&self.schema),
            flow_engine::flow_db::quote_ident(&self.name)
        )
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A foreign key between two copied tables, by their index in the list.
#[derive(Debug, Clone)]
pub(crate) struct ForeignKey {
    pub child: usize,
    pub child_columns: Vec<String>,
    pub parent: usize,
    pub parent_columns: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub tables: Vec<Table>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Sequences of the copied schemas, qualified, with their state.
    pub sequences: Vec<(String, i64, bool)>,
    /// Extensions of the source (not plpgsql).
    pub extensions: Vec<String>,
}

impl Catalog {
    /// The table a rule names: by name in the first copied schema that has
    /// one of that name, or `schema.table`.
    pub fn find(&self, name: &str, schemas: &[String]) -> Option<usize> {
        if let Some((schema, table)) = name.split_once('.') {
            return self
                .tables
                .iter()
                .position(|t| t.schema == schema && t.name == table);
        }
        schemas.iter().find_map(|schema| {
            self.tables
                .iter()
                .position(|t| &t.schema == schema && t.name == name)
        })
    }
}

pub(crate) async fn read(source: &Transaction<'_>, schemas: &[String]) -> Result<Catalog, DbError> {
    let mut catalog = Catalog::default();
    let rows = source
        .query(
            "SELECT n.nspname, c.relname, c.oid, c.relpages::bigint
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname::text = ANY($1::text[]) AND c.relkind IN ('r', 'p')
                AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
              ORDER BY array_position($1::text[], n.nspname::text), c.relname",
            &[&schemas],
        )
        .await?;
    let mut oids = BTreeMap::new();
    for row in rows {
        let oid: u32 = row.get(2);
        oids.insert(oid, catalog.tables.len());
        catalog.tables.push(Table {
            schema: row.get(0),
            name: row.get(1),
            columns: Vec::new(),
            primary_key: Vec::new(),
            pages: row.get(3),
        });
    }
    let oid_list: Vec<u32> = oids.keys().copied().collect();
    for row in source
        .query(
            "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod),
                    bt.typname::text, a.atttypmod, a.attnotnull,
                    bt.typsend::oid <> 0 AND bt.typreceive::oid <> 0 AND bt.typtype <> 'c'
                      AND NOT (bt.typcategory = 'A' AND bt.typelem >= 16384)
               FROM pg_attribute a
               JOIN pg_type t ON t.oid = a.atttypid
               JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
              WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attgenerated = ''
              ORDER BY a.attrelid, a.attnum",
            &[&oid_list],
        )
        .await?
    {
        let oid: u32 = row.get(0);
        let base: String = row.get(3);
        let typmod: i32 = row.get(4);
        let length = (matches!(base.as_str(), "varchar" | "bpchar") && typmod > 4).then(|| typmod - 4);
        if let Some(&index) = oids.get(&oid) {
            catalog.tables[index].columns.push(Column {
                name: row.get(1),
                sql_type: row.get(2),
                base,
                length,
                not_null: row.get(5),
                binary: row.get(6),
            });
        }
    }
    for row in source
        .query(
            "SELECT c.contype::text, c.conrelid, c.confrelid,
                    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
                    ARRAY(SELECT a.attname::text FROM unnest(coalesce(c.confkey, '{}')) WITH ORDINALITY k(n, i)
                          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
               FROM pg_constraint c
              WHERE c.conrelid = ANY($1::oid[]) AND c.contype IN ('p', 'f')",
            &[&oid_list],
        )
        .await?
    {
        let kind: String = row.get(0);
        let child: u32 = row.get(1);
        let parent: u32 = row.get(2);
        let columns: Vec<String> = row.get(3);
        let Some(&child) = oids.get(&child) else {
            continue;
        };
        if kind == "p" {
            catalog.tables[child].primary_key = columns;
        } else if let Some(&parent) = oids.get(&parent) {
            catalog.foreign_keys.push(ForeignKey {
                child,
                child_columns: columns,
                parent,
                parent_columns: row.get(4),
            });
        }
    }
    let sequences: Vec<String> = source
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname::text = ANY($1::text[]) AND c.relkind = 'S'
                AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
              ORDER BY 1",
            &[&schemas],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for sequence in sequences {
        let row = source
            .query_one(
                &format!("SELECT last_value, is_called FROM {sequence}"),
                &[],
            )
            .await?;
        catalog.sequences.push((sequence, row.get(0), row.get(1)));
    }
    catalog.extensions = source
        .query(
            "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY oid",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(catalog)
}
