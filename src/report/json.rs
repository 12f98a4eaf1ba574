//! The report's shape (`--report-out`, `--output json`; `schemas/report.v1.schema.json`) and
//! how it is built, once, from a run's [`Outcome`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use super::{Outcome, PlanCounts, StoreUsage};
use crate::bill::RequestBill;
use crate::config::Config;
use crate::deleting::{DeletingSnapshot, SnapshotCensus};
use crate::error::{Exit, GcError};
use crate::execute::{DeleteConditions, DeleteFailure, ExecuteStats, HeldFound};
use crate::mode::{Mode, ModeName};
use crate::plan::{Guard, rfc3339};
use crate::verify::VerifyReport;

/// Manifests read, by format (spec 3).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct ManifestCounts {
    /// Legacy `<snapshot>.manifest` (with its `.index`).
    pub legacy: u64,
    /// Unified `<snapshot>.snap`.
    pub unified: u64,
}

/// Counts of one location.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct LocationReport {
    pub bucket: String,
    pub prefix: String,
    pub listed_objects: u64,
    /// Listed objects whose names are chunk keys.
    pub chunks_scanned: u64,
    /// Listed objects that are not chunks: never deleted (spec 2, 9.4).
    pub foreign_objects: u64,
    /// A few foreign names, control characters escaped.
    pub foreign_sample: Vec<String>,
    pub young_kept: u64,
    pub referenced_kept: u64,
    pub planned_deletes: u64,
    pub planned_bytes: u64,
}

/// The filter of referenced ids.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct BloomReport {
    /// `--bloom-fpr`.
    pub fpr: f64,
    /// The filter's seed (`--bloom-seed`, or the one this run picked).
    pub seed: u64,
    pub bits: u64,
    /// The false-positive rate of the filter as filled.
    pub expected_fpr: f64,
}

/// The version of the report's shape, its `version` field: raised when a field is renamed,
/// removed or changes type (`schemas/report.v<N>.schema.json`).
pub(crate) const REPORT_VERSION: u32 = 1;

/// The report of one run (spec 6, 8, 9): `--report-out`, and stdout with `--output json`.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Report {
    /// The version of this shape; this schema's.
    #[schemars(extend("const" = REPORT_VERSION))]
    pub version: u32,
    pub partition: String,
    pub mode: ModeName,
    /// The `--store` URL.
    pub store: String,
    /// RFC 3339.
    pub cutoff: String,
    /// The live set's `taken_at` (RFC 3339), `null` when it was not read.
    pub taken_at: Option<String>,
    pub live_snapshots: u64,
    /// Live, deleting, being written, unclassified (spec 9.2).
    pub snapshots: SnapshotCensus,
    pub manifests: ManifestCounts,
    /// Ids inserted into the filter, duplicates across snapshots included.
    pub referenced_ids: u64,
    /// Distinct (id, location) references; known only under `--verify`.
    pub referenced_distinct: Option<u64>,
    /// Number of candidate locations; `per_location` has their counts.
    pub locations: u64,
    pub per_location: Vec<LocationReport>,
    /// Totals of `per_location`.
    pub listed_objects: u64,
    pub chunks_scanned: u64,
    pub foreign_objects: u64,
    pub young_kept: u64,
    pub referenced_kept: u64,
    pub refreshed_kept: u64,
    pub planned_deletes: u64,
    /// Of the planned deletes, those conditioned on the listing's version (no re-read):
    /// only the dry run's request estimate reads it.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) planned_versioned: u64,
    pub planned_bytes: u64,
    /// Garbage chunks the filter's false positives keep, expected.
    pub expected_false_positives: f64,
    pub guard: Guard,
    pub bloom: BloomReport,
    /// The `--plan-out` path, `null` without it.
    pub plan_out: Option<String>,
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// How many deletes failed; `failed_deletes` names them.
    pub delete_failures: u64,
    pub failed_deletes: Vec<DeleteFailure>,
    /// Planned deletes not started because a signal stopped the run.
    pub deletes_not_started: u64,
    /// Keys whose delete was sent tied to the object judged old, and not (spec 9.1).
    pub delete_conditions: DeleteConditions,
    /// Chunks an earlier, stopped run left renamed aside (`file://`, `memory://`), and how
    /// many this run put back (none in a dry run).
    pub held_chunks: HeldFound,
    /// Requests the store layer repeated after a transient error.
    pub store_retries: u64,
    /// `--verify`'s verdict, `null` without it.
    pub verify: Option<VerifyReport>,
    /// `--explain`: one answer per chunk id asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<crate::explain::Explanation>")]
    pub explain: Option<Vec<crate::explain::Explanation>>,
    /// The run's exit code (spec 7).
    pub exit_code: u8,
    /// The one-line error, `null` when the run succeeded.
    pub error: Option<String>,
    /// Wall time of each stage, milliseconds; `total` is the whole run.
    pub durations_ms: BTreeMap<&'static str, u64>,
    /// Store calls by kind and their estimated cost (spec 8.6).
    pub requests: Option<RequestBill>,
    /// Per deleting snapshot: the chunks its manifests name, shared with a live snapshot,
    /// freed (planned in a dry run, deleted by an execute) and not found (spec 9.2).
    pub deleting_snapshots: Vec<DeletingSnapshot>,
    /// Deleting snapshots whose manifest objects this run deleted (spec 9.2): the control
    /// plane may mark them deleted when the run exits 0.
    pub reclaimed_snapshots: Vec<String>,
    /// What an execute would reclaim (a dry run; empty when the guard would trip).
    pub reclaimable_snapshots: Vec<String>,
    /// The summary's `next` line: what to do after this run.
    #[serde(skip)]
    pub next_step: &'static str,
}

impl Report {
    /// The report of a run, built once from what its stages returned and how it ended.
    pub fn build(config: &Config, outcome: Outcome, error: Option<&GcError>, usage: StoreUsage) -> Self {
        let mut report = Report {
            version: REPORT_VERSION,
            partition: config.partition.to_string(),
            mode: config.mode.name(),
            store: config.store_url.clone(),
            cutoff: rfc3339(config.cutoff),
            bloom: BloomReport { fpr: config.bloom_fpr, seed: config.bloom_seed, ..BloomReport::default() },
            guard: Guard::unjudged(config.max_delete_fraction),
            plan_out: config.plan_out.as_ref().map(|p| p.display().to_string()),
            locations: outcome.locations,
            referenced_distinct: outcome.referenced_distinct,
            held_chunks: outcome.held,
            verify: outcome.verify,
            explain: outcome.explain,
            deleting_snapshots: outcome.deleting.unwrap_or_default(),
            reclaimed_snapshots: outcome.reclaimed.unwrap_or_default(),
            reclaimable_snapshots: outcome.reclaimable.unwrap_or_default(),
            durations_ms: outcome.durations,
            store_retries: usage.retries,
            ..Report::default()
        };
        if let Some((snapshots, taken_at)) = outcome.live {
            report.live_snapshots = snapshots;
            report.snapshots.live = snapshots;
            report.taken_at = Some(rfc3339(taken_at));
        }
        if let Some(census) = outcome.snapshots {
            report.snapshots = census;
        }
        if let Some(m) = outcome.manifests {
            report.manifests = ManifestCounts { legacy: m.legacy, unified: m.unified };
            report.referenced_ids = m.referenced_ids;
            report.bloom.bits = m.bloom_bits;
            report.bloom.expected_fpr = m.bloom_expected_fpr;
        }
        if let Some(plan) = outcome.plan {
            report.record_plan(plan);
        }
        if let Some(stats) = outcome.executed {
            report.record_execute(stats);
        }
        report.delete_failures += outcome.reclaim_failures.len() as u64;
        report.failed_deletes.extend(outcome.reclaim_failures);
        report.fill_requests(usage);
        match error {
            Some(error) => {
                report.exit_code = error.exit_code();
                report.error = Some(error.to_string());
                report.next_step = error.next_step();
            }
            None => report.next_step = success_next_step(&config.mode, &report.guard),
        }
        report
    }

    /// How the run ended, as its `exit_code` says (a code no exit has reads as a bug).
    pub fn exit(&self) -> Exit {
        Exit::try_from(self.exit_code).unwrap_or(Exit::Internal)
    }

    /// The report of a run that could not start (exit 2): the flags were valid, the rest
    /// was not.
    pub(crate) fn usage_error(config: &Config, message: String) -> Self {
        Report {
            partition: config.partition.to_string(),
            mode: config.mode.name(),
            exit_code: Exit::Usage.code(),
            error: Some(message),
            next_step: Exit::Usage.next_step(),
            ..Report::default()
        }
    }

    /// The listing and decision counts, per location and in total.
    fn record_plan(&mut self, plan: PlanCounts) {
        self.locations = plan.locations.len() as u64;
        self.per_location = plan
            .locations
            .iter()
            .zip(&plan.per_location)
            .map(|(location, t)| {
                if t.listing.foreign_objects > 0 {
                    tracing::warn!(location = %location, foreign = t.listing.foreign_objects, sample = ?t.listing.foreign_sample, "foreign objects (never deleted)");
                }
                LocationReport {
                    bucket: location.bucket().to_owned(),
                    prefix: location.prefix().to_owned(),
                    listed_objects: t.listing.listed_objects,
                    chunks_scanned: t.listing.chunks,
                    foreign_objects: t.listing.foreign_objects,
                    foreign_sample: t.listing.foreign_sample.clone(),
                    young_kept: t.young_kept,
                    referenced_kept: t.referenced_kept,
                    planned_deletes: t.planned,
                    planned_bytes: t.planned_bytes,
                }
            })
            .collect();
        let total = plan.totals;
        self.listed_objects = total.listing.listed_objects;
        self.chunks_scanned = total.listing.chunks;
        self.foreign_objects = total.listing.foreign_objects;
        self.young_kept = total.young_kept;
        self.referenced_kept = total.referenced_kept;
        self.planned_deletes = total.planned;
        self.planned_bytes = total.planned_bytes;
        self.planned_versioned = total.planned_versioned;
        self.expected_false_positives = plan.expected_false_positives;
        self.guard = plan.guard;
    }

    fn record_execute(&mut self, stats: ExecuteStats) {
        self.deleted = stats.deleted;
        self.deleted_bytes = stats.deleted_bytes;
        self.refreshed_kept = stats.refreshed_kept;
        self.delete_failures = stats.failures.len() as u64;
        self.failed_deletes = stats.failures;
        self.deletes_not_started = stats.not_started;
        self.delete_conditions = stats.conditions;
    }

    /// Fills `requests` from the calls this run made; a dry run also estimates what executing
    /// its plan would ask for.
    fn fill_requests(&mut self, usage: StoreUsage) {
        let mut bill = RequestBill::new(usage.requests, usage.prices).with_deleted(self.deleted);
        if self.mode == ModeName::DryRun {
            let planned: Vec<u64> = self.per_location.iter().map(|l| l.planned_deletes).collect();
            let re_reads = self.planned_deletes.saturating_sub(self.planned_versioned);
            bill = bill.with_execute_estimate(&planned, re_reads, usage.delete_batch as u64, usage.batching);
        }
        self.requests = Some(bill);
    }
}

/// What to do after a run that ended with exit 0.
pub(super) fn success_next_step(mode: &Mode, guard: &Guard) -> &'static str {
    match mode {
        Mode::Explain(_) => "nothing: --explain changes nothing",
        Mode::DryRun if guard.tripped => {
            "the guard would stop --execute: check the live set is complete before raising --max-delete-fraction"
        }
        Mode::DryRun => "review the plan (--plan-out), then rerun with --execute --verify",
        Mode::Execute | Mode::Apply(_) => Exit::Done.next_step(),
    }
}
