//! `flow graph`: the planned steps and their dependencies as DOT or Mermaid.

use std::fmt::Write as _;

use crate::plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// Renders the plan's steps as nodes and their dependencies as labelled edges;
/// a group dependency is drawn from every step of the group waited for.
pub fn render_graph(plan: &Plan, format: GraphFormat) -> String {
    let mut out = String::new();
    let node_id = |id: &str| {
        format!(
            "s{}",
            plan.steps.iter().position(|s| s.id == id).unwrap_or(0)
        )
    };
    let edges = edges(plan);
    match format {
        GraphFormat::Dot => {
            let _ = writeln!(out, "digraph \"{}\" {{", escape(&plan.flow));
            out.push_str(
                "  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"sans-serif\"];\n",
            );
            let mut groups: Vec<&str> = plan
                .steps
                .iter()
                .filter_map(|s| s.group.as_deref())
                .collect();
            groups.sort_unstable();
            groups.dedup();
            for group in &groups {
                let _ = writeln!(
                    out,
                    "  subgraph \"cluster_{}\" {{\n    label=\"{}\";",
                    escape(group),
                    escape(group)
                );
                for step in plan
                    .steps
                    .iter()
                    .filter(|s| s.group.as_deref() == Some(group))
                {
                    let _ = writeln!(
                        out,
                        "    {} [label=\"{}\"];",
                        node_id(&step.id),
                        escape(&step.id)
                    );
                }
                out.push_str("  }\n");
            }
            for step in plan.steps.iter().filter(|s| s.group.is_none()) {
                let _ = writeln!(
                    out,
                    "  {} [label=\"{}\"];",
                    node_id(&step.id),
                    escape(&step.id)
                );
            }
            for (from, to, label) in &edges {
                let _ = writeln!(
                    out,
                    "  {} -> {} [label=\"{}\"];",
                    node_id(from),
                    node_id(to),
                    escape(label)
                );
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for step in &plan.steps {
                let _ = writeln!(
                    out,
                    "  {}[\"{}\"]",
                    node_id(&step.id),
                    step.id.replace('"', "#quot;")
                );
            }
            for (from, to, label) in &edges {
                let _ = writeln!(
                    out,
                    "  {} -->|{}| {}",
                    node_id(from),
                    label.replace('|', "/"),
                    node_id(to)
                );
            }
        }
    }
    out
}

/// Every dependency between planned steps, as (from, to, label).
fn edges(plan: &Plan) -> Vec<(String, String, String)> {
    let mut edges = Vec::new();
    for step in &plan.steps {
        for (after, reason) in step.after.iter().zip(&step.reasons) {
            edges.push((after.clone(), step.id.clone(), short(reason)));
        }
        for group in &step.after_groups {
            for other in plan
                .steps
                .iter()
                .filter(|s| s.group.as_deref() == Some(group))
            {
                edges.push((other.id.clone(), step.id.clone(), format!("group {group}")));
            }
        }
    }
    edges
}

fn short(reason: &str) -> String {
    let reason = reason.replace('`', "");
    match reason.split_once(", which") {
        Some((what, _)) => what.trim_start_matches("it ").to_owned(),
        None => reason,
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
