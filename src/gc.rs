//! One run of the collector: the stages wired in the order the data flows. Each stage
//! returns a typed value (a plan, a verdict, stats) and takes no part of the report; the
//! run records what they returned in an [`Outcome`] as each returns, before a verdict can end
//! the run, and the report is built from it once, at the end.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use tracing::{Instrument, info, info_span, warn};

use crate::bug::Bug;
use crate::config::{Config, Mode};
use crate::deleting::{
    self, Accounting, AccountingError, Freed, LiveSetStageError, ManifestObject, Reclaim, ReclaimError, Reclaimed, Sets,
};
use crate::error::GcError;
use crate::execute::{ExecuteStageError, ExecuteStats, Executor};
use crate::explain::{ExplainSink, explain_all};
use crate::held::put_back_held;
use crate::ids::ChunkId;
use crate::live_set;
use crate::locations::{Location, LocationTable};
use crate::manifest::snapshots_folder;
use crate::manifest_fetch::Wanted;
use crate::plan::{PlanError, Planned, Reread};
use crate::progress::Stage;
use crate::report::{Outcome, Report, StoreUsage};
use crate::spill::DeletedWatch;
use crate::store::Stores;
use crate::verify::{AfterCheck, VerifyFailure, VerifyReport, VerifyStageError};

mod planning;
use planning::{Planning, record_manifests};

pub use crate::progress::Progress;
pub use crate::stop::{Stop, Stopped};

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
    outcome.took("total", started);
    let usage = StoreUsage {
        requests: stores.requests().since(requests_before),
        retries: stores.retries().saturating_sub(retries_before),
        prices: crate::bill::prices_for(stores.scheme()),
        delete_batch: stores.delete_batching().max_keys(),
        batching: stores.delete_batching(),
    };
    Report::build(config, outcome, result.err().as_ref(), usage)
}

struct Run<'a> {
    stores: &'a Stores,
    config: &'a Config,
    stop: &'a Stop,
    progress: &'a Progress,
}

impl Run<'_> {
    /// The run, stage by stage. The stages return what they found; it is recorded here (and
    /// in the planning and delete phases below) as each returns, before its verdict can end
    /// the run, so the report has it whatever the exit.
    async fn run(&self, outcome: &mut Outcome) -> Result<(), GcError> {
        let (t, config) = (Instant::now(), self.config);
        let live = live_set::read(&config.live_snapshots, config.now).map_err(LiveSetStageError::from)?;
        info!(snapshots = live.snapshots.len(), taken_at = %live.taken_at, "live set read");
        outcome.live = Some((live.snapshots.len() as u64, live.taken_at));
        config.check_cutoff(live.taken_at)?;
        let sets =
            Sets::read(live, config.deleting_snapshots.as_deref(), config.now).map_err(LiveSetStageError::from)?;
        outcome.snapshots = Some(sets.census());
        outcome.took("live_set", t);
        self.stop.check()?;
        match &self.config.mode {
            Mode::Explain(ids) => self.explain(&sets, ids, outcome).await,
            Mode::DryRun => {
                let Planning { planned, after, folder, accounting } = self.plan(&sets, outcome).await?;
                if let Some(accounting) = &accounting {
                    self.account(accounting, &planned, Freed::Planned, outcome)?;
                }
                if let Some(AfterCheck { mut verify, .. }) = after {
                    let verdict = verify.conclude_dry_run();
                    outcome.verify = Some(verify);
                    verdict.map_err(VerifyStageError::from)?;
                }
                if !planned.guard.tripped {
                    let reclaimable = self.reclaimable(&sets, &folder).into_iter();
                    outcome.reclaimable = Some(reclaimable.map(|r| r.snapshot.to_string()).collect());
                }
                Ok(())
            }
            Mode::Execute | Mode::Apply(_) => {
                let planning = match &self.config.mode {
                    Mode::Apply(path) => self.reviewed(path, &sets, outcome).await?,
                    _ => self.plan(&sets, outcome).await?,
                };
                let Planning { planned, after, folder, accounting } = planning;
                self.delete(&planned, after, accounting.as_ref(), outcome).await?;
                if sets.deleting.is_none() {
                    return Ok(());
                }
                self.stop.check()?;
                let t = Instant::now();
                let reclaimed = self.reclaim(&sets, &folder).await?;
                outcome.reclaimed = Some(reclaimed.snapshots);
                outcome.took("reclaim", t);
                let all_done = reclaimed.failed.all_done(reclaimed.objects);
                outcome.reclaim_failures = reclaimed.failed.failures;
                all_done.map_err(ReclaimError::from)?;
                Ok(self.stop.check()?)
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
    async fn reclaim(&self, sets: &Sets, folder: &[ManifestObject]) -> Result<Reclaimed, ReclaimError> {
        let candidates = self.reclaimable(sets, folder);
        let cutoff_ms = self.config.cutoff.timestamp_millis();
        let folder = snapshots_folder(&self.config.meta_bucket, &self.config.partition)?;
        Ok(deleting::reclaim(&self.executor(None), &folder, &candidates, cutoff_ms).await?)
    }

    /// Spec 9.2's accounting over this run's plan, and after deletes over what they deleted,
    /// recorded with how long it took.
    fn account(
        &self,
        accounting: &Accounting,
        planned: &Planned,
        freed: Freed<'_>,
        outcome: &mut Outcome,
    ) -> Result<(), GcError> {
        let t = Instant::now();
        let plan = planned.spool.as_ref().ok_or_else(|| Bug::new("the accounting has no plan spool"))?;
        outcome.deleting = Some(accounting.account(plan, freed)?);
        outcome.took("accounting", t);
        Ok(())
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

    /// The delete phase: a plan, this run's own or a reviewed one, deleted, what it freed
    /// accounted, then (`--verify`) the check that no referenced chunk is gone.
    async fn delete(
        &self,
        planned: &Planned,
        after: Option<AfterCheck>,
        accounting: Option<&Accounting>,
        outcome: &mut Outcome,
    ) -> Result<(), GcError> {
        let may_delete = planned
            .guard
            .allows_deletes()
            .map_err(|e| GcError::Execute(e.into()))
            .and_then(|()| Ok(self.stop.check()?));
        if let Err(not_started) = may_delete {
            // Spec 9.2's accounting in every mode: here, of a run that deleted nothing.
            if let Some(accounting) = accounting {
                self.account(accounting, planned, Freed::Nothing, outcome)?;
            }
            return Err(not_started);
        }
        self.progress.stage.set(Stage::Execute);
        let t = Instant::now();
        if planned.reread == Reread::Unchanged {
            // A reviewed plan was not listed by this run: put back what a killed run held first.
            let held = put_back_held(self.stores, &planned.locations, false).await;
            outcome.held.add(held.map_err(ExecuteStageError::from)?);
        }
        let watch = accounting.map(|a| a.deleted_watch(&self.config.work_dir)).transpose()?;
        let (stats, spool_error) = self.execute(planned, watch.as_ref()).await?;
        outcome.took("execute", t);
        let all_done = stats.all_done(planned.totals.planned);
        outcome.executed = Some(stats);
        if let Some(error) = spool_error {
            return Err(ExecuteStageError::SpoolRead(error).into());
        }
        // Accounted even when a signal stopped the deletes: what was freed up to the stop. A
        // local pass over the plan (seconds at 45M chunks), within a SIGTERM's grace period.
        if let (Some(accounting), Some(watch)) = (accounting, watch) {
            let deleted = watch.spill.finish().map_err(AccountingError::from)?;
            self.account(accounting, planned, Freed::Deleted(&deleted), outcome)?;
        }
        if let Some(signal) = self.stop.signal() {
            // Stopped: exit now, with the report; re-listing a large remote partition could
            // outlast the grace period before a SIGKILL, which would lose the report.
            if after.is_some() {
                warn!("verify after the deletes skipped: stopped by a signal");
            }
            return Err(Stopped(signal).into());
        }
        if let Some(after) = after {
            let t = Instant::now();
            let (verify, verdict) = self.verify_after(planned, after).await?;
            outcome.took("verify_after", t);
            outcome.verify = Some(verify);
            verdict.map_err(VerifyStageError::from)?;
        }
        self.stop.check()?;
        Ok(all_done.map_err(ExecuteStageError::from)?)
    }

    /// The execute stage: the plan's spool deleted, its stats and, if the spool could not
    /// be read back, why the rest of the plan was not deleted.
    async fn execute(
        &self,
        planned: &Planned,
        watch: Option<&DeletedWatch>,
    ) -> Result<(ExecuteStats, Option<PlanError>), GcError> {
        let spool = planned.spool.as_ref().ok_or_else(|| Bug::new("an execute run has no plan spool"))?;
        let executor = self.executor(watch);
        let executing = executor.execute_spool(&planned.locations, spool, planned.reread);
        Ok(executing.instrument(info_span!("execute")).await.map_err(ExecuteStageError::from)?)
    }

    /// `--verify` after the deletes: every location listed again; a referenced chunk listed
    /// before and not now fails the run (the verdict, beside the report).
    async fn verify_after(
        &self,
        planned: &Planned,
        after: AfterCheck,
    ) -> Result<(VerifyReport, Result<(), VerifyFailure>), VerifyStageError> {
        self.progress.stage.set(Stage::Verify);
        let (config, progress) = (self.config, Arc::clone(&self.progress.verify_listed));
        let checking =
            after.check(self.stores, &planned.locations, &config.work_dir, config.list_concurrency, progress);
        Ok(checking.await?)
    }

    /// `--explain`: the manifests read exactly for the explained ids, then one HEAD per id and
    /// candidate location. Never lists, never deletes.
    async fn explain(&self, live: &Sets, ids: &[ChunkId], outcome: &mut Outcome) -> Result<(), GcError> {
        let config = self.config;
        // `--explain` looks in the `--location`s first, as it always has: its `found` keeps that order.
        let legacy = Location::legacy_default(&config.meta_bucket, &config.partition)?;
        let table = LocationTable::starting_with(None, config.extra_locations.iter().chain([&legacy]));
        let sink = Arc::new(ExplainSink::new(ids));
        let wanted =
            Wanted { explain: Some(Arc::clone(&sink) as Arc<dyn crate::manifest_fetch::RefSink>), ..Wanted::default() };
        record_manifests(outcome, self.manifests(live, &table, wanted).await)?;
        let locations = table.close();
        outcome.locations = locations.len() as u64;
        let t = Instant::now();
        let cutoff_ms = config.cutoff.timestamp_millis();
        let explanations = explain_all(self.stores, &locations, &sink, ids, cutoff_ms, config.bloom_fpr)
            .instrument(info_span!("explain"))
            .await
            .map_err(GcError::Explain)?;
        for e in &explanations {
            info!(id = %e.id, decision = e.decision, reason = %e.reason, "explain");
        }
        outcome.explain = Some(explanations);
        outcome.took("explain", t);
        Ok(())
    }
}
