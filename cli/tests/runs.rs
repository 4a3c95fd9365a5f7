//! Runs against a real PostgreSQL: records, inspection, resume,
//! skip-unchanged, a killed run, SQL errors and JSON events.

mod support;

use std::time::{Duration, Instant};

use support::{Project, flat};

const FLOW: &str = r#"flow nightly

database flow = env("FLOW_DATABASE_URL")

groups one -> two

step sql:flow:run a {
  group = one
  sql = "a.sql"
  writes = ["public.a"]
}

step sql:flow:run b {
  group = two
  sql = "b.sql"
  reads = ["public.a"]
  writes = ["public.b"]
}

step sh:run c {
  group = two
  command = "sh"
  args = ["-c", "echo made > c.txt; echo all good"]
  reads = []
  writes = ["c.txt"]
}
"#;

const A_SQL: &str =
    "DROP TABLE IF EXISTS a;\nCREATE TABLE a AS SELECT g AS n FROM generate_series(1, 10) g;\n";
const B_SQL: &str = "DROP TABLE IF EXISTS b;\nCREATE TABLE b AS SELECT n * 2 AS doubled FROM a;\n";
const B_BROKEN: &str = "DROP TABLE IF EXISTS b;\nCREATE TABLE b AS\n  SELECT n * 2 AS doubled, missing_column FROM a;\n";

/// The nightly flow with its two SQL files.
async fn project(name: &str) -> Project {
    let project = Project::new("runs", name, "nightly.flow", FLOW).await;
    project.write("a.sql", A_SQL);
    project.write("b.sql", B_SQL);
    project
}

/// Each step of run `run` with its status, by step.
fn statuses(project: &Project, run: i64) -> Vec<(String, String)> {
    let output = project
        .flow(&["show", &run.to_string(), "--json"])
        .expect(0);
    let value: serde_json::Value = serde_json::from_str(&output.stdout).expect("json");
    let mut steps: Vec<(String, String)> = value["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    steps.sort();
    steps
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_is_recorded_inspected_resumed_and_finished() {
    let project = project("resume").await;
    project.write("b.sql", B_BROKEN);
    let output = project.flow(&["run", "--keep-going"]).run();
    assert_eq!(output.code, 1, "{}", output.stderr);
    // The SQL error points at the file, line and column, with the SQLSTATE.
    let text = flat(&output.stderr);
    assert!(
        text.contains("column \"missing_column\" does not exist (SQLSTATE 42703)"),
        "{text}"
    );
    assert!(output.stderr.contains("[b.sql:3:28]"), "{}", output.stderr);

    assert_eq!(
        statuses(&project, 1),
        pairs(&[
            ("sh:run/c", "succeeded"),
            ("sql:flow:run/a", "succeeded"),
            ("sql:flow:run/b", "failed")
        ])
    );
    let shown = project.flow(&["show", "1"]).expect(0);
    assert!(
        shown.stdout.contains("sql:flow:run/b failed:"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("missing_column"), "{}", shown.stdout);
    let runs = project.flow(&["runs", "--json"]).expect(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).expect("json");
    assert_eq!(runs[0]["status"], "failed");

    project.write("b.sql", B_SQL);
    let output = project.flow(&["run", "--resume"]).expect(0);
    assert!(
        output.stderr.contains("1 step of `nightly`"),
        "{}",
        output.stderr
    );
    assert_eq!(
        statuses(&project, 2),
        pairs(&[("sql:flow:run/b", "succeeded")])
    );
    let client = project.db.client().await.expect("connect");
    let sum: i64 = client
        .query_one("SELECT sum(doubled)::bigint FROM b", &[])
        .await
        .expect("b")
        .get(0);
    assert_eq!(sum, 110);

    let output = project.flow(&["run", "--resume"]).expect(0);
    assert!(
        output.stderr.contains("0 steps"),
        "nothing left to resume: {}",
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_steps_are_skipped_and_changes_flow_downstream() {
    let project = project("skip").await;
    project.flow(&["run"]).expect(0);
    project.flow(&["run"]).expect(0);
    assert_eq!(
        statuses(&project, 2),
        pairs(&[
            ("sh:run/c", "skipped"),
            ("sql:flow:run/a", "skipped"),
            ("sql:flow:run/b", "skipped")
        ])
    );
    let plan = project.flow(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains("skipped: unchanged since run 1"),
        "{}",
        plan.stdout
    );

    // A changed input reruns its step and what depends on it.
    project.write("a.sql", &A_SQL.replace("10)", "20)"));
    let plan = project.flow(&["plan"]).expect(0);
    assert!(
        plan.stdout
            .contains("runs: file `a.sql` changed since run 1"),
        "{}",
        plan.stdout
    );
    project.flow(&["run"]).expect(0);
    assert_eq!(
        statuses(&project, 3),
        pairs(&[
            ("sh:run/c", "skipped"),
            ("sql:flow:run/a", "succeeded"),
            ("sql:flow:run/b", "succeeded")
        ])
    );
    // A missing output reruns its step.
    std::fs::remove_file(project.dir.join("c.txt")).expect("remove");
    project.flow(&["run"]).expect(0);
    assert_eq!(
        statuses(&project, 4)[0],
        ("sh:run/c".to_owned(), "succeeded".to_owned())
    );
    // --force reruns everything.
    project.flow(&["run", "--force"]).expect(0);
    assert!(
        statuses(&project, 5)
            .iter()
            .all(|(_, status)| status == "succeeded")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_leaves_nothing_half_written_and_shows_as_interrupted() {
    let project = project("killed").await;
    project.write(
        "a.sql",
        "CREATE TABLE a AS SELECT g AS n FROM generate_series(1, 10) g;\nSELECT pg_sleep(60);\n",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["run", "nightly.flow"])
        .current_dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flow starts");
    let client = project.db.client().await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sleeping: i64 = client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()", &[])
            .await
            .expect("activity")
            .get(0);
        if sleeping > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the step never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exists: bool = client
        .query_one("SELECT to_regclass('public.a') IS NOT NULL", &[])
        .await
        .expect("a")
        .get(0);
    assert!(!exists, "the half-done transaction was rolled back");

    let runs = project.flow(&["runs", "--json"]).expect(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).expect("json");
    assert_eq!(runs[0]["status"], "interrupted");
    assert_eq!(
        statuses(&project, 1)[1],
        ("sql:flow:run/a".to_owned(), "interrupted".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_events_and_exit_codes() {
    let project = project("json").await;
    let output = project.flow(&["run", "--json"]).expect(0);
    let events: Vec<serde_json::Value> = output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(
        events.first().map(|e| e["event"].clone()),
        Some("run_started".into())
    );
    assert_eq!(
        events.last().map(|e| e["status"].clone()),
        Some("succeeded".into())
    );
    let b = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "sql:flow:run/b")
        .expect("b");
    assert_eq!(b["rows"], 10);
    let c = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "sh:run/c")
        .expect("c");
    assert_eq!(c["note"], "all good");

    project.write("b.sql", B_BROKEN);
    project.flow(&["run", "--force", "--json"]).expect(1);
    project.write("nightly.flow", "step sql:flow:rn {}\n");
    project.flow(&["run"]).expect(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cancels_cleanly_and_is_recorded() {
    let project = project("sigterm").await;
    project.write(
        "a.sql",
        "CREATE TABLE a AS SELECT g AS n FROM generate_series(1, 10) g;\nSELECT pg_sleep(60);\n",
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["run", "nightly.flow"])
        .current_dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flow starts");
    let client = project.db.client().await.expect("connect");
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()";
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .query_one(sleeping, &[])
        .await
        .expect("activity")
        .get::<_, i64>(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the step never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("flow ends");
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancelled promptly"
    );

    let exists: bool = client
        .query_one("SELECT to_regclass('public.a') IS NOT NULL", &[])
        .await
        .expect("a")
        .get(0);
    assert!(!exists, "the step's transaction was rolled back");
    assert_eq!(
        client
            .query_one(sleeping, &[])
            .await
            .expect("activity")
            .get::<_, i64>(0),
        0,
        "the query was cancelled on the server"
    );
    let runs = project.flow(&["runs", "--json"]).expect(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).expect("json");
    assert_eq!(runs[0]["status"], "cancelled");
    assert_eq!(
        statuses(&project, 1)[1],
        ("sql:flow:run/a".to_owned(), "cancelled".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vars_reach_sql_and_commands() {
    let project = project("vars").await;
    project.write("a.sql", "DROP TABLE IF EXISTS a;\nCREATE TABLE a AS SELECT current_setting('flow.item') AS item, 1 AS n;\n");
    project.write(
        "nightly.flow",
        &FLOW.replace(
            "echo made > c.txt; echo all good",
            "echo $FLOW_ITEM > c.txt; echo all good",
        ),
    );
    project.flow(&["run", "--var", "item=2024"]).expect(0);
    let client = project.db.client().await.expect("connect");
    let item: String = client
        .query_one("SELECT item FROM a", &[])
        .await
        .expect("a")
        .get(0);
    assert_eq!(item, "2024");
    assert_eq!(
        std::fs::read_to_string(project.dir.join("c.txt"))
            .expect("c.txt")
            .trim(),
        "2024"
    );
    project.flow(&["run", "--var", "not a name=1"]).expect(2);
}

/// A step whose command starts a child that writes `late.txt` after 2 s.
const LINGERING: &str = r#"flow lingering

database flow = env("FLOW_DATABASE_URL")

step sh:run linger {
  command = "sh"
  args = ["-c", "echo started > started.txt; (sleep 2; echo late > late.txt) & wait"]
  writes = ["late.txt"]
}
"#;

/// Starts `flow run` on the lingering step, waits until its command runs,
/// sends `signal` to flow, and tells whether the command's child still wrote
/// its file afterwards.
async fn child_survives(name: &str, signal: &str) -> bool {
    let project = Project::new("runs", name, "lingering.flow", LINGERING).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["run", "lingering.flow"])
        .current_dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flow starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !project.dir.join("started.txt").exists() {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    project.dir.join("late.txt").exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_run_ends_every_process_its_commands_started() {
    assert!(
        !child_survives("lingerterm", "-TERM").await,
        "a command's child outlived the cancelled run"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_flow_takes_its_commands_processes_with_it() {
    assert!(
        !child_survives("lingerkill", "-KILL").await,
        "a command's child outlived flow killed with SIGKILL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_the_output_not_the_run() {
    use std::io::BufRead as _;
    let project = project("pipe").await;
    // `flow run --json | head -1`: the reader goes after the first event.
    project.write(
        "a.sql",
        "DROP TABLE IF EXISTS a;\nCREATE TABLE a AS SELECT g AS n FROM generate_series(1, 10) g;\nSELECT pg_sleep(0.5);\n",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["run", "nightly.flow", "--json"])
        .current_dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flow starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("first event");
    assert!(first.contains("run_started"), "{first}");
    let output = child.wait_with_output().expect("flow ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let runs = project.flow(&["runs", "--json"]).expect(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).expect("json");
    assert_eq!(runs[0]["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_sql_errors_point_at_their_statement_with_the_detail() {
    let project = project("sqlplace").await;
    for (sql, line, message, detail) in [
        (
            "DROP TABLE IF EXISTS a;\nCREATE TABLE a (code varchar(3));\nINSERT INTO a VALUES ('ab');\n\nINSERT INTO a VALUES ('abcdef');\n",
            5,
            "value too long for type character varying(3) (SQLSTATE 22001)",
            None,
        ),
        (
            "DROP TABLE IF EXISTS a;\nCREATE TABLE a AS SELECT 1 AS n;\nSELECT n / 0 FROM a;\n",
            3,
            "division by zero (SQLSTATE 22012)",
            None,
        ),
        (
            "DROP TABLE IF EXISTS a, p;\nCREATE TABLE p (id int PRIMARY KEY);\nCREATE TABLE a (p int REFERENCES p);\n-- a key that is not there\nINSERT INTO a VALUES (5);\n",
            5,
            "violates foreign key constraint",
            Some("Key (p)=(5) is not present in table \"p\""),
        ),
    ] {
        project.write("a.sql", sql);
        let output = project.run(&["--step", "sql:flow:run/a"]).expect(1);
        let text = flat(&output.stderr);
        assert!(text.contains(message), "{text}");
        assert!(text.contains(&format!("a.sql:{line}:1")), "{text}");
        assert!(
            text.contains(&format!("the statement at line {line} failed")),
            "{text}"
        );
        if let Some(detail) = detail {
            assert!(text.contains(detail), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_does_not_declare_its_reads_runs_every_time() {
    let project = project("undeclared").await;
    project.write("nightly.flow", &FLOW.replace("  reads = []\n", ""));
    project.flow(&["run"]).expect(0);
    project.flow(&["run"]).expect(0);
    assert_eq!(
        statuses(&project, 2)[0],
        ("sh:run/c".to_owned(), "succeeded".to_owned())
    );
    let plan = project.flow(&["plan"]).expect(0);
    assert!(
        plan.stdout
            .contains("runs: its command's reads are not declared"),
        "{}",
        plan.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_item_of_a_fan_out_has_its_own_history() {
    let project = project("items").await;
    project.write("a.sql", "DROP TABLE IF EXISTS a;\nCREATE TABLE a AS SELECT current_setting('flow.item') AS item, 1 AS n;\n");
    for item in ["a", "b", "a", "b"] {
        project
            .flow(&["run", "--var", &format!("item={item}")])
            .expect(0);
    }
    // Runs 3 and 4 find their item's last success (runs 1 and 2) unchanged.
    for run in [3, 4] {
        assert!(
            statuses(&project, run)
                .iter()
                .all(|(_, status)| status == "skipped"),
            "run {run}: {:?}",
            statuses(&project, run)
        );
    }
    assert!(
        statuses(&project, 2)
            .iter()
            .all(|(_, status)| status == "succeeded"),
        "{:?}",
        statuses(&project, 2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_logs_latest_json_and_verbosity() {
    // `flow init` writes a starter that checks, formats and runs.
    let dir = std::env::temp_dir().join(format!("flow-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("starter")).expect("dir");
    let starter = dir.join("starter");
    support::Flow::new(["init"]).dir(&starter).expect(0);
    assert!(
        std::fs::read_to_string(starter.join(".gitignore"))
            .expect("gitignore")
            .contains(".flow/")
    );
    support::Flow::new(["check", "starter.flow"])
        .dir(&starter)
        .expect(0);
    support::Flow::new(["fmt", "--check", "starter.flow"])
        .dir(&starter)
        .expect(0);
    let db = flow_db::testing::TestDatabase::create("initstarter")
        .await
        .expect("database");
    support::Flow::new(["run", "starter.flow"])
        .dir(&starter)
        .env("FLOW_DATABASE_URL", db.url())
        .expect(0);
    let greeting: String = db
        .client()
        .await
        .expect("connect")
        .query_one("SELECT greeting FROM hello", &[])
        .await
        .expect("hello")
        .get(0);
    assert!(greeting.starts_with("hello from"), "{greeting}");
    // A second init changes nothing.
    support::Flow::new(["init"]).dir(&starter).expect(2);
    let _ = std::fs::remove_dir_all(&dir);

    // Logs per run, `latest`, JSON from check, help with exit codes.
    let project = project("extras").await;
    project.flow(&["run"]).expect(0);
    project.flow(&["run", "--force"]).expect(0);
    let logs = project.flow(&["logs", "latest", "sh:run/c"]).expect(0);
    assert_eq!(logs.stdout.trim(), "all good");
    assert!(project.dir.join(".flow/logs/1/sh_run_c.log").exists());
    assert!(project.dir.join(".flow/logs/2/sh_run_c.log").exists());
    project.flow(&["logs", "7", "sh:run/c"]).expect(2);
    let latest = project.flow(&["show", "latest", "--json"]).expect(0);
    let latest: serde_json::Value = serde_json::from_str(&latest.stdout).expect("json");
    assert_eq!(latest["run"]["id"], 2);
    project.flow(&["show", "soon"]).expect(2);
    let check = project.flow(&["check", "--json"]).expect(0);
    let check: serde_json::Value = serde_json::from_str(check.stdout.trim()).expect("json");
    assert_eq!(check["ok"], true);
    assert_eq!(check["steps"].as_array().map(Vec::len), Some(3));
    project.write("nightly.flow", "step sql:flow:rn {}\n");
    let broken = project.flow(&["check", "--json"]).expect(2);
    let broken: serde_json::Value = serde_json::from_str(broken.stdout.trim()).expect("json");
    assert_eq!(
        broken["problems"][0]["code"],
        "flow::compile::unknown_operation"
    );
    assert_eq!(broken["problems"][0]["line"], 1);
    let help = support::Flow::new(["--help"]).expect(0);
    assert!(
        help.stdout.contains("Exit codes:") && help.stdout.contains("130"),
        "{}",
        help.stdout
    );
    let completions = support::Flow::new(["completions", "bash"]).expect(0);
    assert!(
        completions.stdout.contains("_flow()"),
        "{}",
        completions.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verbosity_shows_the_engine_events() {
    let project = project("verbose").await;
    let quiet = project.flow(&["run"]).expect(0);
    assert!(
        !quiet.stderr.contains("input fingerprint"),
        "{}",
        quiet.stderr
    );
    let verbose = project.flow(&["run", "--force", "-vv"]).expect(0);
    assert!(
        verbose.stderr.contains("DEBUG") && verbose.stderr.contains("input fingerprint"),
        "{}",
        verbose.stderr
    );
}
