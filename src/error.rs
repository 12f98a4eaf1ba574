//! The run's error: one variant per stage, and the one mapping to the spec's exit codes.

use crate::config::ConfigError;
use crate::execute::HeldError;
use crate::listing::ListingError;
use crate::live_set::LiveSetError;
use crate::locations::LocationError;
use crate::manifest_fetch::IngestError;
use crate::plan::PlanError;
use crate::store::StoreError;
use crate::verify::VerifyError;

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
    Held(#[from] HeldError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Spill(#[from] VerifyError),
    #[error("--apply-plan refused, nothing deleted: {0}")]
    PlanRefused(String),
    #[error("the plan spool could not be read back during the deletes ({0}); the rest of the plan was not deleted")]
    SpoolRead(PlanError),
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

/// Every way a run ends, and its exit code (spec section 7): the one place codes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Done = 0,
    Usage = 2,
    LiveSet = 3,
    Manifest = 4,
    Listing = 5,
    Guard = 6,
    DeleteFailures = 7,
    Verify = 8,
    Interrupted = 130,
    Terminated = 143,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Signal> for Exit {
    fn from(signal: Signal) -> Self {
        match signal {
            Signal::Interrupt => Exit::Interrupted,
            Signal::Terminate => Exit::Terminated,
        }
    }
}

impl GcError {
    /// How the run ends when it fails with this error.
    pub fn exit(&self) -> Exit {
        match self {
            GcError::Config(_)
            | GcError::Store(_)
            | GcError::Location(_)
            | GcError::Plan(_)
            | GcError::Spill(_)
            | GcError::PlanRefused(_) => Exit::Usage,
            GcError::LiveSetRead { .. } | GcError::LiveSet(_) => Exit::LiveSet,
            GcError::Manifest(_) => Exit::Manifest,
            GcError::Listing(_) | GcError::Held(_) => Exit::Listing,
            GcError::Guard { .. } => Exit::Guard,
            GcError::DeleteFailures { .. } | GcError::SpoolRead(_) => Exit::DeleteFailures,
            GcError::Verify(_) => Exit::Verify,
            GcError::Interrupted(signal) => Exit::from(*signal),
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.exit().code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_specs() {
        let codes = [
            (Exit::Done, 0),
            (Exit::Usage, 2),
            (Exit::LiveSet, 3),
            (Exit::Manifest, 4),
            (Exit::Listing, 5),
            (Exit::Guard, 6),
            (Exit::DeleteFailures, 7),
            (Exit::Verify, 8),
            (Exit::Interrupted, 130),
            (Exit::Terminated, 143),
        ];
        for (exit, code) in codes {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
        assert_eq!(GcError::Interrupted(Signal::Terminate).exit_code(), 143);
        assert_eq!(GcError::Verify("x".into()).exit_code(), 8);
    }
}
