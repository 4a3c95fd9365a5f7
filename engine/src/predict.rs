//! Whether a step runs or is skipped as unchanged: the one rule the
//! executor applies and `flow plan` predicts with.

use std::collections::HashMap;
use std::path::Path;

use petgraph::Direction;

use crate::environment::Environment;
use crate::fingerprint;
use crate::flow_file::FlowFile;
use crate::pipeline::{Node, Pipeline, StepIndex};
use crate::records::{Records, Success};
use crate::session::{self, Session};

/// What earlier runs left, for skip-unchanged.
#[derive(Debug, Default)]
pub struct Memory {
    /// Each step's last success, by step id.
    pub history: HashMap<String, Success>,
    /// Each database's and storage's identity (location without password,
    /// and for a database, which cluster and database it really is).
    pub connections: HashMap<String, String>,
    /// This run's id: a step that changed something gets a new output
    /// fingerprint tied to it.
    pub run_id: i64,
    /// This run's values (`--var`, a scheduled job's item).
    pub vars: std::collections::BTreeMap<String, String>,
}

/// What `flow plan` says a step will do, from the same fingerprints a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prediction {
    Skipped { since: i64 },
    Runs(String),
}

impl std::fmt::Display for Prediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prediction::Skipped { since } => write!(f, "skipped: unchanged since run {since}"),
            Prediction::Runs(reason) => write!(f, "runs: {reason}"),
        }
    }
}

/// Why a step runs whatever its history: `--force`, or it cannot know what
/// it reads.
pub(crate) fn always_runs(pipeline: &Pipeline, index: StepIndex, force: bool) -> Option<String> {
    if force {
        return Some("--force".into());
    }
    pipeline.external[index].clone()
}

/// A step's input against its last success.
pub(crate) enum Verdict<'m> {
    /// The same input, and what it wrote is still there.
    Unchanged(&'m Success),
    Runs(String),
}

pub(crate) fn verdict<'m>(
    pipeline: &Pipeline,
    index: StepIndex,
    input: &str,
    base: &Path,
    history: &'m HashMap<String, Success>,
) -> Verdict<'m> {
    let Some(previous) = history.get(&pipeline.steps[index].key) else {
        return Verdict::Runs("it has not succeeded before".into());
    };
    if previous.input == input {
        return if fingerprint::outputs_exist(pipeline, index, base) {
            Verdict::Unchanged(previous)
        } else {
            Verdict::Runs(format!(
                "files it writes are missing since run {}",
                previous.run_id
            ))
        };
    }
    let changed = fingerprint::changed(&previous.input, input);
    Verdict::Runs(if changed.is_empty() {
        format!(
            "its parameters or input files changed since run {}",
            previous.run_id
        )
    } else {
        let shown: Vec<&str> = changed.iter().take(3).map(String::as_str).collect();
        let more = match changed.len() {
            n if n > 3 => format!(" and {} more", n - 3),
            _ => String::new(),
        };
        format!(
            "{}{more} changed since run {}",
            shown.join(", "),
            previous.run_id
        )
    })
}

/// Predicts, for each selected step, whether a run would skip it and why.
/// A step after one that runs may still be skipped, if that one changes
/// nothing; the prediction says so.
pub fn predict(
    pipeline: &Pipeline,
    selected: &[bool],
    base: &Path,
    memory: &Memory,
    force: bool,
) -> HashMap<StepIndex, Prediction> {
    let mut predictions = HashMap::new();
    let mut outputs: HashMap<StepIndex, String> = HashMap::new();
    for &node in &pipeline.order {
        let Node::Step(index) = pipeline.graph[node] else {
            continue;
        };
        if !selected[index] {
            continue;
        }
        let running_upstream = pipeline
            .graph
            .neighbors_directed(node, Direction::Incoming)
            .filter_map(|n| match pipeline.graph[n] {
                Node::Step(j) if matches!(predictions.get(&j), Some(Prediction::Runs(_))) => {
                    Some(j)
                }
                _ => None,
            })
            .min();
        let prediction = if let Some(reason) = always_runs(pipeline, index, force) {
            Prediction::Runs(reason)
        } else if let Some(upstream) = running_upstream {
            Prediction::Runs(format!(
                "unless `{}`, which runs first, changes nothing",
                pipeline.steps[upstream].id
            ))
        } else {
            let input = fingerprint::input(
                pipeline,
                index,
                base,
                &memory.connections,
                &outputs,
                &memory.history,
                &memory.vars,
            );
            match verdict(pipeline, index, &input, base, &memory.history) {
                Verdict::Unchanged(previous) => {
                    outputs.insert(index, previous.output.clone());
                    Prediction::Skipped {
                        since: previous.run_id,
                    }
                }
                Verdict::Runs(reason) => Prediction::Runs(reason),
            }
        };
        predictions.insert(index, prediction);
    }
    predictions
}

/// What a run of `selected` would skip, read from the flow's records when
/// they can be read without creating anything: `Err` says why not. A
/// stopped embedded cluster is started for the time it takes to read them.
pub async fn predict_from_records(
    flow: &FlowFile,
    environment: &Environment,
    selected: &[bool],
) -> Result<HashMap<StepIndex, Prediction>, String> {
    let pipeline = &flow.pipeline;
    let needed = session::databases_needed(pipeline, selected);
    let embedded = needed.iter().any(|db| {
        environment
            .databases
            .get(db)
            .is_some_and(flow_db::Location::is_embedded)
    });
    if embedded
        && flow_db::Cluster::new(&flow.base.join(".flow"))
            .is_ok_and(|c| matches!(c.status(), flow_db::ClusterStatus::NotCreated))
    {
        return Err("no run is recorded yet: every selected step would run".into());
    }
    let unread = |error: flow_db::DbError| format!("run history not read: {error}");
    let session = Session::open(environment, &flow.base, &needed, 2, &[])
        .await
        .map_err(unread)?;
    let memory = async {
        let records = match session.databases.get("flow") {
            Some(database) => Records::existing(database).await?,
            None => None,
        };
        let history = match &records {
            Some(records) => records.successes(&pipeline.name, "").await?,
            None => HashMap::new(),
        };
        let connections = session::identities(&session, environment).await?;
        Ok::<Memory, flow_db::DbError>(Memory {
            history,
            connections,
            run_id: 0,
            vars: std::collections::BTreeMap::new(),
        })
    }
    .await;
    session.close().await;
    let memory = memory.map_err(unread)?;
    Ok(predict(pipeline, selected, &flow.base, &memory, false))
}
