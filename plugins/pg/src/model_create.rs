use flow_engine::flow_db::{DbError, quote_ident, quote_literal};
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, fingerprint, inventory,
};

use crate::DATABASE;
use crate::shape;

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
            ParamType::SchemaName,
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
        let db = step.params.database();
        let schema = params.str("schema").unwrap_or("model");
        let mut prepared = Prepared::default()
            .reads(Resource::Types {
                database: db.to_owned(),
            })
            .reads(Resource::Extensions {
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
        let settings = Settings {
            schema: schema.to_owned(),
            database: db.to_owned(),
            tables: params
                .list("tables")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            like: match &source {
                Source::Like(like) => Some(like.iter().map(|p| (*p).to_owned()).collect()),
                Source::Release(_) => None,
            },
            release: params.str("release").map(str::to_owned),
        };
        Ok(prepared.settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(create(context))
    }
}

/// A model's parameters, with their defaults.
struct Settings {
    /// The model schema (default `model`).
    schema: String,
    database: String,
    tables: Vec<String>,
    /// `like = db.schema`: the database and schema mirrored.
    like: Option<Vec<String>>,
    /// `release = "file.sql"`.
    release: Option<String>,
}

/// The schema's mark: which source it was made from.
fn mark(digest: &str) -> String {
    format!("flow model {digest}")
}

/// Creates the model schema from its source, or keeps it when the source is
/// the one it was made from. The schema belongs to flow: it is dropped and
/// made again, whole and in one transaction, when the source changes.
async fn create(context: &RunContext) -> Result<Outcome, StepError> {
    let settings: &Settings = context.settings()?;
    let schema = settings.schema.clone();
    let tables = &settings.tables;
    let mut client = context.database(&settings.database)?.client().await?;
    let (ddl, release) = match &settings.like {
        Some(like) => {
            let [like_db, like_schema] = like.as_slice() else {
                return Err(StepError::coded(
                    "flow::model::create",
                    "`like` names a database and a schema, like `api.public`",
                    None,
                ));
            };
            (
                mirror(context, &client, like_db, like_schema, &schema, tables).await?,
                None,
            )
        }
        None => {
            let path = settings.release.as_deref().unwrap_or_default();
            let text = std::fs::read_to_string(context.path(path)).map_err(|e| {
                StepError::coded(
                    "flow::model::create",
                    format!("cannot read the release `{path}`: {e}"),
                    None,
                )
            })?;
            (text, Some(path.to_owned()))
        }
    };
    let digest = fingerprint::Digest::new()
        .write(schema.as_bytes())
        .write(tables.join(",").as_bytes())
        .write(ddl.as_bytes())
        .hex();
    let current: Option<String> = client
        .query_opt(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await?
        .and_then(|row| row.get(0));
    if current.as_deref() == Some(mark(&digest).as_str()) {
        return Ok(Outcome::note(format!("{} tables, unchanged", tables.len())).unchanged(true));
    }
    let quoted = quote_ident(&schema);
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {quoted} CASCADE; CREATE SCHEMA {quoted};
             SET LOCAL search_path = {quoted}, public"
        ))
        .await?;
    match &release {
        Some(path) => transaction
            .batch_execute(&ddl)
            .await
            .map_err(|e| DbError::in_file(e, path, &ddl))?,
        None => transaction.batch_execute(&ddl).await?,
    }
    let (made, _) = shape::read(&*transaction, &schema, tables).await?;
    let missing: Vec<&String> = tables.iter().filter(|t| !made.contains_key(*t)).collect();
    if !missing.is_empty() {
        let source = release.map_or_else(
            || "the mirrored schema".to_owned(),
            |path| format!("the release `{path}`"),
        );
        return Err(StepError::coded(
"flow::model::create",
            format!(
                "{source} has no table {}",
                missing.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            ),
            Some("a release creates its tables without a schema name (`CREATE TABLE parcels`); they land in the model schema".into()),
        ));
    }
    transaction
        .batch_execute(&format!(
            "COMMENT ON SCHEMA {quoted} IS {}",
            quote_literal(&mark(&digest))
        ))
        .await?;
    transaction.commit().await?;
    Ok(Outcome::note(format!("{} tables created", tables.len())))
}

/// The DDL of a model mirroring `like_db.like_schema`'s tables: the same
/// columns, types, NOT NULL, defaults, keys and constraints. Enums the flow
/// database lacks (or holds with other labels) are made in the model schema.
async fn mirror(
    context: &RunContext,
    flow: &flow_engine::flow_db::Client,
    like_db: &str,
    like_schema: &str,
    schema: &str,
    tables: &[String],
) -> Result<String, StepError> {
    let api = context.database(like_db)?.client().await?;
    let (mut shapes, enums) = shape::read(&**api, like_schema, tables).await?;
    let missing: Vec<&String> = tables.iter().filter(|t| !shapes.contains_key(*t)).collect();
    if !missing.is_empty() {
        return Err(StepError::coded(
"flow::model::create",
            format!(
                "`{like_db}.{like_schema}` has no table {}",
                missing.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            ),
            Some("create the API's tables first, or model a schema release with `release = \"schemas/x.sql\"`".into()),
        ));
    }
    let local = shape::enums(&***flow).await?;
    let mut ddl = String::new();
    for (name, wanted) in &enums {
        if local
            .get(name)
            .is_some_and(|have| have.labels == wanted.labels && have.schema == wanted.schema)
        {
            continue;
        }
        ddl.push_str(&format!(
            "CREATE TYPE {}.{} AS ENUM ({});\n",
            quote_ident(schema),
            quote_ident(name),
            wanted
                .labels
                .iter()
                .map(|l| quote_literal(l))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for table in shapes.values_mut() {
            for column in &mut table.columns {
                if column.is_enum && column.custom.as_ref().is_some_and(|(_, n)| n == name) {
                    column.custom = Some((schema.to_owned(), name.clone()));
                }
            }
        }
    }
    for table in tables {
        ddl.push_str(&shapes[table].create(schema, false));
        ddl.push_str(";\n");
    }
    Ok(ddl)
}

enum Source<'a> {
    Like(Vec<&'a str>),
    Release(&'a str),
}

inventory::submit!(Registration(&ModelCreate));
