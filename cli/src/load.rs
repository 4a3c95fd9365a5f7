use std::collections::BTreeSet;
use std::path::Path;

use crate::cli_error::CliError;
use crate::output;
use flow_engine::{Environment, FlowFile, Pipeline, Records, Registry, Session};

use crate::exit::Exit;

/// [`load`], kept with the folder its paths start from.
pub fn flow(path: &Path, registry: &Registry) -> Option<FlowFile> {
    load(path, registry).map(|pipeline| FlowFile::new(path, pipeline))
}

/// The environment `flag` names, its files loaded first (before any thread
/// starts); `None` when it cannot be resolved, the error printed.
pub fn environment(flow: &FlowFile, flag: Option<&str>) -> Option<Environment> {
    match flow
        .load_env_files(flag)
        .and_then(|()| flow.environment(flag))
    {
        Ok(environment) => Some(environment),
        Err(error) => {
            output::error(error);
            None
        }
    }
}

/// Reads, parses and compiles a flow, printing every diagnostic on the way.
/// `None` when anything was wrong.
pub fn load(path: &Path, registry: &Registry) -> Option<Pipeline> {
    let display = path.display().to_string();
    let source = read(path)?;
    let parsed = flow_dsl::parse(&source);
    if !parsed.errors.is_empty() {
        let count = parsed.errors.len();
        output::diagnostics(&display, &source, parsed.errors);
        summary(&display, count);
        return None;
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Tools the flow uses that no built-in plugin has: `flow-<tool>`
    // executables beside the flow or on PATH.
    let tools: BTreeSet<String> = parsed
        .flow
        .items
        .iter()
        .filter_map(|item| match item {
            flow_dsl::ast::Item::Step(step) => step.operation.first().map(|t| t.name.clone()),
            _ => None,
        })
        .collect();
    let (registry, broken) =
        flow_plugins::with_executables(registry, &flow_engine::base_dir(path), &tools);
    if !broken.is_empty() {
        let count = broken.len();
        broken.into_iter().for_each(output::error);
        summary(&display, count);
        return None;
    }
    match flow_engine::compile(&parsed.flow, &registry, &stem) {
        Ok(pipeline) => Some(pipeline),
        Err(errors) => {
            let count = errors.len();
            output::diagnostics(&display, &source, errors);
            summary(&display, count);
            None
        }
    }
}

/// Opens the databases `needed` (by name) of `file`'s environment, runs
/// `work` with them, then closes them.
pub fn with_session(
    file: &Path,
    env: Option<&str>,
    registry: &Registry,
    needed: impl FnOnce(&FlowFile) -> Result<BTreeSet<String>, CliError>,
    work: impl AsyncFnOnce(&Session, &FlowFile) -> Exit,
) -> Exit {
    let Some(flow) = flow(file, registry) else {
        return Exit::Invalid;
    };
    let needed = match needed(&flow) {
        Ok(needed) => needed,
        Err(error) => {
            output::error(error);
            return Exit::Invalid;
        }
    };
    let Some(environment) = environment(&flow, env) else {
        return Exit::Invalid;
    };
    crate::run::block_on(async move {
        let session = match Session::open(&environment, &flow.base, &needed, 2, &[]).await {
            Ok(session) => session,
            Err(error) => {
                output::error(error);
                return Exit::Failure;
            }
        };
        let exit = work(&session, &flow).await;
        session.close().await;
        exit
    })
}

/// Runs `work` with the records of the flow database of `file`'s
/// environment (made on first use), then closes them.
pub fn with_records(
    file: &Path,
    env: Option<&str>,
    registry: &Registry,
    work: impl AsyncFnOnce(&Records, &FlowFile) -> Exit,
) -> Exit {
    let needed = |_: &FlowFile| Ok(BTreeSet::from([flow_engine::FLOW_DATABASE.to_owned()]));
    with_session(file, env, registry, needed, async |session, flow| {
        let opened = match session.database(flow_engine::FLOW_DATABASE) {
            Ok(database) => Records::open(database).await,
            Err(error) => Err(error),
        };
        match opened {
            Ok(records) => work(&records, flow).await,
            Err(error) => {
                output::error(error);
                Exit::Failure
            }
        }
    })
}

pub fn read(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(source) => Some(source),
        Err(error) => {
            output::error(CliError::Read {
                path: path.display().to_string(),
                reason: error.to_string(),
            });
            None
        }
    }
}

fn summary(path: &str, count: usize) {
    let problems = if count == 1 { "problem" } else { "problems" };
    output::note(&format!("{path}: {count} {problems}"));
}
