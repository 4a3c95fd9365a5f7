//! What would run, in what order, and why.

use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use serde::Serialize;

use crate::pipeline::{Node, Pipeline, StepIndex};

/// The selected steps in waves: every step of a wave can run at the same time,
/// once the waves before it are done.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub flow: String,
    /// How many steps the flow has, selected or not.
    pub total: usize,
    pub waves: usize,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub id: String,
    pub group: Option<String>,
    /// Starting at 1.
    pub wave: usize,
    /// Selected steps this one waits for.
    pub after: Vec<String>,
    /// Groups whose selected steps must all be done first.
    pub after_groups: Vec<String>,
    /// Why, for each entry of `after`.
    pub reasons: Vec<String>,
    /// Whether a run would skip it, when the run records were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<String>,
    /// The units a step runs, in order, when its operation can tell before
    /// running (the SQL files of a transform).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    #[serde(skip)]
    pub index: StepIndex,
}

impl Plan {
    /// Plans the selected steps. A step whose upstream is not selected runs
    /// against what is already there; order between selected steps is kept even
    /// when the steps that linked them are not selected.
    /// The plan with each step's parts (the SQL files of a transform, in
    /// their order), which the operations read from the files under `base`.
    pub fn with_parts(pipeline: &Pipeline, selected: &[bool], base: &std::path::Path) -> Self {
        let mut plan = Self::new(pipeline, selected);
        for step in &mut plan.steps {
            let node = &pipeline.steps[step.index];
            step.parts = node.operation.parts(&node.params, base);
        }
        plan
    }

    pub fn new(pipeline: &Pipeline, selected: &[bool]) -> Self {
        let graph = &pipeline.graph;
        let is_selected = |node: NodeIndex| matches!(graph[node], Node::Step(i) if selected[i]);
        let count = graph.node_count();
        // Waves that must be done before this node's successors may start.
        let mut done = vec![0usize; count];
        // Whether any selected step is upstream of (or is) this node.
        let mut feeds = vec![false; count];
        let mut steps = Vec::new();
        for &node in &pipeline.order {
            let mut wave = 0;
            let mut fed = false;
            for pred in graph.neighbors_directed(node, Direction::Incoming) {
                wave = wave.max(done[pred.index()]);
                fed |= feeds[pred.index()];
            }
            if is_selected(node) {
                done[node.index()] = wave + 1;
                feeds[node.index()] = true;
                if let Node::Step(index) = graph[node] {
                    steps.push(planned(pipeline, selected, &feeds, node, index, wave + 1));
                }
            } else {
                done[node.index()] = wave;
                feeds[node.index()] = fed;
            }
        }
        steps.sort_by(|a, b| a.wave.cmp(&b.wave).then_with(|| a.id.cmp(&b.id)));
        Plan {
            flow: pipeline.name.clone(),
            total: pipeline.steps.len(),
            waves: steps.iter().map(|s| s.wave).max().unwrap_or(0),
            steps,
        }
    }

    /// The plan for people: waves, steps, and the reason for each dependency.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "flow `{}`: {} of {} steps in {} {}",
            self.flow,
            self.steps.len(),
            self.total,
            self.waves,
            if self.waves == 1 { "wave" } else { "waves" }
        );
        let width = self.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
        let mut wave = 0;
        for step in &self.steps {
            if step.wave != wave {
                wave = step.wave;
                let _ = writeln!(out, "\nwave {wave}");
            }
            let group = step
                .group
                .as_deref()
                .map(|g| format!("  [{g}]"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {:width$}{group}", step.id);
            for group in &step.after_groups {
                let _ = writeln!(out, "      after group `{group}`");
            }
            for (after, reason) in step.after.iter().zip(&step.reasons) {
                let _ = writeln!(out, "      after `{after}`: {reason}");
            }
            for (n, part) in step.parts.iter().enumerate() {
                let _ = writeln!(out, "      {}. {part}", n + 1);
            }
            if let Some(prediction) = &step.prediction {
                let _ = writeln!(out, "      {prediction}");
            }
        }
        if self.steps.is_empty() {
            out.push_str("\nnothing to run\n");
        }
        out
    }
}

fn planned(
    pipeline: &Pipeline,
    selected: &[bool],
    feeds: &[bool],
    node: NodeIndex,
    index: StepIndex,
    wave: usize,
) -> PlannedStep {
    let graph = &pipeline.graph;
    let mut after = Vec::new();
    let mut reasons = Vec::new();
    let mut after_groups = Vec::new();
    let mut stack: Vec<(NodeIndex, Option<String>)> = graph
        .edges_directed(node, Direction::Incoming)
        .map(|edge| {
            use petgraph::visit::EdgeRef;
            (edge.source(), Some(edge.weight().describe()))
        })
        .collect();
    let mut visited = std::collections::HashSet::new();
    while let Some((pred, reason)) = stack.pop() {
        if !visited.insert(pred) || !feeds[pred.index()] {
            continue;
        }
        match graph[pred] {
            Node::Step(j) if selected[j] => {
                after.push(pipeline.steps[j].key.clone());
                reasons.push(reason.unwrap_or_default());
            }
            Node::Step(j) => {
                let through = format!("through `{}`, which is not selected", pipeline.steps[j].id);
                for up in graph.neighbors_directed(pred, Direction::Incoming) {
                    stack.push((up, Some(through.clone())));
                }
            }
            Node::GroupDone(k) => after_groups.push(pipeline.groups[k].clone()),
        }
    }
    let mut pairs: Vec<(String, String)> = after.into_iter().zip(reasons).collect();
    pairs.sort();
    after_groups.sort();
    let step = &pipeline.steps[index];
    let (after, reasons) = pairs.into_iter().unzip();
    PlannedStep {
        id: step.key.clone(),
        group: step.group.clone(),
        wave,
        after,
        reasons,
        after_groups,
        index,
        prediction: None,
        parts: Vec::new(),
    }
}

/// A plan as `flow plan --json` prints it (and `flow serve` serves it): its
/// steps, and the environment's connections with passwords hidden.
pub fn plan_json(plan: &Plan, connections: &crate::Connections) -> serde_json::Value {
    let mut value = serde_json::to_value(plan).unwrap_or_default();
    value["environment"] = serde_json::json!(connections.environment);
    value["databases"] = serde_json::json!(connections.databases);
    value["storages"] = serde_json::json!(connections.storages);
    value
}
