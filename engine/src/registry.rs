use std::collections::BTreeMap;

use crate::operation::{Operation, Registration, Target};

/// Every operation the engine knows, by tool and then by operation name.
#[derive(Clone, Default)]
pub struct Registry {
    tools: BTreeMap<&'static str, BTreeMap<&'static str, Vec<&'static dyn Operation>>>,
}

impl Registry {
    /// The operations of every plugin linked into this program.
    pub fn installed() -> Self {
        Self::new(inventory::iter::<Registration>.into_iter().map(|r| r.0))
    }

    pub fn new(operations: impl IntoIterator<Item = &'static dyn Operation>) -> Self {
        Self::default().with(operations)
    }

    /// This registry and `more` operations (those of plugin executables).
    pub fn with(&self, more: impl IntoIterator<Item = &'static dyn Operation>) -> Self {
        let mut registry = self.clone();
        for operation in more {
            let spec = operation.spec();
            registry
                .tools
                .entry(spec.tool)
                .or_default()
                .entry(spec.operation)
                .or_default()
                .push(operation);
        }
        registry
    }

    pub fn tools(&self) -> impl Iterator<Item = &'static str> + Clone + '_ {
        self.tools.keys().copied()
    }

    pub fn has_tool(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }

    /// All operations, in name order.
    pub fn operations(&self) -> impl Iterator<Item = &'static dyn Operation> + '_ {
        self.tools
            .values()
            .flat_map(|ops| ops.values().flatten().copied())
    }

    /// The operation written as `tool[:target]:operation`, if any. A database
    /// target matches any name here; the compiler checks that it is declared.
    pub fn lookup(
        &self,
        tool: &str,
        target: Option<&str>,
        operation: &str,
    ) -> Option<&'static dyn Operation> {
        let candidates = self.tools.get(tool)?.get(operation)?;
        let fixed = candidates
            .iter()
            .find(|op| match (op.spec().target, target) {
                (Target::None, None) => true,
                (Target::Fixed(fixed), Some(target)) => fixed == target,
                _ => false,
            });
        let database = || {
            candidates
                .iter()
                .find(|op| op.spec().target == Target::Database && target.is_some())
        };
        fixed.or_else(database).copied()
    }

    /// Every way an operation can be written, for "did you mean".
    pub fn spellings(&self, databases: &[&str]) -> Vec<String> {
        let mut spellings = Vec::new();
        for op in self.operations() {
            let spec = op.spec();
            match spec.target {
                Target::Database => {
                    for db in databases {
                        spellings.push(format!("{}:{db}:{}", spec.tool, spec.operation));
                    }
                }
                _ => spellings.push(spec.pattern()),
            }
        }
        spellings
    }
}
