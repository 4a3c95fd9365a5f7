//! `flow rollback`: the steps that can be undone (`pg:target:populate` with
//! `mode = swap`) put back what their last run replaced.

use std::path::Path;

use flow_engine::Registry;
use flow_engine::review::{self, Hook};

use crate::exit::Exit;
use crate::run::block_on;
use crate::{load, output};

pub fn rollback(file: &Path, env: Option<&str>, step: Option<&str>, registry: &Registry) -> Exit {
    let Some(flow) = load::flow(file, registry) else {
        return Exit::Invalid;
    };
    let steps = review::steps(&flow, Hook::Undo, step);
    if steps.is_empty() {
        output::note(&crate::diff::none_to(file, step, "an undo"));
        return Exit::Invalid;
    }
    let Some(environment) = load::environment(&flow, env) else {
        return Exit::Invalid;
    };
    block_on(async {
        let undone = match review::undo(&flow, &environment, &steps).await {
            Ok(undone) => undone,
            Err(error) => {
                output::error(error);
                return Exit::Failure;
            }
        };
        let mut exit = Exit::Success;
        for (step, line) in undone {
            match line {
                Ok(line) => output::out(&format!("{step}: {line}\n")),
                Err(error) => {
                    output::report(error.report);
                    exit = Exit::Failure;
                }
            }
        }
        exit
    })
}
