//! `flow diff` of a populate step: the model made again from the release and
//! transforms as they are on disk, in a scratch schema, then the whole
//! populate done in transactions that are rolled back.

use std::sync::Arc;

use flow_engine::flow_db::{DbError, quote_ident};
use flow_engine::{Pipeline, Preview, RunContext, StepContext, StepError, StepNode, Target};

use super::{Settings, populate};

pub(super) async fn preview(
    context: &RunContext,
    pipeline: &Pipeline,
) -> Result<Preview, StepError> {
    let mut settings: Settings = context.settings::<Settings>()?.clone();
    let scratch = fresh_model(context, pipeline, &settings).await?;
    if let Some(schema) = &scratch {
        settings.from.clone_from(schema);
    }
    let report = populate(context, &settings, true).await;
    if let Some(schema) = &scratch {
        let _ = drop_schema(context, &settings.database, schema).await;
    }
    let report = report?;
    Ok(Preview {
        text: report.render(true),
        json: report.to_json(),
        would_fail: report.would_fail(),
    })
}

async fn drop_schema(context: &RunContext, database: &str, schema: &str) -> Result<(), StepError> {
    context
        .database(database)?
        .client()
        .await?
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(schema)
        ))
        .await
        .map_err(DbError::from)?;
    Ok(())
}

/// Makes the model a populate step reads again, from the release and the
/// transforms as they are on disk, in a scratch schema of its database
/// (`<model>__flow_diff`); returns the schema, or `None` when no step of the
/// flow makes that model.
async fn fresh_model(
    context: &RunContext,
    pipeline: &Pipeline,
    settings: &Settings,
) -> Result<Option<String>, StepError> {
    let (from, database) = (&settings.from, &settings.database);
    let of = |operation: &'static str| -> Vec<&StepNode> {
        pipeline
            .steps
            .iter()
            .filter(|s| {
                let spec = s.operation.spec();
                spec.tool == "pg"
                    && spec.target == Target::Fixed("model")
                    && spec.operation == operation
                    && s.params.str("schema").unwrap_or("model") == from
                    && s.params.database() == database
            })
            .collect()
    };
    let creates = of("create");
    if creates.is_empty() {
        return Ok(None);
    }
    let scratch = flow_engine::flow_db::names::fit_with(from, "__flow_diff");
    drop_schema(context, database, &scratch).await?;
    // The database's extensions first (PostGIS for geometry columns):
    // `configure` is idempotent.
    let configures = pipeline.steps.iter().filter(|s| {
        let spec = s.operation.spec();
        spec.tool == "pg"
            && spec.operation == "configure"
            && s.id.target.as_deref() == Some(database.as_str())
    });
    for step in configures {
        step.operation.run(&step_context(context, step)).await?;
    }
    for step in creates.into_iter().chain(of("transform")) {
        // The step's parameters with the scratch schema, prepared again so
        // that its typed settings say the same.
        let params = step.params.with_name("schema", &scratch);
        let prepared = step
            .operation
            .prepare(&StepContext {
                params: &params,
                target: None,
            })
            .map_err(|problems| {
                let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
                StepError::coded("flow::populate::preview", text.join("; "), None)
            })?;
        let mut step_context = step_context(context, step);
        step_context.params = Arc::new(params);
        step_context.settings = prepared.settings;
        step.operation.run(&step_context).await?;
    }
    Ok(Some(scratch))
}

/// Another step's context, with the databases of the populate step's.
fn step_context(context: &RunContext, step: &StepNode) -> RunContext {
    RunContext::for_step(
        step,
        context.base_dir.clone(),
        Arc::clone(&context.databases),
        Arc::default(),
    )
}
