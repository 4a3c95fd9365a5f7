//! The flows: what they are, their plan and DAG, their schedules.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flow_engine::KeyScope;
use serde_json::json;

use crate::layout;
use crate::routes::{ReadFlow, Shared, allowed, selection_refused};
pub(crate) async fn flows(State(served): Shared, headers: HeaderMap) -> Response {
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
                "groups": groups(&flow.pipeline),
                "steps": flow.pipeline.steps.iter().map(|s| s.key.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(flows).into_response()
}

/// Each scheduled job of a flow: its last fire and result, and its next fire.
pub(crate) async fn schedules(State(served): Shared, ReadFlow(file, _): ReadFlow) -> Response {
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

/// The plan of what a run with no selection would run, as `flow plan
/// --json` prints it, with what it would skip when the run records can be
/// read.
pub(crate) async fn plan(State(served): Shared, ReadFlow(file, _): ReadFlow) -> Response {
    let selected = match flow_engine::Selection::default().apply(&file.pipeline) {
        Ok(selected) => selected,
        Err(errors) => return selection_refused(StatusCode::UNPROCESSABLE_ENTITY, &errors),
    };
    let mut plan = flow_engine::Plan::with_parts(&file.pipeline, &selected, &file.base);
    let env = served.env.as_deref();
    if let Ok(environment) = file.environment(env) {
        let predicted =
            flow_engine::predict::predict_from_records(&file, &environment, &selected).await;
        if let Ok(predictions) = predicted {
            for step in &mut plan.steps {
                step.prediction = predictions.get(&step.index).map(ToString::to_string);
            }
        }
    }
    Json(flow_engine::plan_json(&plan, &file.connections(env))).into_response()
}

/// The DAG of every step, laid out (see `layout`), computed once per flow.
pub(crate) async fn graph(State(served): Shared, ReadFlow(file, flow): ReadFlow) -> Response {
    let cached = served
        .graphs
        .lock()
        .ok()
        .and_then(|g| g.get(&flow).cloned());
    let text = match cached {
        Some(text) => text,
        None => {
            let selected = vec![true; file.pipeline.steps.len()];
            let plan = flow_engine::Plan::new(&file.pipeline, &selected);
            let graph = layout::lay_out(&plan, &file.pipeline.groups);
            let text: Arc<str> = serde_json::to_string(&graph).unwrap_or_default().into();
            if let Ok(mut graphs) = served.graphs.lock() {
                graphs.insert(flow, Arc::clone(&text));
            }
            text
        }
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        text.to_string(),
    )
        .into_response()
}

/// The flow's groups in their order, then those only some steps name (such
/// as `manual`, which runs only when asked for).
fn groups(pipeline: &flow_engine::Pipeline) -> Vec<String> {
    let mut groups = pipeline.groups.clone();
    for step in &pipeline.steps {
        if let Some(group) = &step.group
            && !groups.contains(group)
        {
            groups.push(group.clone());
        }
    }
    groups
}
