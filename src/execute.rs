//! Carries out the plan (spec 4.6), each delete tied to the object judged old where the store
//! allows it (spec 9.1), so a writer's refresh that lands at any moment keeps its chunk:
//! - `file://`, `memory://`: each chunk is renamed aside (where no writer reaches it), its
//!   last-modified read there, then deleted, or put back without replacing a copy a writer
//!   made meanwhile ([`crate::held::put_back_held`] finishes what a killed run left aside).
//! - `gs://`: each chunk's last-modified and generation are re-read, then it is deleted with
//!   `x-goog-if-generation-match` on the generation read; a failed precondition keeps it.
//! - `s3://` with versioning enabled: the delete names the version re-read.
//! - `az://`: the delete carries `If-Match` on the ETag re-read; a failed precondition keeps it.
//! - elsewhere (unversioned S3): the re-read, then a bulk delete of the still-old chunks of a
//!   location (`DeleteObjects`), reported as unconditional.
//!
//! The chunks flow through a pipeline of `--delete-concurrency` chunks at once; every HEAD,
//! rename and delete request holds one of that many permits, so the flag is the bound on
//! requests in flight and every permit stays busy. The permits shrink while the store
//! throttles and grow back after ([`crate::throttle::Aimd`]); `--max-delete-rate` admits each
//! chunk before its re-read. A signal stops new chunks, and the deletes of chunks whose
//! re-read it interrupted; a chunk already renamed aside is always finished.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use crate::exit::Exit;
use crate::held::HeldError;
use crate::ids::ChunkId;
use crate::listing::ListedChunk;
use crate::locations::Location;
pub use crate::plan::Reread;
use crate::plan::{GuardTripped, PlanError, SpooledPlan};
use crate::spill::DeletedWatch;
use crate::store::LocalAside;
use crate::store::{ConditionalDelete, DeleteBatching, DeleteCondition, StoreError, Stores, Version};
use crate::throttle::{Aimd, RateCap};

/// Keys in one version delete of S3 (`DeleteObjects` naming each `VersionId`, spec 10.1).
const S3_BATCH: usize = 1000;
/// Sub-requests in one Azure Blob Batch, the most it takes (spec 10.1).
const AZURE_BATCH: usize = 256;

mod aside;
mod attribute;
mod conditional;
mod stats;
use aside::{Aside, delete_aside, local_asides};
use attribute::{Deleted, attribute};
pub(crate) use conditional::Conditional;
use conditional::conditionals;
pub use stats::{DeleteConditions, DeleteFailure, DeleteFailures, ExecuteStats};

/// How the execute stage fails: refused before any delete (the guard), what a killed run held
/// aside not put back, the store, the plan's spool unreadable midway, or some deletes failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteStageError {
    #[error(transparent)]
    Guard(#[from] GuardTripped),
    #[error(transparent)]
    Held(#[from] HeldError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the plan spool could not be read back during the deletes ({0}); the rest of the plan was not deleted")]
    SpoolRead(PlanError),
    #[error(transparent)]
    DeleteFailures(#[from] DeleteFailures),
}

impl ExecuteStageError {
    pub fn exit(&self) -> Exit {
        match self {
            ExecuteStageError::Guard(_) => Exit::Guard,
            ExecuteStageError::Held(e) => e.exit(),
            ExecuteStageError::Store(_) => Exit::Usage,
            // The spool written by this run is gone or corrupt: a bug, not a fault of the input.
            ExecuteStageError::SpoolRead(_) => Exit::Internal,
            ExecuteStageError::DeleteFailures(_) => Exit::DeleteFailures,
        }
    }
}

/// The bound on requests in flight, and whether the store deletes one key per request.
struct Permits {
    aimd: Aimd,
    single_deletes: bool,
    condition: DeleteCondition,
}

impl Permits {
    async fn acquire(&self) -> crate::throttle::AimdPermit<'_> {
        self.aimd.acquire().await
    }
}

/// How a run deletes: the store, the bounds on requests in flight and on the delete rate, the
/// stop to watch and the progress counter to advance.
pub struct Executor<'a> {
    pub stores: &'a Stores,
    pub concurrency: usize,
    pub max_delete_rate: Option<f64>,
    pub stop: &'a CancellationToken,
    pub progress: Arc<AtomicU64>,
    /// Where deleted chunks are noted for spec 9.2's accounting, if it runs.
    pub deleted: Option<&'a DeletedWatch>,
}

impl Executor<'_> {
    /// Deletes objects that are not chunks (a deleting snapshot's manifest objects, spec
    /// 9.2), each exactly as a planned chunk: re-read right before its delete, kept unless
    /// still older than the cutoff, deleted tied to the object re-read (spec 9.1). Returns
    /// what became of each, in order.
    pub(crate) async fn delete_objects(
        &self,
        location: &Location,
        objects: &[(String, ListedChunk)],
        cutoff_ms: i64,
    ) -> Result<Vec<ExecuteStats>, StoreError> {
        let store = self.stores.bucket(location.bucket())?;
        let conditional = conditionals(self.stores, std::slice::from_ref(location)).await?.pop().flatten();
        let local = self.stores.local_aside(location.bucket());
        let permits = Permits {
            aimd: Aimd::new(self.concurrency, self.stores.request_counters()),
            single_deletes: true,
            condition: self.stores.delete_condition(),
        };
        let context = Chunk {
            store: store.as_ref(),
            conditional: conditional.as_deref(),
            local: local.as_ref(),
            location,
            index: 0,
            deleted: None,
            reread: Reread::OlderThan { cutoff_ms },
            permits: &permits,
            stop: self.stop,
        };
        let mut done = Vec::with_capacity(objects.len());
        for (key, object) in objects {
            done.push(match context.judge_key(key.clone(), object, None).await {
                Judged::Done(stats) => stats,
                Judged::Doomed(doomed) => context.delete_bulk(vec![doomed]).await,
            });
        }
        Ok(done)
    }

    /// Deletes a spooled plan in plan order; also returns the error that stopped reading the
    /// spool, if any (the rest of the plan is then not deleted).
    pub(crate) async fn execute_spool(
        &self,
        locations: &[Location],
        spool: &SpooledPlan,
        reread: Reread,
    ) -> Result<(ExecuteStats, Option<PlanError>), StoreError> {
        let mut spool_error = None;
        let planned = spool
            .runs()
            .map_while(|run| run.map_err(|e| spool_error = Some(e)).ok())
            .flat_map(|(location, records)| records.into_iter().map(move |chunk| (location, chunk)));
        let stats = self.execute(locations, planned, reread).await?;
        tracing::info!(
            deleted = stats.deleted,
            refreshed_kept = stats.refreshed_kept,
            failed = stats.failures.len(),
            "execute done"
        );
        Ok((stats, spool_error))
    }

    /// Deletes every planned chunk, given in plan order with its location's index, unless the
    /// re-read right before its delete shows it was refreshed since it was planned.
    ///
    /// The chunks flow through a pipeline of `concurrency` chunks at once, each taking a
    /// permit for each of its requests, so every permit stays busy: its re-read, then
    /// (per-key stores) its delete. On a store that deletes in bulk (unversioned S3) the
    /// still-old chunks of a location are gathered into bulk requests of [`batch_size`]
    /// keys, each holding one permit.
    pub async fn execute(
        &self,
        locations: &[Location],
        planned: impl Iterator<Item = (u32, ListedChunk)>,
        reread: Reread,
    ) -> Result<ExecuteStats, StoreError> {
        let Executor { stores, concurrency, max_delete_rate, stop, ref progress, deleted } = *self;
        let buckets = locations.iter().map(|l| stores.bucket(l.bucket())).collect::<Result<Vec<_>, _>>()?;
        let conditionals = conditionals(stores, locations).await?;
        let locals = local_asides(stores, locations);
        let permits = Permits {
            aimd: Aimd::new(concurrency, stores.request_counters()),
            single_deletes: stores.delete_batching() == DeleteBatching::Single,
            condition: stores.delete_condition(),
        };
        let cap = max_delete_rate.and_then(RateCap::new);
        // A batch fills up to the store's maximum: `--delete-concurrency` bounds requests in
        // flight, not keys per request (spec 10.1).
        let plain_bulk = stores.delete_batching().max_keys();
        let bulk_size = |location: u32| match &conditionals[location as usize] {
            Some(conditional) => conditional.max_batch(),
            None => plain_bulk,
        };
        let context = |location: u32| Chunk {
            store: buckets[location as usize].as_ref(),
            conditional: conditionals[location as usize].as_deref(),
            local: locals[location as usize].as_ref(),
            location: &locations[location as usize],
            index: location,
            deleted,
            reread,
            permits: &permits,
            stop,
        };
        let judged = futures::stream::iter(planned)
            .map(|(location, chunk)| {
                let (context, cap, progress) = (context(location), cap.as_ref(), &progress);
                async move {
                    let judged = context.judge(&chunk, cap).await;
                    progress.fetch_add(1, Ordering::Relaxed);
                    (location, judged)
                }
            })
            .buffer_unordered(concurrency.max(1));
        futures::pin_mut!(judged);

        let mut stats = ExecuteStats::default();
        let mut gathered: HashMap<u32, Vec<Doomed>> = HashMap::new();
        let mut bulk = futures::stream::FuturesUnordered::new();
        let mut judging = true;
        // Batches waiting for a permit hold their keys in memory: at most `concurrency` of them.
        let max_batches = concurrency.max(1);
        while judging || !bulk.is_empty() {
            tokio::select! {
                next = judged.next(), if judging && bulk.len() < max_batches => match next {
                    Some((_, Judged::Done(done))) => stats.merge(done),
                    Some((location, Judged::Doomed(doomed))) => {
                        let keys = gathered.entry(location).or_default();
                        keys.push(doomed);
                        if keys.len() >= bulk_size(location) {
                            bulk.push(context(location).delete_bulk(std::mem::take(keys)));
                        }
                    }
                    None => {
                        judging = false;
                        for (location, keys) in gathered.drain().filter(|(_, keys)| !keys.is_empty()) {
                            bulk.push(context(location).delete_bulk(keys));
                        }
                    }
                },
                Some(done) = bulk.next(), if !bulk.is_empty() => stats.merge(done),
            }
        }
        Ok(stats)
    }
}

/// What the pipeline made of one chunk.
enum Judged {
    /// Finished: deleted, kept, failed or not started.
    Done(ExecuteStats),
    /// Waiting for a batch: still old at its re-read (unversioned S3), or carrying the version
    /// its delete is conditioned on (spec 10.1).
    Doomed(Doomed),
}

/// A chunk on its way to a batched delete.
struct Doomed {
    key: String,
    size: u64,
    /// What the delete is conditioned on; [`Version::NONE`] for an unconditional bulk delete.
    version: Version,
}

impl Judged {
    fn done(f: impl FnOnce(&mut ExecuteStats)) -> Judged {
        let mut stats = ExecuteStats::default();
        f(&mut stats);
        Judged::Done(stats)
    }
}

/// What a chunk's delete needs: its location's store and conditional deleter, the run's
/// re-read rule, permits and stop.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    store: &'a dyn ObjectStore,
    conditional: Option<&'a Conditional>,
    /// `file://`'s compare-and-delete done by the store, where no test layer wraps it.
    local: Option<&'a LocalAside>,
    location: &'a Location,
    /// The location's index in the plan.
    index: u32,
    deleted: Option<&'a DeletedWatch>,
    reread: Reread,
    permits: &'a Permits,
    stop: &'a CancellationToken,
}

impl Chunk<'_> {
    /// Every place a chunk counts as deleted notes it here.
    fn note_deleted(&self, key: &str) {
        if let Some(watch) = self.deleted
            && let Some(id) = self.location.chunk_of_key(key)
        {
            watch.spill.add_held(self.index, &[id.0], &watch.named);
        }
    }

    fn failure(&self, key: &str, error: String) -> DeleteFailure {
        DeleteFailure { bucket: self.location.bucket().to_owned(), key: key.to_owned(), error }
    }

    /// Re-reads the chunk and deletes it if still old (or leaves that to a bulk delete).
    async fn judge(&self, chunk: &ListedChunk, cap: Option<&RateCap>) -> Judged {
        self.judge_key(self.location.chunk_key(&ChunkId(chunk.id)), chunk, cap).await
    }

    /// [`Self::judge`] for the object at `key`, whose size and last-modified `chunk` holds.
    async fn judge_key(&self, key: String, chunk: &ListedChunk, cap: Option<&RateCap>) -> Judged {
        let admitted = match cap {
            Some(cap) => tokio::select! {
                () = cap.admit(1) => true,
                () = self.stop.cancelled() => false,
            },
            None => true,
        };
        if !admitted || self.stop.is_cancelled() {
            return Judged::done(|s| s.not_started = 1);
        }
        if self.permits.condition == DeleteCondition::RenameAside {
            let outcome = delete_aside(self.store, self.local, &key, chunk, self.reread, self.permits, self.stop).await;
            return Judged::Done(self.aside_stats(&key, outcome));
        }
        // The listing's version conditions the delete: the store checks it, no re-read (spec 10.1).
        if let Some(conditional) = self.conditional
            && !chunk.version.is_none()
        {
            let doomed = Doomed { key, size: chunk.size, version: chunk.version };
            return match conditional.max_batch() {
                1 => Judged::Done(self.delete_versions(conditional, vec![doomed]).await),
                _ => Judged::Doomed(doomed),
            };
        }
        let now = {
            let _permit = self.permits.acquire().await;
            if self.stop.is_cancelled() {
                return Judged::done(|s| s.not_started = 1);
            }
            self.store.head(&Path::from(key.as_str())).await
        };
        let read = match now {
            Ok(meta) if !self.reread.still_doomed(chunk, meta.last_modified.timestamp_millis()) => {
                tracing::info!(bucket = self.location.bucket(), key, "kept: refreshed since the listing");
                return Judged::done(|s| s.refreshed_kept = 1);
            }
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => {
                self.note_deleted(&key);
                return Judged::done(|s| s.deleted = 1);
            }
            Err(e) => {
                let failure = self.failure(&key, format!("re-reading last-modified: {e}"));
                return Judged::done(|s| s.failures.push(failure));
            }
        };
        if self.stop.is_cancelled() {
            return Judged::done(|s| s.not_started = 1);
        }
        match self.conditional {
            Some(conditional) => match conditional.version_read(&key, &read) {
                Ok(version) => Judged::Done(
                    self.delete_versions(conditional, vec![Doomed { key, size: chunk.size, version }]).await,
                ),
                Err(error) => {
                    let failure = self.failure(&key, error);
                    Judged::done(|s| s.failures.push(failure))
                }
            },
            None if self.permits.single_deletes => {
                Judged::Done(self.delete_plain(vec![Doomed { key, size: chunk.size, version: Version::NONE }]).await)
            }
            None => Judged::Doomed(Doomed { key, size: chunk.size, version: Version::NONE }),
        }
    }

    fn aside_stats(&self, key: &str, outcome: Aside) -> ExecuteStats {
        let mut stats = ExecuteStats::default();
        match outcome {
            Aside::Deleted { bytes } => {
                self.note_deleted(key);
                stats.deleted = 1;
                stats.deleted_bytes = bytes;
                stats.conditions.conditional = 1;
            }
            Aside::AlreadyGone => {
                self.note_deleted(key);
                stats.deleted = 1;
            }
            Aside::Kept => {
                tracing::info!(bucket = self.location.bucket(), key, "kept: refreshed since the listing");
                stats.refreshed_kept = 1;
            }
            Aside::NotStarted => stats.not_started = 1,
            Aside::Failed(error) => stats.failures.push(self.failure(key, error)),
        }
        stats
    }

    /// One batch of deletes, conditioned where the location's store has a conditional
    /// delete, unless a stop came first.
    async fn delete_bulk(self, keys: Vec<Doomed>) -> ExecuteStats {
        if self.stop.is_cancelled() {
            return ExecuteStats { not_started: keys.len() as u64, ..ExecuteStats::default() };
        }
        match self.conditional {
            Some(conditional) => self.delete_versions(conditional, keys).await,
            None => self.delete_plain(keys).await,
        }
    }

    /// Deletes `keys` with one `delete_stream` call (one bulk request on S3).
    async fn delete_plain(&self, keys: Vec<Doomed>) -> ExecuteStats {
        let mut stats = ExecuteStats::default();
        stats.conditions.unconditional = keys.len() as u64;
        let paths: Vec<Path> = keys.iter().map(|doomed| Path::from(doomed.key.as_str())).collect();
        let results = {
            let _permit = self.permits.acquire().await;
            let input = futures::stream::iter(paths.clone().into_iter().map(Ok)).boxed();
            self.store.delete_stream(input).collect::<Vec<_>>().await
        };
        for (Doomed { key, size, .. }, outcome) in keys.iter().zip(attribute(&paths, results)) {
            match outcome {
                Deleted::Yes => {
                    self.note_deleted(key);
                    stats.deleted += 1;
                    stats.deleted_bytes += size;
                }
                Deleted::AlreadyGone => {
                    self.note_deleted(key);
                    stats.deleted += 1;
                }
                Deleted::No(error) => stats.failures.push(self.failure(key, error)),
            }
        }
        stats
    }

    /// Deletes each of `keys` only if it is still the version named (spec 9.1, 10.1): one
    /// request where the store batches, one request per key elsewhere; one permit a request.
    async fn delete_versions(&self, conditional: &Conditional, keys: Vec<Doomed>) -> ExecuteStats {
        let mut stats = ExecuteStats::default();
        stats.conditions.conditional = keys.len() as u64;
        let outcomes = {
            let _permit = self.permits.acquire().await;
            let batch: Vec<(&str, Version)> = keys.iter().map(|d| (d.key.as_str(), d.version)).collect();
            conditional.delete(&batch).await
        };
        for (Doomed { key, size, .. }, outcome) in keys.iter().zip(outcomes) {
            match outcome {
                Ok(ConditionalDelete::Deleted) => {
                    self.note_deleted(key);
                    stats.deleted += 1;
                    stats.deleted_bytes += size;
                }
                Ok(ConditionalDelete::Gone) => {
                    self.note_deleted(key);
                    stats.deleted += 1;
                }
                Ok(ConditionalDelete::Changed) => {
                    tracing::info!(bucket = self.location.bucket(), key, "kept: rewritten since it was judged old");
                    stats.refreshed_kept += 1;
                }
                Err(error) => stats.failures.push(self.failure(key, error)),
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(keys: &[&str]) -> Vec<Path> {
        keys.iter().map(|k| Path::from(*k)).collect()
    }

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic { store: "test", source: message.to_owned().into() }
    }

    #[test]
    fn the_reread_keeps_a_chunk_at_the_cutoff_or_changed_since_the_plan() {
        let planned = ListedChunk { id: [1; 32], size: 1, last_modified_ms: 50, version: Version::NONE };
        let own = Reread::OlderThan { cutoff_ms: 100 };
        assert!(own.still_doomed(&planned, 99));
        assert!(!own.still_doomed(&planned, 100), "refreshed to exactly the cutoff is kept");
        assert!(Reread::Unchanged.still_doomed(&planned, 50));
        assert!(!Reread::Unchanged.still_doomed(&planned, 51), "touched since the plan is kept");
        assert!(!Reread::Unchanged.still_doomed(&planned, 49), "rewritten with an older time is kept too");
        // A listing in milliseconds, a re-read in whole seconds (GCS's JSON list, XML HEAD).
        let listed = ListedChunk { last_modified_ms: 1_767_323_045_678, ..planned };
        assert!(Reread::Unchanged.still_doomed(&listed, 1_767_323_045_000), "the same second");
        assert!(!Reread::Unchanged.still_doomed(&listed, 1_767_323_046_000), "a second later is kept");
        assert!(!Reread::Unchanged.still_doomed(&listed, 1_767_323_045_679), "both in ms: equal or kept");
    }

    #[test]
    fn a_batch_fills_up_to_the_stores_maximum() {
        assert_eq!(DeleteBatching::Single.max_keys(), 1);
        assert_eq!(DeleteBatching::Bulk(1000).max_keys(), 1000);
        assert_eq!(DeleteBatching::Bulk(0).max_keys(), 1);
    }

    #[test]
    fn per_key_errors_are_attributed_by_position() {
        let input = paths(&["a/1", "a/2", "a/3"]);
        let results = vec![
            Ok(Path::from("a/1")),
            Err(generic("DeleteObjects request failed for key a/2: AccessDenied")),
            Err(object_store::Error::NotFound { path: "a/3".into(), source: "gone".into() }),
        ];
        let outcome = attribute(&input, results);
        assert_eq!(outcome[0], Deleted::Yes);
        assert!(matches!(&outcome[1], Deleted::No(e) if e.contains("AccessDenied")), "{outcome:?}");
        assert_eq!(outcome[2], Deleted::AlreadyGone);
    }

    #[test]
    fn a_failed_bulk_request_fails_every_key_it_does_not_name() {
        let input = paths(&["a/1", "a/2", "a/3"]);
        let outcome = attribute(&input, vec![Err(generic("connection reset"))]);
        assert!(outcome.iter().all(|o| matches!(o, Deleted::No(e) if e.contains("connection reset"))), "{outcome:?}");
        let outcome = attribute(&input, vec![Ok(Path::from("a/2"))]);
        assert!(matches!(outcome[0], Deleted::No(_)));
        assert_eq!(outcome[1], Deleted::Yes);
        assert!(matches!(outcome[2], Deleted::No(_)));
    }

    #[test]
    fn fewer_results_than_keys_never_count_the_unnamed_keys_deleted() {
        let input = paths(&["a/1", "a/2", "a/3"]);
        let outcome = attribute(&input, vec![Ok(Path::from("a/1"))]);
        assert_eq!(outcome.len(), 3, "one outcome per key: {outcome:?}");
        assert_eq!(outcome[0], Deleted::Yes);
        assert!(matches!(&outcome[1], Deleted::No(e) if e.contains("no result")), "{outcome:?}");
        assert!(matches!(&outcome[2], Deleted::No(e) if e.contains("no result")), "{outcome:?}");
    }

    #[test]
    fn results_naming_other_keys_are_not_taken_by_position() {
        let input = paths(&["a/1", "a/2"]);
        let outcome = attribute(&input, vec![Ok(Path::from("x/9")), Ok(Path::from("x/8"))]);
        assert!(outcome.iter().all(|o| matches!(o, Deleted::No(_))), "{outcome:?}");
        let gone_elsewhere = vec![
            Err(object_store::Error::NotFound { path: "x/9".into(), source: "gone".into() }),
            Ok(Path::from("a/2")),
        ];
        let outcome = attribute(&input, gone_elsewhere);
        assert!(matches!(outcome[0], Deleted::No(_)), "{outcome:?}");
        assert_eq!(outcome[1], Deleted::Yes);
    }

    #[test]
    fn results_out_of_order_are_matched_by_name() {
        let input = paths(&["a/1", "a/2"]);
        let outcome = attribute(&input, vec![Ok(Path::from("a/2")), Ok(Path::from("a/1"))]);
        assert_eq!(outcome, [Deleted::Yes, Deleted::Yes]);
        // A key found gone counts as done (spec 4.6) when matched by name too.
        let gone = |path: &str| Err(object_store::Error::NotFound { path: path.into(), source: "gone".into() });
        let outcome = attribute(&input, vec![gone("a/2"), Ok(Path::from("a/1"))]);
        assert_eq!(outcome, [Deleted::Yes, Deleted::AlreadyGone]);
        // A NotFound naming no key names none: its key fails, with the error in the reason.
        let outcome = attribute(&input, vec![Ok(Path::from("a/2")), gone("")]);
        assert!(matches!(&outcome[0], Deleted::No(e) if e.contains("gone")), "{outcome:?}");
        assert_eq!(outcome[1], Deleted::Yes);
    }

    #[test]
    fn a_not_found_naming_no_key_is_taken_by_position() {
        let input = paths(&["a/1", "a/2"]);
        let gone = Err(object_store::Error::NotFound { path: String::new(), source: "gone".into() });
        let outcome = attribute(&input, vec![Ok(Path::from("a/1")), gone]);
        assert_eq!(outcome, [Deleted::Yes, Deleted::AlreadyGone]);
    }
}
