//! `pg:target:populate`: model tables into the API database's tables,
//! checked, in one transaction or one switch.

use flow_engine::{
    BoxFuture, Operation, OperationSpec, Outcome, ParamSpec, ParamType, Pipeline, Prepared,
    Preview, Problem, Registration, Resource, RunContext, StepContext, StepError, Target,
    inventory,
};

use crate::DATABASE;

mod breaking;
mod checks;
pub(crate) mod copy;
mod history;
mod in_place;
mod plan;
mod preview;
mod report;
mod rollback;
mod settings;
mod swap;
mod switch;

pub use plan::populate;
pub use report::Report;
pub use settings::{Mode, Settings};

pub struct Populate;

static POPULATE: OperationSpec = OperationSpec {
    tool: "pg",
    target: Target::Fixed("target"),
    operation: "populate",
    summary: "move model tables into the API database's tables, checked and in one transaction",
    params: &[
        ParamSpec::optional(
            "from",
            ParamType::SchemaName,
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
            ParamType::OneOf(Mode::NAMES),
            "`replace` (default), `upsert`, `append` or `swap`",
        ),
        ParamSpec::optional(
            "key",
            ParamType::Names,
            "with `mode = upsert`, the key columns (default: the primary key)",
        ),
        ParamSpec::optional(
            "renames",
            ParamType::Strings,
            "enum labels renamed in the release, as \"type.old=new\": rows that stay keep their value under the new name",
        ),
        ParamSpec::optional(
            "history",
            ParamType::NamedLists,
            "tables whose versions are kept: `[products]` (every column) or `{ products = [price] }`",
        ),
        ParamSpec::optional(
            "history_schema",
            ParamType::Name,
            "the API database's schema of the history tables (default `history`)",
        ),
        ParamSpec::optional(
            "notify",
            ParamType::Name,
            "a channel: after commit, one NOTIFY per changed table with what changed",
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
        let settings = Settings::parse(step.params)?;
        let mut prepared = Prepared::default().reads(Resource::Extensions {
            database: settings.to_db.clone(),
        });
        for table in &settings.tables {
            prepared = prepared
                .reads(Resource::table(
                    &settings.database,
                    &settings.from,
                    Some(table),
                ))
                .writes(Resource::table(
                    &settings.to_db,
                    &settings.schema,
                    Some(table),
                ));
        }
        for (table, _) in &settings.history {
            prepared = prepared.writes(Resource::table(
                &settings.to_db,
                &settings.history_schema,
                Some(&format!("{table}_history")),
            ));
        }
        prepared.settings = flow_engine::Settings::new(settings);
        Ok(prepared)
    }

    fn check_params(&self) -> &'static [ParamSpec] {
        checks::PARAMS
    }

    fn run<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let report = populate(context, context.settings()?, false).await?;
            Ok(Outcome {
                rows: report.rows,
                bytes: report.bytes,
                note: Some(report.summary()),
                unchanged: false,
            })
        })
    }

    fn previews(&self) -> bool {
        true
    }

    fn preview<'a>(
        &'a self,
        context: &'a RunContext,
        pipeline: &'a Pipeline,
    ) -> BoxFuture<'a, Result<Preview, StepError>> {
        Box::pin(preview::preview(context, pipeline))
    }

    fn undoes(&self) -> bool {
        true
    }

    fn undo<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<String, StepError>> {
        Box::pin(rollback::rollback(context))
    }
}

inventory::submit!(Registration(&Populate));
