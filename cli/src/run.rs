//! `flow run`: the engine runs the flow; this shows it and says how it ended.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flow_engine::Registry;
use flow_engine::executor::Options;
use flow_engine::run::{self, RunEnd, RunRequest, RunStatus};
use tokio_util::sync::CancellationToken;

use crate::args::{RunArgs, SelectArgs};
use crate::display::Display;
use crate::exit::Exit;
use crate::{load, output};

pub fn run(file: &Path, select: &SelectArgs, args: &RunArgs, registry: &Registry) -> Exit {
    if let (true, Some(key)) = (args.register, &args.attach) {
        return register(file, select, args, key, registry);
    }
    let Some(flow) = load::flow(file, registry) else {
        return Exit::Invalid;
    };
    let selected = match select.selection().apply(&flow.pipeline) {
        Ok(selected) => selected,
        Err(errors) => {
            errors.into_iter().for_each(output::error);
            return Exit::Invalid;
        }
    };
    let Some(environment) = load::environment(&flow, args.env.as_deref()) else {
        return Exit::Invalid;
    };
    let request = RunRequest {
        selected,
        selection: describe_selection(select, args),
        vars: args.vars.clone(),
        options: Options {
            jobs: args.jobs,
            keep_going: args.keep_going,
            force: args.force,
            ..Options::default()
        },
        resume: args.resume,
        db_connections: args.db_connections,
        attach: args.attach.clone(),
    };
    block_on(async {
        let cancel = CancellationToken::new();
        let interrupted =
            cancel_on_signal(cancel.clone(), "interrupted: cancelling the running steps");
        let display = Display::new(Arc::clone(&flow.pipeline), args.json, args.plain);
        let (end, _) = run::start(Arc::new(flow), environment, request, display, cancel)
            .finish()
            .await;
        if interrupted.load(Ordering::SeqCst) {
            Exit::Interrupted
        } else {
            exit(end)
        }
    })
}

/// The exit code of a run's end, its error printed.
pub fn exit(end: RunEnd) -> Exit {
    match end.status {
        Ok(RunStatus::Succeeded) => Exit::Success,
        Ok(_) => Exit::Failure,
        Err(error) if error.is_invalid() => {
            output::error(error);
            Exit::Invalid
        }
        Err(error) => {
            output::error(error);
            Exit::Failure
        }
    }
}

pub fn block_on(work: impl Future<Output = Exit>) -> Exit {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(error) => {
            output::note(&format!("cannot start the runtime: {error}"));
            Exit::Failure
        }
    }
}

/// `flow run --attach KEY --register`: the selected steps recorded in the
/// run as pending, none run.
fn register(
    file: &Path,
    select: &SelectArgs,
    args: &RunArgs,
    key: &str,
    registry: &Registry,
) -> Exit {
    load::with_records(
        file,
        args.env.as_deref(),
        registry,
        async |records, flow| {
            let pipeline = &flow.pipeline;
            let selected = match select.selection().apply(pipeline) {
                Ok(selected) => selected,
                Err(errors) => {
                    errors.into_iter().for_each(output::error);
                    return Exit::Invalid;
                }
            };
            let ids: Vec<String> = pipeline
                .steps
                .iter()
                .zip(&selected)
                .filter(|(_, s)| **s)
                .map(|(step, _)| step.key.clone())
                .collect();
            let opened = records
                .open_run(
                    &pipeline.name,
                    &flow.file.display().to_string(),
                    &flow_engine::environment_name(args.env.as_deref()),
                    &describe_selection(select, args),
                    &ids,
                    &flow_engine::vars_key(&args.vars),
                    Some(key),
                )
                .await;
            match opened {
                Ok(run) => {
                    output::note(&format!(
                        "run {run}: {} step(s) of `{}` registered for `{key}`",
                        ids.len(),
                        pipeline.name
                    ));
                    Exit::Success
                }
                Err(error) => {
                    output::error(error);
                    Exit::Failure
                }
            }
        },
    )
}

fn describe_selection(select: &SelectArgs, args: &RunArgs) -> String {
    // An attached run is known by its key; each process adds its steps.
    if let Some(key) = &args.attach {
        return format!("--attach {key}");
    }
    let mut parts = Vec::new();
    for (flag, values) in [
        ("--group", &select.groups),
        ("--step", &select.steps),
        ("--from", &select.from),
        ("--until", &select.until),
        ("--exclude", &select.exclude),
    ] {
        parts.extend(values.iter().map(|v| format!("{flag} {v}")));
    }
    if args.resume {
        parts.push("--resume".into());
    }
    if args.force {
        parts.push("--force".into());
    }
    parts.extend(
        args.vars
            .iter()
            .map(|(name, value)| format!("--var {name}={value}")),
    );
    parts.join(" ")
}

/// Cancels `cancel` on Ctrl-C or SIGTERM, saying so with `message`; returns
/// whether a signal came.
pub fn cancel_on_signal(cancel: CancellationToken, message: &'static str) -> Arc<AtomicBool> {
    let signalled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&signalled);
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
        flag.store(true, Ordering::SeqCst);
        output::note(message);
        cancel.cancel();
    });
    signalled
}
