//! From syntax tree to [`Pipeline`]: resolve, check, prepare, link.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use flow_dsl::Span;
use flow_dsl::ast::{Binding, Block, Flow, Ident, Item, Param, Step, Value, ValueKind};
use miette::LabeledSpan;
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::operation::{Problem, StepContext, Target};
use crate::param::{self, Mismatch, ParamSpec, ParamType, Params, Scope};
use crate::pipeline::{Check, Declaration, EdgeReason, Node, Pipeline, Schedule, StepNode};
use crate::resource::{Access, Resource, ResourceIndex};
use crate::step_id::{StepId, StepPattern};
use crate::suggest::did_you_mean;
use crate::{CompileError, DEFAULT_DATABASES, MANUAL_GROUP, Registry, Trigger};

/// Parameters every step accepts, whatever its operation.
const STEP_PARAMS: &[ParamSpec] = &[
    ParamSpec::optional("group", ParamType::Name, "the group the step belongs to"),
    ParamSpec::optional("after", ParamType::Steps, "steps this one waits for"),
    ParamSpec::optional(
        "retries",
        ParamType::Count,
        "retries after a transient error",
    ),
    ParamSpec::optional(
        "timeout",
        ParamType::Duration,
        "how long one attempt may take",
    ),
];

const SCHEDULE_PARAMS: &[ParamSpec] = &[
    ParamSpec::optional("cron", ParamType::String, "a five-field cron expression"),
    ParamSpec::optional("every", ParamType::Duration, "a fixed interval"),
    ParamSpec::optional("timezone", ParamType::String, "the time zone of `cron`"),
    ParamSpec::required(
        "run",
        ParamType::GroupsOrSteps,
        "the groups or steps to run",
    ),
    ParamSpec::optional("env", ParamType::Name, "the environment to run in"),
    ParamSpec::optional(
        "missed",
        ParamType::OneOf(&["skip", "latest", "all"]),
        "what to do with fires missed while down",
    ),
    ParamSpec::optional(
        "max_missed",
        ParamType::Count,
        "with `missed = all`, at most this many",
    ),
    ParamSpec::optional(
        "for_each",
        ParamType::Fanout,
        "one job per item, each run with `item` set; or named lists, one job per combination, each run with every name set",
    ),
];

const CHECK_PARAMS: &[ParamSpec] = &[
    ParamSpec::required("table", ParamType::Table, "the table to check"),
    ParamSpec::optional("min_rows", ParamType::Count, "at least this many rows"),
    ParamSpec::optional("max_rows", ParamType::Count, "at most this many rows"),
    ParamSpec::optional("not_null", ParamType::Names, "columns without nulls"),
    ParamSpec::optional(
        "unique",
        ParamType::Names,
        "columns whose values are unique together",
    ),
    ParamSpec::optional(
        "valid_geometry",
        ParamType::Names,
        "geometry columns that must be valid",
    ),
    ParamSpec::optional(
        "sql",
        ParamType::String,
        "a query returning the failing rows",
    ),
];

/// Compiles a parsed flow. `default_name` names a flow without a `flow` line
/// (the file's stem). Every error found is returned, not only the first.
pub fn compile(
    flow: &Flow,
    registry: &Registry,
    default_name: &str,
) -> Result<Pipeline, Vec<CompileError>> {
    let mut compiler = Compiler {
        registry,
        errors: Vec::new(),
        name: default_name.to_owned(),
        groups: Vec::new(),
        databases: BTreeMap::new(),
        storages: BTreeMap::new(),
        environments: BTreeMap::new(),
    };
    compiler.declarations(flow);
    let steps = compiler.steps(flow);
    let afters = compiler.afters(flow, &steps);
    let schedules = compiler.schedules(flow, &steps);
    let checks = compiler.checks(flow);
    compiler.checks_run(flow, &checks, &steps);
    if !compiler.errors.is_empty() {
        let mut errors = compiler.errors;
        errors.sort_by_key(|error| {
            miette::Diagnostic::labels(error)
                .and_then(|mut labels| labels.next())
                .map_or(0, |label| label.offset())
        });
        return Err(errors);
    }
    let (graph, step_nodes, external) = link(&compiler.groups, &steps, &afters);
    let order = match topological_order(&graph, &steps) {
        Ok(order) => order,
        Err(cycle) => return Err(vec![cycle_error(&graph, &steps, &compiler.groups, &cycle)]),
    };
    Ok(Pipeline {
        name: compiler.name,
        groups: compiler.groups.into_iter().map(|g| g.name).collect(),
        databases: compiler.databases,
        storages: compiler.storages,
        environments: compiler.environments,
        steps,
        schedules,
        checks: std::sync::Arc::new(checks),
        graph,
        order,
        step_nodes,
        external,
    })
}

struct Compiler<'r> {
    registry: &'r Registry,
    errors: Vec<CompileError>,
    name: String,
    groups: Vec<Ident>,
    databases: BTreeMap<String, Declaration>,
    storages: BTreeMap<String, Declaration>,
    environments: BTreeMap<String, BTreeMap<String, Declaration>>,
}

impl Compiler<'_> {
    fn declarations(&mut self, flow: &Flow) {
        let mut groups_span: Option<Span> = None;
        let mut env_spans: BTreeMap<String, Span> = BTreeMap::new();
        for item in &flow.items {
            match item {
                Item::Name(name) => self.name.clone_from(&name.name),
                Item::Database(binding) => self.declare("database", binding),
                Item::Storage(binding) => self.declare("storage", binding),
                Item::Groups(groups) => {
                    if let Some(first) = groups_span {
                        self.errors.push(CompileError::DuplicateDeclaration {
                            kind: "the group order",
                            name: "groups".into(),
                            span: groups.span.into(),
                            first: first.into(),
                        });
                        continue;
                    }
                    groups_span = Some(groups.span);
                    for group in &groups.groups {
                        if let Some(first) = self.groups.iter().find(|g| g.name == group.name) {
                            self.errors.push(CompileError::DuplicateDeclaration {
                                kind: "group",
                                name: group.name.clone(),
                                span: group.span.into(),
                                first: first.span.into(),
                            });
                        } else if group.name == MANUAL_GROUP {
                            self.errors.push(CompileError::InvalidValue {
                                message: "`manual` cannot be in the group order".into(),
                                span: group.span.into(),
                                help: Some("steps in `group = manual` run only when selected by name, outside the order".into()),
                            });
                        } else {
                            self.groups.push(group.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        for item in &flow.items {
            let Item::Env(env) = item else { continue };
            if let Some(first) = env_spans.insert(env.name.name.clone(), env.name.span) {
                self.errors.push(CompileError::DuplicateDeclaration {
                    kind: "environment",
                    name: env.name.name.clone(),
                    span: env.name.span.into(),
                    first: first.into(),
                });
                continue;
            }
            let mut overrides = BTreeMap::new();
            for (kind, bindings) in [("database", &env.databases), ("storage", &env.storages)] {
                for binding in bindings {
                    let known = if kind == "database" {
                        self.database_names()
                    } else {
                        self.storage_names()
                    };
                    if !known.contains(&binding.name.as_str()) {
                        self.errors.push(unknown(kind, &binding.name, &known));
                    }
                    self.check_connection(kind, binding);
                    overrides.insert(
                        binding.name.name.clone(),
                        Declaration {
                            value: binding.value.clone(),
                            span: binding.span,
                        },
                    );
                }
            }
            self.environments.insert(env.name.name.clone(), overrides);
        }
    }

    fn declare(&mut self, kind: &'static str, binding: &Binding) {
        self.check_connection(kind, binding);
        let table = if kind == "database" {
            &mut self.databases
        } else {
            &mut self.storages
        };
        let declaration = Declaration {
            value: binding.value.clone(),
            span: binding.span,
        };
        if let Some(first) = table.insert(binding.name.name.clone(), declaration) {
            self.errors.push(CompileError::DuplicateDeclaration {
                kind,
                name: binding.name.name.clone(),
                span: binding.name.span.into(),
                first: first.span.into(),
            });
        }
    }

    /// A connection is a string, or `env("NAME")` with an optional string default.
    fn check_connection(&mut self, kind: &str, binding: &Binding) {
        let value = &binding.value;
        let literal = match &value.kind {
            ValueKind::String(text) => Some((text.as_str(), value.span)),
            ValueKind::Env { default: None, .. } => None,
            ValueKind::Env {
                default: Some(default),
                ..
            } => match &default.kind {
                ValueKind::String(text) => Some((text.as_str(), default.span)),
                _ => {
                    self.errors
                        .push(wrong_type("default", "a string", default, None));
                    None
                }
            },
            _ => {
                self.errors.push(wrong_type(
                    &binding.name.name,
                    "a string or `env(\"NAME\", \"default\")`",
                    value,
                    None,
                ));
                None
            }
        };
        let Some((text, span)) = literal else { return };
        let valid = if kind == "database" {
            text == "embedded"
                || text.starts_with("postgres://")
                || text.starts_with("postgresql://")
        } else {
            text.starts_with("s3://") || text.starts_with("file://")
        };
        if !valid {
            let help = if kind == "database" {
                "a database is `\"embedded\"` (a local cluster flow starts itself) or a URL like `\"postgres://user@host:5432/name\"`"
            } else {
                "a storage is `\"s3://bucket/prefix\"` or a local folder `\"file://path\"`"
            };
            self.errors.push(CompileError::InvalidValue {
                message: format!("`{text}` is not a {kind} location"),
                span: span.into(),
                help: Some(help.into()),
            });
        }
    }

    fn database_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.databases.keys().map(String::as_str).collect();
        for default in DEFAULT_DATABASES {
            if !names.contains(&default) {
                names.push(default);
            }
        }
        names.sort_unstable();
        names
    }

    fn storage_names(&self) -> Vec<&str> {
        self.storages.keys().map(String::as_str).collect()
    }

    fn group_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.groups.iter().map(|g| g.as_str()).collect();
        names.push(MANUAL_GROUP);
        names
    }

    fn steps(&mut self, flow: &Flow) -> Vec<StepNode> {
        let mut steps: Vec<StepNode> = Vec::new();
        let mut seen: HashMap<String, (Span, String)> = HashMap::new();
        for item in &flow.items {
            let Item::Step(step) = item else { continue };
            let Some(node) = self.step(step) else {
                continue;
            };
            let id = node.id.to_string();
            if let Some((first, _)) = seen.get(&id) {
                self.errors.push(CompileError::DuplicateStep {
                    triple: node.id.triple(),
                    id,
                    span: step.operation_span.into(),
                    first: (*first).into(),
                });
                continue;
            }
            seen.insert(id.clone(), (step.operation_span, id));
            steps.push(node);
        }
        steps
    }

    fn step(&mut self, step: &Step) -> Option<StepNode> {
        let segments: Vec<&str> = step.operation.iter().map(Ident::as_str).collect();
        let (tool, target, operation) = match segments.as_slice() {
            [tool, operation] => (*tool, None, *operation),
            [tool, target, operation] => (*tool, Some(*target), *operation),
            _ => {
                self.errors.push(CompileError::OperationShape {
                    text: step.operation_text(),
                    span: step.operation_span.into(),
                });
                return None;
            }
        };
        let databases = self.database_names();
        if !self.registry.has_tool(tool) {
            let tools: Vec<&str> = self.registry.tools().collect();
            self.errors.push(CompileError::UnknownTool {
                tool: tool.to_owned(),
                span: step.operation[0].span.into(),
                help: did_you_mean(tool, "tools", tools.iter().copied()),
            });
            return None;
        }
        let Some(op) = self.registry.lookup(tool, target, operation) else {
            let spellings = self.registry.spellings(&databases);
            let text = step.operation_text();
            let mut same_tool: Vec<&str> = spellings
                .iter()
                .map(String::as_str)
                .filter(|s| s.starts_with(&format!("{tool}:")))
                .collect();
            same_tool.dedup();
            self.errors.push(CompileError::UnknownOperation {
                help: did_you_mean(&text, "operations", same_tool.iter().copied()),
                operation: text,
                tool: tool.to_owned(),
                span: step.operation_span.into(),
            });
            return None;
        };
        let spec = op.spec();
        if spec.target == Target::Database
            && let Some(db) = step.operation.get(1)
            && !databases.contains(&db.as_str())
        {
            self.errors.push(unknown("database", db, &databases));
            return None;
        }
        let errors_before = self.errors.len();
        let params = self.params(
            &spec.pattern(),
            &step.params,
            &[spec.params, STEP_PARAMS],
            step.operation_span,
        );
        let group = step.param("group").and_then(|p| p.value.as_ident());
        if let Some(group) = group {
            let names = self.group_names();
            if !names.contains(&group.as_str()) {
                let mut error = unknown("group", group, &names);
                if self.groups.is_empty()
                    && let CompileError::UnknownGroup { help, .. } = &mut error
                {
                    *help = "declare the order of groups first: `groups download -> seed`".into();
                }
                self.errors.push(error);
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let context = StepContext {
            params: &params,
            target: target.filter(|_| spec.target == Target::Database),
        };
        let prepared = match op.prepare(&context) {
            Ok(prepared) => prepared,
            Err(problems) => {
                for problem in problems {
                    self.errors.push(problem_error(step, problem));
                }
                return None;
            }
        };
        let id = StepId {
            tool: tool.to_owned(),
            target: target.map(str::to_owned),
            operation: operation.to_owned(),
            name: step.name.as_ref().map(|n| n.name.clone()),
        };
        Some(StepNode {
            key: id.to_string(),
            signature: format!("{id}\n{}", params.canonical()),
            id,
            group: group.map(|g| g.name.clone()),
            operation: op,
            retries: params.count("retries"),
            timeout: step.param("timeout").and_then(|p| duration(&p.value)),
            params: std::sync::Arc::new(params),
            prepared,
            span: step.span,
            header: step.operation_span,
        })
    }

    /// Checks parameters against their schemas: unknown, duplicated, missing,
    /// mistyped. `schemas` are searched in order.
    fn params(
        &mut self,
        owner: &str,
        given: &[Param],
        schemas: &[&[ParamSpec]],
        header: Span,
    ) -> Params {
        let databases = self.database_names();
        let storages = self.storage_names();
        let scope = Scope {
            databases: &databases,
            storages: &storages,
        };
        let mut errors = Vec::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let specs = || schemas.iter().flat_map(|s| s.iter());
        for param in given {
            let key = param.key.as_str();
            if let Some(first) = seen.insert(key, param.key.span) {
                errors.push(CompileError::DuplicateParameter {
                    name: key.to_owned(),
                    span: param.key.span.into(),
                    first: first.into(),
                });
                continue;
            }
            let Some(spec) = specs().find(|s| s.name == key) else {
                let names: Vec<&str> = specs().map(|s| s.name).collect();
                errors.push(CompileError::UnknownParameter {
                    name: key.to_owned(),
                    operation: owner.to_owned(),
                    span: param.key.span.into(),
                    help: did_you_mean(key, "parameters", names.iter().copied()),
                });
                continue;
            };
            match param::check(&param.value, spec.ty, &scope) {
                Ok(()) => {}
                Err(Mismatch::Type) => errors.push(wrong_type(
                    key,
                    &spec.ty.describe(),
                    &param.value,
                    env_help(&param.value),
                )),
                Err(Mismatch::Value {
                    message,
                    help,
                    span,
                }) => errors.push(CompileError::InvalidValue {
                    message: format!("`{key}`: {message}"),
                    span: span.into(),
                    help,
                }),
                Err(Mismatch::Unknown {
                    what,
                    name,
                    help,
                    span,
                }) => {
                    let ident = Ident { name, span };
                    let mut error = unknown(what, &ident, &[]);
                    match &mut error {
                        CompileError::UnknownDatabase { help: h, .. }
                        | CompileError::UnknownStorage { help: h, .. } => *h = help,
                        _ => {}
                    }
                    errors.push(error);
                }
            }
        }
        for spec in specs().filter(|s| s.required) {
            if !seen.contains_key(spec.name) {
                errors.push(CompileError::MissingParameter {
                    name: spec.name.to_owned(),
                    operation: owner.to_owned(),
                    span: header.into(),
                    help: format!(
                        "add `{} = ...`: {}, {}",
                        spec.name,
                        spec.ty.describe(),
                        spec.doc
                    ),
                });
            }
        }
        self.errors.extend(errors);
        Params::new(given)
    }

    /// Resolves every step's `after` to step indexes.
    fn afters(&mut self, flow: &Flow, steps: &[StepNode]) -> Vec<Vec<usize>> {
        let mut afters = vec![Vec::new(); steps.len()];
        let ids = StepIds::new(steps);
        let by_span: HashMap<usize, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span.start, i))
            .collect();
        for item in &flow.items {
            let Item::Step(step) = item else { continue };
            let Some(&index) = by_span.get(&step.span.start) else {
                continue;
            };
            let Some(after) = step.param("after") else {
                continue;
            };
            let ValueKind::List(items) = &after.value.kind else {
                continue;
            };
            for item in items {
                if let Some(matched) = self.match_steps(item, steps, &ids) {
                    afters[index].extend(matched);
                }
            }
        }
        afters
    }

    /// The steps a reference in `after` or `run` names; reports when it names none.
    fn match_steps(
        &mut self,
        item: &Value,
        steps: &[StepNode],
        ids: &StepIds,
    ) -> Option<Vec<usize>> {
        let text = match &item.kind {
            ValueKind::StepRef { operation, name } => {
                let mut text = flow_dsl::ast::join_segments(operation);
                if let Some(name) = name {
                    text.push('/');
                    text.push_str(&name.name);
                }
                text
            }
            ValueKind::String(text) => text.clone(),
            _ => return None,
        };
        let pattern = match StepPattern::parse(&text) {
            Ok(pattern) => pattern,
            Err(message) => {
                self.errors.push(CompileError::InvalidValue {
                    message,
                    span: item.span.into(),
                    help: None,
                });
                return None;
            }
        };
        let matched: Vec<usize> = if pattern.is_exact() {
            ids.by_text
                .get(pattern.text.as_str())
                .cloned()
                .unwrap_or_default()
        } else {
            (0..steps.len())
                .filter(|&i| pattern.matches(&steps[i].id))
                .collect()
        };
        if matched.is_empty() {
            let ids: Vec<String> = steps.iter().map(|s| s.id.to_string()).collect();
            self.errors.push(CompileError::UnknownStep {
                help: did_you_mean(&text, "steps", ids.iter().map(String::as_str)),
                pattern: text,
                span: item.span.into(),
            });
            return None;
        }
        Some(matched)
    }

    fn schedules(&mut self, flow: &Flow, steps: &[StepNode]) -> Vec<Schedule> {
        let mut schedules = Vec::new();
        if !flow
            .items
            .iter()
            .any(|item| matches!(item, Item::Schedule(_)))
        {
            return schedules;
        }
        let ids = StepIds::new(steps);
        let mut seen: HashMap<String, Span> = HashMap::new();
        for item in &flow.items {
            let Item::Schedule(block) = item else {
                continue;
            };
            if self.duplicate_block("schedule", block, &mut seen) {
                continue;
            }
            let errors_before = self.errors.len();
            let params = self.params(
                &format!("schedule {}", block.name.name),
                &block.params,
                &[SCHEDULE_PARAMS],
                block.name.span,
            );
            let trigger = (block_param(block, "cron"), block_param(block, "every"));
            match trigger {
                (None, None) | (Some(_), Some(_)) => self.errors.push(CompileError::InvalidValue {
                    message: format!("schedule `{}` needs exactly one of `cron` and `every`", block.name.name),
                    span: block.name.span.into(),
                    help: Some("`cron = \"0 2 * * *\"` fires at 02:00 every day; `every = 15m` fires every 15 minutes".into()),
                }),
                (Some(cron), None) => {
                    if let ValueKind::String(text) = &cron.value.kind
                        && let Err(message) = Trigger::parse(Some(text), None, "UTC")
                    {
                        self.errors.push(CompileError::InvalidValue {
                            message: format!("`{text}` is not a cron expression: {message}"),
                            span: cron.value.span.into(),
                            help: Some("five fields: minute hour day-of-month month day-of-week, like `\"0 2 * * *\"`".into()),
                        });
                    }
                }
                (None, Some(_)) => {}
            }
            if let Some(zone) = block_param(block, "timezone")
                && let ValueKind::String(text) = &zone.value.kind
                && jiff::tz::TimeZone::get(text).is_err()
            {
                self.errors.push(CompileError::InvalidValue {
                    message: format!("unknown time zone `{text}`"),
                    span: zone.value.span.into(),
                    help: Some(
                        "use a name of the tz database, like `\"UTC\"` or `\"Europe/Berlin\"`"
                            .into(),
                    ),
                });
            }
            if let Some(env) = block_param(block, "env").and_then(|p| p.value.as_ident())
                && !self.environments.contains_key(&env.name)
            {
                let names: Vec<&str> = self.environments.keys().map(String::as_str).collect();
                self.errors.push(CompileError::InvalidValue {
                    message: format!("unknown environment `{}`", env.name),
                    span: env.span.into(),
                    help: Some(did_you_mean(
                        &env.name,
                        "environments",
                        names.iter().copied(),
                    )),
                });
            }
            if let Some(ValueKind::List(items)) = block_param(block, "run").map(|p| &p.value.kind) {
                for item in items {
                    match item.as_ident() {
                        Some(group) => {
                            let names = self.group_names();
                            if !names.contains(&group.as_str()) {
                                self.errors.push(unknown("group", group, &names));
                            }
                        }
                        None => {
                            self.match_steps(item, steps, &ids);
                        }
                    }
                }
            }
            if self.errors.len() > errors_before {
                continue;
            }
            schedules.push(Schedule {
                name: block.name.name.clone(),
                cron: params.str("cron").map(str::to_owned),
                every: block_param(block, "every").and_then(|p| duration(&p.value)),
                timezone: params.str("timezone").unwrap_or("UTC").to_owned(),
                run: params
                    .list("run")
                    .into_iter()
                    .map(str::to_owned)
                    .chain(step_refs(block))
                    .collect(),
                env: params.str("env").map(str::to_owned),
                missed: params
                    .str("missed")
                    .and_then(crate::pipeline::Missed::parse)
                    .unwrap_or(crate::pipeline::Missed::Latest),
                max_missed: params.count("max_missed").unwrap_or(10),
                items: fan_out(&params),
                span: block.span,
            });
        }
        schedules
    }

    fn checks(&mut self, flow: &Flow) -> Vec<Check> {
        let mut checks = Vec::new();
        let mut seen: HashMap<String, Span> = HashMap::new();
        for item in &flow.items {
            let Item::Check(block) = item else { continue };
            if self.duplicate_block("check", block, &mut seen) {
                continue;
            }
            let errors_before = self.errors.len();
            let params = self.params(
                &format!("check {}", block.name.name),
                &block.params,
                &[CHECK_PARAMS],
                block.name.span,
            );
            if self.errors.len() > errors_before {
                continue;
            }
            let Some((path, _)) = params.path("table") else {
                continue;
            };
            let [database, schema, table] = path.as_slice() else {
                continue;
            };
            checks.push(Check {
                name: block.name.name.clone(),
                database: (*database).to_owned(),
                schema: (*schema).to_owned(),
                table: (*table).to_owned(),
                params,
                span: block.span,
            });
        }
        checks
    }

    /// A check runs inside a step that runs checks (`pg:target:populate`)
    /// and writes its table; one on a table no such step writes would never run.
    fn checks_run(&mut self, flow: &Flow, checks: &[Check], steps: &[StepNode]) {
        for check in checks {
            let checked: Vec<String> = steps
                .iter()
                .filter(|step| step.operation.runs_checks())
                .flat_map(|step| &step.prepared.accesses)
                .filter_map(|(access, resource)| match resource {
                    Resource::Table {
                        database,
                        schema,
                        table: Some(name),
                    } if *access != Access::Read => Some(format!("{database}.{schema}.{name}")),
                    _ => None,
                })
                .collect();
            let wanted = format!("{}.{}.{}", check.database, check.schema, check.table);
            if checked.contains(&wanted) {
                continue;
            }
            let span = flow
                .items
                .iter()
                .find_map(|item| match item {
                    Item::Check(block) if block.name.name == check.name => Some(block.name.span),
                    _ => None,
                })
                .unwrap_or(check.span);
            self.errors.push(CompileError::CheckNeverRuns {
                name: check.name.clone(),
                help: did_you_mean(
                    &wanted,
                    "tables populate steps write",
                    checked.iter().map(String::as_str),
                ),
                table: wanted,
                span: span.into(),
            });
        }
    }

    fn duplicate_block(
        &mut self,
        kind: &'static str,
        block: &Block,
        seen: &mut HashMap<String, Span>,
    ) -> bool {
        match seen.insert(block.name.name.clone(), block.name.span) {
            Some(first) => {
                self.errors.push(CompileError::DuplicateDeclaration {
                    kind,
                    name: block.name.name.clone(),
                    span: block.name.span.into(),
                    first: first.into(),
                });
                true
            }
            None => false,
        }
    }
}

/// Steps by full id and, for named steps, by operation too: what an exact
/// pattern matches, without scanning every step.
struct StepIds {
    by_text: HashMap<String, Vec<usize>>,
}

impl StepIds {
    fn new(steps: &[StepNode]) -> Self {
        let mut by_text: HashMap<String, Vec<usize>> = HashMap::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            by_text.entry(step.id.to_string()).or_default().push(i);
            if step.id.name.is_some() {
                by_text.entry(step.id.triple()).or_default().push(i);
            }
        }
        Self { by_text }
    }
}

fn block_param<'a>(block: &'a Block, key: &str) -> Option<&'a Param> {
    block.params.iter().find(|p| p.key.name == key)
}

/// The step references of a schedule's `run`, as text.
fn step_refs(block: &Block) -> Vec<String> {
    let Some(ValueKind::List(items)) = block_param(block, "run").map(|p| &p.value.kind) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match &item.kind {
            ValueKind::StepRef { operation, name } => Some(match name {
                Some(name) => format!("{}/{}", flow_dsl::ast::join_segments(operation), name.name),
                None => flow_dsl::ast::join_segments(operation),
            }),
            _ => None,
        })
        .collect()
}

/// The jobs of a schedule's `for_each`: each a set of named values. A list
/// gives one job per item (named `item`); named lists give one job per
/// combination, in the order written.
fn fan_out(params: &Params) -> Vec<Vec<(String, String)>> {
    let named = params.map("for_each");
    if named.is_empty() {
        return params
            .list("for_each")
            .into_iter()
            .map(|item| vec![("item".to_owned(), item.to_owned())])
            .collect();
    }
    let mut jobs: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (name, values) in named {
        jobs = jobs
            .into_iter()
            .flat_map(|job| {
                values.iter().map(move |value| {
                    let mut next = job.clone();
                    next.push((name.to_owned(), (*value).to_owned()));
                    next
                })
            })
            .collect();
    }
    jobs
}

fn duration(value: &Value) -> Option<Duration> {
    match value.kind {
        ValueKind::Duration { amount, unit } => {
            Some(Duration::from_millis(amount.saturating_mul(unit.millis())))
        }
        _ => None,
    }
}

fn env_help(value: &Value) -> Option<String> {
    matches!(value.kind, ValueKind::Env { .. }).then(|| {
        "`env(...)` is for `database` and `storage` declarations; steps refer to those by name"
            .into()
    })
}

fn wrong_type(name: &str, expected: &str, value: &Value, help: Option<String>) -> CompileError {
    let help = help.or_else(|| match (&value.kind, expected) {
        (ValueKind::Reference { .. }, e) if e.contains("in quotes") || e == "a string" => {
            Some("put the value in double quotes".into())
        }
        (ValueKind::String(_), e) if e.contains("name") => {
            Some("names are written without quotes".into())
        }
        (ValueKind::StepRef { .. }, _) => Some("step references go in `after = [...]`".into()),
        _ => None,
    });
    let found = match &value.kind {
        ValueKind::Number(text) => format!("`{text}`"),
        _ => value.describe().to_owned(),
    };
    CompileError::WrongType {
        name: name.to_owned(),
        expected: expected.to_owned(),
        found,
        span: value.span.into(),
        help,
    }
}

fn unknown(what: &str, name: &Ident, known: &[&str]) -> CompileError {
    let help = did_you_mean(&name.name, &format!("{what}s"), known.iter().copied());
    let (name, span) = (name.name.clone(), name.span.into());
    match what {
        "database" => CompileError::UnknownDatabase { name, span, help },
        "storage" => CompileError::UnknownStorage { name, span, help },
        _ => CompileError::UnknownGroup { name, span, help },
    }
}

fn problem_error(step: &Step, problem: Problem) -> CompileError {
    let span = problem
        .param
        .and_then(|key| step.param(key))
        .map_or(step.operation_span, |p| p.value.span);
    CompileError::InvalidValue {
        message: problem.message,
        span: span.into(),
        help: problem.help,
    }
}

/// Builds the DAG: group barriers, `after`, and resources. Also says, for
/// each step, whether it reads a database resource that no step of the flow
/// creates or writes (so that its input can change unseen).
fn link(
    groups: &[Ident],
    steps: &[StepNode],
    afters: &[Vec<usize>],
) -> (
    DiGraph<Node, EdgeReason>,
    Vec<NodeIndex>,
    Vec<Option<String>>,
) {
    let mut graph = DiGraph::with_capacity(steps.len() + groups.len(), steps.len() * 3);
    let step_nodes: Vec<NodeIndex> = (0..steps.len())
        .map(|i| graph.add_node(Node::Step(i)))
        .collect();
    let group_nodes: Vec<NodeIndex> = (0..groups.len())
        .map(|k| graph.add_node(Node::GroupDone(k)))
        .collect();
    let rank: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(k, g)| (g.as_str(), k))
        .collect();
    let rank_of = |step: &StepNode| step.group.as_deref().and_then(|g| rank.get(g).copied());
    let mut seen: HashSet<(NodeIndex, NodeIndex)> = HashSet::new();
    let mut add = |graph: &mut DiGraph<Node, EdgeReason>,
                   from: NodeIndex,
                   to: NodeIndex,
                   reason: EdgeReason| {
        if seen.insert((from, to)) {
            graph.add_edge(from, to, reason);
        }
    };
    for k in 1..group_nodes.len() {
        add(
            &mut graph,
            group_nodes[k - 1],
            group_nodes[k],
            EdgeReason::Group,
        );
    }
    for (i, step) in steps.iter().enumerate() {
        if let Some(k) = rank_of(step) {
            add(&mut graph, step_nodes[i], group_nodes[k], EdgeReason::Group);
            if k > 0 {
                add(
                    &mut graph,
                    group_nodes[k - 1],
                    step_nodes[i],
                    EdgeReason::Group,
                );
            }
        }
    }
    for (i, after) in afters.iter().enumerate() {
        for &j in after {
            add(&mut graph, step_nodes[j], step_nodes[i], EdgeReason::After);
        }
    }
    let mut index = ResourceIndex::default();
    for (i, step) in steps.iter().enumerate() {
        for (access, resource) in &step.prepared.accesses {
            index.insert(i, *access, resource);
        }
    }
    let mut external: Vec<Option<String>> =
        steps.iter().map(|s| s.prepared.always.clone()).collect();
    for (i, step) in steps.iter().enumerate() {
        let mine = rank_of(step);
        for (access, resource) in &step.prepared.accesses {
            if *access == Access::Read && !matches!(resource, Resource::File { .. }) {
                let mut written = false;
                index.upstream(i, *access, resource, |_, _, _| written = true);
                if !written && external[i].is_none() {
                    external[i] = Some(match resource {
                        Resource::Objects { .. } => {
                            format!("it reads {resource}, which can change outside the flow")
                        }
                        _ => format!("it reads {resource}, which no step of this flow writes"),
                    });
                }
            }
            let mut found = Vec::new();
            index.upstream(i, *access, resource, |j, upstream, theirs| {
                found.push((j, upstream, theirs))
            });
            found.sort_unstable_by_key(|(j, upstream, _)| (*j, *upstream));
            for (j, upstream, theirs) in found {
                // A step reads what earlier groups wrote, not what later ones will.
                let later = matches!((rank_of(&steps[j]), mine), (Some(theirs), Some(mine)) if theirs > mine);
                if !later {
                    let reason = EdgeReason::Resource {
                        upstream,
                        downstream: *access,
                        resource: theirs.clone(),
                    };
                    add(&mut graph, step_nodes[j], step_nodes[i], reason);
                }
            }
        }
    }
    (graph, step_nodes, external)
}

/// Kahn's algorithm with ties broken by step id (barriers after steps); on a
/// cycle, returns the nodes of one cycle in dependency order.
fn topological_order(
    graph: &DiGraph<Node, EdgeReason>,
    steps: &[StepNode],
) -> Result<Vec<NodeIndex>, Vec<NodeIndex>> {
    let mut by_id: Vec<usize> = (0..steps.len()).collect();
    by_id.sort_by(|&a, &b| steps[a].id.cmp(&steps[b].id));
    let mut rank = vec![0usize; steps.len()];
    for (position, &step) in by_id.iter().enumerate() {
        rank[step] = position;
    }
    let key = |node: NodeIndex| match graph[node] {
        Node::Step(i) => (0, rank[i]),
        Node::GroupDone(k) => (1, k),
    };
    let mut indegree: Vec<usize> = graph
        .node_indices()
        .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<((u8, usize), NodeIndex)>> = graph
        .node_indices()
        .filter(|n| indegree[n.index()] == 0)
        .map(|n| Reverse((key(n), n)))
        .collect();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(Reverse((_, node))) = ready.pop() {
        order.push(node);
        for next in graph.neighbors_directed(node, Direction::Outgoing) {
            indegree[next.index()] -= 1;
            if indegree[next.index()] == 0 {
                ready.push(Reverse((key(next), next)));
            }
        }
    }
    if order.len() == graph.node_count() {
        return Ok(order);
    }
    // Every node left has a predecessor left: walk back until a node repeats.
    let Some(start) = graph.node_indices().find(|n| indegree[n.index()] > 0) else {
        return Ok(order);
    };
    let mut path = vec![start];
    let mut position: HashMap<NodeIndex, usize> = HashMap::from([(start, 0)]);
    let mut node = start;
    loop {
        let Some(previous) = graph
            .neighbors_directed(node, Direction::Incoming)
            .filter(|p| indegree[p.index()] > 0)
            .min_by_key(|&p| key(p))
        else {
            return Err(path);
        };
        if let Some(&at) = position.get(&previous) {
            let mut cycle: Vec<NodeIndex> = path[at..].to_vec();
            cycle.reverse();
            // Start the cycle at a step, for a readable message.
            if let Some(first) = cycle
                .iter()
                .position(|n| matches!(graph[*n], Node::Step(_)))
            {
                cycle.rotate_left(first);
            }
            return Err(cycle);
        }
        position.insert(previous, path.len());
        path.push(previous);
        node = previous;
    }
}

fn cycle_error(
    graph: &DiGraph<Node, EdgeReason>,
    steps: &[StepNode],
    groups: &[Ident],
    cycle: &[NodeIndex],
) -> CompileError {
    let name = |node: NodeIndex| match graph[node] {
        Node::Step(i) => format!("`{}`", steps[i].id),
        Node::GroupDone(k) => format!("(group `{}` done)", groups[k].name),
    };
    let mut path: Vec<String> = cycle.iter().map(|&n| name(n)).collect();
    if let Some(first) = path.first().cloned() {
        path.push(first);
    }
    let mut labels = Vec::new();
    for (position, &node) in cycle.iter().enumerate() {
        let Node::Step(i) = graph[node] else { continue };
        let previous = cycle[(position + cycle.len() - 1) % cycle.len()];
        let reason = graph
            .find_edge(previous, node)
            .map(|e| graph[e].describe())
            .unwrap_or_default();
        let text = format!("waits for {}: {reason}", name(previous));
        labels.push(LabeledSpan::new_with_span(Some(text), steps[i].header));
    }
    CompileError::Cycle {
        path: path.join(" → "),
        labels,
    }
}
