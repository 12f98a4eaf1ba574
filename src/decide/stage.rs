//! The listing ‖ decide stage as a run calls it: the listing task (each location passed on
//! once what a killed run held aside in it is back), and the decide loop over its parts,
//! which waits for the filter and plans each part as it arrives.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{Instrument, info, info_span};

use crate::bloom::RefFilter;
use crate::bug::Bug;
use crate::exit::Exit;
use crate::held::{HeldError, HeldFound, put_back_before_listing};
use crate::listing::{Listed, ListingError, PartSender, list_stream};
use crate::locations::Location;
use crate::plan::{Plan, PlanError, PlanSpool};
use crate::spill::{RangeSpill, SpillError};
use crate::stop::{Stop, Stopped};
use crate::store::Stores;

use super::{Decider, decide_stream};

/// How the listing ‖ decide stage fails.
#[derive(Debug, thiserror::Error)]
pub enum DecideStageError {
    #[error(transparent)]
    Listing(#[from] ListingError),
    #[error(transparent)]
    Held(#[from] HeldError),
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error(transparent)]
    Bug(#[from] Bug),
}

impl DecideStageError {
    pub fn exit(&self) -> Exit {
        match self {
            DecideStageError::Listing(e) => e.exit(),
            // What a killed run held aside could not be put back before the listing.
            DecideStageError::Held(e) => e.exit(),
            DecideStageError::Spill(e) => e.exit(),
            DecideStageError::Plan(e) => e.exit(),
            DecideStageError::Stopped(Stopped(signal)) => Exit::from(*signal),
            DecideStageError::Bug(_) => Exit::Internal,
        }
    }
}

/// What the decide stage watches the listing for, besides planning: `--verify`'s listing,
/// and the listed chunks the deleting snapshots name (with the filter of their ids).
pub(crate) struct Watched {
    pub verify: Option<RangeSpill>,
    pub named: Option<(Arc<RefFilter>, RangeSpill)>,
}

impl Watched {
    /// Empty spills under `work_dir` for what is watched: `--verify`'s listing when `verify`,
    /// and the listed chunks `named` holds.
    pub fn create(work_dir: &Path, verify: bool, named: Option<Arc<RefFilter>>) -> Result<Self, SpillError> {
        let spill = || RangeSpill::create(work_dir);
        let named = named.map(|filter| spill().map(|spill| (filter, spill))).transpose()?;
        Ok(Self { verify: verify.then(spill).transpose()?, named })
    }
}

/// What the listing and the decide stage leave together.
pub(crate) struct Decided {
    pub plan: Plan,
    pub watched: Watched,
    pub listing_ms: u64,
    /// Chunks an earlier run left held aside, found (and put back) before the listing.
    pub held: HeldFound,
}

/// The listing, running: how long it took, and what an earlier run left held.
pub(crate) struct ListingTask(AbortOnDropHandle<Result<(u64, HeldFound), DecideStageError>>);

/// What the listing needs besides the locations and the parts' channel.
pub(crate) struct ListingSettings {
    pub concurrency: usize,
    /// Counts listed chunks for the progress display.
    pub listed: Arc<AtomicU64>,
    /// Held chunks are only counted, never put back.
    pub dry_run: bool,
}

/// Starts listing each location `locations` sends, parts to `out`, as a task of its own.
pub(crate) fn start_listing(
    stores: &Stores,
    locations: mpsc::UnboundedReceiver<(u32, Location)>,
    out: PartSender,
    settings: ListingSettings,
) -> ListingTask {
    let stores = stores.clone();
    let listing = async move {
        let t = Instant::now();
        let (restored, held) = mpsc::unbounded_channel();
        let putting_back = async {
            Ok::<_, DecideStageError>(put_back_before_listing(&stores, locations, restored, settings.dry_run).await?)
        };
        let listing = async {
            Ok::<_, DecideStageError>(
                list_stream(stores.clone(), held, settings.concurrency, settings.listed, out).await?,
            )
        };
        let (held, ()) = tokio::try_join!(putting_back, listing)?;
        let elapsed_ms = t.elapsed().as_millis() as u64;
        info!(elapsed_ms, "listing done");
        Ok((elapsed_ms, held))
    };
    ListingTask(AbortOnDropHandle::new(tokio::spawn(listing.instrument(info_span!("listing")))))
}

/// The decide loop's settings: the rule's cutoff, where the plan spools, what it must keep.
pub(crate) struct Deciding<'a> {
    pub filter: &'a Arc<RefFilter>,
    pub cutoff_ms: i64,
    pub work_dir: &'a Path,
    /// Someone reads the plan's records: a delete, `--plan-out` or `--verify`.
    pub needs_plan: bool,
    pub locations: usize,
    /// Counts planned chunks for the progress display.
    pub planned: Arc<AtomicU64>,
}

impl Deciding<'_> {
    /// Decides the listing's parts as they arrive (they waited in the bounded channel until
    /// the filter was complete), spooling the planned ones. Returns when the listing is done.
    /// On a stop the listing is aborted (dropped); the decide loop stops at its next part and
    /// drops the channel, which ends a `file://` walk still sending.
    pub async fn run(
        self,
        listing: ListingTask,
        parts: mpsc::Receiver<Listed>,
        watched: Watched,
        stop: &Stop,
    ) -> Result<Decided, DecideStageError> {
        let deciding = tokio::task::spawn_blocking(self.decide_blocking(parts, watched, stop.clone()));
        let listed = stop.unless_stopped(async { listing.0.await.map_err(|e| Bug::task("listing", &e))? });
        let listed = listed.await;
        let decided = deciding.await.map_err(|e| Bug::task("decide", &e))?;
        match (listed, decided) {
            (Ok((listing_ms, held)), Ok((plan, watched))) => Ok(Decided { plan, watched, listing_ms, held }),
            // The decide loop failed first and closed the channel: its error is the cause.
            (Err(DecideStageError::Listing(ListingError::Closed)), Err(error)) => Err(error.into()),
            (Err(error), _) => Err(error),
            (Ok(_), Err(error)) => Err(error.into()),
        }
    }

    fn decide_blocking(
        self,
        mut parts: mpsc::Receiver<Listed>,
        watched: Watched,
        stop: Stop,
    ) -> impl FnOnce() -> Result<(Plan, Watched), PlanError> + Send + 'static {
        // Without a reader of the plan, the accounting reads only the planned chunks the
        // deleting ids hold; without either, nothing is spooled.
        let accounting_only = watched.named.as_ref().filter(|_| !self.needs_plan).map(|(named, _)| Arc::clone(named));
        let needs_records = self.needs_plan || accounting_only.is_some();
        let spool = needs_records.then(|| PlanSpool::create(self.work_dir));
        let (filter, cutoff_ms, locations, planned) =
            (Arc::clone(self.filter), self.cutoff_ms, self.locations, self.planned);
        let span = info_span!("decide");
        move || {
            let _entered = span.enter();
            let mut decider = Decider::new(&filter, cutoff_ms, spool.transpose()?);
            if let Some(named) = &accounting_only {
                decider = decider.spooling_only(named);
            }
            let mut observe = |part: &Listed| {
                if let Some(spill) = &watched.verify {
                    spill.add_listed(part, &filter);
                }
                if let Some((named, spill)) = &watched.named {
                    spill.add_listed(part, named);
                }
            };
            let stopped = || stop.signal().is_some();
            let result = decide_stream(&mut parts, &mut decider, &mut observe, &planned, &stopped);
            // Dropped now, so a listing still sending stops at once.
            drop(parts);
            result.and_then(|()| decider.finish(locations)).map(|plan| (plan, watched))
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    fn bloom() -> Arc<RefFilter> {
        Arc::new(RefFilter::new(1, 0.01, 7))
    }

    /// A decide loop that cannot spool fails the stage with its own error, not with the
    /// listing's `Closed` that its failure caused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_decide_loop_is_the_cause_not_the_closed_channel() {
        let stores = Stores::memory();
        let location = Location::new("chunks", "p").unwrap();
        let bucket = stores.bucket("chunks").unwrap();
        for i in 0..3000u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let key = location.chunk_key(&crate::ids::ChunkId(id));
            bucket.put(&key.as_str().into(), PutPayload::from_static(b"x")).await.unwrap();
        }
        let (to_listing, locations) = mpsc::unbounded_channel();
        to_listing.send((0, location)).unwrap();
        drop(to_listing);
        let (out, parts) = mpsc::channel(1);
        let settings = ListingSettings { concurrency: 1, listed: Arc::default(), dry_run: true };
        let listing = start_listing(&stores, locations, out, settings);
        let filter = bloom();
        let missing = std::env::temp_dir().join("gc-decide-stage-test-no-such-dir/deeper");
        let deciding = Deciding {
            filter: &filter,
            cutoff_ms: i64::MAX,
            work_dir: &missing,
            needs_plan: true,
            locations: 1,
            planned: Arc::default(),
        };
        let watched = Watched { verify: None, named: None };
        let result = deciding.run(listing, parts, watched, &Stop::default()).await;
        assert!(matches!(result, Err(DecideStageError::Plan(_))), "{:?}", result.err());
    }

    /// A stop ends the stage with the signal, even while the listing still runs.
    #[tokio::test]
    async fn a_stop_ends_the_stage() {
        let stores = Stores::memory();
        // The locations' sender stays open: the listing never ends by itself.
        let (_to_listing, locations) = mpsc::unbounded_channel();
        let (out, parts) = mpsc::channel(1);
        let settings = ListingSettings { concurrency: 1, listed: Arc::default(), dry_run: true };
        let listing = start_listing(&stores, locations, out, settings);
        let filter = bloom();
        let work_dir = std::env::temp_dir();
        let deciding = Deciding {
            filter: &filter,
            cutoff_ms: 0,
            work_dir: &work_dir,
            needs_plan: false,
            locations: 0,
            planned: Arc::default(),
        };
        let stop = Stop::default();
        stop.trigger(crate::stop::Signal::Interrupt);
        let result = deciding.run(listing, parts, Watched { verify: None, named: None }, &stop).await;
        assert!(matches!(result, Err(DecideStageError::Stopped(_))), "{:?}", result.err());
    }
}
