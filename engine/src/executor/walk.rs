//! The walk over the DAG: which nodes are ready, in the flow's order, as
//! the nodes before them end.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef as _;

use crate::pipeline::{EdgeReason, Node, Pipeline, StepIndex};

pub(super) struct Walk<'p> {
    pipeline: &'p Pipeline,
    /// Per node, the nodes before it that have not ended.
    waiting: Vec<usize>,
    /// Per node, its place in the flow's order: ready nodes start in it.
    position: Vec<usize>,
    ready: BinaryHeap<Reverse<(usize, NodeIndex)>>,
    /// Steps that cannot run (under `keep_going`), and why.
    pub(super) abandoned: HashMap<StepIndex, String>,
}

impl<'p> Walk<'p> {
    pub(super) fn new(pipeline: &'p Pipeline) -> Self {
        let graph = &pipeline.graph;
        let waiting: Vec<usize> = graph
            .node_indices()
            .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
            .collect();
        let mut position = vec![0usize; graph.node_count()];
        for (i, node) in pipeline.order.iter().enumerate() {
            position[node.index()] = i;
        }
        let ready = graph
            .node_indices()
            .filter(|node| waiting[node.index()] == 0)
            .map(|node| Reverse((position[node.index()], node)))
            .collect();
        Self {
            pipeline,
            waiting,
            position,
            ready,
            abandoned: HashMap::new(),
        }
    }

    /// The next ready node, without taking it.
    pub(super) fn peek(&self) -> Option<NodeIndex> {
        self.ready.peek().map(|Reverse((_, node))| *node)
    }

    pub(super) fn pop(&mut self) {
        self.ready.pop();
    }

    fn done(&mut self, next: NodeIndex) {
        self.waiting[next.index()] -= 1;
        if self.waiting[next.index()] == 0 {
            self.ready
                .push(Reverse((self.position[next.index()], next)));
        }
    }

    /// Marks `node` done: its successors with nothing left to wait for are
    /// ready.
    pub(super) fn release(&mut self, node: NodeIndex) {
        let graph = &self.pipeline.graph;
        for next in graph.neighbors_directed(node, Direction::Outgoing) {
            self.done(next);
        }
    }

    /// After a failure under `keep_going`: the steps that depend on `node`
    /// through data or `after` cannot run (each remembers why), and neither
    /// can theirs; their group-order edges are released, so that later
    /// groups do not wait for steps that will never run.
    pub(super) fn abandon(&mut self, node: NodeIndex, failed: &str) {
        let graph = &self.pipeline.graph;
        let mut stack = vec![node];
        let mut seen = HashSet::new();
        while let Some(current) = stack.pop() {
            if !seen.insert(current) {
                continue;
            }
            for edge in graph.edges_directed(current, Direction::Outgoing) {
                let next = edge.target();
                match edge.weight() {
                    EdgeReason::Group => self.done(next),
                    reason => {
                        // Each step is abandoned once, whatever the number of
                        // failures it depends on: its edges are let go once.
                        if let Node::Step(step) = graph[next]
                            && !self.abandoned.contains_key(&step)
                        {
                            let how = match reason {
                                EdgeReason::After => "through `after`".to_owned(),
                                other => format!("({})", other.describe()),
                            };
                            self.abandoned.insert(
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
}
