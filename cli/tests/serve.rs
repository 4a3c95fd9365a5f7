//! `flow serve` over real HTTP against a real PostgreSQL: no key or a wrong
//! key gets 401 and nothing else, scopes hold, and a `run` key starts a run
//! that is recorded and finishes.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Flow, Project};

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

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A request; the status and the body.
fn http(port: u16, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn key(project: &Project, name: &str, scope: &str) -> String {
    Flow::new([
        "keys",
        "create",
        "served.flow",
        "--name",
        name,
        "--scope",
        scope,
    ])
    .dir(&project.dir)
    .env("FLOW_DATABASE_URL", project.db.url())
    .expect(0)
    .stdout
    .trim()
    .to_owned()
}

fn start(project: &Project) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_flow"))
        .args([
            "serve",
            "served.flow",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flow serve starts");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "flow serve did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
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
    assert_eq!(status, 422, "{body}");

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

    let (status, _) = http(port, "GET", "/metrics", None, "");
    assert_eq!(status, 401);
    let (status, metrics) = http(port, "GET", "/metrics", Some(&reader), "");
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "flow_runs_total{flow=\"served\",status=\"succeeded\"} 1",
        "flow_step_seconds_count{flow=\"served\",step=\"sh:run/hello\"} 1",
        "flow_runs_going 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    for secret in [&reader, &runner] {
        assert!(!body.contains(secret.as_str()));
    }
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
