//! Generators of realistic flows for the benchmarks.

/// A flow of `steps` steps over four groups. Each step writes one table and
/// reads up to three tables written by recent steps (fan-in), and every tenth
/// step also waits on files another step writes, so that the compiler's group,
/// `after` and resource edges are all exercised.
pub fn generated_flow(steps: usize) -> String {
    use std::fmt::Write as _;
    let mut text = String::from(
        "flow generated\n\ndatabase flow = env(\"FLOW_DATABASE_URL\", \"embedded\")\n\ngroups download -> configure -> seed -> populate\n",
    );
    let groups = ["download", "configure", "seed", "populate"];
    // A small deterministic generator: the same flow every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound.max(1) as u64) as usize
    };
    for i in 0..steps {
        let group = groups[i * groups.len() / steps.max(1)];
        if i % 10 == 9 {
            let _ = write!(
                text,
                "\nstep sh:run s{i} {{\n  group = {group}\n  command = \"true\"\n  reads = [\"data/d{}/*.csv\"]\n  writes = [\"data/d{i}/out.csv\"]\n}}\n",
                i.saturating_sub(1 + next(20))
            );
            continue;
        }
        let reads: Vec<String> = (0..next(4))
            .map(|_| format!("\"model.t{}\"", i.saturating_sub(1 + next(50))))
            .collect();
        let _ = write!(
            text,
            "\nstep sql:flow:run t{i} {{\n  group = {group}\n  sql = \"sql/t{i}.sql\"\n  reads = [{}]\n  writes = [\"model.t{i}\"]\n",
            reads.join(", ")
        );
        if i % 25 == 24 {
            let mut upstream = i - 1 - next(10);
            if upstream % 10 == 9 {
                upstream -= 1;
            }
            let _ = writeln!(text, "  after = [sql:flow:run/t{upstream}]");
        }
        text.push_str("}\n");
    }
    text
}

/// How a benchmark binary was started: `None` when a test runner only asks
/// for its tests (`--list`; there are none), `Some(true)` from `cargo bench`
/// (`--bench`: the full run), `Some(false)` for a quick smoke run.
pub fn mode() -> Option<bool> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return None;
    }
    Some(args.iter().any(|a| a == "--bench"))
}

/// How much of its full size a benchmark makes: `FLOW_BENCH_SCALE`, else
/// all of it from `cargo bench` (`full`), else `smoke` (a quick run).
pub fn scale(full: bool, smoke: f64) -> f64 {
    std::env::var("FLOW_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 1.0 } else { smoke })
}

/// An rclone configuration naming an S3-compatible `endpoint` `seaweed`
/// (path-style addressing), written into `dir`.
pub fn rclone_config(
    dir: &std::path::Path,
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
) -> std::path::PathBuf {
    let config = dir.join("rclone.conf");
    std::fs::write(
        &config,
        format!(
            "[seaweed]\ntype = s3\nprovider = Other\naccess_key_id = {access_key}\nsecret_access_key = {secret_key}\nendpoint = {endpoint}\nforce_path_style = true\n"
        ),
    )
    .expect("rclone config");
    config
}

/// The `psql` to compare with: PostgreSQL 15's, Debian's, or the one on PATH.
pub fn psql() -> String {
    ["/usr/lib/postgresql/15/bin/psql", "/usr/bin/psql"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("psql")
        .to_owned()
}

/// Whether a tool is on PATH.
pub fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The median of some times.
pub fn median(mut times: Vec<std::time::Duration>) -> std::time::Duration {
    times.sort();
    times[times.len() / 2]
}

/// Runs a shell command; its time.
pub fn timed(command: &str) -> std::time::Duration {
    let started = std::time::Instant::now();
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sh");
    assert!(status.success(), "failed: {command}");
    started.elapsed()
}

/// Runs one step of a compiled flow outside a run; its time.
pub async fn run_step(
    pipeline: &flow_engine::Pipeline,
    key: &str,
    databases: &std::sync::Arc<std::collections::BTreeMap<String, flow_db::Database>>,
    base: &std::path::Path,
) -> std::time::Duration {
    let step = pipeline.steps.iter().find(|s| s.key == key).expect("step");
    let context = flow_engine::RunContext::for_step(
        step,
        base.to_path_buf(),
        std::sync::Arc::clone(databases),
        std::sync::Arc::default(),
    );
    let started = std::time::Instant::now();
    step.operation
        .run(&context)
        .await
        .unwrap_or_else(|e| panic!("{key}: {:?}", e.report));
    started.elapsed()
}

/// The reference pipeline (`flows/parcels.flow` and its folder) copied into
/// `dir`, emptied first.
pub fn reference_pipeline(dir: &std::path::Path) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let _ = std::fs::remove_dir_all(dir);
    copy_dir(&root.join("flows/parcels"), &dir.join("parcels"));
    std::fs::copy(root.join("flows/parcels.flow"), dir.join("parcels.flow")).expect("flow");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
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

/// The release `flow` beside a benchmark's executable, when it was built.
pub fn release_flow() -> Option<std::path::PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("flow")))
        .filter(|p| p.exists())
}

/// The peak resident memory of this process so far, in MiB.
pub fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Prints a measured line and, with another tool's time, the ratio.
#[allow(clippy::print_stdout)]
pub fn line(what: &str, flow: std::time::Duration, other: Option<(&str, std::time::Duration)>) {
    match other {
        Some((tool, time)) => println!(
            "{what:<28} flow {flow:>9.2?}   {tool:<24} {time:>9.2?}   {tool} / flow = {:.2}",
            time.as_secs_f64() / flow.as_secs_f64()
        ),
        None => println!("{what:<28} flow {flow:>9.2?}"),
    }
}

#[cfg(test)]
mod tests {
    use flow_plugin_sh as _;
    use flow_plugin_sql as _;

    #[test]
    fn generated_flows_are_valid() {
        let text = super::generated_flow(300);
        let parsed = flow_dsl::parse(&text);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let pipeline = flow_engine::compile(&parsed.flow, &flow_engine::Registry::installed(), "g")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(pipeline.steps.len(), 300);
    }
}
