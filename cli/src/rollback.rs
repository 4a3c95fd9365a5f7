//! `flow rollback`: the steps that can be undone (`pg:target:populate` with
//! `mode = swap`) put back what their last run replaced.

use std::path::Path;

use flow_engine::Registry;
use flow_engine::review::{self, Hook};

use crate::exit::Exit;
use crate::output;
use crate::run::block_on;

pub fn rollback(file: &Path, env: Option<&str>, step: Option<&str>, registry: &Registry) -> Exit {
    let Some((flow, environment)) = crate::diff::open(file, env, step, Hook::Undo, registry) else {
        return Exit::Invalid;
    };
    let steps = review::steps(&flow, Hook::Undo, step);
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
