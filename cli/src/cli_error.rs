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

    #[error("cannot write `{path}`: {reason}")]
    #[diagnostic(code(flow::cli::write))]
    Write { path: String, reason: String },
}
