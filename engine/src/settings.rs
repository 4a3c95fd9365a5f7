//! An operation's parameters as its own type.

use std::any::Any;
use std::sync::Arc;

/// An operation's parameters as its own type, parsed once by `prepare` when
/// the flow is compiled, and read by its run with
/// [`RunContext::settings`](crate::RunContext::settings).
#[derive(Clone, Default)]
pub struct Settings(Option<Arc<dyn Any + Send + Sync>>);

impl Settings {
    pub fn new(value: impl Any + Send + Sync) -> Self {
        Self(Some(Arc::new(value)))
    }

    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|value| value.downcast_ref())
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Settings(..)"
        } else {
            "Settings(none)"
        })
    }
}

/// Settings are equal when they are the same parse (or both absent).
impl PartialEq for Settings {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for Settings {}
