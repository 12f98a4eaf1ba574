//! Carries out the plan in small batches (spec 4.6), each delete tied to the object judged
//! old (spec 9.1), so a writer's refresh that lands at any moment keeps its chunk:
//! - `file://`, `memory://`: each chunk is renamed aside (where no writer reaches it), its
//!   last-modified read there, then deleted, or put back without replacing a copy a writer
//!   made meanwhile ([`put_back_held`] finishes what a killed run left aside).
//! - `gs://`: the batch's last-modified and generations are re-read concurrently, then each
//!   still-old chunk is deleted with `x-goog-if-generation-match` on the generation read; a
//!   failed precondition keeps it.
//! - elsewhere (unversioned S3): the re-read, then one `delete_stream` call for the batch
//!   (one bulk request on S3), one round trip after the re-read; reported as unconditional.
//!
//! A signal stops new batches, and the deletes of a batch whose re-read it interrupted; a
//! chunk already renamed aside is always finished.
//!
//! `--delete-concurrency N` is the bound on requests in flight: every HEAD and every
//! `delete_stream` call holds one of N permits. Batches hold at most N/2 chunks and two are
//! in flight, so one batch's delete never queues behind the other's re-reads. The permits
//! shrink while the store throttles and grow back after ([`crate::throttle::Aimd`]), and
//! `--max-delete-rate` admits each batch's keys before its re-reads, so the re-read and the
//! delete stay one round trip apart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, RenameOptions, RenameTargetMode};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::ids::ChunkId;
use crate::listing::ListedChunk;
use crate::locations::{Location, held_key, key_of_held};
use crate::store::{
    DeleteBatching, DeleteCondition, GcsDeleter, GenerationDelete, S3Versions, StoreError, Stores, VersionDelete,
};
use crate::throttle::{Aimd, RateCap};

/// The most keys in one batch: S3's `DeleteObjects` takes at most 1000.
const MAX_BATCH: usize = 1000;
/// Batches in flight: one re-reading while the other deletes.
const BATCHES_IN_FLIGHT: usize = 2;

/// A delete that did not happen, named in the report.
#[derive(Debug, Clone, Serialize)]
pub struct DeleteFailure {
    pub bucket: String,
    pub key: String,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct ExecuteStats {
    pub deleted: u64,
    pub deleted_bytes: u64,
    pub refreshed_kept: u64,
    pub failures: Vec<DeleteFailure>,
    /// Planned deletes never started because a signal arrived.
    pub not_started: u64,
    pub conditions: DeleteConditions,
}

/// Keys whose delete was sent tied to the object judged old, and keys whose delete was not
/// (spec 9.1): a retried key counts once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeleteConditions {
    pub conditional: u64,
    pub unconditional: u64,
}

impl ExecuteStats {
    fn merge(&mut self, other: ExecuteStats) {
        self.deleted += other.deleted;
        self.deleted_bytes += other.deleted_bytes;
        self.refreshed_kept += other.refreshed_kept;
        self.failures.extend(other.failures);
        self.not_started += other.not_started;
        self.conditions.conditional += other.conditions.conditional;
        self.conditions.unconditional += other.conditions.unconditional;
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

/// How many chunks one batch holds for a given `--delete-concurrency`.
pub fn batch_size(concurrency: usize) -> usize {
    (concurrency / BATCHES_IN_FLIGHT).clamp(1, MAX_BATCH)
}

/// What the re-read of a chunk's last-modified right before its delete must still show for
/// the delete to go ahead; anything else keeps the chunk (`refreshed_kept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reread {
    /// A run's own plan (spec 4.6): still older than the cutoff.
    OlderThan { cutoff_ms: i64 },
    /// A reviewed plan (spec 8.3): exactly the last-modified the plan recorded.
    Unchanged,
}

impl Reread {
    fn still_doomed(self, planned: &ListedChunk, now_last_modified_ms: i64) -> bool {
        match self {
            Reread::OlderThan { cutoff_ms } => now_last_modified_ms < cutoff_ms,
            Reread::Unchanged => now_last_modified_ms == planned.last_modified_ms,
        }
    }
}

/// Deletes every planned chunk, given in plan order with its location's index, unless the
/// re-read right before its delete shows it was refreshed since it was planned.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    stores: &Stores,
    locations: &[Location],
    planned: impl Iterator<Item = (u32, ListedChunk)>,
    reread: Reread,
    concurrency: usize,
    max_delete_rate: Option<f64>,
    stop: &CancellationToken,
    progress: Arc<AtomicU64>,
) -> Result<ExecuteStats, StoreError> {
    let buckets = locations.iter().map(|l| stores.bucket(l.bucket())).collect::<Result<Vec<_>, _>>()?;
    let conditionals = conditionals(stores, locations).await?;
    let permits = Arc::new(Permits {
        aimd: Aimd::new(concurrency, stores.request_counters()),
        single_deletes: stores.delete_batching() == DeleteBatching::Single,
        condition: stores.delete_condition(),
    });
    let cap = max_delete_rate.and_then(RateCap::new);
    let cap = cap.as_ref();
    let size = batch_size(concurrency);
    let in_flight = if concurrency <= 1 { 1 } else { BATCHES_IN_FLIGHT };
    let outcomes = futures::stream::iter(batches(planned, size))
        .map(|(location, batch)| {
            let store = Arc::clone(&buckets[location as usize]);
            let conditional = conditionals[location as usize].as_deref();
            let location = &locations[location as usize];
            let (permits, progress) = (Arc::clone(&permits), Arc::clone(&progress));
            async move {
                let n = batch.len() as u64;
                let stats = run_batch(store.as_ref(), conditional, location, &batch, reread, &permits, cap, stop).await;
                progress.fetch_add(n, Ordering::Relaxed);
                stats
            }
        })
        .buffer_unordered(in_flight);
    let mut stats = ExecuteStats::default();
    futures::pin_mut!(outcomes);
    while let Some(batch) = outcomes.next().await {
        stats.merge(batch);
    }
    Ok(stats)
}

/// Consecutive chunks of one location, at most `size` each (the plan is ordered by location).
fn batches(
    planned: impl Iterator<Item = (u32, ListedChunk)>,
    size: usize,
) -> impl Iterator<Item = (u32, Vec<ListedChunk>)> {
    let mut planned = planned.peekable();
    std::iter::from_fn(move || {
        let (location, first) = planned.next()?;
        let mut batch = vec![first];
        while batch.len() < size {
            match planned.next_if(|(l, _)| *l == location) {
                Some((_, chunk)) => batch.push(chunk),
                None => break,
            }
        }
        Some((location, batch))
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_batch(
    store: &dyn ObjectStore,
    conditional: Option<&Conditional>,
    location: &Location,
    batch: &[ListedChunk],
    reread: Reread,
    permits: &Permits,
    cap: Option<&RateCap>,
    stop: &CancellationToken,
) -> ExecuteStats {
    let admitted = match cap {
        Some(cap) => tokio::select! {
            () = cap.admit(batch.len() as u64) => true,
            () = stop.cancelled() => false,
        },
        None => true,
    };
    if !admitted || stop.is_cancelled() {
        return ExecuteStats { not_started: batch.len() as u64, ..ExecuteStats::default() };
    }
    let keyed: Vec<(String, &ListedChunk)> =
        batch.iter().map(|chunk| (location.chunk_key(&ChunkId(chunk.id)), chunk)).collect();
    match permits.condition {
        DeleteCondition::RenameAside => aside_batch(store, location, &keyed, reread, permits, stop).await,
        DeleteCondition::GenerationMatch | DeleteCondition::VersionIfEnabled | DeleteCondition::Unconditional => {
            reread_batch(store, conditional, location, &keyed, reread, permits, stop).await
        }
    }
}

/// Re-reads every chunk of the batch at once, then deletes the still-old ones: on GCS each
/// with the precondition of the generation re-read, on a versioned S3 bucket each by the
/// version re-read, elsewhere with one call.
async fn reread_batch(
    store: &dyn ObjectStore,
    conditional: Option<&Conditional>,
    location: &Location,
    keyed: &[(String, &ListedChunk)],
    reread: Reread,
    permits: &Permits,
    stop: &CancellationToken,
) -> ExecuteStats {
    let mut stats = ExecuteStats::default();
    let fail =
        |key: &str, error: String| DeleteFailure { bucket: location.bucket().to_owned(), key: key.to_owned(), error };
    let rereads = futures::future::join_all(keyed.iter().map(|(key, _)| async move {
        let _permit = permits.acquire().await;
        store.head(&Path::from(key.as_str())).await
    }))
    .await;
    let mut doomed: Vec<(&str, u64, Option<String>)> = Vec::with_capacity(keyed.len());
    for ((key, chunk), now) in keyed.iter().zip(rereads) {
        match now {
            Ok(meta) if !reread.still_doomed(chunk, meta.last_modified.timestamp_millis()) => {
                tracing::info!(bucket = location.bucket(), key, "kept: refreshed since the listing");
                stats.refreshed_kept += 1;
            }
            Ok(meta) => doomed.push((key, chunk.size, meta.version)),
            Err(object_store::Error::NotFound { .. }) => stats.deleted += 1,
            Err(e) => stats.failures.push(fail(key, format!("re-reading last-modified: {e}"))),
        }
    }
    if doomed.is_empty() {
        return stats;
    }
    if stop.is_cancelled() {
        stats.not_started += doomed.len() as u64;
        return stats;
    }
    if let Some(conditional) = conditional {
        delete_conditionally(conditional, location, &doomed, permits, &mut stats).await;
        return stats;
    }
    stats.conditions.unconditional += doomed.len() as u64;

    let paths: Vec<Path> = doomed.iter().map(|(key, _, _)| Path::from(*key)).collect();
    let results = match permits.single_deletes {
        // A store without bulk delete (GCS): object_store's `delete_stream` keeps only 10
        // deletes in flight per call, so each key gets its own call and permit, and
        // `--delete-concurrency` stays the bound on requests in flight.
        true => futures::future::join_all(paths.iter().map(|path| async move {
            let _permit = permits.acquire().await;
            let input = futures::stream::iter([Ok(path.clone())]).boxed();
            store.delete_stream(input).collect::<Vec<_>>().await
        }))
        .await
        .into_iter()
        .flatten()
        .collect(),
        false => {
            let _permit = permits.acquire().await;
            let input = futures::stream::iter(paths.clone().into_iter().map(Ok)).boxed();
            store.delete_stream(input).collect::<Vec<_>>().await
        }
    };
    for ((key, size, _), outcome) in doomed.iter().zip(attribute(&paths, results)) {
        match outcome {
            Deleted::Yes => {
                stats.deleted += 1;
                stats.deleted_bytes += size;
            }
            Deleted::AlreadyGone => stats.deleted += 1,
            Deleted::No(error) => stats.failures.push(fail(key, error)),
        }
    }
    stats
}

/// The conditional delete of a bucket whose store has one (spec 9.1).
pub enum Conditional {
    /// GCS: `x-goog-if-generation-match` on the generation re-read.
    Generation(GcsDeleter),
    /// S3, versioning enabled: the version re-read is the one deleted.
    Version(S3Versions),
}

/// The conditional deleter of each location's bucket, or `None` where deletes stay plain.
async fn conditionals(stores: &Stores, locations: &[Location]) -> Result<Vec<Option<Arc<Conditional>>>, StoreError> {
    let mut by_bucket: HashMap<&str, Option<Arc<Conditional>>> = HashMap::new();
    let mut out = Vec::with_capacity(locations.len());
    for location in locations {
        let bucket = location.bucket();
        if !by_bucket.contains_key(bucket) {
            let conditional = match stores.delete_condition() {
                DeleteCondition::GenerationMatch => stores.gcs_deleter(bucket)?.map(Conditional::Generation),
                DeleteCondition::VersionIfEnabled => stores.s3_versions(bucket).await?.map(Conditional::Version),
                DeleteCondition::RenameAside | DeleteCondition::Unconditional => None,
            };
            by_bucket.insert(bucket, conditional.map(Arc::new));
        }
        out.push(by_bucket[bucket].clone());
    }
    Ok(out)
}

/// Deletes each doomed chunk only if it is still the object its re-read saw (spec 9.1).
async fn delete_conditionally(
    conditional: &Conditional,
    location: &Location,
    doomed: &[(&str, u64, Option<String>)],
    permits: &Permits,
    stats: &mut ExecuteStats,
) {
    let outcomes = futures::future::join_all(doomed.iter().map(|(key, _, version)| async move {
        let _permit = permits.acquire().await;
        match conditional {
            // Fail closed: without the generation read, no delete is sent.
            Conditional::Generation(gcs) => {
                let generation =
                    version.as_deref().ok_or_else(|| format!("the re-read of {key} returned no generation"))?;
                gcs.delete(key, generation, None).await.map_err(|e| e.to_string())
            }
            // An object written before versioning was enabled has the version `null`, and a
            // writer's PUT now makes a new version: deleting `null` cannot remove it.
            Conditional::Version(s3) => match s3.delete(key, version.as_deref().unwrap_or("null")).await {
                Ok(VersionDelete::Deleted) => Ok(GenerationDelete::Deleted),
                Ok(VersionDelete::Gone) => Ok(GenerationDelete::Gone),
                Err(e) => Err(e.to_string()),
            },
        }
    }))
    .await;
    for ((key, size, _), outcome) in doomed.iter().zip(outcomes) {
        stats.conditions.conditional += 1;
        match outcome {
            Ok(GenerationDelete::Deleted) => {
                stats.deleted += 1;
                stats.deleted_bytes += size;
            }
            Ok(GenerationDelete::Gone) => stats.deleted += 1,
            Ok(GenerationDelete::Changed) => {
                tracing::info!(bucket = location.bucket(), key, "kept: a new generation since the re-read");
                stats.refreshed_kept += 1;
            }
            Err(error) => stats.failures.push(DeleteFailure {
                bucket: location.bucket().to_owned(),
                key: (*key).to_owned(),
                error,
            }),
        }
    }
}

/// What became of one chunk deleted by renaming it aside.
#[derive(Debug, PartialEq, Eq)]
enum Aside {
    Deleted {
        bytes: u64,
    },
    /// Not at its key any more when the rename was tried: done (spec 4.6).
    AlreadyGone,
    /// Refreshed before the rename: put back (or a writer's new copy was there already).
    Kept,
    NotStarted,
    Failed(String),
}

/// Deletes the batch's chunks one by one, each renamed aside first (spec 9.1).
async fn aside_batch(
    store: &dyn ObjectStore,
    location: &Location,
    keyed: &[(String, &ListedChunk)],
    reread: Reread,
    permits: &Permits,
    stop: &CancellationToken,
) -> ExecuteStats {
    let outcomes = futures::future::join_all(
        keyed.iter().map(|(key, chunk)| delete_aside(store, key, chunk, reread, permits, stop)),
    )
    .await;
    let mut stats = ExecuteStats::default();
    for ((key, _), outcome) in keyed.iter().zip(outcomes) {
        match outcome {
            Aside::Deleted { bytes } => {
                stats.deleted += 1;
                stats.deleted_bytes += bytes;
                stats.conditions.conditional += 1;
            }
            Aside::AlreadyGone => stats.deleted += 1,
            Aside::Kept => {
                tracing::info!(bucket = location.bucket(), key, "kept: refreshed since the listing");
                stats.refreshed_kept += 1;
            }
            Aside::NotStarted => stats.not_started += 1,
            Aside::Failed(error) => {
                stats.failures.push(DeleteFailure { bucket: location.bucket().to_owned(), key: key.clone(), error })
            }
        }
    }
    stats
}

/// Renames the chunk at `key` aside, where no writer reaches it, reads its last-modified
/// there, and deletes it if still old; otherwise puts it back. Once renamed, a chunk is
/// always finished (deleted or put back), whatever signal arrives.
async fn delete_aside(
    store: &dyn ObjectStore,
    key: &str,
    chunk: &ListedChunk,
    reread: Reread,
    permits: &Permits,
    stop: &CancellationToken,
) -> Aside {
    let _permit = permits.acquire().await;
    if stop.is_cancelled() {
        return Aside::NotStarted;
    }
    let (path, held) = (Path::from(key), Path::from(held_key(key)));
    match store.rename_opts(&path, &held, RenameOptions::default()).await {
        Ok(()) => {}
        // Gone, unless a retried rename had moved it on its first attempt.
        Err(object_store::Error::NotFound { .. }) => match store.head(&held).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Aside::AlreadyGone,
            Err(e) => return Aside::Failed(format!("renaming aside to {held}: the chunk is not at its key, and {e}")),
        },
        Err(e) => return Aside::Failed(format!("renaming aside to {held}: {e}")),
    }
    let still_doomed = match store.head(&held).await {
        Ok(meta) => reread.still_doomed(chunk, meta.last_modified.timestamp_millis()),
        Err(e) => {
            let put_back = put_back(store, &held, &path).await;
            return Aside::Failed(format!("re-reading last-modified of {held}: {e}; {}", put_back_note(put_back)));
        }
    };
    if !still_doomed {
        return match put_back(store, &held, &path).await {
            Ok(()) => Aside::Kept,
            Err(e) => Aside::Failed(format!("refreshed, but {}", put_back_note(Err(e)))),
        };
    }
    match store.delete(&held).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Aside::Deleted { bytes: chunk.size },
        // Put back, so a failed delete leaves the chunk where it was.
        Err(e) => {
            Aside::Failed(format!("deleting {held}: {e}; {}", put_back_note(put_back(store, &held, &path).await)))
        }
    }
}

fn put_back_note(put_back: object_store::Result<()>) -> String {
    match put_back {
        Ok(()) => "put back".to_owned(),
        Err(e) => {
            tracing::error!(error = %e, "a chunk renamed aside could not be put back: the next --execute puts it back");
            format!("putting it back failed ({e}): the next --execute puts it back")
        }
    }
}

/// Moves a held chunk back to `key` without replacing what is there: a copy a writer made
/// meanwhile wins, and the held one is then deleted (chunks are content-addressed).
async fn put_back(store: &dyn ObjectStore, held: &Path, key: &Path) -> object_store::Result<()> {
    let create = RenameOptions { target_mode: RenameTargetMode::Create, ..RenameOptions::default() };
    match store.rename_opts(held, key, create).await {
        Err(object_store::Error::AlreadyExists { .. }) => match store.delete(held).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        },
        // Moved back already, by the first attempt of a retried rename.
        Err(gone @ object_store::Error::NotFound { .. }) => match store.head(key).await {
            Ok(_) => Ok(()),
            Err(_) => Err(gone),
        },
        done => done,
    }
}

/// What a run found held by an earlier run that was killed between renaming a chunk aside
/// and finishing it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeldFound {
    pub found: u64,
    pub put_back: u64,
}

/// Puts back every chunk of `locations` an earlier, killed run left renamed aside (spec 9.1),
/// before anything is listed; with `dry_run`, only counts them (a dry run writes nothing).
pub async fn put_back_held(stores: &Stores, locations: &[Location], dry_run: bool) -> Result<HeldFound, HeldError> {
    let mut found = HeldFound::default();
    if stores.delete_condition() != DeleteCondition::RenameAside {
        return Ok(found);
    }
    for location in locations {
        let store = stores.bucket(location.bucket()).map_err(HeldError::Store)?;
        let prefix = Path::from(location.held_prefix());
        let held: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await.map_err(|source| HeldError::Io {
            bucket: location.bucket().to_owned(),
            key: prefix.to_string(),
            source,
        })?;
        for meta in held {
            found.found += 1;
            let Some(key) = key_of_held(meta.location.as_ref()) else { continue };
            if dry_run {
                continue;
            }
            put_back(store.as_ref(), &meta.location, &Path::from(key)).await.map_err(|source| HeldError::Io {
                bucket: location.bucket().to_owned(),
                key: meta.location.to_string(),
                source,
            })?;
            found.put_back += 1;
        }
    }
    if found.found > 0 {
        tracing::warn!(
            found = found.found,
            put_back = found.put_back,
            "chunks left renamed aside by an earlier run that was stopped{}",
            if dry_run { "; the next --execute puts them back" } else { ": put back" }
        );
    }
    Ok(found)
}

#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error(transparent)]
    Store(StoreError),
    #[error("bucket {bucket} key {key}: cannot put back a chunk an earlier run left renamed aside: {source}")]
    Io { bucket: String, key: String, source: object_store::Error },
}

#[derive(Debug, PartialEq, Eq)]
enum Deleted {
    Yes,
    /// The backend said the object was not there: done, as spec 4.6 says.
    AlreadyGone,
    No(String),
}

/// The outcome of each of `paths` from what `delete_stream` returned for them.
///
/// Every `object_store` backend yields one result per input path, in input order (S3's bulk
/// delete maps its per-key `<Error>` elements back to their positions); then results are
/// matched by position. When a backend yields fewer (an S3 bulk request that failed as a
/// whole yields one error for all its keys), a path counts as deleted only if a result names
/// it; every other path is reported failed with the errors seen. Fail closed: a key is never
/// reported deleted without a result naming it.
fn attribute(paths: &[Path], results: Vec<object_store::Result<Path>>) -> Vec<Deleted> {
    let positional = results.len() == paths.len()
        && results.iter().zip(paths).all(|(r, p)| match r {
            Ok(done) => done == p,
            Err(object_store::Error::NotFound { path, .. }) => path.is_empty() || path == p.as_ref(),
            Err(_) => true,
        });
    if positional {
        return results
            .into_iter()
            .map(|r| match r {
                Ok(_) => Deleted::Yes,
                Err(object_store::Error::NotFound { .. }) => Deleted::AlreadyGone,
                Err(e) => Deleted::No(e.to_string()),
            })
            .collect();
    }
    let mut named: HashMap<String, Deleted> = HashMap::new();
    let mut errors: Vec<String> = Vec::new();
    for result in results {
        match result {
            Ok(path) => {
                named.insert(path.to_string(), Deleted::Yes);
            }
            Err(object_store::Error::NotFound { path, .. }) if !path.is_empty() => {
                named.insert(path, Deleted::AlreadyGone);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let why = if errors.is_empty() {
        "the store's bulk delete returned no result for this key".to_owned()
    } else {
        format!("bulk delete failed: {}", errors.join("; "))
    };
    paths.iter().map(|p| named.remove(p.as_ref()).unwrap_or_else(|| Deleted::No(why.clone()))).collect()
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
        let planned = ListedChunk { id: [1; 32], size: 1, last_modified_ms: 50 };
        let own = Reread::OlderThan { cutoff_ms: 100 };
        assert!(own.still_doomed(&planned, 99));
        assert!(!own.still_doomed(&planned, 100), "refreshed to exactly the cutoff is kept");
        assert!(Reread::Unchanged.still_doomed(&planned, 50));
        assert!(!Reread::Unchanged.still_doomed(&planned, 51), "touched since the plan is kept");
        assert!(!Reread::Unchanged.still_doomed(&planned, 49), "rewritten with an older time is kept too");
    }

    #[test]
    fn batch_size_follows_the_concurrency() {
        assert_eq!(batch_size(0), 1);
        assert_eq!(batch_size(1), 1);
        assert_eq!(batch_size(32), 16);
        assert_eq!(batch_size(100_000), 1000);
    }

    #[test]
    fn batches_never_mix_locations_or_exceed_the_size() {
        let chunk = |location, n: u8| (location, ListedChunk { id: [n; 32], size: 1, last_modified_ms: 0 });
        let chunks: Vec<(u32, ListedChunk)> = (0..5).map(|n| chunk(0, n)).chain((0..3).map(|n| chunk(1, n))).collect();
        let sizes: Vec<(u32, usize)> = batches(chunks.iter().copied(), 2).map(|(l, b)| (l, b.len())).collect();
        assert_eq!(sizes, [(0, 2), (0, 2), (0, 1), (1, 2), (1, 1)]);
        let ids: Vec<u8> = batches(chunks.iter().copied(), 2).flat_map(|(_, b)| b).map(|c| c.id[0]).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 0, 1, 2], "plan order kept");
        assert_eq!(batches(chunks.iter().copied(), 1000).count(), 2);
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
