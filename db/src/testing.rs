//! The harness every database test uses: one embedded cluster per test run,
//! started by the same code as the embedded default and shared by all test
//! processes, and a fresh database per test, dropped when the test ends.
//!
//! The cluster lives in `$FLOW_TEST_STATE` (default: a folder under the system
//! temporary directory) and stays up between tests; `scripts/test` stops it at
//! the end with `flow db down`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Cluster, DbError, Location, quote_ident};

/// Where the shared test cluster keeps its state.
pub fn state_dir() -> PathBuf {
    std::env::var_os("FLOW_TEST_STATE").map_or_else(
        || std::env::temp_dir().join("flow-test-cluster").join(".flow"),
        PathBuf::from,
    )
}

/// The shared cluster, started if needed, and its port.
pub fn cluster() -> Result<(Cluster, u16), DbError> {
    let cluster = Cluster::new(&state_dir())?;
    let port = cluster.up()?;
    Ok((cluster, port))
}

/// A database that exists for the length of one test.
pub struct TestDatabase {
    pub name: String,
    cluster: Cluster,
    port: u16,
}

impl TestDatabase {
    /// Creates a database named after `prefix`, the process and a counter, so
    /// that tests can run in parallel.
    pub async fn create(prefix: &str) -> Result<Self, DbError> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let (cluster, port) =
            tokio::task::spawn_blocking(cluster)
                .await
                .map_err(|e| DbError::Command {
                    command: "start the test cluster".into(),
                    reason: e.to_string(),
                })??;
        let name = format!(
            "t_{}_{}_{}",
            prefix
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(24)
                .collect::<String>(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
        .to_lowercase();
        let admin = admin(&cluster, port).await?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&name)))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await?;
        Ok(Self {
            name,
            cluster,
            port,
        })
    }

    /// The database's URL, password included, for the programs under test.
    /// With `FLOW_TEST_POOLER=PORT`, the URL of a pooler in transaction mode
    /// on that port in front of the cluster (`pool_mode=transaction`): the
    /// suite run through PgBouncer (tests that need a session then fail).
    pub fn url(&self) -> String {
        let password = self.cluster.password().unwrap_or_default();
        let pooler = std::env::var("FLOW_TEST_POOLER")
            .ok()
            .and_then(|port| port.parse::<u16>().ok());
        let (port, mode) = match pooler {
            Some(port) => (port, "&pool_mode=transaction"),
            None => (self.port, ""),
        };
        format!(
            "postgres://{}:{password}@127.0.0.1:{port}/{}?sslmode=disable{mode}",
            crate::cluster::SUPERUSER,
            self.name
        )
    }

    /// The database's URL for another role of the cluster.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{}?sslmode=disable",
            self.port, self.name
        )
    }

    /// The database as GDAL names it (`PG:host=... dbname=...`), for `ogr2ogr`.
    pub fn gdal_connection(&self) -> String {
        let password = self.cluster.password().unwrap_or_default();
        format!(
            "PG:host=127.0.0.1 port={} dbname={} user={} password={password}",
            self.port,
            self.name,
            crate::cluster::SUPERUSER
        )
    }

    pub fn location(&self) -> Location {
        Location::Url(self.url())
    }

    /// A plain connection, for a test to set up and inspect.
    pub async fn client(&self) -> Result<tokio_postgres::Client, DbError> {
        let (client, connection) = self
            .cluster
            .config(self.port, &self.name)?
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

async fn admin(cluster: &Cluster, port: u16) -> Result<tokio_postgres::Client, DbError> {
    let (client, connection) = cluster
        .config(port, "postgres")?
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (cluster, port, name) = (self.cluster.clone(), self.port, self.name.clone());
        // Drop may run inside a runtime; a thread with its own runtime can block.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = admin(&cluster, port).await {
                    let _ = admin
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            quote_ident(&name)
                        ))
                        .await;
                }
            });
        })
        .join();
    }
}
