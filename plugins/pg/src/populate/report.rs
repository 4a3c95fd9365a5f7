//! What populate did or would do: the schema changes, rows and checks, for
//! people and for JSON.

use std::fmt::Write as _;

use flow_engine::StepError;

use super::Mode;
use crate::migrate::{Change, Class};

/// What populate did, or would do.
#[derive(Debug, Default)]
pub struct Report {
    pub target: String,
    pub mode: Mode,
    pub changes: Vec<Change>,
    pub rows: u64,
    pub bytes: u64,
    /// The schema the previous tables went to (`swap`).
    pub previous: Option<String>,
    /// What the checks found, for `flow diff` (a run fails instead).
    pub failed_checks: Vec<String>,
    /// For `swap`, the statements it runs (the changes' SQL is for the
    /// modes that change tables in place).
    pub swap_sql: Vec<String>,
    /// What the history tables recorded.
    pub history: Vec<super::history::Changed>,
}

impl Report {
    /// The report as JSON, for `flow diff --json`: what a CI job reads to
    /// decide.
    pub fn to_json(&self) -> serde_json::Value {
        let changes: Vec<serde_json::Value> = self
            .changes
            .iter()
            .filter(|c| !c.name.is_empty())
            .map(|c| {
                serde_json::json!({
                    "change": c.name,
                    "class": match c.class {
                        Class::Safe => "safe",
                        Class::DataDependent => "data_dependent",
                        Class::Destructive => "destructive",
                    },
                    "table": c.table,
                    "breaking_rows": c.broken.as_ref().map(|(n, _)| n),
                    "samples": c.broken.as_ref().map(|(_, s)| s),
                    "refused": c.refused,
                    "sql": c.before.iter().chain(&c.after).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "target": self.target,
            "mode": self.mode.as_str(),
            "rows": self.rows,
            "would_fail": self.would_fail(),
            "changes": changes,
            "failed_checks": self.failed_checks,
            "swap_sql": self.swap_sql,
        })
    }

    /// One line: what moved and what changed.
    pub fn summary(&self) -> String {
        let mut line = format!("{} rows into {} ({})", self.rows, self.target, self.mode);
        let changes: Vec<&Change> = self.changes.iter().filter(|c| !c.name.is_empty()).collect();
        if !changes.is_empty() {
            let names: Vec<&str> = changes.iter().map(|c| c.name.as_str()).collect();
            let _ = write!(line, "; migrated: {}", names.join(", "));
        }
        if let Some(previous) = &self.previous {
            let _ = write!(line, "; previous tables in {previous}");
        }
        for changed in &self.history {
            let _ = write!(
                line,
                "; history of {}: {} new, {} changed, {} gone",
                changed.table, changed.inserted, changed.updated, changed.deleted
            );
        }
        line
    }

    /// Whether populate would refuse or fail: a destructive change not
    /// allowed, rows that would break, a check that would fail.
    pub fn would_fail(&self) -> bool {
        !self.failed_checks.is_empty()
            || self
                .changes
                .iter()
                .any(|c| c.refused || c.broken.as_ref().is_some_and(|(n, _)| *n > 0))
    }

    /// The changes, classified, with the rows that break and the SQL.
    pub fn render(&self, sql: bool) -> String {
        let mut text = format!("{} ({})\n", self.target, self.mode);
        if self.changes.is_empty() {
            text.push_str("  no schema change\n");
        }
        for change in &self.changes {
            let _ = write!(text, "  {:<15} {}", change.class.to_string(), change.name);
            match &change.broken {
                Some((0, _)) => text.push_str(": no row breaks"),
                Some((n, samples)) => {
                    let rows = format!("{n} row{}", if *n == 1 { "" } else { "s" });
                    let _ = match change.grouped {
                        Some(values) => write!(
                            text,
                            ": {values} key value{} shared by {rows} would break",
                            if values == 1 { "" } else { "s" }
                        ),
                        None => write!(text, ": {rows} would break"),
                    };
                    for sample in samples {
                        let _ = write!(text, "\n                    {sample}");
                    }
                }
                None => {}
            }
            if change.refused {
                text.push_str(": refused unless allowed by name");
            }
            text.push('\n');
        }
        if !self.failed_checks.is_empty() {
            text.push_str("\n  checks that would fail:\n");
            for failure in &self.failed_checks {
                let _ = writeln!(text, "  {}", failure.trim_start());
            }
        }
        if sql {
            let (statements, title): (Vec<&String>, &str) = if self.swap_sql.is_empty() {
                (
                    self.changes
                        .iter()
                        .flat_map(|c| c.before.iter().chain(&c.after))
                        .collect(),
                    "SQL, in the load's transaction",
                )
            } else {
                (
                    self.swap_sql.iter().collect(),
                    "SQL: the new tables, loaded with COPY, then constrained and switched in one transaction",
                )
            };
            if !statements.is_empty() {
                let _ = writeln!(text, "\n  {title}:");
                for statement in statements {
                    for line in statement.lines() {
                        let _ = writeln!(text, "    {line}");
                    }
                }
            }
        }
        text
    }
}

/// A populate that must not go on, with the report that says why.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}\n{report}")]
#[diagnostic(code(flow::populate::refused))]
pub(super) struct Refused {
    message: String,
    report: String,
    #[help]
    help: Option<String>,
}

pub(super) fn refused(
    message: impl Into<String>,
    report: &Report,
    help: impl Into<String>,
) -> StepError {
    StepError::new(Refused {
        message: message.into(),
        report: report.render(false),
        help: Some(help.into()),
    })
}
