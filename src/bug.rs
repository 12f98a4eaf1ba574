//! A failure that is a bug, not a fault of the input or the store (spec 9.3): a task that
//! panicked, an invariant broken, a spill file gone. It ends the run with exit 9; no further
//! delete is started.

/// What broke, in words a bug report can quote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("internal error (a bug): {0}")]
pub struct Bug(pub String);

impl Bug {
    pub fn new(what: impl Into<String>) -> Self {
        Bug(what.into())
    }

    /// A stage that panicked: its panic message.
    pub fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Bug(format!("a stage panicked: {message}"))
    }

    /// A task that panicked or was cancelled when it should have finished.
    pub fn task(name: &str, error: &tokio::task::JoinError) -> Self {
        Bug(format!("the {name} task failed: {error}"))
    }
}
