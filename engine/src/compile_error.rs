use miette::{Diagnostic, LabeledSpan, SourceSpan};
use thiserror::Error;

/// Everything the compiler can find wrong with a flow. The compiler reports all
/// of them in one go; each carries the span it is about.
#[derive(Debug, Clone, Error, Diagnostic)]
pub enum CompileError {
    #[error("`{text}` is not an operation")]
    #[diagnostic(
        code(flow::compile::operation_shape),
        help(
            "operations are written `tool:target:operation` (like `pg:source:load`) or `tool:operation` (like `minio:download`)"
        )
    )]
    OperationShape {
        text: String,
        #[label("expected two or three parts separated by `:`")]
        span: SourceSpan,
    },

    #[error("unknown tool `{tool}`")]
    #[diagnostic(code(flow::compile::unknown_tool))]
    UnknownTool {
        tool: String,
        #[label("no plugin provides this tool")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("unknown operation `{operation}`")]
    #[diagnostic(code(flow::compile::unknown_operation))]
    UnknownOperation {
        operation: String,
        #[label("`{tool}` has no such operation")]
        span: SourceSpan,
        tool: String,
        #[help]
        help: String,
    },

    #[error("unknown database `{name}`")]
    #[diagnostic(code(flow::compile::unknown_database))]
    UnknownDatabase {
        name: String,
        #[label("not declared")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("unknown storage `{name}`")]
    #[diagnostic(code(flow::compile::unknown_storage))]
    UnknownStorage {
        name: String,
        #[label("not declared")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("check `{name}` would never run: no step that runs checks writes `{table}`")]
    #[diagnostic(code(flow::compile::check_never_runs))]
    CheckNeverRuns {
        name: String,
        table: String,
        #[label(
            "checks run inside `pg:target:populate`, before it commits, on the tables it writes"
        )]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("no file matches `{glob}`, and no step of the flow writes it")]
    #[diagnostic(
        code(flow::check::missing_file),
        help(
            "paths in a flow are relative to the flow file's folder; `{step}` reads it when it runs"
        )
    )]
    MissingFile {
        glob: String,
        step: String,
        #[label("read by `{step}`")]
        span: SourceSpan,
    },

    #[error("unknown group `{name}`")]
    #[diagnostic(code(flow::compile::unknown_group))]
    UnknownGroup {
        name: String,
        #[label("not in the `groups` order")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("unknown parameter `{name}` for `{operation}`")]
    #[diagnostic(code(flow::compile::unknown_parameter))]
    UnknownParameter {
        name: String,
        operation: String,
        #[label("not a parameter of `{operation}`")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{operation}` needs the parameter `{name}`")]
    #[diagnostic(code(flow::compile::missing_parameter))]
    MissingParameter {
        name: String,
        operation: String,
        #[label("`{name}` is missing")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{name}` is given twice")]
    #[diagnostic(code(flow::compile::duplicate_parameter), help("remove one of them"))]
    DuplicateParameter {
        name: String,
        #[label("given again here")]
        span: SourceSpan,
        #[label("first given here")]
        first: SourceSpan,
    },

    #[error("`{name}` expects {expected}, found {found}")]
    #[diagnostic(code(flow::compile::wrong_type))]
    WrongType {
        name: String,
        expected: String,
        found: String,
        #[label("expected {expected}")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    #[error("{message}")]
    #[diagnostic(code(flow::compile::invalid_value))]
    InvalidValue {
        message: String,
        #[label("here")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    #[error("{kind} `{name}` is declared twice")]
    #[diagnostic(
        code(flow::compile::duplicate_declaration),
        help("remove one of them, or give it another name")
    )]
    DuplicateDeclaration {
        kind: &'static str,
        name: String,
        #[label("declared again here")]
        span: SourceSpan,
        #[label("first declared here")]
        first: SourceSpan,
    },

    #[error("two steps are `{id}`")]
    #[diagnostic(
        code(flow::compile::duplicate_step),
        help("give each a name to tell them apart: `step {triple} parcels {{ ... }}`")
    )]
    DuplicateStep {
        id: String,
        triple: String,
        #[label("this one")]
        span: SourceSpan,
        #[label("and this one")]
        first: SourceSpan,
    },

    #[error("`{pattern}` matches no step")]
    #[diagnostic(code(flow::compile::unknown_step))]
    UnknownStep {
        pattern: String,
        #[label("no step has this id")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("the steps depend on each other in a cycle: {path}")]
    #[diagnostic(
        code(flow::compile::cycle),
        help(
            "remove one of these dependencies: an `after`, a group order, or a resource one step writes and the other reads"
        )
    )]
    Cycle {
        path: String,
        #[label(collection)]
        labels: Vec<LabeledSpan>,
    },
}
