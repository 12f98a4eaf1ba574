//! The run's error: one variant per stage, each stage's error saying its exit code (spec
//! section 7), and [`GcError::exit`] asking it.

use crate::bug::Bug;
use crate::config::ConfigError;
use crate::decide::DecideStageError;
use crate::deleting::{AccountingError, DeletingError, LiveSetStageError, ReclaimError};
use crate::execute::ExecuteStageError;
pub use crate::exit::Exit;
use crate::listing::ListingError;
use crate::locations::LocationError;
use crate::manifest_fetch::{IngestError, ManifestsStageError};
use crate::plan::PlanStageError;
pub use crate::stop::Signal;
use crate::stop::Stopped;
use crate::store::StoreError;
use crate::verify::{RelistError, VerifyStageError};

/// How a run failed: the stage that failed, in the order the run reaches them, or one of the
/// outcomes that can end any stage (a signal, a bug).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The flags, checked against the live set (the cutoff rule).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The live set, and the deleting set checked against it.
    #[error(transparent)]
    LiveSet(#[from] LiveSetStageError),
    /// The run's location table: the legacy default and the `--location`s.
    #[error("location: {0}")]
    Locations(#[from] LocationError),
    /// The manifests stage. Boxed, as `Decide`: the two largest stage errors would make every
    /// `Result` of the run larger (clippy's `result_large_err`).
    #[error(transparent)]
    Manifests(Box<ManifestsStageError>),
    /// The listing ‖ decide stage (boxed: see `Manifests`).
    #[error(transparent)]
    Decide(Box<DecideStageError>),
    /// `--plan-out` written, or a reviewed plan read (`--apply-plan`).
    #[error(transparent)]
    Plan(#[from] PlanStageError),
    /// `--verify`'s checks (before the deletes, or of a reviewed plan, and after), and its verdict.
    #[error(transparent)]
    Verify(#[from] VerifyStageError),
    /// The guard, then the deletes.
    #[error(transparent)]
    Execute(#[from] ExecuteStageError),
    /// What each deleting snapshot named and freed (spec 9.2).
    #[error(transparent)]
    Accounting(#[from] AccountingError),
    /// The deleting snapshots' manifests deleted, after the chunks (spec 9.2).
    #[error(transparent)]
    Reclaim(#[from] ReclaimError),
    /// `--explain`'s lookups of each id.
    #[error(transparent)]
    Explain(ListingError),
    /// A signal stopped the run between stages.
    #[error(transparent)]
    Interrupted(#[from] Stopped),
    /// A bug: a panic, or an invariant broken between stages.
    #[error(transparent)]
    Internal(#[from] Bug),
}

impl From<ManifestsStageError> for GcError {
    fn from(error: ManifestsStageError) -> Self {
        GcError::Manifests(Box::new(error))
    }
}

impl From<DecideStageError> for GcError {
    fn from(error: DecideStageError) -> Self {
        GcError::Decide(Box::new(error))
    }
}

impl GcError {
    /// How the run ends when it fails with this error: the failed stage's say.
    pub fn exit(&self) -> Exit {
        match self {
            GcError::Config(_) | GcError::Locations(_) => Exit::Usage,
            GcError::LiveSet(e) => e.exit(),
            GcError::Manifests(e) => e.exit(),
            GcError::Decide(e) => e.exit(),
            GcError::Plan(e) => e.exit(),
            GcError::Verify(e) => e.exit(),
            GcError::Execute(e) => e.exit(),
            GcError::Accounting(e) => e.exit(),
            GcError::Reclaim(e) => e.exit(),
            GcError::Explain(e) => e.exit(),
            GcError::Interrupted(Stopped(signal)) => Exit::from(*signal),
            GcError::Internal(_) => Exit::Internal,
        }
    }

    /// What to do next: the advice of the run's exit, unless this error knows better.
    pub(crate) fn next_step(&self) -> &'static str {
        if self.unknown_snapshots() {
            return "check that the live set and --deleting-snapshots are complete: each snapshot named has manifests but is in neither; nothing was changed";
        }
        if self.store_directory_missing() {
            return "check --store: the bucket directory named in the error does not exist under it; nothing was changed";
        }
        self.exit().next_step()
    }

    /// Snapshots in the snapshots folder that are neither live nor being deleted (spec 9.2).
    fn unknown_snapshots(&self) -> bool {
        let unknown = |e: &DeletingError| matches!(e, DeletingError::Unknown { .. });
        match self {
            GcError::LiveSet(LiveSetStageError::Deleting(e)) => unknown(e),
            GcError::Manifests(stage) => matches!(stage.as_ref(), ManifestsStageError::Deleting(e) if unknown(e)),
            _ => false,
        }
    }

    /// A `file://` store whose bucket directory is not there: a wrong `--store`, not a bad
    /// manifest or a failing store.
    fn store_directory_missing(&self) -> bool {
        let missing = |e: &StoreError| matches!(e, StoreError::NoSuchBucket { .. });
        match self {
            GcError::Execute(ExecuteStageError::Store(e))
            | GcError::Reclaim(ReclaimError::Store(e))
            | GcError::Explain(ListingError::Store(e))
            | GcError::Verify(VerifyStageError::Relist(RelistError::Listing(ListingError::Store(e)))) => missing(e),
            GcError::Decide(stage) => {
                matches!(stage.as_ref(), DecideStageError::Listing(ListingError::Store(e)) if missing(e))
            }
            GcError::Manifests(stage) => matches!(
                stage.as_ref(),
                ManifestsStageError::Ingest(IngestError::Bucket { source, .. }) if missing(source)
            ),
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
    use crate::plan::PlanError;
    use crate::verify::VerifyFailure;

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
        let verify = GcError::Verify(VerifyFailure::GoneAfter { count: 1 }.into());
        assert_eq!(verify.exit_code(), 8);
        assert!(verify.to_string().starts_with("verify failed: "), "{verify}");
        let folder =
            IngestError::Inventory { bucket: "meta".into(), prefix: "p/snapshots/".into(), why: "HTTP 503".into() };
        assert_eq!(
            GcError::from(ManifestsStageError::from(folder)).exit_code(),
            5,
            "a failed listing of the snapshots folder (spec 10.2)"
        );
    }

    #[test]
    fn bugs_exit_9_whatever_stage_they_surface_in() {
        let spool = || PlanError::Spool { dir: "/w".into(), source: std::io::ErrorKind::NotFound.into() };
        let bugs = [
            GcError::Internal(Bug::new("an invariant")),
            GcError::from(ManifestsStageError::from(IngestError::Task("worker panicked".into()))),
            GcError::from(ManifestsStageError::from(IngestError::Bug(Bug::new("spill still shared")))),
            GcError::from(DecideStageError::from(ListingError::Task("panicked".into()))),
            GcError::from(DecideStageError::from(Bug::new("the listing task"))),
            GcError::Explain(ListingError::Task("panicked".into())),
            GcError::Verify(RelistError::Bug(Bug::new("spill task")).into()),
            GcError::Execute(ExecuteStageError::SpoolRead(spool())),
        ];
        for bug in bugs {
            assert_eq!(bug.exit(), Exit::Internal, "{bug}");
            assert!(bug.next_step().contains("bug report"), "{bug}");
        }
        let listing = GcError::from(DecideStageError::from(ListingError::Closed));
        assert_eq!(listing.exit(), Exit::Listing, "a listing failure is not a bug");
        let read_back = GcError::Accounting(spool().into());
        assert_eq!(read_back.exit(), Exit::Usage, "a spool the accounting cannot read is exit 2, as before");
    }

    #[test]
    fn a_missing_store_directory_names_the_flag() {
        let missing = || StoreError::NoSuchBucket { bucket: "snapshots".into(), path: "/nope/snapshots".into() };
        let bucket =
            IngestError::Bucket { bucket: "snapshots".into(), prefix: "p/".into(), source: Box::new(missing()) };
        let in_manifests = GcError::from(ManifestsStageError::from(bucket));
        assert_eq!(in_manifests.exit(), Exit::Manifest, "the exit code is the stage's");
        let in_listing = GcError::from(DecideStageError::from(ListingError::Store(missing())));
        let in_execute = GcError::Execute(missing().into());
        for error in [in_manifests, in_listing, in_execute] {
            assert!(error.next_step().starts_with("check --store"), "{error}");
        }
        let manifest = GcError::from(ManifestsStageError::from(IngestError::Task("x".into())));
        assert!(!manifest.next_step().contains("--store"));
    }
}
