//! `flow serve` over real HTTP against a real PostgreSQL: no key or a wrong
//! key gets 401 and nothing else, scopes hold, and a `run` key starts a run
//! that is recorded and finishes.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::Project;
use support::server::{self, Server, http};

const FLOW: &str = r#"flow served

database flow = env("FLOW_DATABASE_URL")

groups work

step sh:run hello {
  group = work
  command = "sh"
  args = ["-c", "echo hello"]
  reads = []
}

step sh:run slow {
  group = manual
  command = "sh"
  args = ["-c", "sleep 1; echo slowly"]
  reads = []
}

schedule nightly {
  cron = "0 2 * * *"
  run = [work]
}
"#;

fn key(project: &Project, name: &str, scope: &str) -> String {
    let env = [("FLOW_DATABASE_URL", project.db.url())];
    server::key(&project.dir, "served.flow", &env, name, scope)
}

fn start(project: &Project) -> (Server, u16) {
    start_with(project, &[])
}

fn start_with(project: &Project, more: &[&str]) -> (Server, u16) {
    let env = [("FLOW_DATABASE_URL", project.db.url())];
    server::serve(&project.dir, "served.flow", &env, more)
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_guard_every_route_and_a_run_key_starts_a_recorded_run() {
    let project = Project::new("serve", "serve", "served.flow", FLOW).await;
    let reader = key(&project, "dashboard", "read");
    let runner = key(&project, "ci", "run");
    let (_server, port) = start(&project);

    assert_eq!(http(port, "GET", "/healthz", None, ""), (200, "ok".into()));
    for presented in [None, Some("flow_0000"), Some("not a key")] {
        let (status, body) = http(port, "GET", "/flows", presented, "");
        assert_eq!(status, 401, "{presented:?}: {body}");
        assert!(!body.contains("served"), "{body}");
    }
    let (status, body) = http(port, "GET", "/flows", Some(&reader), "");
    assert_eq!(status, 200, "{body}");
    let flows: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(flows[0]["name"], "served");
    assert_eq!(flows[0]["steps"][0], "sh:run/hello");

    let (status, _) = http(port, "POST", "/flows/served/runs", Some(&reader), "{}");
    assert_eq!(status, 403);
    let (status, _) = http(port, "POST", "/flows/nothing/runs", Some(&runner), "{}");
    assert_eq!(status, 404);
    let (status, body) = http(
        port,
        "POST",
        "/flows/served/runs",
        Some(&runner),
        r#"{"groups": ["nope"]}"#,
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nope"), "{body}");

    let (status, body) = http(
        port,
        "POST",
        "/flows/served/runs",
        Some(&runner),
        r#"{"groups": ["work"]}"#,
    );
    assert_eq!(status, 202, "{body}");
    let started: serde_json::Value = serde_json::from_str(&body).expect("json");
    let run = started["run"].as_i64().expect("a run id");
    let deadline = Instant::now() + Duration::from_secs(30);
    let finished = loop {
        let (status, body) = http(port, "GET", &format!("/runs/{run}"), Some(&reader), "");
        assert_eq!(status, 200, "{body}");
        let value: serde_json::Value = serde_json::from_str(&body).expect("json");
        if value["run"]["status"] != "running" {
            break value;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(finished["run"]["status"], "succeeded", "{finished}");
    assert_eq!(finished["steps"][0]["status"], "succeeded", "{finished}");
    assert!(
        finished["run"]["selection"]
            .as_str()
            .unwrap_or_default()
            .contains("--group work")
    );

    let (status, body) = http(port, "GET", "/flows/served/runs", Some(&reader), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"id\":{run}")), "{body}");

    // As if the nightly schedule had fired this run 2.5 s before it started.
    project
        .db
        .client()
        .await
        .expect("connect")
        .execute(
            "INSERT INTO _flow.fires (flow, schedule, fire_at, status, run_id)
             SELECT 'served', 'nightly', started_at - interval '2.5 seconds', 'fired', id
             FROM _flow.runs WHERE id = $1",
            &[&run],
        )
        .await
        .expect("a fire");
    let (status, _) = http(port, "GET", "/metrics", None, "");
    assert_eq!(status, 401);
    let (status, metrics) = http(port, "GET", "/metrics", Some(&reader), "");
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "flow_runs_total{flow=\"served\",status=\"succeeded\"} 1",
        "flow_step_seconds_count{flow=\"served\",step=\"sh:run/hello\"} 1",
        "flow_runs_going 0",
        "flow_schedule_lag_seconds{flow=\"served\",schedule=\"nightly\"} 2.5",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    for secret in [&reader, &runner] {
        assert!(!body.contains(secret.as_str()));
    }

    // A revoked key is refused within a second.
    assert_eq!(http(port, "GET", "/flows", Some(&runner), "").0, 200);
    support::Flow::new(["keys", "revoke", "served.flow", "--name", "ci"])
        .dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .expect(0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(http(port, "GET", "/flows", Some(&runner), "").0, 401);
    assert_eq!(http(port, "GET", "/flows", Some(&reader), "").0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_s_events_stream_live_and_its_log_and_the_schedules_are_served() {
    let project = Project::new("serve", "serveevents", "served.flow", FLOW).await;
    let reader = key(&project, "watch", "read");
    let runner = key(&project, "ci", "run");
    let (_server, port) = start(&project);

    let (status, body) = http(port, "GET", "/flows/served/schedules", Some(&reader), "");
    assert_eq!(status, 200, "{body}");
    let jobs: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(jobs[0]["job"], "nightly");
    assert!(jobs[0]["next_fire"].is_string(), "{body}");

    let (status, body) = http(
        port,
        "POST",
        "/flows/served/runs",
        Some(&runner),
        r#"{"steps": ["sh:run/slow"]}"#,
    );
    assert_eq!(status, 202, "{body}");
    let run = serde_json::from_str::<serde_json::Value>(&body).expect("json")["run"]
        .as_i64()
        .expect("id");
    // The stream, from now on, until the run ends.
    let (status, streamed) = http(
        port,
        "GET",
        &format!("/runs/{run}/events"),
        Some(&reader),
        "",
    );
    assert_eq!(status, 200, "{streamed}");
    assert!(
        streamed.contains("text/event-stream") || streamed.contains("data:"),
        "{streamed}"
    );
    let finished = streamed
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data.trim()).ok())
        .collect::<Vec<_>>();
    assert!(
        finished.iter().any(|e| e["event"] == "step_finished"
            && e["step"] == "sh:run/slow"
            && e["status"] == "succeeded"),
        "{streamed}"
    );
    assert_eq!(
        finished.last().map(|e| e["event"].clone()),
        Some("run_finished".into())
    );
    // Asked for after the run started, the stream still begins at its start.
    assert_eq!(
        finished.first().map(|e| e["event"].clone()),
        Some("run_started".into()),
        "{streamed}"
    );
    assert!(
        streamed.contains("id: 0") || streamed.contains("id:0"),
        "{streamed}"
    );

    let (status, log) = http(
        port,
        "GET",
        &format!("/runs/{run}/log/sh:run/slow"),
        Some(&reader),
        "",
    );
    assert_eq!(status, 200, "{log}");
    assert!(log.contains("slowly"), "{log}");
    let (status, _) = http(
        port,
        "GET",
        &format!("/runs/{run}/log/sh:run/none"),
        Some(&reader),
        "",
    );
    assert_eq!(status, 404);
    // A run that has ended has no stream; its record says how it went.
    let (status, _) = http(
        port,
        "GET",
        &format!("/runs/{run}/events"),
        Some(&reader),
        "",
    );
    assert_eq!(status, 404);
    let (status, _) = http(port, "GET", &format!("/runs/{run}/events"), None, "");
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plan_the_graph_the_document_and_the_page_are_served() {
    let project = Project::new("serve", "serveplan", "served.flow", FLOW).await;
    let reader = key(&project, "page", "read");
    let runner = key(&project, "ci", "run");
    let (_server, port) = start(&project);

    let (status, body) = http(port, "GET", "/whoami", Some(&runner), "");
    assert_eq!(status, 200, "{body}");
    let who: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (who["name"].as_str(), who["scope"].as_str()),
        (Some("ci"), Some("run"))
    );

    // The plan is `flow plan --json`'s, passwords hidden.
    let (status, body) = http(port, "GET", "/flows/served/plan", Some(&reader), "");
    assert_eq!(status, 200, "{body}");
    let plan: serde_json::Value = serde_json::from_str(&body).expect("json");
    let printed = project.flow(&["plan", "--json"]).expect(0);
    let printed: serde_json::Value = serde_json::from_str(&printed.stdout).expect("json");
    assert_eq!(plan["steps"], printed["steps"]);
    assert_eq!(plan["environment"], printed["environment"]);

    let (status, body) = http(port, "GET", "/flows/served/graph", Some(&reader), "");
    assert_eq!(status, 200, "{body}");
    let graph: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(graph["nodes"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(graph["groups"][0], "work");
    for route in [
        "/flows/nothing/graph",
        "/flows/nothing/plan",
        "/runs/999999",
    ] {
        assert_eq!(
            http(port, "GET", route, Some(&reader), "").0,
            404,
            "{route}"
        );
    }
    assert_eq!(
        http(port, "GET", "/no/such/route", Some(&reader), "").0,
        404
    );

    // The document describes every route the server has.
    assert_eq!(http(port, "GET", "/openapi.json", None, "").0, 401);
    let (status, body) = http(port, "GET", "/openapi.json", Some(&reader), "");
    assert_eq!(status, 200, "{body}");
    let document: serde_json::Value = serde_json::from_str(&body).expect("json");
    for route in [
        "/healthz",
        "/whoami",
        "/flows",
        "/flows/{flow}/plan",
        "/flows/{flow}/graph",
        "/flows/{flow}/runs",
        "/flows/{flow}/schedules",
        "/runs/{id}",
        "/runs/{id}/cancel",
        "/runs/{id}/events",
        "/runs/{id}/log/{step}",
        "/metrics",
    ] {
        assert!(
            document["paths"][route].is_object(),
            "{route} is documented"
        );
    }

    // The page and its assets need no key and hold no data.
    let (status, page) = http(port, "GET", "/", None, "");
    assert_eq!(status, 200);
    assert!(page.contains("/assets/app.js"), "{page}");
    assert!(!page.contains("served"), "{page}");
    let (status, script) = http(port, "GET", "/assets/app.js", None, "");
    assert_eq!(status, 200);
    assert!(
        script.contains("/runs/"),
        "the script asks the keyed routes"
    );
    assert_eq!(http(port, "GET", "/assets/nothing.js", None, "").0, 404);

    // A request a run cannot take is refused, saying why.
    for body in [
        "{",
        r#"{"group": ["work"]}"#,
        r#"{"vars": {"a": 1}}"#,
        r#"{"env": "production"}"#,
    ] {
        let (status, text) = http(port, "POST", "/flows/served/runs", Some(&runner), body);
        assert_eq!(status, 422, "{body}: {text}");
        assert!(text.contains("\"error\""), "{text}");
    }
    let (status, _) = http(port, "POST", "/runs/424242/cancel", Some(&runner), "");
    assert_eq!(status, 404);
    let (status, _) = http(port, "POST", "/runs/424242/cancel", Some(&reader), "");
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_certificate_the_server_speaks_https_only() {
    let project = Project::new("serve", "servetls", "served.flow", FLOW).await;
    let reader = key(&project, "tls", "read");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(&project.dir)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (_server, port) = start_with(
        &project,
        &["--tls-cert", "cert.pem", "--tls-key", "key.pem"],
    );
    let curl = |args: &[&str]| {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert", "cert.pem"])
            .args(args)
            .current_dir(&project.dir)
            .output()
            .expect("curl runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let base = format!("https://127.0.0.1:{port}");
    assert_eq!(curl(&[&format!("{base}/healthz")]), (true, "ok".into()));
    let auth = format!("Authorization: Bearer {reader}");
    let (ok, body) = curl(&["-H", &auth, &format!("{base}/flows")]);
    assert!(ok && body.contains("\"served\""), "{body}");
    // Plain HTTP gets no answer.
    let (ok, _) = curl(&[&format!("http://127.0.0.1:{port}/healthz")]);
    assert!(!ok);

    // A certificate that cannot be read stops the server before it listens.
    let failed = project
        .flow(&["serve", "--tls-cert", "none.pem", "--tls-key", "key.pem"])
        .expect(1);
    assert!(
        failed.stderr.contains("flow::serve::tls"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("none.pem"), "{}", failed.stderr);
}

/// schemathesis (from PyPI) drives every route of the OpenAPI document with
/// generated requests, with and without the key: no 5xx, every status,
/// content type and body as documented.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_answers_as_its_openapi_document_says() {
    let project = Project::new("serve", "serveopenapi", "served.flow", FLOW).await;
    let runner = key(&project, "fuzz", "run");
    let (_server, port) = start(&project);
    let (status, document) = http(port, "GET", "/openapi.json", Some(&runner), "");
    assert_eq!(status, 200);
    project.write("openapi.json", &document);
    let schemathesis = std::env::var("FLOW_SCHEMATHESIS").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/flow/schemathesis/bin/schemathesis")
    });
    let output = Command::new(schemathesis)
        .args([
            "run",
            "openapi.json",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--header",
            &format!("Authorization: Bearer {runner}"),
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--no-color",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
        ])
        .current_dir(&project.dir)
        .output()
        .expect("schemathesis runs (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains(&runner), "the key is not printed");
}
