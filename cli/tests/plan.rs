//! `flow plan` and `flow graph` on the reference pipeline, and selection.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use support::{Flow, root};

const PARCELS: &str = "flows/parcels.flow";

/// A copy of the reference flow and its fixtures, with no run history
/// (`flows/.flow` of the checkout may hold the demo's): every plan here
/// sees a flow that has never run.
fn reference() -> &'static Path {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        // Beside the test cluster's state, which `scripts/test` removes at
        // the end (a static is never dropped, so the copy cannot remove
        // itself).
        let base = flow_db::testing::state_dir()
            .parent()
            .map_or_else(std::env::temp_dir, Path::to_path_buf);
        let copy = base.join(format!("flow-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&copy);
        for part in ["flows/parcels.flow", "flows/parcels", "fixtures/spaces"] {
            copy_tree(&root().join(part), &copy.join(part));
        }
        copy
    })
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("dir");
        for entry in std::fs::read_dir(from).expect("dir").flatten() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("dir");
        std::fs::copy(from, to).expect("copy");
    }
}

/// `flow ARGS...` in the copy of the reference flow.
fn flow<I, S>(args: I) -> Flow
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Flow::new(args).dir(reference())
}

fn planned_ids(args: &[&str]) -> Vec<String> {
    let mut all = vec!["plan", PARCELS, "--json"];
    all.extend_from_slice(args);
    let output = flow(all).expect(0);
    let plan: serde_json::Value = serde_json::from_str(&output.stdout).expect("plan JSON");
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn the_reference_plan() {
    let output = flow(["plan", PARCELS]).expect(0);
    insta::assert_snapshot!("plan_parcels", output.stdout);
}

#[test]
fn the_seed_group_plans_only_seed_steps() {
    let output = flow(["plan", PARCELS, "--group", "seed"]).expect(0);
    insta::assert_snapshot!("plan_parcels_seed", output.stdout);
    assert_eq!(
        planned_ids(&["--group", "seed"]),
        ["pg:model:create", "pg:source:create", "pg:source:load"]
    );
}

#[test]
fn json_plans_name_group_and_upstream() {
    let output = flow(["plan", PARCELS, "--group", "seed", "--json"]).expect(0);
    let plan: serde_json::Value = serde_json::from_str(&output.stdout).expect("plan JSON");
    let load = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "pg:source:load")
        .expect("the load step");
    assert_eq!(load["group"], "seed");
    assert_eq!(load["after"], serde_json::json!(["pg:source:create"]));
    assert_eq!(load["wave"], 2);
}

#[test]
fn manual_steps_run_only_when_named() {
    let all = planned_ids(&[]);
    assert_eq!(all.len(), 10);
    assert!(!all.contains(&"drizzle:api:pull".to_owned()));
    assert_eq!(
        planned_ids(&["--step", "drizzle:api:pull"]),
        ["drizzle:api:pull"]
    );
    assert_eq!(planned_ids(&["--group", "manual"]), ["drizzle:api:pull"]);
    // Upstream of push does not drag the pull in.
    assert!(!planned_ids(&["--step", "+pg:flow:push"]).contains(&"drizzle:api:pull".to_owned()));
}

#[test]
fn a_glob_does_not_select_manual_steps() {
    let output = flow(["plan", PARCELS, "--step", "drizzle:*"]).expect(2);
    assert!(
        output.stderr.contains("`drizzle:*` matches no step"),
        "{}",
        output.stderr
    );
}

#[test]
fn step_globs_and_upstream_downstream() {
    assert_eq!(
        planned_ids(&["--step", "pg:source:*"]),
        ["pg:source:create", "pg:source:load"]
    );
    assert_eq!(
        planned_ids(&["--step", "+pg:source:load"]),
        [
            "minio:download",
            "shp:convert",
            "pg:api:configure",
            "pg:flow:configure",
            "pg:flow:push",
            "pg:source:create",
            "pg:source:load"
        ]
    );
    assert_eq!(
        planned_ids(&["--step", "pg:model:transform+"]),
        ["pg:model:transform", "pg:target:populate"]
    );
}

#[test]
fn from_until_and_exclude_narrow_the_selection() {
    assert_eq!(
        planned_ids(&["--from", "pg:source:load"]),
        ["pg:source:load", "pg:model:transform", "pg:target:populate"]
    );
    assert_eq!(
        planned_ids(&["--until", "shp:convert"]),
        ["minio:download", "shp:convert"]
    );
    assert_eq!(
        planned_ids(&["--group", "seed", "--exclude", "pg:model:*"]),
        ["pg:source:create", "pg:source:load"]
    );
}

#[test]
fn order_is_kept_through_steps_left_out() {
    let output = flow([
        "plan",
        PARCELS,
        "--step",
        "minio:download",
        "--step",
        "pg:source:load",
        "--json",
    ])
    .expect(0);
    let plan: serde_json::Value = serde_json::from_str(&output.stdout).expect("plan JSON");
    let load = &plan["steps"][1];
    assert_eq!(load["id"], "pg:source:load");
    assert_eq!(load["wave"], 2);
    assert_eq!(load["after"], serde_json::json!(["minio:download"]));
}

#[test]
fn unknown_groups_and_steps_in_a_selection_are_diagnostics() {
    let output = flow(["plan", PARCELS, "--group", "sede"]).expect(2);
    assert!(
        output.stderr.contains("flow::select::unknown_group"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("did you mean `seed`?"),
        "{}",
        output.stderr
    );
    let output = flow(["plan", PARCELS, "--step", "pg:source:lod"]).expect(2);
    assert!(
        output.stderr.contains("did you mean `pg:source:load`?"),
        "{}",
        output.stderr
    );
}

#[test]
fn graphs_in_dot_and_mermaid() {
    let dot = flow(["graph", PARCELS, "--group", "seed", "--group", "populate"]).expect(0);
    insta::assert_snapshot!("graph_parcels_dot", dot.stdout);
    let mermaid = flow(["graph", PARCELS, "--format", "mermaid"]).expect(0);
    insta::assert_snapshot!("graph_parcels_mermaid", mermaid.stdout);
}

#[test]
fn an_environment_the_flow_does_not_have_is_refused() {
    let output = flow(["plan", PARCELS, "--env", "nowhere"]).expect(2);
    assert!(
        output.stderr.contains("unknown environment `nowhere`"),
        "{}",
        output.stderr
    );
}

#[test]
fn the_reference_pipeline_as_an_airflow_dag() {
    let dag = flow([
        "export", "airflow", PARCELS, "--binary", "flow", "--env", "prod",
    ])
    .expect(0);
    let dir = std::fs::canonicalize(reference()).expect("dir");
    insta::assert_snapshot!(
        "airflow_parcels",
        dag.stdout.replace(&dir.display().to_string(), "[DIR]")
    );
    // A selection exports only its steps, and only their edges.
    let seed = flow([
        "export", "airflow", PARCELS, "--group", "seed", "--binary", "flow",
    ])
    .expect(0);
    assert!(seed.stdout.contains("pg_source_load = BashOperator"));
    assert!(!seed.stdout.contains("minio_download"));
    assert!(seed.stdout.contains("pg_source_create >> pg_source_load"));
    // A task per flow group, in the groups' order.
    let grouped = flow([
        "export", "airflow", PARCELS, "--per", "group", "--binary", "flow",
    ])
    .expect(0);
    for edge in [
        "register >> download",
        "download >> configure",
        "configure >> seed",
        "seed >> populate",
    ] {
        assert!(grouped.stdout.contains(edge), "{edge}: {}", grouped.stdout);
    }
    assert_eq!(grouped.stdout.matches("BashOperator(task_id=").count(), 5);
    assert!(
        grouped
            .stdout
            .contains("--step 'pg:model:transform' --step 'pg:target:populate' --plain")
    );
    // A schedule's items, each a task group of its own, named after it.
    let dir = std::env::temp_dir().join(format!("flow-plan-items-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("items.flow"),
        "flow items\n\nstep sh:run a {\n  command = \"true\"\n}\n\nschedule nightly {\n  cron = \"0 3 * * *\"\n  run = [manual]\n  for_each = [\"a b\", \"a_b\", \"it's\"]\n}\n",
    )
    .expect("flow");
    let items = Flow::new(["export", "airflow", "items.flow", "--binary", "flow"])
        .dir(&dir)
        .expect(0);
    let _ = std::fs::remove_dir_all(&dir);
    for line in [
        r#"    ("a_b", "a b", {"item": "a b"}),"#,
        r#"    ("a_b_2", "a_b", {"item": "a_b"}),"#,
        r#"    ("it_s", "it's", {"item": "it's"}),"#,
    ] {
        assert!(items.stdout.contains(line), "{line}\n{}", items.stdout);
    }
    // An environment the flow does not have is refused at export, not on
    // the workers.
    let refused = flow([
        "export", "airflow", PARCELS, "--env", "prd", "--binary", "flow",
    ])
    .expect(2);
    assert!(
        refused.stderr.contains("unknown environment `prd`") && refused.stderr.contains("prod"),
        "{}",
        refused.stderr
    );
}
