//! The databases of a run or a command: the embedded cluster when one is needed, and
//! a pool per database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::environment::Environment;
use crate::pipeline::Pipeline;
use crate::resource::Resource;
use flow_db::{Cluster, Database, DbError, Lease, Location};

/// Open connections, and the lease that keeps the embedded cluster up while
/// they are in use. Dropping it stops a cluster this process started.
pub struct Session {
    pub databases: BTreeMap<String, Database>,
    lease: Option<Lease>,
}

impl Session {
    /// Connects to the `needed` databases of the environment, starting the
    /// embedded cluster (under `base/.flow`) if one of them lives there;
    /// every connection carries the run's values (`vars`) as `flow.<name>`.
    pub async fn open(
        environment: &Environment,
        base: &Path,
        needed: &BTreeSet<String>,
        pool_size: usize,
        vars: &[(String, String)],
    ) -> Result<Self, DbError> {
        let mut lease = None;
        if needed.iter().any(|db| {
            environment
                .databases
                .get(db)
                .is_some_and(Location::is_embedded)
        }) {
            let state = base.join(".flow");
            let held = tokio::task::spawn_blocking(move || {
                Cluster::new(&state).and_then(|cluster| cluster.lease())
            })
            .await
            .map_err(|e| DbError::Command {
                command: "start the embedded cluster".into(),
                reason: e.to_string(),
            })??;
            lease = Some(held);
        }
        let mut databases = BTreeMap::new();
        for name in needed {
            let Some(location) = environment.databases.get(name) else {
                continue;
            };
            let cluster = lease.as_ref().map(|l: &Lease| (l.cluster(), l.port));
            databases.insert(
                name.clone(),
                Database::connect_with(name, location, cluster, pool_size, vars).await?,
            );
        }
        Ok(Self { databases, lease })
    }

    /// An open database by name.
    pub fn database(&self, name: &str) -> Result<&Database, DbError> {
        self.databases.get(name).ok_or_else(|| DbError::Command {
            command: format!("use database `{name}`"),
            reason: "it is not connected in this session".into(),
        })
    }

    /// Closes the pools, then lets the cluster go (off the async threads, as
    /// stopping it waits for the server).
    pub async fn close(mut self) {
        self.databases.clear();
        if let Some(lease) = self.lease.take() {
            let _ = tokio::task::spawn_blocking(move || drop(lease)).await;
        }
    }
}

/// The databases the selected steps touch, and `flow` for the run records.
pub fn databases_needed(pipeline: &Pipeline, selected: &[bool]) -> BTreeSet<String> {
    let mut needed = BTreeSet::from(["flow".to_owned()]);
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

/// Which database a connection really reaches: its location (no password)
/// and the database's OID, so that a recreated database counts as changed.
pub async fn identities(
    session: &Session,
    environment: &Environment,
) -> Result<std::collections::HashMap<String, String>, DbError> {
    let mut identities = std::collections::HashMap::new();
    for (name, database) in &session.databases {
        let client = database.client().await?;
        let oid: u32 = client
            .query_one(
                "SELECT oid FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await?
            .get(0);
        identities.insert(name.clone(), format!("{} #{oid}", database.location));
    }
    for (name, url) in &environment.storages {
        identities.insert(name.clone(), flow_db::redact(url));
    }
    Ok(identities)
}
