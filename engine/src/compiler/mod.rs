//! From syntax tree to [`Pipeline`]: resolve, check, prepare, link.

use std::collections::BTreeMap;

use dag::{cycle_error, link, topological_order};
use flow_dsl::ast::{Flow, Ident};

use crate::pipeline::{Declaration, Pipeline};
use crate::{CompileError, Registry};

/// Compiles a parsed flow. `default_name` names a flow without a `flow` line
/// (the file's stem). Every error found is returned, not only the first.
pub fn compile(
    flow: &Flow,
    registry: &Registry,
    default_name: &str,
) -> Result<Pipeline, Vec<CompileError>> {
    let mut compiler = Compiler {
        registry,
        errors: Vec::new(),
        name: default_name.to_owned(),
        groups: Vec::new(),
        databases: BTreeMap::new(),
        storages: BTreeMap::new(),
        environments: BTreeMap::new(),
    };
    compiler.declarations(flow);
    let steps = compiler.steps(flow);
    let afters = compiler.afters(flow, &steps);
    let schedules = compiler.schedules(flow, &steps);
    let checks = compiler.checks(flow);
    compiler.checks_run(flow, &checks, &steps);
    if !compiler.errors.is_empty() {
        let mut errors = compiler.errors;
        errors.sort_by_key(|error| {
            miette::Diagnostic::labels(error)
                .and_then(|mut labels| labels.next())
                .map_or(0, |label| label.offset())
        });
        return Err(errors);
    }
    let (graph, step_nodes, external) = link(&compiler.groups, &steps, &afters);
    let order = match topological_order(&graph, &steps) {
        Ok(order) => order,
        Err(cycle) => return Err(vec![cycle_error(&graph, &steps, &compiler.groups, &cycle)]),
    };
    Ok(Pipeline {
        name: compiler.name,
        groups: compiler.groups.into_iter().map(|g| g.name).collect(),
        databases: compiler.databases,
        storages: compiler.storages,
        environments: compiler.environments,
        steps,
        schedules,
        checks: std::sync::Arc::new(checks),
        graph,
        order,
        step_nodes,
        external,
    })
}

mod checks;
mod dag;
mod declarations;
mod params;
mod references;
mod schedules;
mod steps;

struct Compiler<'r> {
    registry: &'r Registry,
    errors: Vec<CompileError>,
    name: String,
    groups: Vec<Ident>,
    databases: BTreeMap<String, Declaration>,
    storages: BTreeMap<String, Declaration>,
    environments: BTreeMap<String, BTreeMap<String, Declaration>>,
}
