//! `flow fmt`: one canonical layout for every flow.
//!
//! Statements keep their order; each block gets one parameter per line with
//! two-space indentation; a blank line separates statements, except that
//! consecutive `database` and `storage` lines stay together. Comments are kept: a
//! comment on its own line stays above what follows it, a comment at the end of a
//! line stays at the end of that line. Formatting is idempotent, and the formatted
//! text parses to the same tree as the original.

use crate::ast::{Binding, BindingKind, Comment, Flow, Item, Param, Value, ValueKind};
use crate::{SyntaxError, parse};

const WIDTH: usize = 80;
const INDENT: &str = "  ";

/// A value in its canonical form, on one line where it fits.
pub fn format_value(value: &Value) -> String {
    self::value(value, 0, "")
}

/// Formats a flow file; a file with syntax errors is returned as its errors.
pub fn format(source: &str) -> Result<String, Vec<SyntaxError>> {
    let flow = parse(source).into_result()?;
    let mut formatter = Formatter {
        source,
        comments: &flow.comments,
        next_comment: 0,
        last_end: 0,
        out: String::with_capacity(source.len()),
    };
    formatter.flow(&flow);
    Ok(formatter.out)
}

struct Formatter<'a> {
    source: &'a str,
    comments: &'a [Comment],
    next_comment: usize,
    /// End of the last thing written, in the source; decides whether a comment
    /// trails it on the same line.
    last_end: usize,
    out: String,
}

impl Formatter<'_> {
    fn flow(&mut self, flow: &Flow) {
        let mut previous: Option<&Item> = None;
        for item in &flow.items {
            let start = item.span().start;
            self.trailing(start);
            if let Some(previous) = previous {
                let together = is_binding(previous) && is_binding(item);
                if !together {
                    self.out.push('\n');
                }
            }
            self.leading(start, "");
            self.item(item);
            previous = Some(item);
        }
        self.trailing(self.source.len());
        if !flow.items.is_empty() && self.next_comment < self.comments.len() {
            self.out.push('\n');
        }
        self.leading(self.source.len(), "");
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Name(name) => self.line("", &format!("flow {}", name.name), name.span.end),
            Item::Database(binding) => self.binding("", "database", binding),
            Item::Storage(binding) => self.binding("", "storage", binding),
            Item::Groups(groups) => {
                let names: Vec<&str> = groups.groups.iter().map(|g| g.as_str()).collect();
                self.line(
                    "",
                    &format!("groups {}", names.join(" -> ")),
                    groups.span.end,
                );
            }
            Item::Step(step) => {
                let mut header = format!("step {}", step.operation_text());
                let mut header_end = step.operation_span.end;
                if let Some(name) = &step.name {
                    header.push(' ');
                    header.push_str(&name.name);
                    header_end = name.span.end;
                }
                self.block(&header, header_end, &step.params, step.span.end);
            }
            Item::Env(env) => {
                self.open(&format!("env {}", env.name.name), env.name.span.end);
                let (mut databases, mut storages) = (env.databases.iter(), env.storages.iter());
                for kind in &env.order {
                    let (keyword, binding) = match kind {
                        BindingKind::Database => ("database", databases.next()),
                        BindingKind::Storage => ("storage", storages.next()),
                    };
                    if let Some(binding) = binding {
                        self.trailing(binding.span.start);
                        self.leading(binding.span.start, INDENT);
                        self.binding(INDENT, keyword, binding);
                    }
                }
                self.close(env.span.end);
            }
            Item::Schedule(block) => self.block(
                &format!("schedule {}", block.name.name),
                block.name.span.end,
                &block.params,
                block.span.end,
            ),
            Item::Check(block) => self.block(
                &format!("check {}", block.name.name),
                block.name.span.end,
                &block.params,
                block.span.end,
            ),
        }
    }

    fn binding(&mut self, indent: &str, keyword: &str, binding: &Binding) {
        let head = format!("{keyword} {} = ", binding.name.name);
        let value = value(&binding.value, indent.len() + head.len(), indent);
        self.line(indent, &format!("{head}{value}"), binding.span.end);
    }

    fn block(&mut self, header: &str, header_end: usize, params: &[Param], end: usize) {
        let has_comments = self
            .comments
            .get(self.next_comment)
            .is_some_and(|c| c.span.start < end);
        if params.is_empty() && !has_comments {
            self.line("", &format!("{header} {{}}"), end);
            return;
        }
        self.open(header, header_end);
        for param in params {
            self.trailing(param.span.start);
            self.leading(param.span.start, INDENT);
            let head = format!("{} = ", param.key.name);
            let value = value(&param.value, INDENT.len() + head.len(), INDENT);
            self.line(INDENT, &format!("{head}{value}"), param.span.end);
        }
        self.close(end);
    }

    fn open(&mut self, header: &str, header_end: usize) {
        self.line("", &format!("{header} {{"), header_end);
    }

    fn close(&mut self, end: usize) {
        let closing = end.saturating_sub(1);
        self.trailing(closing);
        self.leading(closing, INDENT);
        self.line("", "}", end);
    }

    fn line(&mut self, indent: &str, text: &str, source_end: usize) {
        self.out.push_str(indent);
        self.out.push_str(text);
        self.out.push('\n');
        self.last_end = source_end;
    }

    /// Writes the comment that ends the line of the last thing written, if any.
    fn trailing(&mut self, before: usize) {
        let Some(comment) = self.comments.get(self.next_comment) else {
            return;
        };
        let between = self.source.get(self.last_end..comment.span.start);
        if comment.span.start < before
            && between.is_some_and(|text| !text.contains('\n'))
            && self.out.ends_with('\n')
        {
            self.out.pop();
            self.out.push_str(" #");
            self.out.push_str(comment.text.trim_end());
            self.out.push('\n');
            self.next_comment += 1;
        }
    }

    /// Writes the comments that stand on their own lines before `before`.
    fn leading(&mut self, before: usize, indent: &str) {
        while let Some(comment) = self.comments.get(self.next_comment) {
            if comment.span.start >= before {
                break;
            }
            self.out.push_str(indent);
            self.out.push('#');
            self.out.push_str(comment.text.trim_end());
            self.out.push('\n');
            self.next_comment += 1;
            self.last_end = comment.span.end;
        }
    }
}

fn is_binding(item: &Item) -> bool {
    matches!(item, Item::Database(_) | Item::Storage(_))
}

/// A value in canonical form. `column` is where it starts, to decide whether a
/// list fits on one line.
fn value(value: &Value, column: usize, indent: &str) -> String {
    match &value.kind {
        ValueKind::String(text) => quote(text),
        ValueKind::Number(text) => text.clone(),
        ValueKind::Bool(flag) => flag.to_string(),
        ValueKind::Duration { amount, unit } => format!("{amount}{}", unit.suffix()),
        ValueKind::Env { name, default } => match default {
            Some(default) => format!(
                "env({}, {})",
                quote(name),
                self::value(default, column + name.len() + 8, indent)
            ),
            None => format!("env({})", quote(name)),
        },
        ValueKind::Reference { path, suffix } => {
            let names: Vec<&str> = path.iter().map(|p| p.as_str()).collect();
            let mut text = names.join(".");
            if let Some(suffix) = suffix {
                text.push(' ');
                text.push_str(&quote(suffix));
            }
            text
        }
        ValueKind::StepRef { operation, name } => {
            let mut text = crate::ast::join_segments(operation);
            if let Some(name) = name {
                text.push('/');
                text.push_str(&name.name);
            }
            text
        }
        ValueKind::Map(entries) => {
            let inner = format!("{indent}{INDENT}");
            let parts: Vec<String> = entries
                .iter()
                .map(|(name, item)| {
                    format!(
                        "{} = {}",
                        name.name,
                        self::value(item, inner.len() + name.name.len() + 3, &inner)
                    )
                })
                .collect();
            let one_line = format!("{{ {} }}", parts.join(", "));
            if parts.is_empty() {
                "{}".into()
            } else if column + one_line.len() <= WIDTH && !one_line.contains('\n') {
                one_line
            } else {
                let mut text = String::from("{\n");
                for part in parts {
                    text.push_str(&inner);
                    text.push_str(&part);
                    text.push('\n');
                }
                text.push_str(indent);
                text.push('}');
                text
            }
        }
        ValueKind::List(items) => {
            let inner = format!("{indent}{INDENT}");
            let parts: Vec<String> = items
                .iter()
                .map(|item| self::value(item, inner.len(), &inner))
                .collect();
            let one_line = format!("[{}]", parts.join(", "));
            if column + one_line.len() <= WIDTH && !one_line.contains('\n') {
                one_line
            } else {
                let mut text = String::from("[\n");
                for part in parts {
                    text.push_str(&inner);
                    text.push_str(&part);
                    text.push_str(",\n");
                }
                text.push_str(indent);
                text.push(']');
                text
            }
        }
    }
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
