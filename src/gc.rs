//! One run of the collector: the stages wired in the order the data flows. Each stage
//! returns a typed value (a plan, a verdict, stats); the run keeps what they returned in an
//! [`Outcome`], from which the report is built once, at the end.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::FutureExt;
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use crate::bug::Bug;
use crate::config::{Config, Mode};
use crate::decide::{Deciding, ListingSettings, Watched, start_listing};
use crate::deleting::{self, Accounting, DeletingSnapshot, ManifestObject, Named, Reclaim, SnapshotCensus};
use crate::error::GcError;
use crate::execute::{DeletedWatch, Executor, put_back_held};
use crate::explain::{ExplainSink, explain_all};
use crate::ids::ChunkId;
use crate::live_set::{self, LiveSet};
use crate::locations::{Location, LocationTable};
use crate::manifest::snapshots_folder;
use crate::manifest_fetch::{ManifestsRead, ManifestsStage, Seen, Wanted};
use crate::plan::{PlanHeader, Planned, Reread, ReviewedPlan, write_plan};
use crate::progress::Stage;
use crate::report::{Outcome, PlanCounts, Report, StoreUsage};
use crate::store::Stores;
use crate::verify::{AfterCheck, RangeSpill, Spilled, check_reviewed};

pub use crate::progress::Progress;
pub use crate::stop::{Stop, Stopped};

/// Listed parts waiting for the decide stage, at most: with [`crate::listing::PART_CHUNKS`]
/// chunks of 48 bytes a part, 6 MiB and under 128k chunks.
const PARTS_BUFFERED: usize = 16;

/// Runs the collector once. Always returns a report; its `exit_code` says how it ended.
pub async fn run(stores: &Stores, config: &Config, stop: &Stop, progress: &Progress) -> Report {
    let started = Instant::now();
    let (retries_before, requests_before) = (stores.retries(), stores.requests());
    let mut outcome = Outcome::default();
    // A panic is a bug (spec 9.3): it ends the run here, dropping every request in flight so
    // no further delete starts, and the report is still written, from what the stages left.
    let run = Run { stores, config, stop, progress };
    let running = AssertUnwindSafe(run.run(&mut outcome));
    let result = running.catch_unwind().await.unwrap_or_else(|panic| Err(Bug::panicked(panic.as_ref()).into()));
    outcome.durations.insert("total", ms(started));
    let usage = StoreUsage {
        requests: stores.requests().since(requests_before),
        retries: stores.retries().saturating_sub(retries_before),
        prices: crate::bill::prices_for(stores.scheme()),
        delete_batch: crate::execute::batch_size(config.delete_concurrency),
        batching: stores.delete_batching(),
    };
    Report::build(config, outcome, result.err().as_ref(), usage)
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// The two sets the control plane gave: live, and (`--deleting-snapshots`) being deleted.
struct Sets {
    live: LiveSet,
    deleting: Option<LiveSet>,
}

/// The manifest objects of the snapshots that are not live, from the inventory's listing.
type Folder = Vec<ManifestObject>;

/// What planning leaves for the rest of the run.
struct Planning {
    planned: Planned,
    after: Option<AfterCheck>,
    folder: Folder,
    accounting: Option<Accounting>,
}

struct Run<'a> {
    stores: &'a Stores,
    config: &'a Config,
    stop: &'a Stop,
    progress: &'a Progress,
}

impl Run<'_> {
    async fn run(&self, outcome: &mut Outcome) -> Result<(), GcError> {
        let t = Instant::now();
        let live = self.live_set()?;
        outcome.live = Some((live.snapshots.len() as u64, live.taken_at));
        self.config.check_cutoff(live.taken_at)?;
        let deleting = self.config.deleting_snapshots.as_deref();
        let deleting = deleting.map(|path| deleting::read(path, &live, self.config.now)).transpose()?;
        let counted = |set: &LiveSet| set.snapshots.len() as u64;
        let census = SnapshotCensus {
            live: counted(&live),
            deleting: deleting.as_ref().map_or(0, counted),
            ..Default::default()
        };
        outcome.snapshots = Some(census);
        let sets = Sets { live, deleting };
        outcome.durations.insert("live_set", ms(t));
        self.stop.check()?;
        match &self.config.mode {
            Mode::Explain(ids) => self.explain(&sets, ids, outcome).await,
            Mode::DryRun => {
                let Planning { planned, after, folder, accounting } = self.plan(&sets, outcome).await?;
                if let Some(accounting) = &accounting {
                    outcome.deleting = Some(self.account(accounting, &planned, None, outcome)?);
                }
                if let Some(AfterCheck { mut verify, .. }) = after {
                    let verdict = verify.conclude_dry_run();
                    outcome.verify = Some(verify);
                    verdict?;
                }
                if !planned.guard.tripped {
                    let reclaimable = self.reclaimable(&sets, &folder).into_iter();
                    outcome.reclaimable = Some(reclaimable.map(|r| r.snapshot.to_string()).collect());
                }
                Ok(())
            }
            Mode::Execute => {
                let Planning { planned, after, folder, accounting } = self.plan(&sets, outcome).await?;
                self.execute(&planned, after, accounting.as_ref(), outcome).await?;
                self.reclaim(&sets, &folder, outcome).await
            }
            Mode::Apply(path) => {
                let (planned, folder, accounting) = self.reviewed(path, &sets, outcome).await?;
                self.execute(&planned, None, accounting.as_ref(), outcome).await?;
                self.reclaim(&sets, &folder, outcome).await
            }
        }
    }

    /// The deleting snapshots whose manifests a run ending with exit 0 reclaims.
    fn reclaimable(&self, sets: &Sets, folder: &[ManifestObject]) -> Vec<Reclaim> {
        let Some(deleting) = &sets.deleting else {
            return Vec::new();
        };
        deleting::reclaimable(deleting, folder, self.config.cutoff.timestamp_millis())
    }

    /// Spec 9.2's reclaim, after every planned delete is done (or kept as refreshed) and
    /// verify passed: the deleting snapshots' manifest objects deleted as chunks are (re-read,
    /// still old, tied to the object read), and the snapshots whose objects are all gone
    /// listed as reclaimed.
    async fn reclaim(&self, sets: &Sets, folder: &[ManifestObject], outcome: &mut Outcome) -> Result<(), GcError> {
        if sets.deleting.is_none() {
            return Ok(());
        }
        self.stop.check()?;
        let candidates = self.reclaimable(sets, folder);
        let t = Instant::now();
        let cutoff_ms = self.config.cutoff.timestamp_millis();
        let folder = snapshots_folder(&self.config.meta_bucket, &self.config.partition)?;
        let mut reclaimed = deleting::reclaim(&self.executor(None), &folder, &candidates, cutoff_ms).await?;
        outcome.reclaimed = Some(reclaimed.snapshots);
        outcome.durations.insert("reclaim", ms(t));
        let all_done = reclaimed.failed.all_done(reclaimed.objects);
        if let Some(executed) = outcome.executed.as_mut() {
            executed.failures.append(&mut reclaimed.failed.failures);
        }
        all_done?;
        Ok(self.stop.check()?)
    }

    /// Spec 9.2's accounting over this run's plan, and after deletes over what they deleted.
    fn account(
        &self,
        accounting: &Accounting,
        planned: &Planned,
        deleted: Option<&Spilled>,
        outcome: &mut Outcome,
    ) -> Result<Vec<DeletingSnapshot>, GcError> {
        let t = Instant::now();
        let plan = planned.spool.as_ref().ok_or_else(|| Bug::new("the accounting has no plan spool"))?;
        let counts = accounting.account(plan, deleted)?;
        outcome.durations.insert("accounting", ms(t));
        Ok(counts)
    }

    fn executor<'e>(&'e self, deleted: Option<&'e DeletedWatch>) -> Executor<'e> {
        Executor {
            deleted,
            stores: self.stores,
            concurrency: self.config.delete_concurrency,
            max_delete_rate: self.config.max_delete_rate,
            stop: self.stop.token(),
            progress: Arc::clone(&self.progress.deleted),
        }
    }

    fn live_set(&self) -> Result<LiveSet, GcError> {
        let source = &self.config.live_snapshots;
        let text = source.read().map_err(|e| GcError::LiveSetRead { path: source.name(), source: e })?;
        let live = live_set::parse(&text, &source.name(), self.config.now)?;
        info!(snapshots = live.snapshots.len(), taken_at = %live.taken_at, "live set read");
        Ok(live)
    }

    /// The manifests stage; what it saw goes to the report even when it fails.
    async fn manifests(
        &self,
        sets: &Sets,
        table: &LocationTable,
        legacy_location: u32,
        wanted: Wanted,
        outcome: &mut Outcome,
    ) -> Result<ManifestsRead, GcError> {
        self.progress.stage.set(Stage::Manifests);
        let t = Instant::now();
        let stage = ManifestsStage {
            stores: self.stores,
            config: self.config,
            live: &sets.live,
            deleting: sets.deleting.as_ref(),
            stop: self.stop,
            stats: &self.progress.ingest,
        };
        let mut seen = Seen::default();
        let read = stage.read(table, legacy_location, wanted, &mut seen).await;
        outcome.held.found += seen.held.found;
        outcome.held.put_back += seen.held.put_back;
        outcome.snapshots = seen.census.or(outcome.snapshots.take());
        let read = read?;
        outcome.manifests = Some(read.referenced.counts);
        outcome.durations.insert("manifests", ms(t));
        Ok(read)
    }

    /// A run's own plan: manifests into the filter while every location is listed, each
    /// listed part decided as it arrives, then under `--verify` the exact checks before any
    /// delete, and the plan file.
    async fn plan(&self, sets: &Sets, outcome: &mut Outcome) -> Result<Planning, GcError> {
        let config = self.config;
        let (to_listing, from_table) = mpsc::unbounded_channel();
        let table = LocationTable::new(Some(to_listing));
        let legacy_location = table.register(&Location::legacy_default(&config.meta_bucket, &config.partition)?);
        config.extra_locations.iter().for_each(|l| {
            table.register(l);
        });
        let (parts_out, parts_in) = mpsc::channel(PARTS_BUFFERED);
        let settings = ListingSettings {
            concurrency: config.list_concurrency,
            listed: Arc::clone(&self.progress.listed),
            dry_run: !config.mode.deletes(),
        };
        let listing = start_listing(self.stores, from_table, parts_out, settings);
        let wanted = Wanted { filter: true, spill: config.verify, ..Wanted::default() };
        let ManifestsRead { referenced, folder, named } =
            self.manifests(sets, &table, legacy_location, wanted, outcome).await?;
        let locations = table.close();

        self.progress.stage.set(Stage::Listing);
        let t = Instant::now();
        let filter = referenced.filter.clone().ok_or_else(|| Bug::new("no filter was built"))?;
        let spill = || RangeSpill::create(&config.work_dir);
        let named_filter = named.as_ref().map(|n| Arc::clone(&n.filter));
        let watched = Watched {
            verify: config.verify.then(spill).transpose()?,
            named: named_filter.map(|f| spill().map(|s| (f, s))).transpose()?,
        };
        let deciding = Deciding {
            filter: &filter,
            cutoff_ms: config.cutoff.timestamp_millis(),
            work_dir: &config.work_dir,
            needs_plan: config.mode.deletes() || config.plan_out.is_some() || config.verify,
            locations: locations.len(),
            planned: Arc::clone(&self.progress.planned),
        };
        let decided = deciding.run(listing, parts_in, watched, self.stop).await?;
        outcome.durations.insert("listing", decided.listing_ms);
        outcome.held = decided.held;
        let cutoff_ms = config.cutoff.timestamp_millis();
        let planned = Planned::decided(decided.plan, locations, config.max_delete_fraction, cutoff_ms);
        let expected_false_positives = filter.expected_false_positives(planned.totals.planned);
        outcome.plan = Some(PlanCounts::of(&planned, expected_false_positives));
        self.progress.planned.store(planned.totals.planned, Ordering::Relaxed);
        outcome.durations.insert("decide", ms(t));
        planned.log();
        self.stop.check()?;

        self.progress.stage.set(Stage::Plan);
        let listed_named = decided.watched.named.map(|(_, spill)| spill);
        let accounting = accounting(named, referenced.shared, listed_named)?;
        let refs = referenced.spill.map(RangeSpill::finish).transpose()?;
        let listed_before = decided.watched.verify.map(RangeSpill::finish).transpose()?;
        let after = match (refs, listed_before, &planned.spool) {
            (Some(refs), Some(before), Some(spool)) => {
                let t = Instant::now();
                let (after, referenced_distinct) =
                    AfterCheck::before_deletes(refs, before, spool, filter, &planned.locations)?;
                outcome.referenced_distinct = Some(referenced_distinct);
                outcome.durations.insert("verify_before", ms(t));
                outcome.verify = Some(after.verify.clone());
                Some(after)
            }
            _ => None,
        };
        self.write_plan(sets, &planned, outcome)?;
        if let Some(after) = &after {
            after.verify.allows_deletes()?;
        }
        Ok(Planning { planned, after, folder, accounting })
    }

    fn write_plan(&self, sets: &Sets, planned: &Planned, outcome: &mut Outcome) -> Result<(), GcError> {
        let (Some(path), Some(spool)) = (&self.config.plan_out, &planned.spool) else {
            return Ok(());
        };
        let t = Instant::now();
        let header =
            PlanHeader::for_run(&self.config.binding(), &sets.live, sets.deleting.as_ref(), &planned.locations);
        write_plan(path, &header, &planned.locations, spool, planned.totals.old)?;
        outcome.durations.insert("plan", ms(t));
        Ok(())
    }

    /// `--apply-plan` (spec 8.3): the reviewed plan checked against this run, every live
    /// manifest read again, and every planned chunk checked against the exact references.
    async fn reviewed(
        &self,
        path: &std::path::Path,
        live: &Sets,
        outcome: &mut Outcome,
    ) -> Result<(Planned, Folder, Option<Accounting>), GcError> {
        let config = self.config;
        let t = Instant::now();
        let reviewed =
            ReviewedPlan::read_for(path, &config.work_dir, &config.binding(), &live.live, live.deleting.as_ref())?;
        outcome.durations.insert("plan", ms(t));
        let planned = Planned::reviewed(reviewed, config.max_delete_fraction);
        outcome.plan = Some(PlanCounts::of(&planned, 0.0));
        self.stop.check()?;

        let (table, legacy_location) = self.quiet_table(&planned.locations)?;
        let wanted = Wanted { spill: true, ..Wanted::default() };
        let ManifestsRead { referenced, folder, named } =
            self.manifests(live, &table, legacy_location, wanted, outcome).await?;
        let accounting = accounting(named, referenced.shared, None)?;
        let refs = referenced.spill.ok_or_else(|| Bug::new("no reference spill"))?.finish()?;
        let spool = planned.spool.as_ref().ok_or_else(|| Bug::new("a reviewed plan has no spool"))?;
        let t = Instant::now();
        let verify = check_reviewed(&refs, spool, &planned.locations)?;
        outcome.durations.insert("verify_before", ms(t));
        let verdict = verify.allows_applying();
        outcome.verify = Some(verify);
        verdict?;
        Ok((planned, folder, accounting))
    }

    /// Deletes a plan, this run's own or a reviewed one, then (`--verify`) checks that no
    /// referenced chunk is gone.
    async fn execute(
        &self,
        planned: &Planned,
        after: Option<AfterCheck>,
        accounting: Option<&Accounting>,
        outcome: &mut Outcome,
    ) -> Result<(), GcError> {
        if let Err(tripped) = planned.guard.allows_deletes() {
            // Spec 9.2's accounting in every mode: here, of a run that deleted nothing.
            if let Some(accounting) = accounting {
                let nothing = accounting.deleted_watch(&self.config.work_dir)?.spill.finish()?;
                outcome.deleting = Some(self.account(accounting, planned, Some(&nothing), outcome)?);
            }
            return Err(tripped.into());
        }
        self.stop.check()?;
        self.progress.stage.set(Stage::Execute);
        let t = Instant::now();
        let spool = planned.spool.as_ref().ok_or_else(|| Bug::new("an execute run has no plan spool"))?;
        if planned.reread == Reread::Unchanged {
            // A reviewed plan was not listed by this run: put back what a killed run held first.
            outcome.held = put_back_held(self.stores, &planned.locations, false).await?;
        }
        let watch = accounting.map(|a| a.deleted_watch(&self.config.work_dir)).transpose()?;
        let executor = self.executor(watch.as_ref());
        let executing = executor.execute_spool(&planned.locations, spool, planned.reread);
        let (stats, spool_error) = executing.instrument(info_span!("execute")).await?;
        outcome.durations.insert("execute", ms(t));
        let all_done = stats.all_done(planned.totals.planned);
        outcome.executed = Some(stats);
        if let Some(error) = spool_error {
            return Err(GcError::SpoolRead(error));
        }
        if let Some(signal) = self.stop.signal() {
            // Stopped: exit now, with the report; re-listing a large remote partition could
            // outlast the grace period before a SIGKILL, which would lose the report.
            if after.is_some() {
                warn!("verify after the deletes skipped: stopped by a signal");
            }
            return Err(Stopped(signal).into());
        }
        if let (Some(accounting), Some(watch)) = (accounting, watch) {
            let deleted = watch.spill.finish()?;
            outcome.deleting = Some(self.account(accounting, planned, Some(&deleted), outcome)?);
        }
        if let Some(after) = after {
            self.verify_after(planned, after, outcome).await?;
        }
        self.stop.check()?;
        Ok(all_done?)
    }

    /// `--verify` after the deletes: every location listed again; a referenced chunk listed
    /// before and not now fails the run.
    async fn verify_after(&self, planned: &Planned, after: AfterCheck, outcome: &mut Outcome) -> Result<(), GcError> {
        self.progress.stage.set(Stage::Verify);
        let t = Instant::now();
        let (config, progress) = (self.config, Arc::clone(&self.progress.verify_listed));
        let checking =
            after.check(self.stores, &planned.locations, &config.work_dir, config.list_concurrency, progress);
        let (verify, verdict) = checking.await?;
        outcome.durations.insert("verify_after", ms(t));
        outcome.verify = Some(verify);
        Ok(verdict?)
    }

    /// `--explain`: the manifests read exactly for the explained ids, then one HEAD per id and
    /// candidate location. Never lists, never deletes.
    async fn explain(&self, live: &Sets, ids: &[ChunkId], outcome: &mut Outcome) -> Result<(), GcError> {
        let config = self.config;
        let (table, legacy_location) = self.quiet_table(&[])?;
        let sink = Arc::new(ExplainSink::new(ids));
        let wanted =
            Wanted { explain: Some(Arc::clone(&sink) as Arc<dyn crate::manifest_fetch::RefSink>), ..Wanted::default() };
        self.manifests(live, &table, legacy_location, wanted, outcome).await?;
        let locations = table.close();
        outcome.locations = locations.len() as u64;
        let t = Instant::now();
        let cutoff_ms = config.cutoff.timestamp_millis();
        let explanations = explain_all(self.stores, &locations, &sink, ids, cutoff_ms, config.bloom_fpr)
            .instrument(info_span!("explain"))
            .await?;
        for e in &explanations {
            info!(id = %e.id, decision = e.decision, reason = %e.reason, "explain");
        }
        outcome.explain = Some(explanations);
        outcome.durations.insert("explain", ms(t));
        Ok(())
    }

    /// A location table that lists nothing: `--apply-plan` and `--explain` only need the
    /// indexes. Returns it with the legacy default's index.
    fn quiet_table(&self, first: &[Location]) -> Result<(LocationTable, u32), GcError> {
        let table = LocationTable::new(None);
        first.iter().chain(&self.config.extra_locations).for_each(|l| {
            table.register(l);
        });
        let legacy = table.register(&Location::legacy_default(&self.config.meta_bucket, &self.config.partition)?);
        Ok((table, legacy))
    }
}

/// Spec 9.2's accounting as planning leaves it, when there is a deleting set: its named ids,
/// the live references among them, and (when this run listed) the listed chunks among them.
fn accounting(
    named: Option<Named>,
    shared: Option<RangeSpill>,
    listed: Option<RangeSpill>,
) -> Result<Option<Accounting>, GcError> {
    let Some(named) = named else {
        return Ok(None);
    };
    let shared = shared.ok_or_else(|| Bug::new("no spill of the shared references"))?.finish()?;
    let listed = listed.map(RangeSpill::finish).transpose()?;
    Ok(Some(Accounting { named, shared, listed }))
}
