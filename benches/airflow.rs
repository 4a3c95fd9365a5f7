//! The cost of running a flow through Airflow: the reference pipeline by one
//! `flow run`, and as `flow export airflow` writes it by `airflow dags test`
//! (a process per step, each `flow run --step ID --attach RUN`), on fresh
//! databases each, in the same run.
//!
//! `cargo build --release && cargo bench -p flow-benches --bench airflow`
//! prints both times and the ratio (Airflow's / flow's). Airflow is the one
//! `scripts/test` installs (`~/.cache/flow/airflow`, or `FLOW_AIRFLOW`);
//! without it, or without the release `flow` binary, it says so and stops.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flow_db::testing::TestDatabase;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read").flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

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

#[tokio::main]
async fn main() {
    let Some(_full) = flow_benches::mode() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let flow: PathBuf = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("flow")))
        .filter(|p| p.exists())
        .unwrap_or_default();
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
    let dir = std::env::temp_dir().join(format!("flow-bench-airflow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root.join("flows/parcels"), &dir.join("parcels"));
    std::fs::copy(root.join("flows/parcels.flow"), dir.join("parcels.flow")).expect("flow");
    let spaces = format!(
        "file://{}",
        std::fs::canonicalize(root.join("fixtures/spaces"))
            .expect("fixtures")
            .display()
    );
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
    let (flow_db, api_db) = databases("one").await;
    let with_env = |command: &mut Command, flow_db: &TestDatabase, api_db: &TestDatabase| {
        command
            .current_dir(&dir)
            .env("FLOW_DATABASE_URL", flow_db.url())
            .env("API_DATABASE_URL", api_db.url())
            .env("SPACES_URL", &spaces)
            .env("NO_COLOR", "1");
    };
    let mut one = Command::new(&flow);
    one.args(["run", "parcels.flow", "--plain"]);
    with_env(&mut one, &flow_db, &api_db);
    let alone = run(&mut one);

    let (flow_db, api_db) = databases("dag").await;
    let home = dir.join("airflow");
    std::fs::create_dir_all(home.join("dags")).expect("dags");
    let mut export = Command::new(&flow);
    export.args([
        "export",
        "airflow",
        "parcels.flow",
        "--binary",
        &flow.display().to_string(),
        "-o",
        &home.join("dags/parcels.py").display().to_string(),
    ]);
    with_env(&mut export, &flow_db, &api_db);
    run(&mut export);
    let airflow_command = |args: &[&str]| {
        let mut command = Command::new(&airflow);
        command
            .args(args)
            .env("AIRFLOW_HOME", &home)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False");
        with_env(&mut command, &flow_db, &api_db);
        command
    };
    run(&mut airflow_command(&["db", "migrate"]));
    let dag = run(&mut airflow_command(&[
        "dags",
        "test",
        "parcels",
        "2026-11-30",
    ]));
    println!("\nthe reference pipeline, 10 steps, 2 cores");
    flow_benches::line("one flow run", alone, Some(("airflow dags test", dag)));
    let _ = std::fs::remove_dir_all(&dir);
}
