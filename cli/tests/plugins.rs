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
