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

    #[error("there is no run {run} of `{flow}`")]
    #[diagnostic(code(flow::cli::unknown_run), help("`flow runs FILE` lists the runs"))]
    UnknownRun { flow: String, run: i64 },

    #[error("cannot write `{path}`: {reason}")]
    #[diagnostic(code(flow::cli::write))]
    Write { path: String, reason: String },

    #[error("`{text}` is not a run")]
    #[diagnostic(
        code(flow::cli::bad_run),
        help("give a run's number (`flow runs FILE` lists them) or `latest`")
    )]
    BadRun { text: String },

    #[error("step `{step}` left no log in run {run}")]
    #[diagnostic(
        code(flow::cli::no_log),
        help(
            "steps that run commands keep their output, in `{path}`; `flow show FILE RUN` shows what each step did"
        )
    )]
    NoLog {
        step: String,
        run: i64,
        path: String,
    },

    #[error("`{path}` is there already")]
    #[diagnostic(
        code(flow::cli::exists),
        help("`flow init` starts a new flow and changes no file; pick an empty folder")
    )]
    Exists { path: String },

    #[error("{}", if table.is_empty() { "no populate step of this flow sends notifications".to_owned() } else { format!("no populate step of this flow keeps the history of `{table}`") })]
    #[diagnostic(
        code(flow::cli::no_history),
        help(
            "a `pg:target:populate` step keeps history with `history = [TABLE]` and announces changes with `notify = CHANNEL`"
        )
    )]
    NoHistory { table: String },
}
