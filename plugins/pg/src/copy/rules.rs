//! What a copy is asked to do to the data: masks per column, tables
//! skipped, filtered or sampled, read from the step's parameters.

use std::collections::{BTreeMap, BTreeSet};

use flow_dsl::ast::{Value, ValueKind};
use flow_engine::{Params, Problem};

/// How one column's values are masked on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    Keep,
    Null,
    /// A keyed hash of the value (the salt from the environment), in the
    /// column's own type: the same value gives the same hash everywhere, so
    /// joins on hashed keys still match.
    Hash,
    Fixed(String),
    Fake(Fake),
}

/// Plausible values made from a keyed hash of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fake {
    Email,
    Name,
    Phone,
}

impl Rule {
    pub fn describe(&self) -> String {
        match self {
            Rule::Keep => "keep".into(),
            Rule::Null => "null".into(),
            Rule::Hash => "hash".into(),
            Rule::Fixed(value) => format!("fixed {value:?}"),
            Rule::Fake(fake) => format!(
                "fake {}",
                match fake {
                    Fake::Email => "email",
                    Fake::Name => "name",
                    Fake::Phone => "phone",
                }
            ),
        }
    }

    /// Whether the rule needs the secret salt.
    pub fn salted(&self) -> bool {
        matches!(self, Rule::Hash | Rule::Fake(_))
    }
}

/// The copy's rules, by table name.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    pub masks: BTreeMap<String, BTreeMap<String, Rule>>,
    pub sensitive: BTreeSet<String>,
    pub skip: BTreeSet<String>,
    pub filters: BTreeMap<String, String>,
    /// Percent of rows kept, by table.
    pub sample: BTreeMap<String, f64>,
}

const RULE_HELP: &str = "a column's rule is `hash`, `null`, `keep`, `{ fixed = \"text\" }` or `{ fake = email }` (or `name`, `phone`)";

impl Rules {
    pub fn parse(params: &Params) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut rules = Rules::default();
        for (table, value) in entries(params.get("mask")) {
            let mut columns = BTreeMap::new();
            let ValueKind::Map(cells) = &value.kind else {
                problems.push(problem(
                    "mask",
                    format!("the masks of `{table}` are not a map of columns"),
                    "write `{ users = { email = hash, note = null } }`",
                ));
                continue;
            };
            for (column, rule) in cells {
                match rule_of(rule) {
                    Some(rule) => {
                        columns.insert(column.name.clone(), rule);
                    }
                    None => problems.push(problem(
                        "mask",
                        format!("`{table}.{}` has no rule flow knows", column.name),
                        RULE_HELP,
                    )),
                }
            }
            rules.masks.insert(table.to_owned(), columns);
        }
        for (table, value) in entries(params.get("where")) {
            match &value.kind {
                ValueKind::String(condition) if !condition.trim().is_empty() => {
                    rules.filters.insert(table.to_owned(), condition.clone());
                }
                _ => problems.push(problem(
                    "where",
                    format!("the condition of `{table}` is not SQL in a string"),
                    "write `{ events = \"created_at > now() - interval '30 days'\" }`",
                )),
            }
        }
        for (table, value) in entries(params.get("sample")) {
            match value.as_f64() {
                Some(percent) if percent > 0.0 && percent <= 100.0 => {
                    rules.sample.insert(table.to_owned(), percent);
                }
                _ => problems.push(problem(
                    "sample",
                    format!("the sample of `{table}` is not a percentage above 0 and up to 100"),
                    "write `{ orders = 10 }` to keep about a tenth of the rows",
                )),
            }
        }
        rules.sensitive = names(params, "sensitive");
        rules.skip = names(params, "skip");
        for table in &rules.skip {
            if rules.filters.contains_key(table) || rules.sample.contains_key(table) {
                problems.push(problem(
                    "skip",
                    format!("`{table}` is skipped, and filtered too"),
                    "a skipped table gets no rows: drop its `where` or `sample`",
                ));
            }
        }
        if problems.is_empty() {
            Ok(rules)
        } else {
            Err(problems)
        }
    }

    /// Whether any rule needs the secret salt.
    pub fn salted(&self) -> bool {
        !self.sensitive.is_empty()
            || self
                .masks
                .values()
                .any(|columns| columns.values().any(Rule::salted))
    }

    /// Every table a rule names, with the parameter that names it.
    pub fn named_tables(&self) -> Vec<(&'static str, &str)> {
        let mut named: Vec<(&'static str, &str)> = Vec::new();
        named.extend(self.masks.keys().map(|t| ("mask", t.as_str())));
        named.extend(self.sensitive.iter().map(|t| ("sensitive", t.as_str())));
        named.extend(self.skip.iter().map(|t| ("skip", t.as_str())));
        named.extend(self.filters.keys().map(|t| ("where", t.as_str())));
        named.extend(self.sample.keys().map(|t| ("sample", t.as_str())));
        named
    }
}

fn entries(value: Option<&Value>) -> Vec<(&str, &Value)> {
    match value.map(|v| &v.kind) {
        Some(ValueKind::Map(entries)) => entries
            .iter()
            .map(|(name, value)| (name.name.as_str(), value))
            .collect(),
        _ => Vec::new(),
    }
}

fn names(params: &Params, key: &str) -> BTreeSet<String> {
    params.list(key).into_iter().map(str::to_owned).collect()
}

fn problem(param: &'static str, message: String, help: &str) -> Problem {
    Problem {
        param: Some(param),
        message,
        help: Some(help.to_owned()),
    }
}

/// A bare name (`hash`) or a one-entry map (`{ fixed = "x" }`).
fn rule_of(value: &Value) -> Option<Rule> {
    let name = |value: &Value| match &value.kind {
        ValueKind::Reference { path, suffix: None } if path.len() == 1 => {
            Some(path[0].name.clone())
        }
        ValueKind::String(text) => Some(text.clone()),
        _ => None,
    };
    match &value.kind {
        ValueKind::Map(entries) if entries.len() == 1 => {
            let (key, inner) = &entries[0];
            match key.name.as_str() {
                "fixed" => match &inner.kind {
                    ValueKind::String(text) => Some(Rule::Fixed(text.clone())),
                    ValueKind::Number(text) => Some(Rule::Fixed(text.clone())),
                    _ => None,
                },
                "fake" => match name(inner)?.as_str() {
                    "email" => Some(Rule::Fake(Fake::Email)),
                    "name" => Some(Rule::Fake(Fake::Name)),
                    "phone" => Some(Rule::Fake(Fake::Phone)),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => match name(value)?.as_str() {
            "keep" => Some(Rule::Keep),
            "null" => Some(Rule::Null),
            "hash" => Some(Rule::Hash),
            _ => None,
        },
    }
}
