//! Inputs a flow needs before it runs: the files its steps read that no step
//! of the flow writes (a schema release, SQL files, source data checked in
//! beside the flow). `flow check` reports each one that is missing at the
//! place the flow names it; files that a step writes are not looked for,
//! since they appear during the run.

use std::path::Path;

use crate::CompileError;
use crate::pipeline::Pipeline;
use crate::resource::{Access, Resource, ResourceIndex};

/// A diagnostic for each file glob a step reads that matches nothing and
/// that no step of the flow writes.
pub fn missing_files(pipeline: &Pipeline, base: &Path) -> Vec<CompileError> {
    // Indexed, so that thousands of reads and writes are not all compared.
    let mut written = ResourceIndex::default();
    for (i, step) in pipeline.steps.iter().enumerate() {
        for (access, resource) in &step.prepared.accesses {
            written.insert(i, *access, resource);
        }
    }
    let mut missing = Vec::new();
    for step in &pipeline.steps {
        for (access, resource) in &step.prepared.accesses {
            let (Access::Read, Resource::File { glob }) = (access, resource) else {
                continue;
            };
            let mut is_written = false;
            written.upstream(usize::MAX, Access::Read, resource, |_, _, _| {
                is_written = true;
            });
            if glob.is_empty() || is_written {
                continue;
            }
            let pattern = base.join(glob);
            let found = glob::glob(&pattern.to_string_lossy())
                .map(|mut paths| paths.any(|p| p.is_ok()))
                .unwrap_or(true);
            if !found {
                let span = step.params.span_of(glob).unwrap_or(step.header);
                missing.push(CompileError::MissingFile {
                    glob: glob.clone(),
                    step: step.key.clone(),
                    span: span.into(),
                });
            }
        }
    }
    missing
}
