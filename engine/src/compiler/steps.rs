//! Each `step` block: its operation found, its parameters checked, and its
//! operation's `prepare` asked what it touches.

use std::collections::HashMap;

use flow_dsl::Span;
use flow_dsl::ast::{Flow, Ident, Item, Step};

use super::{
    Compiler,
    params::{duration, unknown},
};
use crate::CompileError;
use crate::operation::{Operation, Problem, StepContext, Target};
use crate::param::{ParamSpec, ParamType};
use crate::pipeline::StepNode;
use crate::step_id::StepId;
use crate::suggest::did_you_mean;

/// Parameters every step accepts, whatever its operation.
pub(super) const STEP_PARAMS: &[ParamSpec] = &[
    ParamSpec::optional("group", ParamType::Name, "the group the step belongs to"),
    ParamSpec::optional("after", ParamType::Steps, "steps this one waits for"),
    ParamSpec::optional(
        "retries",
        ParamType::Count,
        "retries after a transient error",
    ),
    ParamSpec::optional(
        "timeout",
        ParamType::Duration,
        "how long one attempt may take",
    ),
];

pub(super) fn problem_error(step: &Step, problem: Problem) -> CompileError {
    let span = problem
        .param
        .and_then(|key| step.param(key))
        .map_or(step.operation_span, |p| p.value.span);
    CompileError::InvalidValue {
        message: problem.message,
        span: span.into(),
        help: problem.help,
    }
}

impl Compiler<'_> {
    pub(super) fn steps(&mut self, flow: &Flow) -> Vec<StepNode> {
        let mut steps: Vec<StepNode> = Vec::new();
        let mut seen: HashMap<String, Span> = HashMap::new();
        for item in &flow.items {
            let Item::Step(step) = item else { continue };
            let Some(node) = self.step(step) else {
                continue;
            };
            if let Some(first) = seen.get(&node.key) {
                self.errors.push(CompileError::DuplicateStep {
                    triple: node.id.triple(),
                    id: node.key.clone(),
                    span: step.operation_span.into(),
                    first: (*first).into(),
                });
                continue;
            }
            seen.insert(node.key.clone(), step.operation_span);
            steps.push(node);
        }
        steps
    }

    pub(super) fn step(&mut self, step: &Step) -> Option<StepNode> {
        let (op, tool, target, operation) = self.operation(step)?;
        let spec = op.spec();
        let errors_before = self.errors.len();
        let params = self.params(
            &spec.pattern(),
            &step.params,
            &[spec.params, STEP_PARAMS],
            step.operation_span,
        );
        let group = step.param("group").and_then(|p| p.value.as_ident());
        if let Some(group) = group {
            let names = self.group_names();
            if !names.contains(&group.as_str()) {
                let mut error = unknown("group", group, &names);
                if self.groups.is_empty()
                    && let CompileError::UnknownGroup { help, .. } = &mut error
                {
                    *help = "declare the order of groups first: `groups download -> seed`".into();
                }
                self.errors.push(error);
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let context = StepContext {
            params: &params,
            target: target.filter(|_| spec.target == Target::Database),
        };
        let prepared = match op.prepare(&context) {
            Ok(prepared) => prepared,
            Err(problems) => {
                for problem in problems {
                    self.errors.push(problem_error(step, problem));
                }
                return None;
            }
        };
        let id = StepId {
            tool: tool.to_owned(),
            target: target.map(str::to_owned),
            operation: operation.to_owned(),
            name: step.name.as_ref().map(|n| n.name.clone()),
        };
        let key = id.to_string();
        Some(StepNode {
            signature: format!("{key}\n{}", params.canonical()),
            key,
            id,
            group: group.map(|g| g.name.clone()),
            operation: op,
            retries: params.count("retries"),
            timeout: step.param("timeout").and_then(|p| duration(&p.value)),
            params: std::sync::Arc::new(params),
            prepared,
            span: step.span,
            header: step.operation_span,
        })
    }

    /// The step's operation, found in the registry (with its tool, target and
    /// name as written), and the database it targets declared.
    fn operation<'s>(
        &mut self,
        step: &'s Step,
    ) -> Option<(&'static dyn Operation, &'s str, Option<&'s str>, &'s str)> {
        let segments: Vec<&str> = step.operation.iter().map(Ident::as_str).collect();
        let (tool, target, operation) = match segments.as_slice() {
            [tool, operation] => (*tool, None, *operation),
            [tool, target, operation] => (*tool, Some(*target), *operation),
            _ => {
                self.errors.push(CompileError::OperationShape {
                    text: step.operation_text(),
                    span: step.operation_span.into(),
                });
                return None;
            }
        };
        let databases = self.database_names();
        if !self.registry.has_tool(tool) {
            let tools: Vec<&str> = self.registry.tools().collect();
            self.errors.push(CompileError::UnknownTool {
                tool: tool.to_owned(),
                span: step.operation[0].span.into(),
                help: did_you_mean(tool, "tools", tools.iter().copied()),
            });
            return None;
        }
        let Some(op) = self.registry.lookup(tool, target, operation) else {
            let spellings = self.registry.spellings(&databases);
            let text = step.operation_text();
            let mut same_tool: Vec<&str> = spellings
                .iter()
                .map(String::as_str)
                .filter(|s| s.starts_with(&format!("{tool}:")))
                .collect();
            same_tool.dedup();
            self.errors.push(CompileError::UnknownOperation {
                help: did_you_mean(&text, "operations", same_tool.iter().copied()),
                operation: text,
                tool: tool.to_owned(),
                span: step.operation_span.into(),
            });
            return None;
        };
        let spec = op.spec();
        if spec.target == Target::Database
            && let Some(db) = step.operation.get(1)
            && !databases.contains(&db.as_str())
        {
            self.errors.push(unknown("database", db, &databases));
            return None;
        }
        Some((op, tool, target, operation))
    }
}
