//! `drizzle:<db>:pull`: writes the custom types of a database (enums, domains,
//! composite types) to a SQL file that is committed and applies as written.
//! Named after the tool it replaces; it needs no Node.js.

use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

pub struct Pull;

static PULL: OperationSpec = OperationSpec {
    tool: "drizzle",
    target: Target::Database,
    operation: "pull",
    summary: "write the database's custom types to a SQL file",
    params: &[
        ParamSpec::required("out", ParamType::Path, "the types file to write"),
        ParamSpec::optional(
            "schemas",
            ParamType::Names,
            "schemas to read (default: every non-system schema)",
        ),
    ],
};

impl Operation for Pull {
    fn spec(&self) -> &'static OperationSpec {
        &PULL
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let database = step.target.unwrap_or("api");
        let out = step.params.str("out").unwrap_or_default();
        Ok(Prepared::default()
            .reads(Resource::Types {
                database: database.to_owned(),
            })
            .writes(Resource::file(out)))
    }
}

inventory::submit!(Registration(&Pull));
