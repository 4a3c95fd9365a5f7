//! What a step's run phase gets, and what it gives back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flow_db::{Database, DbError};
use miette::Diagnostic;
use tokio_util::sync::CancellationToken;

use crate::param::Params;

/// Everything a step may use while it runs.
pub struct RunContext {
    /// The step's id, for messages.
    pub step: String,
    pub params: Arc<Params>,
    /// The parameters as the operation's own type, parsed by its `prepare`.
    pub settings: crate::settings::Settings,
    /// The database named by the operation, for `pg:<db>:...`.
    pub target: Option<String>,
    /// The flow file's directory: relative paths in the flow start here.
    pub base_dir: PathBuf,
    pub databases: Arc<BTreeMap<String, Database>>,
    pub storages: Arc<BTreeMap<String, String>>,
    /// Values of this run that steps may use: a scheduled job's `item`.
    /// `sh:run` passes them as `FLOW_<NAME>` environment variables and
    /// `sql:<db>:run` as `flow.<name>` settings (`current_setting('flow.item')`).
    pub vars: Arc<BTreeMap<String, String>>,
    /// The run this step belongs to, when it is recorded.
    pub run: Option<i64>,
    /// The flow's `check` blocks: `pg:target:populate` runs those of the
    /// tables it writes before it commits.
    pub checks: Arc<Vec<crate::Check>>,
    /// Cancelled when the run stops (a sibling failed, or a signal arrived);
    /// a step checks it between units of work and returns promptly.
    pub cancel: CancellationToken,
    pub progress: Arc<Progress>,
}

/// A step's id as a file name: `sh:run/c` is `sh_run_c`.
pub fn log_name(step: &str) -> String {
    step.replace([':', '/'], "_")
}

impl RunContext {
    /// The context of `step` outside a run (for `flow diff`, benchmarks):
    /// no storages, no values, a fresh cancellation token and progress.
    pub fn for_step(
        step: &crate::StepNode,
        base_dir: PathBuf,
        databases: Arc<BTreeMap<String, Database>>,
        checks: Arc<Vec<crate::Check>>,
    ) -> Self {
        Self {
            step: step.key.clone(),
            params: Arc::clone(&step.params),
            settings: step.prepared.settings.clone(),
            target: step
                .id
                .target
                .clone()
                .filter(|_| step.operation.spec().target == crate::Target::Database),
            base_dir,
            databases,
            storages: Arc::default(),
            vars: Arc::default(),
            run: None,
            checks,
            cancel: CancellationToken::new(),
            progress: Arc::new(Progress::default()),
        }
    }

    /// Where the step keeps its log: `.flow/logs/<run>/<step>.log` (see
    /// `flow logs`), or `.flow/logs/<step>.log` outside a recorded run.
    pub fn log_path(&self) -> PathBuf {
        let name = format!("{}.log", log_name(&self.step));
        let logs = self.base_dir.join(".flow/logs");
        match self.run {
            Some(run) => logs.join(run.to_string()).join(name),
            None => logs.join(name),
        }
    }

    /// A path of the flow, relative to its directory.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.base_dir.join(relative)
    }

    /// The operation's typed parameters (what its `prepare` put in
    /// [`Prepared::settings`](crate::Prepared)).
    pub fn settings<T: std::any::Any>(&self) -> Result<&T, StepError> {
        self.settings.get().ok_or_else(|| {
            StepError::message(
                format!("step `{}` was not prepared with its settings", self.step),
                None,
            )
        })
    }

    /// The database the operation targets (`pg:<db>:...`), the flow
    /// database when it targets none.
    pub fn target_database(&self) -> Result<&Database, StepError> {
        self.database(self.target.as_deref().unwrap_or(crate::FLOW_DATABASE))
    }

    pub fn database(&self, name: &str) -> Result<&Database, StepError> {
        self.databases
            .get(name)
            .ok_or_else(|| StepError::message(format!("database `{name}` is not connected"), None))
    }

    /// A path template with its `{name}` placeholders filled: first from
    /// `own` (what the operation itself knows, like the table it writes),
    /// then from the run's values (`--var name=value`, a schedule's `item`).
    /// A placeholder with no value is an error that says how to give one.
    pub fn fill(&self, template: &str, own: &[(&str, &str)]) -> Result<String, StepError> {
        fill(template, |name| {
            own.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
                .or_else(|| self.vars.get(name).cloned())
        })
        .map_err(|name| {
            StepError::coded(
                "flow::values::missing",
                format!("`{template}` names the value `{{{name}}}`, which this run does not have"),
                Some(format!("pass it with `flow run ... --var {name}=VALUE`")),
            )
        })
    }

    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The files a glob of the flow matches, in name order; none is an error.
    pub fn files(&self, pattern: &str) -> Result<Vec<PathBuf>, StepError> {
        files(&self.base_dir, pattern)
    }

    /// A path as the flow names it: relative to the flow's folder.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.base_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// `template` with each `{name}` replaced by `value(name)`; the first name
/// without a value is the error. `{{` and `}}` stand for braces.
pub fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            out.push_str(&tail[..1]);
            rest = after;
            continue;
        }
        match (tail.starts_with('{'), tail.find('}')) {
            (true, Some(close)) => {
                let name = &tail[1..close];
                out.push_str(&value(name).ok_or_else(|| name.to_owned())?);
                rest = &tail[close + 1..];
            }
            _ => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The `{name}` placeholders of a template, in order.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let tail = &rest[open + 1..];
        if let Some(after) = tail.strip_prefix('{') {
            rest = after;
            continue;
        }
        match tail.find('}') {
            Some(close) => {
                names.push(&tail[..close]);
                rest = &tail[close + 1..];
            }
            None => break,
        }
    }
    names
}

/// The files a glob matches under `base_dir`, in name order; none is an error.
pub fn files(base_dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, StepError> {
    let full = base_dir.join(pattern);
    let mut files: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
        .map_err(|e| StepError::message(format!("`{pattern}` is not a valid glob: {e}"), None))?
        .flatten()
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(StepError::message(
            format!("no file matches `{pattern}` in `{}`", base_dir.display()),
            Some("paths in a flow are relative to the flow file's folder".into()),
        ));
    }
    Ok(files)
}

/// Counters a step advances as it works, read by the progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    pub units_done: AtomicU64,
    pub units_total: AtomicU64,
}

impl Progress {
    pub fn add_rows(&self, rows: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// What a finished step reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub rows: u64,
    pub bytes: u64,
    /// One line for the summary (`3 extensions, 1 created`).
    pub note: Option<String>,
    /// The step found everything as it should be and changed nothing, so the
    /// steps after it need not run again for its sake.
    pub unchanged: bool,
}

impl Outcome {
    pub fn note(note: impl Into<String>) -> Self {
        Self {
            note: Some(note.into()),
            ..Self::default()
        }
    }

    /// An outcome that changed nothing.
    #[must_use]
    pub fn unchanged(mut self, unchanged: bool) -> Self {
        self.unchanged = unchanged;
        self
    }
}

/// A step's failure: a diagnostic, and whether trying again may help.
#[derive(Debug)]
pub struct StepError {
    pub report: miette::Report,
    pub transient: bool,
}

impl StepError {
    pub fn new(diagnostic: impl Diagnostic + Send + Sync + 'static) -> Self {
        Self {
            report: miette::Report::new(diagnostic),
            transient: false,
        }
    }

    /// A failure with a plain message and optional help, under the general
    /// code `flow::step::failed`; plugins say what failed with [`StepError::coded`].
    pub fn message(message: impl Into<String>, help: Option<String>) -> Self {
        Self::coded("flow::step::failed", message, help)
    }

    /// A failure under a code of the plugin's (`flow::minio::not_found`), so
    /// that a user, a script or the docs can tell one kind from another.
    pub fn coded(code: &'static str, message: impl Into<String>, help: Option<String>) -> Self {
        Self::new(StepFailure {
            code,
            message: message.into(),
            help,
        })
    }

    #[must_use]
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }
}

impl From<DbError> for StepError {
    fn from(error: DbError) -> Self {
        let transient = error.is_transient();
        Self {
            report: miette::Report::new(error),
            transient,
        }
    }
}

impl From<tokio_postgres::Error> for StepError {
    fn from(error: tokio_postgres::Error) -> Self {
        DbError::from(error).into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct StepFailure {
    code: &'static str,
    message: String,
    help: Option<String>,
}

impl Diagnostic for StepFailure {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn std::fmt::Display>)
    }
}

/// Writes a file under a temporary name and renames it into place, so that a
/// reader never sees half of it.
pub async fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), StepError> {
    let failed = |e: std::io::Error| {
        StepError::message(format!("cannot write `{}`: {e}", path.display()), None)
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(failed)?;
    }
    let partial = crate::PartialFile::beside(path);
    tokio::fs::write(partial.path(), contents)
        .await
        .map_err(failed)?;
    partial.commit().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::{fill, placeholders};

    #[test]
    fn placeholders_are_filled_and_braces_escaped() {
        let value = |name: &str| (name == "release").then(|| "1.0".to_owned());
        assert_eq!(
            fill("exports/{release}/x.csv", value).as_deref(),
            Ok("exports/1.0/x.csv")
        );
        assert_eq!(fill("a{{b}}c", value).as_deref(), Ok("a{b}c"));
        assert_eq!(fill("a}b{", value).as_deref(), Ok("a}b{"));
        assert_eq!(fill("{table}.csv", value), Err("table".to_owned()));
        assert_eq!(
            placeholders("exports/{release}/{{x}}/{table}.csv"),
            ["release", "table"]
        );
    }
}
