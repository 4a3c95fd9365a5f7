use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

/// An error in the text of a flow: what the parser expected and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
pub enum SyntaxError {
    #[error("expected {expected}, found {found}")]
    #[diagnostic(code(flow::syntax::unexpected))]
    Unexpected {
        expected: String,
        found: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("this flow is already named `{first}`")]
    #[diagnostic(
        code(flow::syntax::duplicate_name),
        help("a file holds one flow; remove one of the `flow` lines")
    )]
    DuplicateName {
        first: String,
        #[label("second name")]
        span: SourceSpan,
        #[label("first named here")]
        first_span: SourceSpan,
    },

    #[error("duration `{text}` is too large")]
    #[diagnostic(
        code(flow::syntax::duration_range),
        help("use a larger unit: `ms`, `s`, `m`, `h` or `d`")
    )]
    DurationRange {
        text: String,
        #[label("does not fit in 64 bits of milliseconds")]
        span: SourceSpan,
    },
}
