//! The `--max-delete-fraction` guard (spec 4): a plan that deletes more than the allowed
//! share of the chunks older than the cutoff is never executed.

use schemars::JsonSchema;
use serde::Serialize;

/// The guard's verdict on one plan, as the report shows it (`--max-delete-fraction`, spec 4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Guard {
    pub max_delete_fraction: f64,
    /// Chunks last modified before the cutoff: the guard's denominator.
    pub old_chunks: u64,
    /// Planned deletes over `old_chunks`.
    pub fraction: f64,
    /// Whether `--execute` deletes nothing (exit 6).
    pub tripped: bool,
    #[serde(skip)]
    planned: u64,
}

/// The guard's refusal (exit 6).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "--max-delete-fraction guard: the plan deletes {planned} of {old} chunks older than the cutoff ({:.1}%), more than {:.1}%; nothing deleted",
    fraction * 100.0, max * 100.0
)]
pub struct GuardTripped {
    pub planned: u64,
    pub old: u64,
    pub fraction: f64,
    pub max: f64,
}

impl Guard {
    /// No verdict yet: the limit alone (a run that stops before its plan reports it).
    pub(crate) fn unjudged(max_delete_fraction: f64) -> Self {
        Self { max_delete_fraction, ..Self::default() }
    }

    /// Tripped when the plan deletes more than the allowed share of the chunks older than the
    /// cutoff (strictly more: exactly the limit passes).
    pub(crate) fn judge(max_delete_fraction: f64, old_chunks: u64, planned: u64) -> Self {
        let fraction = if old_chunks == 0 { 0.0 } else { planned as f64 / old_chunks as f64 };
        Self { max_delete_fraction, old_chunks, fraction, tripped: fraction > max_delete_fraction, planned }
    }

    /// Whether the plan may be executed.
    pub(crate) fn allows_deletes(&self) -> Result<(), GuardTripped> {
        if !self.tripped {
            return Ok(());
        }
        Err(GuardTripped {
            planned: self.planned,
            old: self.old_chunks,
            fraction: self.fraction,
            max: self.max_delete_fraction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_strictly_above_the_limit() {
        assert!(Guard::judge(0.5, 10, 5).allows_deletes().is_ok(), "exactly the limit passes");
        let tripped = Guard::judge(0.5, 10, 6);
        assert!(tripped.tripped);
        let refusal = tripped.allows_deletes().unwrap_err();
        assert_eq!((refusal.planned, refusal.old), (6, 10), "the denominator is the chunks older than the cutoff");
        assert!(refusal.to_string().contains("deletes 6 of 10 chunks older than the cutoff (60.0%), more than 50.0%"));
        let empty = Guard::judge(0.5, 0, 0);
        assert!(!empty.tripped && empty.fraction == 0.0);
        assert!(Guard::unjudged(0.5).allows_deletes().is_ok());
    }

    #[test]
    fn a_zero_limit_refuses_any_delete() {
        assert!(Guard::judge(0.0, 10, 0).allows_deletes().is_ok());
        assert!(Guard::judge(0.0, 10, 1).allows_deletes().is_err());
    }
}
