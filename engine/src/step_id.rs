use std::fmt;

/// A step's identity: its operation and, when two steps share one, its name.
///
/// Written `tool:target:operation` or `tool:operation`, with `/name` when named:
/// `pg:model:transform/zoning`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId {
    pub tool: String,
    pub target: Option<String>,
    pub operation: String,
    pub name: Option<String>,
}

impl StepId {
    /// The operation part, without the name.
    pub fn triple(&self) -> String {
        match &self.target {
            Some(target) => format!("{}:{target}:{}", self.tool, self.operation),
            None => format!("{}:{}", self.tool, self.operation),
        }
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.triple())?;
        if let Some(name) = &self.name {
            write!(f, "/{name}")?;
        }
        Ok(())
    }
}

/// A reference to steps as a user writes it on the command line or in `after`:
/// a glob over step ids (`pg:source:*`), optionally with `+` before (and its
/// upstream) or after (and its downstream).
#[derive(Debug, Clone)]
pub struct StepPattern {
    pub text: String,
    pub upstream: bool,
    pub downstream: bool,
    glob: glob::Pattern,
}

impl StepPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let upstream = trimmed.starts_with('+');
        let downstream = trimmed.len() > 1 && trimmed.ends_with('+');
        let core = trimmed.trim_start_matches('+').trim_end_matches('+');
        if core.is_empty() {
            return Err(format!("`{text}` names no step"));
        }
        let glob =
            glob::Pattern::new(core).map_err(|e| format!("`{core}` is not a valid glob: {e}"))?;
        Ok(Self {
            text: core.to_owned(),
            upstream,
            downstream,
            glob,
        })
    }

    /// Whether this pattern is a plain name rather than a glob.
    pub fn is_exact(&self) -> bool {
        !self.text.contains(['*', '?', '['])
    }

    /// Matches the full id (`pg:model:transform/zoning`) or, for unnamed patterns,
    /// every step of the operation (`pg:model:transform` matches its named steps).
    pub fn matches(&self, id: &StepId) -> bool {
        let full = id.to_string();
        self.glob.matches(&full) || (id.name.is_some() && self.glob.matches(&id.triple()))
    }
}
