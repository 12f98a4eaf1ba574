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

use crate::exit::Exit;
use crate::locations::Location;
use crate::store::{RawListError, SYMLINK_ETAG, StoreError, Stores, Version};
use crate::throttle::Aimd;

mod local;
mod remote;

/// How many foreign object names are kept per location for the log.
const FOREIGN_SAMPLE: usize = 5;

/// One chunk object as listed: the compact form a part carries to the decide stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedChunk {
    pub id: [u8; 32],
    pub size: u64,
    pub last_modified_ms: i64,
    /// The version the listing returned with it, where the store gives one (spec 10.1).
    pub version: Version,
}

/// The most chunks one [`Listed`] part carries: a directory of more is sent in several parts,
/// so what waits between the listing and the decide stage is bounded by parts, not by the
/// size of a directory.
pub const PART_CHUNKS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error("listing bucket {bucket} prefix {prefix:?}: {source}")]
    List { bucket: String, prefix: String, source: object_store::Error },
    #[error("listing bucket {bucket} prefix {prefix:?}: {source}")]
    Local { bucket: String, prefix: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Raw(#[from] RawListError),
    #[error("bucket {bucket} key {key:?}: the listing gave no usable size or last-modified for this chunk")]
    ChunkMetadata { bucket: String, key: String },
    #[error("listing task failed: {0}")]
    Task(String),
    #[error("listing stopped: its consumer is gone")]
    Closed,
}

impl ListingError {
    /// A listing that failed after its retries is run again later; a task that died is a bug.
    pub fn exit(&self) -> Exit {
        match self {
            ListingError::List { .. }
            | ListingError::Local { .. }
            | ListingError::Store(_)
            | ListingError::Raw(_)
            | ListingError::ChunkMetadata { .. }
            | ListingError::Closed => Exit::Listing,
            ListingError::Task(_) => Exit::Internal,
        }
    }
}

/// What the listing of one location found besides its chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocationCounts {
    pub listed_objects: u64,
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub foreign_objects: u64,
    pub foreign_sample: Vec<String>,
}

impl LocationCounts {
    pub fn add(&mut self, other: &LocationCounts) {
        self.listed_objects += other.listed_objects;
        self.chunks += other.chunks;
        self.chunk_bytes += other.chunk_bytes;
        self.foreign_objects += other.foreign_objects;
        let room = FOREIGN_SAMPLE.saturating_sub(self.foreign_sample.len());
        self.foreign_sample.extend(other.foreign_sample.iter().take(room).cloned());
    }
}

/// One part of a location's listing, as it streams to the decide stage: the counts it adds
/// and at most [`PART_CHUNKS`] chunks, all from one fan-out directory (so all sharing their
/// first byte) and in the order listed.
#[derive(Debug, Default)]
pub struct Listed {
    pub location: u32,
    pub counts: LocationCounts,
    pub chunks: Vec<ListedChunk>,
}

impl Listed {
    fn new(location: u32) -> Self {
        Self { location, counts: LocationCounts::default(), chunks: Vec::new() }
    }

    /// Records one chunk object: the one place both listing paths count and keep a chunk.
    fn chunk(&mut self, id: [u8; 32], size: u64, last_modified_ms: i64, version: Version) {
        self.counts.listed_objects += 1;
        self.counts.chunks += 1;
        self.counts.chunk_bytes += size;
        self.chunks.push(ListedChunk { id, size, last_modified_ms, version });
    }

    fn is_full(&self) -> bool {
        self.chunks.len() >= PART_CHUNKS
    }

    /// Takes what this part holds, leaving it empty for the rest of its directory.
    fn take(&mut self) -> Listed {
        let mut part = std::mem::replace(self, Listed::new(self.location));
        part.chunks.shrink_to_fit();
        part
    }
}

/// Where the listing sends its parts. The channel is bounded: when the decide stage is not
/// taking parts (it waits for the filter to be complete), the listing waits too, so listed
/// chunks never pile up in memory.
pub(crate) type PartSender = mpsc::Sender<Listed>;

/// Lists every location that arrives on `locations` until the channel closes, sending each
/// part to `out` as soon as it is full or its directory is done.
pub async fn list_stream(
    stores: Stores,
    mut locations: mpsc::UnboundedReceiver<(u32, Location)>,
    concurrency: usize,
    progress: Arc<AtomicU64>,
    out: PartSender,
) -> Result<(), ListingError> {
    // The bound on directories listed at once, lowered while the store throttles (spec 8.7).
    let permits = Arc::new(Aimd::new(concurrency, stores.request_counters()));
    let mut tasks: JoinSet<Result<(), ListingError>> = JoinSet::new();
    let mut open = true;
    while open || !tasks.is_empty() {
        tokio::select! {
            next = locations.recv(), if open => match next {
                Some((index, location)) => {
                    // Building the bucket's store also checks the bucket exists (exit 5 if not),
                    // on the fast path too.
                    let store = stores.bucket(location.bucket())?;
                    let (progress, out) = (Arc::clone(&progress), out.clone());
                    if let Some(walk) = stores.local_listing(location.bucket()) {
                        tasks.spawn_blocking(move || local::list_location(&walk, &location, index, &progress, &out));
                    } else if let Some(lister) = stores.raw_lister(location.bucket())? {
                        let permits = Arc::clone(&permits);
                        tasks.spawn(remote::list_location(lister, location, index, permits, progress, out));
                    } else {
                        tasks.spawn(list_location(store, location, index, Arc::clone(&permits), progress, out));
                    }
                }
                None => open = false,
            },
            Some(done) = tasks.join_next() => done.map_err(|e| ListingError::Task(e.to_string()))??,
        }
    }
    Ok(())
}

/// A whole listing held in memory: for tests and small tools, never the pipeline.
#[derive(Debug, Default)]
pub struct Listing {
    pub per_location: Vec<LocationCounts>,
    pub parts: Vec<Listed>,
}

impl Listing {
    /// Every chunk with the index of its location.
    pub fn chunks(&self) -> impl Iterator<Item = (u32, &ListedChunk)> {
        self.parts.iter().flat_map(|p| p.chunks.iter().map(move |c| (p.location, c)))
    }

    pub fn chunk_count(&self) -> u64 {
        self.parts.iter().map(|p| p.chunks.len() as u64).sum()
    }
}

/// Lists every location of `locations` and collects the whole listing.
pub async fn list_all(
    stores: Stores,
    locations: mpsc::UnboundedReceiver<(u32, Location)>,
    concurrency: usize,
    progress: Arc<AtomicU64>,
) -> Result<Listing, ListingError> {
    let (out, mut parts) = mpsc::channel(64);
    let listing = tokio::spawn(list_stream(stores, locations, concurrency, progress, out));
    let mut collected = Listing::default();
    while let Some(part) = parts.recv().await {
        let index = part.location as usize;
        if collected.per_location.len() <= index {
            collected.per_location.resize_with(index + 1, LocationCounts::default);
        }
        collected.per_location[index].add(&part.counts);
        collected.parts.push(part);
    }
    listing.await.map_err(|e| ListingError::Task(e.to_string()))??;
    Ok(collected)
}

/// Lists one location: its top level first, to find the fan-out directories and any
/// foreign objects beside them, then every directory concurrently.
async fn list_location(
    store: Arc<dyn ObjectStore>,
    location: Location,
    index: u32,
    permits: Arc<Aimd>,
    progress: Arc<AtomicU64>,
    out: PartSender,
) -> Result<(), ListingError> {
    let list_err = |prefix: &str| {
        let (bucket, prefix) = (location.bucket().to_owned(), prefix.to_owned());
        move |source| ListingError::List { bucket, prefix, source }
    };
    let top_prefix = (!location.prefix().is_empty()).then(|| Path::from(location.prefix()));
    let top = {
        let _permit = permits.acquire().await;
        store.list_with_delimiter(top_prefix.as_ref()).await.map_err(list_err(location.prefix()))?
    };
    let mut part = Listed::new(index);
    for object in &top.objects {
        part.counts.foreign(object.location.as_ref());
    }
    send_part(&mut part, &progress, &out).await?;
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
            out.clone(),
        );
        dirs.spawn(job);
    }
    join_dirs(dirs).await
}

/// Waits for every directory's task; the first error (or failed task) is the listing's.
async fn join_dirs(mut dirs: JoinSet<Result<(), ListingError>>) -> Result<(), ListingError> {
    while let Some(done) = dirs.join_next().await {
        done.map_err(|e| ListingError::Task(e.to_string()))??;
    }
    Ok(())
}

/// Sends the part on (leaving an empty one of the same location) and counts its objects.
async fn send_part(part: &mut Listed, progress: &AtomicU64, out: &PartSender) -> Result<(), ListingError> {
    progress.fetch_add(part.counts.listed_objects, Ordering::Relaxed);
    out.send(part.take()).await.map_err(|_| ListingError::Closed)
}

async fn list_dir(
    store: Arc<dyn ObjectStore>,
    location: Arc<Location>,
    index: u32,
    dir: Path,
    permits: Arc<Aimd>,
    progress: Arc<AtomicU64>,
    out: PartSender,
) -> Result<(), ListingError> {
    let _permit = permits.acquire().await;
    let mut part = Listed::new(index);
    let mut stream = store.list(Some(&dir));
    while let Some(meta) = stream.try_next().await.map_err(|source| ListingError::List {
        bucket: location.bucket().to_owned(),
        prefix: dir.to_string(),
        source,
    })? {
        let key = meta.location.as_ref();
        // A symbolic link in a `file://` bucket is never a chunk (store::LocalBucket).
        let link = meta.e_tag.as_deref() == Some(SYMLINK_ETAG);
        match location.chunk_of_key(key).filter(|_| !link) {
            Some(id) => part.chunk(id.0, meta.size, meta.last_modified.timestamp_millis(), Version::NONE),
            None => part.counts.foreign(key),
        }
        if part.is_full() {
            send_part(&mut part, &progress, &out).await?;
        }
    }
    send_part(&mut part, &progress, &out).await
}

impl LocationCounts {
    fn foreign(&mut self, key: &str) {
        self.foreign_with(|| key.to_owned());
    }

    /// Counts a foreign object; its name is only built while the sample has room, and kept
    /// with its control characters escaped (a sample goes to logs and terminals).
    fn foreign_with(&mut self, key: impl FnOnce() -> String) {
        self.listed_objects += 1;
        self.foreign_objects += 1;
        if self.foreign_sample.len() < FOREIGN_SAMPLE {
            self.foreign_sample.push(escape_controls(key()));
        }
    }
}

/// `name` with every control character written as its Rust escape (`\t`, `\r`, `\u{7f}`);
/// the rest as it is.
pub(crate) fn escape_controls(name: String) -> String {
    if !name.chars().any(char::is_control) {
        return name;
    }
    name.chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What waits between the listing and the decide stage is parts of these: the buffer
    /// bounds in `gc/planning.rs` are written for 96 bytes a chunk.
    #[test]
    fn a_listed_chunk_takes_96_bytes_with_its_version_inline() {
        assert_eq!(std::mem::size_of::<ListedChunk>(), 96);
    }
}
