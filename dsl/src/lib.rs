//! The `.flow` language: text in, syntax tree out, and back again.
//!
//! This crate does no I/O and knows nothing of operations, databases or plugins:
//! it parses, reports syntax errors as diagnostics, and formats. Meaning (is this
//! operation known, does that group exist) is the engine's business, so that the
//! language can be read, formatted and fuzzed on its own.
//!
//! Parsing goes statement by statement: when one statement fails, the parser picks
//! up again at the next line that starts with a keyword, so a file with three
//! mistakes gets three diagnostics in one run.

pub mod ast;
mod format;
mod parser;
mod span;
mod syntax_error;

pub use ast::Flow;
pub use format::{format, format_value};
pub use parser::{Parsed, parse};
pub use span::Span;
pub use syntax_error::SyntaxError;
