use std::str::FromStr as _;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::SslMode;

use crate::{Client, Cluster, DbError, Location, tls};

/// A pool of connections to one database of the flow.
#[derive(Clone)]
pub struct Database {
    /// The database's name in the flow (`flow`, `api`).
    pub name: String,
    pub location: Location,
    pool: Pool,
    /// How to open a connection of its own (`listen`).
    config: tokio_postgres::Config,
    verify: bool,
    /// Behind a pooler in transaction mode: the run's values, which each
    /// transaction sets for itself (a pooler refuses them at connection
    /// start), and the server's own URL for what needs a session.
    pooled: Option<Pooled>,
}

#[derive(Clone)]
struct Pooled {
    values: std::sync::Arc<Vec<(String, String)>>,
    direct: Option<Direct>,
}

/// The server behind the pooler: its config and a pool of sessions.
#[derive(Clone)]
struct Direct {
    config: tokio_postgres::Config,
    verify: bool,
    pool: Pool,
}

/// The run's values as server options at connection start
/// (`-c flow.name=value`, blanks and backslashes escaped as libpq's options
/// expect).
fn with_values(config: &mut tokio_postgres::Config, settings: &[(String, String)]) {
    if settings.is_empty() {
        return;
    }
    let escape = |text: &str| text.replace('\\', "\\\\").replace(' ', "\\ ");
    let options: Vec<String> = settings
        .iter()
        .map(|(name, value)| format!("-c flow.{}={}", escape(name), escape(value)))
        .collect();
    let existing = config.get_options().map(str::to_owned);
    let joined = existing
        .into_iter()
        .chain(options)
        .collect::<Vec<_>>()
        .join(" ");
    config.options(&joined);
}

/// A pool of connections to `config`. A connection to a pooler in
/// transaction mode (`once`) is used for one checkout and closed:
/// tokio-postgres keeps, per connection, the statement it learns unknown
/// types with (an enum, a geometry), which stays on the server it was
/// prepared on; a fresh connection learns again, inside its transaction.
/// Connecting to a pooler costs no server connection.
fn pool_of(
    config: &tokio_postgres::Config,
    verify: bool,
    size: usize,
    once: bool,
    name: &str,
    location: &Location,
) -> Result<Pool, DbError> {
    let manager = Manager::from_config(
        config.clone(),
        tls::connector(verify),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager);
    if once {
        builder = builder.pre_recycle(deadpool_postgres::Hook::sync_fn(|_, _| {
            Err(deadpool_postgres::HookError::message(
                "a pooler's connection is used once",
            ))
        }));
    }
    builder
        .max_size(size.max(1))
        .wait_timeout(Some(Duration::from_secs(600)))
        .create_timeout(Some(Duration::from_secs(30)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Connect {
            name: name.to_owned(),
            location: location.to_string(),
            reason: e.to_string(),
            help: None,
        })
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({} at {})", self.name, self.location)
    }
}

impl Database {
    /// Connects, creating the database first when it is embedded and missing.
    /// `port` is the embedded cluster's, when there is one.
    pub async fn connect(
        name: &str,
        location: &Location,
        cluster: Option<(&Cluster, u16)>,
        pool_size: usize,
    ) -> Result<Self, DbError> {
        Self::connect_with(name, location, cluster, pool_size, &[]).await
    }

    /// Connects with `settings` (name, value) set on every connection of the
    /// pool as `flow.<name>` (a run's values: `current_setting('flow.item')`
    /// in any SQL of any step).
    pub async fn connect_with(
        name: &str,
        location: &Location,
        cluster: Option<(&Cluster, u16)>,
        pool_size: usize,
        settings: &[(String, String)],
    ) -> Result<Self, DbError> {
        let (mut config, verify) = match location {
            Location::Embedded { database } => {
                let Some((cluster, port)) = cluster else {
                    return Err(DbError::Connect {
                        name: name.to_owned(),
                        location: location.to_string(),
                        reason: "the embedded cluster is not running".into(),
                        help: None,
                    });
                };
                create_if_missing(cluster, port, database).await?;
                (cluster.config(port, database)?, false)
            }
            Location::Url(url) | Location::Pooled { url, .. } => config_from_url(url)?,
        };
        let pooled = match location {
            Location::Pooled { direct, .. } => {
                let direct = match direct {
                    Some(url) => {
                        let (mut config, verify) = config_from_url(url)?;
                        with_values(&mut config, settings);
                        let pool = pool_of(&config, verify, pool_size, false, name, location)?;
                        Some(Direct {
                            config,
                            verify,
                            pool,
                        })
                    }
                    None => None,
                };
                Some(Pooled {
                    values: std::sync::Arc::new(settings.to_vec()),
                    direct,
                })
            }
            _ => {
                with_values(&mut config, settings);
                None
            }
        };
        let pool = pool_of(&config, verify, pool_size, pooled.is_some(), name, location)?;
        let database = Database {
            name: name.to_owned(),
            location: location.clone(),
            pool,
            config,
            verify,
            pooled,
        };
        // Fail now, with a clear message, rather than in the middle of a step.
        drop(database.client().await?);
        Ok(database)
    }

    /// How to reach a session of this database for `purpose`: the URL's
    /// server, or behind a pooler in transaction mode its `direct` URL; with
    /// none, an error that names the setting.
    fn session_config(&self, purpose: &str) -> Result<(&tokio_postgres::Config, bool), DbError> {
        match &self.pooled {
            None => Ok((&self.config, self.verify)),
            Some(Pooled {
                direct: Some(direct),
                ..
            }) => Ok((&direct.config, direct.verify)),
            Some(Pooled { direct: None, .. }) => Err(DbError::SessionNeeded {
                name: self.name.clone(),
                purpose: purpose.to_owned(),
            }),
        }
    }

    /// A pooled connection that keeps its server for as long as it is held,
    /// for work whose transactions wait on each other (`purpose`): from the
    /// pool, or behind a pooler in transaction mode from the `direct` URL's.
    /// Taken out of the pool ([`Client::take`]), it is a session of its own
    /// that ends when dropped (session advisory locks).
    pub async fn session_client(&self, purpose: &str) -> Result<Client, DbError> {
        self.session_config(purpose)?;
        self.direct_client().await
    }

    /// A connection for work whose transactions may wait on each other but
    /// need no session: behind a pooler in transaction mode, from the
    /// `direct` URL's pool when there is one (else through the pooler,
    /// which must then lend a server to each), otherwise from the pool.
    pub async fn direct_client(&self) -> Result<Client, DbError> {
        match &self.pooled {
            Some(Pooled {
                direct: Some(direct),
                ..
            }) => {
                let object = direct.pool.get().await.map_err(|e| self.pool_error(&e))?;
                Ok(Client::new(object, None))
            }
            _ => self.client().await,
        }
    }

    async fn connect_session(
        &self,
        purpose: &str,
    ) -> Result<(tokio_postgres::Client, tls::Connection), DbError> {
        let (config, verify) = self.session_config(purpose)?;
        config
            .connect(tls::connector(verify))
            .await
            .map_err(|e| DbError::Connect {
                name: self.name.clone(),
                location: self.location.to_string(),
                reason: describe(&e),
                help: None,
            })
    }

    /// The libpq environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
    /// `PGDATABASE`, `PGSSLMODE`) that points a client program (`pg_dump`,
    /// for `purpose`) at a session of this database (as
    /// [`Database::session`]), so that no secret is on its command line.
    pub fn session_env(&self, purpose: &str) -> Result<Vec<(&'static str, String)>, DbError> {
        let (config, verify) = self.session_config(purpose)?;
        Ok(libpq_env(config, verify))
    }

    /// The notifications sent on `channels` (channel, payload), from a
    /// connection of its own (a pool's connections drop them), until the
    /// receiver is dropped or the connection breaks (the channel closes).
    pub async fn listen(
        &self,
        channels: &[String],
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<(String, String)>, DbError> {
        let (client, mut connection) = self.connect_session("listen for notifications").await?;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let watcher = sender.clone();
        tokio::spawn(async move {
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match message {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        let sent = (n.channel().to_owned(), n.payload().to_owned());
                        if sender.send(sent).is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        });
        let statements: Vec<String> = channels
            .iter()
            .map(|c| format!("LISTEN {};", quote_ident(c)))
            .collect();
        client.batch_execute(&statements.join(" ")).await?;
        // The connection lives while someone listens.
        tokio::spawn(async move {
            watcher.closed().await;
            drop(client);
        });
        Ok(receiver)
    }

    /// A connection from the pool.
    pub async fn client(&self) -> Result<Client, DbError> {
        let object = self.pool.get().await.map_err(|e| self.pool_error(&e))?;
        let values = self.pooled.as_ref().map(|p| p.values.clone());
        Ok(Client::new(object, values))
    }

    /// Why a connection could not be had, with what to check.
    fn pool_error(&self, error: &deadpool_postgres::PoolError) -> DbError {
        let reason = match error {
            deadpool_postgres::PoolError::Backend(e) => describe(e),
            other => other.to_string(),
        };
        let help = if reason.contains("unsupported startup parameter") {
            Some(format!(
                "a pooler (PgBouncer) does not pass the run's values on at connection start: add `pool_mode=transaction` to the URL of `{}`, and flow sets them in each transaction",
                self.name
            ))
        } else if reason.contains("password") {
            Some(format!(
                "check the user and password of database `{}`",
                self.name
            ))
        } else if reason.contains("does not exist") {
            Some("create the database, or check the name in the URL".into())
        } else {
            Some("is the server running, and reachable from here?".into())
        };
        DbError::Connect {
            name: self.name.clone(),
            location: self.location.to_string(),
            reason,
            help,
        }
    }

    pub fn pool_size(&self) -> usize {
        self.pool.status().max_size
    }
}

fn libpq_env(config: &tokio_postgres::Config, verify: bool) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        let host = match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        };
        env.push(("PGHOST", host));
    }
    if let Some(port) = config.get_ports().first() {
        env.push(("PGPORT", port.to_string()));
    }
    if let Some(user) = config.get_user() {
        env.push(("PGUSER", user.to_owned()));
    }
    if let Some(password) = config.get_password() {
        env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
    }
    if let Some(name) = config.get_dbname() {
        env.push(("PGDATABASE", name.to_owned()));
    }
    let mode = match config.get_ssl_mode() {
        SslMode::Disable => "disable",
        SslMode::Require if verify => "verify-full",
        SslMode::Require => "require",
        _ => "prefer",
    };
    env.push(("PGSSLMODE", mode.to_owned()));
    env
}

/// The server's message when there is one, without the library's wrapping.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let text = error.to_string();
            match std::error::Error::source(error) {
                Some(source) if !text.contains(&source.to_string()) => format!("{text}: {source}"),
                _ => text,
            }
        }
    }
}

async fn create_if_missing(cluster: &Cluster, port: u16, database: &str) -> Result<(), DbError> {
    let config = cluster.config(port, "postgres")?;
    let (client, connection) =
        config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| DbError::Connect {
                name: database.to_owned(),
                location: format!("embedded cluster on port {port}"),
                reason: describe(&e),
                help: None,
            })?;
    let task = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await?
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(database)))
            .await
        {
            Ok(()) => tracing::info!(database, "created database in the embedded cluster"),
            // Another process created it at the same time.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

/// A connection config from a URL, completed from the libpq environment.
/// `verify-ca` and `verify-full` become `require` plus certificate checks.
fn config_from_url(raw: &str) -> Result<(tokio_postgres::Config, bool), DbError> {
    let invalid = |reason: String| DbError::Location {
        value: crate::location::redact(raw),
        reason,
    };
    let mut url = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    let mut sslmode = None;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == "pool_mode" {
                None
            } else if k == "sslmode" {
                sslmode = Some(v.into_owned());
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    if url.query() == Some("") {
        url.set_query(None);
    }
    let mut config =
        tokio_postgres::Config::from_str(url.as_str()).map_err(|e| invalid(e.to_string()))?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() {
        config.host(env("PGHOST").as_deref().unwrap_or("localhost"));
    }
    if config.get_ports().is_empty()
        && let Some(port) = env("PGPORT").and_then(|p| p.parse().ok())
    {
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
    }
    if config.get_password().is_none()
        && let Some(password) = env("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none()
        && let Some(dbname) = env("PGDATABASE").or_else(|| config.get_user().map(str::to_owned))
    {
        config.dbname(&dbname);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("flow");
    }
    let mode = sslmode
        .or_else(|| env("PGSSLMODE"))
        .unwrap_or_else(|| "prefer".into());
    let (ssl, verify) = match mode.as_str() {
        "disable" => (SslMode::Disable, false),
        "allow" | "prefer" => (SslMode::Prefer, false),
        "require" => (SslMode::Require, false),
        "verify-ca" | "verify-full" => (SslMode::Require, true),
        other => return Err(invalid(format!("unknown sslmode `{other}`"))),
    };
    config.ssl_mode(ssl);
    Ok((config, verify))
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a quoted SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Cancels the query running on a connection when dropped: a step whose
/// future is dropped (cancelled, timed out) stops its work on the server
/// instead of leaving it running, and its pooled connection is soon free.
pub struct CancelOnDrop {
    token: Option<tokio_postgres::CancelToken>,
}

impl CancelOnDrop {
    /// Behind a pooler in transaction mode nothing is sent: PgBouncer 1.18
    /// can stop on a cancel request whose sender closes at once, as
    /// tokio-postgres's does (pgbouncer#801), and forwards none for a client
    /// already gone. There the closed connection ends the work: the pooler
    /// closes its server connection, and PostgreSQL rolls the transaction
    /// back when the statement next talks to it.
    pub fn new(client: &Client) -> Self {
        Self {
            token: (!client.is_pooled()).then(|| client.cancel_token()),
        }
    }

    /// The work ended normally: nothing to cancel.
    pub fn disarm(mut self) {
        self.token = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.token.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = token.cancel_query(tokio_postgres::NoTls).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_take_sslmode_and_fill_from_the_environment() {
        let (config, verify) =
            config_from_url("postgres://u:p@db:6543/api?sslmode=verify-full").expect("valid");
        assert!(verify);
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(config.get_ports(), [6543]);
        assert_eq!(config.get_dbname(), Some("api"));
        let (config, verify) =
            config_from_url("postgres://u@db/api?sslmode=disable").expect("valid");
        assert!(!verify);
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        assert!(config_from_url("postgres://db/api?sslmode=sometimes").is_err());
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
