//! Runs a plan: every selected step as soon as everything it depends on has
//! succeeded, at most `jobs` at a time.
//!
//! The DAG is walked as it is compiled: steps that are not selected, and group
//! barriers, pass through at once, so the order between selected steps holds
//! without them. A failed step blocks what depends on it. By default the first
//! failure cancels the steps still running (they roll back) and starts nothing
//! new; with `keep_going`, every branch that does not depend on a failure runs.
//! Transient errors are retried with exponential backoff; each attempt may
//! have a timeout. Cancellation (a signal) stops everything the same way.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::fingerprint::{self, Digest};
use crate::pipeline::{EdgeReason, Node, Pipeline, StepIndex};
use crate::records::Success;
use crate::run_context::{Outcome, Progress, RunContext, StepError};

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub jobs: usize,
    pub keep_going: bool,
    /// Retries for steps that do not set `retries`.
    pub retries: u64,
    /// The first backoff; doubled for each retry, at most 30 seconds.
    pub backoff: Duration,
    /// Run steps even when nothing they depend on changed.
    pub force: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            jobs: 4,
            keep_going: false,
            retries: 2,
            backoff: Duration::from_millis(500),
            force: false,
        }
    }
}

/// Something that happened during a run, for displays and records.
#[derive(Debug)]
pub enum Event<'a> {
    Started {
        step: StepIndex,
        attempt: u32,
        /// The step's counters, which it advances as it works.
        progress: &'a Arc<Progress>,
    },
    Retrying {
        step: StepIndex,
        attempt: u32,
        error: &'a StepError,
        delay: Duration,
    },
    Finished {
        step: StepIndex,
        result: &'a StepResult,
    },
}

/// How a step ended.
#[derive(Debug)]
pub enum Status {
    Succeeded(Outcome),
    Failed(StepError),
    /// Cancelled while running: a sibling failed or a signal arrived.
    Cancelled,
    /// Not started: something it depends on failed (`reason` says what and
    /// how), or the run stopped.
    NotRun {
        reason: Option<String>,
    },
    /// Not run: nothing it depends on changed since its success in run `since`.
    Skipped {
        since: i64,
    },
}

#[derive(Debug)]
pub struct StepResult {
    pub status: Status,
    pub attempts: u32,
    pub started: Option<Instant>,
    pub duration: Duration,
    pub input_fingerprint: Option<String>,
    pub output_fingerprint: Option<String>,
}

impl StepResult {
    fn new(status: Status) -> Self {
        Self {
            status,
            attempts: 0,
            started: None,
            duration: Duration::ZERO,
            input_fingerprint: None,
            output_fingerprint: None,
        }
    }

    /// Succeeded or skipped: what depends on it may go on.
    pub fn succeeded(&self) -> bool {
        matches!(self.status, Status::Succeeded(_) | Status::Skipped { .. })
    }
}

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

/// The environment of every step of a run.
pub struct Shared {
    pub base_dir: std::path::PathBuf,
    pub databases: Arc<std::collections::BTreeMap<String, flow_db::Database>>,
    pub storages: Arc<std::collections::BTreeMap<String, String>>,
    /// Values of this run that steps may use (a scheduled job's `item`).
    pub vars: Arc<std::collections::BTreeMap<String, String>>,
    /// The run's id, when it is recorded.
    pub run: Option<i64>,
}

/// Runs the selected steps; returns each selected step's result, by index.
pub async fn execute(
    pipeline: &Pipeline,
    selected: &[bool],
    shared: &Shared,
    options: &Options,
    memory: &Memory,
    cancel: &CancellationToken,
    mut on_event: impl FnMut(Event<'_>),
) -> HashMap<StepIndex, StepResult> {
    let graph = &pipeline.graph;
    let mut waiting: Vec<usize> = graph
        .node_indices()
        .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
        .collect();
    let mut position = vec![0usize; graph.node_count()];
    for (i, node) in pipeline.order.iter().enumerate() {
        position[node.index()] = i;
    }
    let mut ready: BinaryHeap<Reverse<(usize, NodeIndex)>> = BinaryHeap::new();
    let mut results: HashMap<StepIndex, StepResult> = HashMap::new();
    let mut abandoned: HashMap<StepIndex, String> = HashMap::new();
    let mut outputs: HashMap<StepIndex, String> = HashMap::new();
    let mut inputs: HashMap<StepIndex, String> = HashMap::new();
    let mut running: JoinSet<(StepIndex, StepResult)> = JoinSet::new();
    let mut stopping = false;
    // Tasks report retries here; the loop below passes them on.
    let (retries_tx, mut retries_rx) =
        tokio::sync::mpsc::unbounded_channel::<(StepIndex, u32, StepError, Duration)>();
    let is_selected = |node: NodeIndex| matches!(graph[node], Node::Step(i) if selected[i]);

    for node in graph.node_indices() {
        if waiting[node.index()] == 0 {
            ready.push(Reverse((position[node.index()], node)));
        }
    }
    loop {
        // Pass-through nodes complete at once; selected steps start while there is room.
        while let Some(Reverse((_, node))) = ready.peek().copied() {
            if is_selected(node) && (running.len() >= options.jobs.max(1) || stopping) {
                break;
            }
            ready.pop();
            let Node::Step(index) = graph[node] else {
                release(pipeline, node, &mut waiting, &position, &mut ready);
                continue;
            };
            if !selected[index] {
                release(pipeline, node, &mut waiting, &position, &mut ready);
                continue;
            }
            if abandoned.contains_key(&index) {
                // Depends on a failure; its group edges are let go already.
                continue;
            }
            let input = fingerprint::input(
                pipeline,
                index,
                &shared.base_dir,
                &memory.connections,
                &outputs,
                &memory.history,
                &memory.vars,
            );
            if let Some(previous) = unchanged(pipeline, index, &input, shared, options, memory) {
                let mut result = StepResult::new(Status::Skipped {
                    since: previous.run_id,
                });
                result.input_fingerprint = Some(input);
                result.output_fingerprint = Some(previous.output.clone());
                outputs.insert(index, previous.output.clone());
                on_event(Event::Finished {
                    step: index,
                    result: &result,
                });
                results.insert(index, result);
                release(pipeline, node, &mut waiting, &position, &mut ready);
                continue;
            }
            tracing::debug!(step = %pipeline.steps[index].id, input = %input, "input fingerprint");
            inputs.insert(index, input);
            let progress = Arc::new(Progress::default());
            on_event(Event::Started {
                step: index,
                attempt: 1,
                progress: &progress,
            });
            running.spawn(attempts(
                pipeline,
                index,
                shared,
                options,
                cancel.child_token(),
                progress,
                retries_tx.clone(),
            ));
        }
        if running.is_empty() {
            break;
        }
        let joined = tokio::select! {
            Some((step, attempt, error, delay)) = retries_rx.recv() => {
                on_event(Event::Retrying { step, attempt, error: &error, delay });
                continue;
            }
            joined = running.join_next() => joined,
        };
        let Some(joined) = joined else { break };
        let (index, mut result) = match joined {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "a step's task failed");
                continue;
            }
        };
        result.input_fingerprint = inputs.remove(&index);
        if let (Status::Succeeded(outcome), Some(input)) =
            (&result.status, &result.input_fingerprint)
        {
            let previous = memory
                .history
                .get(&pipeline.steps[index].key.clone())
                .map(|p| p.output.clone());
            let output = match previous {
                Some(previous) if outcome.unchanged => previous,
                _ if outcome.unchanged => input.clone(),
                _ => Digest::new()
                    .write(input.as_bytes())
                    .write(&memory.run_id.to_le_bytes())
                    .hex(),
            };
            outputs.insert(index, output.clone());
            result.output_fingerprint = Some(output);
        }
        on_event(Event::Finished {
            step: index,
            result: &result,
        });
        if result.succeeded() {
            release(
                pipeline,
                pipeline.node_of(index),
                &mut waiting,
                &position,
                &mut ready,
            );
        } else if !options.keep_going && !stopping {
            stopping = true;
            cancel.cancel();
        } else if options.keep_going {
            // Only what depends on the failure through data or `after`
            // waits for it; the group order does not.
            let key = pipeline.steps[index].key.clone();
            abandon(
                pipeline,
                pipeline.node_of(index),
                &key,
                &mut waiting,
                &position,
                &mut ready,
                &mut abandoned,
            );
        }
        results.insert(index, result);
        if cancel.is_cancelled() {
            stopping = true;
        }
    }
    for (index, _) in pipeline.steps.iter().enumerate() {
        if selected[index] && !results.contains_key(&index) {
            let result = StepResult::new(Status::NotRun {
                reason: abandoned.remove(&index),
            });
            on_event(Event::Finished {
                step: index,
                result: &result,
            });
            results.insert(index, result);
        }
    }
    results
}

/// The last success a step can be skipped for, if any (the rule `flow
/// plan` predicts with: [`crate::predict::verdict`]).
fn unchanged<'m>(
    pipeline: &Pipeline,
    index: StepIndex,
    input: &str,
    shared: &Shared,
    options: &Options,
    memory: &'m Memory,
) -> Option<&'m Success> {
    if crate::predict::always_runs(pipeline, index, options.force).is_some() {
        return None;
    }
    match crate::predict::verdict(pipeline, index, input, &shared.base_dir, &memory.history) {
        crate::predict::Verdict::Unchanged(previous) => Some(previous),
        crate::predict::Verdict::Runs(_) => None,
    }
}

/// One step, with its retries and timeout, as a task of its own.
fn attempts(
    pipeline: &Pipeline,
    index: StepIndex,
    shared: &Shared,
    options: &Options,
    cancel: CancellationToken,
    progress: Arc<Progress>,
    retries_tx: tokio::sync::mpsc::UnboundedSender<(StepIndex, u32, StepError, Duration)>,
) -> impl Future<Output = (StepIndex, StepResult)> + Send + 'static {
    let step = &pipeline.steps[index];
    let context = RunContext {
        step: step.key.clone(),
        params: Arc::clone(&step.params),
        settings: step.prepared.settings.clone(),
        target: step
            .id
            .target
            .clone()
            .filter(|_| step.operation.spec().target == crate::Target::Database),
        base_dir: shared.base_dir.clone(),
        databases: Arc::clone(&shared.databases),
        storages: Arc::clone(&shared.storages),
        vars: Arc::clone(&shared.vars),
        run: shared.run,
        checks: Arc::clone(&pipeline.checks),
        cancel,
        progress,
    };
    let operation = step.operation;
    let retries = step.retries.unwrap_or(options.retries);
    let timeout = step.timeout;
    let backoff = options.backoff;
    async move {
        let started = Instant::now();
        let mut attempt = 1u32;
        let status = loop {
            let work = operation.run(&context);
            let result = tokio::select! {
                () = context.cancel.cancelled() => break Status::Cancelled,
                result = with_timeout(timeout, work) => result,
            };
            match result {
                Ok(outcome) => break Status::Succeeded(outcome),
                Err(error) if error.transient && u64::from(attempt) <= retries => {
                    let delay = backoff
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(Duration::from_secs(30));
                    let _ = retries_tx.send((index, attempt, error, delay));
                    tokio::select! {
                        () = context.cancel.cancelled() => break Status::Cancelled,
                        () = tokio::time::sleep(delay) => {}
                    }
                    attempt += 1;
                }
                Err(error) => break Status::Failed(error),
            }
        };
        let mut result = StepResult::new(status);
        result.attempts = attempt;
        result.started = Some(started);
        result.duration = started.elapsed();
        (index, result)
    }
}

/// Marks `node` done: its successors with nothing left to wait for are ready.
/// After a failure under `keep_going`: the steps that depend on `node`
/// through data or `after` cannot run (each remembers why, in `abandoned`),
/// and neither can theirs; their group-order edges are released, so that
/// later groups do not wait for steps that will never run.
fn abandon(
    pipeline: &Pipeline,
    node: NodeIndex,
    failed: &str,
    waiting: &mut [usize],
    position: &[usize],
    ready: &mut BinaryHeap<Reverse<(usize, NodeIndex)>>,
    abandoned: &mut HashMap<StepIndex, String>,
) {
    let mut stack = vec![node];
    let mut seen = std::collections::HashSet::new();
    while let Some(current) = stack.pop() {
        if !seen.insert(current) {
            continue;
        }
        for edge in pipeline.graph.edges_directed(current, Direction::Outgoing) {
            let next = edge.target();
            match edge.weight() {
                EdgeReason::Group => {
                    waiting[next.index()] -= 1;
                    if waiting[next.index()] == 0 {
                        ready.push(Reverse((position[next.index()], next)));
                    }
                }
                reason => {
                    // Each step is abandoned once, whatever the number of
                    // failures it depends on: its edges are let go once.
                    if let Node::Step(step) = pipeline.graph[next]
                        && !abandoned.contains_key(&step)
                    {
                        let how = match reason {
                            EdgeReason::After => "through `after`".to_owned(),
                            other => format!("({})", other.describe()),
                        };
                        abandoned.insert(
                            step,
                            format!("it depends on `{failed}`, which did not succeed, {how}"),
                        );
                        stack.push(next);
                    }
                }
            }
        }
    }
}

fn release(
    pipeline: &Pipeline,
    node: NodeIndex,
    waiting: &mut [usize],
    position: &[usize],
    ready: &mut BinaryHeap<Reverse<(usize, NodeIndex)>>,
) {
    for next in pipeline.graph.neighbors_directed(node, Direction::Outgoing) {
        waiting[next.index()] -= 1;
        if waiting[next.index()] == 0 {
            ready.push(Reverse((position[next.index()], next)));
        }
    }
}

async fn with_timeout(
    timeout: Option<Duration>,
    work: impl Future<Output = Result<Outcome, StepError>>,
) -> Result<Outcome, StepError> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(StepError::message(
                format!("timed out after {}", humanize(limit)),
                Some("raise the step's `timeout`, or look at what made it slow".into()),
            ))
        }),
        None => work.await,
    }
}

pub fn humanize(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1_000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}m{:02}s", millis / 60_000, (millis / 1_000) % 60)
    }
}
