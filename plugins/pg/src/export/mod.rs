//! `pg:<db>:export`: tables and queries of a database into files, with a
//! manifest.
//!
//! Every file is read in one snapshot of the database (the first connection
//! exports it, the others take it, as `pg_dump -j` does), streamed to a
//! temporary name beside its target while its SHA-256 and records are
//! counted, and renamed into place only when every file of the export is
//! complete; the manifest is written last. A failed export leaves the
//! previous one as it was. An export whose files would be byte for byte
//! those of the manifest already there changes nothing.

mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flow_engine::flow_db::quote_ident;
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Params, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};
use futures_util::StreamExt as _;

pub struct Export;

static EXPORT: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Database,
    operation: "export",
    summary: "write tables or queries to CSV or GeoJSON files, with a manifest",
    params: &[
        ParamSpec::optional("tables", ParamType::Names, "the tables to export"),
        ParamSpec::optional(
            "sql",
            ParamType::Glob,
            "SQL files, one query each, exported under the file's name (`exports/*.sql`)",
        ),
        ParamSpec::optional(
            "schema",
            ParamType::Name,
            "the schema of `tables`, first on the queries' search path (default `public`)",
        ),
        ParamSpec::required(
            "to",
            ParamType::Path,
            "where each file goes, with `{table}` and run values: \"exports/{release}/{table}.csv\"",
        ),
        ParamSpec::optional(
            "format",
            ParamType::OneOf(&["csv", "geojson"]),
            "csv or geojson (default: from the extension of `to`)",
        ),
        ParamSpec::optional(
            "reproject",
            ParamType::Bool,
            "GeoJSON coordinates in WGS 84, as RFC 7946 asks (default false: the data's CRS, named in the file)",
        ),
        ParamSpec::optional(
            "geometry",
            ParamType::Name,
            "the GeoJSON geometry column (default: the first geometry column)",
        ),
        ParamSpec::optional(
            "manifest",
            ParamType::Path,
            "where the manifest goes (default `manifest.json` in the folder the files share)",
        ),
        ParamSpec::optional(
            "release",
            ParamType::String,
            "the release the export is of: `{release}` in paths and the manifest (`--var release=...` wins)",
        ),
        ParamSpec::optional(
            "jobs",
            ParamType::Count,
            "files written at the same time (default 4)",
        ),
    ],
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    GeoJson,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::GeoJson => "geojson",
        }
    }
}

/// An export's parameters, with their defaults.
struct Settings {
    database: String,
    schema: String,
    tables: Vec<String>,
    sql: Option<String>,
    to: String,
    format: Format,
    reproject: bool,
    geometry: Option<String>,
    manifest: Option<String>,
    release: Option<String>,
    jobs: usize,
}

impl Settings {
    fn parse(params: &Params, database: &str) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let to = params.str("to").unwrap_or_default().to_owned();
        let tables: Vec<String> = params
            .list("tables")
            .into_iter()
            .map(str::to_owned)
            .collect();
        let sql = params.str("sql").map(str::to_owned);
        if tables.is_empty() && sql.is_none() {
            problems.push(Problem {
                param: None,
                message: "an export needs `tables`, `sql`, or both".into(),
                help: Some("for example `tables = [parcels, zoning]`".into()),
            });
        }
        let named = flow_engine::placeholders(&to).contains(&"table");
        if (tables.len() > 1 || sql.is_some()) && !named {
            problems.push(Problem {
                param: Some("to"),
                message: format!("`{to}` would be the same file for every table"),
                help: Some("put `{table}` in the path: \"exports/{table}.csv\"".into()),
            });
        }
        let format = match params.str("format") {
            Some("geojson") => Some(Format::GeoJson),
            Some(_) => Some(Format::Csv),
            None => format_of(&to),
        };
        if format.is_none() {
            problems.push(Problem {
                param: Some("to"),
                message: format!("cannot tell the format from `{to}`"),
                help: Some(
                    "end it in `.csv` or `.geojson`, or say `format = csv` or `format = geojson`"
                        .into(),
                ),
            });
        }
        if params.count("jobs") == Some(0) {
            problems.push(Problem {
                param: Some("jobs"),
                message: "`jobs` must be at least 1".into(),
                help: None,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            database: database.to_owned(),
            schema: params.str("schema").unwrap_or("public").to_owned(),
            tables,
            sql,
            to,
            format: format.unwrap_or(Format::Csv),
            reproject: params.bool("reproject") == Some(true),
            geometry: params.str("geometry").map(str::to_owned),
            manifest: params.str("manifest").map(str::to_owned),
            release: params.str("release").map(str::to_owned),
            jobs: usize::try_from(params.count("jobs").unwrap_or(4).max(1)).unwrap_or(4),
        })
    }
}

/// The format a path's extension names.
fn format_of(path: &str) -> Option<Format> {
    let extension = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "csv" => Some(Format::Csv),
        "geojson" | "json" => Some(Format::GeoJson),
        _ => None,
    }
}

/// The part of a path template before its first placeholder, as a glob of
/// every file the step may write there.
fn written_glob(template: &str) -> String {
    match template.find('{') {
        Some(open) => match template[..open].rfind('/') {
            Some(slash) => format!("{}**", &template[..=slash]),
            None => "**".to_owned(),
        },
        None => template.to_owned(),
    }
}

impl Operation for Export {
    fn spec(&self) -> &'static OperationSpec {
        &EXPORT
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let settings = Settings::parse(step.params, step.target_database())?;
        let db = &settings.database;
        let mut prepared = Prepared::default();
        for table in &settings.tables {
            prepared = prepared.reads(Resource::table(db, &settings.schema, Some(table)));
        }
        if let Some(sql) = &settings.sql {
            prepared = prepared
                .reads(Resource::file(sql.clone()))
                .reads(Resource::table(db, &settings.schema, None));
        }
        prepared = prepared.writes(Resource::file(written_glob(&settings.to)));
        if let Some(manifest) = &settings.manifest {
            prepared = prepared.writes(Resource::file(written_glob(manifest)));
        }
        Ok(prepared.settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(export(context))
    }
}

inventory::submit!(Registration(&Export));

/// One file of an export: what it holds and where it goes.
pub(crate) struct Job {
    /// `{table}`: the table's name, or the SQL file's stem.
    pub name: String,
    /// A query giving the rows, or a table's qualified name.
    pub source: Source,
    pub path: PathBuf,
}

pub(crate) enum Source {
    Table(String),
    Query { sql: String, file: String },
}

impl Source {
    /// The rows as a query.
    pub fn query(&self) -> String {
        match self {
            Source::Table(table) => format!("SELECT * FROM {table}"),
            Source::Query { sql, .. } => sql.clone(),
        }
    }
}

/// The run's release: `--var release=...`, else the step's `release`.
fn release(context: &RunContext, settings: &Settings) -> Option<String> {
    context
        .vars
        .get("release")
        .cloned()
        .or_else(|| settings.release.clone())
}

fn jobs(context: &RunContext, settings: &Settings) -> Result<Vec<Job>, StepError> {
    let release = release(context, settings);
    let run = context.run.map(|run| run.to_string());
    let own = |name: &str| -> Vec<(&'static str, String)> {
        let mut own = vec![("table", name.to_owned())];
        own.extend(release.clone().map(|r| ("release", r)));
        own.extend(run.clone().map(|r| ("run", r)));
        own
    };
    let path = |name: &str| -> Result<PathBuf, StepError> {
        let own = own(name);
        let pairs: Vec<(&str, &str)> = own.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Ok(context.path(&context.fill(&settings.to, &pairs)?))
    };
    let mut jobs = Vec::new();
    for table in &settings.tables {
        jobs.push(Job {
            name: table.clone(),
            source: Source::Table(format!(
                "{}.{}",
                quote_ident(&settings.schema),
                quote_ident(table)
            )),
            path: path(table)?,
        });
    }
    if let Some(pattern) = &settings.sql {
        for file in context.files(pattern)? {
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&file).map_err(|e| {
                StepError::coded(
                    "flow::export::sql",
                    format!("cannot read `{}`: {e}", context.relative(&file)),
                    None,
                )
            })?;
            let sql = text.trim().trim_end_matches(';').trim_end().to_owned();
            if sql.is_empty() {
                return Err(StepError::coded(
                    "flow::export::sql",
                    format!("`{}` holds no query", context.relative(&file)),
                    Some("write one SELECT statement in it".into()),
                ));
            }
            jobs.push(Job {
                path: path(&name)?,
                name,
                source: Source::Query {
                    sql,
                    file: context.relative(&file),
                },
            });
        }
    }
    let mut seen = BTreeMap::new();
    for job in &jobs {
        if let Some(other) = seen.insert(job.path.clone(), job.name.clone()) {
            return Err(StepError::coded(
                "flow::export::same_file",
                format!(
                    "`{other}` and `{}` would both be written to `{}`",
                    job.name,
                    context.relative(&job.path)
                ),
                Some("give the SQL files names unlike the tables'".into()),
            ));
        }
    }
    Ok(jobs)
}

/// Where the manifest goes: `manifest`, else `manifest.json` in the deepest
/// folder every file is under.
fn manifest_path(
    context: &RunContext,
    settings: &Settings,
    jobs: &[Job],
) -> Result<PathBuf, StepError> {
    if let Some(template) = &settings.manifest {
        let release = release(context, settings);
        let own: Vec<(&str, &str)> = release.iter().map(|r| ("release", r.as_str())).collect();
        return Ok(context.path(&context.fill(template, &own)?));
    }
    let mut common: Option<PathBuf> = None;
    for job in jobs {
        let parent = job.path.parent().unwrap_or(Path::new("")).to_path_buf();
        common = Some(match common {
            None => parent,
            Some(so_far) => so_far
                .components()
                .zip(parent.components())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    Ok(common.unwrap_or_default().join("manifest.json"))
}

async fn export(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &Settings = context.settings()?;
    let database = context.database(&settings.database)?;
    let jobs = jobs(context, settings)?;
    let manifest = manifest_path(context, settings, &jobs)?;
    // One snapshot for every file: the first connection holds it open.
    // One snapshot shared by the readers: behind a pooler, on the server's
    // own URL when the flow gives one.
    let mut holder = database.direct_client().await?;
    let snapshot = crate::snapshot::begin(&mut holder, None).await?;
    let id = crate::snapshot::export(&snapshot).await?;
    let streams = settings
        .jobs
        .min(database.pool_size().saturating_sub(1))
        .max(1);
    context
        .progress
        .units_total
        .fetch_add(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let options = write::Options {
        schema: &settings.schema,
        snapshot: &id,
        format: settings.format,
        reproject: settings.reproject,
        geometry: settings.geometry.as_deref(),
    };
    let pending: Vec<_> = jobs
        .iter()
        .map(|job| write::one(context, database, job, &options))
        .collect();
    let mut results = futures_util::stream::iter(pending).buffered(streams);
    let mut written = Vec::new();
    while let Some(result) = results.next().await {
        written.push(result?);
        context
            .progress
            .units_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    drop(results);
    drop(snapshot);
    let rows: u64 = written.iter().map(|w| w.rows).sum();
    let bytes: u64 = written.iter().map(|w| w.bytes).sum();
    let base = manifest.parent().unwrap_or(Path::new("")).to_path_buf();
    let files: Vec<serde_json::Value> = jobs
        .iter()
        .zip(&written)
        .map(|(job, w)| {
            let mut file = serde_json::json!({
                "file": relative_to(&job.path, &base),
                "name": job.name,
                "format": settings.format.name(),
                "rows": w.rows,
                "bytes": w.bytes,
                "sha256": w.sha256,
            });
            if let Source::Query { file: sql, .. } = &job.source {
                file["query"] = sql.clone().into();
            }
            file
        })
        .collect();
    let shown = context.relative(&manifest);
    if same_as_before(&manifest, &files) {
        return Ok(Outcome {
            rows,
            bytes: 0,
            note: Some(format!(
                "{} file(s), {rows} rows, unchanged since `{shown}`",
                files.len()
            )),
            unchanged: true,
        });
    }
    for w in written {
        w.commit()?;
    }
    let document = serde_json::json!({
        "release": release(context, settings),
        "run": context.run,
        "database": settings.database,
        "files": files,
    });
    let text = serde_json::to_vec_pretty(&document).unwrap_or_default();
    flow_engine::write_atomically(&manifest, &text).await?;
    Ok(Outcome {
        rows,
        bytes,
        note: Some(format!(
            "{} file(s), {rows} rows, {bytes} bytes; manifest `{shown}`",
            files.len()
        )),
        unchanged: false,
    })
}

/// A path relative to the manifest's folder, with `/` between parts.
fn relative_to(path: &Path, base: &Path) -> String {
    let relative = path.strip_prefix(base).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the manifest already there lists these very files (names, rows,
/// checksums) and they are all on disk as it says.
fn same_as_before(manifest: &Path, files: &[serde_json::Value]) -> bool {
    let Some(before) = std::fs::read(manifest)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    else {
        return false;
    };
    let base = manifest.parent().unwrap_or(Path::new(""));
    before
        .get("files")
        .and_then(|f| f.as_array())
        .map(Vec::as_slice)
        == Some(files)
        && files.iter().all(|file| {
            let name = file["file"].as_str().unwrap_or_default();
            std::fs::metadata(base.join(name))
                .is_ok_and(|m| Some(m.len()) == file["bytes"].as_u64())
        })
}

#[cfg(test)]
mod tests {
    use super::{Format, format_of, written_glob};

    #[test]
    fn the_format_comes_from_the_extension() {
        assert_eq!(format_of("exports/{table}.csv"), Some(Format::Csv));
        assert_eq!(format_of("exports/{table}.GeoJSON"), Some(Format::GeoJson));
        assert_eq!(format_of("exports/{table}.txt"), None);
    }

    #[test]
    fn placeholders_widen_what_is_written() {
        assert_eq!(written_glob("exports/{release}/{table}.csv"), "exports/**");
        assert_eq!(written_glob("{table}.csv"), "**");
        assert_eq!(written_glob("out/parcels.csv"), "out/parcels.csv");
    }
}
