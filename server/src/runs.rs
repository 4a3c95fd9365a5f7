//! Runs: list, start, look at, cancel, watch, and a step's log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flow_engine::executor::{Event, Options, StepResult};
use flow_engine::run::{self, Observer, RunRequest, RunStatus, Stream};
use flow_engine::{KeyScope, Selection, StepIndex};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::routes::{Shared, allowed, allowed_flow, error, selection_refused};
use crate::{Going, Served};
#[derive(Deserialize)]
pub(crate) struct Limit {
    limit: Option<i64>,
}

pub(crate) async fn runs(
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

pub(crate) async fn one_run(
    State(served): Shared,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    match served.keys.run(id).await {
        Ok(Some((run, steps))) => {
            // Whether `/runs/{id}/events` streams it: a run this server
            // started and that is going.
            let streamed = served.running.lock().is_ok_and(|r| r.contains_key(&id));
            Json(json!({ "run": run, "steps": steps, "streamed": streamed })).into_response()
        }
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
    /// The environment, which must be the server's (`flow serve --env`):
    /// one process holds one environment's variables, so that the files of
    /// two never mix.
    #[serde(default)]
    env: Option<String>,
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

pub(crate) async fn start(
    State(served): Shared,
    headers: HeaderMap,
    Path(flow): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let file = match allowed_flow(&served, &headers, KeyScope::Run, &flow).await {
        Ok(file) => file,
        Err(refused) => return refused,
    };
    let request: StartRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("the request is not what a run takes: {e}"),
                );
            }
        }
    };
    let selection = Selection {
        groups: request.groups.clone(),
        steps: request.steps.clone(),
        ..Selection::default()
    };
    let selected = match selection.apply(&file.pipeline) {
        Ok(selected) => selected,
        // A group or step the flow does not have: not found, as an unknown
        // flow is.
        Err(errors) => return selection_refused(StatusCode::NOT_FOUND, &errors),
    };
    let serving = flow_engine::environment_name(served.env.as_deref());
    if let Some(asked) = request.env.as_deref().filter(|asked| *asked != serving) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "this server runs flows in environment `{serving}`, not `{asked}`: start `flow serve --env {asked}` for it"
            ),
        );
    }
    let environment = match file.environment(served.env.as_deref()) {
        Ok(environment) => environment,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
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
        attach: None,
    };
    let (sender, receiver) = oneshot::channel();
    let cancel = CancellationToken::new();
    let stream = Stream::new(Arc::clone(&file.pipeline), 1024);
    let watch = stream.watch();
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
                events: watch,
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

pub(crate) async fn cancel(
    State(served): Shared,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    match going(&served, &headers, KeyScope::Run, id).await {
        Ok(going) => {
            going.cancel.cancel();
            (
                StatusCode::ACCEPTED,
                Json(json!({ "run": id, "cancelling": true })),
            )
                .into_response()
        }
        Err(refused) => refused,
    }
}

/// A run this server started and that is still going, once the key allows
/// `needed`; 404 for another.
async fn going(
    served: &Served,
    headers: &HeaderMap,
    needed: KeyScope,
    id: i64,
) -> Result<Going, Response> {
    allowed(served, headers, needed).await?;
    let going = served.running.lock().ok().and_then(|r| r.get(&id).cloned());
    going.ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("run {id} is not going on in this server: `GET /runs/{id}` says how it went"),
        )
    })
}

/// A going run's events as Server-Sent Events: those so far, then each as
/// it comes; the stream ends after `run_finished`. Each event's `id` is its
/// place in the run, from 0.
pub(crate) async fn events(
    State(served): Shared,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    use axum::response::sse::{Event as Sent, KeepAlive, Sse};
    use futures_util::StreamExt as _;
    use tokio::sync::broadcast::error::RecvError;
    let going = match going(&served, &headers, KeyScope::Read, id).await {
        Ok(going) => going,
        Err(refused) => return refused,
    };
    let (so_far, receiver) = going.events.subscribe();
    let first = so_far.len();
    let over = so_far
        .iter()
        .any(|e| matches!(e, run::RunEvent::RunFinished { .. }));
    let live = futures_util::stream::unfold(
        (receiver, over, first),
        |(mut receiver, done, next)| async move {
            if done {
                return None;
            }
            loop {
                match receiver.recv().await {
                    Ok(event) => {
                        let last = matches!(event, run::RunEvent::RunFinished { .. });
                        return Some(((next, event), (receiver, last, next + 1)));
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    let all = futures_util::stream::iter(so_far.into_iter().enumerate())
        .chain(live)
        .map(|(place, event)| {
            let sent = Sent::default()
                .id(place.to_string())
                .json_data(&event)
                .unwrap_or_default();
            Ok::<Sent, std::convert::Infallible>(sent)
        });
    Sse::new(all)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What a step's command printed in a run (`flow logs`).
pub(crate) async fn log(
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
