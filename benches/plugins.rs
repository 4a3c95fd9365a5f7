//! The cost of a step of a `flow-<tool>` executable: the time flow adds to
//! starting the plugin, sending its request and reading its answer, against
//! starting the same executable directly, in the same run.
//!
//! `cargo bench -p flow-benches --bench plugins`: a no-op plugin in shell
//! and one in Python (the language of `examples/plugins`), 50 steps each;
//! prints the median per step of each way and what flow adds.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_benches::median;
use flow_engine::{Registry, RunContext};

const DESCRIBE: &str = r#"{"protocol": 1, "operations": [{"name": "go", "summary": "nothing", "params": [{"name": "n", "type": "string"}]}]}"#;

fn write_plugin(dir: &Path, tool: &str, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("plugins").join(format!("flow-{tool}"));
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins/");
    std::fs::write(&path, text).expect("plugin");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

// Long on purpose (the reason): a benchmark's main is its scenario, top to
// bottom, timing flow and the direct start on the same plugins in one run.
#[tokio::main]
async fn main() {
    let Some(full) = flow_benches::mode() else {
        return;
    };
    let steps = if full { 50 } else { 5 };
    let dir = std::env::temp_dir().join(format!("flow-bench-plugins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    write_plugin(
        &dir,
        "noopsh",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = describe ]; then cat <<'JSON'\n{DESCRIBE}\nJSON\nelse cat >/dev/null; echo '{{\"result\": {{\"summary\": \"done\"}}}}'; fi\n"
        ),
    );
    write_plugin(
        &dir,
        "noopy",
        &format!(
            "#!/usr/bin/env python3\nimport json, sys\nif sys.argv[1] == 'describe':\n    print('''{DESCRIBE}''')\nelse:\n    json.load(sys.stdin)\n    print(json.dumps({{'result': {{'summary': 'done'}}}}))\n"
        ),
    );
    let text = "flow bench\ndatabase flow = \"postgres://unused\"\nstep noopsh:go a { n = \"1\" }\nstep noopy:go b { n = \"1\" }\n";
    std::fs::write(dir.join("bench.flow"), text).expect("flow");
    let tools = BTreeSet::from(["noopsh".to_owned(), "noopy".to_owned()]);
    let (registry, broken) = flow_plugin_external::extend(&Registry::installed(), &dir, &tools);
    assert!(broken.is_empty(), "{broken:?}");
    let parsed = flow_dsl::parse(text);
    let pipeline = flow_engine::compile(&parsed.flow, &registry, "bench").expect("flow");
    for step in &pipeline.steps {
        let context =
            RunContext::for_step(step, dir.clone(), Arc::new(BTreeMap::new()), Arc::default());
        let tool = step.key.split(':').next().unwrap_or_default().to_owned();
        let (mut through_flow, mut direct) = (Vec::<Duration>::new(), Vec::<Duration>::new());
        for _ in 0..steps {
            let started = Instant::now();
            step.operation.run(&context).await.expect("the plugin runs");
            through_flow.push(started.elapsed());
            let started = Instant::now();
            let status =
                std::process::Command::new(dir.join("plugins").join(format!("flow-{tool}")))
                    .arg("run")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .and_then(|mut child| {
                        use std::io::Write as _;
                        if let Some(mut stdin) = child.stdin.take() {
                            let _ = stdin.write_all(b"{}\n");
                        }
                        child.wait()
                    })
                    .expect("direct");
            assert!(status.success());
            direct.push(started.elapsed());
        }
        let (flow, alone) = (median(through_flow), median(direct));
        println!(
            "flow-{tool}: a step through flow {flow:.2?}, the executable alone {alone:.2?}; flow adds {:.2?} ({:.2}× the executable alone)",
            flow.saturating_sub(alone),
            flow.as_secs_f64() / alone.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
