use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

use crate::{DATABASE, database};

pub struct Populate;

/// How populate replaces the target tables' rows.
pub const MODES: &[&str] = &["replace", "upsert", "append", "swap"];

static POPULATE: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("target"),
    operation: "populate",
    summary: "move model tables into the API database's tables, checked and in one transaction",
    params: &[
        ParamSpec::optional(
            "from",
            ParamType::Name,
            "the model schema (default `model`)",
        ),
        ParamSpec::required(
            "to",
            ParamType::Schema,
            "the target schema, like `api.public`",
        ),
        ParamSpec::required("tables", ParamType::Names, "the tables to move"),
        ParamSpec::optional(
            "mode",
            ParamType::OneOf(MODES),
            "`replace` (default), `upsert`, `append` or `swap`",
        ),
        ParamSpec::optional(
            "key",
            ParamType::Names,
            "with `mode = upsert`, the key columns (default: the primary key)",
        ),
        ParamSpec::optional(
            "allow",
            ParamType::Strings,
            "schema changes allowed by name, like \"drop column parcels.old_id\"",
        ),
        DATABASE,
    ],
};

impl Operation for Populate {
    fn spec(&self) -> &'static OperationSpec {
        &POPULATE
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let params = step.params;
        if params.contains("key") && params.str("mode") != Some("upsert") {
            return Err(vec![Problem {
                param: Some("key"),
                message: "`key` only applies with `mode = upsert`".into(),
                help: Some("remove `key`, or set `mode = upsert`".into()),
            }]);
        }
        let db = database(step);
        let from = params.str("from").unwrap_or("model");
        let (to, _) = params.path("to").unwrap_or_default();
        let [to_db, to_schema] = to.as_slice() else {
            return Ok(Prepared::default());
        };
        let mut prepared = Prepared::default();
        for table in params.list("tables") {
            prepared = prepared
                .reads(Resource::table(db, from, Some(table)))
                .writes(Resource::table(to_db, to_schema, Some(table)));
        }
        Ok(prepared)
    }
}

inventory::submit!(Registration(&Populate));
