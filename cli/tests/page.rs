//! `flow serve`'s web page in a real browser (Debian's Chromium, headless,
//! driven by Playwright's library): a run key starts the reference pipeline
//! from the page and the timeline follows it to the end; a read key is not
//! offered the start button; a 10,000-step DAG draws and pans and zooms
//! (the figures are printed; `cargo bench -p flow-benches --bench serve`
//! is where they are measured).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::reference::Reference;
use support::{Project, root, server};

/// Runs the browser script in `mode`; what it saw.
fn browser(mode: &str, env: &[(&str, String)]) -> serde_json::Value {
    let modules = std::env::var("FLOW_NODE_MODULES").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/flow/npm/node_modules")
    });
    let output = Command::new("node")
        .arg(root().join("cli/tests/browser/page.cjs"))
        .arg(mode)
        .env("FLOW_NODE_MODULES", modules)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("node runs (scripts/test installs it, Chromium and playwright-core)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn screenshot(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\x89PNG"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_starts_the_reference_pipeline_and_its_timeline_follows_it() {
    let reference = Reference::new("page").await;
    let env = reference.env();
    let runner = server::key(&reference.dir, "parcels.flow", &env, "ci", "run");
    let reader = server::key(&reference.dir, "parcels.flow", &env, "wall", "read");
    let (_server, port) = server::serve(&reference.dir, "parcels.flow", &env, &[]);
    let picture = screenshot("flow-page-run.png");

    let seen = browser(
        "run",
        &[
            ("FLOW_URL", format!("http://127.0.0.1:{port}/")),
            ("FLOW_KEY", runner),
            ("FLOW_READ_KEY", reader),
            ("SCREENSHOT", picture.display().to_string()),
        ],
    );
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["readScope"], "read", "{seen}");
    assert_eq!(seen["readCanStart"], false, "{seen}");
    assert_eq!(seen["canStart"], true, "{seen}");
    // The graph has every step, the manual `drizzle:api:pull` too.
    assert_eq!(seen["nodes"], 11, "{seen}");
    assert_eq!(seen["status"], "succeeded", "{seen}");
    let bars = seen["bars"].as_array().expect("bars");
    assert_eq!(bars.len(), 10, "{seen}");
    for bar in bars {
        assert_eq!(bar["status"], "succeeded", "{bar}");
        assert_eq!(bar["bar"], true, "{bar}");
    }
    // Rows and bytes are on the bars of the steps that moved them.
    let loaded = bars
        .iter()
        .find(|b| b["step"] == "pg:source:load")
        .expect("the load's bar");
    assert!(
        loaded["text"].as_str().unwrap_or_default().contains("rows"),
        "{loaded}"
    );
    assert_eq!(seen["runs"][0], "succeeded", "{seen}");
    assert!(is_png(&picture), "a screenshot at {}", picture.display());
    // The run the page started is the product's: its rows are there.
    let parcels: i64 = reference.one("SELECT count(*) FROM public.parcels").await;
    assert_eq!(parcels, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_shows_its_diagnostic_and_a_going_run_is_cancelled_from_the_page() {
    let flow = r#"flow failing

database flow = env("FLOW_DATABASE_URL")

groups work

step sh:run sleepy {
  group = manual
  command = "sleep"
  args = ["60"]
  reads = []
}

step sh:run fine {
  group = work
  command = "true"
  reads = []
}

step sh:run broken {
  group = work
  command = "sh"
  args = ["-c", "echo 'the vendor feed is empty' >&2; exit 3"]
  reads = []
  retries = 0
}
"#;
    let project = Project::new("page", "pagefail", "failing.flow", flow).await;
    let env = [("FLOW_DATABASE_URL", project.db.url())];
    let runner = server::key(&project.dir, "failing.flow", &env, "ci", "run");
    let (_server, port) = server::serve(&project.dir, "failing.flow", &env, &[]);
    let seen = browser(
        "fail",
        &[
            ("FLOW_URL", format!("http://127.0.0.1:{port}/")),
            ("FLOW_KEY", runner),
        ],
    );
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    let diagnostics = seen["diagnostics"].to_string();
    assert!(diagnostics.contains("sh:run/broken"), "{seen}");
    assert!(diagnostics.contains("exit"), "{seen}");
    assert_eq!(
        seen["diagnostics"].as_array().map(Vec::len),
        Some(1),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_started_by_flow_run_elsewhere_is_followed_to_its_end() {
    let flow = r#"flow elsewhere

database flow = env("FLOW_DATABASE_URL")

groups work

step sh:run slowly {
  group = work
  command = "sleep"
  args = ["4"]
  reads = []
}
"#;
    let project = Project::new("page", "pagefollow", "elsewhere.flow", flow).await;
    let env = [("FLOW_DATABASE_URL", project.db.url())];
    let reader = server::key(&project.dir, "elsewhere.flow", &env, "wall", "read");
    let (_server, port) = server::serve(&project.dir, "elsewhere.flow", &env, &[]);
    // The nightly run, started by the scheduler or a terminal, not the server.
    let mut run = Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["run", "elsewhere.flow", "--plain"])
        .current_dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flow run starts");
    let seen = browser(
        "follow",
        &[
            ("FLOW_URL", format!("http://127.0.0.1:{port}/")),
            ("FLOW_KEY", reader),
        ],
    );
    let _ = run.wait();
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["status"], "succeeded", "{seen}");
}

/// 100 waves of 100 steps; each reads what two steps of the wave before
/// write.
fn ten_thousand_steps() -> String {
    use std::fmt::Write as _;
    let mut text = String::from(
        "flow big\n\ndatabase flow = env(\"FLOW_DATABASE_URL\")\n\ngroups early -> late\n",
    );
    for wave in 0..100 {
        let group = if wave < 50 { "early" } else { "late" };
        for k in 0..100 {
            let reads = if wave == 0 {
                String::new()
            } else {
                format!(
                    "\"out/{}_{k}.txt\", \"out/{}_{}.txt\"",
                    wave - 1,
                    wave - 1,
                    (k * 7 + 3) % 100
                )
            };
            let _ = write!(
                text,
                "\nstep sh:run w{wave}_{k} {{\n  group = {group}\n  command = \"true\"\n  reads = [{reads}]\n  writes = [\"out/{wave}_{k}.txt\"]\n}}\n"
            );
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_thousand_step_dag_draws_pans_and_zooms() {
    let text = ten_thousand_steps();
    let project = Project::new("page", "bigdag", "big.flow", &text).await;
    let env = [("FLOW_DATABASE_URL", project.db.url())];
    let reader = server::key(&project.dir, "big.flow", &env, "wall", "read");
    let (_server, port) = server::serve(&project.dir, "big.flow", &env, &[]);
    let picture = screenshot("flow-page-10000.png");
    let seen = browser(
        "measure",
        &[
            ("FLOW_URL", format!("http://127.0.0.1:{port}/")),
            ("FLOW_KEY", reader),
            ("SCREENSHOT", picture.display().to_string()),
        ],
    );
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["nodes"], 10_000, "{seen}");
    assert!(
        seen["frameIntervalsMs"]["count"].as_u64() > Some(10),
        "{seen}"
    );
    assert!(is_png(&picture));
    #[allow(clippy::print_stderr)]
    {
        eprintln!("10,000 steps in the browser: {seen}");
    }
}
