//! `check` blocks, and that a step runs each.

use std::collections::HashMap;

use flow_dsl::Span;
use flow_dsl::ast::{Block, Flow, Item};

use super::Compiler;
use crate::CompileError;
use crate::param::{ParamSpec, ParamType};
use crate::pipeline::{Check, StepNode};
use crate::resource::{Access, Resource};
use crate::suggest::did_you_mean;

/// The parameter every `check` block has; the operations that run checks
/// declare the rest ([`crate::Operation::check_params`]).
pub(super) const CHECK_TABLE: &[ParamSpec] = &[ParamSpec::required(
    "table",
    ParamType::Table,
    "the table to check",
)];

impl Compiler<'_> {
    pub(super) fn checks(&mut self, flow: &Flow) -> Vec<Check> {
        let check_schemas: Vec<&[ParamSpec]> = std::iter::once(CHECK_TABLE)
            .chain(self.registry.operations().map(|op| op.check_params()))
            .collect();
        let mut checks = Vec::new();
        let mut seen: HashMap<String, Span> = HashMap::new();
        for item in &flow.items {
            let Item::Check(block) = item else { continue };
            if self.duplicate_block("check", block, &mut seen) {
                continue;
            }
            let errors_before = self.errors.len();
            let params = self.params(
                &format!("check {}", block.name.name),
                &block.params,
                &check_schemas,
                block.name.span,
            );
            if self.errors.len() > errors_before {
                continue;
            }
            let Some((path, _)) = params.path("table") else {
                continue;
            };
            let [database, schema, table] = path.as_slice() else {
                continue;
            };
            checks.push(Check {
                name: block.name.name.clone(),
                database: (*database).to_owned(),
                schema: (*schema).to_owned(),
                table: (*table).to_owned(),
                params,
                span: block.span,
            });
        }
        checks
    }

    /// A check runs inside a step that runs checks (`pg:target:populate`)
    /// and writes its table; one on a table no such step writes would never run.
    pub(super) fn checks_run(&mut self, flow: &Flow, checks: &[Check], steps: &[StepNode]) {
        for check in checks {
            let checked: Vec<String> = steps
                .iter()
                .filter(|step| step.operation.runs_checks())
                .flat_map(|step| &step.prepared.accesses)
                .filter_map(|(access, resource)| match resource {
                    Resource::Table {
                        database,
                        schema,
                        table: Some(name),
                    } if *access != Access::Read => Some(format!("{database}.{schema}.{name}")),
                    _ => None,
                })
                .collect();
            let wanted = format!("{}.{}.{}", check.database, check.schema, check.table);
            if checked.contains(&wanted) {
                continue;
            }
            let span = flow
                .items
                .iter()
                .find_map(|item| match item {
                    Item::Check(block) if block.name.name == check.name => Some(block.name.span),
                    _ => None,
                })
                .unwrap_or(check.span);
            self.errors.push(CompileError::CheckNeverRuns {
                name: check.name.clone(),
                help: did_you_mean(
                    &wanted,
                    "tables populate steps write",
                    checked.iter().map(String::as_str),
                ),
                table: wanted,
                span: span.into(),
            });
        }
    }

    pub(super) fn duplicate_block(
        &mut self,
        kind: &'static str,
        block: &Block,
        seen: &mut HashMap<String, Span>,
    ) -> bool {
        match seen.insert(block.name.name.clone(), block.name.span) {
            Some(first) => {
                self.errors.push(CompileError::DuplicateDeclaration {
                    kind,
                    name: block.name.name.clone(),
                    span: block.name.span.into(),
                    first: first.into(),
                });
                true
            }
            None => false,
        }
    }
}
