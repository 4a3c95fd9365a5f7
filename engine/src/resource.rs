//! What steps read and write, and which steps must therefore wait for which.
//!
//! A step that reads or writes something waits for the steps that create it; a
//! step that reads something waits for the steps that write it. Files are globs:
//! two overlap when one's literal directory contains the other's and their
//! literal file-name endings agree (`data/csv/**` written, `data/csv/*.csv` read).
//! This is a deliberate over-approximation: a wrong extra edge costs parallelism,
//! a missing edge costs correctness.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

/// Something a step reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// Files matching a glob, relative to the flow's directory.
    File { glob: String },
    /// A table, or every table of a schema when `table` is `None`.
    Table {
        database: String,
        schema: String,
        table: Option<String>,
    },
    /// The custom types (enums, domains, composites) of a database.
    Types { database: String },
    /// The extensions of a database.
    Extensions { database: String },
    /// Objects under a prefix of a storage.
    Objects { storage: String, prefix: String },
}

impl Resource {
    pub fn file(glob: impl Into<String>) -> Self {
        let glob: String = glob.into();
        Resource::File {
            glob: glob.trim_start_matches("./").to_owned(),
        }
    }

    /// Every file under a directory.
    pub fn directory(dir: &str) -> Self {
        Resource::file(format!("{}/**", dir.trim_end_matches('/')))
    }

    pub fn table(database: &str, schema: &str, table: Option<&str>) -> Self {
        Resource::Table {
            database: database.to_owned(),
            schema: schema.to_owned(),
            table: table.map(str::to_owned),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::File { glob } => write!(f, "files `{glob}`"),
            Resource::Table {
                database,
                schema,
                table: Some(table),
            } => write!(f, "table `{database}.{schema}.{table}`"),
            Resource::Table {
                database, schema, ..
            } => write!(f, "tables `{database}.{schema}.*`"),
            Resource::Types { database } => write!(f, "the custom types of `{database}`"),
            Resource::Extensions { database } => write!(f, "the extensions of `{database}`"),
            Resource::Objects { storage, prefix } => write!(f, "objects `{storage}/{prefix}`"),
        }
    }
}

/// How a step touches a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Defines it (creates the tables, the types).
    Create,
    /// Fills it.
    Write,
    Read,
}

impl Access {
    /// Whether a step accessing with `self` must wait for one accessing with `earlier`.
    fn waits_for(self, earlier: Access) -> bool {
        matches!(
            (earlier, self),
            (Access::Create, Access::Write | Access::Read) | (Access::Write, Access::Read)
        )
    }

    pub fn verb(self) -> &'static str {
        match self {
            Access::Create => "creates",
            Access::Write => "writes",
            Access::Read => "reads",
        }
    }
}

/// The key under which a resource is indexed: resources that can overlap share
/// a key's prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    File {
        dir: String,
    },
    Table {
        database: String,
        schema: String,
        table: Option<String>,
    },
    Whole {
        kind: u8,
        name: String,
        prefix: String,
    },
}

fn key(resource: &Resource) -> Key {
    match resource {
        Resource::File { glob } => Key::File {
            dir: literal_dir(glob),
        },
        Resource::Table {
            database,
            schema,
            table,
        } => Key::Table {
            database: database.clone(),
            schema: schema.clone(),
            table: table.clone(),
        },
        Resource::Types { database } => Key::Whole {
            kind: 0,
            name: database.clone(),
            prefix: String::new(),
        },
        Resource::Extensions { database } => Key::Whole {
            kind: 1,
            name: database.clone(),
            prefix: String::new(),
        },
        Resource::Objects { storage, prefix } => Key::Whole {
            kind: 2,
            name: storage.clone(),
            prefix: prefix.clone(),
        },
    }
}

/// The directory part of a glob before its first wildcard, with a trailing `/`.
fn literal_dir(glob: &str) -> String {
    let literal = &glob[..glob.find(['*', '?', '[', '{']).unwrap_or(glob.len())];
    match literal.rfind('/') {
        Some(slash) => literal[..=slash].to_owned(),
        None if glob.contains(['*', '?', '[', '{']) => String::new(),
        None => String::new(),
    }
}

/// The literal ending of a glob's last segment after its last wildcard (`.csv`).
fn literal_suffix(glob: &str) -> &str {
    let last = glob.rsplit('/').next().unwrap_or(glob);
    match last.rfind(['*', '?', ']', '}']) {
        Some(i) => &last[i + 1..],
        None => last,
    }
}

fn files_overlap(a: &str, b: &str) -> bool {
    let (dir_a, dir_b) = (literal_dir(a), literal_dir(b));
    if !(dir_a.starts_with(&dir_b) || dir_b.starts_with(&dir_a)) {
        return false;
    }
    let has_wild = |g: &str| g.contains(['*', '?', '[', '{']);
    if !has_wild(a) && !has_wild(b) {
        return a == b;
    }
    let (sa, sb) = (literal_suffix(a), literal_suffix(b));
    // `dir/**` or `dir/*` end in a wildcard and match any ending.
    sa.ends_with(sb) || sb.ends_with(sa)
}

pub(crate) fn overlaps(a: &Resource, b: &Resource) -> bool {
    match (a, b) {
        (Resource::File { glob: a }, Resource::File { glob: b }) => files_overlap(a, b),
        (
            Resource::Table {
                database: da,
                schema: sa,
                table: ta,
            },
            Resource::Table {
                database: db,
                schema: sb,
                table: tb,
            },
        ) => da == db && sa == sb && (ta.is_none() || tb.is_none() || ta == tb),
        (
            Resource::Objects {
                storage: a,
                prefix: pa,
            },
            Resource::Objects {
                storage: b,
                prefix: pb,
            },
        ) => a == b && (pa.starts_with(pb.as_str()) || pb.starts_with(pa.as_str())),
        _ => a == b,
    }
}

type Entry<'a> = (usize, Access, &'a Resource);

/// Whether a file glob has a wildcard.
fn is_wild(glob: &str) -> bool {
    glob.contains(['*', '?', '[', '{'])
}

/// An index of who touches what, to find every step's dependencies without
/// comparing every pair of steps.
#[derive(Default)]
pub(crate) struct ResourceIndex<'a> {
    by_key: BTreeMap<Key, Vec<Entry<'a>>>,
    /// File writes by the literal directory before their first wildcard:
    /// those with a wildcard, and plain paths.
    files: BTreeMap<String, (Vec<Entry<'a>>, Vec<Entry<'a>>)>,
    /// File writes without a wildcard, by path: a plain path read is found
    /// among thousands in one folder without comparing it with each.
    exact: HashMap<&'a str, Vec<Entry<'a>>>,
}

impl<'a> ResourceIndex<'a> {
    /// Records that `step` touches `resource`. Reads are not recorded: nothing
    /// waits for a reader.
    pub fn insert(&mut self, step: usize, access: Access, resource: &'a Resource) {
        if access == Access::Read {
            return;
        }
        let entry = (step, access, resource);
        match resource {
            Resource::File { glob } => {
                let (wild, plain) = self.files.entry(literal_dir(glob)).or_default();
                if is_wild(glob) {
                    wild.push(entry);
                } else {
                    plain.push(entry);
                    self.exact.entry(glob.as_str()).or_default().push(entry);
                }
            }
            _ => self.by_key.entry(key(resource)).or_default().push(entry),
        }
    }

    /// The steps that `step`, touching `resource` with `access`, must wait for,
    /// with how they touch it.
    pub fn upstream(
        &self,
        step: usize,
        access: Access,
        resource: &Resource,
        mut found: impl FnMut(usize, Access, &'a Resource),
    ) {
        let mut visit = |entries: &Vec<Entry<'a>>| {
            for &(other, other_access, other_resource) in entries {
                if other != step
                    && access.waits_for(other_access)
                    && overlaps(resource, other_resource)
                {
                    found(other, other_access, other_resource);
                }
            }
        };
        match key(resource) {
            Key::File { dir } => {
                // A plain path meets plain paths only when equal.
                let wild = matches!(resource, Resource::File { glob } if is_wild(glob));
                let mut visit_dir = |entries: &(Vec<Entry<'a>>, Vec<Entry<'a>>)| {
                    visit(&entries.0);
                    if wild {
                        visit(&entries.1);
                    }
                };
                // Directories that contain this one, then those inside it.
                let mut ancestor = dir.clone();
                loop {
                    if let Some(entries) = self.files.get(&ancestor) {
                        visit_dir(entries);
                    }
                    if ancestor.is_empty() {
                        break;
                    }
                    ancestor.pop();
                    ancestor.truncate(ancestor.rfind('/').map_or(0, |i| i + 1));
                }
                for (inner, entries) in self.files.range(dir.clone()..) {
                    if !inner.starts_with(&dir) {
                        break;
                    }
                    if inner != &dir {
                        visit_dir(entries);
                    }
                }
                if let Resource::File { glob } = resource
                    && !wild
                    && let Some(entries) = self.exact.get(glob.as_str())
                {
                    visit(entries);
                }
            }
            Key::Table {
                database,
                schema,
                table: Some(table),
            } => {
                for table in [Some(table), None] {
                    let key = Key::Table {
                        database: database.clone(),
                        schema: schema.clone(),
                        table,
                    };
                    if let Some(entries) = self.by_key.get(&key) {
                        visit(entries);
                    }
                }
            }
            Key::Table {
                database, schema, ..
            } => {
                let start = Key::Table {
                    database: database.clone(),
                    schema: schema.clone(),
                    table: None,
                };
                for (key, entries) in self.by_key.range(start..) {
                    match key {
                        Key::Table {
                            database: d,
                            schema: s,
                            ..
                        } if d == &database && s == &schema => visit(entries),
                        _ => break,
                    }
                }
            }
            Key::Whole { kind, name, .. } => {
                let start = Key::Whole {
                    kind,
                    name: name.clone(),
                    prefix: String::new(),
                };
                for (key, entries) in self.by_key.range(start..) {
                    match key {
                        Key::Whole {
                            kind: k, name: n, ..
                        } if *k == kind && n == &name => {
                            visit(entries);
                        }
                        _ => break,
                    }
                }
            }
        }
    }
}

/// Checks a file glob, for operations that take globs inside lists.
pub fn check_glob(glob: &str) -> Result<(), String> {
    glob::Pattern::new(glob)
        .map(|_| ())
        .map_err(|e| e.msg.to_owned())
}

/// A table written `schema.table` or `schema.*`, in `database`.
pub fn table_ref(database: &str, text: &str) -> Result<Resource, String> {
    let valid =
        |part: &str| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_');
    match text.split_once('.') {
        Some((schema, "*")) if valid(schema) => Ok(Resource::table(database, schema, None)),
        Some((schema, table)) if valid(schema) && valid(table) => {
            Ok(Resource::table(database, schema, Some(table)))
        }
        _ => Err(format!("`{text}` is not a table")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_globs_overlap_by_directory_and_ending() {
        assert!(files_overlap("data/csv/**", "data/csv/*.csv"));
        assert!(files_overlap("data/raw/**", "data/raw/**/*.shp"));
        assert!(files_overlap("data/**/*.csv", "data/csv/parcels.csv"));
        assert!(!files_overlap("data/csv/**/*.csv", "data/raw/**/*.shp"));
        assert!(!files_overlap("data/csv/*.csv", "data/csv/*.shp"));
        assert!(!files_overlap("a.sql", "b.sql"));
        assert!(files_overlap("flows/types.sql", "flows/types.sql"));
    }

    #[test]
    fn a_reader_finds_writers_in_enclosing_and_inner_directories() {
        let writes_all = Resource::directory("data");
        let writes_csv = Resource::file("data/csv/**/*.csv");
        let writes_other = Resource::file("elsewhere/*.csv");
        let mut index = ResourceIndex::default();
        index.insert(0, Access::Write, &writes_all);
        index.insert(1, Access::Write, &writes_csv);
        index.insert(2, Access::Write, &writes_other);
        let mut found = Vec::new();
        index.upstream(
            3,
            Access::Read,
            &Resource::file("data/csv/*.csv"),
            |s, _, _| {
                found.push(s);
            },
        );
        found.sort_unstable();
        assert_eq!(found, [0, 1]);
    }

    #[test]
    fn readers_wait_for_writers_and_everyone_for_creators() {
        assert!(Access::Read.waits_for(Access::Write));
        assert!(Access::Write.waits_for(Access::Create));
        assert!(!Access::Write.waits_for(Access::Write));
        assert!(!Access::Create.waits_for(Access::Read));
    }
}
