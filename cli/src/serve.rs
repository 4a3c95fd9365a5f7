//! `flow serve`: the flows over HTTP, through the engine's run API (see
//! `flow_server`); Ctrl-C or SIGTERM stop it, cancelling the runs it started.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use flow_engine::Registry;
use tokio_util::sync::CancellationToken;

use crate::exit::Exit;
use crate::run::{block_on, cancel_on_signal};
use crate::{load, output};

pub fn serve(files: &[PathBuf], bind: SocketAddr, env: Option<&str>, registry: &Registry) -> Exit {
    let mut flows = Vec::new();
    for file in files {
        let Some(flow) = load::flow(file, registry) else {
            return Exit::Invalid;
        };
        // Before any thread starts: nothing writes the environment later.
        if let Err(error) = flow.load_env_files(env) {
            output::error(error);
            return Exit::Invalid;
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
        match flow_server::serve(flows, env.map(str::to_owned), bind, stop).await {
            Ok(()) => Exit::Success,
            Err(error) => {
                output::error(error);
                Exit::Failure
            }
        }
    })
}
