//! `flow runs` and `flow show`: the run records, for people and machines.

use std::path::Path;

use flow_engine::{Records, Registry};

use crate::cli_error::CliError;
use crate::exit::Exit;
use crate::{load, output};

enum Query {
    Runs {
        limit: i64,
    },
    /// A run by number, or the latest.
    Show {
        run: Option<i64>,
    },
    /// The log of a step in a run (by number, or the latest).
    Logs {
        run: Option<i64>,
        step: String,
        base: std::path::PathBuf,
    },
}

/// A run as written on the command line: a number or `latest`.
fn parse_run(text: &str) -> Result<Option<i64>, CliError> {
    if text == "latest" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| CliError::BadRun {
        text: text.to_owned(),
    })
}

/// `flow logs FILE RUN STEP`.
pub fn logs(file: &Path, run: &str, step: String, env: Option<&str>, registry: &Registry) -> Exit {
    match parse_run(run) {
        Ok(run) => {
            let base = flow_engine::base_dir(file);
            let query = Query::Logs { run, step, base };
            history(file, env, &query, false, registry)
        }
        Err(error) => {
            output::error(error);
            Exit::Invalid
        }
    }
}

/// `flow runs FILE`.
pub fn runs(file: &Path, limit: i64, json: bool, env: Option<&str>, registry: &Registry) -> Exit {
    history(file, env, &Query::Runs { limit }, json, registry)
}

/// `flow show FILE RUN`.
pub fn show(file: &Path, run: &str, json: bool, env: Option<&str>, registry: &Registry) -> Exit {
    match parse_run(run) {
        Ok(run) => history(file, env, &Query::Show { run }, json, registry),
        Err(error) => {
            output::error(error);
            Exit::Invalid
        }
    }
}

/// The run asked for: its number, or the number of the flow's latest.
async fn resolve_run(records: &Records, flow: &str, run: Option<i64>) -> Result<i64, Exit> {
    if let Some(run) = run {
        return Ok(run);
    }
    match records.runs(Some(flow), 1).await {
        Ok(runs) => match runs.first() {
            Some(run) => Ok(run.id),
            None => {
                output::note(&format!("`{flow}` has no recorded run yet"));
                Err(Exit::Invalid)
            }
        },
        Err(error) => {
            output::error(error);
            Err(Exit::Failure)
        }
    }
}

fn history(file: &Path, env: Option<&str>, query: &Query, json: bool, registry: &Registry) -> Exit {
    load::with_records(file, env, registry, async |records, flow| {
        answer(records, &flow.pipeline.name, query, json).await
    })
}

async fn answer(records: &Records, flow: &str, query: &Query, json: bool) -> Exit {
    match query {
        Query::Runs { limit } => match records.runs(Some(flow), *limit).await {
            Ok(runs) if json => {
                output::out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&runs).unwrap_or_default()
                ));
                Exit::Success
            }
            Ok(runs) => {
                let mut text = format!(
                    "{:>5}  {:11}  {:20}  {:>8}  {:10}  {}\n",
                    "run", "status", "started (UTC)", "time", "env", "selection"
                );
                for run in runs {
                    text.push_str(&format!(
                        "{:>5}  {:11}  {:20}  {:>8}  {:10}  {}\n",
                        run.id,
                        run.status,
                        run.started_at,
                        run.seconds
                            .map(|s| format!("{s:.1}s"))
                            .unwrap_or_else(|| "-".into()),
                        run.environment,
                        if run.selection.is_empty() {
                            "(default)"
                        } else {
                            &run.selection
                        },
                    ));
                }
                output::out(&text);
                Exit::Success
            }
            Err(error) => {
                output::error(error);
                Exit::Failure
            }
        },
        Query::Logs { run, step, base } => {
            let run = match resolve_run(records, flow, *run).await {
                Ok(run) => run,
                Err(exit) => return exit,
            };
            let path = base
                .join(".flow/logs")
                .join(run.to_string())
                .join(format!("{}.log", flow_engine::log_name(step)));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    output::out(&text);
                    Exit::Success
                }
                Err(_) => {
                    output::error(CliError::NoLog {
                        step: step.clone(),
                        run,
                        path: path.display().to_string(),
                    });
                    Exit::Invalid
                }
            }
        }
        Query::Show { run } => {
            let run = &match resolve_run(records, flow, *run).await {
                Ok(run) => run,
                Err(exit) => return exit,
            };
            show_run(records, flow, run, json).await
        }
    }
}

async fn show_run(records: &Records, flow: &str, run: &i64, json: bool) -> Exit {
    {
        match records.run(*run).await {
            Ok(Some((record, _))) if record.flow != flow => {
                output::error(CliError::UnknownRun {
                    flow: flow.to_owned(),
                    run: *run,
                });
                Exit::Invalid
            }
            Ok(Some((record, steps))) if json => {
                let value = serde_json::json!({"run": record, "steps": steps});
                output::out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                ));
                Exit::Success
            }
            Ok(Some((record, steps))) => {
                let mut text = format!(
                    "run {} of `{}`: {}\n  started {} on {}, environment `{}`{}\n\n",
                    record.id,
                    record.flow,
                    record.status,
                    record.started_at,
                    record.host,
                    record.environment,
                    record
                        .seconds
                        .map(|s| format!(", took {s:.1}s"))
                        .unwrap_or_default()
                );
                let width = steps.iter().map(|s| s.step.len()).max().unwrap_or(4).max(4);
                text.push_str(&format!(
                    "  {:width$}  {:11}  {:>8}  {:>8}  {:>10}  {:>10}\n",
                    "step", "status", "attempts", "time", "rows", "bytes"
                ));
                for step in &steps {
                    text.push_str(&format!(
                        "  {:width$}  {:11}  {:>8}  {:>8}  {:>10}  {:>10}{}\n",
                        step.step,
                        step.status,
                        step.attempts,
                        step.seconds
                            .map(|s| format!("{s:.1}s"))
                            .unwrap_or_else(|| "-".into()),
                        step.rows,
                        step.bytes,
                        step.note
                            .as_deref()
                            .map(|n| format!("  {n}"))
                            .unwrap_or_default()
                    ));
                }
                for step in steps.iter().filter(|s| s.error.is_some()) {
                    text.push_str(&format!(
                        "\n{} failed:\n{}\n",
                        step.step,
                        step.error.as_deref().unwrap_or_default()
                    ));
                }
                output::out(&text);
                Exit::Success
            }
            Ok(None) => {
                output::error(CliError::UnknownRun {
                    flow: flow.to_owned(),
                    run: *run,
                });
                Exit::Invalid
            }
            Err(error) => {
                output::error(error);
                Exit::Failure
            }
        }
    }
}
