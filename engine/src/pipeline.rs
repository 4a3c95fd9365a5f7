use std::collections::BTreeMap;
use std::time::Duration;

use flow_dsl::Span;
use flow_dsl::ast::Value;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::operation::{Operation, Prepared};
use crate::param::Params;
use crate::resource::{Access, Resource};
use crate::step_id::StepId;

pub type StepIndex = usize;

/// A compiled flow: its declarations, its steps, and the DAG between them.
pub struct Pipeline {
    pub name: String,
    /// The group order, first to last.
    pub groups: Vec<String>,
    pub databases: BTreeMap<String, Declaration>,
    pub storages: BTreeMap<String, Declaration>,
    /// Per environment, the databases and storages it overrides.
    pub environments: BTreeMap<String, BTreeMap<String, Declaration>>,
    pub steps: Vec<StepNode>,
    pub schedules: Vec<Schedule>,
    pub checks: std::sync::Arc<Vec<Check>>,
    /// Steps and group barriers; an edge `a -> b` means `b` waits for `a`.
    pub graph: DiGraph<Node, EdgeReason>,
    /// The graph's nodes in a topological order, ties broken by step id.
    pub order: Vec<NodeIndex>,
    pub(crate) step_nodes: Vec<NodeIndex>,
    /// Per step, why it always runs, if it does: it reads a database or
    /// storage resource no step of the flow writes, or cannot say what it
    /// reads (see `fingerprint`).
    pub external: Vec<Option<String>>,
}

impl Pipeline {
    pub fn node_of(&self, step: StepIndex) -> NodeIndex {
        self.step_nodes[step]
    }

    pub fn find(&self, id: &str) -> Option<StepIndex> {
        self.steps.iter().position(|s| s.id.to_string() == id)
    }
}

/// A database or storage as declared: a literal or an `env(...)` value, resolved
/// when the flow runs.
#[derive(Debug, Clone)]
pub struct Declaration {
    pub value: Value,
    pub span: Span,
}

/// A node of the DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Step(StepIndex),
    /// Reached when every step of the group (by its index in the order) is done.
    GroupDone(usize),
}

/// Why one node waits for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeReason {
    /// The group order: `groups configure -> seed`.
    Group,
    /// `after = [...]` in the step.
    After,
    /// The upstream step touches a resource before this one may.
    Resource {
        upstream: Access,
        downstream: Access,
        resource: Resource,
    },
}

impl EdgeReason {
    /// The reason in words, for `flow plan`.
    pub fn describe(&self) -> String {
        match self {
            EdgeReason::Group => "group order".into(),
            EdgeReason::After => "declared in `after`".into(),
            EdgeReason::Resource {
                upstream,
                downstream,
                resource,
            } => format!(
                "it {} {resource}, which this step {}",
                upstream.verb(),
                downstream.verb()
            ),
        }
    }

    /// A short label, for graphs.
    pub fn label(&self) -> String {
        match self {
            EdgeReason::Group => "group".into(),
            EdgeReason::After => "after".into(),
            EdgeReason::Resource { resource, .. } => resource.to_string().replace('`', ""),
        }
    }
}

/// A step, checked and prepared.
pub struct StepNode {
    pub id: StepId,
    /// The id as text, made once.
    pub key: String,
    /// The id and parameters in canonical form: the static part of the
    /// step's fingerprint.
    pub signature: String,
    pub group: Option<String>,
    pub operation: &'static dyn Operation,
    pub params: std::sync::Arc<Params>,
    pub prepared: Prepared,
    pub retries: Option<u64>,
    pub timeout: Option<Duration>,
    /// The whole `step` statement.
    pub span: Span,
    /// The operation as written after `step`.
    pub header: Span,
}

impl StepNode {
    pub fn is_manual(&self) -> bool {
        self.group.as_deref() == Some(crate::MANUAL_GROUP)
    }
}

/// What a schedule does with the fires it missed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Records them and runs nothing.
    Skip,
    /// Runs only the newest (the default).
    Latest,
    /// Runs each, at most `max_missed`, one after another.
    All,
}

impl Missed {
    /// The value of `missed = "..."`; the compiler accepts only these.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "skip" => Some(Missed::Skip),
            "latest" => Some(Missed::Latest),
            "all" => Some(Missed::All),
            _ => None,
        }
    }
}

/// A `schedule` block, checked.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub cron: Option<String>,
    pub every: Option<Duration>,
    pub timezone: String,
    /// Groups and step patterns to run.
    pub run: Vec<String>,
    pub env: Option<String>,
    pub missed: Missed,
    /// With `missed = all`, at most this many missed fires run.
    pub max_missed: u64,
    /// `for_each`: one job per item, each a set of named values (`item`
    /// for a plain list); empty for a single job.
    pub items: Vec<Vec<(String, String)>>,
    pub span: Span,
}

impl Schedule {
    /// The schedule's jobs: their names (`nightly`, `nightly[2024]` for an
    /// item, `nightly[hallmark,2024]` for a combination) and values.
    pub fn jobs(&self) -> Vec<(String, Vec<(String, String)>)> {
        if self.items.is_empty() {
            vec![(self.name.clone(), Vec::new())]
        } else {
            self.items
                .iter()
                .map(|values| {
                    let shown: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
                    (
                        format!("{}[{}]", self.name, shown.join(",")),
                        values.clone(),
                    )
                })
                .collect()
        }
    }

    /// When it fires; checked when the flow was compiled.
    pub fn trigger(&self) -> Option<crate::Trigger> {
        crate::Trigger::parse(self.cron.as_deref(), self.every, &self.timezone).ok()
    }
}

/// A `check` block, checked.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub database: String,
    pub schema: String,
    pub table: String,
    pub params: Params,
    pub span: Span,
}
