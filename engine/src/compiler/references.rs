//! References between steps: `after`, and the step patterns of schedules.

use std::collections::HashMap;

use flow_dsl::ast::{Block, Flow, Item, Value, ValueKind};

use super::{Compiler, params::block_param};
use crate::CompileError;
use crate::pipeline::StepNode;
use crate::step_id::StepPattern;
use crate::suggest::did_you_mean;

/// Steps by full id and, for named steps, by operation too: what an exact
/// pattern matches, without scanning every step.
pub(super) struct StepIds {
    by_text: HashMap<String, Vec<usize>>,
}

impl StepIds {
    pub(super) fn new(steps: &[StepNode]) -> Self {
        let mut by_text: HashMap<String, Vec<usize>> = HashMap::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            by_text.entry(step.id.to_string()).or_default().push(i);
            if step.id.name.is_some() {
                by_text.entry(step.id.triple()).or_default().push(i);
            }
        }
        Self { by_text }
    }
}

/// The step references of a schedule's `run`, as text.
pub(super) fn step_refs(block: &Block) -> Vec<String> {
    let Some(ValueKind::List(items)) = block_param(block, "run").map(|p| &p.value.kind) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match &item.kind {
            ValueKind::StepRef { operation, name } => Some(match name {
                Some(name) => format!("{}/{}", flow_dsl::ast::join_segments(operation), name.name),
                None => flow_dsl::ast::join_segments(operation),
            }),
            _ => None,
        })
        .collect()
}

impl Compiler<'_> {
    /// Resolves every step's `after` to step indexes.
    pub(super) fn afters(&mut self, flow: &Flow, steps: &[StepNode]) -> Vec<Vec<usize>> {
        let mut afters = vec![Vec::new(); steps.len()];
        let ids = StepIds::new(steps);
        let by_span: HashMap<usize, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span.start, i))
            .collect();
        for item in &flow.items {
            let Item::Step(step) = item else { continue };
            let Some(&index) = by_span.get(&step.span.start) else {
                continue;
            };
            let Some(after) = step.param("after") else {
                continue;
            };
            let ValueKind::List(items) = &after.value.kind else {
                continue;
            };
            for item in items {
                if let Some(matched) = self.match_steps(item, steps, &ids) {
                    afters[index].extend(matched);
                }
            }
        }
        afters
    }

    /// The steps a reference in `after` or `run` names; reports when it names none.
    pub(super) fn match_steps(
        &mut self,
        item: &Value,
        steps: &[StepNode],
        ids: &StepIds,
    ) -> Option<Vec<usize>> {
        let text = match &item.kind {
            ValueKind::StepRef { operation, name } => {
                let mut text = flow_dsl::ast::join_segments(operation);
                if let Some(name) = name {
                    text.push('/');
                    text.push_str(&name.name);
                }
                text
            }
            ValueKind::String(text) => text.clone(),
            _ => return None,
        };
        let pattern = match StepPattern::parse(&text) {
            Ok(pattern) => pattern,
            Err(message) => {
                self.errors.push(CompileError::InvalidValue {
                    message,
                    span: item.span.into(),
                    help: None,
                });
                return None;
            }
        };
        let matched: Vec<usize> = if pattern.is_exact() {
            ids.by_text
                .get(pattern.text.as_str())
                .cloned()
                .unwrap_or_default()
        } else {
            (0..steps.len())
                .filter(|&i| pattern.matches(&steps[i].id))
                .collect()
        };
        if matched.is_empty() {
            let ids: Vec<String> = steps.iter().map(|s| s.id.to_string()).collect();
            self.errors.push(CompileError::UnknownStep {
                help: did_you_mean(&text, "steps", ids.iter().map(String::as_str)),
                pattern: text,
                span: item.span.into(),
            });
            return None;
        }
        Some(matched)
    }
}
