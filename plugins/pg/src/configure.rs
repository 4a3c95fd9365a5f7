use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

pub struct Configure;

static CONFIGURE: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Database,
    operation: "configure",
    summary: "create extensions in a database (idempotent)",
    params: &[ParamSpec::optional(
        "extensions",
        ParamType::Names,
        "extensions to create (default `[postgis]`)",
    )],
};

impl Operation for Configure {
    fn spec(&self) -> &'static OperationSpec {
        &CONFIGURE
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        Ok(Prepared::default().creates(Resource::Extensions {
            database: step.target.unwrap_or("flow").to_owned(),
        }))
    }
}

inventory::submit!(Registration(&Configure));
