//! Everything `flow` writes to the terminal goes through here.
//!
//! Nothing here panics or stops a run when the terminal or pipe has gone
//! (`flow run --json | head`): a write that fails is dropped, and the run
//! goes on and is recorded as it really ends.

use std::io::{IsTerminal, Write as _};

/// Writes to stderr, ignoring a closed stream.
fn to_stderr(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.write_all(b"\n");
}

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, Report};

pub fn install_report_handler() {
    let _ = miette::set_hook(Box::new(|_| {
        let handler = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            GraphicalReportHandler::new()
        } else {
            GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(80)
        };
        // A URL or a path is never cut across lines.
        Box::new(handler.with_links(false).with_break_words(false))
    }));
}

/// Prints diagnostics about one source file.
pub fn diagnostics<D>(path: &str, source: &str, errors: impl IntoIterator<Item = D>)
where
    D: Diagnostic + Send + Sync + 'static,
{
    for error in errors {
        let report = Report::new(error).with_source_code(NamedSource::new(path, source.to_owned()));
        to_stderr(&format!("{report:?}"));
    }
}

/// Prints a diagnostic that is not about a place in a file.
pub fn error<D>(error: D)
where
    D: Diagnostic + Send + Sync + 'static,
{
    to_stderr(&format!("{:?}", Report::new(error)));
}

/// A diagnostic as plain text, for records and JSON events.
pub use flow_engine::run::render_report as render;

/// Prints a report already made (a step's error).
pub fn report(report: Report) {
    to_stderr(&format!("{report:?}"));
}

pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

pub fn note(text: &str) {
    to_stderr(text);
}
