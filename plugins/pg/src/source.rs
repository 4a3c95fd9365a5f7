use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

use crate::{DATABASE, database};

pub struct Create;
pub struct Load;

static CREATE: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("source"),
    operation: "create",
    summary: "create a table per CSV file, typed from the data",
    params: &[
        ParamSpec::required(
            "from",
            ParamType::Glob,
            "the CSV files, like \"data/csv/*.csv\"",
        ),
        ParamSpec::optional(
            "schema",
            ParamType::Name,
            "the schema of the tables (default `source`)",
        ),
        ParamSpec::optional(
            "columns",
            ParamType::Strings,
            "declared column types, as \"column type\"",
        ),
        DATABASE,
    ],
};

static LOAD: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("source"),
    operation: "load",
    summary: "COPY each CSV file into its table, replacing its rows in one transaction",
    params: &[
        ParamSpec::required("from", ParamType::Glob, "the CSV (or .shp) files"),
        ParamSpec::optional(
            "schema",
            ParamType::Name,
            "the schema of the tables (default `source`)",
        ),
        ParamSpec::optional(
            "max_errors",
            ParamType::Count,
            "bad rows sent to a reject table before the load fails (default 0)",
        ),
        DATABASE,
    ],
};

fn schema<'a>(step: &'a StepContext<'_>) -> &'a str {
    step.params.str("schema").unwrap_or("source")
}

impl Operation for Create {
    fn spec(&self) -> &'static OperationSpec {
        &CREATE
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let problems: Vec<Problem> = step
            .params
            .list("columns")
            .into_iter()
            .filter(|column| column.split_whitespace().count() < 2)
            .map(|column| Problem {
                param: Some("columns"),
                message: format!("`{column}` declares no type"),
                help: Some(
                    "write each column as \"name type\", like \"area_m2 double precision\"".into(),
                ),
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let db = database(step);
        Ok(Prepared::default()
            .reads(Resource::file(step.params.str("from").unwrap_or_default()))
            .reads(Resource::Types {
                database: db.to_owned(),
            })
            .reads(Resource::Extensions {
                database: db.to_owned(),
            })
            .creates(Resource::table(db, schema(step), None)))
    }
}

impl Operation for Load {
    fn spec(&self) -> &'static OperationSpec {
        &LOAD
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        Ok(Prepared::default()
            .reads(Resource::file(step.params.str("from").unwrap_or_default()))
            .writes(Resource::table(database(step), schema(step), None)))
    }
}

inventory::submit!(Registration(&Create));
inventory::submit!(Registration(&Load));
