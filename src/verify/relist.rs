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

use super::{RangeSpill, Spilled, VerifyError, VerifyFailure, VerifyReport};

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

/// Lists every location again, spilling what the filter holds.
pub async fn relist(
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
pub struct AfterCheck {
    pub refs: Spilled,
    pub before: Spilled,
    pub filter: Arc<RefFilter>,
    pub verify: VerifyReport,
}

impl AfterCheck {
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
