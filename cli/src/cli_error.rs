use miette::Diagnostic;
use thiserror::Error;

/// Errors of the command itself, not of a flow.
#[derive(Debug, Error, Diagnostic)]
pub enum CliError {
    #[error("cannot read `{path}`: {reason}")]
    #[diagnostic(
        code(flow::cli::read),
        help("check the path; flow files usually live under `flows/`")
    )]
    Read { path: String, reason: String },

    #[error("there is no run of `{flow}` to resume")]
    #[diagnostic(
        code(flow::cli::nothing_to_resume),
        help("run it first with `flow run FILE`")
    )]
    NothingToResume { flow: String },

    #[error("there is no run {run} of `{flow}`")]
    #[diagnostic(code(flow::cli::unknown_run), help("`flow runs FILE` lists the runs"))]
    UnknownRun { flow: String, run: i64 },

    #[error("cannot write `{path}`: {reason}")]
    #[diagnostic(code(flow::cli::write))]
    Write { path: String, reason: String },
}
