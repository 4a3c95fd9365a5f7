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

mod attempts;
mod types;
mod walk;

use std::collections::HashMap;
use std::sync::Arc;

use petgraph::graph::NodeIndex;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::fingerprint::{self, Digest};
use crate::pipeline::{Node, Pipeline, StepIndex};
use crate::records::Success;
use crate::run_context::Progress;

pub use crate::predict::Memory;
use attempts::{Retry, attempts};
pub use types::{Event, Options, Shared, Status, StepResult, humanize};
use walk::Walk;

/// Runs the selected steps; returns each selected step's result, by index.
pub async fn execute(
    pipeline: &Pipeline,
    selected: &[bool],
    shared: &Shared,
    options: &Options,
    memory: &Memory,
    cancel: &CancellationToken,
    on_event: impl FnMut(Event<'_>),
) -> HashMap<StepIndex, StepResult> {
    let (retries_tx, mut retries) = unbounded_channel::<Retry>();
    let mut run = Execution {
        pipeline,
        selected,
        shared,
        options,
        memory,
        cancel,
        on_event,
        walk: Walk::new(pipeline),
        results: HashMap::new(),
        outputs: HashMap::new(),
        inputs: HashMap::new(),
        running: JoinSet::new(),
        stopping: false,
        retries_tx,
    };
    loop {
        run.start_ready();
        if run.running.is_empty() {
            break;
        }
        if let Some((index, result)) = run.next_end(&mut retries).await {
            run.ended(index, result);
        }
    }
    run.not_run()
}

/// A run of the executor under way.
struct Execution<'a, F> {
    pipeline: &'a Pipeline,
    selected: &'a [bool],
    shared: &'a Shared,
    options: &'a Options,
    memory: &'a Memory,
    cancel: &'a CancellationToken,
    on_event: F,
    walk: Walk<'a>,
    results: HashMap<StepIndex, StepResult>,
    /// Each ended step's output fingerprint, for the input of those after it.
    outputs: HashMap<StepIndex, String>,
    /// Each running step's input fingerprint.
    inputs: HashMap<StepIndex, String>,
    running: JoinSet<(StepIndex, StepResult)>,
    /// A step failed (without `keep_going`) or the run was cancelled: start
    /// nothing new.
    stopping: bool,
    retries_tx: tokio::sync::mpsc::UnboundedSender<Retry>,
}

impl<F: FnMut(Event<'_>)> Execution<'_, F> {
    /// Pass-through nodes complete at once; selected steps start (or are
    /// skipped as unchanged) while there is room.
    fn start_ready(&mut self) {
        while let Some(node) = self.walk.peek() {
            let graph = &self.pipeline.graph;
            let is_selected = matches!(graph[node], Node::Step(i) if self.selected[i]);
            let full = self.running.len() >= self.options.jobs.max(1);
            if is_selected && (full || self.stopping) {
                break;
            }
            self.walk.pop();
            match graph[node] {
                Node::Step(index) if self.selected[index] => {
                    // One that depends on a failure has its group edges let
                    // go already.
                    if !self.walk.abandoned.contains_key(&index) {
                        self.start(node, index);
                    }
                }
                _ => self.walk.release(node),
            }
        }
    }

    /// Skips the step when nothing it depends on changed; starts it otherwise.
    fn start(&mut self, node: NodeIndex, index: StepIndex) {
        let (pipeline, memory) = (self.pipeline, self.memory);
        let input = fingerprint::input(
            pipeline,
            index,
            &self.shared.base_dir,
            &memory.connections,
            &self.outputs,
            &memory.history,
            &memory.vars,
        );
        if let Some(previous) = self.unchanged(index, &input) {
            let mut result = StepResult::new(Status::Skipped {
                since: previous.run_id,
            });
            result.input_fingerprint = Some(input);
            result.output_fingerprint = Some(previous.output.clone());
            self.outputs.insert(index, previous.output.clone());
            (self.on_event)(Event::Finished {
                step: index,
                result: &result,
            });
            self.results.insert(index, result);
            self.walk.release(node);
            return;
        }
        tracing::debug!(step = %pipeline.steps[index].id, input = %input, "input fingerprint");
        self.inputs.insert(index, input);
        let progress = Arc::new(Progress::default());
        (self.on_event)(Event::Started {
            step: index,
            attempt: 1,
            progress: &progress,
        });
        self.running.spawn(attempts(
            pipeline,
            index,
            self.shared,
            self.options,
            self.cancel.child_token(),
            progress,
            self.retries_tx.clone(),
        ));
    }

    /// The last success the step can be skipped for, if any (the rule `flow
    /// plan` predicts with: [`crate::predict::verdict`]).
    fn unchanged(&self, index: StepIndex, input: &str) -> Option<&'_ Success> {
        use crate::predict::{Verdict, always_runs, verdict};
        if always_runs(self.pipeline, index, self.options.force).is_some() {
            return None;
        }
        let history = &self.memory.history;
        match verdict(self.pipeline, index, input, &self.shared.base_dir, history) {
            Verdict::Unchanged(previous) => Some(previous),
            Verdict::Runs(_) => None,
        }
    }

    /// The next step to end, passing on the retries reported meanwhile.
    async fn next_end(
        &mut self,
        retries: &mut UnboundedReceiver<Retry>,
    ) -> Option<(StepIndex, StepResult)> {
        loop {
            tokio::select! {
                Some((step, attempt, error, delay)) = retries.recv() => {
                    (self.on_event)(Event::Retrying { step, attempt, error: &error, delay });
                }
                joined = self.running.join_next() => {
                    return match joined? {
                        Ok(done) => Some(done),
                        Err(error) => {
                            tracing::error!(%error, "a step's task failed");
                            None
                        }
                    };
                }
            }
        }
    }

    /// A step ended: its output fingerprint, its event, and what it lets go
    /// or stops.
    fn ended(&mut self, index: StepIndex, mut result: StepResult) {
        result.input_fingerprint = self.inputs.remove(&index);
        if let (Status::Succeeded(outcome), Some(input)) =
            (&result.status, &result.input_fingerprint)
        {
            let key = &self.pipeline.steps[index].key;
            let previous = self.memory.history.get(key).map(|p| p.output.clone());
            let output = match previous {
                Some(previous) if outcome.unchanged => previous,
                _ if outcome.unchanged => input.clone(),
                _ => Digest::new()
                    .write(input.as_bytes())
                    .write(&self.memory.run_id.to_le_bytes())
                    .hex(),
            };
            self.outputs.insert(index, output.clone());
            result.output_fingerprint = Some(output);
        }
        (self.on_event)(Event::Finished {
            step: index,
            result: &result,
        });
        let node = self.pipeline.node_of(index);
        if result.succeeded() {
            self.walk.release(node);
        } else if !self.options.keep_going && !self.stopping {
            self.stopping = true;
            self.cancel.cancel();
        } else if self.options.keep_going {
            // Only what depends on the failure through data or `after`
            // waits for it; the group order does not.
            let key = self.pipeline.steps[index].key.clone();
            self.walk.abandon(node, &key);
        }
        self.results.insert(index, result);
        if self.cancel.is_cancelled() {
            self.stopping = true;
        }
    }

    /// Every selected step that did not start, with why; then every result.
    fn not_run(mut self) -> HashMap<StepIndex, StepResult> {
        for index in 0..self.pipeline.steps.len() {
            if self.selected[index] && !self.results.contains_key(&index) {
                let result = StepResult::new(Status::NotRun {
                    reason: self.walk.abandoned.remove(&index),
                });
                (self.on_event)(Event::Finished {
                    step: index,
                    result: &result,
                });
                self.results.insert(index, result);
            }
        }
        self.results
    }
}
