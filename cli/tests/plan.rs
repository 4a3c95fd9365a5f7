//! `flow plan` and `flow graph` on the reference pipeline, and selection.

mod support;

use support::Flow;

const PARCELS: &str = "flows/parcels.flow";

fn planned_ids(args: &[&str]) -> Vec<String> {
    let mut all = vec!["plan", PARCELS, "--json"];
    all.extend_from_slice(args);
    let output = Flow::new(all).expect(0);
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
    let output = Flow::new(["plan", PARCELS]).expect(0);
    insta::assert_snapshot!("plan_parcels", output.stdout);
}

#[test]
fn the_seed_group_plans_only_seed_steps() {
    let output = Flow::new(["plan", PARCELS, "--group", "seed"]).expect(0);
    insta::assert_snapshot!("plan_parcels_seed", output.stdout);
    assert_eq!(
        planned_ids(&["--group", "seed"]),
        ["pg:model:create", "pg:source:create", "pg:source:load"]
    );
}

#[test]
fn json_plans_name_group_and_upstream() {
    let output = Flow::new(["plan", PARCELS, "--group", "seed", "--json"]).expect(0);
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
    let output = Flow::new(["plan", PARCELS, "--step", "drizzle:*"]).expect(2);
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
    let output = Flow::new([
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
    let output = Flow::new(["plan", PARCELS, "--group", "sede"]).expect(2);
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
    let output = Flow::new(["plan", PARCELS, "--step", "pg:source:lod"]).expect(2);
    assert!(
        output.stderr.contains("did you mean `pg:source:load`?"),
        "{}",
        output.stderr
    );
}

#[test]
fn graphs_in_dot_and_mermaid() {
    let dot = Flow::new(["graph", PARCELS, "--group", "seed", "--group", "populate"]).expect(0);
    insta::assert_snapshot!("graph_parcels_dot", dot.stdout);
    let mermaid = Flow::new(["graph", PARCELS, "--format", "mermaid"]).expect(0);
    insta::assert_snapshot!("graph_parcels_mermaid", mermaid.stdout);
}
