//! From text to [`Flow`]: pest does the matching, this module builds the tree and
//! turns pest's errors into diagnostics that say what was expected in words.

use std::sync::Mutex;

use build::Builder;
use errors::describe;
use pest::Parser as _;
use pest::iterators::Pair;
use pest_derive::Parser;

use crate::ast::{Comment, Flow, Ident, Item};
use crate::{Span, SyntaxError};

mod build;
mod errors;

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
