use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

use crate::{DATABASE, database};

pub struct Transform;

static TRANSFORM: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("model"),
    operation: "transform",
    summary: "run SQL files that fill the model tables from the source tables",
    params: &[
        ParamSpec::required(
            "sql",
            ParamType::Glob,
            "the SQL files, like \"transform/*.sql\"",
        ),
        ParamSpec::optional(
            "schema",
            ParamType::Name,
            "the schema it fills (default `model`)",
        ),
        ParamSpec::optional(
            "reads",
            ParamType::Names,
            "the schemas it reads (default `[source]`)",
        ),
        DATABASE,
    ],
};

impl Operation for Transform {
    fn spec(&self) -> &'static OperationSpec {
        &TRANSFORM
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let db = database(step);
        let mut prepared =
            Prepared::default().reads(Resource::file(step.params.str("sql").unwrap_or_default()));
        let reads = step.params.list("reads");
        for schema in if reads.is_empty() {
            vec!["source"]
        } else {
            reads
        } {
            prepared = prepared.reads(Resource::table(db, schema, None));
        }
        Ok(prepared.writes(Resource::table(
            db,
            step.params.str("schema").unwrap_or("model"),
            None,
        )))
    }
}

inventory::submit!(Registration(&Transform));
