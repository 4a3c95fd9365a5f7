//! The routes: each checks its key's scope, then asks the engine.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flow_engine::KeyScope;
use serde_json::json;

use super::{Refusal, Served, flows, metrics, runs, web};

pub(crate) type Shared = State<Arc<Served>>;

pub(super) fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(web::page))
        .route("/assets/{file}", get(web::asset))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/openapi.json", get(web::openapi))
        .route("/whoami", get(whoami))
        .route("/flows", get(flows::flows))
        .route("/flows/{flow}/plan", get(flows::plan))
        .route("/flows/{flow}/graph", get(flows::graph))
        .route("/flows/{flow}/schedules", get(flows::schedules))
        .route("/flows/{flow}/runs", get(runs::runs).post(runs::start))
        .route("/runs/{id}", get(runs::one_run))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/events", get(runs::events))
        .route("/runs/{id}/log/{*step}", get(runs::log))
        .route("/metrics", get(metrics::metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "there is no such route") })
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

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Whether the request's key may do what `needed` allows: its name and
/// scope, or the response that refuses it.
pub(crate) async fn allowed(
    served: &Served,
    headers: &HeaderMap,
    needed: KeyScope,
) -> Result<(String, KeyScope), Response> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    served
        .authorize(header, needed)
        .await
        .map_err(IntoResponse::into_response)
}

/// The flow a route names, once the key allows `needed`; 404 for a flow
/// not served here.
pub(crate) async fn allowed_flow(
    served: &Served,
    headers: &HeaderMap,
    needed: KeyScope,
    flow: &str,
) -> Result<Arc<flow_engine::FlowFile>, Response> {
    allowed(served, headers, needed).await?;
    served
        .flow(flow)
        .cloned()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("there is no flow `{flow}`")))
}

/// The flow a route's path names, once the request's key may read it: the
/// extractor of the flow routes that only read.
pub(crate) struct ReadFlow(pub Arc<flow_engine::FlowFile>, pub String);

impl axum::extract::FromRequestParts<Arc<Served>> for ReadFlow {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        served: &Arc<Served>,
    ) -> Result<Self, Response> {
        let axum::extract::Path(flow) =
            axum::extract::Path::<String>::from_request_parts(parts, served)
                .await
                .map_err(IntoResponse::into_response)?;
        let file = allowed_flow(served, &parts.headers, KeyScope::Read, &flow).await?;
        Ok(Self(file, flow))
    }
}

/// A selection the flow cannot take, said in one message.
pub(crate) fn selection_refused(
    status: StatusCode,
    errors: &[flow_engine::SelectionError],
) -> Response {
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    error(status, text.join("; "))
}

/// The key's name and scope: what the page may offer.
async fn whoami(State(served): Shared, headers: HeaderMap) -> Response {
    match allowed(&served, &headers, KeyScope::Read).await {
        Ok((name, scope)) => Json(json!({ "name": name, "scope": scope.as_str() })).into_response(),
        Err(refused) => refused,
    }
}
