//! The routes: each checks its key's scope, then asks the engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flow_engine::executor::{Event, Options, StepResult};
use flow_engine::run::{self, Observer, RunRequest, RunStatus, Stream};
use flow_engine::{KeyScope, Selection, StepIndex};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Going, Refusal, Served};

type Shared = State<Arc<Served>>;

pub(super) fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/flows", get(flows))
        .route("/flows/{flow}/runs", get(runs).post(start))
        .route("/runs/{id}", get(one_run))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/events", get(events))
        .route("/runs/{id}/log/{*step}", get(log))
        .route("/flows/{flow}/schedules", get(schedules))
        .route("/metrics", get(metrics))
        .with_state(served)
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Refusal::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "a valid API key is needed".to_owned(),
            ),
            Refusal::Forbidden(scope) => (
                StatusCode::FORBIDDEN,
                format!(
                    "this key's scope does not allow it: it needs `{}`",
                    scope.as_str()
                ),
            ),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the flow database cannot be reached".to_owned(),
            ),
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("header"));
        }
        response
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn allowed(served: &Served, headers: &HeaderMap, needed: KeyScope) -> Result<(), Response> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    served
        .authorize(header, needed)
        .await
        .map(|_| ())
        .map_err(IntoResponse::into_response)
}

async fn flows(State(served): Shared, headers: HeaderMap) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    let flows: Vec<_> = served
        .flows
        .iter()
        .map(|flow| {
            json!({
                "name": flow.pipeline.name,
                "file": flow.file.display().to_string(),
                "groups": flow.pipeline.groups,
                "steps": flow.pipeline.steps.iter().map(|s| s.key.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(flows).into_response()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn runs(
    State(served): Shared,
    headers: HeaderMap,
    Path(flow): Path<String>,
    Query(limit): Query<Limit>,
) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    if served.flow(&flow).is_none() {
        return error(StatusCode::NOT_FOUND, format!("there is no flow `{flow}`"));
    }
    let limit = limit.limit.unwrap_or(20).clamp(1, 1000);
    match served.keys.runs(Some(&flow), limit).await {
        Ok(runs) => Json(runs).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn one_run(State(served): Shared, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    match served.keys.run(id).await {
        Ok(Some((run, steps))) => Json(json!({ "run": run, "steps": steps })).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("there is no run {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// What to run: groups and steps (as `flow run --group`/`--step`), and values.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    steps: Vec<String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
}

/// Says the run's id as soon as it is recorded.
struct Announce(Option<oneshot::Sender<i64>>);

impl Observer for Announce {
    fn started(&mut self, run: i64, _: &str, _: usize) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(run);
        }
    }

    fn event(&mut self, _: &Event<'_>) {}

    fn finished(&mut self, _: i64, _: RunStatus, _: &HashMap<StepIndex, StepResult>) {}
}

async fn start(
    State(served): Shared,
    headers: HeaderMap,
    Path(flow): Path<String>,
    body: Option<Json<StartRequest>>,
) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Run).await {
        return refused;
    }
    let Some(file) = served.flow(&flow).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("there is no flow `{flow}`"));
    };
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let selection = Selection {
        groups: request.groups.clone(),
        steps: request.steps.clone(),
        ..Selection::default()
    };
    let selected = match selection.apply(&file.pipeline) {
        Ok(selected) => selected,
        Err(errors) => {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return error(StatusCode::UNPROCESSABLE_ENTITY, text.join("; "));
        }
    };
    let environment = match file.environment(served.env.as_deref()) {
        Ok(environment) => environment,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let mut described: Vec<String> = request
        .groups
        .iter()
        .map(|g| format!("--group {g}"))
        .collect();
    described.extend(request.steps.iter().map(|s| format!("--step {s}")));
    let run_request = RunRequest {
        selected,
        selection: format!("serve {}", described.join(" "))
            .trim_end()
            .to_owned(),
        vars: request.vars.into_iter().collect(),
        options: Options::default(),
        resume: false,
        db_connections: 8,
    };
    let (sender, receiver) = oneshot::channel();
    let cancel = CancellationToken::new();
    let (stream, _) = Stream::new(Arc::clone(&file.pipeline), 1024);
    let sender_of_events = stream.sender();
    let observer = (Announce(Some(sender)), stream);
    let handle = run::start(file, environment, run_request, observer, cancel.clone());
    let Ok(id) = receiver.await else {
        let (end, _) = handle.finish().await;
        let why = match end.status {
            Err(e) => e.to_string(),
            Ok(status) => format!("the run ended as {}", status.as_str()),
        };
        return error(StatusCode::SERVICE_UNAVAILABLE, why);
    };
    if let Ok(mut running) = served.running.lock() {
        running.insert(
            id,
            Going {
                cancel,
                events: sender_of_events,
            },
        );
    }
    let done = Arc::clone(&served);
    tokio::spawn(async move {
        handle.finish().await;
        if let Ok(mut running) = done.running.lock() {
            running.remove(&id);
        }
    });
    (StatusCode::ACCEPTED, Json(json!({ "run": id }))).into_response()
}

async fn cancel(State(served): Shared, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Run).await {
        return refused;
    }
    let going = served.running.lock().ok().and_then(|r| r.get(&id).cloned());
    match going {
        Some(going) => {
            going.cancel.cancel();
            (
                StatusCode::ACCEPTED,
                Json(json!({ "run": id, "cancelling": true })),
            )
                .into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!("run {id} is not going on in this server"),
        ),
    }
}

/// A going run's events, from now on, as Server-Sent Events; the stream ends
/// after `run_finished`.
async fn events(State(served): Shared, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    use axum::response::sse::{Event as Sent, KeepAlive, Sse};
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    let going = served.running.lock().ok().and_then(|r| r.get(&id).cloned());
    let Some(going) = going else {
        return error(
            StatusCode::NOT_FOUND,
            format!("run {id} is not going on in this server: `GET /runs/{id}` says how it went"),
        );
    };
    let receiver = going.events.subscribe();
    let stream =
        futures_util::stream::unfold((receiver, false), |(mut receiver, done)| async move {
            if done {
                return None;
            }
            loop {
                match receiver.recv().await {
                    Ok(event) => {
                        let last = matches!(event, run::RunEvent::RunFinished { .. });
                        let sent = Sent::default().json_data(&event).unwrap_or_default();
                        return Some((
                            Ok::<Sent, std::convert::Infallible>(sent),
                            (receiver, last),
                        ));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What a step's command printed in a run (`flow logs`).
async fn log(
    State(served): Shared,
    headers: HeaderMap,
    Path((id, step)): Path<(i64, String)>,
) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    let record = match served.keys.run(id).await {
        Ok(Some((run, _))) => run,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("there is no run {id}")),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let Some(flow) = served.flow(&record.flow) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("run {id} is of a flow not served here"),
        );
    };
    let path = flow
        .base
        .join(".flow/logs")
        .join(id.to_string())
        .join(format!("{}.log", flow_engine::log_name(&step)));
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(_) => error(
            StatusCode::NOT_FOUND,
            format!("step `{step}` left no log in run {id}"),
        ),
    }
}

/// Each scheduled job of a flow: its last fire and result, and its next fire.
async fn schedules(
    State(served): Shared,
    headers: HeaderMap,
    Path(flow): Path<String>,
) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    let Some(file) = served.flow(&flow).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("there is no flow `{flow}`"));
    };
    let now = jiff::Timestamp::now();
    let jobs = flow_engine::scheduler::jobs_in(&served.keys, &file.pipeline, now).await;
    let jobs: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            json!({
                "flow": job.flow,
                "job": job.job,
                "last_fire": job.last_fire.map(|at| at.to_string()),
                "result": job.result,
                "next_fire": job.next_fire.map(|at| at.to_string()),
            })
        })
        .collect();
    Json(jobs).into_response()
}

/// Prometheus's text format: runs by status, the runs going here, each
/// step's time, rows and bytes, and missed fires.
async fn metrics(State(served): Shared, headers: HeaderMap) -> Response {
    use std::fmt::Write as _;
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    let counts = match served.keys.counts().await {
        Ok(counts) => counts,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    // Label values escaped as the format says.
    let label = |text: &str| {
        text.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP flow_runs_total Recorded runs, by flow and status."
    );
    let _ = writeln!(text, "# TYPE flow_runs_total counter");
    for (flow, status, runs) in &counts.runs {
        let _ = writeln!(
            text,
            "flow_runs_total{{flow=\"{}\",status=\"{}\"}} {runs}",
            label(flow),
            label(status)
        );
    }
    let going = served.running.lock().map(|r| r.len()).unwrap_or(0);
    let _ = writeln!(
        text,
        "# HELP flow_runs_going Runs started by this server and still going."
    );
    let _ = writeln!(text, "# TYPE flow_runs_going gauge");
    let _ = writeln!(text, "flow_runs_going {going}");
    for (name, kind, help) in [
        (
            "flow_step_seconds",
            "summary",
            "Time steps took, by flow and step.",
        ),
        ("flow_step_rows_total", "counter", "Rows steps moved."),
        ("flow_step_bytes_total", "counter", "Bytes steps moved."),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} {kind}");
        for (flow, step, finished, seconds, rows, bytes) in &counts.steps {
            let labels = format!("flow=\"{}\",step=\"{}\"", label(flow), label(step));
            match name {
                "flow_step_seconds" => {
                    let _ = writeln!(text, "{name}_sum{{{labels}}} {seconds}");
                    let _ = writeln!(text, "{name}_count{{{labels}}} {finished}");
                }
                "flow_step_rows_total" => {
                    let _ = writeln!(text, "{name}{{{labels}}} {rows}");
                }
                _ => {
                    let _ = writeln!(text, "{name}{{{labels}}} {bytes}");
                }
            }
        }
    }
    let _ = writeln!(
        text,
        "# HELP flow_fires_missed_total Schedule fires missed while no scheduler ran."
    );
    let _ = writeln!(text, "# TYPE flow_fires_missed_total counter");
    for (flow, schedule, missed) in &counts.missed {
        let _ = writeln!(
            text,
            "flow_fires_missed_total{{flow=\"{}\",schedule=\"{}\"}} {missed}",
            label(flow),
            label(schedule)
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
