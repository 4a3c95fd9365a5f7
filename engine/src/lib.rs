//! The engine: what a flow means, in what order it runs, and the run itself.
//!
//! A flow goes through these stages:
//! 1. [`compile`] checks the syntax tree against the [`Registry`] of operations
//!    (every parameter of every step, every reference to a database, storage,
//!    group or step) and asks each operation, in its pure `prepare` phase, what
//!    it reads and writes and what its parameters are as its own type;
//! 2. the compiler links the steps into a DAG whose edges carry their
//!    [`EdgeReason`]: the group order, an explicit `after`, or a resource one
//!    step writes and another reads;
//! 3. a [`Selection`] picks the steps to run and [`Plan`] orders them in waves of
//!    steps that can run at the same time;
//! 4. [`run::start`] runs a selection: it opens a [`Session`] (the databases,
//!    the embedded cluster when one is needed), records the run in `_flow`,
//!    and drives the [`executor`]; whoever started it watches it through an
//!    [`run::Observer`] and may cancel it. The CLI, the [`scheduler`] and a
//!    server are clients of this one API.
//!
//! Compiling and planning do no I/O (`flow check` and `flow plan` need no
//! database); [`predict`] reads the records to say what a run would skip,
//! and [`review`] gives the operations' previews and undos (`flow diff`,
//! `flow rollback`). Plugins bring the effects in their `run` phase.

mod compile_error;
mod compiler;
mod env_files;
mod environment;
pub mod executor;
pub mod fingerprint;
mod flow_file;
mod inputs;
mod operation;
mod param;
mod partial_file;
mod pipeline;
mod plan;
pub mod predict;
mod records;
mod registry;
mod render;
mod resource;
pub mod review;
pub mod run;
mod run_context;
pub mod scheduler;
mod selection;
mod session;
mod settings;
mod step_id;
mod suggest;
mod trigger;

pub use compile_error::CompileError;
pub use compiler::compile;
pub use env_files::{environment_name, load_env_files};
pub use environment::{Environment, EnvironmentError};
pub use flow_file::{Connections, FlowFile, base_dir};
pub use inputs::missing_files;
pub use operation::{
    BoxFuture, Operation, OperationSpec, Prepared, Preview, Problem, Registration, Settings,
    Startup, StepContext, Target, startup,
};
pub use param::{ParamSpec, ParamType, Params};
pub use partial_file::PartialFile;
pub use pipeline::{
    Check, Declaration, EdgeReason, Missed, Node, Pipeline, Schedule, StepIndex, StepNode,
};
pub use plan::{Plan, PlannedStep, plan_json};
pub use records::{
    Counts, FireRecord, KeyCheck, KeyRecord, Records, RunRecord, Scope as KeyScope, StepEnd,
    StepRecord, Success, vars_key,
};
pub use registry::Registry;
pub use render::{GraphFormat, render_graph};
pub use resource::{Access, Resource, check_glob, table_ref};
pub use run_context::{
    Outcome, Progress, RunContext, StepError, files, fill, log_name, placeholders, write_atomically,
};
pub use selection::{Selection, SelectionError};
pub use session::{Session, databases_needed, identities};
pub use step_id::{StepId, StepPattern};
pub use suggest::did_you_mean;
pub use trigger::Trigger;

/// The name of the group whose steps run only when selected by name.
pub const MANUAL_GROUP: &str = "manual";

/// The flow database: it keeps the run records, and is the database of a
/// step that names none.
pub const FLOW_DATABASE: &str = "flow";

/// Databases every flow has, embedded unless declared otherwise.
pub const DEFAULT_DATABASES: [&str; 2] = [FLOW_DATABASE, "api"];

/// The re-exports plugins use.
pub use {flow_db, inventory, tokio_util};
