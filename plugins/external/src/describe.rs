//! `flow-<tool> describe`: the tool's operations, turned into operations of
//! the registry. The answer is cached by the executable's path and mtime in
//! the flow's `.flow/plugins/`, so `flow check` does not start every plugin
//! every time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flow_engine::{
    Operation, OperationSpec, ParamSpec, ParamType, Prepared, Problem, Resource, StepContext,
    Target,
};
use serde::{Deserialize, Serialize};

use crate::run;

/// The protocol version this flow speaks.
pub const PROTOCOL: u32 = 1;

const DESCRIBE_TIME: Duration = Duration::from_secs(10);

/// A plugin that could not say what it does.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("plugin `{}` could not describe itself: {what}", plugin.display())]
#[diagnostic(
    code(flow::plugin::describe),
    help(
        "`flow-<tool> describe` prints one JSON object: {{\"protocol\": 1, \"operations\": [...]}} (see PLUGINS.md)"
    )
)]
pub struct DescribeError {
    pub plugin: PathBuf,
    pub what: String,
}

#[derive(Debug, Deserialize, Serialize)]
struct Described {
    protocol: u32,
    operations: Vec<Described1>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Described1 {
    name: String,
    /// `none` (`tool:operation`), `database` (`tool:<db>:operation`) or a
    /// fixed name (`tool:name:operation`).
    #[serde(default = "none")]
    target: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    params: Vec<DescribedParam>,
    /// `file:GLOB`, `table:DB.SCHEMA.TABLE`; `{param}` takes a parameter's value.
    #[serde(default)]
    reads: Vec<String>,
    #[serde(default)]
    writes: Vec<String>,
}

fn none() -> String {
    "none".into()
}

#[derive(Debug, Deserialize, Serialize)]
struct DescribedParam {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    doc: String,
}

#[derive(Debug, Deserialize, Serialize)]
struct Cached {
    path: PathBuf,
    modified: u128,
    described: String,
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// flow's type vocabulary, as the protocol spells it.
fn param_type(name: &str) -> Option<ParamType> {
    Some(match name {
        "string" => ParamType::String,
        "number" => ParamType::Count,
        "boolean" => ParamType::Bool,
        "list" => ParamType::Strings,
        "names" => ParamType::Names,
        "name" => ParamType::Name,
        "duration" => ParamType::Duration,
        "database" => ParamType::Database,
        "storage" => ParamType::Storage,
        "path" => ParamType::Path,
        "glob" => ParamType::Glob,
        _ => return None,
    })
}

/// The operations `executable` describes, ready for the registry.
pub(crate) fn describe(
    executable: &Path,
    tool: &str,
    base: &Path,
) -> Result<Vec<&'static dyn Operation>, DescribeError> {
    let fail = |what: String| DescribeError {
        plugin: executable.to_path_buf(),
        what,
    };
    let text = cached_or_run(executable, tool, base).map_err(fail)?;
    let described: Described = serde_json::from_str(&text).map_err(|e| {
        fail(format!(
            "its `describe` printed something that is not the protocol's JSON ({e})"
        ))
    })?;
    if described.protocol != PROTOCOL {
        return Err(fail(format!(
            "it speaks protocol {}, this flow speaks {PROTOCOL}",
            described.protocol
        )));
    }
    if described.operations.is_empty() {
        return Err(fail("it describes no operation".into()));
    }
    let executable: &'static Path = Box::leak(executable.to_path_buf().into_boxed_path());
    let mut operations: Vec<&'static dyn Operation> = Vec::new();
    for op in described.operations {
        let mut params = Vec::new();
        for p in &op.params {
            let ty = param_type(&p.ty).ok_or_else(|| {
                fail(format!(
                    "parameter `{}` of `{}` has type `{}`; the types are string, number, boolean, list, names, name, duration, database, storage, path and glob",
                    p.name, op.name, p.ty
                ))
            })?;
            params.push(ParamSpec {
                name: leak(&p.name),
                ty,
                required: p.required,
                doc: leak(&p.doc),
            });
        }
        let target = match op.target.as_str() {
            "none" => Target::None,
            "database" => Target::Database,
            fixed => Target::Fixed(leak(fixed)),
        };
        let spec: &'static OperationSpec = Box::leak(Box::new(OperationSpec {
            tool: leak(tool),
            target,
            operation: leak(&op.name),
            summary: leak(&op.summary),
            params: Box::leak(params.into_boxed_slice()),
        }));
        operations.push(Box::leak(Box::new(External {
            executable,
            spec,
            reads: op.reads,
            writes: op.writes,
        })));
    }
    Ok(operations)
}

fn modified(path: &Path) -> Option<u128> {
    path.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
}

/// The answer of `describe`, from the cache when the executable is the same.
fn cached_or_run(executable: &Path, tool: &str, base: &Path) -> Result<String, String> {
    let cache = base.join(".flow/plugins").join(format!("{tool}.json"));
    let stamp = modified(executable);
    if let Ok(text) = std::fs::read_to_string(&cache)
        && let Ok(cached) = serde_json::from_str::<Cached>(&text)
        && cached.path == executable
        && Some(cached.modified) == stamp
    {
        return Ok(cached.described);
    }
    let described = run_describe(executable)?;
    if let Some(modified) = stamp {
        let cached = Cached {
            path: executable.to_path_buf(),
            modified,
            described: described.clone(),
        };
        if let Ok(text) = serde_json::to_string(&cached) {
            let _ = std::fs::create_dir_all(base.join(".flow/plugins"));
            let _ = std::fs::write(&cache, text);
        }
    }
    Ok(described)
}

fn run_describe(executable: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut child = std::process::Command::new(executable)
        .arg("describe")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("it cannot be started: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > DESCRIBE_TIME => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`describe` did not answer within {} s",
                    DESCRIBE_TIME.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    if !status.success() {
        return Err(format!(
            "`describe` exited with {status}{}",
            run::last_lines(&err)
        ));
    }
    Ok(out)
}

/// An operation of a `flow-<tool>` executable.
pub(crate) struct External {
    pub(crate) executable: &'static Path,
    pub(crate) spec: &'static OperationSpec,
    reads: Vec<String>,
    writes: Vec<String>,
}

/// `file:out/{name}.csv` with `name`'s value; a table `db.schema.table`.
fn resource(text: &str, step: &StepContext<'_>) -> Result<Resource, String> {
    let mut filled = text.to_owned();
    while let Some(open) = filled.find('{') {
        let Some(close) = filled[open..].find('}').map(|c| open + c) else {
            break;
        };
        let name = &filled[open + 1..close];
        let value = step.params.str(name).unwrap_or_default().to_owned();
        filled.replace_range(open..=close, &value);
    }
    match filled.split_once(':') {
        Some(("file", glob)) => Ok(Resource::file(glob)),
        Some(("table", table)) => match table.split('.').collect::<Vec<_>>().as_slice() {
            [db, schema, table] => Ok(Resource::table(db, schema, Some(table))),
            _ => Err(format!("`{text}` is not `table:DB.SCHEMA.TABLE`")),
        },
        _ => Err(format!(
            "`{text}` is neither `file:GLOB` nor `table:DB.SCHEMA.TABLE`"
        )),
    }
}

impl Operation for External {
    fn spec(&self) -> &'static OperationSpec {
        self.spec
    }

    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>> {
        let mut prepared = Prepared::default();
        let mut problems = Vec::new();
        for (list, write) in [(&self.reads, false), (&self.writes, true)] {
            for text in list {
                match resource(text, step) {
                    Ok(resource) if write => prepared = prepared.writes(resource),
                    Ok(resource) => prepared = prepared.reads(resource),
                    Err(message) => problems.push(Problem {
                        param: None,
                        message: format!(
                            "plugin `{}` describes a resource flow cannot read: {message}",
                            self.executable.display()
                        ),
                        help: None,
                    }),
                }
            }
        }
        if problems.is_empty() {
            Ok(prepared)
        } else {
            Err(problems)
        }
    }

    fn run<'a>(
        &'a self,
        context: &'a flow_engine::RunContext,
    ) -> flow_engine::BoxFuture<'a, Result<flow_engine::Outcome, flow_engine::StepError>> {
        Box::pin(run::run(self, context))
    }
}
