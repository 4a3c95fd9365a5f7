/// The exit codes of `flow`, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// A step failed, or `fmt --check` found a file to reformat.
    Failure = 1,
    /// The flow is invalid, or the command line is.
    Invalid = 2,
    /// Ctrl-C or SIGTERM stopped the run.
    Interrupted = 130,
}
