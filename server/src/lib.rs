//! `flow serve`: the flows given, over HTTP, as clients of the engine's run
//! API, and a web page to watch them. Every route but `/healthz`, the page
//! (`/`) and its assets needs an API key (`flow keys`) as
//! `Authorization: Bearer KEY`, checked against the keys of the first flow's
//! flow database; a missing, unknown or revoked key gets 401 and nothing
//! else, a key whose scope is too small 403. The page and its assets are
//! the same bytes for everyone and hold no data: what they show comes from
//! the keyed routes, with the key the user gives the page.
//!
//! | route | scope | does |
//! |---|---|---|
//! | `GET /healthz` | none | `ok` |
//! | `GET /` | none | the web page (assets under `/assets/`) |
//! | `GET /openapi.json` | read | the OpenAPI document of these routes |
//! | `GET /whoami` | read | the key's name and scope |
//! | `GET /flows` | read | the flows: name, file, groups, steps |
//! | `GET /flows/{flow}/plan` | read | the plan, as `flow plan --json` prints it |
//! | `GET /flows/{flow}/graph` | read | the DAG laid out: steps with their place, edges with their reasons |
//! | `GET /flows/{flow}/runs` | read | the flow's recorded runs, newest first (`?limit=`) |
//! | `POST /flows/{flow}/runs` | run | starts a run: `{"groups": [...], "steps": [...], "vars": {...}}`; 202 with its id |
//! | `GET /runs/{id}` | read | a run and its steps |
//! | `POST /runs/{id}/cancel` | run | cancels a run this server started |
//! | `GET /runs/{id}/events` | read | a going run's events as Server-Sent Events: those so far, then live |
//! | `GET /runs/{id}/log/{step}` | read | what a step's command printed |
//! | `GET /flows/{flow}/schedules` | read | each job's last fire, result and next fire |
//! | `GET /metrics` | read | Prometheus text: runs by status, runs going, step time, rows and bytes, missed fires, schedule lag |

mod flows;
mod layout;
mod metrics;
mod routes;
mod runs;
mod tls;
mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use flow_engine::{FlowFile, KeyCheck, KeyScope, Records, Session};
use tokio_util::sync::CancellationToken;

/// What the routes share.
pub struct Served {
    flows: Vec<Arc<FlowFile>>,
    /// The environment runs go to (`--env`).
    env: Option<String>,
    /// The records of the first flow's flow database: keys live there.
    keys: Records,
    /// The runs this server started and that are still going, by id: how to
    /// cancel each, and where its events go.
    running: Mutex<HashMap<i64, Going>>,
    /// Each flow's DAG laid out, as JSON, once asked for.
    graphs: Mutex<HashMap<String, Arc<str>>>,
    /// Live keys checked in the last second: a client sending many requests
    /// costs the flow database one key check a second, not one a request.
    recent: Mutex<HashMap<String, Checked>>,
}

/// A live key, as the flow database said at `at`.
struct Checked {
    at: std::time::Instant,
    name: String,
    scope: KeyScope,
}

/// How long a key check holds: a revoked key is refused within this.
const KEY_CHECK_HOLDS: std::time::Duration = std::time::Duration::from_secs(1);

impl Served {
    fn flow(&self, name: &str) -> Option<&Arc<FlowFile>> {
        self.flows.iter().find(|f| f.pipeline.name == name)
    }

    /// Whether `header` (the `Authorization` value) carries a key that may do
    /// what `needed` allows.
    async fn authorize(
        &self,
        header: Option<&str>,
        needed: KeyScope,
    ) -> Result<(String, KeyScope), Refusal> {
        let key = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(Refusal::Unauthorized)?
            .trim();
        let held = self.recent.lock().ok().and_then(|recent| {
            recent
                .get(key)
                .filter(|c| c.at.elapsed() < KEY_CHECK_HOLDS)
                .map(|c| (c.name.clone(), c.scope))
        });
        if let Some((name, scope)) = held {
            return if scope.allows(needed) {
                Ok((name, scope))
            } else {
                Err(Refusal::Forbidden(needed))
            };
        }
        let checked = self.keys.check_key(key, needed).await;
        if let Ok(KeyCheck::Allowed(name, scope) | KeyCheck::Forbidden(name, scope)) = &checked
            && let Ok(mut recent) = self.recent.lock()
        {
            if recent.len() > 10_000 {
                recent.retain(|_, c| c.at.elapsed() < KEY_CHECK_HOLDS);
            }
            let at = std::time::Instant::now();
            let (name, scope) = (name.clone(), *scope);
            recent.insert(key.to_owned(), Checked { at, name, scope });
        }
        match checked {
            Ok(KeyCheck::Allowed(name, scope)) => Ok((name, scope)),
            Ok(KeyCheck::Forbidden(..)) => Err(Refusal::Forbidden(needed)),
            Ok(KeyCheck::Unknown) => Err(Refusal::Unauthorized),
            Err(error) => {
                tracing::error!(%error, "cannot check a key");
                Err(Refusal::Unavailable)
            }
        }
    }
}

/// A run this server started, still going.
#[derive(Clone)]
struct Going {
    cancel: CancellationToken,
    events: flow_engine::run::Watch,
}

/// Why a request is refused before it is served.
#[derive(Debug)]
enum Refusal {
    Unauthorized,
    Forbidden(KeyScope),
    Unavailable,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ServeError {
    #[error("cannot listen on {address}: {reason}")]
    #[diagnostic(
        code(flow::serve::bind),
        help("another process may use the port: pick another with `--bind 127.0.0.1:PORT`")
    )]
    Bind { address: SocketAddr, reason: String },

    #[error("cannot use the TLS certificate or key {path}: {reason}")]
    #[diagnostic(
        code(flow::serve::tls),
        help(
            "give a PEM certificate chain with `--tls-cert` and its PEM private key with `--tls-key`"
        )
    )]
    Tls { path: PathBuf, reason: String },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Db(#[from] flow_db::DbError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Environment(#[from] flow_engine::EnvironmentError),
}

/// How to serve.
pub struct Options {
    /// The address to listen on.
    pub bind: SocketAddr,
    /// The environment runs go to.
    pub env: Option<String>,
    /// A PEM certificate chain and its private key: HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Serves `flows` until `stop` is cancelled; runs still going are cancelled
/// then.
pub async fn serve(
    flows: Vec<Arc<FlowFile>>,
    options: Options,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let Options {
        bind: address,
        env,
        tls,
    } = options;
    // A certificate that cannot be read fails before anything is opened.
    let acceptor = tls
        .map(|(cert, key)| tls::acceptor(&cert, &key))
        .transpose()?;
    let Some(first) = flows.first() else {
        return Ok(());
    };
    let environment = first.environment(env.as_deref())?;
    let needed = std::collections::BTreeSet::from([flow_engine::FLOW_DATABASE.to_owned()]);
    let session = Session::open(&environment, &first.base, &needed, 4, &[]).await?;
    let keys = Records::open(session.database(flow_engine::FLOW_DATABASE)?).await?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| ServeError::Bind {
            address,
            reason: e.to_string(),
        })?;
    let served = Arc::new(Served {
        flows,
        env,
        keys,
        running: Mutex::default(),
        graphs: Mutex::default(),
        recent: Mutex::default(),
    });
    tracing::info!(%address, "serving");
    let app = routes::router(Arc::clone(&served));
    let stopping = stop.clone();
    let shutdown = async move { stopping.cancelled().await };
    let result = match acceptor {
        Some(acceptor) => {
            let listener = tls::Listener::new(listener, acceptor);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    let running: Vec<Going> = served
        .running
        .lock()
        .map(|r| r.values().cloned().collect())
        .unwrap_or_default();
    running.iter().for_each(|going| going.cancel.cancel());
    session.close().await;
    result.map_err(|e| ServeError::Bind {
        address,
        reason: e.to_string(),
    })
}
