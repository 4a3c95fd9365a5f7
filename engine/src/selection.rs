//! Which steps a command works on: `--group`, `--step`, `--from`, `--until`,
//! `--exclude`.
//!
//! `--group` and `--step` add to the selection (a `+` before a step adds its
//! upstream, after it its downstream); with neither, every step outside the
//! `manual` group is selected. `--from S` then keeps only S and what is
//! downstream of it, `--until S` only S and what is upstream of it, and
//! `--exclude` removes steps last. A step of the `manual` group is only selected
//! by its own name or by `--group manual`, never by a glob or as someone's
//! upstream or downstream.

use miette::Diagnostic;
use petgraph::Direction;
use petgraph::visit::Bfs;
use thiserror::Error;

use crate::MANUAL_GROUP;
use crate::pipeline::{Node, Pipeline, StepIndex};
use crate::step_id::StepPattern;
use crate::suggest::did_you_mean;

#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub groups: Vec<String>,
    pub steps: Vec<String>,
    pub from: Vec<String>,
    pub until: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Error, Diagnostic)]
pub enum SelectionError {
    #[error("unknown group `{name}`")]
    #[diagnostic(code(flow::select::unknown_group))]
    UnknownGroup {
        name: String,
        #[help]
        help: String,
    },
    #[error("`{pattern}` matches no step")]
    #[diagnostic(code(flow::select::unknown_step))]
    UnknownStep {
        pattern: String,
        #[help]
        help: String,
    },
    #[error("{message}")]
    #[diagnostic(
        code(flow::select::invalid_pattern),
        help(
            "step patterns are globs over step ids, like `pg:source:*`, with `+` before for upstream or after for downstream"
        )
    )]
    InvalidPattern { message: String },
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.steps.is_empty()
            && self.from.is_empty()
            && self.until.is_empty()
            && self.exclude.is_empty()
    }

    /// For each step of the pipeline, whether it is selected.
    pub fn apply(&self, pipeline: &Pipeline) -> Result<Vec<bool>, Vec<SelectionError>> {
        let mut errors = Vec::new();
        let count = pipeline.steps.len();
        let mut selected = vec![false; count];
        if self.groups.is_empty() && self.steps.is_empty() {
            for (i, step) in pipeline.steps.iter().enumerate() {
                selected[i] = !step.is_manual();
            }
        }
        for group in &self.groups {
            let known = group == MANUAL_GROUP || pipeline.groups.contains(group);
            if !known {
                let mut names: Vec<&str> = pipeline.groups.iter().map(String::as_str).collect();
                names.push(MANUAL_GROUP);
                errors.push(SelectionError::UnknownGroup {
                    name: group.clone(),
                    help: did_you_mean(group, "groups", names.iter().copied()),
                });
                continue;
            }
            for (i, step) in pipeline.steps.iter().enumerate() {
                if step.group.as_deref() == Some(group.as_str()) {
                    selected[i] = true;
                }
            }
        }
        for text in &self.steps {
            let Some((pattern, matched)) = matches(pipeline, text, &mut errors) else {
                continue;
            };
            for &i in &matched {
                selected[i] = true;
                if pattern.upstream {
                    for j in reachable(pipeline, i, Direction::Incoming) {
                        selected[j] = true;
                    }
                }
                if pattern.downstream {
                    for j in reachable(pipeline, i, Direction::Outgoing) {
                        selected[j] = true;
                    }
                }
            }
        }
        for (texts, direction) in [
            (&self.from, Direction::Outgoing),
            (&self.until, Direction::Incoming),
        ] {
            for text in texts {
                let Some((_, matched)) = matches(pipeline, text, &mut errors) else {
                    continue;
                };
                let mut keep = vec![false; count];
                for i in matched {
                    keep[i] = true;
                    for j in reachable(pipeline, i, direction) {
                        keep[j] = true;
                    }
                }
                for (s, k) in selected.iter_mut().zip(keep) {
                    *s &= k;
                }
            }
        }
        for text in &self.exclude {
            let Some((_, matched)) = matches(pipeline, text, &mut errors) else {
                continue;
            };
            for i in matched {
                selected[i] = false;
            }
        }
        if errors.is_empty() {
            Ok(selected)
        } else {
            Err(errors)
        }
    }
}

/// The steps a pattern names; manual steps only by their exact name.
fn matches(
    pipeline: &Pipeline,
    text: &str,
    errors: &mut Vec<SelectionError>,
) -> Option<(StepPattern, Vec<StepIndex>)> {
    let pattern = match StepPattern::parse(text) {
        Ok(pattern) => pattern,
        Err(message) => {
            errors.push(SelectionError::InvalidPattern { message });
            return None;
        }
    };
    let matched: Vec<StepIndex> = pipeline
        .steps
        .iter()
        .enumerate()
        .filter(|(_, step)| pattern.matches(&step.id) && (!step.is_manual() || pattern.is_exact()))
        .map(|(i, _)| i)
        .collect();
    if matched.is_empty() {
        let ids: Vec<String> = pipeline.steps.iter().map(|s| s.id.to_string()).collect();
        errors.push(SelectionError::UnknownStep {
            pattern: text.to_owned(),
            help: did_you_mean(&pattern.text, "steps", ids.iter().map(String::as_str)),
        });
        return None;
    }
    Some((pattern, matched))
}

/// Steps reachable from `step` in `direction`, manual steps left out.
fn reachable(pipeline: &Pipeline, step: StepIndex, direction: Direction) -> Vec<StepIndex> {
    let graph = petgraph::visit::Reversed(&pipeline.graph);
    let mut found = Vec::new();
    let start = pipeline.node_of(step);
    let mut push = |node| {
        if let Node::Step(j) = pipeline.graph[node]
            && j != step
            && !pipeline.steps[j].is_manual()
        {
            found.push(j);
        }
    };
    if direction == Direction::Incoming {
        let mut bfs = Bfs::new(graph, start);
        while let Some(node) = bfs.next(graph) {
            push(node);
        }
    } else {
        let mut bfs = Bfs::new(&pipeline.graph, start);
        while let Some(node) = bfs.next(&pipeline.graph) {
            push(node);
        }
    }
    found
}
