//! Verify's after-image: every location listed again after the deletes, the chunks the
//! filter holds spilled by id range.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::mpsc;
use tracing::{Instrument, info_span};

use crate::bloom::RefFilter;
use crate::bug::Bug;
use crate::listing::{Listed, ListingError, list_stream};
use crate::locations::Location;
use crate::store::Stores;

use crate::plan::SpooledPlan;

use super::{VerifyError, VerifyFailure, VerifyReport, check_before, check_planned};
use crate::exit::Exit;
use crate::spill::{RangeSpill, SpillError, Spilled};

/// Parts waiting between the listing and the spill, at most.
const PARTS_BUFFERED: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RelistError {
    #[error(transparent)]
    Listing(#[from] ListingError),
    #[error(transparent)]
    Spill(#[from] VerifyError),
    #[error(transparent)]
    Bug(#[from] Bug),
}

impl RelistError {
    pub fn exit(&self) -> Exit {
        match self {
            RelistError::Listing(e) => e.exit(),
            RelistError::Spill(e) => e.exit(),
            RelistError::Bug(_) => Exit::Internal,
        }
    }
}

impl From<SpillError> for RelistError {
    fn from(error: SpillError) -> Self {
        RelistError::Spill(error.into())
    }
}

/// `--apply-plan`'s check before any delete: the reviewed plan's chunks that a live manifest
/// references now (every one of them refuses the plan).
pub(crate) fn check_reviewed(
    refs: &Spilled,
    plan: &SpooledPlan,
    locations: &[Location],
) -> Result<VerifyReport, VerifyError> {
    let referenced_now = check_planned(refs, plan)?;
    let spill_bytes = refs.bytes_on_disk() + plan.bytes_on_disk();
    Ok(VerifyReport::of_reviewed_plan(&referenced_now, locations, spill_bytes))
}

/// Lists every location again, spilling what the filter holds.
pub(crate) async fn relist(
    stores: &Stores,
    locations: &[Location],
    filter: &Arc<RefFilter>,
    work_dir: &Path,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> Result<Spilled, RelistError> {
    let (tx, rx) = mpsc::unbounded_channel();
    for (index, location) in locations.iter().enumerate() {
        let _ = tx.send((index as u32, location.clone()));
    }
    drop(tx);
    let spill = RangeSpill::create(work_dir)?;
    let (out, mut parts) = mpsc::channel::<Listed>(PARTS_BUFFERED);
    let listing = list_stream(stores.clone(), rx, concurrency, progress, out).instrument(info_span!("verify_relist"));
    let filter = Arc::clone(filter);
    let spilling = tokio::task::spawn_blocking(move || {
        while let Some(part) = parts.blocking_recv() {
            spill.add_listed(&part, &filter);
        }
        spill
    });
    let listed = listing.await;
    let spill = spilling.await.map_err(|e| Bug::task("verify spill", &e))?;
    listed?;
    Ok(spill.finish()?)
}

/// What `--verify` keeps from before the deletes for the check after them: the exact
/// references, the listing before, the filter to spill the listing after, its verdict so far.
pub(crate) struct AfterCheck {
    pub refs: Spilled,
    pub before: Spilled,
    pub filter: Arc<RefFilter>,
    pub verify: VerifyReport,
}

impl AfterCheck {
    /// [`Self::before_deletes`] when the run spilled what `--verify` needs: the live
    /// references, the listing, and a plan. `None` otherwise (no `--verify`, or no plan).
    pub(crate) fn prepare(
        refs: Option<RangeSpill>,
        before: Option<RangeSpill>,
        plan: Option<&SpooledPlan>,
        filter: Arc<RefFilter>,
        locations: &[Location],
    ) -> Result<Option<(Self, u64)>, VerifyError> {
        let (Some(refs), Some(before), Some(plan)) = (refs, before, plan) else {
            return Ok(None);
        };
        Self::before_deletes(refs.finish()?, before.finish()?, plan, filter, locations).map(Some)
    }

    /// `--verify`'s checks before any delete over the exact references, the listing and the
    /// plan. Returns the check to run after the deletes (its report holds the verdict so
    /// far), and how many distinct ids the live manifests reference.
    pub(crate) fn before_deletes(
        refs: Spilled,
        before: Spilled,
        plan: &SpooledPlan,
        filter: Arc<RefFilter>,
        locations: &[Location],
    ) -> Result<(Self, u64), VerifyError> {
        let checks = check_before(&refs, &before, plan)?;
        let spill_bytes = refs.bytes_on_disk() + before.bytes_on_disk() + plan.bytes_on_disk();
        let verify = VerifyReport::before_deletes(&checks, locations, spill_bytes);
        Ok((AfterCheck { refs, before, filter, verify }, checks.referenced_distinct))
    }

    /// Lists every location again; a referenced chunk listed before and not now fails. Returns
    /// the report with the verdict.
    pub async fn check(
        self,
        stores: &Stores,
        locations: &[Location],
        work_dir: &Path,
        concurrency: usize,
        progress: Arc<AtomicU64>,
    ) -> Result<(VerifyReport, Result<(), VerifyFailure>), RelistError> {
        let AfterCheck { refs, before, filter, mut verify } = self;
        let relisted = relist(stores, locations, &filter, work_dir, concurrency, progress).await?;
        let missing = super::check_after(&refs, &before, &relisted)?;
        let verdict = verify.conclude_after(&missing, locations, relisted.bytes_on_disk());
        Ok((verify, verdict))
    }
}
