//! Carries out the plan: bounded concurrent deletes, each preceded by a fresh read of the
//! chunk's last-modified time (spec 4.6), and stopped by a signal between deletes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::ids::ChunkId;
use crate::listing::ListedChunk;
use crate::locations::Location;
use crate::store::{StoreError, Stores};

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
}

enum Outcome {
    Deleted(u64),
    Refreshed,
    Failed(DeleteFailure),
    NotStarted,
}

/// Deletes every planned chunk unless it was refreshed since the listing.
pub async fn execute<'a>(
    stores: &Stores,
    locations: &[Location],
    planned: impl Iterator<Item = &'a ListedChunk>,
    cutoff_ms: i64,
    concurrency: usize,
    stop: &CancellationToken,
    progress: Arc<AtomicU64>,
) -> Result<ExecuteStats, StoreError> {
    let buckets = locations.iter().map(|l| stores.bucket(l.bucket())).collect::<Result<Vec<_>, _>>()?;
    let outcomes = futures::stream::iter(planned)
        .map(|chunk| {
            let location = &locations[chunk.location as usize];
            let store = Arc::clone(&buckets[chunk.location as usize]);
            let progress = Arc::clone(&progress);
            async move {
                if stop.is_cancelled() {
                    return Outcome::NotStarted;
                }
                let outcome = delete_one(store.as_ref(), location, chunk, cutoff_ms).await;
                progress.fetch_add(1, Ordering::Relaxed);
                outcome
            }
        })
        .buffer_unordered(concurrency.max(1));
    let mut stats = ExecuteStats::default();
    futures::pin_mut!(outcomes);
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Outcome::Deleted(bytes) => {
                stats.deleted += 1;
                stats.deleted_bytes += bytes;
            }
            Outcome::Refreshed => stats.refreshed_kept += 1,
            Outcome::Failed(failure) => stats.failures.push(failure),
            Outcome::NotStarted => stats.not_started += 1,
        }
    }
    Ok(stats)
}

async fn delete_one(store: &dyn ObjectStore, location: &Location, chunk: &ListedChunk, cutoff_ms: i64) -> Outcome {
    let key = location.chunk_key(&ChunkId(chunk.id));
    let path = Path::from(key.as_str());
    let fail = |error: String| {
        Outcome::Failed(DeleteFailure { bucket: location.bucket().to_owned(), key: key.clone(), error })
    };
    match store.head(&path).await {
        Ok(meta) if meta.last_modified.timestamp_millis() >= cutoff_ms => {
            tracing::info!(bucket = location.bucket(), key, "kept: refreshed since the listing");
            return Outcome::Refreshed;
        }
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return Outcome::Deleted(0),
        Err(e) => return fail(format!("re-reading last-modified: {e}")),
    }
    match store.delete(&path).await {
        Ok(()) => Outcome::Deleted(chunk.size),
        Err(object_store::Error::NotFound { .. }) => Outcome::Deleted(0),
        Err(e) => fail(e.to_string()),
    }
}
