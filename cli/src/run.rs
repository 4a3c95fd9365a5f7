//! `flow run`: resolve the environment, bring up the databases, execute.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flow_db::{Cluster, Database, Lease, Location};
use flow_engine::executor::{self, Event, Options, Shared, Status};
use flow_engine::{Environment, Pipeline, Registry, Resource};
use tokio_util::sync::CancellationToken;

use crate::args::{RunArgs, SelectArgs};
use crate::exit::Exit;
use crate::{load, output};

pub fn run(file: &Path, select: &SelectArgs, args: &RunArgs, registry: &Registry) -> Exit {
    let Some(pipeline) = load::load(file, registry) else {
        return Exit::Invalid;
    };
    let selected = match select.selection().apply(&pipeline) {
        Ok(selected) => selected,
        Err(errors) => {
            errors.into_iter().for_each(output::error);
            return Exit::Invalid;
        }
    };
    let base = base_dir(file);
    let environment = match resolve_environment(&pipeline, &base, args.env.as_deref()) {
        Ok(environment) => environment,
        Err(error) => {
            output::error(error);
            return Exit::Invalid;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            output::note(&format!("cannot start the runtime: {error}"));
            return Exit::Failure;
        }
    };
    runtime.block_on(execute(&pipeline, &selected, &environment, &base, args))
}

/// The directory a flow's relative paths start from: the flow file's.
pub fn base_dir(file: &Path) -> PathBuf {
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf())
}

pub fn resolve_environment(
    pipeline: &Pipeline,
    base: &Path,
    flag: Option<&str>,
) -> Result<Environment, flow_engine::EnvironmentError> {
    let name = flow_engine::environment_name(flag);
    flow_engine::load_env_files(base, &name)?;
    Environment::resolve(pipeline, &name)
}

/// The databases the selected steps touch.
fn databases_needed(pipeline: &Pipeline, selected: &[bool]) -> BTreeSet<String> {
    let mut needed = BTreeSet::new();
    for (step, _) in pipeline.steps.iter().zip(selected).filter(|(_, s)| **s) {
        for (_, resource) in &step.prepared.accesses {
            match resource {
                Resource::Table { database, .. }
                | Resource::Types { database }
                | Resource::Extensions { database } => {
                    needed.insert(database.clone());
                }
                Resource::File { .. } | Resource::Objects { .. } => {}
            }
        }
    }
    needed
}

async fn execute(
    pipeline: &Pipeline,
    selected: &[bool],
    environment: &Environment,
    base: &Path,
    args: &RunArgs,
) -> Exit {
    let cancel = CancellationToken::new();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    spawn_signal_handler(cancel.clone(), Arc::clone(&interrupted));

    let needed = databases_needed(pipeline, selected);
    let mut lease: Option<Lease> = None;
    if needed.iter().any(|db| {
        environment
            .databases
            .get(db)
            .is_some_and(Location::is_embedded)
    }) {
        let state = base.join(".flow");
        let started = tokio::task::spawn_blocking(move || {
            Cluster::new(&state).and_then(|cluster| cluster.lease())
        })
        .await;
        match started {
            Ok(Ok(held)) => lease = Some(held),
            Ok(Err(error)) => {
                output::error(error);
                return Exit::Failure;
            }
            Err(error) => {
                output::note(&format!("cannot start the embedded cluster: {error}"));
                return Exit::Failure;
            }
        }
    }
    let mut databases = BTreeMap::new();
    for name in &needed {
        let Some(location) = environment.databases.get(name) else {
            continue;
        };
        let cluster = lease.as_ref().map(|l| (l.cluster(), l.port));
        match Database::connect(name, location, cluster, args.db_connections).await {
            Ok(database) => {
                databases.insert(name.clone(), database);
            }
            Err(error) => {
                output::error(error);
                return Exit::Failure;
            }
        }
    }
    let shared = Shared {
        base_dir: base.to_path_buf(),
        databases: Arc::new(databases),
        storages: Arc::new(environment.storages.clone()),
    };
    let options = Options {
        jobs: args.jobs,
        keep_going: args.keep_going,
        ..Options::default()
    };
    let count = selected.iter().filter(|s| **s).count();
    output::note(&format!(
        "running {count} {} of `{}` in environment `{}`",
        if count == 1 { "step" } else { "steps" },
        pipeline.name,
        environment.name
    ));
    let results = executor::execute(pipeline, selected, &shared, &options, &cancel, |event| {
        report(pipeline, event)
    })
    .await;
    drop(shared);
    drop(lease);
    let failed = results
        .values()
        .filter(|r| matches!(r.status, Status::Failed(_)))
        .count();
    let succeeded = results.values().filter(|r| r.succeeded()).count();
    output::note(&format!(
        "{succeeded} succeeded, {failed} failed, {} not run",
        results.len() - succeeded - failed
    ));
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        Exit::Interrupted
    } else if succeeded == results.len() {
        Exit::Success
    } else {
        Exit::Failure
    }
}

fn report(pipeline: &Pipeline, event: Event<'_>) {
    match event {
        Event::Started { step, .. } => output::note(&format!("start {}", pipeline.steps[step].id)),
        Event::Retrying {
            step,
            attempt,
            error,
            delay,
        } => output::note(&format!(
            "retry {} (attempt {} failed: {}; next in {})",
            pipeline.steps[step].id,
            attempt,
            error.report,
            executor::humanize(delay)
        )),
        Event::Finished { step, result } => {
            let id = &pipeline.steps[step].id;
            let took = executor::humanize(result.duration);
            match &result.status {
                Status::Succeeded(outcome) => {
                    let note = outcome
                        .note
                        .as_deref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default();
                    output::note(&format!("done  {id} ({took}){note}"));
                }
                Status::Failed(error) => {
                    output::note(&format!("FAIL  {id} ({took})"));
                    output::report(&error.report);
                }
                Status::Cancelled => output::note(&format!("stop  {id} (cancelled after {took})")),
                Status::NotRun => output::note(&format!("skip  {id} (not run)")),
            }
        }
    }
}

fn spawn_signal_handler(
    cancel: CancellationToken,
    interrupted: Arc<std::sync::atomic::AtomicBool>,
) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
        output::note("interrupted: cancelling the running steps");
        cancel.cancel();
    });
}
