//! The report (spec section 6): built from the counters the stages kept, printed as JSON or
//! as the human summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::bill::{Prices, RequestBill};
use crate::config::Config;
use crate::deleting::{DeletingSnapshot, SnapshotCensus};
use crate::error::{Exit, GcError};
use crate::execute::{DeleteConditions, DeleteFailure, ExecuteStats, HeldFound};
use crate::explain::Explanation;
use crate::locations::Location;
use crate::manifest_fetch::ManifestCounts as ManifestTotals;
use crate::mode::{Mode, ModeName};
use crate::plan::{Guard, LocationTally, Planned, rfc3339};
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
    pub durations: BTreeMap<&'static str, u64>,
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

/// Bytes in binary units, e.g. `1.5 GiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

    /// The human summary printed on stdout by default.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let n = thousands;
        let _ = writeln!(s, "gc_partition {} of partition {} (cutoff {})", self.mode, self.partition, self.cutoff);
        if let Some(error) = &self.error {
            let _ = writeln!(s, "  ERROR (exit {}): {error}", self.exit_code);
        }
        let _ = writeln!(
            s,
            "  live set     {} snapshots, taken at {}",
            n(self.live_snapshots),
            self.taken_at.as_deref().unwrap_or("?")
        );
        let c = &self.snapshots;
        let cross_check =
            if c.unclassified > 0 { " (not live: no cross-check without --deleting-snapshots)" } else { "" };
        let _ = writeln!(
            s,
            "  snapshots    {} live, {} deleting, {} being written, {} unclassified{cross_check}",
            n(c.live),
            n(c.deleting),
            n(c.being_written),
            n(c.unclassified)
        );
        let _ = writeln!(
            s,
            "  manifests    {} legacy, {} unified, {} referenced ids",
            n(self.manifests.legacy),
            n(self.manifests.unified),
            n(self.referenced_ids)
        );
        let _ = writeln!(
            s,
            "  listed       {} objects in {} locations: {} chunks, {} foreign (never touched)",
            n(self.listed_objects),
            self.locations,
            n(self.chunks_scanned),
            n(self.foreign_objects)
        );
        let _ = writeln!(
            s,
            "  kept         {} referenced, {} young (after cutoff), {} refreshed during the run",
            n(self.referenced_kept),
            n(self.young_kept),
            n(self.refreshed_kept)
        );
        let _ = writeln!(
            s,
            "  planned      {} deletes, {} (about {:.0} more kept by bloom false positives)",
            n(self.planned_deletes),
            human_bytes(self.planned_bytes),
            self.expected_false_positives
        );
        let guard = &self.guard;
        let verdict = if guard.tripped { "TRIPPED: --execute would delete nothing" } else { "ok" };
        let _ = writeln!(
            s,
            "  guard        {:.1}% of {} old chunks planned, limit {:.1}%: {verdict}",
            guard.fraction * 100.0,
            n(guard.old_chunks),
            guard.max_delete_fraction * 100.0
        );
        if matches!(self.mode, ModeName::Execute | ModeName::Apply) {
            let _ = writeln!(
                s,
                "  deleted      {} chunks, {}; {} failed; {} not started",
                n(self.deleted),
                human_bytes(self.deleted_bytes),
                n(self.delete_failures),
                n(self.deletes_not_started)
            );
            let c = &self.delete_conditions;
            let unconditional = if c.unconditional > 0 {
                " (the store cannot tell a refresh from the object judged: see doc/stores.md, How deletes are issued)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  conditions   {} deletes tied to the object judged old, {} unconditional{unconditional}",
                n(c.conditional),
                n(c.unconditional)
            );
        }
        if !self.deleting_snapshots.is_empty() {
            let d = &self.deleting_snapshots;
            let sum = |f: fn(&DeletingSnapshot) -> u64| d.iter().map(f).sum::<u64>();
            let unreadable = d.iter().filter(|s| s.error.is_some()).count();
            let not_found = d.iter().filter_map(|s| s.not_found).sum::<u64>();
            let _ = writeln!(
                s,
                "  deleting     {} snapshots name {} chunks: {} {} ({}), {} shared with live snapshots, {} not found{}",
                n(d.len() as u64),
                n(sum(|s| s.chunks)),
                n(sum(|s| s.freed_chunks)),
                if self.mode == ModeName::DryRun { "would be freed" } else { "freed" },
                human_bytes(sum(|s| s.freed_bytes)),
                n(sum(|s| s.shared_kept)),
                n(not_found),
                if unreadable > 0 {
                    format!("; {unreadable} with unreadable manifests (see the report)")
                } else {
                    String::new()
                }
            );
        }
        if !self.reclaimed_snapshots.is_empty() || !self.reclaimable_snapshots.is_empty() {
            let (done, would) = (self.reclaimed_snapshots.len(), self.reclaimable_snapshots.len());
            let _ = writeln!(
                s,
                "  reclaimed    {done} deleting snapshots' manifests{}",
                if would > 0 { format!(" ({would} would be, by --execute)") } else { String::new() }
            );
        }
        if self.held_chunks.found > 0 {
            let _ = writeln!(
                s,
                "  held         {} chunks left renamed aside by a stopped run, {} put back",
                n(self.held_chunks.found),
                n(self.held_chunks.put_back)
            );
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(
                s,
                "  verify       {}: {} planned but referenced, {} referenced missing{}",
                match v {
                    v if v.ok => "ok",
                    v if self.mode == ModeName::Execute && !v.after_checked && v.planned_but_referenced == 0 => {
                        "not finished (stopped before the check after the deletes)"
                    }
                    _ => "FAILED",
                },
                v.planned_but_referenced,
                v.missing_before,
                if v.after_checked {
                    format!(" before, {} missing after the deletes", v.missing_after)
                } else {
                    String::new()
                }
            );
        }
        for e in self.explain.iter().flatten() {
            let _ = writeln!(s, "  explain      {} {}: {}", e.id, e.decision, e.reason);
            for copy in &e.found {
                let _ = writeln!(
                    s,
                    "               stored at {}/{} ({} B, last modified {})",
                    copy.bucket, copy.key, copy.size, copy.last_modified
                );
            }
        }
        if let Some(bill) = &self.requests {
            let _ = writeln!(s, "  requests     {}", bill.summary());
        }
        let stages: Vec<String> = self.durations_ms.iter().map(|(k, v)| format!("{k} {v} ms")).collect();
        let _ = writeln!(s, "  durations    {}", stages.join(", "));
        let _ = writeln!(s, "  next         {}", self.next_step);
        s
    }
}

/// What to do after a run that ended with exit 0.
fn success_next_step(mode: &Mode, guard: &Guard) -> &'static str {
    match mode {
        Mode::Explain(_) => "nothing: --explain changes nothing",
        Mode::DryRun if guard.tripped => {
            "the guard would stop --execute: check the live set is complete before raising --max-delete-fraction"
        }
        Mode::DryRun => "review the plan (--plan-out), then rerun with --execute --verify",
        Mode::Execute | Mode::Apply(_) => Exit::Done.next_step(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }

    #[test]
    fn summary_names_the_verdicts() {
        let report = Report {
            mode: ModeName::DryRun,
            planned_deletes: 1200,
            planned_bytes: 2048,
            next_step: success_next_step(&Mode::DryRun, &Guard::unjudged(0.5)),
            ..Report::default()
        };
        let text = report.human();
        assert!(text.contains("1,200 deletes, 2.0 KiB"), "{text}");
        assert!(text.contains("rerun with --execute --verify"), "{text}");
    }
}
