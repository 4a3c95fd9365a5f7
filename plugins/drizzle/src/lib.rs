//! `drizzle:<db>:pull`: writes the custom types of a database (enums, domains,
//! composite types) to a file that is committed: SQL that applies as written,
//! or (`out = "....ts"`, or `format = drizzle`) a TypeScript module for
//! drizzle-orm that compiles as written (`flow_db::drizzle`). Both are what
//! `pg:<db>:push` reads. Named after the tool it replaces; it needs no
//! Node.js.

use flow_engine::flow_db::types;
use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Prepared, Problem,
    Registration, Resource, RunContext, StepContext, StepError, Target, inventory,
    write_atomically,
};

pub struct Pull;

static PULL: OperationSpec = OperationSpec {
    tool: "drizzle",
    target: Target::Database,
    operation: "pull",
    summary: "write the database's custom types to a SQL file or a drizzle-orm module",
    params: &[
        ParamSpec::required("out", ParamType::Path, "the types file to write"),
        ParamSpec::optional(
            "format",
            ParamType::OneOf(&["sql", "drizzle"]),
            "`sql`, or `drizzle` for a TypeScript module (the default for an `out` ending in `.ts`)",
        ),
        ParamSpec::optional(
            "schemas",
            ParamType::Names,
            "schemas to read (default: every non-system schema)",
        ),
    ],
};

/// Where the types go, and the schemas to read (every user schema when
/// none is named).
struct Settings {
    out: String,
    schemas: Vec<String>,
    /// A drizzle-orm module rather than SQL.
    typescript: bool,
}

impl Operation for Pull {
    fn spec(&self) -> &'static OperationSpec {
        &PULL
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let database = step.target.unwrap_or("api");
        let out = step.params.str("out").unwrap_or_default();
        let typescript = match step.params.str("format") {
            Some(format) => format == "drizzle",
            None => out.ends_with(".ts"),
        };
        let settings = Settings {
            typescript,
            out: out.to_owned(),
            schemas: step
                .params
                .list("schemas")
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        Ok(Prepared::default()
            .reads(Resource::Types {
                database: database.to_owned(),
            })
            .writes(Resource::file(out))
            .settings(settings))
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let name = context.target.as_deref().unwrap_or("api");
            let database = context.database(name)?;
            let settings: &Settings = context.settings()?;
            let schemas = &settings.schemas;
            let mut client = database.client().await?;
            let transaction = client.transaction().await?;
            let found = types::introspect(
                &transaction,
                (!schemas.is_empty()).then_some(schemas.as_slice()),
            )
            .await?;
            transaction.rollback().await?;
            let out = context.path(&settings.out);
            let text = if settings.typescript {
                flow_engine::flow_db::drizzle::render(&found)
            } else {
                types::render(name, &found)
            };
            // An unchanged file is left alone, so that what reads it sees no change.
            if tokio::fs::read_to_string(&out)
                .await
                .is_ok_and(|old| old == text)
            {
                return Ok(
                    Outcome::note(format!("{} custom types, unchanged", found.len()))
                        .unchanged(true),
                );
            }
            write_atomically(&out, text.as_bytes()).await?;
            Ok(Outcome {
                bytes: text.len() as u64,
                note: Some(format!(
                    "{} custom types written to {}",
                    found.len(),
                    out.display()
                )),
                ..Outcome::default()
            })
        })
    }
}

inventory::submit!(Registration(&Pull));
