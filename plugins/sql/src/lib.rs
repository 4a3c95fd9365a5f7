//! `sql:<db>:run`: SQL files against a database, in file-name order, each in
//! its own transaction. It declares the tables it reads and writes.

use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory, table_ref,
};

pub struct Run;

static RUN: OperationSpec = OperationSpec {
    tool: "sql",
    target: Target::Database,
    operation: "run",
    summary: "run SQL files against a database",
    params: &[
        ParamSpec::required("sql", ParamType::Glob, "the SQL files, like \"sql/*.sql\""),
        ParamSpec::optional(
            "reads",
            ParamType::Strings,
            "tables it reads, like \"source.parcels\" or \"source.*\"",
        ),
        ParamSpec::optional("writes", ParamType::Strings, "tables it writes"),
    ],
};

impl Operation for Run {
    fn spec(&self) -> &'static OperationSpec {
        &RUN
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let database = step.target.unwrap_or("flow");
        let mut prepared =
            Prepared::default().reads(Resource::file(step.params.str("sql").unwrap_or_default()));
        let mut problems = Vec::new();
        for key in ["reads", "writes"] {
            for text in step.params.list(key) {
                match table_ref(database, text) {
                    Ok(resource) if key == "reads" => prepared = prepared.reads(resource),
                    Ok(resource) => prepared = prepared.writes(resource),
                    Err(message) => problems.push(Problem {
                        param: Some(if key == "reads" { "reads" } else { "writes" }),
                        message,
                        help: Some("write tables as `schema.table`, or `schema.*` for every table of a schema".into()),
                    }),
                }
            }
        }
        if problems.is_empty() {
            Ok(prepared)
        } else {
            Err(problems)
        }
    }
}

inventory::submit!(Registration(&Run));
