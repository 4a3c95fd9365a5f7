//! `flow schedule`: the engine's scheduler over flow files, its notes and
//! runs shown on stderr; and `flow schedule list`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flow_engine::run::Observer;
use flow_engine::scheduler::{self, Hooks, Scheduled};
use flow_engine::{Pipeline, Registry};
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::display::Display;
use crate::exit::Exit;
use crate::run::block_on;
use crate::{load, output};

/// Loads the flows, and before any thread starts, the files of every
/// environment their records and schedules use.
fn load_all(files: &[PathBuf], env: Option<&str>, registry: &Registry) -> Option<Vec<Scheduled>> {
    let mut flows = Vec::new();
    for file in files {
        let flow = load::flow(file, registry)?;
        let envs = flow.pipeline.schedules.iter().map(|s| s.env.as_deref());
        for name in std::iter::once(env).chain(envs) {
            if let Err(error) = flow.load_env_files(name) {
                output::error(error);
                return None;
            }
        }
        flows.push(Scheduled {
            flow: Arc::new(flow),
            env: env.map(str::to_owned),
        });
    }
    Some(flows)
}

pub fn list(files: &[PathBuf], env: Option<&str>, json: bool, registry: &Registry) -> Exit {
    let Some(flows) = load_all(files, env, registry) else {
        return Exit::Invalid;
    };
    block_on(async move {
        let now = Timestamp::now();
        let mut text = format!(
            "{:<12} {:<16} {:<26} {:<12} {:<26}\n",
            "flow", "schedule", "last fire (UTC)", "result", "next fire (UTC)"
        );
        let mut jobs_json = Vec::new();
        for flow in &flows {
            let (jobs, unread) = scheduler::jobs(flow, now).await;
            if let Some(error) = unread {
                output::note(&format!(
                    "{}: run history not read: {error}",
                    flow.flow.file.display()
                ));
            }
            for job in jobs {
                let when = |at: Option<Timestamp>| {
                    at.map_or_else(|| "-".into(), |at| at.strftime("%F %T").to_string())
                };
                text.push_str(&format!(
                    "{:<12} {:<16} {:<26} {:<12} {:<26}\n",
                    job.flow,
                    job.job,
                    when(job.last_fire),
                    job.result.as_deref().unwrap_or("-"),
                    when(job.next_fire),
                ));
                jobs_json.push(serde_json::json!({
                    "flow": job.flow,
                    "job": job.job,
                    "last_fire": job.last_fire.map(|at| at.to_string()),
                    "result": job.result,
                    "next_fire": job.next_fire.map(|at| at.to_string()),
                }));
            }
        }
        if json {
            output::out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&jobs_json).unwrap_or_default()
            ));
        } else {
            output::out(&text);
        }
        Exit::Success
    })
}

/// Notes on stderr; each scheduled run shown in plain lines.
pub(crate) struct Terminal;

impl Hooks for Terminal {
    fn note(&self, text: &str) {
        output::note(text);
    }

    fn observer(&self, pipeline: &Arc<Pipeline>) -> Box<dyn Observer> {
        Box::new(Display::new(Arc::clone(pipeline), false, true))
    }
}

pub fn serve(files: &[PathBuf], tick_ms: u64, env: Option<&str>, registry: &Registry) -> Exit {
    if files.is_empty() {
        output::note(
            "name the flow files whose schedules to run: `flow schedule flows/parcels.flow`",
        );
        return Exit::Invalid;
    }
    let Some(flows) = load_all(files, env, registry) else {
        return Exit::Invalid;
    };
    if flows.iter().all(|f| f.flow.pipeline.schedules.is_empty()) {
        output::note("these flows have no `schedule` blocks");
        return Exit::Invalid;
    }
    block_on(async move {
        let stop = CancellationToken::new();
        let _ = crate::run::cancel_on_signal(stop.clone(), "stopping: cancelling running runs");
        let tick = Duration::from_millis(tick_ms.max(50));
        let served = scheduler::serve(flows, tick, stop, Arc::new(Terminal)).await;
        output::note("scheduler stopped");
        if served { Exit::Success } else { Exit::Failure }
    })
}
