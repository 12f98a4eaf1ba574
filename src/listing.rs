//! The fan-out listing: every candidate location is listed one `<hh>` directory at a time,
//! all directories of all locations sharing one bound on requests in flight. Locations
//! arrive over a channel, so listing starts before the manifests are all parsed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::locations::Location;
use crate::store::{SYMLINK_ETAG, StoreError, Stores};
use crate::throttle::Aimd;

mod local;

/// How many foreign object names are kept per location for the log.
const FOREIGN_SAMPLE: usize = 5;

/// One chunk object as listed: the compact form held until the filter is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedChunk {
    pub id: [u8; 32],
    pub size: u64,
    pub last_modified_ms: i64,
    /// Index of the location in the run's location table.
    pub location: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error("listing bucket {bucket} prefix {prefix:?}: {source}")]
    List { bucket: String, prefix: String, source: object_store::Error },
    #[error("listing bucket {bucket} prefix {prefix:?}: {source}")]
    Local { bucket: String, prefix: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("listing task failed: {0}")]
    Task(String),
}

/// What the listing of one location found besides its chunks.
#[derive(Debug, Clone, Default)]
pub struct LocationCounts {
    pub listed_objects: u64,
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub foreign_objects: u64,
    pub foreign_sample: Vec<String>,
}

impl LocationCounts {
    fn add(&mut self, other: LocationCounts) {
        self.listed_objects += other.listed_objects;
        self.chunks += other.chunks;
        self.chunk_bytes += other.chunk_bytes;
        self.foreign_objects += other.foreign_objects;
        let room = FOREIGN_SAMPLE.saturating_sub(self.foreign_sample.len());
        self.foreign_sample.extend(other.foreign_sample.into_iter().take(room));
    }
}

/// Everything the listing found, per location and in batches of chunks (one batch per
/// listed directory, so nothing is copied to merge them).
#[derive(Debug, Default)]
pub struct Listing {
    pub per_location: Vec<LocationCounts>,
    pub batches: Vec<Vec<ListedChunk>>,
}

impl Listing {
    pub fn chunks(&self) -> impl Iterator<Item = &ListedChunk> {
        self.batches.iter().flatten()
    }

    pub fn chunk_count(&self) -> u64 {
        self.batches.iter().map(|b| b.len() as u64).sum()
    }

    fn absorb(&mut self, part: DirListing) {
        let index = part.location as usize;
        if self.per_location.len() <= index {
            self.per_location.resize_with(index + 1, LocationCounts::default);
        }
        self.per_location[index].add(part.counts);
        if !part.chunks.is_empty() {
            self.batches.push(part.chunks);
        }
    }
}

struct DirListing {
    location: u32,
    counts: LocationCounts,
    chunks: Vec<ListedChunk>,
}

impl DirListing {
    fn new(location: u32, counts: LocationCounts) -> Self {
        Self { location, counts, chunks: Vec::new() }
    }

    /// Records one chunk object: the one place both listing paths count and keep a chunk.
    fn chunk(&mut self, id: [u8; 32], size: u64, last_modified_ms: i64) {
        self.counts.listed_objects += 1;
        self.counts.chunks += 1;
        self.counts.chunk_bytes += size;
        self.chunks.push(ListedChunk { id, size, last_modified_ms, location: self.location });
    }
}

/// Lists every location that arrives on `locations` until the channel closes.
pub async fn list_all(
    stores: Stores,
    mut locations: mpsc::UnboundedReceiver<(u32, Location)>,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> Result<Listing, ListingError> {
    // The bound on directories listed at once, lowered while the store throttles (spec 8.7).
    let permits = Arc::new(Aimd::new(concurrency, stores.request_counters()));
    let mut tasks: JoinSet<Result<Vec<DirListing>, ListingError>> = JoinSet::new();
    let mut listing = Listing::default();
    let mut open = true;
    while open || !tasks.is_empty() {
        tokio::select! {
            next = locations.recv(), if open => match next {
                Some((index, location)) => {
                    // Building the bucket's store also checks the bucket exists (exit 5 if not),
                    // on the fast path too.
                    let store = stores.bucket(location.bucket())?;
                    if let Some(dir) = stores.unlayered_local_dir(location.bucket()) {
                        let progress = Arc::clone(&progress);
                        tasks.spawn_blocking(move || local::list_location(&dir, &location, index, &progress));
                    } else {
                        let job = list_location(store, location, index, Arc::clone(&permits), Arc::clone(&progress));
                        tasks.spawn(job);
                    }
                }
                None => open = false,
            },
            Some(done) = tasks.join_next() => {
                let parts = done.map_err(|e| ListingError::Task(e.to_string()))??;
                parts.into_iter().for_each(|part| listing.absorb(part));
            }
        }
    }
    Ok(listing)
}

/// Lists one location: its top level first, to find the fan-out directories and any
/// foreign objects beside them, then every directory concurrently.
async fn list_location(
    store: Arc<dyn ObjectStore>,
    location: Location,
    index: u32,
    permits: Arc<Aimd>,
    progress: Arc<AtomicU64>,
) -> Result<Vec<DirListing>, ListingError> {
    let list_err = |prefix: &str| {
        let (bucket, prefix) = (location.bucket().to_owned(), prefix.to_owned());
        move |source| ListingError::List { bucket, prefix, source }
    };
    let top_prefix = (!location.prefix().is_empty()).then(|| Path::from(location.prefix()));
    let top = {
        let _permit = permits.acquire().await;
        store.list_with_delimiter(top_prefix.as_ref()).await.map_err(list_err(location.prefix()))?
    };
    let mut counts = LocationCounts::default();
    for object in &top.objects {
        counts.foreign(object.location.as_ref());
    }
    progress.fetch_add(top.objects.len() as u64, Ordering::Relaxed);
    let mut parts = vec![DirListing::new(index, counts)];
    let location = Arc::new(location);
    let mut dirs = JoinSet::new();
    for dir in top.common_prefixes {
        let job = list_dir(
            Arc::clone(&store),
            Arc::clone(&location),
            index,
            dir,
            Arc::clone(&permits),
            Arc::clone(&progress),
        );
        dirs.spawn(job);
    }
    while let Some(done) = dirs.join_next().await {
        parts.push(done.map_err(|e| ListingError::Task(e.to_string()))??);
    }
    Ok(parts)
}

async fn list_dir(
    store: Arc<dyn ObjectStore>,
    location: Arc<Location>,
    index: u32,
    dir: Path,
    permits: Arc<Aimd>,
    progress: Arc<AtomicU64>,
) -> Result<DirListing, ListingError> {
    let _permit = permits.acquire().await;
    let mut part = DirListing::new(index, LocationCounts::default());
    let mut stream = store.list(Some(&dir));
    let mut seen = 0u64;
    while let Some(meta) = stream.try_next().await.map_err(|source| ListingError::List {
        bucket: location.bucket().to_owned(),
        prefix: dir.to_string(),
        source,
    })? {
        seen += 1;
        if seen.is_multiple_of(1024) {
            progress.fetch_add(1024, Ordering::Relaxed);
        }
        let key = meta.location.as_ref();
        // A symbolic link in a `file://` bucket is never a chunk (store::LocalBucket).
        let link = meta.e_tag.as_deref() == Some(SYMLINK_ETAG);
        match location.chunk_of_key(key).filter(|_| !link) {
            Some(id) => part.chunk(id.0, meta.size, meta.last_modified.timestamp_millis()),
            None => part.counts.foreign(key),
        }
    }
    progress.fetch_add(seen % 1024, Ordering::Relaxed);
    Ok(part)
}

impl LocationCounts {
    fn foreign(&mut self, key: &str) {
        self.foreign_with(|| key.to_owned());
    }

    /// Counts a foreign object; its name is only built while the sample has room.
    fn foreign_with(&mut self, key: impl FnOnce() -> String) {
        self.listed_objects += 1;
        self.foreign_objects += 1;
        if self.foreign_sample.len() < FOREIGN_SAMPLE {
            self.foreign_sample.push(key());
        }
    }
}
