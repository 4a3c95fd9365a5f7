use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Registration, Resource,
    StepContext, Target, inventory,
};

use crate::{DATABASE, database};

pub struct ModelCreate;

static MODEL_CREATE: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("model"),
    operation: "create",
    summary: "create model tables shaped like the API's tables or a schema release",
    params: &[
        ParamSpec::optional(
            "like",
            ParamType::Schema,
            "mirror this schema's tables, like `api.public`",
        ),
        ParamSpec::optional(
            "release",
            ParamType::Path,
            "or a schema release as SQL DDL, like \"schemas/0.9.0.sql\"",
        ),
        ParamSpec::required("tables", ParamType::Names, "the tables to model"),
        ParamSpec::optional(
            "schema",
            ParamType::Name,
            "the schema of the model tables (default `model`)",
        ),
        DATABASE,
    ],
};

impl Operation for ModelCreate {
    fn spec(&self) -> &'static OperationSpec {
        &MODEL_CREATE
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let params = step.params;
        let source = match (params.path("like"), params.str("release")) {
            (Some((like, _)), None) => Source::Like(like),
            (None, Some(release)) => Source::Release(release),
            (like, _) => {
                return Err(vec![Problem {
                    param: like.map(|_| "release"),
                    message: "give either `like` or `release`, not both and not neither".into(),
                    help: Some("`like = api.public` mirrors the API's tables; `release = \"schemas/0.9.0.sql\"` reads a schema release".into()),
                }]);
            }
        };
        let db = database(step);
        let schema = params.str("schema").unwrap_or("model");
        let mut prepared = Prepared::default().reads(Resource::Types {
            database: db.to_owned(),
        });
        if let Source::Release(path) = source {
            prepared = prepared.reads(Resource::file(path));
        }
        for table in params.list("tables") {
            if let Source::Like(like) = &source
                && let [like_db, like_schema] = like.as_slice()
            {
                prepared = prepared.reads(Resource::table(like_db, like_schema, Some(table)));
            }
            prepared = prepared.creates(Resource::table(db, schema, Some(table)));
        }
        Ok(prepared)
    }
}

enum Source<'a> {
    Like(Vec<&'a str>),
    Release(&'a str),
}

inventory::submit!(Registration(&ModelCreate));
