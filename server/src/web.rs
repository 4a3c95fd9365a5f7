//! The web page and the OpenAPI document, built into the binary: no CDN,
//! nothing read from disk at run time.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flow_engine::KeyScope;

use crate::routes::{Shared, allowed, error};

const PAGE: &str = include_str!("../web/index.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../web/app.css"),
    ),
];
const OPENAPI: &str = include_str!("../web/openapi.json");

/// Headers for the page: its own scripts only, and never in a frame.
fn guarded(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn page() -> Response {
    guarded("text/html; charset=utf-8", PAGE)
}

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, content_type, body)) => guarded(content_type, body),
        None => error(StatusCode::NOT_FOUND, format!("there is no asset `{file}`")),
    }
}

/// The document, saying which environment this server's runs go to.
pub(crate) async fn openapi(State(served): Shared, headers: HeaderMap) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    let mut document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
    let serving = flow_engine::environment_name(served.env.as_deref());
    document["components"]["schemas"]["StartRequest"]["properties"]["env"]["enum"] =
        serde_json::json!([serving, null]);
    axum::Json(document).into_response()
}
