//! `flow db`: the embedded cluster by hand.

use std::path::{Path, PathBuf};

use flow_db::{Cluster, ClusterStatus};

use crate::args::DbAction;
use crate::exit::Exit;
use crate::output;

pub fn db(action: &DbAction) -> Exit {
    let (path, database) = match action {
        DbAction::Up { path } | DbAction::Down { path } | DbAction::Status { path } => {
            (path, "flow")
        }
        DbAction::Url { path, database } => (path, database.as_str()),
    };
    let state = state_dir(path.as_deref());
    let cluster = match Cluster::new(&state) {
        Ok(cluster) => cluster,
        Err(error) => {
            output::error(error);
            return Exit::Failure;
        }
    };
    let result = match action {
        DbAction::Up { .. } => cluster.up().map(|port| {
            output::note(&format!(
                "embedded cluster up on 127.0.0.1:{port}; it stays up until `flow db down`"
            ));
        }),
        DbAction::Down { .. } => cluster
            .down()
            .map(|()| output::note("embedded cluster stopped")),
        DbAction::Status { .. } => {
            match cluster.status() {
                ClusterStatus::NotCreated => output::out("not created\n"),
                ClusterStatus::Stopped => output::out(&format!(
                    "stopped (data in {})\n",
                    cluster.data_dir().display()
                )),
                ClusterStatus::Running { port } => {
                    output::out(&format!(
                        "running on 127.0.0.1:{port} (data in {})\n",
                        cluster.data_dir().display()
                    ));
                }
            }
            Ok(())
        }
        DbAction::Url { .. } => match cluster.status() {
            ClusterStatus::Running { port } => {
                output::out(&format!("{}\n", cluster.url(port, database)));
                output::note(&format!(
                    "the password is in {}: PGPASSFILE={} psql \"$(flow db url)\"",
                    cluster.pgpass().display(),
                    cluster.pgpass().display()
                ));
                Ok(())
            }
            _ => {
                output::note("the embedded cluster is not running: start it with `flow db up`");
                return Exit::Failure;
            }
        },
    };
    match result {
        Ok(()) => Exit::Success,
        Err(error) => {
            output::error(error);
            Exit::Failure
        }
    }
}

/// `.flow/` beside the flow file, or in the folder given, or in the current one.
fn state_dir(path: Option<&Path>) -> PathBuf {
    match path {
        Some(path) if path.is_dir() => path.join(".flow"),
        Some(path) => flow_engine::base_dir(path).join(".flow"),
        None => PathBuf::from(".flow"),
    }
}
