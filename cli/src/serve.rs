//! `flow serve`: the flows over HTTP, through the engine's run API (see
//! `flow_server`); Ctrl-C or SIGTERM stop it, cancelling the runs it started.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use flow_engine::Registry;
use flow_engine::scheduler::{self, Scheduled};
use tokio_util::sync::CancellationToken;

use crate::exit::Exit;
use crate::run::{block_on, cancel_on_signal};
use crate::{load, output};

pub fn serve(
    files: &[PathBuf],
    bind: SocketAddr,
    env: Option<&str>,
    schedule: bool,
    registry: &Registry,
) -> Exit {
    let mut flows = Vec::new();
    for file in files {
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
            "serving {} {} on http://{bind}",
            flows.len(),
            if flows.len() == 1 { "flow" } else { "flows" }
        ));
        let scheduler = schedule.then(|| {
            let scheduled = flows
                .iter()
                .map(|flow| Scheduled {
                    flow: Arc::clone(flow),
                    env: env.map(str::to_owned),
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
        let served = flow_server::serve(flows, env.map(str::to_owned), bind, stop.clone()).await;
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
