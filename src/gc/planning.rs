//! Planning, the run's first half: a [`Planned`] value, from this run's listing or from a
//! reviewed plan (`--apply-plan`), with what the rest of the run needs beside it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;

use super::Run;
use crate::bug::Bug;
use crate::decide::{DecideStageError, Deciding, ListingSettings, Watched, start_listing};
use crate::deleting::{Accounting, AccountingError, ManifestObject, Sets};
use crate::error::GcError;
use crate::locations::{Location, LocationTable, ToListing};
use crate::manifest_fetch::{ManifestsRead, ManifestsStage, Seen, Wanted};
use crate::plan::{PlanHeader, PlanStageError, Planned, ReviewedPlan, write_plan};
use crate::progress::Stage;
use crate::report::{Outcome, PlanCounts};
use crate::verify::{AfterCheck, VerifyStageError, check_reviewed};

/// Listed parts waiting for the decide stage, at most: with [`crate::listing::PART_CHUNKS`]
/// chunks of 96 bytes a part (the listed version inline), 12 MiB and under 128k chunks.
const PARTS_BUFFERED: usize = 16;

/// What planning leaves for the rest of the run.
pub(super) struct Planning {
    pub planned: Planned,
    /// `--verify`'s check after the deletes, its checks before them passed.
    pub after: Option<AfterCheck>,
    /// The manifest objects of the snapshots that are not live, from the inventory's listing.
    pub folder: Vec<ManifestObject>,
    pub accounting: Option<Accounting>,
}

/// What the manifests stage returned: what it saw, even when it failed, and how it ended.
pub(super) struct ManifestsStep {
    seen: Seen,
    read: Result<ManifestsRead, GcError>,
    started: Instant,
}

/// Records what the manifests stage saw and read; its error, after.
pub(super) fn record_manifests(outcome: &mut Outcome, step: ManifestsStep) -> Result<ManifestsRead, GcError> {
    outcome.held.add(step.seen.held);
    outcome.snapshots = step.seen.census.or(outcome.snapshots.take());
    let read = step.read?;
    outcome.manifests = Some(read.referenced.counts);
    outcome.took("manifests", step.started);
    Ok(read)
}

impl Run<'_> {
    /// The manifests stage.
    pub(super) async fn manifests(&self, sets: &Sets, table: &LocationTable, wanted: Wanted) -> ManifestsStep {
        self.progress.stage.set(Stage::Manifests);
        let stage = ManifestsStage {
            stores: self.stores,
            config: self.config,
            live: &sets.live,
            deleting: sets.deleting.as_ref(),
            stop: self.stop,
            stats: &self.progress.ingest,
        };
        let (started, mut seen) = (Instant::now(), Seen::default());
        let read = stage.read(table, wanted, &mut seen).await.map_err(GcError::from);
        ManifestsStep { seen, read, started }
    }

    /// A run's own plan: manifests into the filter while every location is listed, each
    /// listed part decided as it arrives, then under `--verify` the exact checks before any
    /// delete, and the plan file.
    pub(super) async fn plan(&self, sets: &Sets, outcome: &mut Outcome) -> Result<Planning, GcError> {
        let config = self.config;
        let (to_listing, from_table) = mpsc::unbounded_channel();
        let table = self.table(Some(to_listing), &[])?;
        let (parts_out, parts_in) = mpsc::channel(PARTS_BUFFERED);
        let settings = ListingSettings {
            concurrency: config.list_concurrency,
            listed: Arc::clone(&self.progress.listed),
            dry_run: !config.mode.deletes(),
        };
        let listing = start_listing(self.stores, from_table, parts_out, settings);
        let wanted = Wanted { filter: true, spill: config.verify, ..Wanted::default() };
        let read = record_manifests(outcome, self.manifests(sets, &table, wanted).await)?;
        let ManifestsRead { referenced, folder, accounting } = read;
        let locations = table.close();

        self.progress.stage.set(Stage::Listing);
        let t = Instant::now();
        let filter = referenced.filter.clone().ok_or_else(|| Bug::new("no filter was built"))?;
        let named = accounting.as_ref().map(|a| Arc::clone(&a.named.filter));
        let watched = Watched::create(&config.work_dir, config.verify, named).map_err(DecideStageError::from)?;
        let cutoff_ms = config.cutoff.timestamp_millis();
        let deciding = Deciding {
            filter: &filter,
            cutoff_ms,
            work_dir: &config.work_dir,
            needs_plan: config.mode.deletes() || config.plan_out.is_some() || config.verify,
            locations: locations.len(),
            planned: Arc::clone(&self.progress.planned),
        };
        let decided = deciding.run(listing, parts_in, watched, self.stop).await?;
        outcome.durations.insert("listing", decided.listing_ms);
        outcome.held.add(decided.held);
        let planned = Planned::decided(decided.plan, locations, config.max_delete_fraction, cutoff_ms);
        let expected_false_positives = filter.expected_false_positives(planned.totals.planned);
        outcome.plan = Some(PlanCounts::of(&planned, expected_false_positives));
        self.progress.planned.store(planned.totals.planned, Ordering::Relaxed);
        outcome.took("decide", t);
        planned.log();
        self.stop.check()?;

        self.progress.stage.set(Stage::Plan);
        let listed_named =
            decided.watched.named.map(|(_, spill)| spill.finish()).transpose().map_err(AccountingError::from)?;
        let accounting = accounting.map(|a| a.with_listed(listed_named));
        let t = Instant::now();
        let (refs, before) = (referenced.spill, decided.watched.verify);
        let after = AfterCheck::prepare(refs, before, planned.spool.as_ref(), filter, &planned.locations)
            .map_err(VerifyStageError::from)?;
        if let Some((after, referenced_distinct)) = &after {
            outcome.referenced_distinct = Some(*referenced_distinct);
            outcome.took("verify_before", t);
            outcome.verify = Some(after.verify.clone());
        }
        let t = Instant::now();
        if self.write_plan(sets, &planned)? {
            outcome.took("plan", t);
        }
        let after = after.map(|(after, _)| after);
        if let Some(after) = &after {
            after.verify.allows_deletes().map_err(VerifyStageError::from)?;
        }
        Ok(Planning { planned, after, folder, accounting })
    }

    /// Writes `--plan-out`, if asked for; whether it was.
    fn write_plan(&self, sets: &Sets, planned: &Planned) -> Result<bool, PlanStageError> {
        let (Some(path), Some(spool)) = (&self.config.plan_out, &planned.spool) else {
            return Ok(false);
        };
        let header =
            PlanHeader::for_run(&self.config.binding(), &sets.live, sets.deleting.as_ref(), &planned.locations);
        write_plan(path, &header, &planned.locations, spool, planned.totals.old)?;
        Ok(true)
    }

    /// `--apply-plan` (spec 8.3): the reviewed plan checked against this run, every live
    /// manifest read again, and every planned chunk checked against the exact references.
    pub(super) async fn reviewed(
        &self,
        path: &std::path::Path,
        live: &Sets,
        outcome: &mut Outcome,
    ) -> Result<Planning, GcError> {
        let config = self.config;
        let t = Instant::now();
        let reviewed =
            ReviewedPlan::read_for(path, &config.work_dir, &config.binding(), &live.live, live.deleting.as_ref())
                .map_err(PlanStageError::from)?;
        outcome.took("plan", t);
        let planned = Planned::reviewed(reviewed, config.max_delete_fraction);
        outcome.plan = Some(PlanCounts::of(&planned, 0.0));
        self.stop.check()?;

        let table = self.table(None, &planned.locations)?;
        let wanted = Wanted { spill: true, ..Wanted::default() };
        let read = record_manifests(outcome, self.manifests(live, &table, wanted).await)?;
        let ManifestsRead { referenced, folder, accounting } = read;
        let refs =
            referenced.spill.ok_or_else(|| Bug::new("no reference spill"))?.finish().map_err(VerifyStageError::from)?;
        let spool = planned.spool.as_ref().ok_or_else(|| Bug::new("a reviewed plan has no spool"))?;
        let t = Instant::now();
        let verify = check_reviewed(&refs, spool, &planned.locations).map_err(VerifyStageError::from)?;
        outcome.took("verify_before", t);
        let verdict = verify.allows_applying();
        outcome.verify = Some(verify);
        verdict.map_err(VerifyStageError::from)?;
        Ok(Planning { planned, after: None, folder, accounting })
    }

    /// The run's location table: `first` (a reviewed plan's, keeping their indexes), the
    /// legacy default, then the `--location`s; each new one goes to `listing`.
    pub(super) fn table(&self, listing: Option<ToListing>, first: &[Location]) -> Result<LocationTable, GcError> {
        let legacy = Location::legacy_default(&self.config.meta_bucket, &self.config.partition)?;
        let known = first.iter().chain([&legacy]).chain(&self.config.extra_locations);
        Ok(LocationTable::starting_with(listing, known))
    }
}
