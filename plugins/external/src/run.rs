//! `flow-<tool> run`: one JSON request on stdin; on stdout, one JSON object
//! per line: `{"progress": {"rows": N, "bytes": N}}`, `{"log": "..."}`, and
//! at the end `{"result": {"summary": "...", "rows": N, "bytes": N}}` or
//! `{"error": {"message": "...", "help": "..."}}`. The plugin runs in a
//! process group of its own; cancelling sends the group SIGTERM, then
//! SIGKILL after a grace period.

use std::time::Duration;

use flow_engine::{Outcome, ParamType, RunContext, StepError};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::describe::{External, PROTOCOL};

/// How long a cancelled plugin has to end before it is killed.
const GRACE: Duration = Duration::from_secs(5);

/// The last lines of what a plugin printed on stderr, to quote in an error.
pub(crate) fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(5)..];
    format!("; it printed on stderr:\n  {}", tail.join("\n  "))
}

/// The step's parameters as JSON, by their declared types.
fn params(external: &External, context: &RunContext) -> Value {
    let mut out = serde_json::Map::new();
    for spec in external.spec.params {
        let p = &context.params;
        if !p.contains(spec.name) {
            continue;
        }
        let value = match spec.ty {
            ParamType::Count => p.count(spec.name).map(Value::from),
            ParamType::Bool => p.bool(spec.name).map(Value::from),
            ParamType::Duration => p.duration(spec.name).map(|d| json!(d.as_secs_f64())),
            ParamType::Strings | ParamType::Names => Some(json!(p.list(spec.name))),
            ParamType::Storage => p
                .path(spec.name)
                .map(|(path, suffix)| json!({ "storage": path.join("."), "path": suffix })),
            _ => p.str(spec.name).map(Value::from),
        };
        if let Some(value) = value {
            out.insert(spec.name.to_owned(), value);
        }
    }
    Value::Object(out)
}

/// The request: the operation, its parameters, the connections it may use
/// (secrets travel here only), the run's values and the working folder.
fn request(external: &External, context: &RunContext) -> Value {
    let databases: serde_json::Map<String, Value> = context
        .databases
        .iter()
        .filter_map(|(name, db)| Some((name.clone(), json!(db.location.url_for_programs()?))))
        .collect();
    json!({
        "protocol": PROTOCOL,
        "operation": external.spec.operation,
        "step": context.step,
        "target": context.target,
        "params": params(external, context),
        "databases": databases,
        "storages": *context.storages,
        "vars": *context.vars,
        "run": context.run,
        "dir": context.base_dir,
    })
}

fn failed(external: &External, what: impl Into<String>, help: Option<String>) -> StepError {
    StepError::coded(
        "flow::plugin::failed",
        format!("plugin `{}` {}", external.executable.display(), what.into()),
        help,
    )
}

/// SIGTERM to the plugin's group, SIGKILL after the grace period.
async fn end(child: &mut tokio::process::Child) {
    let Some(pid) = child.id() else {
        return;
    };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// Ends the plugin's whole group when the step's future is dropped (the
/// run cancelled, a timeout): SIGTERM now, SIGKILL after the grace period
/// (`kill_on_drop` would reach the plugin alone, not what it started). A
/// flow that exits sooner leaves the SIGTERM only.
struct Group(Option<Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = killpg(group, Signal::SIGTERM);
            std::thread::spawn(move || {
                std::thread::sleep(GRACE);
                let _ = killpg(group, Signal::SIGKILL);
            });
        }
    }
}

pub(crate) async fn run(external: &External, context: &RunContext) -> Result<Outcome, StepError> {
    let mut child = tokio::process::Command::new(external.executable)
        .arg("run")
        .current_dir(&context.base_dir)
        .process_group(0)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // Not `kill_on_drop`: its SIGKILL would come before the plugin could
        // act on the SIGTERM `Group` sends.
        .spawn()
        .map_err(|e| failed(external, format!("cannot be started: {e}"), None))?;
    let mut group = Group(child.id().map(|pid| Pid::from_raw(pid as i32)));
    if let Some(mut stdin) = child.stdin.take() {
        let text = format!("{}\n", request(external, context));
        // A plugin that does not read its request still runs.
        let _ = stdin.write_all(text.as_bytes()).await;
    }
    let stderr = child.stderr.take().map(|mut stderr| {
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        })
    });
    let Some(stdout) = child.stdout.take() else {
        return Err(failed(external, "gave no output stream", None));
    };
    let mut lines = BufReader::new(stdout).lines();
    let mut result: Option<Value> = None;
    let mut error: Option<Value> = None;
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            () = context.cancel.cancelled() => {
                end(&mut child).await;
                group.0 = None;
                return Err(failed(external, "was cancelled", None));
            }
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                return Err(failed(
                    external,
                    format!("printed unreadable output: {e}"),
                    None,
                ));
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(&line) else {
            end(&mut child).await;
            let shown: String = line.chars().take(200).collect();
            return Err(failed(
                external,
                format!("printed a line that is not a JSON object: `{shown}`"),
                Some("every line a plugin prints on stdout is one JSON object; free text goes to stderr or into {\"log\": \"...\"}".into()),
            ));
        };
        if let Some(progress) = message.get("progress") {
            if let Some(rows) = progress.get("rows").and_then(Value::as_u64) {
                context.progress.add_rows(rows);
            }
            if let Some(bytes) = progress.get("bytes").and_then(Value::as_u64) {
                context.progress.add_bytes(bytes);
            }
        }
        if let Some(log) = message.get("log").and_then(Value::as_str) {
            tracing::info!(step = %context.step, "{log}");
        }
        if let Some(value) = message.get("result") {
            result = Some(value.clone());
        }
        if let Some(value) = message.get("error") {
            error = Some(value.clone());
        }
    }
    let status = child.wait().await;
    // Ended by itself: what it started in its group goes with it.
    if let Some(pid) = group.0.take() {
        let _ = killpg(pid, Signal::SIGKILL);
    }
    let stderr = match stderr {
        Some(task) => task.await.unwrap_or_default(),
        None => String::new(),
    };
    if let Some(error) = error {
        let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut message = text("message").unwrap_or_else(|| "failed".into());
        if let Some(file) = text("file") {
            let line = error.get("line").and_then(Value::as_u64);
            message = match line {
                Some(line) => format!("{file}:{line}: {message}"),
                None => format!("{file}: {message}"),
            };
        }
        return Err(failed(external, format!("failed: {message}"), text("help")));
    }
    let Some(result) = result else {
        let how = match status {
            Ok(status) if status.success() => "ended without a result".to_owned(),
            Ok(status) => format!("exited with {status} without a result"),
            Err(e) => format!("could not be waited for: {e}"),
        };
        return Err(failed(
            external,
            format!("{how}{}", last_lines(&stderr)),
            Some("a plugin ends with one line {\"result\": {...}} or {\"error\": {...}} (see PLUGINS.md)".into()),
        ));
    };
    Ok(Outcome {
        rows: result.get("rows").and_then(Value::as_u64).unwrap_or(0),
        bytes: result.get("bytes").and_then(Value::as_u64).unwrap_or(0),
        note: result
            .get("summary")
            .and_then(Value::as_str)
            .map(str::to_owned),
        unchanged: false,
    })
}
