//! `shp:convert`: ESRI shapefiles to CSV, with all attributes and one geometry
//! column (hex EWKB with SRID, or WKT). Files convert in parallel on rayon's
//! threads, each streamed record by record (memory stays flat), each written
//! under a temporary name and renamed when complete.

mod convert;
mod dbf;
mod geometry;
mod load;
mod numeric;
mod open;
mod prj;
mod shapes;

use std::path::PathBuf;

use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
};
use rayon::prelude::*;

pub struct Convert;

static CONVERT: OperationSpec = OperationSpec {
    tool: "shp",
    target: Target::None,
    operation: "convert",
    summary: "convert shapefiles into CSV files with a geometry column",
    params: &[
        ParamSpec::required(
            "from",
            ParamType::Glob,
            "the shapefiles, like \"data/raw/**/*.shp\"",
        ),
        ParamSpec::required("to", ParamType::Path, "the folder for the CSV files"),
        ParamSpec::optional(
            "geometry",
            ParamType::OneOf(&["ewkb", "wkt"]),
            "how geometry is written (default `ewkb`)",
        ),
        ParamSpec::optional("srid", ParamType::Count, "the SRID, overriding the .prj"),
        ParamSpec::optional(
            "encoding",
            ParamType::String,
            "the .dbf's text encoding, overriding its .cpg and language driver byte",
        ),
        SKIP_FAILURES,
    ],
};

/// `skip_failures`: the parameter of both operations that lets a glob's good
/// files through when others fail.
pub(crate) const SKIP_FAILURES: ParamSpec = ParamSpec::optional(
    "skip_failures",
    ParamType::Bool,
    "go on with the files that can be read and report the others as warnings (default false: one bad file fails the step, after the others are done)",
);

/// The end of a step over many files: with failures, an error naming each
/// file (or, with `skip_failures = true`, a warning each).
pub(crate) fn failed_files(
    context: &RunContext,
    verb: &str,
    failures: Vec<String>,
    warnings: &mut Vec<String>,
    help: &str,
) -> Result<(), StepError> {
    if failures.is_empty() {
        return Ok(());
    }
    if context.settings::<Settings>()?.skip_failures {
        warnings.extend(failures.into_iter().map(|f| format!("skipped {f}")));
        return Ok(());
    }
    Err(StepError::coded(
        "flow::shp::convert",
        format!("cannot {verb} {}", failures.join("; ")),
        Some(format!(
            "{help}; `skip_failures = true` goes on with the files that can be read"
        )),
    ))
}

/// What the shapefile operations share of their parameters: how to read the
/// files, and whether a file that cannot be read is skipped.
#[derive(Clone)]
pub(crate) struct Settings {
    pub from: String,
    /// `to` for `shp:convert`, `schema` for `shp:load`.
    pub to: String,
    pub options: open::Options,
    pub skip_failures: bool,
    /// The database (`shp:load`; the flow database by default).
    pub database: String,
}

impl Settings {
    /// The parameters of a step, with their defaults; `wkt` for the
    /// geometry column as text (`shp:convert`'s `geometry = wkt`).
    fn parse(step: &StepContext<'_>, to: String, wkt: bool) -> Result<Self, Vec<Problem>> {
        check_encoding(step)?;
        let params = step.params;
        Ok(Self {
            from: params.str("from").unwrap_or_default().to_owned(),
            to,
            options: open::Options {
                wkt,
                srid: params.count("srid").and_then(|s| u32::try_from(s).ok()),
                encoding: params.str("encoding").map(str::to_owned),
            },
            skip_failures: params.bool("skip_failures") == Some(true),
            database: params.database().to_owned(),
        })
    }
}

/// An `encoding` parameter must name one the reader knows.
fn check_encoding(step: &StepContext<'_>) -> Result<(), Vec<Problem>> {
    match step.params.str("encoding") {
        Some(encoding) if dbf::Encoding::from_label(encoding).is_none() => Err(vec![Problem {
            param: Some("encoding"),
            message: format!("unknown encoding `{encoding}`"),
            help: Some(
                "write it as a .cpg would: `UTF-8`, `1252`, `ISO-8859-1`, `852`, `ANSI 1251`, `LDID/87`, ...".into(),
            ),
        }]),
        _ => Ok(()),
    }
}

impl Operation for Convert {
    fn spec(&self) -> &'static OperationSpec {
        &CONVERT
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let to = step.params.str("to").unwrap_or_default().to_owned();
        let wkt = step.params.str("geometry") == Some("wkt");
        let settings = Settings::parse(step, to, wkt)?;
        Ok(Prepared::default()
            .reads(Resource::file(&settings.from))
            .writes(Resource::file(format!(
                "{}/**/*.csv",
                settings.to.trim_end_matches('/')
            )))
            .settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(run(context))
    }
}

async fn run(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &Settings = context.settings()?;
    let from = settings.from.clone();
    let files = context.files(&from)?;
    let base = context.base_dir().to_path_buf();
    let to = context.path(&settings.to);
    // The folder part of the glob before any wildcard: what stays of a
    // file's path below it is kept below `to`.
    let literal = &from[..from.find(['*', '?', '[']).unwrap_or(from.len())];
    let root = base.join(&literal[..literal.rfind('/').map_or(0, |i| i + 1)]);
    let options = settings.options.clone();
    let jobs: Vec<(PathBuf, PathBuf)> = files
        .into_iter()
        .map(|shp| {
            let out = to.join(
                shp.strip_prefix(&root)
                    .unwrap_or(&shp)
                    .with_extension("csv"),
            );
            (shp, out)
        })
        .collect();
    let cancel = context.cancel.clone();
    let progress = std::sync::Arc::clone(&context.progress);
    progress
        .units_total
        .store(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let results = tokio::task::spawn_blocking(move || {
        jobs.par_iter()
            .map(|(shp, out)| {
                if cancel.is_cancelled() {
                    return (shp.clone(), Err("cancelled".to_owned()));
                }
                let converted = convert::convert(shp, out, &options);
                progress
                    .units_done
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (shp.clone(), converted)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| StepError::coded("flow::shp::convert", e.to_string(), None))?;
    let (mut records, mut bytes, mut warnings, mut failures) = (0, 0, Vec::new(), Vec::new());
    for (shp, result) in results {
        let name = context.relative(&shp);
        match result {
            Ok(done) => {
                records += done.records;
                bytes += done.bytes;
                for warning in done.warnings {
                    warnings.push(format!("`{name}`: {warning}"));
                }
            }
            Err(error) => failures.push(format!("`{name}`: {error}")),
        }
    }
    context.progress.add_rows(records);
    failed_files(
        context,
        "convert",
        failures,
        &mut warnings,
        "the other files were converted; no half-written CSV is left",
    )?;
    let mut note = format!("{records} records");
    if !warnings.is_empty() {
        note.push_str(&format!("; warning: {}", warnings.join("; ")));
    }
    Ok(Outcome {
        rows: records,
        bytes,
        note: Some(note),
        unchanged: false,
    })
}

inventory::submit!(Registration(&Convert));
