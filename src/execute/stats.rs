//! What the execute stage hands back: its counts, the deletes that failed (named in the
//! report) and the verdict on them (exit 7).

use serde::Serialize;

/// A delete that did not happen, named in the report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeleteFailure {
    pub bucket: String,
    pub key: String,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct ExecuteStats {
    pub deleted: u64,
    pub deleted_bytes: u64,
    pub refreshed_kept: u64,
    pub failures: Vec<DeleteFailure>,
    /// Planned deletes never started because a signal arrived.
    pub not_started: u64,
    pub conditions: DeleteConditions,
}

/// Keys whose delete was sent tied to the object judged old, and keys whose delete was not
/// (spec 9.1): a retried key counts once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DeleteConditions {
    pub conditional: u64,
    pub unconditional: u64,
}

impl ExecuteStats {
    pub(super) fn merge(&mut self, other: ExecuteStats) {
        self.deleted += other.deleted;
        self.deleted_bytes += other.deleted_bytes;
        self.refreshed_kept += other.refreshed_kept;
        self.failures.extend(other.failures);
        self.not_started += other.not_started;
        self.conditions.conditional += other.conditions.conditional;
        self.conditions.unconditional += other.conditions.unconditional;
    }
}

/// A run that ended with delete failures (exit 7), naming the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{failed} of {planned} deletes failed (listed in the report); first: {first}")]
pub struct DeleteFailures {
    pub failed: u64,
    pub planned: u64,
    pub first: String,
}

impl ExecuteStats {
    /// Whether every started delete is done or kept as refreshed.
    pub(crate) fn all_done(&self, planned: u64) -> Result<(), DeleteFailures> {
        let Some(first) = self.failures.first() else {
            return Ok(());
        };
        Err(DeleteFailures {
            failed: self.failures.len() as u64,
            planned,
            first: format!("{}/{}: {}", first.bucket, first.key, first.error),
        })
    }
}
