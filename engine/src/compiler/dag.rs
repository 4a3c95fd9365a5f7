//! The steps linked into a DAG, each edge with its reason, and its order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use flow_dsl::ast::Ident;
use miette::LabeledSpan;
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::CompileError;
use crate::pipeline::{EdgeReason, Node, StepNode};
use crate::resource::{Access, Resource, ResourceIndex};

/// Builds the DAG: group barriers, `after`, and resources. Also says, for
/// each step, whether it reads a database resource that no step of the flow
/// creates or writes (so that its input can change unseen).
pub(super) fn link(
    groups: &[Ident],
    steps: &[StepNode],
    afters: &[Vec<usize>],
) -> (
    DiGraph<Node, EdgeReason>,
    Vec<NodeIndex>,
    Vec<Option<String>>,
) {
    let mut graph = DiGraph::with_capacity(steps.len() + groups.len(), steps.len() * 3);
    let step_nodes: Vec<NodeIndex> = (0..steps.len())
        .map(|i| graph.add_node(Node::Step(i)))
        .collect();
    let group_nodes: Vec<NodeIndex> = (0..groups.len())
        .map(|k| graph.add_node(Node::GroupDone(k)))
        .collect();
    let rank: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(k, g)| (g.as_str(), k))
        .collect();
    let rank_of = |step: &StepNode| step.group.as_deref().and_then(|g| rank.get(g).copied());
    let mut seen: HashSet<(NodeIndex, NodeIndex)> = HashSet::new();
    let mut add = |graph: &mut DiGraph<Node, EdgeReason>,
                   from: NodeIndex,
                   to: NodeIndex,
                   reason: EdgeReason| {
        if seen.insert((from, to)) {
            graph.add_edge(from, to, reason);
        }
    };
    for k in 1..group_nodes.len() {
        add(
            &mut graph,
            group_nodes[k - 1],
            group_nodes[k],
            EdgeReason::Group,
        );
    }
    for (i, step) in steps.iter().enumerate() {
        if let Some(k) = rank_of(step) {
            add(&mut graph, step_nodes[i], group_nodes[k], EdgeReason::Group);
            if k > 0 {
                add(
                    &mut graph,
                    group_nodes[k - 1],
                    step_nodes[i],
                    EdgeReason::Group,
                );
            }
        }
    }
    for (i, after) in afters.iter().enumerate() {
        for &j in after {
            add(&mut graph, step_nodes[j], step_nodes[i], EdgeReason::After);
        }
    }
    let external = resources(steps, &rank_of, |from, to, reason| {
        add(&mut graph, step_nodes[from], step_nodes[to], reason);
    });
    (graph, step_nodes, external)
}

/// Kahn's algorithm with ties broken by step id (barriers after steps); on a
/// cycle, returns the nodes of one cycle in dependency order.
pub(super) fn topological_order(
    graph: &DiGraph<Node, EdgeReason>,
    steps: &[StepNode],
) -> Result<Vec<NodeIndex>, Vec<NodeIndex>> {
    let mut by_id: Vec<usize> = (0..steps.len()).collect();
    by_id.sort_by(|&a, &b| steps[a].id.cmp(&steps[b].id));
    let mut rank = vec![0usize; steps.len()];
    for (position, &step) in by_id.iter().enumerate() {
        rank[step] = position;
    }
    let key = |node: NodeIndex| match graph[node] {
        Node::Step(i) => (0, rank[i]),
        Node::GroupDone(k) => (1, k),
    };
    let mut indegree: Vec<usize> = graph
        .node_indices()
        .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<((u8, usize), NodeIndex)>> = graph
        .node_indices()
        .filter(|n| indegree[n.index()] == 0)
        .map(|n| Reverse((key(n), n)))
        .collect();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(Reverse((_, node))) = ready.pop() {
        order.push(node);
        for next in graph.neighbors_directed(node, Direction::Outgoing) {
            indegree[next.index()] -= 1;
            if indegree[next.index()] == 0 {
                ready.push(Reverse((key(next), next)));
            }
        }
    }
    if order.len() == graph.node_count() {
        return Ok(order);
    }
    // Every node left has a predecessor left: walk back until a node repeats.
    let Some(start) = graph.node_indices().find(|n| indegree[n.index()] > 0) else {
        return Ok(order);
    };
    let mut path = vec![start];
    let mut position: HashMap<NodeIndex, usize> = HashMap::from([(start, 0)]);
    let mut node = start;
    loop {
        let Some(previous) = graph
            .neighbors_directed(node, Direction::Incoming)
            .filter(|p| indegree[p.index()] > 0)
            .min_by_key(|&p| key(p))
        else {
            return Err(path);
        };
        if let Some(&at) = position.get(&previous) {
            let mut cycle: Vec<NodeIndex> = path[at..].to_vec();
            cycle.reverse();
            // Start the cycle at a step, for a readable message.
            if let Some(first) = cycle
                .iter()
                .position(|n| matches!(graph[*n], Node::Step(_)))
            {
                cycle.rotate_left(first);
            }
            return Err(cycle);
        }
        position.insert(previous, path.len());
        path.push(previous);
        node = previous;
    }
}

pub(super) fn cycle_error(
    graph: &DiGraph<Node, EdgeReason>,
    steps: &[StepNode],
    groups: &[Ident],
    cycle: &[NodeIndex],
) -> CompileError {
    let name = |node: NodeIndex| match graph[node] {
        Node::Step(i) => format!("`{}`", steps[i].id),
        Node::GroupDone(k) => format!("(group `{}` done)", groups[k].name),
    };
    let mut path: Vec<String> = cycle.iter().map(|&n| name(n)).collect();
    if let Some(first) = path.first().cloned() {
        path.push(first);
    }
    let mut labels = Vec::new();
    for (position, &node) in cycle.iter().enumerate() {
        let Node::Step(i) = graph[node] else { continue };
        let previous = cycle[(position + cycle.len() - 1) % cycle.len()];
        let reason = graph
            .find_edge(previous, node)
            .map(|e| graph[e].describe())
            .unwrap_or_default();
        let text = format!("waits for {}: {reason}", name(previous));
        labels.push(LabeledSpan::new_with_span(Some(text), steps[i].header));
    }
    CompileError::Cycle {
        path: path.join(" → "),
        labels,
    }
}

/// The edges resources make: a step waits for the steps that create or
/// write what it reads or writes (not those of later groups). Returns, for
/// each step, why it can change unseen: it reads a database resource that no
/// step of the flow creates or writes.
fn resources(
    steps: &[StepNode],
    rank_of: &dyn Fn(&StepNode) -> Option<usize>,
    mut edge: impl FnMut(usize, usize, EdgeReason),
) -> Vec<Option<String>> {
    let mut index = ResourceIndex::default();
    for (i, step) in steps.iter().enumerate() {
        for (access, resource) in &step.prepared.accesses {
            index.insert(i, *access, resource);
        }
    }
    let mut external: Vec<Option<String>> =
        steps.iter().map(|s| s.prepared.always.clone()).collect();
    for (i, step) in steps.iter().enumerate() {
        let mine = rank_of(step);
        for (access, resource) in &step.prepared.accesses {
            let mut found = Vec::new();
            index.upstream(i, *access, resource, |j, upstream, theirs| {
                found.push((j, upstream, theirs))
            });
            let reads_unwritten = *access == Access::Read
                && !matches!(resource, Resource::File { .. })
                && found.is_empty();
            if reads_unwritten && external[i].is_none() {
                external[i] = Some(match resource {
                    Resource::Objects { .. } => {
                        format!("it reads {resource}, which can change outside the flow")
                    }
                    _ => format!("it reads {resource}, which no step of this flow writes"),
                });
            }
            found.sort_unstable_by_key(|(j, upstream, _)| (*j, *upstream));
            for (j, upstream, theirs) in found {
                // A step reads what earlier groups wrote, not what later ones will.
                let later = matches!((rank_of(&steps[j]), mine), (Some(theirs), Some(mine)) if theirs > mine);
                if !later {
                    let reason = EdgeReason::Resource {
                        upstream,
                        downstream: *access,
                        resource: theirs.clone(),
                    };
                    edge(j, i, reason);
                }
            }
        }
    }
    external
}
