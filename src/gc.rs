//! One run of the collector: the stages wired in the order the data flows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::bloom::RefFilter;
use crate::config::{Config, LiveSource};
use crate::decide::{Decider, decide_stream};
use crate::error::{GcError, Signal};
use crate::execute::{ExecuteStats, HeldFound, Reread, execute, put_back_held};
use crate::explain::ExplainSink;
use crate::ids::{ChunkId, SnapshotId};
use crate::listing::{Listed, ListingError, PartSender, list_stream};
use crate::live_set::{self, LiveSet};
use crate::locations::Location;
use crate::manifest_fetch::{Ingest, IngestStats, RefSink, ingest_all, inventory};
use crate::plan::{
    PLAN_VERSION, Plan, PlanError, PlanHeader, PlanSpool, ReviewedPlan, SpooledPlan, read_plan, rfc3339, write_plan,
};
use crate::progress::Stage;
use crate::report::Report;
use crate::store::Stores;
use crate::verify::{RangeSpill, Spilled, VerifyReport};

/// Asks a run to stop: no new deletes start, in-flight ones finish, the report is written.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    signal: Arc<AtomicU8>,
}

impl Stop {
    pub fn trigger(&self, signal: Signal) {
        let code = match signal {
            Signal::Interrupt => 1,
            Signal::Terminate => 2,
        };
        let _ = self.signal.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.token.cancel();
    }

    pub fn signal(&self) -> Option<Signal> {
        match self.signal.load(Ordering::SeqCst) {
            1 => Some(Signal::Interrupt),
            2 => Some(Signal::Terminate),
            _ => None,
        }
    }

    fn check(&self) -> Result<(), GcError> {
        self.signal().map_or(Ok(()), |s| Err(GcError::Interrupted(s)))
    }

    async fn stopped(&self) -> GcError {
        self.token.cancelled().await;
        GcError::Interrupted(self.signal().unwrap_or(Signal::Terminate))
    }
}

/// Live progress counters, read by the progress display and events.
#[derive(Debug, Default)]
pub struct Progress {
    pub listed: Arc<AtomicU64>,
    pub planned: Arc<AtomicU64>,
    pub deleted: Arc<AtomicU64>,
    pub ingest: Arc<IngestStats>,
    pub stage: crate::progress::StageCell,
    pub verify_listed: Arc<AtomicU64>,
}

/// Listed parts waiting for the decide stage, at most: with [`crate::listing::PART_CHUNKS`] chunks of 48
/// bytes a part, 6 MiB and under 128k chunks.
const PARTS_BUFFERED: usize = 16;

/// Runs the collector once. Always returns a report; its `exit_code` says how it ended.
pub async fn run(stores: &Stores, config: &Config, stop: &Stop, progress: &Progress) -> Report {
    let started = Instant::now();
    let mut report = Report {
        version: 1,
        partition: config.partition.to_string(),
        mode: config.mode(),
        store: config.store_url.clone(),
        cutoff: rfc3339(config.cutoff),
        bloom: crate::report::BloomReport { fpr: config.bloom_fpr, seed: config.bloom_seed, ..Default::default() },
        plan_out: config.plan_out.as_ref().map(|p| p.display().to_string()),
        ..Report::default()
    };
    report.guard.max_delete_fraction = config.max_delete_fraction;
    let retries_before = stores.retries();
    let requests_before = stores.requests();
    let result = Run { stores, config, stop, progress }.stages(&mut report).await;
    report.store_retries = stores.retries().saturating_sub(retries_before);
    report.fill_requests(
        stores.requests().since(requests_before),
        crate::bill::prices_for(stores.scheme()),
        crate::execute::batch_size(config.delete_concurrency),
        stores.delete_batching(),
    );
    if let Err(error) = result {
        report.exit_code = error.exit_code();
        report.error = Some(error.to_string());
    }
    report.durations_ms.insert("total", ms(started));
    report
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// The run's location table: every candidate location gets an index, and each new one is
/// sent to the listing as soon as it is known.
struct LocationTable {
    locations: Vec<Location>,
    index: HashMap<Location, u32>,
    listing: Option<mpsc::UnboundedSender<(u32, Location)>>,
}

impl LocationTable {
    fn register(&mut self, location: &Location) -> u32 {
        if let Some(&index) = self.index.get(location) {
            return index;
        }
        let index = self.locations.len() as u32;
        self.locations.push(location.clone());
        self.index.insert(location.clone(), index);
        if let Some(listing) = &self.listing {
            // The listing only stops receiving when the run is being torn down.
            let _ = listing.send((index, location.clone()));
        }
        index
    }
}

/// Where the manifests stage sends referenced ids: the filter, verify's spill, explain.
struct Refs {
    filter: Option<Arc<RefFilter>>,
    spill: Option<Arc<RangeSpill>>,
    explain: Option<Arc<ExplainSink>>,
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
    }
}

/// Which sinks a run's manifests stage feeds.
#[derive(Clone, Default)]
struct Wanted {
    filter: bool,
    spill: bool,
    explain: Option<Arc<ExplainSink>>,
}

/// What the manifests stage leaves: the complete filter, and the exact references spilled.
struct Referenced {
    filter: Option<Arc<RefFilter>>,
    spill: Option<RangeSpill>,
}

impl Referenced {
    fn filter(&self) -> Result<&Arc<RefFilter>, GcError> {
        self.filter.as_ref().ok_or_else(|| internal("no filter was built"))
    }
}

/// The listing's task: how long it took, and the chunks an earlier run left held.
type ListingTask = tokio::task::JoinHandle<Result<(u64, HeldFound), GcError>>;

struct Run<'a> {
    stores: &'a Stores,
    config: &'a Config,
    stop: &'a Stop,
    progress: &'a Progress,
}

impl Run<'_> {
    async fn stages(&self, report: &mut Report) -> Result<(), GcError> {
        let config = self.config;
        let t = Instant::now();
        let live = self.live_set()?;
        report.live_snapshots = live.snapshots.len() as u64;
        report.taken_at = Some(rfc3339(live.taken_at));
        config.check_cutoff(live.taken_at)?;
        report.durations_ms.insert("live_set", ms(t));
        self.stop.check()?;
        if !config.explain.is_empty() {
            return self.explain(&live, report).await;
        }
        if let Some(path) = &config.apply_plan {
            return self.apply(path, &live, report).await;
        }

        let (to_listing, from_table) = mpsc::unbounded_channel();
        let table = Arc::new(Mutex::new(LocationTable {
            locations: Vec::new(),
            index: HashMap::new(),
            listing: Some(to_listing),
        }));
        let register = Self::register_with(&table);
        let legacy_location = register(&Location::legacy_default(&config.meta_bucket, &config.partition)?);
        config.extra_locations.iter().for_each(|l| {
            register(l);
        });
        let (parts_out, parts_in) = mpsc::channel(PARTS_BUFFERED);
        let listing = self.start_listing(from_table, parts_out);
        self.progress.stage.set(Stage::Manifests);

        let wanted = Wanted { filter: true, spill: config.verify, explain: None };
        let referenced = match self.manifests(&live, legacy_location, register, wanted, report).await {
            Ok(done) => done,
            Err(error) => {
                listing.abort();
                return Err(error);
            }
        };
        let locations = {
            let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
            table.listing = None;
            table.locations.clone()
        };

        self.progress.stage.set(Stage::Listing);
        let t = Instant::now();
        let listed_spill = config.verify.then(|| RangeSpill::create(&config.work_dir)).transpose()?;
        let filter = Arc::clone(referenced.filter()?);
        let (plan, listed_spill) = self.decide(listing, parts_in, &filter, listed_spill, &locations, report).await?;
        report.record_plan(&plan, &locations);
        report.expected_false_positives = expected_false_positives(&filter, report.planned_deletes);
        report.guard.judge(plan.totals().old, report.planned_deletes);
        self.progress.planned.store(report.planned_deletes, Ordering::Relaxed);
        report.durations_ms.insert("decide", ms(t));
        info!(
            chunks = report.chunks_scanned,
            planned = report.planned_deletes,
            referenced_kept = report.referenced_kept,
            young_kept = report.young_kept,
            "decided"
        );
        if report.guard.tripped {
            warn!(
                fraction = report.guard.fraction,
                max = report.guard.max_delete_fraction,
                "delete-fraction guard tripped"
            );
        }
        self.stop.check()?;

        self.progress.stage.set(Stage::Plan);
        let refs = referenced.spill.map(RangeSpill::finish).transpose()?;
        let listed_before = listed_spill.map(RangeSpill::finish).transpose()?;
        let mut verify = match (&refs, &listed_before, &plan.spool) {
            (Some(refs), Some(before), Some(spool)) => {
                let t = Instant::now();
                let checks = crate::verify::check_before(refs, before, spool)?;
                report.referenced_distinct = Some(checks.referenced_distinct);
                report.durations_ms.insert("verify_before", ms(t));
                Some(VerifyReport {
                    ok: checks.planned_but_referenced.count == 0,
                    planned_but_referenced: checks.planned_but_referenced.count,
                    planned_but_referenced_keys: keys(&locations, &checks.planned_but_referenced.sample),
                    missing_before: checks.missing_before.count,
                    missing_before_keys: keys(&locations, &checks.missing_before.sample),
                    spill_bytes: refs.bytes_on_disk() + before.bytes_on_disk() + spool.bytes_on_disk(),
                    ..VerifyReport::default()
                })
            }
            _ => None,
        };
        self.write_plan(&live, &locations, &plan, report)?;
        if let Some(v) = verify.as_ref().filter(|v| v.planned_but_referenced > 0) {
            let error = GcError::Verify(format!(
                "{} planned chunks are referenced, e.g. {}; nothing deleted",
                v.planned_but_referenced,
                v.planned_but_referenced_keys.first().map_or("", String::as_str)
            ));
            report.verify = verify;
            return Err(error);
        }
        if !config.execute {
            return finish_dry_run_verify(report, verify);
        }
        if let Some(tripped) = guard_error(report) {
            return Err(tripped);
        }
        self.stop.check()?;

        self.progress.stage.set(Stage::Execute);
        let t = Instant::now();
        let Some(spool) = &plan.spool else {
            return Err(GcError::Verify("internal: an execute run has no plan spool; nothing deleted".into()));
        };
        let reread = Reread::OlderThan { cutoff_ms: config.cutoff.timestamp_millis() };
        let (stats, spool_error) = self.execute(&locations, spool, reread).await?;
        report.durations_ms.insert("execute", ms(t));
        report.record_execute(&stats);
        if let Some(error) = spool_error {
            return Err(GcError::SpoolRead(error));
        }
        if let Some(signal) = self.stop.signal() {
            // Stopped: exit now, with the report; re-listing a large remote partition could
            // outlast the grace period before a SIGKILL, which would lose the report.
            if let Some(verify) = verify {
                warn!("verify after the deletes skipped: stopped by a signal");
                report.verify = Some(verify);
            }
            return Err(GcError::Interrupted(signal));
        }
        if let (Some(refs), Some(before), Some(mut verify)) = (refs, listed_before, verify.take()) {
            self.progress.stage.set(Stage::Verify);
            let t = Instant::now();
            verify.after_checked = true;
            let after = self.relist(&locations, &filter).await?;
            verify.spill_bytes += after.bytes_on_disk();
            let missing = crate::verify::check_after(&refs, &before, &after)?;
            verify.missing_after = missing.count;
            verify.missing_after_keys = keys(&locations, &missing.sample);
            verify.ok = verify.missing_after == 0 && verify.planned_but_referenced == 0;
            report.durations_ms.insert("verify_after", ms(t));
            let failed = !verify.ok;
            report.verify = Some(verify);
            if failed {
                return Err(GcError::Verify(format!(
                    "{} referenced chunks present before the deletes are gone after them",
                    missing.count
                )));
            }
        }
        self.stop.check()?;
        if let Some(failed) = delete_failures(&stats, report.planned_deletes) {
            return Err(failed);
        }
        Ok(())
    }

    /// A location table that lists nothing: apply and explain only need the indexes.
    fn quiet_table(&self, first: &[Location]) -> Result<(Arc<Mutex<LocationTable>>, u32), GcError> {
        let table = Arc::new(Mutex::new(LocationTable { locations: Vec::new(), index: HashMap::new(), listing: None }));
        let legacy = {
            let mut t = table.lock().unwrap_or_else(PoisonError::into_inner);
            first.iter().chain(&self.config.extra_locations).for_each(|l| {
                t.register(l);
            });
            t.register(&Location::legacy_default(&self.config.meta_bucket, &self.config.partition)?)
        };
        Ok((table, legacy))
    }

    fn register_with(table: &Arc<Mutex<LocationTable>>) -> crate::manifest_fetch::RegisterLocation {
        let table = Arc::clone(table);
        Arc::new(move |location: &Location| table.lock().unwrap_or_else(PoisonError::into_inner).register(location))
    }

    /// `--explain`: the manifests read exactly for the explained ids, then one HEAD per id and
    /// candidate location. Never lists, never deletes.
    async fn explain(&self, live: &LiveSet, report: &mut Report) -> Result<(), GcError> {
        let config = self.config;
        let (table, legacy) = self.quiet_table(&[])?;
        self.progress.stage.set(Stage::Manifests);
        let sink = Arc::new(ExplainSink::new(&config.explain));
        let wanted = Wanted { explain: Some(Arc::clone(&sink)), ..Wanted::default() };
        self.manifests(live, legacy, Self::register_with(&table), wanted, report).await?;
        let locations = table.lock().unwrap_or_else(PoisonError::into_inner).locations.clone();
        report.locations = locations.len() as u64;
        let t = Instant::now();
        let cutoff_ms = config.cutoff.timestamp_millis();
        let explanations =
            crate::explain::explain_all(self.stores, &locations, &sink, &config.explain, cutoff_ms, config.bloom_fpr)
                .instrument(info_span!("explain"))
                .await?;
        for e in &explanations {
            info!(id = %e.id, decision = e.decision, reason = %e.reason, "explain");
        }
        report.explain = Some(explanations);
        report.durations_ms.insert("explain", ms(t));
        Ok(())
    }

    /// `--apply-plan` (spec 8.3): the reviewed plan checked against this run, every live
    /// manifest read again, every planned chunk checked against the exact references, then
    /// deleted only where its last-modified is still the plan's.
    async fn apply(&self, path: &std::path::Path, live: &LiveSet, report: &mut Report) -> Result<(), GcError> {
        let config = self.config;
        let t = Instant::now();
        let reviewed = read_plan(path, &config.work_dir).map_err(|e| GcError::PlanRefused(e.to_string()))?;
        check_reviewed(&reviewed, config, live)?;
        report.durations_ms.insert("plan", ms(t));
        report.planned_deletes = reviewed.footer.count;
        report.planned_bytes = reviewed.footer.bytes;
        report.locations = reviewed.locations.len() as u64;
        report.guard.judge(reviewed.footer.old_chunks, reviewed.footer.count);
        self.stop.check()?;

        let (table, legacy) = self.quiet_table(&reviewed.locations)?;
        self.progress.stage.set(Stage::Manifests);
        let wanted = Wanted { spill: true, ..Wanted::default() };
        let referenced = self.manifests(live, legacy, Self::register_with(&table), wanted, report).await?;
        let refs = referenced.spill.map(RangeSpill::finish).transpose()?;
        let Some(refs) = refs else {
            return Err(internal("no reference spill"));
        };
        let t = Instant::now();
        let wrong = crate::verify::check_planned(&refs, &reviewed.spool)?;
        report.durations_ms.insert("verify_before", ms(t));
        let verify = VerifyReport {
            ok: wrong.count == 0,
            planned_but_referenced: wrong.count,
            planned_but_referenced_keys: keys(&reviewed.locations, &wrong.sample),
            spill_bytes: refs.bytes_on_disk() + reviewed.spool.bytes_on_disk(),
            ..VerifyReport::default()
        };
        let first = verify.planned_but_referenced_keys.first().cloned().unwrap_or_default();
        report.verify = Some(verify);
        if wrong.count > 0 {
            return Err(GcError::Verify(format!(
                "{} chunks of the reviewed plan are referenced by a live manifest now, e.g. {first}; nothing deleted",
                wrong.count
            )));
        }
        if let Some(tripped) = guard_error(report) {
            return Err(tripped);
        }
        self.stop.check()?;
        let t = Instant::now();
        self.progress.stage.set(Stage::Execute);
        report.held_chunks = put_back_held(self.stores, &reviewed.locations, false).await?;
        let (stats, spool_error) = self.execute(&reviewed.locations, &reviewed.spool, Reread::Unchanged).await?;
        report.durations_ms.insert("execute", ms(t));
        report.record_execute(&stats);
        if let Some(error) = spool_error {
            return Err(GcError::SpoolRead(error));
        }
        self.stop.check()?;
        if let Some(failed) = delete_failures(&stats, report.planned_deletes) {
            return Err(failed);
        }
        Ok(())
    }

    fn live_set(&self) -> Result<LiveSet, GcError> {
        let source = &self.config.live_snapshots;
        let read_err = |source_err| GcError::LiveSetRead { path: source.name(), source: source_err };
        let text = match source {
            LiveSource::Stdin => {
                let mut text = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut text).map_err(read_err)?;
                text
            }
            LiveSource::File(path) => std::fs::read(path).map_err(read_err)?,
        };
        let live = live_set::parse(&text, &source.name(), self.config.now)?;
        info!(snapshots = live.snapshots.len(), taken_at = %live.taken_at, "live set read");
        Ok(live)
    }

    fn start_listing(&self, locations: mpsc::UnboundedReceiver<(u32, Location)>, out: PartSender) -> ListingTask {
        let stores = self.stores.clone();
        let concurrency = self.config.list_concurrency;
        let progress = Arc::clone(&self.progress.listed);
        let dry_run = !self.config.execute;
        let span = info_span!("listing");
        tokio::spawn(
            async move {
                let t = Instant::now();
                let (restored, held) = mpsc::unbounded_channel();
                let putting_back = put_back_before_listing(&stores, locations, restored, dry_run);
                let listing = async {
                    list_stream(stores.clone(), held, concurrency, progress, out).await.map_err(GcError::from)
                };
                let (held, ()) = tokio::try_join!(putting_back, listing)?;
                info!(elapsed_ms = ms(t), "listing done");
                Ok((ms(t), held))
            }
            .instrument(span),
        )
    }

    async fn manifests(
        &self,
        live: &LiveSet,
        legacy_location: u32,
        register: crate::manifest_fetch::RegisterLocation,
        wanted: Wanted,
        report: &mut Report,
    ) -> Result<Referenced, GcError> {
        let config = self.config;
        let t = Instant::now();
        let span = info_span!("manifests", snapshots = live.snapshots.len());
        let inventory =
            inventory(self.stores, &config.meta_bucket, &config.partition, live).instrument(span.clone()).await?;
        let filter = wanted
            .filter
            .then(|| Arc::new(RefFilter::for_run(inventory.id_bound, config.bloom_fpr, config.bloom_seed)));
        let spill = wanted.spill.then(|| RangeSpill::create(&config.work_dir)).transpose()?.map(Arc::new);
        let ingest = Ingest {
            stores: self.stores.clone(),
            meta_bucket: config.meta_bucket.clone(),
            partition: config.partition.clone(),
            legacy_location,
            sink: Arc::new(Refs {
                filter: filter.clone(),
                spill: spill.clone(),
                explain: wanted.explain,
                #[cfg(feature = "test-kit")]
                filter_omits: config.filter_omits.clone(),
            }),
            register,
            stats: Arc::clone(&self.progress.ingest),
        };
        tokio::select! {
            done = ingest_all(&ingest, inventory, config.manifest_concurrency).instrument(span) => done?,
            stopped = self.stop.stopped() => return Err(stopped),
        }
        drop(ingest);
        let stats = &self.progress.ingest;
        report.manifests.legacy = stats.legacy.load(Ordering::Relaxed);
        report.manifests.unified = stats.unified.load(Ordering::Relaxed);
        report.referenced_ids = stats.referenced_ids.load(Ordering::Relaxed);
        if let Some(filter) = &filter {
            report.bloom.bits = filter.num_bits() as u64;
            report.bloom.expected_fpr = filter.expected_fpr();
        }
        report.durations_ms.insert("manifests", ms(t));
        info!(
            legacy = report.manifests.legacy,
            unified = report.manifests.unified,
            referenced_ids = report.referenced_ids,
            elapsed_ms = ms(t),
            "manifests ingested"
        );
        // Every worker is done, so the sink's clone of the spill is the only other one left.
        let spill =
            spill.map(|spill| Arc::try_unwrap(spill).map_err(|_| internal("the reference spill is still shared")));
        Ok(Referenced { filter, spill: spill.transpose()? })
    }

    /// Decides the listing's parts as they arrive (they waited in the bounded channel until
    /// the filter was complete), spooling the planned ones. Returns when the listing is done.
    async fn decide(
        &self,
        listing: ListingTask,
        mut parts: mpsc::Receiver<Listed>,
        filter: &Arc<RefFilter>,
        listed_spill: Option<RangeSpill>,
        locations: &[Location],
        report: &mut Report,
    ) -> Result<(Plan, Option<RangeSpill>), GcError> {
        let config = self.config;
        let needs_records = config.execute || config.plan_out.is_some() || config.verify;
        let spool = needs_records.then(|| PlanSpool::create(&config.work_dir)).transpose()?;
        let (filter, stop, planned) = (Arc::clone(filter), self.stop.clone(), Arc::clone(&self.progress.planned));
        let cutoff_ms = config.cutoff.timestamp_millis();
        let n_locations = locations.len();
        let span = info_span!("decide");
        let deciding = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut decider = Decider::new(&filter, cutoff_ms, spool);
            let mut observe = |part: &Listed| {
                if let Some(spill) = &listed_spill {
                    spill.add_listed(part, &filter);
                }
            };
            let stopped = || stop.signal().is_some();
            let result = decide_stream(&mut parts, &mut decider, &mut observe, &planned, &stopped);
            // Dropped now, so a listing still sending stops at once.
            drop(parts);
            result.and_then(|()| decider.finish(n_locations)).map(|plan| (plan, listed_spill))
        });
        let abort_listing = listing.abort_handle();
        let listed = tokio::select! {
            done = listing => done.map_err(|e| GcError::Listing(ListingError::Task(e.to_string())))?,
            stopped = self.stop.stopped() => {
                // The decide stage stops at its next part and drops the channel, which ends
                // a `file://` walk still sending.
                abort_listing.abort();
                return Err(stopped);
            }
        };
        let decided = deciding.await.map_err(|e| internal(&format!("decide task: {e}")))?;
        match (listed, decided) {
            (Ok((listing_ms, held)), Ok(done)) => {
                report.durations_ms.insert("listing", listing_ms);
                report.held_chunks = held;
                Ok(done)
            }
            // The decide stage failed first and closed the channel: its error is the cause.
            (Err(GcError::Listing(ListingError::Closed)), Err(error)) => Err(error.into()),
            (Err(error), _) => Err(error),
            (Ok(_), Err(error)) => Err(error.into()),
        }
    }
    fn write_plan(
        &self,
        live: &LiveSet,
        locations: &[Location],
        plan: &Plan,
        report: &mut Report,
    ) -> Result<(), GcError> {
        let (Some(path), Some(spool)) = (&self.config.plan_out, &plan.spool) else {
            return Ok(());
        };
        let t = Instant::now();
        let config = self.config;
        let header = PlanHeader {
            kind: "header".into(),
            version: PLAN_VERSION,
            partition: config.partition.to_string(),
            store: config.store_url.clone(),
            mode: config.mode().into(),
            cutoff: rfc3339(config.cutoff),
            created_at: rfc3339(config.now),
            taken_at: rfc3339(live.taken_at),
            live_snapshots: live.snapshots.len() as u64,
            live_set_sha256: live.sha256(),
            max_delete_fraction: config.max_delete_fraction,
            bloom_fpr: config.bloom_fpr,
            bloom_seed: config.bloom_seed,
            locations: locations.iter().map(Location::to_string).collect(),
        };
        write_plan(path, &header, locations, spool, report.guard.old_chunks)?;
        report.durations_ms.insert("plan", ms(t));
        Ok(())
    }

    /// Deletes the spooled plan; also returns the error that stopped reading it, if any.
    async fn execute(
        &self,
        locations: &[Location],
        spool: &SpooledPlan,
        reread: Reread,
    ) -> Result<(ExecuteStats, Option<PlanError>), GcError> {
        let span = info_span!("execute");
        let mut spool_error = None;
        let planned = spool
            .runs()
            .map_while(|run| run.map_err(|e| spool_error = Some(e)).ok())
            .flat_map(|(location, records)| records.into_iter().map(move |chunk| (location, chunk)));
        let stats = execute(
            self.stores,
            locations,
            planned,
            reread,
            self.config.delete_concurrency,
            self.config.max_delete_rate,
            &self.stop.token,
            Arc::clone(&self.progress.deleted),
        )
        .instrument(span)
        .await?;
        info!(
            deleted = stats.deleted,
            refreshed_kept = stats.refreshed_kept,
            failed = stats.failures.len(),
            "execute done"
        );
        Ok((stats, spool_error))
    }

    /// Lists every location again, spilling what the filter holds: verify's after-image.
    async fn relist(&self, locations: &[Location], filter: &Arc<RefFilter>) -> Result<Spilled, GcError> {
        let (tx, rx) = mpsc::unbounded_channel();
        for (index, location) in locations.iter().enumerate() {
            let _ = tx.send((index as u32, location.clone()));
        }
        drop(tx);
        let spill = RangeSpill::create(&self.config.work_dir)?;
        let (out, mut parts) = mpsc::channel::<Listed>(PARTS_BUFFERED);
        let progress = Arc::clone(&self.progress.verify_listed);
        let span = info_span!("verify_relist");
        let listing =
            list_stream(self.stores.clone(), rx, self.config.list_concurrency, progress, out).instrument(span);
        let filter = Arc::clone(filter);
        let spilling = tokio::task::spawn_blocking(move || {
            while let Some(part) = parts.blocking_recv() {
                spill.add_listed(&part, &filter);
            }
            spill
        });
        let listed = listing.await;
        let spill = spilling.await.map_err(|e| internal(&format!("verify spill task: {e}")))?;
        listed?;
        Ok(spill.finish()?)
    }
}

/// Spec 8.3's refusals: a plan for another partition or store, too old, made from another
/// live set, or made by `--execute`.
fn check_reviewed(reviewed: &ReviewedPlan, config: &Config, live: &LiveSet) -> Result<(), GcError> {
    let h = &reviewed.header;
    let refuse = |why: String| Err(GcError::PlanRefused(why));
    if h.mode != "dry-run" {
        return refuse(format!("it was made by a {} run; only a dry-run plan can be applied", h.mode));
    }
    if h.partition != config.partition.as_str() {
        return refuse(format!(
            "it is for partition {:?}, this run is for {:?}",
            h.partition,
            config.partition.as_str()
        ));
    }
    if h.store != config.store_url {
        return refuse(format!("it is for store {:?}, this run is on {:?}", h.store, config.store_url));
    }
    let created = chrono::DateTime::parse_from_rfc3339(&h.created_at)
        .map_err(|e| GcError::PlanRefused(format!("header created_at {:?}: {e}", h.created_at)))?
        .with_timezone(&chrono::Utc);
    let age = config.now - created;
    if age > config.max_plan_age || age < -crate::live_set::MAX_CLOCK_SKEW {
        return refuse(format!(
            "it was made at {}, {} min ago; --max-plan-age allows {} min",
            h.created_at,
            age.num_minutes(),
            config.max_plan_age.num_minutes()
        ));
    }
    let sha = live.sha256();
    if h.live_set_sha256 != sha {
        return refuse(format!(
            "it was made from another live set (live_set_sha256 {} in the plan, {sha} now): a snapshot was added or removed since",
            h.live_set_sha256
        ));
    }
    Ok(())
}

/// The guard's refusal, when it tripped.
fn guard_error(report: &Report) -> Option<GcError> {
    let guard = &report.guard;
    guard.tripped.then(|| GcError::Guard {
        planned: report.planned_deletes,
        old: guard.old_chunks,
        fraction: guard.fraction,
        max: guard.max_delete_fraction,
    })
}

/// Exit 7 when some deletes failed, naming the first.
fn delete_failures(stats: &ExecuteStats, planned: u64) -> Option<GcError> {
    let first = stats.failures.first()?;
    Some(GcError::DeleteFailures {
        failed: stats.failures.len() as u64,
        planned,
        first: format!("{}/{}: {}", first.bucket, first.key, first.error),
    })
}

/// Passes each location on to the listing once the chunks an earlier, killed run left
/// renamed aside in it are back at their keys (only counted in a dry run).
async fn put_back_before_listing(
    stores: &Stores,
    mut locations: mpsc::UnboundedReceiver<(u32, Location)>,
    listing: mpsc::UnboundedSender<(u32, Location)>,
    dry_run: bool,
) -> Result<HeldFound, GcError> {
    let mut held = HeldFound::default();
    while let Some((index, location)) = locations.recv().await {
        let found = put_back_held(stores, std::slice::from_ref(&location), dry_run).await?;
        held.found += found.found;
        held.put_back += found.put_back;
        if listing.send((index, location)).is_err() {
            break;
        }
    }
    Ok(held)
}

fn internal(what: &str) -> GcError {
    GcError::Listing(ListingError::Task(what.to_owned()))
}

/// Unreferenced old chunks the filter kept by mistake, expected: with rate p, the planned
/// ones are the (1 - p) share of the truly unreferenced.
fn expected_false_positives(filter: &RefFilter, planned: u64) -> f64 {
    let p = filter.expected_fpr();
    planned as f64 * p / (1.0 - p)
}

fn keys(locations: &[Location], sample: &[(u32, [u8; 32])]) -> Vec<String> {
    sample
        .iter()
        .map(|(location, id)| {
            let location = &locations[*location as usize];
            format!("{}/{}", location.bucket(), location.chunk_key(&ChunkId(*id)))
        })
        .collect()
}

fn finish_dry_run_verify(report: &mut Report, verify: Option<VerifyReport>) -> Result<(), GcError> {
    let Some(mut verify) = verify else {
        return Ok(());
    };
    verify.ok = verify.planned_but_referenced == 0 && verify.missing_before == 0;
    let missing = verify.missing_before;
    let first = verify.missing_before_keys.first().cloned().unwrap_or_default();
    let ok = verify.ok;
    report.verify = Some(verify);
    if ok { Ok(()) } else { Err(GcError::Verify(format!("{missing} referenced chunks are missing, e.g. {first}"))) }
}
