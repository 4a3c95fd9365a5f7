//! The DAG laid out for the page: a column per wave (a step sits right of
//! every step it waits for), and rows ordered so that edges cross little:
//! each column sorted by the mean row of the steps its steps wait for, then
//! once back by the steps that wait for them. Linear in steps and edges, so
//! a 10,000-step flow is laid out in milliseconds, once per served flow.

use std::collections::HashMap;

use flow_engine::Plan;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub(crate) struct Graph {
    pub flow: String,
    pub groups: Vec<String>,
    pub columns: usize,
    pub rows: usize,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Node {
    pub id: String,
    pub group: Option<String>,
    pub column: usize,
    pub row: usize,
    /// Groups all of whose steps must be done first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_groups: Vec<String>,
}

/// `to` waits for `from` (indices into `nodes`), for `reason`.
#[derive(Debug, Serialize)]
pub(crate) struct Edge {
    pub from: usize,
    pub to: usize,
    pub reason: String,
}

pub(crate) fn lay_out(plan: &Plan, groups: &[String]) -> Graph {
    let index: HashMap<&str, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut edges = Vec::new();
    for (to, step) in plan.steps.iter().enumerate() {
        for (k, after) in step.after.iter().enumerate() {
            if let Some(&from) = index.get(after.as_str()) {
                let reason = step.reasons.get(k).cloned().unwrap_or_default();
                edges.push(Edge { from, to, reason });
            }
        }
    }
    let column_of: Vec<usize> = plan
        .steps
        .iter()
        .map(|s| s.wave.saturating_sub(1))
        .collect();
    let columns = column_of.iter().max().map_or(0, |c| c + 1);
    let mut by_column: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for (i, &c) in column_of.iter().enumerate() {
        by_column[c].push(i);
    }
    let mut row = vec![0usize; plan.steps.len()];
    by_column.iter().for_each(|c| place(c, &mut row));
    let mut before: Vec<Vec<usize>> = vec![Vec::new(); plan.steps.len()];
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); plan.steps.len()];
    for edge in &edges {
        before[edge.to].push(edge.from);
        after[edge.from].push(edge.to);
    }
    // Forward by what each step waits for, then back by what waits for it.
    for column in by_column.iter_mut().skip(1) {
        reorder(column, &before, &mut row);
    }
    for column in by_column.iter_mut().rev().skip(1) {
        reorder(column, &after, &mut row);
    }
    let nodes = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| Node {
            id: s.id.clone(),
            group: s.group.clone(),
            column: column_of[i],
            row: row[i],
            after_groups: s.after_groups.clone(),
        })
        .collect();
    Graph {
        flow: plan.flow.clone(),
        groups: groups.to_vec(),
        columns,
        rows: by_column.iter().map(Vec::len).max().unwrap_or(0),
        nodes,
        edges,
    }
}

fn place(column: &[usize], row: &mut [usize]) {
    for (r, &i) in column.iter().enumerate() {
        row[i] = r;
    }
}

/// Sorts a column's steps by the mean row of their `neighbours` (a step
/// with none keeps its row), and gives them their new rows.
fn reorder(column: &mut Vec<usize>, neighbours: &[Vec<usize>], row: &mut [usize]) {
    let mut keyed: Vec<(f64, usize)> = column
        .iter()
        .map(|&i| {
            let of = &neighbours[i];
            let mean = if of.is_empty() {
                row[i] as f64
            } else {
                of.iter().map(|&n| row[n] as f64).sum::<f64>() / of.len() as f64
            };
            (mean, i)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    *column = keyed.into_iter().map(|(_, i)| i).collect();
    place(column, row);
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_engine::PlannedStep;

    fn step(id: &str, wave: usize, after: &[&str]) -> PlannedStep {
        PlannedStep {
            id: id.into(),
            group: Some("g".into()),
            wave,
            after: after.iter().map(|s| (*s).to_owned()).collect(),
            after_groups: Vec::new(),
            reasons: after
                .iter()
                .map(|s| format!("reads what {s} writes"))
                .collect(),
            prediction: None,
            parts: Vec::new(),
            index: 0,
        }
    }

    #[test]
    fn steps_sit_right_of_what_they_wait_for_and_edges_do_not_cross() {
        // a1 -> b2, a2 -> b1: the second column is reordered so the edges
        // run straight.
        let plan = Plan {
            flow: "f".into(),
            total: 4,
            waves: 2,
            steps: vec![
                step("a1", 1, &[]),
                step("a2", 1, &[]),
                step("b1", 2, &["a2"]),
                step("b2", 2, &["a1"]),
            ],
        };
        let graph = lay_out(&plan, &["g".into()]);
        let at = |id: &str| {
            let n = graph.nodes.iter().find(|n| n.id == id).expect("node");
            (n.column, n.row)
        };
        assert_eq!((graph.columns, graph.rows), (2, 2));
        assert_eq!(at("a1"), (0, 0));
        assert_eq!(at("b2"), (1, 0));
        assert_eq!(at("b1"), (1, 1));
        assert_eq!(graph.edges.len(), 2);
        assert_eq!(graph.edges[0].reason, "reads what a2 writes");
    }
}
