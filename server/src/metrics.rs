//! `/metrics`, in Prometheus's text format.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flow_engine::KeyScope;

use crate::routes::{Shared, allowed, error};
/// Prometheus's text format: runs by status, the runs going here, each
/// step's time, rows and bytes, and missed fires.
pub(crate) async fn metrics(State(served): Shared, headers: HeaderMap) -> Response {
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
