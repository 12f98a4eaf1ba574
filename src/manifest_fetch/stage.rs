//! The manifests stage as a run calls it: the filter sized from the inventory, the sinks
//! the mode wants, every live manifest ingested, and the stage's counts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{Instrument, info, info_span};

use crate::bloom::RefFilter;
use crate::bug::Bug;
use crate::config::Config;
use crate::ids::SnapshotId;
use crate::live_set::LiveSet;
use crate::locations::LocationTable;
use crate::spill::RangeSpill;
use crate::store::Stores;

use super::{Ingest, IngestError, IngestStats, Inventory, RefSink, ingest_all};

/// Which sinks a run's manifests feed.
#[derive(Clone, Default)]
pub(crate) struct Wanted {
    /// The filter the decide stage reads (a run that plans).
    pub filter: bool,
    /// The exact references, spilled by id range (`--verify`, `--apply-plan`).
    pub spill: bool,
    /// Any other sink (`--explain`'s lookups).
    pub explain: Option<Arc<dyn RefSink>>,
    /// The deleting snapshots' ids (spec 9.2's accounting): the live references this filter
    /// holds are spilled, to tell which of their chunks are shared with a live snapshot.
    pub named: Option<Arc<RefFilter>>,
}

/// What the stage leaves: the complete filter, the exact references spilled, its counts.
pub struct Referenced {
    pub filter: Option<Arc<RefFilter>>,
    pub spill: Option<RangeSpill>,
    /// The live references that [`Wanted::named`] holds.
    pub shared: Option<RangeSpill>,
    pub counts: ManifestCounts,
    pub elapsed_ms: u64,
}

/// The stage's counts, as the report shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ManifestCounts {
    pub legacy: u64,
    pub unified: u64,
    /// Ids given to the sinks, duplicates across snapshots included.
    pub referenced_ids: u64,
    /// The filter's size and expected false-positive rate, when one was built.
    pub bloom_bits: u64,
    pub bloom_expected_fpr: f64,
}

/// Where the stage sends referenced ids: the filter, verify's spill, explain.
struct Refs {
    filter: Option<Arc<RefFilter>>,
    spill: Option<Arc<RangeSpill>>,
    explain: Option<Arc<dyn RefSink>>,
    shared: Option<(Arc<RefFilter>, Arc<RangeSpill>)>,
    /// Test kit only: ids the filter is not given (`Config::filter_omits`).
    #[cfg(feature = "test-kit")]
    filter_omits: Vec<[u8; 32]>,
}

impl Refs {
    #[cfg(feature = "test-kit")]
    fn filter_ids<'a>(&self, ids: &'a [[u8; 32]]) -> std::borrow::Cow<'a, [[u8; 32]]> {
        if self.filter_omits.is_empty() {
            return ids.into();
        }
        ids.iter().filter(|id| !self.filter_omits.contains(id)).copied().collect::<Vec<_>>().into()
    }

    #[cfg(not(feature = "test-kit"))]
    fn filter_ids<'a>(&self, ids: &'a [[u8; 32]]) -> &'a [[u8; 32]] {
        ids
    }
}

impl RefSink for Refs {
    fn add(&self, snapshot: &SnapshotId, location: u32, ids: &[[u8; 32]]) {
        if let Some(filter) = &self.filter {
            filter.insert_all(&self.filter_ids(ids));
        }
        if let Some(spill) = &self.spill {
            spill.add(location, ids);
        }
        if let Some(explain) = &self.explain {
            explain.add(snapshot, location, ids);
        }
        if let Some((named, spill)) = &self.shared {
            spill.add_held(location, ids, named);
        }
    }
}

/// Reads every live snapshot's manifests the inventory found into the sinks `wanted` asks
/// for; the locations unified manifests name are registered in `locations` (which starts
/// their listing).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_manifests(
    stores: &Stores,
    config: &Config,
    live: &LiveSet,
    inventory: Inventory,
    locations: &LocationTable,
    legacy_location: u32,
    wanted: Wanted,
    stats: &Arc<IngestStats>,
) -> Result<Referenced, IngestError> {
    let t = Instant::now();
    let span = info_span!("manifests", snapshots = live.snapshots.len());
    let filter =
        wanted.filter.then(|| Arc::new(RefFilter::for_run(inventory.id_bound, config.bloom_fpr, config.bloom_seed)));
    let spill = wanted.spill.then(|| RangeSpill::create(&config.work_dir)).transpose()?.map(Arc::new);
    let shared = match wanted.named {
        Some(named) => Some((named, Arc::new(RangeSpill::create(&config.work_dir)?))),
        None => None,
    };
    let ingest = Ingest {
        stores: stores.clone(),
        meta_bucket: config.meta_bucket.clone(),
        partition: config.partition.clone(),
        legacy_location,
        sink: Arc::new(Refs {
            filter: filter.clone(),
            spill: spill.clone(),
            explain: wanted.explain,
            shared: shared.clone(),
            #[cfg(feature = "test-kit")]
            filter_omits: config.filter_omits.clone(),
        }),
        locations: locations.clone(),
        stats: Arc::clone(stats),
    };
    ingest_all(&ingest, inventory, config.manifest_concurrency).instrument(span).await?;
    drop(ingest);
    let counts = ManifestCounts {
        legacy: stats.legacy.load(Ordering::Relaxed),
        unified: stats.unified.load(Ordering::Relaxed),
        referenced_ids: stats.referenced_ids.load(Ordering::Relaxed),
        bloom_bits: filter.as_ref().map_or(0, |f| f.num_bits() as u64),
        bloom_expected_fpr: filter.as_ref().map_or(0.0, |f| f.expected_fpr()),
    };
    let elapsed_ms = t.elapsed().as_millis() as u64;
    info!(
        legacy = counts.legacy,
        unified = counts.unified,
        referenced_ids = counts.referenced_ids,
        elapsed_ms,
        "manifests ingested"
    );
    // Every worker is done and the sink dropped: these are the last clones of the spills.
    let unshared =
        |spill: Arc<RangeSpill>| Arc::try_unwrap(spill).map_err(|_| Bug::new("a reference spill is still shared"));
    let spill = spill.map(unshared).transpose()?;
    let shared = shared.map(|(_, spill)| unshared(spill)).transpose()?;
    Ok(Referenced { filter, spill, shared, counts, elapsed_ms })
}
