//! `flow diff` and `flow rollback`: the populate steps of a flow, looked at
//! or undone without a run.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use flow_engine::{Pipeline, Registry, RunContext, StepNode};

use crate::exit::Exit;
use crate::session::Session;
use crate::{load, output};

/// What to do with each populate step.
#[derive(Clone, Copy)]
pub enum Action {
    /// `json`: the reports as one JSON array.
    Diff {
        json: bool,
    },
    Rollback,
}

/// The populate steps of `file` (or the one named `step`).
fn populate_steps<'p>(pipeline: &'p Pipeline, step: Option<&str>) -> Vec<&'p StepNode> {
    pipeline
        .steps
        .iter()
        .filter(|s| {
            let spec = s.operation.spec();
            spec.tool == "pg" && spec.operation == "populate"
        })
        .filter(|s| step.is_none_or(|name| s.key == name || s.id.to_string() == name))
        .collect()
}

pub fn command(
    file: &Path,
    env: Option<&str>,
    step: Option<&str>,
    action: Action,
    registry: &Registry,
) -> Exit {
    let Some(pipeline) = load::load(file, registry) else {
        return Exit::Invalid;
    };
    let steps = populate_steps(&pipeline, step);
    if steps.is_empty() {
        output::note(&match step {
            Some(name) => format!("no `pg:target:populate` step is named `{name}`"),
            None => format!("`{}` has no `pg:target:populate` step", file.display()),
        });
        return Exit::Invalid;
    }
    let base = crate::run::base_dir(file);
    let environment = match crate::run::resolve_environment(&pipeline, &base, env) {
        Ok(environment) => environment,
        Err(error) => {
            output::error(error);
            return Exit::Invalid;
        }
    };
    let mut needed = BTreeSet::new();
    for step in &steps {
        needed.insert(step.params.str("database").unwrap_or("flow").to_owned());
        if let Some((to, _)) = step.params.path("to")
            && let Some(db) = to.first()
        {
            needed.insert((*db).to_owned());
        }
    }
    crate::run::block_on(async {
        let session = match Session::open(&environment, &base, &needed, 4, &[]).await {
            Ok(session) => session,
            Err(error) => {
                output::error(error);
                return Exit::Failure;
            }
        };
        let databases = Arc::new(session.databases.clone());
        let mut exit = Exit::Success;
        let mut reports = Vec::new();
        for step in &steps {
            let mut context = RunContext::for_step(
                step,
                base.clone(),
                Arc::clone(&databases),
                Arc::clone(&pipeline.checks),
            );
            // `flow diff` compares the release on disk: the model is made
            // again, in a scratch schema, from the files as they are now.
            let scratch = match action {
                Action::Diff { .. } => {
                    match fresh_model(&pipeline, step, &base, &databases).await {
                        Ok(scratch) => scratch,
                        Err(error) => {
                            output::report(error.report);
                            exit = Exit::Failure;
                            continue;
                        }
                    }
                }
                Action::Rollback => None,
            };
            if let Some((schema, _)) = &scratch {
                context.params = Arc::new(step.params.with_name("from", schema));
            }
            let result = match action {
                Action::Diff { json } => flow_plugin_pg::target_populate::populate(&context, true)
                    .await
                    .map(|report| {
                        if report.would_fail() {
                            exit = Exit::Failure;
                        }
                        if json {
                            let mut value = report.to_json();
                            value["step"] = serde_json::json!(step.key);
                            reports.push(value);
                            String::new()
                        } else {
                            format!("{}\n{}", step.key, report.render(true))
                        }
                    }),
                Action::Rollback => {
                    let done = flow_plugin_pg::target_populate::rollback(&context).await;
                    if let Ok(line) = &done {
                        record_rollback(&session, &pipeline, file, &environment.name, step, line)
                            .await;
                    }
                    done.map(|line| format!("{}: {line}\n", step.key))
                }
            };
            if let Some((schema, database)) = &scratch
                && let Some(database) = databases.get(database)
                && let Ok(client) = database.client().await
            {
                let _ = client
                    .batch_execute(&format!(
                        "DROP SCHEMA IF EXISTS {} CASCADE",
                        flow_db::quote_ident(schema)
                    ))
                    .await;
            }
            match result {
                Ok(text) => output::out(&text),
                Err(error) => {
                    output::report(error.report);
                    exit = Exit::Failure;
                }
            }
        }
        if matches!(action, Action::Diff { json: true }) {
            output::out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&reports).unwrap_or_default()
            ));
        }
        session.close().await;
        exit
    })
}

/// A rollback is a run of its own in the records (`flow runs` shows it), its
/// populate step `rolled_back`: the next run does not take the API for the
/// release that step last loaded, and runs it again.
async fn record_rollback(
    session: &Session,
    pipeline: &Pipeline,
    file: &Path,
    environment: &str,
    step: &StepNode,
    line: &str,
) {
    let Some(database) = session.databases.get("flow") else {
        return;
    };
    let recorded = async {
        let records = flow_engine::Records::open(database).await?;
        let id = step.id.to_string();
        let run = records
            .start_run(
                &pipeline.name,
                &file.display().to_string(),
                environment,
                "rollback",
                std::slice::from_ref(&id),
                "",
            )
            .await?;
        records
            .step_finished(
                run,
                &id,
                &flow_engine::StepEnd {
                    status: "rolled_back",
                    note: Some(line.to_owned()),
                    ..flow_engine::StepEnd::default()
                },
            )
            .await?;
        records.finish_run(run, "succeeded").await
    }
    .await;
    if let Err(error) = recorded {
        output::note(&format!("warning: the rollback was not recorded: {error}"));
    }
}

/// Makes the model a populate step reads again, from the release and the
/// transforms as they are on disk, in a scratch schema of the flow database
/// (`<model>__flow_diff`); returns the schema and its database, or `None`
/// when no step of the flow makes that model.
async fn fresh_model(
    pipeline: &Pipeline,
    populate: &StepNode,
    base: &Path,
    databases: &Arc<std::collections::BTreeMap<String, flow_db::Database>>,
) -> Result<Option<(String, String)>, flow_engine::StepError> {
    let from = populate.params.str("from").unwrap_or("model").to_owned();
    let database = populate.params.str("database").unwrap_or("flow").to_owned();
    let of = |operation: &'static str| -> Vec<&StepNode> {
        pipeline
            .steps
            .iter()
            .filter(|s| {
                let spec = s.operation.spec();
                spec.tool == "pg"
                    && spec.target == flow_engine::Target::Fixed("model")
                    && spec.operation == operation
                    && s.params.str("schema").unwrap_or("model") == from
                    && s.params.str("database").unwrap_or("flow") == database
            })
            .collect()
    };
    let creates = of("create");
    if creates.is_empty() {
        return Ok(None);
    }
    let scratch = flow_db::names::fit_with(&from, "__flow_diff");
    if let Some(db) = databases.get(&database) {
        db.client()
            .await?
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                flow_db::quote_ident(&scratch)
            ))
            .await
            .map_err(flow_db::DbError::from)?;
    }
    // The flow database's extensions first (PostGIS for geometry columns):
    // `configure` is idempotent.
    for step in pipeline.steps.iter().filter(|s| {
        let spec = s.operation.spec();
        spec.tool == "pg"
            && spec.operation == "configure"
            && s.id.target.as_deref() == Some(database.as_str())
    }) {
        let mut context = RunContext::for_step(
            step,
            base.to_path_buf(),
            Arc::clone(databases),
            Arc::default(),
        );
        context.target = Some(database.clone());
        step.operation.run(&context).await?;
    }
    for step in creates.into_iter().chain(of("transform")) {
        let mut context = RunContext::for_step(
            step,
            base.to_path_buf(),
            Arc::clone(databases),
            Arc::default(),
        );
        context.params = Arc::new(step.params.with_name("schema", &scratch));
        step.operation.run(&context).await?;
    }
    Ok(Some((scratch, database)))
}
