//! One run of the collector: the stages wired in the order the data flows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::bloom::RefFilter;
use crate::config::{Config, LiveSource};
use crate::decide::{Decision, KeepReason, decide};
use crate::error::{GcError, Signal};
use crate::execute::{ExecuteStats, execute};
use crate::ids::ChunkId;
use crate::listing::{Listing, list_all};
use crate::live_set::{self, LiveSet};
use crate::locations::Location;
use crate::manifest_fetch::{Ingest, IngestStats, ingest_all, inventory};
use crate::plan::{PLAN_VERSION, PlanHeader, rfc3339, write_plan};
use crate::report::{LocationReport, Report};
use crate::store::Stores;
use crate::verify::{ExactRefs, ExactRefsBuilder, VerifyReport};

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

/// Live progress counters, read by the terminal progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub listed: Arc<AtomicU64>,
    pub deleted: Arc<AtomicU64>,
    pub ingest: Arc<IngestStats>,
}

/// Runs the collector once. Always returns a report; its `exit_code` says how it ended.
pub async fn run(stores: &Stores, config: &Config, stop: &Stop, progress: &Progress) -> Report {
    let started = Instant::now();
    let mut report = Report {
        version: 1,
        partition: config.partition.to_string(),
        mode: config.mode(),
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

        let (to_listing, from_table) = mpsc::unbounded_channel();
        let table = Arc::new(Mutex::new(LocationTable {
            locations: Vec::new(),
            index: HashMap::new(),
            listing: Some(to_listing),
        }));
        let register = {
            let table = Arc::clone(&table);
            move |location: &Location| table.lock().unwrap_or_else(PoisonError::into_inner).register(location)
        };
        let legacy_location = register(&Location::legacy_default(&config.meta_bucket, &config.partition)?);
        config.extra_locations.iter().for_each(|l| {
            register(l);
        });
        let listing = self.start_listing(from_table);

        let (filter, exact) = match self.manifests(&live, legacy_location, Arc::new(register), report).await {
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
        let (mut listing, listing_ms) = tokio::select! {
            done = listing => done.map_err(|e| GcError::Listing(crate::listing::ListingError::Task(e.to_string())))??,
            stopped = self.stop.stopped() => return Err(stopped),
        };
        report.durations_ms.insert("listing", listing_ms);
        self.stop.check()?;

        let t = Instant::now();
        let before = exact.as_ref().map(|exact| exact.presence(&listing));
        let old_chunks = decide_all(&mut listing, &filter, config.cutoff.timestamp_millis(), &locations, report);
        report.expected_false_positives = expected_false_positives(&filter, report.planned_deletes);
        self.guard(report, old_chunks);
        report.durations_ms.insert("decide", ms(t));

        let mut verify = exact.as_ref().map(|exact| check_plan(exact, &listing, &locations));
        if let (Some(exact), Some(before), Some(verify)) = (&exact, &before, &mut verify) {
            let (count, sample) = exact.missing(before, None);
            verify.missing_before = count;
            verify.missing_before_keys = keys(&locations, &sample);
        }
        self.write_plan(&live, &locations, &listing, report)?;
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
        if report.guard.tripped {
            return Err(GcError::Guard {
                planned: report.planned_deletes,
                old: report.guard.old_chunks,
                fraction: report.guard.fraction,
                max: report.guard.max_delete_fraction,
            });
        }
        self.stop.check()?;

        let t = Instant::now();
        let stats = self.execute(&locations, &listing).await?;
        report.durations_ms.insert("execute", ms(t));
        record_execute(report, &stats);
        drop(listing);
        if let Some(signal) = self.stop.signal() {
            // Stopped: exit now, with the report; re-listing a large remote partition could
            // outlast the grace period before a SIGKILL, which would lose the report.
            if let Some(verify) = verify {
                warn!("verify after the deletes skipped: stopped by a signal");
                report.verify = Some(verify);
            }
            return Err(GcError::Interrupted(signal));
        }
        if let (Some(exact), Some(before), Some(mut verify)) = (exact, before, verify) {
            let t = Instant::now();
            verify.after_checked = true;
            let after = self.relist(&locations).await?;
            let after = exact.presence(&after);
            let (count, sample) = exact.missing(&before, Some(&after));
            verify.missing_after = count;
            verify.missing_after_keys = keys(&locations, &sample);
            verify.ok = verify.missing_after == 0 && verify.planned_but_referenced == 0;
            report.durations_ms.insert("verify_after", ms(t));
            let failed = !verify.ok;
            report.verify = Some(verify);
            if failed {
                return Err(GcError::Verify(format!(
                    "{count} referenced chunks present before the deletes are gone after them"
                )));
            }
        }
        self.stop.check()?;
        if let Some(first) = stats.failures.first() {
            return Err(GcError::DeleteFailures {
                failed: stats.failures.len() as u64,
                planned: report.planned_deletes,
                first: format!("{}/{}: {}", first.bucket, first.key, first.error),
            });
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

    fn start_listing(
        &self,
        locations: mpsc::UnboundedReceiver<(u32, Location)>,
    ) -> tokio::task::JoinHandle<Result<(Listing, u64), GcError>> {
        let stores = self.stores.clone();
        let concurrency = self.config.list_concurrency;
        let progress = Arc::clone(&self.progress.listed);
        let span = info_span!("listing");
        tokio::spawn(
            async move {
                let t = Instant::now();
                let listing = list_all(stores, locations, concurrency, progress).await?;
                info!(chunks = listing.chunk_count(), elapsed_ms = ms(t), "listing done");
                Ok((listing, ms(t)))
            }
            .instrument(span),
        )
    }

    async fn manifests(
        &self,
        live: &LiveSet,
        legacy_location: u32,
        register: crate::manifest_fetch::RegisterLocation,
        report: &mut Report,
    ) -> Result<(Arc<RefFilter>, Option<ExactRefs>), GcError> {
        let config = self.config;
        let t = Instant::now();
        let span = info_span!("manifests", snapshots = live.snapshots.len());
        let inventory =
            inventory(self.stores, &config.meta_bucket, &config.partition, live).instrument(span.clone()).await?;
        let filter = Arc::new(RefFilter::new(inventory.id_bound, config.bloom_fpr, config.bloom_seed));
        let exact = config.verify.then(|| Arc::new(ExactRefsBuilder::default()));
        let ingest = Ingest {
            stores: self.stores.clone(),
            meta_bucket: config.meta_bucket.clone(),
            partition: config.partition.clone(),
            legacy_location,
            filter: Arc::clone(&filter),
            exact: exact.clone(),
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
        report.bloom.bits = filter.num_bits() as u64;
        report.bloom.expected_fpr = filter.expected_fpr();
        let exact = exact.and_then(Arc::into_inner).map(ExactRefsBuilder::build);
        report.referenced_distinct = exact.as_ref().map(|e| e.len() as u64);
        report.durations_ms.insert("manifests", ms(t));
        info!(
            legacy = report.manifests.legacy,
            unified = report.manifests.unified,
            referenced_ids = report.referenced_ids,
            elapsed_ms = ms(t),
            "manifests ingested"
        );
        Ok((filter, exact))
    }

    fn guard(&self, report: &mut Report, old_chunks: u64) {
        let guard = &mut report.guard;
        guard.old_chunks = old_chunks;
        guard.fraction = if old_chunks == 0 { 0.0 } else { report.planned_deletes as f64 / old_chunks as f64 };
        guard.tripped = guard.fraction > guard.max_delete_fraction;
        if guard.tripped {
            warn!(fraction = guard.fraction, max = guard.max_delete_fraction, "delete-fraction guard tripped");
        }
    }

    fn write_plan(
        &self,
        live: &LiveSet,
        locations: &[Location],
        listing: &Listing,
        report: &mut Report,
    ) -> Result<(), GcError> {
        let Some(path) = &self.config.plan_out else {
            return Ok(());
        };
        let t = Instant::now();
        let header = PlanHeader {
            kind: "header",
            version: PLAN_VERSION,
            partition: self.config.partition.as_str(),
            mode: self.config.mode(),
            cutoff: rfc3339(self.config.cutoff),
            created_at: rfc3339(self.config.now),
            taken_at: rfc3339(live.taken_at),
            live_snapshots: live.snapshots.len() as u64,
            bloom_fpr: self.config.bloom_fpr,
            bloom_seed: self.config.bloom_seed,
            locations: locations.iter().map(Location::to_string).collect(),
        };
        write_plan(path, &header, locations, listing.chunks())?;
        report.durations_ms.insert("plan", ms(t));
        Ok(())
    }

    async fn execute(&self, locations: &[Location], listing: &Listing) -> Result<ExecuteStats, GcError> {
        let span = info_span!("execute", planned = listing.chunk_count());
        let stats = execute(
            self.stores,
            locations,
            listing.chunks(),
            self.config.cutoff.timestamp_millis(),
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
        Ok(stats)
    }

    async fn relist(&self, locations: &[Location]) -> Result<Listing, GcError> {
        let (tx, rx) = mpsc::unbounded_channel();
        for (index, location) in locations.iter().enumerate() {
            let _ = tx.send((index as u32, location.clone()));
        }
        drop(tx);
        let progress = Arc::new(AtomicU64::new(0));
        let span = info_span!("verify_relist");
        Ok(list_all(self.stores.clone(), rx, self.config.list_concurrency, progress).instrument(span).await?)
    }
}

/// Decides every listed chunk, counts the decisions per location into the report, and
/// leaves only the planned deletes in the listing, sorted by location and id. Returns how
/// many chunks are older than the cutoff.
pub fn decide_all(
    listing: &mut Listing,
    filter: &RefFilter,
    cutoff_ms: i64,
    locations: &[Location],
    report: &mut Report,
) -> u64 {
    #[derive(Default, Clone, Copy)]
    struct Tally {
        young: u64,
        referenced: u64,
        planned: u64,
        planned_bytes: u64,
        old: u64,
    }
    let n = locations.len();
    let tallies = listing
        .batches
        .par_iter_mut()
        .map(|batch| {
            let mut tally = vec![Tally::default(); n];
            batch.retain(|chunk| {
                let t = &mut tally[chunk.location as usize];
                t.old += u64::from(chunk.last_modified_ms < cutoff_ms);
                match decide(&chunk.id, chunk.last_modified_ms, filter, cutoff_ms) {
                    Decision::Keep(KeepReason::Referenced) => t.referenced += 1,
                    Decision::Keep(KeepReason::Young) => t.young += 1,
                    Decision::Delete => {
                        t.planned += 1;
                        t.planned_bytes += chunk.size;
                        return true;
                    }
                }
                false
            });
            batch.sort_unstable_by_key(|c| c.id);
            tally
        })
        .reduce(
            || vec![Tally::default(); n],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    x.young += y.young;
                    x.referenced += y.referenced;
                    x.planned += y.planned;
                    x.planned_bytes += y.planned_bytes;
                    x.old += y.old;
                }
                a
            },
        );
    listing.batches.retain(|b| !b.is_empty());
    listing.batches.sort_unstable_by_key(|b| b.first().map(|c| (c.location, c.id)));
    let mut old = 0;
    report.locations = n as u64;
    report.per_location = locations
        .iter()
        .enumerate()
        .map(|(i, location)| {
            let counts = listing.per_location.get(i).cloned().unwrap_or_default();
            let t = tallies[i];
            old += t.old;
            report.listed_objects += counts.listed_objects;
            report.chunks_scanned += counts.chunks;
            report.foreign_objects += counts.foreign_objects;
            report.young_kept += t.young;
            report.referenced_kept += t.referenced;
            report.planned_deletes += t.planned;
            report.planned_bytes += t.planned_bytes;
            if counts.foreign_objects > 0 {
                warn!(location = %location, foreign = counts.foreign_objects, sample = ?counts.foreign_sample, "foreign objects (never deleted)");
            }
            LocationReport {
                bucket: location.bucket().to_owned(),
                prefix: location.prefix().to_owned(),
                listed_objects: counts.listed_objects,
                chunks_scanned: counts.chunks,
                foreign_objects: counts.foreign_objects,
                foreign_sample: counts.foreign_sample,
                young_kept: t.young,
                referenced_kept: t.referenced,
                planned_deletes: t.planned,
                planned_bytes: t.planned_bytes,
            }
        })
        .collect();
    info!(
        chunks = report.chunks_scanned,
        planned = report.planned_deletes,
        referenced_kept = report.referenced_kept,
        young_kept = report.young_kept,
        "decided"
    );
    old
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

/// The first half of verify: no planned chunk is referenced, checked exactly.
fn check_plan(exact: &ExactRefs, listing: &Listing, locations: &[Location]) -> VerifyReport {
    let wrong = exact.planned_but_referenced(listing.chunks());
    let sample: Vec<(u32, [u8; 32])> = wrong.iter().take(crate::verify::SAMPLE).map(|c| (c.location, c.id)).collect();
    VerifyReport {
        ok: wrong.is_empty(),
        planned_but_referenced: wrong.len() as u64,
        planned_but_referenced_keys: keys(locations, &sample),
        ..VerifyReport::default()
    }
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

fn record_execute(report: &mut Report, stats: &ExecuteStats) {
    report.deleted = stats.deleted;
    report.deleted_bytes = stats.deleted_bytes;
    report.refreshed_kept = stats.refreshed_kept;
    report.delete_failures = stats.failures.len() as u64;
    report.failed_deletes = stats.failures.clone();
    report.deletes_not_started = stats.not_started;
}
