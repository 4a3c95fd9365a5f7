//! Plugins in any language: `flow-<tool>` executables beside the flow,
//! described, checked and run like built-in operations; plugins that
//! misbehave get a diagnostic naming them, and the run is recorded failed.

mod support;

use support::Project;

const FLOW: &str = r#"flow greeting

database flow = env("FLOW_DATABASE_URL")

step hello:greet {
  who = "world"
  out = "out/greeting.txt"
}
"#;

/// A plugin in shell: `describe` prints `description`; `run` does `body`.
fn plugin(project: &Project, tool: &str, description: &str, body: &str) {
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  describe) cat <<'JSON'\n{description}\nJSON\n  ;;\n  run)\n{body}\n  ;;\nesac\n"
    );
    let path = project.dir.join("plugins").join(format!("flow-{tool}"));
    std::fs::create_dir_all(path.parent().expect("folder")).expect("plugins/");
    std::fs::write(&path, script).expect("plugin");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

const DESCRIBE: &str = r#"{"protocol": 1, "operations": [{"name": "greet", "summary": "writes a greeting",
  "params": [{"name": "who", "type": "string", "required": true, "doc": "whom to greet"},
             {"name": "out", "type": "path", "required": true, "doc": "the file to write"}],
  "writes": ["file:{out}"]}]}"#;

/// Reads the request with Python's standard library, writes the file.
const GREET: &str = r#"    python3 -c '
import json, sys, os
request = json.load(sys.stdin)
out = request["params"]["out"]
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    f.write("hello " + request["params"]["who"] + "\n")
print(json.dumps({"log": "greeting " + request["params"]["who"]}))
print(json.dumps({"progress": {"rows": 1, "bytes": 12}}))
print(json.dumps({"result": {"summary": "greeted " + request["params"]["who"], "rows": 1, "bytes": 12}}))
'"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_beside_the_flow_is_checked_planned_and_run_like_a_built_in() {
    let project = Project::new("plugins", "plugingreet", "greeting.flow", FLOW).await;
    plugin(&project, "hello", DESCRIBE, GREET);
    project.flow(&["check"]).expect(0);
    let plan = project.flow(&["plan", "--json"]).expect(0);
    assert!(plan.stdout.contains("hello:greet"), "{}", plan.stdout);
    let listed = support::Flow::new(["operations"])
        .dir(&project.dir)
        .expect(0);
    assert!(listed.stdout.contains("hello:greet"), "{}", listed.stdout);
    assert!(listed.stdout.contains("whom to greet"), "{}", listed.stdout);
    let run = project.run(&["--plain"]).expect(0);
    assert!(run.stdout.contains("hello:greet"), "{}", run.stdout);
    assert_eq!(
        std::fs::read_to_string(project.dir.join("out/greeting.txt")).expect("written"),
        "hello world\n"
    );
    // `describe` is cached by the executable's path and mtime; a new
    // executable is asked again.
    assert!(project.dir.join(".flow/plugins/hello.json").exists());
    std::thread::sleep(std::time::Duration::from_millis(20));
    plugin(
        &project,
        "hello",
        &DESCRIBE.replace("whom to greet", "the one greeted"),
        GREET,
    );
    let listed = support::Flow::new(["operations"])
        .dir(&project.dir)
        .expect(0);
    assert!(
        listed.stdout.contains("the one greeted"),
        "{}",
        listed.stdout
    );
    // Its parameters are checked like a built-in's.
    project.write(
        "greeting.flow",
        &FLOW.replace("who = \"world\"", "whom = \"world\""),
    );
    let wrong = project.flow(&["check"]).expect(2);
    assert!(wrong.stderr.contains("whom"), "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("who"),
        "did you mean: {}",
        wrong.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_misbehaves_is_named_and_the_run_fails() {
    let project = Project::new("plugins", "pluginbad", "greeting.flow", FLOW).await;
    for (body, said) in [
        ("    echo 'not json at all'", "not a JSON object"),
        (
            "    echo boom >&2; exit 3",
            "exited with exit status: 3 without a result",
        ),
        ("    cat >/dev/null; exit 0", "ended without a result"),
        (
            r#"    cat >/dev/null; echo '{"error": {"message": "the vendor API said 503", "help": "try later"}}'"#,
            "the vendor API said 503",
        ),
    ] {
        plugin(&project, "hello", DESCRIBE, body);
        let run = project.run(&["--plain"]).run();
        assert_eq!(run.code, 1, "{body}: {}{}", run.stdout, run.stderr);
        let all = support::flat(&format!("{}{}", run.stdout, run.stderr));
        assert!(all.contains("flow-hello"), "{body}: {all}");
        assert!(all.contains(said), "{body}: {said} in {all}");
    }
    // One that runs past its step's timeout is ended, and the run fails.
    plugin(&project, "hello", DESCRIBE, "    cat >/dev/null; sleep 30");
    project.write(
        "greeting.flow",
        &FLOW.replace(
            "who = \"world\"",
            "who = \"world\"\n  timeout = 1s\n  retries = 0",
        ),
    );
    let started = std::time::Instant::now();
    let run = project.run(&["--plain"]).run();
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let all = support::flat(&format!("{}{}", run.stdout, run.stderr));
    assert!(
        all.contains("timed out after 1.0s") && all.contains("hello:greet"),
        "{all}"
    );
    project.write("greeting.flow", FLOW);
    // A plugin that describes itself wrongly stops the check, named.
    plugin(
        &project,
        "hello",
        "{\"protocol\": 9, \"operations\": []}",
        "",
    );
    let wrong = project.flow(&["check"]).expect(2);
    assert!(
        wrong.stderr.contains("flow::plugin::describe"),
        "{}",
        wrong.stderr
    );
    assert!(
        support::flat(&wrong.stderr).contains("protocol 9"),
        "{}",
        wrong.stderr
    );
}

/// The example: `examples/plugins/plugins/flow-http` (Python, standard
/// library) pages through a JSON API that the test serves, and the flow
/// loads, shapes and populates what it wrote.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_example_fetches_an_api_into_the_api_database() {
    let folder = support::Folder::new("plugins", "shop");
    support::reference::copy_dir(&support::root().join("examples/plugins"), &folder.dir);
    use std::os::unix::fs::PermissionsExt as _;
    let plugin = folder.dir.join("plugins/flow-http");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let www = folder.dir.join("www");
    for (file, text) in [
        (
            "vendors/1.json",
            r#"{"items": [{"id": 1, "name": "Hallmark"}, {"id": 2, "name": "Acme, \"the\" best"}], "next": "2.json"}"#,
        ),
        (
            "vendors/2.json",
            r#"{"items": [{"id": 3, "name": "Zürich Supply"}], "next": null}"#,
        ),
        (
            "products/1.json",
            r#"{"items": [{"id": 10, "vendor_id": 1, "name": "card", "price": 2.5}, {"id": 11, "vendor_id": 2, "name": "anvil", "price": 99.99}], "next": "/products/2.json"}"#,
        ),
        (
            "products/2.json",
            r#"{"items": [{"id": 12, "vendor_id": 3, "name": "rope", "price": null}], "next": null}"#,
        ),
    ] {
        let path = www.join(file);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("www");
        std::fs::write(path, text).expect("page");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the API did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let flow = flow_db::testing::TestDatabase::create("shopf")
        .await
        .expect("flow db");
    let api = flow_db::testing::TestDatabase::create("shopa")
        .await
        .expect("api db");
    let run = support::Flow::new([
        "run",
        "shop.flow",
        "--plain",
        "--var",
        &format!("base=http://127.0.0.1:{port}"),
    ])
    .dir(&folder.dir)
    .env("FLOW_DATABASE_URL", flow.url())
    .env("API_DATABASE_URL", api.url())
    .run();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let client = api.client().await.expect("api");
    let vendors: Vec<String> = client
        .query("SELECT name FROM public.vendors ORDER BY id", &[])
        .await
        .expect("vendors")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(vendors, ["Hallmark", "Acme, \"the\" best", "Zürich Supply"]);
    let prices: Vec<Option<String>> = client
        .query("SELECT price::text FROM public.products ORDER BY id", &[])
        .await
        .expect("products")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(prices, [Some("2.50".into()), Some("99.99".into()), None]);
}

/// Cancelling a run sends the plugin's group SIGTERM; what it started ends
/// with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_run_ends_the_plugin_and_what_it_started() {
    let project = Project::new("plugins", "plugincancel", "greeting.flow", FLOW).await;
    plugin(
        &project,
        "hello",
        DESCRIBE,
        "    cat >/dev/null\n    trap 'echo terminated > got-term; exit 0' TERM\n    sleep 300 &\n    echo $! > child.pid\n    wait",
    );
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_flow"))
        .args(["run", "greeting.flow", "--plain"])
        .current_dir(&project.dir)
        .env("FLOW_DATABASE_URL", project.db.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flow run");
    let pid_file = project.dir.join("child.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&pid_file).map_or(true, |t| t.trim().is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the plugin never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let child: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    let signal = |args: &[&str]| {
        std::process::Command::new("kill")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(signal(&["-INT", &run.id().to_string()]));
    let status = run.wait().expect("flow ends");
    assert!(!status.success());
    // The plugin may still be running its trap when flow has exited.
    let got_term = project.dir.join("got-term");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !got_term.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(project.dir.join("got-term")).unwrap_or_default(),
        "terminated\n",
        "the plugin got SIGTERM"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Gone, or a zombie waiting for a parent that no longer reaps.
    let alive = std::fs::read_to_string(format!("/proc/{child}/status")).is_ok_and(|status| {
        !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    });
    assert!(!alive, "the plugin's child {child} outlived the run");
}
