//! `flow check`: every flow we ship is valid, and every broken flow gets the
//! diagnostics recorded in the snapshots.

mod support;

use std::path::{Path, PathBuf};

use support::{Flow, root};

fn flow_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            flow_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "flow") {
            found.push(path);
        }
    }
}

#[test]
fn every_flow_in_flows_passes_check() {
    let mut files = Vec::new();
    flow_files(&root().join("flows"), &mut files);
    assert!(!files.is_empty(), "flows/ holds flow files");
    for file in files {
        Flow::new(["check", file.to_str().expect("utf-8 path")]).expect(0);
    }
}

#[test]
fn every_flow_in_flows_is_formatted() {
    let mut files = Vec::new();
    flow_files(&root().join("flows"), &mut files);
    for file in files {
        Flow::new(["fmt", "--check", file.to_str().expect("utf-8 path")]).expect(0);
    }
}

#[test]
fn broken_flows_get_their_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut files = Vec::new();
    flow_files(&dir, &mut files);
    files.sort();
    assert!(files.len() >= 5);
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        let output = Flow::new(["check", name]).dir(&dir).expect(2);
        assert!(output.stdout.is_empty());
        insta::assert_snapshot!(
            format!("check_{}", name.trim_end_matches(".flow")),
            output.stderr
        );
    }
}

#[test]
fn a_missing_file_is_a_diagnostic() {
    let output = Flow::new(["check", "flows/nope.flow"]).expect(2);
    assert!(
        output.stderr.contains("flow::cli::read"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("cannot read `flows/nope.flow`"));
}

#[test]
fn check_reports_every_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let output = Flow::new(["check", "shape.flow", "blocks.flow"])
        .dir(&dir)
        .expect(2);
    assert!(
        output.stderr.contains("shape.flow: 3 problems"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("blocks.flow: 6 problems"),
        "{}",
        output.stderr
    );
}

#[test]
fn files_a_flow_needs_and_no_step_writes_are_checked_before_the_run() {
    let dir = std::env::temp_dir().join(format!("flow-check-missing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sql")).expect("dir");
    std::fs::write(
        dir.join("needs.flow"),
        r#"flow needs

database flow = "embedded"

step pg:model:create {
  release = "schemas/release.sql"
  tables = [parcels]
}

step sql:flow:run {
  sql = "sql/*.sql"
}

step sh:run fetch {
  command = "true"
  writes = ["data/raw/*.shp"]
}

step shp:convert {
  from = "data/raw/*.shp"
  to = "data/csv"
}
"#,
    )
    .expect("flow");
    let output = Flow::new(["check", "needs.flow"]).dir(&dir).expect(2);
    let text = support::flat(&output.stderr);
    assert!(text.contains("flow::check::missing_file"), "{text}");
    assert!(
        text.contains("no file matches `schemas/release.sql`") && text.contains("needs.flow:6:"),
        "{text}"
    );
    assert!(
        text.contains("no file matches `sql/*.sql`") && text.contains("needs.flow:11:"),
        "{text}"
    );
    // Files a step writes appear during the run: not looked for.
    assert!(!text.contains("data/raw"), "{text}");
    assert!(text.contains("needs.flow: 2 problems"), "{text}");

    std::fs::create_dir_all(dir.join("schemas")).expect("dir");
    std::fs::write(
        dir.join("schemas/release.sql"),
        "CREATE TABLE parcels (id int);",
    )
    .expect("release");
    std::fs::write(dir.join("sql/a.sql"), "SELECT 1;").expect("sql");
    let output = Flow::new(["check", "needs.flow"]).dir(&dir).expect(0);
    assert!(
        output.stderr.contains("needs.flow: ok, 4 steps"),
        "{}",
        output.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fan_out_with_an_empty_list_is_refused_and_named_lists_format() {
    let dir = std::env::temp_dir().join(format!("flow-check-fanout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let text = "flow fan\n\ndatabase flow = \"embedded\"\n\ngroups work\n\nstep sql:flow:run {\n  group = work\n  sql = \"*.flow\"\n}\n\nschedule daily {\n  cron = \"0 2 * * *\"\n  run = [work]\n  for_each = {vendor = [\"a\", \"b\"],   year = []}\n}\n";
    std::fs::write(dir.join("fan.flow"), text).expect("flow");
    let output = Flow::new(["check", "fan.flow"]).dir(&dir).expect(2);
    let flat = support::flat(&output.stderr);
    assert!(flat.contains("this list is empty"), "{flat}");
    assert!(flat.contains("fan.flow:15:"), "{flat}");
    std::fs::write(
        dir.join("fan.flow"),
        text.replace("year = []", "year = [\"2024\"]"),
    )
    .expect("flow");
    Flow::new(["check", "fan.flow"]).dir(&dir).expect(0);
    let formatted = Flow::new(["fmt", "--stdout", "fan.flow"])
        .dir(&dir)
        .expect(0);
    assert!(
        formatted
            .stdout
            .contains("  for_each = { vendor = [\"a\", \"b\"], year = [\"2024\"] }\n"),
        "{}",
        formatted.stdout
    );
    let _ = std::fs::remove_dir_all(&dir);
}
