//! `schedule` blocks: their trigger, what they run, and their jobs.

use std::collections::HashMap;

use flow_dsl::Span;
use flow_dsl::ast::{Block, Flow, Item, ValueKind};

use super::{
    Compiler,
    params::{block_param, duration, unknown},
    references::{StepIds, step_refs},
};
use crate::param::{ParamSpec, ParamType, Params};
use crate::pipeline::{Schedule, StepNode};
use crate::suggest::did_you_mean;
use crate::{CompileError, Trigger};

pub(super) const SCHEDULE_PARAMS: &[ParamSpec] = &[
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

/// The jobs of a schedule's `for_each`: each a set of named values. A list
/// gives one job per item (named `item`); named lists give one job per
/// combination, in the order written.
pub(super) fn fan_out(params: &Params) -> Vec<Vec<(String, String)>> {
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

impl Compiler<'_> {
    pub(super) fn schedules(&mut self, flow: &Flow, steps: &[StepNode]) -> Vec<Schedule> {
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
            self.check_schedule(block, steps, &ids);
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

    /// What the parameter types cannot say of a schedule: one trigger, a
    /// valid cron expression and time zone, a known environment, and groups
    /// and steps that exist.
    fn check_schedule(&mut self, block: &Block, steps: &[StepNode], ids: &StepIds) {
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
                    "use a name of the tz database, like `\"UTC\"` or `\"Europe/Berlin\"`".into(),
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
                        self.match_steps(item, steps, ids);
                    }
                }
            }
        }
    }
}
