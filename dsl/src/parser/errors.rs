//! pest's errors as diagnostics that say what was expected, what was found,
//! and how to fix it.

use std::collections::BTreeSet;

use pest::error::InputLocation;

use super::{KEYWORDS, Rule};
use crate::{Span, SyntaxError};

/// Turns a pest error into a diagnostic, and says where it happened.
pub(super) fn describe(
    error: &pest::error::Error<Rule>,
    source: &str,
    offset: usize,
) -> SyntaxError {
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

pub(super) fn rule_name(rule: Rule) -> Option<&'static str> {
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

pub(super) fn one_of(expected: &[String]) -> String {
    match expected {
        [] => "a statement".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Where the string that is still open at `at` starts, if one is.
pub(super) fn open_string(source: &str, at: usize) -> Option<usize> {
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
pub(super) fn found_at(source: &str, at: usize) -> (String, Span) {
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

pub(super) fn help_for(
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
