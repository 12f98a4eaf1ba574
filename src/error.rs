//! The run's error: one variant per stage, and the one mapping to the spec's exit codes.

use crate::config::ConfigError;
use crate::listing::ListingError;
use crate::live_set::LiveSetError;
use crate::locations::LocationError;
use crate::manifest_fetch::IngestError;
use crate::plan::PlanError;
use crate::store::StoreError;

/// The signal that stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("location: {0}")]
    Location(#[from] LocationError),
    #[error("{path}: cannot read the live set: {source}")]
    LiveSetRead { path: String, source: std::io::Error },
    #[error(transparent)]
    LiveSet(#[from] LiveSetError),
    #[error(transparent)]
    Manifest(#[from] IngestError),
    #[error(transparent)]
    Listing(#[from] ListingError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "--max-delete-fraction guard: the plan deletes {planned} of {old} chunks older than the cutoff ({:.1}%), more than {:.1}%; nothing deleted",
        fraction * 100.0, max * 100.0
    )]
    Guard { planned: u64, old: u64, fraction: f64, max: f64 },
    #[error("{failed} of {planned} deletes failed (listed in the report); first: {first}")]
    DeleteFailures { failed: u64, planned: u64, first: String },
    #[error("verify failed: {0}")]
    Verify(String),
    #[error("stopped by {0:?}: no new deletes were started")]
    Interrupted(Signal),
}

impl GcError {
    /// The exit code of spec section 7.
    pub fn exit_code(&self) -> u8 {
        match self {
            GcError::Config(_) | GcError::Store(_) | GcError::Location(_) | GcError::Plan(_) => 2,
            GcError::LiveSetRead { .. } | GcError::LiveSet(_) => 3,
            GcError::Manifest(_) => 4,
            GcError::Listing(_) => 5,
            GcError::Guard { .. } => 6,
            GcError::DeleteFailures { .. } => 7,
            GcError::Verify(_) => 8,
            GcError::Interrupted(Signal::Interrupt) => 130,
            GcError::Interrupted(Signal::Terminate) => 143,
        }
    }
}
