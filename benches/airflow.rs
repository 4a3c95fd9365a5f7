//! The cost of running a flow through Airflow: the reference pipeline by one
//! `flow run`, and as `flow export airflow` writes it by `airflow dags test`
//! (a process per step, each `flow run --step ID --attach RUN`), on fresh
//! databases each, in the same run.
//!
//! `cargo build --release && cargo bench -p flow-benches --bench airflow`
//! prints both times and the ratio (Airflow's / flow's), for the fixture's
//! 400 parcels and for 1,000,000 (its parcels 2,500 times over, ids apart),
//! with a task per step and a task per flow group (`--per group`): Airflow's
//! cost is per task, so the ratio falls as the steps grow. Airflow is the one
//! `scripts/test` installs (`~/.cache/flow/airflow`, or `FLOW_AIRFLOW`);
//! without it, or without the release `flow` binary, it says so and stops.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flow_db::testing::TestDatabase;

fn run(command: &mut Command) -> Duration {
    let started = Instant::now();
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// `spaces/shapefiles/town` under `dir`: the fixture's zoning, and its 400
/// parcels `copies` times, each copy with ids of its own.
fn scaled_town(root: &Path, dir: &Path, copies: usize) -> PathBuf {
    let town = root.join("fixtures/spaces/shapefiles/town");
    let out = dir.join("spaces/shapefiles/town");
    std::fs::create_dir_all(&out).expect("dir");
    for entry in std::fs::read_dir(&town).expect("read").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("parcels.") || name.ends_with(".prj") || name.ends_with(".cpg") {
            std::fs::copy(entry.path(), out.join(&name)).expect("copy");
        }
    }
    let mut reader = shapefile::Reader::from_path(town.join("parcels.shp")).expect("parcels");
    let parcels: Vec<(shapefile::Shape, dbase::Record)> = reader
        .iter_shapes_and_records()
        .map(|r| r.expect("record"))
        .collect();
    let field = |name: &str| -> dbase::FieldName { name.try_into().expect("field") };
    let table = dbase::TableWriterBuilder::new()
        .add_numeric_field(field("PARCEL_ID"), 10, 0)
        .add_character_field(field("ZONE"), 20)
        .add_character_field(field("OWNER"), 30)
        .add_date_field(field("SINCE"));
    let mut writer = shapefile::Writer::from_path(out.join("parcels.shp"), table).expect("writer");
    for copy in 0..copies {
        for (shape, record) in &parcels {
            let mut record = record.clone();
            if let Some(dbase::FieldValue::Numeric(Some(id))) = record.get("PARCEL_ID").cloned() {
                record.insert(
                    "PARCEL_ID".into(),
                    dbase::FieldValue::Numeric(Some(id + (copy * 1000) as f64)),
                );
            }
            let shapefile::Shape::Polygon(polygon) = shape else {
                panic!("the fixture's parcels are polygons");
            };
            writer
                .write_shape_and_record(polygon, &record)
                .expect("write");
        }
    }
    dir.join("spaces")
}

/// The pipeline in `dir` (objects in `spaces`) by one `flow run`, then as
/// its exported DAG by `airflow dags test` for `date`, each on fresh
/// databases.
async fn measure(
    flow: &Path,
    airflow: &str,
    dir: &Path,
    spaces: &str,
    date: &str,
) -> (Duration, Duration, Duration) {
    let databases = |tag: &'static str| async move {
        (
            TestDatabase::create(&format!("benchairf{tag}"))
                .await
                .expect("db"),
            TestDatabase::create(&format!("benchaira{tag}"))
                .await
                .expect("db"),
        )
    };
    let with_env = |command: &mut Command, flow_db: &TestDatabase, api_db: &TestDatabase| {
        command
            .current_dir(dir)
            .env("FLOW_DATABASE_URL", flow_db.url())
            .env("API_DATABASE_URL", api_db.url())
            .env("SPACES_URL", spaces)
            .env("NO_COLOR", "1");
    };
    let (flow_db, api_db) = databases("one").await;
    let mut one = Command::new(flow);
    one.args(["run", "parcels.flow", "--plain"]);
    with_env(&mut one, &flow_db, &api_db);
    let alone = run(&mut one);

    let home = dir.join("airflow");
    std::fs::create_dir_all(home.join("dags")).expect("dags");
    // The DAG exported with `per`, run by Airflow for `date`, on fresh
    // databases.
    let through_airflow = async |tag: &'static str, per: &str, date: &str| {
        let (flow_db, api_db) = databases(tag).await;
        let mut export = Command::new(flow);
        export.args([
            "export",
            "airflow",
            "parcels.flow",
            "--per",
            per,
            "--binary",
            &flow.display().to_string(),
            "-o",
            &home.join("dags/parcels.py").display().to_string(),
        ]);
        with_env(&mut export, &flow_db, &api_db);
        run(&mut export);
        let airflow_command = |args: &[&str]| {
            let mut command = Command::new(airflow);
            command
                .args(args)
                .env("AIRFLOW_HOME", &home)
                .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False");
            with_env(&mut command, &flow_db, &api_db);
            command
        };
        run(&mut airflow_command(&["db", "migrate"]));
        run(&mut airflow_command(&["dags", "test", "parcels", date]))
    };
    let dag = through_airflow("dag", "step", date).await;
    let grouped = through_airflow("grp", "group", &format!("{date}T06:00:00+00:00")).await;
    (alone, dag, grouped)
}

#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let flow: PathBuf = flow_benches::release_flow().unwrap_or_default();
    let airflow = std::env::var("FLOW_AIRFLOW").unwrap_or_else(|_| {
        format!(
            "{}/.cache/flow/airflow/bin/airflow",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    if !flow.exists() || !Path::new(&airflow).exists() {
        println!(
            "airflow: needs the `flow` binary beside this benchmark (cargo build --release) and Airflow ({airflow}); skipped"
        );
        return;
    }
    let base = std::env::temp_dir().join(format!("flow-bench-airflow-{}", std::process::id()));
    let fixture = base.join("fixture");
    flow_benches::reference_pipeline(&fixture);
    let spaces = format!(
        "file://{}",
        std::fs::canonicalize(root.join("fixtures/spaces"))
            .expect("fixtures")
            .display()
    );
    let (alone, dag, grouped) = measure(&flow, &airflow, &fixture, &spaces, "2026-11-30").await;
    println!("\nthe reference pipeline, 10 steps, 2 cores");
    let what = "400 parcels (the fixture)";
    flow_benches::line(what, alone, Some(("airflow, task per step", dag)));
    flow_benches::line(what, alone, Some(("airflow, task per group", grouped)));

    // The same ten tasks on more data: Airflow's cost is per task, not per row.
    let copies = (2500.0 * flow_benches::scale(full, 0.002)).max(1.0) as usize;
    let scaled = base.join("scaled");
    flow_benches::reference_pipeline(&scaled);
    let spaces = format!("file://{}", scaled_town(&root, &scaled, copies).display());
    let (alone, dag, grouped) = measure(&flow, &airflow, &scaled, &spaces, "2026-12-01").await;
    let what = format!("{} parcels", copies * 400);
    flow_benches::line(&what, alone, Some(("airflow, task per step", dag)));
    flow_benches::line(&what, alone, Some(("airflow, task per group", grouped)));
    let _ = std::fs::remove_dir_all(&base);
}
