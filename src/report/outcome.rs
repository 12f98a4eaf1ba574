//! What the stages of a run hand back, gathered for the report: [`Outcome`], a plan's
//! [`PlanCounts`] and the [`StoreUsage`] of the bill.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::bill::Prices;
use crate::deleting::{DeletingSnapshot, SnapshotCensus};
use crate::execute::{DeleteFailure, ExecuteStats, HeldFound};
use crate::explain::Explanation;
use crate::locations::Location;
use crate::manifest_fetch::ManifestCounts as ManifestTotals;
use crate::plan::{Guard, LocationTally, Planned};
use crate::store::{DeleteBatching, RequestCounts};
use crate::verify::VerifyReport;

/// What the stages of one run returned, kept as each finishes. The report is built from it
/// once, when the run ends; nothing reads it to decide anything.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The live set's snapshot count and `taken_at`.
    pub live: Option<(u64, DateTime<Utc>)>,
    pub manifests: Option<ManifestTotals>,
    /// The cross-check's census of the snapshots folder (spec 9.2).
    pub snapshots: Option<SnapshotCensus>,
    /// Candidate locations (an `--explain` run knows them without a plan).
    pub locations: u64,
    pub plan: Option<PlanCounts>,
    /// Distinct (id, location) references; known only under `--verify`.
    pub referenced_distinct: Option<u64>,
    pub held: HeldFound,
    pub executed: Option<ExecuteStats>,
    pub verify: Option<VerifyReport>,
    pub explain: Option<Vec<Explanation>>,
    /// Deleting snapshots whose manifests an execute reclaimed, or a dry run would.
    pub reclaimed: Option<Vec<String>>,
    pub reclaimable: Option<Vec<String>>,
    /// What each deleting snapshot named and freed (spec 9.2's accounting).
    pub deleting: Option<Vec<DeletingSnapshot>>,
    /// The reclaim's failed deletes of manifest objects, reported beside the chunks'.
    pub reclaim_failures: Vec<DeleteFailure>,
    pub durations: BTreeMap<&'static str, u64>,
}

impl Outcome {
    /// Records how long `stage` took: from `since` until now.
    pub fn took(&mut self, stage: &'static str, since: Instant) {
        self.durations.insert(stage, since.elapsed().as_millis() as u64);
    }
}

/// A plan's counts, as the report shows them.
#[derive(Debug, Clone, Default)]
pub struct PlanCounts {
    pub locations: Vec<Location>,
    pub per_location: Vec<LocationTally>,
    pub totals: LocationTally,
    pub guard: Guard,
    pub expected_false_positives: f64,
}

impl PlanCounts {
    pub fn of(planned: &Planned, expected_false_positives: f64) -> Self {
        PlanCounts {
            locations: planned.locations.clone(),
            per_location: planned.per_location.clone(),
            totals: planned.totals.clone(),
            guard: planned.guard.clone(),
            expected_false_positives,
        }
    }
}

/// What the run asked of the store, for the report's bill (spec 8.6).
#[derive(Debug, Clone)]
pub struct StoreUsage {
    pub requests: RequestCounts,
    pub retries: u64,
    pub prices: Option<Prices>,
    pub delete_batch: usize,
    pub batching: DeleteBatching,
}
