//! `flow run --step ID --attach KEY`: several processes, on one machine or
//! many, write the steps of one orchestrator run into one flow run; and
//! `flow export airflow` run by a real Airflow.

mod support;

use flow_db::testing::TestDatabase;
use support::reference::Reference;
use support::{Flow, Folder, flat};

const FLOW: &str = r#"flow attached

database flow = env("FLOW_DATABASE_URL")

step sh:run a {
  command = "sleep"
  args = ["1"]
}

step sh:run b {
  command = "sleep"
  args = ["1"]
}

step sh:run c {
  command = "true"
  after = [sh:run/a, sh:run/b]
}

step sh:run broken {
  group = manual
  command = "false"
}

step sh:run slow {
  group = manual
  command = "sh"
  args = ["-c", "sleep ${SLOW_SECONDS:-60}"]
}
"#;

fn spawn(folder: &Folder, db: &TestDatabase, step: &str, key: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args([
            "run",
            "attached.flow",
            "--plain",
            "--step",
            step,
            "--attach",
            key,
        ])
        .current_dir(&folder.dir)
        .env("FLOW_DATABASE_URL", db.url())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flow starts")
}

async fn run_of(db: &TestDatabase, key: &str) -> (i64, String, Vec<String>, Vec<(String, String)>) {
    let client = db.client().await.expect("client");
    let rows = client
        .query(
            "SELECT id, status, selected FROM _flow.runs WHERE attach = $1",
            &[&key],
        )
        .await
        .expect("runs");
    assert_eq!(rows.len(), 1, "one run for `{key}`");
    let id: i64 = rows[0].get(0);
    let steps = client
        .query(
            "SELECT step, status FROM _flow.steps WHERE run_id = $1 ORDER BY step",
            &[&id],
        )
        .await
        .expect("steps")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    (id, rows[0].get(1), rows[0].get(2), steps)
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_attached_to_one_key_write_one_run() {
    let db = TestDatabase::create("attach").await.expect("database");
    let folder = Folder::new("attach", "one");
    folder.write("attached.flow", FLOW);
    // Two steps at once, from two processes: one run, both recorded.
    let first = spawn(&folder, &db, "sh:run/a", "dag-run-1");
    let second = spawn(&folder, &db, "sh:run/b", "dag-run-1");
    for child in [first, second] {
        let output = child.wait_with_output().expect("flow ends");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (id, status, selected, steps) = run_of(&db, "dag-run-1").await;
    assert_eq!(status, "succeeded");
    assert_eq!(selected, ["sh:run/a", "sh:run/b"]);
    assert_eq!(
        steps,
        [
            ("sh:run/a".to_owned(), "succeeded".to_owned()),
            ("sh:run/b".to_owned(), "succeeded".to_owned())
        ]
    );
    // The step after them joins the same run.
    let output = spawn(&folder, &db, "sh:run/c", "dag-run-1")
        .wait_with_output()
        .expect("flow ends");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (again, status, selected, steps) = run_of(&db, "dag-run-1").await;
    assert_eq!((again, status.as_str()), (id, "succeeded"));
    assert_eq!(selected.len(), 3);
    assert!(steps.iter().all(|(_, s)| s == "succeeded"), "{steps:?}");

    // `flow runs` lists it like any other run.
    let runs = Flow::new(["runs", "attached.flow"])
        .dir(&folder.dir)
        .env("FLOW_DATABASE_URL", db.url())
        .expect(0);
    let text = flat(&runs.stdout);
    assert!(text.contains("--attach dag-run-1"), "{text}");

    // Registered first, the steps are pending: the run is going until the
    // last of them ends.
    Flow::new([
        "run",
        "attached.flow",
        "--attach",
        "dag-run-3",
        "--register",
        "--step",
        "sh:run/a",
        "--step",
        "sh:run/c",
    ])
    .dir(&folder.dir)
    .env("FLOW_DATABASE_URL", db.url())
    .expect(0);
    let (_, status, _, steps) = run_of(&db, "dag-run-3").await;
    assert_eq!(status, "running");
    assert!(steps.iter().all(|(_, s)| s == "pending"), "{steps:?}");
    let ok = spawn(&folder, &db, "sh:run/a", "dag-run-3")
        .wait_with_output()
        .expect("flow ends");
    assert!(ok.status.success());
    assert_eq!(
        run_of(&db, "dag-run-3").await.1,
        "running",
        "sh:run/c is still to come"
    );
    let ok = spawn(&folder, &db, "sh:run/c", "dag-run-3")
        .wait_with_output()
        .expect("flow ends");
    assert!(ok.status.success());
    assert_eq!(run_of(&db, "dag-run-3").await.1, "succeeded");

    // A failed step fails the run, and a later success does not hide it.
    let failed = spawn(&folder, &db, "sh:run/broken", "dag-run-2")
        .wait_with_output()
        .expect("flow ends");
    assert_eq!(failed.status.code(), Some(1));
    let ok = spawn(&folder, &db, "sh:run/a", "dag-run-2")
        .wait_with_output()
        .expect("flow ends");
    assert!(ok.status.success());
    let (other, status, _, _) = run_of(&db, "dag-run-2").await;
    assert_ne!(other, id);
    assert_eq!(status, "failed");
}

/// A task killed mid-step (a worker lost, a timeout): the next flow process
/// on that machine finds the step's process gone and interrupts the step,
/// so the run no longer looks as if it were going; a retry finishes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_step_whose_process_was_killed_is_interrupted_and_a_retry_finishes_it() {
    let db = TestDatabase::create("attachkill").await.expect("database");
    let folder = Folder::new("attach", "killed");
    folder.write("attached.flow", FLOW);
    let mut slow = spawn(&folder, &db, "sh:run/slow", "dag-run-9");
    let client = db.client().await.expect("client");
    let mut running = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        running = client
            .query_opt(
                "SELECT FROM _flow.steps WHERE step = 'sh:run/slow' AND status = 'running'",
                &[],
            )
            .await
            .expect("steps")
            .is_some();
        if running {
            break;
        }
    }
    assert!(running, "the step started");
    slow.kill().expect("SIGKILL");
    let _ = slow.wait();
    let (_, status, _, steps) = run_of(&db, "dag-run-9").await;
    assert_eq!(status, "running", "nothing has looked yet");
    assert_eq!(steps, [("sh:run/slow".to_owned(), "running".to_owned())]);

    // Any flow command on this machine looks.
    Flow::new(["runs", "attached.flow"])
        .dir(&folder.dir)
        .env("FLOW_DATABASE_URL", db.url())
        .expect(0);
    let (id, status, _, steps) = run_of(&db, "dag-run-9").await;
    assert_eq!(status, "interrupted");
    assert_eq!(
        steps,
        [("sh:run/slow".to_owned(), "interrupted".to_owned())]
    );
    let error: String = client
        .query_one("SELECT error FROM _flow.steps WHERE run_id = $1", &[&id])
        .await
        .expect("error")
        .get(0);
    assert!(error.contains("ended before the step did"), "{error}");

    // The orchestrator's retry attaches the step again and the run ends.
    Flow::new([
        "run",
        "attached.flow",
        "--plain",
        "--step",
        "sh:run/slow",
        "--attach",
        "dag-run-9",
    ])
    .dir(&folder.dir)
    .env("FLOW_DATABASE_URL", db.url())
    .env("SLOW_SECONDS", "0")
    .expect(0);
    let (again, status, _, steps) = run_of(&db, "dag-run-9").await;
    assert_eq!((again, status.as_str()), (id, "succeeded"));
    assert_eq!(steps, [("sh:run/slow".to_owned(), "succeeded".to_owned())]);
}

/// `flow export airflow FILE ARGS... -o OUT` in `dir`, the tasks running
/// this build of flow.
fn export(dir: &std::path::Path, file: &str, args: &[&str], out: &std::path::Path) {
    let mut all = vec![
        "export",
        "airflow",
        file,
        "--binary",
        env!("CARGO_BIN_EXE_flow"),
    ];
    all.extend(args);
    let out = out.display().to_string();
    all.extend(["-o", &out]);
    Flow::new(all).dir(dir).expect(0);
}

/// Airflow (from PyPI, installed by `scripts/test`) runs the reference
/// pipeline as `flow export airflow` writes it: `airflow dags test` with
/// SQLite metadata, every task a `flow run --step ID --attach RUN`.
#[tokio::test(flavor = "multi_thread")]
async fn airflow_runs_the_exported_reference_pipeline_into_one_flow_run() {
    let airflow = std::env::var("FLOW_AIRFLOW").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/flow/airflow/bin/airflow")
    });
    let reference = Reference::new("airflow").await;
    let home = reference.dir.join("airflow");
    std::fs::create_dir_all(home.join("dags")).expect("dags");
    let dag = home.join("dags/parcels.py");
    export(&reference.dir, "parcels.flow", &[], &dag);
    let airflow_command = |args: &[&str]| {
        let mut command = std::process::Command::new(&airflow);
        command
            .args(args)
            .current_dir(&reference.dir)
            .env("AIRFLOW_HOME", &home)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("NO_COLOR", "1");
        for (name, value) in reference.env() {
            command.env(name, value);
        }
        let output = command
            .output()
            .expect("airflow runs (scripts/test installs it)");
        assert!(
            output.status.success(),
            "airflow {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    airflow_command(&["db", "migrate"]);
    airflow_command(&["dags", "test", "parcels", "2026-11-30"]);

    // The API database ends as after `flow run`.
    reference.assert_loaded().await;
    // One flow run for the DAG run, every step in it.
    let client = reference.flow.client().await.expect("client");
    let row = client
        .query_one(
            "SELECT r.status, r.attach, count(s.*), count(*) FILTER (WHERE s.status = 'succeeded')
               FROM _flow.runs r JOIN _flow.steps s ON s.run_id = r.id
              WHERE r.attach IS NOT NULL GROUP BY r.id",
            &[],
        )
        .await
        .expect("one attached run");
    let (status, key, steps, succeeded): (String, String, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(status, "succeeded");
    assert!(key.starts_with("manual__"), "{key}");
    assert_eq!((steps, succeeded), (10, 10));

    // A task per flow group: the same run, four step tasks fewer.
    export(&reference.dir, "parcels.flow", &["--per", "group"], &dag);
    let grouped = std::fs::read_to_string(&dag).expect("dag");
    assert!(grouped.contains("seed >> populate"), "{grouped}");
    airflow_command(&["dags", "test", "parcels", "2026-12-01"]);
    let runs: Vec<(String, String, i64)> = client
        .query(
            "SELECT r.attach, r.status, count(s.*) FROM _flow.runs r JOIN _flow.steps s ON s.run_id = r.id
              WHERE r.flow = 'parcels' AND r.attach IS NOT NULL GROUP BY r.id ORDER BY r.id",
            &[],
        )
        .await
        .expect("runs")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_ne!(runs[0].0, runs[1].0);
    assert_eq!(
        (runs[1].1.as_str(), runs[1].2),
        ("succeeded", 10),
        "{runs:?}"
    );

    // A schedule with `for_each`: each DAG run runs the flow once per item,
    // with its values, into one flow run per item.
    std::fs::write(reference.dir.join("vendors.flow"), VENDORS).expect("flow");
    export(
        &reference.dir,
        "vendors.flow",
        &[],
        &home.join("dags/vendors.py"),
    );
    airflow_command(&["dags", "test", "vendors", "2026-11-30"]);
    let mut fetched: Vec<String> = std::fs::read_to_string(reference.dir.join("fetched.txt"))
        .expect("fetched")
        .lines()
        .map(str::to_owned)
        .collect();
    fetched.sort();
    // A value is passed as written, not as an Airflow template.
    assert_eq!(fetched, ["hallmark 2025", "{{ ds }} 2025"]);
    let runs: Vec<(String, String, String, i64)> = client
        .query(
            "SELECT r.attach, r.status, r.vars, count(s.*) FROM _flow.runs r JOIN _flow.steps s ON s.run_id = r.id
              WHERE r.flow = 'vendors' GROUP BY r.id ORDER BY r.attach COLLATE \"C\"",
            &[],
        )
        .await
        .expect("runs")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for ((key, status, vars, steps), item) in runs.iter().zip(["hallmark,2025", "{{ ds }},2025"]) {
        assert!(key.ends_with(&format!("[{item}]")), "{key}");
        assert_eq!((status.as_str(), *steps), ("succeeded", 2), "{key}");
        assert!(
            vars.contains(item.split(',').next().unwrap_or_default()),
            "{vars}"
        );
    }
}

const VENDORS: &str = r#"flow vendors

database flow = env("FLOW_DATABASE_URL")

groups fetch -> publish

step sh:run fetch {
  group = fetch
  command = "sh"
  args = ["-c", "echo \"$FLOW_VENDOR $FLOW_YEAR\" >> fetched.txt"]
}

step sh:run publish {
  group = publish
  command = "true"
}

schedule nightly {
  cron = "0 3 * * *"
  run = [fetch, publish]
  for_each = { vendor = ["hallmark", "{{ ds }}"], year = ["2025"] }
}
"#;
