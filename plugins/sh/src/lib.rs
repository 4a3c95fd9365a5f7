//! `sh:run`: a command, for what no plugin covers. It declares the files it
//! reads and writes so that it takes its place in the DAG.

use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

pub struct Run;

static RUN: OperationSpec = OperationSpec {
    tool: "sh",
    target: Target::None,
    operation: "run",
    summary: "run a command; its output goes to the step's log",
    params: &[
        ParamSpec::required("command", ParamType::String, "the program to run"),
        ParamSpec::optional("args", ParamType::Strings, "its arguments"),
        ParamSpec::optional(
            "dir",
            ParamType::Path,
            "the working directory (default: the flow's)",
        ),
        ParamSpec::optional("reads", ParamType::Strings, "file globs it reads"),
        ParamSpec::optional("writes", ParamType::Strings, "file globs it writes"),
    ],
};

impl Operation for Run {
    fn spec(&self) -> &'static OperationSpec {
        &RUN
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        if step
            .params
            .str("command")
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(vec![Problem {
                param: Some("command"),
                message: "the command is empty".into(),
                help: None,
            }]);
        }
        let mut prepared = Prepared::default();
        for glob in step.params.list("reads") {
            prepared = prepared.reads(Resource::file(glob));
        }
        for glob in step.params.list("writes") {
            prepared = prepared.writes(Resource::file(glob));
        }
        Ok(prepared)
    }
}

inventory::submit!(Registration(&Run));
