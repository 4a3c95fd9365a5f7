//! From text to [`Flow`]: pest does the matching, this module builds the tree and
//! turns pest's errors into diagnostics that say what was expected in words.

use std::collections::BTreeSet;
use std::sync::Mutex;

use pest::Parser as _;
use pest::error::InputLocation;
use pest::iterators::Pair;
use pest_derive::Parser;

use crate::ast::{
    Binding, BindingKind, Block, Comment, DurationUnit, EnvBlock, Flow, Groups, Ident, Item, Param,
    Step, Value, ValueKind,
};
use crate::{Span, SyntaxError};

#[derive(Parser)]
#[grammar = "grammar.pest"]
struct FlowParser;

/// The outcome of parsing: the statements that parsed, and an error for each one
/// that did not. A file with errors still yields the statements around them.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub flow: Flow,
    pub errors: Vec<SyntaxError>,
}

impl Parsed {
    pub fn into_result(self) -> Result<Flow, Vec<SyntaxError>> {
        if self.errors.is_empty() {
            Ok(self.flow)
        } else {
            Err(self.errors)
        }
    }
}

const KEYWORDS: [&str; 8] = [
    "flow", "database", "storage", "groups", "step", "env", "schedule", "check",
];

/// Files at least this large are parsed in parallel, a share per core.
const PARALLEL_AT: usize = 64 * 1024;

/// Parses a whole file. Never panics; every error carries the span it is about.
///
/// A large file is cut at lines that start a statement (a keyword at column
/// 0) and the shares are parsed on a thread each. The result is used only
/// when every share parsed cleanly and the file names the flow at most once;
/// otherwise the file is parsed again from the start, so that errors and
/// their recovery are exactly those of a single pass.
pub fn parse(source: &str) -> Parsed {
    let threads = if source.len() >= PARALLEL_AT {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        1
    };
    if threads > 1 {
        let mut bounds = vec![0];
        for k in 1..threads {
            let mut at = source.len() * k / threads;
            while !source.is_char_boundary(at) {
                at += 1;
            }
            match next_statement(source, at) {
                Some(next) if next > *bounds.last().unwrap_or(&0) => bounds.push(next),
                _ => {}
            }
        }
        bounds.push(source.len());
        if bounds.len() > 2 {
            let shares: Vec<Parsed> = std::thread::scope(|scope| {
                let handles: Vec<_> = bounds
                    .windows(2)
                    .map(|w| {
                        let (start, end) = (w[0], w[1]);
                        scope.spawn(move || parse_from(&source[..end], start))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            let names = shares
                .iter()
                .flat_map(|p| &p.flow.items)
                .filter(|item| matches!(item, Item::Name(_)))
                .count();
            if names <= 1 && shares.iter().all(|p| p.errors.is_empty()) {
                let mut parsed = Parsed::default();
                for share in shares {
                    parsed.flow.items.extend(share.flow.items);
                    parsed.flow.comments.extend(share.flow.comments);
                }
                return parsed;
            }
        }
    }
    parse_from(source, 0)
}

/// Parses `source` from `start` on, statement by statement.
fn parse_from(source: &str, start: usize) -> Parsed {
    let mut parsed = Parsed::default();
    let mut name: Option<Ident> = None;
    let mut offset = start;
    while offset <= source.len() {
        let rest = &source[offset..];
        match FlowParser::parse(Rule::item, rest) {
            Ok(mut pairs) => {
                let Some(item) = pairs.next() else { break };
                let consumed = item.as_span().end();
                collect_comments(&item, offset, &mut parsed.flow.comments);
                let builder = Builder { offset };
                let Some(statement) = item.into_inner().find(|p| p.as_rule() != Rule::COMMENT)
                else {
                    break;
                };
                if statement.as_rule() == Rule::EOI {
                    break;
                }
                match builder.item(statement) {
                    Ok(Item::Name(ident)) => {
                        if let Some(first) = &name {
                            parsed.errors.push(SyntaxError::DuplicateName {
                                first: first.name.clone(),
                                span: ident.span.into(),
                                first_span: first.span.into(),
                            });
                        } else {
                            name = Some(ident.clone());
                            parsed.flow.items.push(Item::Name(ident));
                        }
                    }
                    Ok(item) => parsed.flow.items.push(item),
                    Err(error) => parsed.errors.push(error),
                }
                if consumed == 0 {
                    break;
                }
                offset += consumed;
            }
            Err(error) => {
                let error = detailed_error(rest).unwrap_or(error);
                parsed.errors.push(describe(&error, source, offset));
                match next_statement(source, offset) {
                    Some(next) => offset = next,
                    None => break,
                }
            }
        }
    }
    parsed
}

/// Parses a statement again, this time tracking every token pest tried, so that
/// the error can say what was expected. Tracking costs time on every parse, so
/// it is only switched on for a statement known to fail; the switch is global,
/// hence the lock.
fn detailed_error(text: &str) -> Option<pest::error::Error<Rule>> {
    static DETAIL: Mutex<()> = Mutex::new(());
    let _guard = DETAIL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pest::set_error_detail(true);
    let result = FlowParser::parse(Rule::item, text);
    pest::set_error_detail(false);
    result.err()
}

/// Where to go on after a syntax error: the next line, after the first line of the
/// statement that failed, that starts at column 0 with a keyword.
fn next_statement(source: &str, statement_start: usize) -> Option<usize> {
    let mut at = statement_start;
    loop {
        let rest = &source[at..];
        let trimmed = rest.trim_start();
        at += rest.len() - trimmed.len();
        if !trimmed.starts_with('#') {
            break;
        }
        at += trimmed.find('\n')?;
    }
    let mut line_start = at + source[at..].find('\n')? + 1;
    while line_start < source.len() {
        let line = &source[line_start..];
        let starts_statement = KEYWORDS.iter().any(|kw| {
            line.strip_prefix(kw)
                .and_then(|after| after.chars().next())
                .is_some_and(char::is_whitespace)
        });
        if starts_statement {
            return Some(line_start);
        }
        line_start += line.find('\n')? + 1;
    }
    None
}

fn collect_comments(item: &Pair<'_, Rule>, offset: usize, comments: &mut Vec<Comment>) {
    for pair in item.clone().into_inner().flatten() {
        if pair.as_rule() == Rule::COMMENT {
            let span = pair.as_span();
            comments.push(Comment {
                text: pair.as_str()[1..].to_owned(),
                span: Span::new(offset + span.start(), offset + span.end()),
            });
        }
    }
}

struct Builder {
    offset: usize,
}

/// The children of a pair, without the comments that pest interleaves.
fn children<'i>(pair: Pair<'i, Rule>) -> impl Iterator<Item = Pair<'i, Rule>> {
    pair.into_inner().filter(|p| p.as_rule() != Rule::COMMENT)
}

impl Builder {
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let span = pair.as_span();
        Span::new(self.offset + span.start(), self.offset + span.end())
    }

    fn ident(&self, pair: &Pair<'_, Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_owned(),
            span: self.span(pair),
        }
    }

    fn idents(&self, pair: Pair<'_, Rule>) -> Vec<Ident> {
        children(pair)
            .filter(|p| p.as_rule() == Rule::ident)
            .map(|p| self.ident(&p))
            .collect()
    }

    fn item(&self, pair: Pair<'_, Rule>) -> Result<Item, SyntaxError> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = children(pair).filter(|p| !is_keyword(p.as_rule()));
        Ok(match rule {
            Rule::flow_decl => Item::Name(self.ident(&next(&mut inner)?)),
            Rule::database_decl => Item::Database(self.binding(span, inner)?),
            Rule::storage_decl => Item::Storage(self.binding(span, inner)?),
            Rule::groups_decl => Item::Groups(Groups {
                groups: inner.map(|p| self.ident(&p)).collect(),
                span,
            }),
            Rule::step_decl => {
                let operation = next(&mut inner)?;
                let operation_span = self.span(&operation);
                let operation = self.idents(operation);
                let mut name = None;
                let mut params = Vec::new();
                for pair in inner {
                    match pair.as_rule() {
                        Rule::step_name => name = Some(self.ident(&next(&mut children(pair))?)),
                        _ => params = self.params(pair)?,
                    }
                }
                Item::Step(Step {
                    operation,
                    operation_span,
                    name,
                    params,
                    span,
                })
            }
            Rule::env_decl => {
                let name = self.ident(&next(&mut inner)?);
                let mut env = EnvBlock {
                    name,
                    databases: Vec::new(),
                    storages: Vec::new(),
                    order: Vec::new(),
                    span,
                };
                for pair in inner {
                    match self.item(pair)? {
                        Item::Database(binding) => {
                            env.databases.push(binding);
                            env.order.push(BindingKind::Database);
                        }
                        Item::Storage(binding) => {
                            env.storages.push(binding);
                            env.order.push(BindingKind::Storage);
                        }
                        _ => {}
                    }
                }
                Item::Env(env)
            }
            Rule::schedule_decl | Rule::check_decl => {
                let name = self.ident(&next(&mut inner)?);
                let params = self.params(next(&mut inner)?)?;
                let block = Block { name, params, span };
                if rule == Rule::schedule_decl {
                    Item::Schedule(block)
                } else {
                    Item::Check(block)
                }
            }
            _ => return Err(internal(span)),
        })
    }

    fn binding<'i>(
        &self,
        span: Span,
        mut inner: impl Iterator<Item = Pair<'i, Rule>>,
    ) -> Result<Binding, SyntaxError> {
        let name = self.ident(&next(&mut inner)?);
        let value = self.value(next(&mut inner)?)?;
        Ok(Binding { name, value, span })
    }

    fn params(&self, block: Pair<'_, Rule>) -> Result<Vec<Param>, SyntaxError> {
        children(block)
            .map(|param| {
                let span = self.span(&param);
                let mut inner = children(param);
                let key = self.ident(&next(&mut inner)?);
                let value = self.value(next(&mut inner)?)?;
                Ok(Param { key, value, span })
            })
            .collect()
    }

    fn value(&self, pair: Pair<'_, Rule>) -> Result<Value, SyntaxError> {
        let span = self.span(&pair);
        let pair = next(&mut children(pair))?;
        let kind = match pair.as_rule() {
            Rule::list => ValueKind::List(
                children(pair)
                    .map(|p| self.value(p))
                    .collect::<Result<_, _>>()?,
            ),
            Rule::map => {
                let mut entries = Vec::new();
                let mut inner = children(pair);
                while let Some(name) = inner.next() {
                    let value = self.value(next(&mut inner)?)?;
                    entries.push((self.ident(&name), value));
                }
                ValueKind::Map(entries)
            }
            Rule::env_call => {
                let mut inner = children(pair);
                let name = unescape(next(&mut children(next(&mut inner)?))?.as_str());
                let default = inner.next().map(|p| self.value(p)).transpose()?;
                ValueKind::Env {
                    name,
                    default: default.map(Box::new),
                }
            }
            Rule::string => ValueKind::String(unescape(next(&mut children(pair))?.as_str())),
            Rule::duration => {
                let text = pair.as_str();
                let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let unit = match &text[digits.len()..] {
                    "ms" => DurationUnit::Millis,
                    "s" => DurationUnit::Seconds,
                    "m" => DurationUnit::Minutes,
                    "h" => DurationUnit::Hours,
                    _ => DurationUnit::Days,
                };
                let amount = digits
                    .parse::<u64>()
                    .ok()
                    .filter(|n| n.checked_mul(unit.millis()).is_some())
                    .ok_or_else(|| SyntaxError::DurationRange {
                        text: text.to_owned(),
                        span: span.into(),
                    })?;
                ValueKind::Duration { amount, unit }
            }
            Rule::number => ValueKind::Number(pair.as_str().to_owned()),
            Rule::boolean => ValueKind::Bool(pair.as_str() == "true"),
            Rule::step_ref => {
                let text = pair.as_str();
                let idents: Vec<Ident> = self.idents(pair);
                let (operation, name) = if text.contains('/') {
                    let mut operation = idents;
                    let name = operation.pop();
                    (operation, name)
                } else {
                    (idents, None)
                };
                ValueKind::StepRef { operation, name }
            }
            Rule::reference => {
                let mut inner = children(pair);
                let path = self.idents(next(&mut inner)?);
                let suffix = inner
                    .next()
                    .map(|s| next(&mut children(s)).map(|p| unescape(p.as_str())))
                    .transpose()?;
                ValueKind::Reference { path, suffix }
            }
            _ => return Err(internal(span)),
        };
        Ok(Value { kind, span })
    }
}

fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_flow
            | Rule::kw_database
            | Rule::kw_storage
            | Rule::kw_groups
            | Rule::kw_step
            | Rule::kw_env
            | Rule::kw_schedule
            | Rule::kw_check
    )
}

fn next<'i>(
    inner: &mut impl Iterator<Item = Pair<'i, Rule>>,
) -> Result<Pair<'i, Rule>, SyntaxError> {
    inner.next().ok_or_else(|| internal(Span::default()))
}

/// The grammar guarantees the shape of the tree; this error only exists so that a
/// mismatch between grammar and builder is a diagnostic rather than a panic.
fn internal(span: Span) -> SyntaxError {
    SyntaxError::Unexpected {
        expected: "a statement".into(),
        found: "text the parser could not read".into(),
        span: span.into(),
        label: "here".into(),
        help: None,
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Turns a pest error into a diagnostic, and says where it happened.
fn describe(error: &pest::error::Error<Rule>, source: &str, offset: usize) -> SyntaxError {
    let local = match error.location {
        InputLocation::Pos(pos) => pos,
        InputLocation::Span((start, _)) => start,
    };
    let mut at = (offset + local).min(source.len());
    let mut expected = BTreeSet::new();
    if let Some(attempts) = error.parse_attempts() {
        at = (offset + attempts.max_position).min(source.len());
        for token in attempts.expected_tokens() {
            // Literal tokens (`=`, `{`, keywords); ranges like `a..z` are covered by
            // the rule that asked for them.
            let token = token.to_string();
            let noise = token.trim().is_empty() || token == "#" || token == "BUILTIN_RULE";
            if !noise && !token.contains("..") {
                expected.insert(format!("`{token}`"));
            }
        }
        for stack in &attempts.call_stacks {
            if let Some(name) = stack.deepest.get_rule().copied().and_then(rule_name) {
                expected.insert(name.to_owned());
            }
        }
    }
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &error.variant {
        for rule in positives {
            if let Some(name) = rule_name(*rule) {
                expected.insert(name.to_owned());
            }
        }
    }
    if expected
        .iter()
        .any(|e| e.starts_with("`step`") || e == "a statement")
    {
        expected.retain(|e| !KEYWORDS.iter().any(|kw| e == &format!("`{kw}`")));
        expected.insert("a statement".into());
    }
    if expected.is_empty() {
        expected.insert("a statement".into());
    }
    // Between parameters, the continuations of the last value are noise.
    if expected.contains("`}`") && expected.contains("a name") {
        expected.retain(|e| e == "`}`" || e == "a name");
    }
    let (found, span) = match open_string(source, at) {
        Some(quote) => {
            let end = source[quote..]
                .find('\n')
                .map_or(source.len(), |i| quote + i);
            ("an unterminated string".to_owned(), Span::new(quote, end))
        }
        None => found_at(source, at),
    };
    let expected: Vec<String> = expected.into_iter().collect();
    let statement = offset + (source[offset..].len() - source[offset..].trim_start().len());
    let help = help_for(&expected, &found, source, at, statement);
    let expected_text = one_of(&expected);
    let label = if found == "an unterminated string" {
        "not closed on this line".to_owned()
    } else {
        format!("expected {expected_text}")
    };
    SyntaxError::Unexpected {
        label,
        expected: expected_text,
        found,
        span: span.into(),
        help,
    }
}

fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident | Rule::step_name => "a name",
        Rule::value
        | Rule::list
        | Rule::map
        | Rule::env_call
        | Rule::string
        | Rule::duration
        | Rule::number
        | Rule::boolean
        | Rule::step_ref
        | Rule::reference
        | Rule::path => "a value",
        Rule::operation => "an operation like `pg:source:load`",
        Rule::param => "a parameter `key = value`",
        Rule::statement
        | Rule::flow_decl
        | Rule::database_decl
        | Rule::storage_decl
        | Rule::groups_decl
        | Rule::step_decl
        | Rule::env_decl
        | Rule::schedule_decl
        | Rule::check_decl
        | Rule::item => "a statement",
        _ => return None,
    })
}

fn one_of(expected: &[String]) -> String {
    match expected {
        [] => "a statement".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Where the string that is still open at `at` starts, if one is.
fn open_string(source: &str, at: usize) -> Option<usize> {
    let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    let mut open = None;
    let mut escaped = false;
    for (i, c) in source[line_start..at].char_indices() {
        match c {
            '\\' if open.is_some() => escaped = !escaped,
            '"' if !escaped => {
                open = if open.is_some() {
                    None
                } else {
                    Some(line_start + i)
                }
            }
            '#' if open.is_none() => return None,
            _ => escaped = false,
        }
    }
    open
}

/// The token at `at`, in words, and its span.
fn found_at(source: &str, at: usize) -> (String, Span) {
    let rest = &source[at..];
    let Some(first) = rest.chars().next() else {
        return ("end of file".into(), Span::new(at, at));
    };
    if first == '\n' || first == '\r' {
        return ("end of line".into(), Span::new(at, at + first.len_utf8()));
    }
    let len = if first.is_alphanumeric() || first == '_' {
        rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len())
    } else if first == '"' {
        rest[1..].find(['"', '\n']).map_or(rest.len(), |i| i + 2)
    } else {
        first.len_utf8()
    };
    let text = &rest[..len];
    let found = if first == '"' && (text.len() == 1 || !text.ends_with('"')) {
        "an unterminated string".to_owned()
    } else {
        let shown: String = text
            .chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect();
        format!("`{shown}`")
    };
    (found, Span::new(at, at + len))
}

fn help_for(
    expected: &[String],
    found: &str,
    source: &str,
    at: usize,
    statement: usize,
) -> Option<String> {
    let wants = |token: &str| expected.iter().any(|e| e == token);
    if found == "an unterminated string" {
        return Some("strings end with `\"` on the same line; write `\\n` for a line break".into());
    }
    if found == "end of file" && wants("`}`") {
        return Some("a block opened with `{` is never closed".into());
    }
    let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &source[line_start..];
    let keyword_line = KEYWORDS.iter().any(|kw| {
        line.strip_prefix(kw)
            .is_some_and(|rest| rest.starts_with(' '))
    });
    if (wants("`}`") || wants("`=`")) && keyword_line && line_start > statement {
        return Some("is a `}` missing before this line?".into());
    }
    if wants("`=`") {
        return Some("write `name = value`".into());
    }
    if expected.iter().any(|e| e == "a statement") {
        return Some(
            "a flow is made of `flow`, `database`, `storage`, `groups`, `step`, `env`, `schedule` and `check` statements"
                .into(),
        );
    }
    if found == "`/`" || found == "`*`" {
        return Some("paths and globs are strings: put them in double quotes".into());
    }
    if found.starts_with("`'") {
        return Some("strings are written in double quotes".into());
    }
    None
}

#[cfg(test)]
mod parallel {
    use super::*;

    fn large(steps: usize, broken_at: Option<usize>) -> String {
        let mut text =
            String::from("# a large flow\nflow large\n\ndatabase flow = \"embedded\"\n\n");
        for i in 0..steps {
            if Some(i) == broken_at {
                text.push_str("step sql:flow:run broken {\n  sql = \n}\n\n");
            }
            text.push_str(&format!(
                "# step {i}\nstep sql:flow:run s{i} {{\n  sql = \"sql/{i}.sql\" # the file\n  writes = [\"t.{i}\"]\n  after = [\"sql:flow:run/s{}\"]\n}}\n\n",
                i.saturating_sub(1)
            ));
        }
        text
    }

    #[test]
    fn a_large_file_parses_in_parallel_as_in_one_pass() {
        let text = large(2_000, None);
        assert!(text.len() >= PARALLEL_AT);
        let (parallel, single) = (parse(&text), parse_from(&text, 0));
        assert!(parallel.errors.is_empty());
        assert_eq!(parallel.flow.items.len(), 2_002);
        assert_eq!(format!("{parallel:?}"), format!("{single:?}"));
    }

    #[test]
    fn errors_in_a_large_file_are_those_of_one_pass() {
        let text = large(2_000, Some(1_500));
        let (parallel, single) = (parse(&text), parse_from(&text, 0));
        assert_eq!(parallel.errors.len(), 1);
        assert_eq!(format!("{parallel:?}"), format!("{single:?}"));
        let named_twice = format!("{}flow again\n", large(2_000, None));
        assert_eq!(parse(&named_twice).errors.len(), 1);
    }
}
