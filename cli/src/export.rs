//! `flow export airflow`: a flow as an Airflow DAG file, a task per step,
//! each running `flow run FILE --step ID --attach {{ run_id }}` so that the
//! tasks of one DAG run write into one flow run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use flow_engine::{Plan, Registry};

use crate::args::SelectArgs;
use crate::exit::Exit;
use crate::{load, output};

/// What one Airflow task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Per {
    /// One step.
    Step,
    /// The selected steps of one flow group.
    Group,
}

pub struct AirflowArgs<'a> {
    pub file: &'a Path,
    pub select: &'a SelectArgs,
    pub out: Option<&'a Path>,
    pub env: Option<&'a str>,
    /// The `flow` the tasks run (default: this binary's path).
    pub binary: Option<&'a str>,
    pub per: Per,
}

pub fn airflow(args: &AirflowArgs<'_>, registry: &Registry) -> Exit {
    let Some(flow) = load::flow(args.file, registry) else {
        return Exit::Invalid;
    };
    let selected = match args.select.selection().apply(&flow.pipeline) {
        Ok(selected) => selected,
        Err(errors) => {
            errors.into_iter().for_each(output::error);
            return Exit::Invalid;
        }
    };
    // The environment's variables are the workers' to have; its name is
    // checked here.
    if let Some(name) = args
        .env
        .filter(|name| *name != "default" && !flow.pipeline.environments.contains_key(*name))
    {
        let known = flow.pipeline.environments.keys().map(String::as_str);
        output::error(flow_engine::EnvironmentError::Unknown {
            name: name.to_owned(),
            help: flow_engine::did_you_mean(name, "environments", known),
        });
        return Exit::Invalid;
    }
    let plan = Plan::new(&flow.pipeline, &selected);
    let file = std::fs::canonicalize(args.file).unwrap_or_else(|_| args.file.to_path_buf());
    let binary = args.binary.map_or_else(
        || std::env::current_exe().map_or_else(|_| "flow".to_owned(), |p| p.display().to_string()),
        str::to_owned,
    );
    let tasks = tasks(&flow.pipeline, &plan, args.per);
    let text = dag(&flow, &plan, &tasks, &file, &binary, args.env);
    match args.out {
        Some(out) => {
            if let Err(error) = std::fs::write(out, text) {
                output::error(crate::cli_error::CliError::Write {
                    path: out.display().to_string(),
                    reason: error.to_string(),
                });
                return Exit::Failure;
            }
            output::note(&format!(
                "{}: {} task(s) in DAG `{}`",
                out.display(),
                tasks.len() + 1,
                flow.pipeline.name
            ));
        }
        None => output::out(&text),
    }
    Exit::Success
}

/// How a task's command is made: everything but the DAG run's id is kept
/// from Airflow's templates (a value or path with `{{` stays as written).
const FLOW_RUN: &str = r#"

def literal(text):
    """Text Airflow's templates leave as it is."""
    return "{% raw %}" + text + "{% endraw %}"


def flow_run(args, item, values):
    """`flow run` in the DAG run's flow run (one per item), with the item's values."""
    key = "'{{ run_id }}'" + (literal(shlex.quote(f"[{item}]")) if item else "")
    given = "".join(" --var " + shlex.quote(f"{name}={value}") for name, value in values.items())
    command = literal(f"{shlex.quote(FLOW)} run {shlex.quote(FILE)} {args}")
    return command + " --attach " + key + literal(given + ENV)


"#;

/// A step id as an Airflow task id: letters, digits and `_`.
fn task_id(step: &str) -> String {
    step.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A Python string literal.
fn py(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A shell word.
fn sh(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// An Airflow task: one step, or the selected steps of a flow group.
struct Task {
    /// Its task id, also its name in the DAG file.
    id: String,
    /// What `flow run` is given to run it.
    args: String,
    /// The task group it is drawn in (a step's flow group).
    group: Option<String>,
    retries: Option<u64>,
    timeout: Option<std::time::Duration>,
    /// The steps it runs.
    steps: Vec<String>,
}

/// The tasks of the DAG, in the plan's order.
fn tasks(pipeline: &flow_engine::Pipeline, plan: &Plan, per: Per) -> Vec<Task> {
    let mut tasks: Vec<Task> = Vec::new();
    for step in &plan.steps {
        let node = &pipeline.steps[step.index];
        let unit = match (per, &step.group) {
            (Per::Group, Some(group)) => task_id(group),
            _ => task_id(&step.id),
        };
        match tasks.iter_mut().find(|t| t.id == unit) {
            Some(task) => {
                task.steps.push(step.id.clone());
                task.retries = task.retries.max(node.retries);
                task.timeout = task.timeout.zip(node.timeout).map(|(a, b)| a + b);
            }
            None => tasks.push(Task {
                id: unit,
                args: String::new(),
                group: step.group.clone().filter(|_| per == Per::Step),
                retries: node.retries,
                timeout: node.timeout,
                steps: vec![step.id.clone()],
            }),
        }
    }
    for task in &mut tasks {
        let steps: Vec<String> = task
            .steps
            .iter()
            .map(|s| format!("--step {}", sh(s)))
            .collect();
        task.args = format!("{} --plain", steps.join(" "));
    }
    tasks
}

/// Each task's direct upstream tasks: what its steps wait for (steps, and
/// every step of the groups before theirs), in other tasks, without the
/// edges another path already implies.
fn edges(plan: &Plan, tasks: &[Task]) -> BTreeMap<String, BTreeSet<String>> {
    let task_of: BTreeMap<&str, &str> = tasks
        .iter()
        .flat_map(|t| t.steps.iter().map(move |s| (s.as_str(), t.id.as_str())))
        .collect();
    let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for step in &plan.steps {
        if let Some(group) = &step.group {
            by_group.entry(group).or_default().push(&step.id);
        }
    }
    let mut upstream: BTreeMap<String, BTreeSet<String>> = tasks
        .iter()
        .map(|t| (t.id.clone(), BTreeSet::new()))
        .collect();
    for step in &plan.steps {
        let mut waits: BTreeSet<&str> = step.after.iter().map(String::as_str).collect();
        for group in &step.after_groups {
            waits.extend(by_group.get(group.as_str()).into_iter().flatten().copied());
        }
        let own = task_of[step.id.as_str()];
        let entry = upstream.entry(own.to_owned()).or_default();
        entry.extend(
            waits
                .iter()
                .filter_map(|w| task_of.get(w))
                .filter(|t| **t != own)
                .map(|t| (*t).to_owned()),
        );
    }
    // Everything each task waits for, directly or not.
    let mut reach: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for task in upstream.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = upstream[task].iter().cloned().collect();
        while let Some(next) = stack.pop() {
            if seen.insert(next.clone()) {
                stack.extend(upstream.get(&next).into_iter().flatten().cloned());
            }
        }
        reach.insert(task.clone(), seen);
    }
    upstream
        .iter()
        .map(|(task, direct)| {
            let kept = direct
                .iter()
                .filter(|a| {
                    !direct
                        .iter()
                        .any(|b| b != *a && reach.get(b).is_some_and(|r| r.contains(*a)))
                })
                .cloned()
                .collect();
            (task.clone(), kept)
        })
        .collect()
}

fn dag(
    flow: &flow_engine::FlowFile,
    plan: &Plan,
    tasks: &[Task],
    file: &Path,
    binary: &str,
    env: Option<&str>,
) -> String {
    let pipeline = &flow.pipeline;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# The flow `{}` as an Airflow DAG, written by `flow export airflow`.\n\
         # A first task records every step in one flow run; then each task\n\
         # runs one step with `flow run --step ID --attach RUN`: the\n\
         # tasks of one DAG run write into one flow run (`flow runs` shows it),\n\
         # and a step whose inputs did not change is still skipped. Write it\n\
         # again when the flow changes.\n",
        pipeline.name
    );
    text.push_str(
        "import datetime\nimport shlex\n\n\
         try:\n    from airflow.sdk import DAG, TaskGroup\n\
         except ImportError:  # Airflow 2\n    from airflow import DAG\n    from airflow.utils.task_group import TaskGroup\n\
         try:\n    from airflow.providers.standard.operators.bash import BashOperator\n\
         except ImportError:  # Airflow 2\n    from airflow.operators.bash import BashOperator\n\n",
    );
    let _ = writeln!(text, "FLOW = {}", py(binary));
    let _ = writeln!(text, "FILE = {}", py(&file.display().to_string()));
    let env_args = env.map(|e| format!(" --env {}", sh(e))).unwrap_or_default();
    let _ = writeln!(text, "ENV = {}", py(&env_args));
    let steps: Vec<String> = plan.steps.iter().map(|s| py(&s.id)).collect();
    let _ = writeln!(text, "STEPS = [{}]", steps.join(", "));
    text.push_str("SELECTED = \" \".join(\"--step \" + shlex.quote(step) for step in STEPS)\n");
    let schedule = pipeline.schedules.first();
    // A schedule with `for_each` runs the flow once per item, with its
    // values: one flow run per item and DAG run, keyed `RUN_ID[item]`.
    let jobs: Vec<(String, Vec<(String, String)>)> = schedule
        .map(|s| s.jobs())
        .filter(|jobs| jobs.iter().any(|(_, values)| !values.is_empty()))
        .unwrap_or_default();
    if let Some(schedule) = schedule.filter(|_| !jobs.is_empty()) {
        let _ = writeln!(
            text,
            "# The items of schedule `{}`: one flow run each, with its values.\nJOBS = [",
            schedule.name
        );
        // Task group ids from the items, made unique (`a b` and `a_b` would
        // both be `a_b`).
        let mut used = BTreeSet::new();
        for (job, values) in &jobs {
            let item = job
                .strip_prefix(&format!("{}[", schedule.name))
                .and_then(|rest| rest.strip_suffix(']'))
                .unwrap_or(job);
            let given: Vec<String> = values
                .iter()
                .map(|(name, value)| format!("{}: {}", py(name), py(value)))
                .collect();
            let base = task_id(item);
            let mut group = base.clone();
            let mut n = 1;
            while !used.insert(group.clone()) {
                n += 1;
                group = format!("{base}_{n}");
            }
            let _ = writeln!(
                text,
                "    ({}, {}, {{{}}}),",
                py(&group),
                py(item),
                given.join(", ")
            );
        }
        text.push_str("]\n");
    }
    text.push_str(FLOW_RUN);
    text.push_str(
        "def tasks(item, values):\n    \"\"\"A first task records every step in the flow run, pending, so that the run\n    is going until the last of them ends; then the tasks that run them.\"\"\"\n",
    );
    let _ = writeln!(
        text,
        "    register = BashOperator(task_id=\"flow_register\", bash_command=flow_run(\"--register \" + SELECTED, item, values))"
    );
    let mut groups: Vec<(Option<&str>, Vec<&Task>)> = Vec::new();
    for task in tasks {
        let group = task.group.as_deref();
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, members)) => members.push(task),
            None => groups.push((group, vec![task])),
        }
    }
    for (group, members) in &groups {
        let indent = if group.is_some() { "        " } else { "    " };
        if let Some(group) = group {
            let _ = writeln!(text, "    with TaskGroup({}):", py(&task_id(group)));
        }
        for task in members {
            let mut extra = String::new();
            if let Some(retries) = task.retries {
                let _ = write!(extra, ", retries={retries}");
            }
            if let Some(timeout) = task.timeout {
                let _ = write!(
                    extra,
                    ", execution_timeout=datetime.timedelta(seconds={})",
                    timeout.as_secs().max(1)
                );
            }
            let _ = writeln!(
                text,
                "{indent}{} = BashOperator(task_id={}, bash_command=flow_run({}, item, values){extra})",
                task.id,
                py(&task.id),
                py(&task.args),
            );
        }
    }
    for (task, upstream) in edges(plan, tasks) {
        if upstream.is_empty() {
            let _ = writeln!(text, "    register >> {task}");
        }
        for before in upstream {
            let _ = writeln!(text, "    {before} >> {task}");
        }
    }
    let schedule_text = match schedule {
        Some(s) => match (&s.cron, s.every) {
            (Some(cron), _) => py(cron),
            (None, Some(every)) => format!("datetime.timedelta(seconds={})", every.as_secs()),
            (None, None) => "None".into(),
        },
        None => "None".into(),
    };
    let timezone = schedule.map_or("UTC", |s| s.timezone.as_str());
    let _ = writeln!(
        text,
        "\n\nwith DAG(\n    dag_id={},\n    schedule={schedule_text},\n    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),\n    catchup=False,\n    tags=[\"flow\"],\n    doc_md={},\n) as dag:",
        py(&pipeline.name),
        py(&format!(
            "`{}` from `{}` (schedule timezone {timezone}).",
            pipeline.name,
            file.display()
        ))
    );
    if jobs.is_empty() {
        text.push_str("    tasks(\"\", {})\n");
    } else {
        text.push_str(
            "    for group, item, values in JOBS:\n        with TaskGroup(group):\n            tasks(item, values)\n",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{sh, task_id};

    #[test]
    fn names_become_task_ids_and_shell_words() {
        assert_eq!(
            task_id("pg:model:transform/zoning"),
            "pg_model_transform_zoning"
        );
        assert_eq!(sh("it's"), "'it'\\''s'");
    }
}
