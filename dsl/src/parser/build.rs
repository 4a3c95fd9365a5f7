//! The syntax tree built from pest's pairs.

use pest::iterators::Pair;

use super::Rule;
use crate::ast::{
    Binding, BindingKind, Block, DurationUnit, EnvBlock, Groups, Ident, Item, Param, Step, Value,
    ValueKind,
};
use crate::{Span, SyntaxError};

pub(super) struct Builder {
    pub(super) offset: usize,
}

/// The children of a pair, without the comments that pest interleaves.
pub(super) fn children<'i>(pair: Pair<'i, Rule>) -> impl Iterator<Item = Pair<'i, Rule>> {
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

    pub(super) fn item(&self, pair: Pair<'_, Rule>) -> Result<Item, SyntaxError> {
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

pub(super) fn is_keyword(rule: Rule) -> bool {
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

pub(super) fn next<'i>(
    inner: &mut impl Iterator<Item = Pair<'i, Rule>>,
) -> Result<Pair<'i, Rule>, SyntaxError> {
    inner.next().ok_or_else(|| internal(Span::default()))
}

/// The grammar guarantees the shape of the tree; this error only exists so that a
/// mismatch between grammar and builder is a diagnostic rather than a panic.
pub(super) fn internal(span: Span) -> SyntaxError {
    SyntaxError::Unexpected {
        expected: "a statement".into(),
        found: "text the parser could not read".into(),
        span: span.into(),
        label: "here".into(),
        help: None,
    }
}

pub(super) fn unescape(text: &str) -> String {
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
