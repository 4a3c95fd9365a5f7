//! `/metrics`, in Prometheus's text format.

use std::fmt::{Display, Write as _};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flow_engine::KeyScope;

use crate::routes::{Shared, allowed, error};

/// The text of the exposition, family by family.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A sample; label values escaped as the format says.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(key, text)| {
                let text = text
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{key}=\"{text}\"")
            })
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }
}

/// Prometheus's text format: runs by status, the runs going here, each
/// step's time, rows and bytes, missed fires and schedule lag.
pub(crate) async fn metrics(State(served): Shared, headers: HeaderMap) -> Response {
    if let Err(refused) = allowed(&served, &headers, KeyScope::Read).await {
        return refused;
    }
    let counts = match served.keys.counts().await {
        Ok(counts) => counts,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let mut text = Exposition::default();
    text.family(
        "flow_runs_total",
        "counter",
        "Recorded runs, by flow and status.",
    );
    for (flow, status, runs) in &counts.runs {
        text.sample(
            "flow_runs_total",
            &[("flow", flow), ("status", status)],
            runs,
        );
    }
    let going = served.running.lock().map(|r| r.len()).unwrap_or(0);
    text.family(
        "flow_runs_going",
        "gauge",
        "Runs started by this server and still going.",
    );
    text.sample("flow_runs_going", &[], going);
    text.family(
        "flow_step_seconds",
        "summary",
        "Time steps took, by flow and step.",
    );
    for (flow, step, finished, seconds, _, _) in &counts.steps {
        let labels = [("flow", flow.as_str()), ("step", step.as_str())];
        text.sample("flow_step_seconds_sum", &labels, seconds);
        text.sample("flow_step_seconds_count", &labels, finished);
    }
    text.family("flow_step_rows_total", "counter", "Rows steps moved.");
    for (flow, step, _, _, rows, _) in &counts.steps {
        text.sample(
            "flow_step_rows_total",
            &[("flow", flow), ("step", step)],
            rows,
        );
    }
    text.family("flow_step_bytes_total", "counter", "Bytes steps moved.");
    for (flow, step, _, _, _, bytes) in &counts.steps {
        text.sample(
            "flow_step_bytes_total",
            &[("flow", flow), ("step", step)],
            bytes,
        );
    }
    text.family(
        "flow_fires_missed_total",
        "counter",
        "Schedule fires missed while no scheduler ran.",
    );
    for (flow, schedule, missed) in &counts.missed {
        let labels = [("flow", flow.as_str()), ("schedule", schedule.as_str())];
        text.sample("flow_fires_missed_total", &labels, missed);
    }
    text.family(
        "flow_schedule_lag_seconds",
        "gauge",
        "How late the last fired run of a schedule started after its fire was due.",
    );
    for (flow, schedule, lag) in &counts.lag {
        let labels = [("flow", flow.as_str()), ("schedule", schedule.as_str())];
        text.sample("flow_schedule_lag_seconds", &labels, lag);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text.0,
    )
        .into_response()
}
