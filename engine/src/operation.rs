//! The plugin interface: an operation describes itself, prepares (pure), and runs.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use crate::param::{ParamSpec, Params};
use crate::pipeline::Pipeline;
use crate::resource::{Access, Resource};
use crate::run_context::{Outcome, RunContext, StepError};
pub use crate::settings::Settings;

/// A boxed future, so that the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the middle segment of an operation's name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No middle segment: `minio:download`, `sh:run`.
    None,
    /// A fixed word: `pg:source:load`.
    Fixed(&'static str),
    /// Any declared database: `pg:flow:configure`, `sql:api:run`.
    Database,
}

/// An operation's name and parameter schema.
#[derive(Debug)]
pub struct OperationSpec {
    pub tool: &'static str,
    pub target: Target,
    pub operation: &'static str,
    pub summary: &'static str,
    pub params: &'static [ParamSpec],
}

impl OperationSpec {
    /// How the operation is written, with `<db>` for a database target.
    pub fn pattern(&self) -> String {
        match self.target {
            Target::None => format!("{}:{}", self.tool, self.operation),
            Target::Fixed(target) => format!("{}:{target}:{}", self.tool, self.operation),
            Target::Database => format!("{}:<db>:{}", self.tool, self.operation),
        }
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// What a step will touch, declared before anything runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
    pub accesses: Vec<(Access, Resource)>,
    /// Why the step runs every time, when what it reads cannot be known (a
    /// command that does not declare its reads): never skipped as unchanged.
    pub always: Option<String>,
    /// The parameters, typed (see [`Settings`]).
    pub settings: Settings,
}

impl Prepared {
    /// Prepared with the operation's typed parameters.
    pub fn with_settings(settings: impl Any + Send + Sync) -> Self {
        Self {
            settings: Settings::new(settings),
            ..Self::default()
        }
    }

    /// The operation's typed parameters (see [`Settings`]).
    #[must_use]
    pub fn settings(mut self, settings: impl Any + Send + Sync) -> Self {
        self.settings = Settings::new(settings);
        self
    }

    pub fn always_runs(mut self, reason: impl Into<String>) -> Self {
        self.always = Some(reason.into());
        self
    }

    pub fn creates(mut self, resource: Resource) -> Self {
        self.accesses.push((Access::Create, resource));
        self
    }

    pub fn writes(mut self, resource: Resource) -> Self {
        self.accesses.push((Access::Write, resource));
        self
    }

    pub fn reads(mut self, resource: Resource) -> Self {
        self.accesses.push((Access::Read, resource));
        self
    }
}

/// A problem `prepare` found with a step's parameters, beyond their types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The parameter at fault; `None` points at the step itself.
    pub param: Option<&'static str>,
    pub message: String,
    pub help: Option<String>,
}

/// What a step's `prepare` sees: its parameters, already checked against the
/// schema, and the database its operation targets (for `pg:<db>:...`).
#[derive(Debug)]
pub struct StepContext<'a> {
    pub params: &'a Params,
    pub target: Option<&'a str>,
}

impl StepContext<'_> {
    /// The database the operation targets (`pg:<db>:...`), the flow
    /// database when it targets none.
    pub fn target_database(&self) -> &str {
        self.target.unwrap_or(crate::FLOW_DATABASE)
    }
}

/// One operation of a tool. Plugins implement this and register it with
/// [`Registration`]; the engine never names a plugin.
pub trait Operation: Send + Sync + 'static {
    fn spec(&self) -> &'static OperationSpec;

    /// Checks what the schema cannot (parameters that exclude each other, say)
    /// and declares what the step reads and writes. Pure: no filesystem,
    /// network, environment or clock, so `flow check` is instant and safe.
    fn prepare(&self, step: &StepContext<'_>) -> Result<Prepared, Vec<Problem>>;

    /// The parameters of the `check` blocks this operation runs on the
    /// tables it writes, beside `table` (`pg:target:populate` runs them
    /// before it commits). None: it runs no check.
    fn check_params(&self) -> &'static [ParamSpec] {
        &[]
    }

    /// Whether the step runs the flow's `check` blocks on the tables it writes.
    fn runs_checks(&self) -> bool {
        !self.check_params().is_empty()
    }

    /// The units the step will run, in order, for `flow plan` (the SQL
    /// files of a transform, with why each comes where it does). May read
    /// the files under `base_dir`; nothing else.
    fn parts(&self, _params: &Params, _base_dir: &std::path::Path) -> Vec<String> {
        Vec::new()
    }

    /// Whether the step has a [`preview`](Operation::preview) (`flow diff`).
    fn previews(&self) -> bool {
        false
    }

    /// What a run of the step would change, found in transactions that are
    /// rolled back. `pipeline` is the step's flow: a preview may make again,
    /// in scratch space, what the step reads.
    fn preview<'a>(
        &'a self,
        context: &'a RunContext,
        _pipeline: &'a Pipeline,
    ) -> BoxFuture<'a, Result<Preview, StepError>> {
        unsupported(self.spec(), "a preview", context)
    }

    /// Whether the step can be [undone](Operation::undo) (`flow rollback`).
    fn undoes(&self) -> bool {
        false
    }

    /// Puts back what the step's last run replaced; says what it did.
    fn undo<'a>(&'a self, context: &'a RunContext) -> BoxFuture<'a, Result<String, StepError>> {
        unsupported(self.spec(), "an undo", context)
    }

    /// Does the work. Observes `context.cancel`; leaves nothing half-done
    /// behind (temporary names, transactions) when it fails or is cancelled.
    fn run<'a>(&'a self, _context: &'a RunContext) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let pattern = self.spec().pattern();
        Box::pin(async move {
            Err(StepError::message(
                format!("`{pattern}` cannot run in this version of flow"),
                Some("`flow check` and `flow plan` know it; its run phase is not built yet".into()),
            ))
        })
    }
}

/// What `flow diff` shows of a step: what a run would change, found without
/// changing anything.
#[derive(Debug, Clone)]
pub struct Preview {
    /// For people: the changes, and what would refuse or fail.
    pub text: String,
    /// For machines (`flow diff --json`).
    pub json: serde_json::Value,
    /// A run of the step would refuse or fail.
    pub would_fail: bool,
}

fn unsupported<'a, T: Send + 'a>(
    spec: &'static OperationSpec,
    what: &'static str,
    _context: &'a RunContext,
) -> BoxFuture<'a, Result<T, StepError>> {
    Box::pin(async move {
        Err(StepError::message(
            format!("`{}` has no {what}", spec.pattern()),
            None,
        ))
    })
}

/// How a plugin makes an operation known: `inventory::submit!(Registration(&MyOp));`
pub struct Registration(pub &'static dyn Operation);

inventory::collect!(Registration);

/// A hook a plugin runs when the binary starts, before anything else: it
/// may take the process over (`sh`'s command supervisor does) and give the
/// exit code to end with. `inventory::submit!(Startup(my_hook));`
pub struct Startup(pub fn() -> Option<std::process::ExitCode>);

inventory::collect!(Startup);

/// Runs the startup hooks of the plugins linked; the first that takes the
/// process over gives its exit code.
pub fn startup() -> Option<std::process::ExitCode> {
    inventory::iter::<Startup>
        .into_iter()
        .find_map(|hook| (hook.0)())
}
