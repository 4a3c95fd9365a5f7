//! `flow serve` under load, and its page at 10,000 steps.
//!
//! `cargo bench -p flow-benches --bench serve` serves two flows in this
//! process against the test cluster (`scripts/test` starts it; so does this
//! benchmark when it is not up):
//!
//! 1. While a run of 100 steps streams its events to 50 open event streams,
//!    Debian's `wrk` (2 threads, 32 connections, 10 s) asks for the runs list
//!    (`GET /flows/bench/runs`, with a key); in the same run, `pgbench` sends
//!    the query behind that route straight to PostgreSQL at the same
//!    concurrency: the ratio is what the HTTP layer, the key check and the
//!    JSON cost.
//! 2. The page of a generated 10,000-step flow in headless Chromium (the
//!    browser test's script, `cli/tests/browser/page.cjs measure`): time
//!    until it is interactive, and the frames while it is panned and zoomed.
#![allow(clippy::print_stdout)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use flow_db::testing::TestDatabase;
use flow_db::{Database, Location};
use flow_engine::{FlowFile, KeyScope, Records, Registry};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use flow_plugin_sh as _;
use flow_plugin_sql as _;

const STREAMS: usize = 50;

fn flow_file(dir: &Path, name: &str, text: &str) -> Arc<FlowFile> {
    let path = dir.join(format!("{name}.flow"));
    std::fs::write(&path, text).expect("write the flow");
    let parsed = flow_dsl::parse(text);
    let pipeline = flow_engine::compile(&parsed.flow, &Registry::installed(), name).expect("flow");
    Arc::new(FlowFile::new(&path, pipeline))
}

fn request(port: u16, method: &str, path: &str, key: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(text.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// A figure of wrk's output: requests per second, and the 99th percentile
/// of latency in milliseconds.
fn wrk_figures(output: &str) -> (f64, f64) {
    let rate = output
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let p99 = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .map_or(f64::NAN, |v| {
            let number: f64 = v
                .trim_end_matches(|c: char| c.is_alphabetic())
                .parse()
                .unwrap_or(f64::NAN);
            match v.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.') {
                "us" => number / 1000.0,
                "s" => number * 1000.0,
                _ => number,
            }
        });
    (rate, p99)
}

// Long on purpose (the reason): a benchmark's main is its scenario, top to
// bottom, timing flow and the other tool on the same data in the same run.
#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let seconds = if full { 10 } else { 2 };
    let db = TestDatabase::create("benchserve").await.expect("database");
    let dir = std::env::temp_dir().join(format!("flow-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut steps = String::new();
    for i in 0..100 {
        steps.push_str(&format!(
            "\nstep sh:run s{i} {{\n  group = work\n  command = \"sh\"\n  args = [\"-c\", \"sleep 0.{}\"]\n  reads = []\n}}\n",
            if full { 4 } else { 1 }
        ));
    }
    let url = db.url();
    let bench = flow_file(
        &dir,
        "bench",
        &format!("flow bench\n\ndatabase flow = \"{url}\"\n\ngroups work\n{steps}"),
    );
    let big_text = flow_benches::generated_flow(10_000).replace(
        "env(\"FLOW_DATABASE_URL\", \"embedded\")",
        &format!("\"{url}\""),
    );
    let big = flow_file(&dir, "generated", &big_text);
    let database = Database::connect("flow", &Location::Url(url.clone()), None, 2)
        .await
        .expect("pool");
    let records = Records::open(&database).await.expect("records");
    let key = records
        .create_key("bench", KeyScope::Run)
        .await
        .expect("key")
        .expect("a new key");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let stop = CancellationToken::new();
    let options = flow_server::Options {
        bind: ([127, 0, 0, 1], port).into(),
        env: None,
        tls: None,
    };
    let server = tokio::spawn(flow_server::serve(vec![bench, big], options, stop.clone()));
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Earlier runs, so that the list is a page of 20.
    db.client()
        .await
        .expect("connect")
        .batch_execute(
            "INSERT INTO _flow.runs (flow, file, environment, selection, selected, status, finished_at, host, pid)
             SELECT 'bench', 'bench.flow', 'default', '', ARRAY['sh:run/s0'], 'succeeded', clock_timestamp(), 'bench', 1
             FROM generate_series(1, 30)",
        )
        .await
        .expect("earlier runs");

    // A run going, its events streamed to 50 watchers.
    let started = request(port, "POST", "/flows/bench/runs", &key);
    let run: i64 = started
        .split("\"run\":")
        .nth(1)
        .and_then(|r| r.trim_end_matches(['}', '\n', '\r', ' ']).parse().ok())
        .unwrap_or_else(|| panic!("a run: {started}"));
    let watchers: Vec<_> = (0..STREAMS)
        .map(|_| {
            let key = key.clone();
            std::thread::spawn(move || request(port, "GET", &format!("/runs/{run}/events"), &key))
        })
        .collect();

    let target = format!("http://127.0.0.1:{port}/flows/bench/runs");
    let header = format!("Authorization: Bearer {key}");
    let duration = format!("{seconds}s");
    let wrk = Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            "-d",
            &duration,
            "--latency",
            "-H",
            &header,
            &target,
        ])
        .output()
        .expect("wrk (apt-get install wrk)");
    let wrk_out = String::from_utf8_lossy(&wrk.stdout).into_owned();
    let (rate, p99) = wrk_figures(&wrk_out);

    let script = dir.join("runs.sql");
    std::fs::write(
        &script,
        "SELECT id, flow, file, environment, selection, selected, status, started_at, finished_at, host \
         FROM _flow.runs WHERE flow = 'bench' ORDER BY id DESC LIMIT 20;\n",
    )
    .expect("script");
    let pgbench = ["/usr/lib/postgresql/15/bin/pgbench", "pgbench"]
        .into_iter()
        .find(|p| Path::new(p).exists() || flow_benches::have(p))
        .unwrap_or("pgbench");
    let sql = Command::new(pgbench)
        .args([
            "-n",
            "-c",
            "32",
            "-j",
            "2",
            "-M",
            "prepared",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(&url)
        .output()
        .expect("pgbench");
    let sql_out = String::from_utf8_lossy(&sql.stdout).into_owned();
    let tps: f64 = sql_out
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);

    let mut finished = 0;
    for watcher in watchers {
        let streamed = watcher.join().expect("watcher");
        if streamed.contains("run_finished") {
            finished += 1;
        }
    }
    println!(
        "GET /flows/bench/runs with {STREAMS} event streams open: {rate:.0} requests/s, p99 {p99:.2} ms \
         (wrk -t2 -c32 {duration})"
    );
    println!(
        "the same query, straight to PostgreSQL (pgbench -c32 -j2): {tps:.0} per second; flow serve / SQL = {:.2}",
        rate / tps
    );
    println!("event streams that saw the run to its end: {finished} of {STREAMS}");

    // The page at 10,000 steps.
    let node_modules = std::env::var("FLOW_NODE_MODULES").unwrap_or_else(|_| {
        format!(
            "{}/.cache/flow/npm/node_modules",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    if flow_benches::have("chromium") && Path::new(&node_modules).exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/tests/browser/page.cjs");
        let picture = dir.join("page.png");
        let page = Command::new("node")
            .arg(script)
            .arg("measure")
            .env("FLOW_NODE_MODULES", &node_modules)
            .env("FLOW_URL", format!("http://127.0.0.1:{port}/#generated"))
            .env("FLOW_KEY", &key)
            .env("SCREENSHOT", &picture)
            .output()
            .expect("node");
        let seen = String::from_utf8_lossy(&page.stdout);
        println!(
            "the page of the 10,000-step flow in Chromium: {}",
            seen.trim()
        );
    } else {
        println!("the page: skipped (no chromium or playwright-core; scripts/test installs them)");
    }
    stop.cancel();
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}
