//! `flow serve`: the flows over HTTP, through the engine's run API (see
//! `flow_server`); Ctrl-C or SIGTERM stop it, cancelling the runs it started.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flow_engine::Registry;
use flow_engine::scheduler::{self, Scheduled};
use tokio_util::sync::CancellationToken;

use crate::exit::Exit;
use crate::run::{block_on, cancel_on_signal};
use crate::{load, output};

pub fn serve(
    paths: &[PathBuf],
    options: flow_server::Options,
    schedule: bool,
    registry: &Registry,
) -> Exit {
    let env = options.env.as_deref();
    let files = match flow_files(paths) {
        Ok(files) => files,
        Err(error) => {
            output::error(error);
            return Exit::Invalid;
        }
    };
    let mut flows = Vec::new();
    for file in &files {
        let Some(flow) = load::flow(file, registry) else {
            return Exit::Invalid;
        };
        // Before any thread starts: nothing writes the environment later.
        let envs = flow.pipeline.schedules.iter().map(|s| s.env.as_deref());
        for name in std::iter::once(env).chain(envs) {
            if let Err(error) = flow.load_env_files(name) {
                output::error(error);
                return Exit::Invalid;
            }
        }
        flows.push(Arc::new(flow));
    }
    block_on(async move {
        let stop = CancellationToken::new();
        let _ = cancel_on_signal(stop.clone(), "stopping: cancelling the runs started here");
        output::note(&format!(
            "serving {} {} on {}://{}",
            flows.len(),
            if flows.len() == 1 { "flow" } else { "flows" },
            if options.tls.is_some() {
                "https"
            } else {
                "http"
            },
            options.bind
        ));
        let scheduler = schedule.then(|| {
            let scheduled = flows
                .iter()
                .map(|flow| Scheduled {
                    flow: Arc::clone(flow),
                    env: options.env.clone(),
                })
                .collect();
            let tick = std::time::Duration::from_secs(1);
            tokio::spawn(scheduler::serve(
                scheduled,
                tick,
                stop.clone(),
                Arc::new(crate::schedule::Terminal),
            ))
        });
        let served = flow_server::serve(flows, options, stop.clone()).await;
        stop.cancel();
        if let Some(scheduler) = scheduler {
            let _ = scheduler.await;
        }
        match served {
            Ok(()) => Exit::Success,
            Err(error) => {
                output::error(error);
                Exit::Failure
            }
        }
    })
}

/// A folder stands for its `*.flow` files, in name order.
fn flow_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, crate::cli_error::CliError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let listed = std::fs::read_dir(path).map_err(|e| folder_error(path, &e.to_string()))?;
        let mut found: Vec<PathBuf> = listed
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|e| e == "flow"))
            .collect();
        if found.is_empty() {
            return Err(folder_error(path, "it holds no `.flow` file"));
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

fn folder_error(path: &Path, reason: &str) -> crate::cli_error::CliError {
    crate::cli_error::CliError::Read {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    }
}
