//! The run's error: one variant per stage, and the one mapping to the spec's exit codes.

use crate::bug::Bug;
use crate::config::ConfigError;
use crate::decide::DecideStageError;
use crate::deleting::{AccountingError, DeletingError};
use crate::execute::{DeleteFailures, HeldError};
pub use crate::exit::Exit;
use crate::listing::ListingError;
use crate::live_set::LiveSetError;
use crate::locations::LocationError;
use crate::manifest_fetch::{IngestError, ManifestsStageError};
use crate::plan::{GuardTripped, PlanError, PlanRefused};
use crate::spill::SpillError;
pub use crate::stop::Signal;
use crate::stop::Stopped;
use crate::store::StoreError;
use crate::verify::{RelistError, VerifyError, VerifyFailure};

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("location: {0}")]
    Location(#[from] LocationError),
    #[error(transparent)]
    LiveSet(#[from] LiveSetError),
    #[error(transparent)]
    Deleting(#[from] DeletingError),
    #[error(transparent)]
    Manifest(#[from] IngestError),
    #[error(transparent)]
    Listing(#[from] ListingError),
    #[error(transparent)]
    Held(#[from] HeldError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error(transparent)]
    PlanRefused(#[from] PlanRefused),
    #[error("the plan spool could not be read back during the deletes ({0}); the rest of the plan was not deleted")]
    SpoolRead(PlanError),
    #[error(transparent)]
    Guard(#[from] GuardTripped),
    #[error(transparent)]
    DeleteFailures(#[from] DeleteFailures),
    #[error("verify failed: {0}")]
    Verify(#[from] VerifyFailure),
    #[error(transparent)]
    Relist(#[from] RelistError),
    #[error(transparent)]
    Interrupted(#[from] Stopped),
    #[error(transparent)]
    Internal(#[from] Bug),
}

impl From<DecideStageError> for GcError {
    fn from(error: DecideStageError) -> Self {
        match error {
            DecideStageError::Listing(e) => e.into(),
            DecideStageError::Held(e) => e.into(),
            DecideStageError::Plan(e) => e.into(),
            DecideStageError::Stopped(e) => e.into(),
            DecideStageError::Bug(e) => e.into(),
        }
    }
}

impl From<VerifyError> for GcError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Spill(e) => e.into(),
            VerifyError::Plan(e) => e.into(),
        }
    }
}

impl From<AccountingError> for GcError {
    fn from(error: AccountingError) -> Self {
        match error {
            AccountingError::Spill(e) => e.into(),
            AccountingError::Plan(e) => e.into(),
        }
    }
}

impl From<ManifestsStageError> for GcError {
    fn from(error: ManifestsStageError) -> Self {
        match error {
            ManifestsStageError::Held(e) => e.into(),
            ManifestsStageError::Location(e) => e.into(),
            ManifestsStageError::Deleting(e) => e.into(),
            ManifestsStageError::Ingest(e) => e.into(),
            ManifestsStageError::Stopped(e) => e.into(),
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
            GcError::LiveSet(_) | GcError::Deleting(_) => Exit::LiveSet,
            GcError::Manifest(e) => e.exit(),
            GcError::Listing(e) => e.exit(),
            GcError::Relist(e) => e.exit(),
            GcError::Held(_) => Exit::Listing,
            GcError::SpoolRead(_) | GcError::Internal(_) => Exit::Internal,
            GcError::Guard(_) => Exit::Guard,
            GcError::DeleteFailures(_) => Exit::DeleteFailures,
            GcError::Verify(_) => Exit::Verify,
            GcError::Interrupted(Stopped(signal)) => Exit::from(*signal),
        }
    }

    /// What to do next: the advice of the run's exit, unless this error knows better.
    pub(crate) fn next_step(&self) -> &'static str {
        if let GcError::Deleting(DeletingError::Unknown { .. }) = self {
            return "check that the live set and --deleting-snapshots are complete: each snapshot named has manifests but is in neither; nothing was changed";
        }
        if self.store_directory_missing() {
            return "check --store: the bucket directory named in the error does not exist under it; nothing was changed";
        }
        self.exit().next_step()
    }

    /// A `file://` store whose bucket directory is not there: a wrong `--store`, not a bad
    /// manifest or a failing store.
    fn store_directory_missing(&self) -> bool {
        let missing = |e: &StoreError| matches!(e, StoreError::NoSuchBucket { .. });
        match self {
            GcError::Store(e) | GcError::Listing(ListingError::Store(e)) => missing(e),
            GcError::Manifest(IngestError::Bucket { source, .. }) => missing(source.as_ref()),
            GcError::Relist(RelistError::Listing(ListingError::Store(e))) => missing(e),
            _ => false,
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
            (Exit::Internal, 9),
            (Exit::Interrupted, 130),
            (Exit::Terminated, 143),
        ];
        for (exit, code) in codes {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
        assert_eq!(GcError::Interrupted(Stopped(Signal::Terminate)).exit_code(), 143);
        assert_eq!(GcError::Verify(VerifyFailure::GoneAfter { count: 1 }).exit_code(), 8);
        let folder =
            IngestError::Inventory { bucket: "meta".into(), prefix: "p/snapshots/".into(), why: "HTTP 503".into() };
        assert_eq!(GcError::Manifest(folder).exit_code(), 5, "a failed listing of the snapshots folder (spec 10.2)");
    }

    #[test]
    fn bugs_exit_9_whatever_stage_they_surface_in() {
        let bugs = [
            GcError::Internal(Bug::new("an invariant")),
            GcError::Manifest(IngestError::Task("worker panicked".into())),
            GcError::Manifest(IngestError::Bug(Bug::new("spill still shared"))),
            GcError::Listing(ListingError::Task("panicked".into())),
            GcError::Relist(RelistError::Bug(Bug::new("spill task"))),
            GcError::SpoolRead(PlanError::Spool { dir: "/w".into(), source: std::io::ErrorKind::NotFound.into() }),
        ];
        for bug in bugs {
            assert_eq!(bug.exit(), Exit::Internal, "{bug}");
            assert!(bug.next_step().contains("bug report"), "{bug}");
        }
        let listing = GcError::Listing(ListingError::Closed);
        assert_eq!(listing.exit(), Exit::Listing, "a listing failure is not a bug");
    }

    #[test]
    fn a_missing_store_directory_names_the_flag() {
        let missing = || StoreError::NoSuchBucket { bucket: "snapshots".into(), path: "/nope/snapshots".into() };
        let in_manifests = GcError::Manifest(IngestError::Bucket {
            bucket: "snapshots".into(),
            prefix: "p/".into(),
            source: Box::new(missing()),
        });
        assert_eq!(in_manifests.exit(), Exit::Manifest, "the exit code is the stage's");
        for error in [in_manifests, GcError::Listing(ListingError::Store(missing())), GcError::Store(missing())] {
            assert!(error.next_step().starts_with("check --store"), "{error}");
        }
        let manifest = GcError::Manifest(IngestError::Task("x".into()));
        assert!(!manifest.next_step().contains("--store"));
    }
}
