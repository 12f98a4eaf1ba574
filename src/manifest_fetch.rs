//! The manifests stage: find, fetch, parse and check every live snapshot's manifests,
//! concurrently, feeding each id to the run's [`RefSink`] (the filter, and verify's spill
//! under `--verify`) as soon as its file is checked. Every manifest is read through the bucket's
//! store; on `file://` the store hands over the open file, and index files are memory-mapped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetResult, GetResultPayload, ObjectStore, ObjectStoreExt};

use crate::deleting::ManifestObject;
use crate::exit::Exit;
use crate::ids::{PartitionId, SnapshotId};
use crate::live_set::LiveSet;
use crate::locations::{LocationError, LocationTable};
use crate::manifest::{self, ManifestError, ManifestErrorKind, ManifestKind, legacy, unified};
use crate::store::Stores;

mod deleting;
mod snapshots;
mod stage;
pub(crate) use deleting::read_deleting;
pub use snapshots::ManifestsStageError;
pub use snapshots::Seen;
pub(crate) use snapshots::{ManifestsRead, ManifestsStage};
pub use stage::Referenced;
pub(crate) use stage::{ManifestCounts, Wanted, read_manifests};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("snapshot {snapshot}: {object}: {source}")]
    ForeignLocation { snapshot: String, object: String, source: LocationError },
    #[error("listing manifests of bucket {bucket} prefix {prefix}: {why}")]
    Inventory { bucket: String, prefix: String, why: String },
    #[error("listing manifests of bucket {bucket} prefix {prefix}: {source}")]
    Bucket { bucket: String, prefix: String, source: Box<crate::store::StoreError> },
    #[error("manifest worker failed: {0}")]
    Task(String),
    #[error(transparent)]
    Spill(#[from] crate::spill::SpillError),
    #[error(transparent)]
    Bug(#[from] crate::bug::Bug),
}

impl IngestError {
    pub fn exit(&self) -> Exit {
        match self {
            IngestError::Manifest(_) | IngestError::ForeignLocation { .. } | IngestError::Bucket { .. } => {
                Exit::Manifest
            }
            // The snapshots folder's listing failed after its retries: run again later (spec 10.2).
            IngestError::Inventory { .. } => Exit::Listing,
            IngestError::Spill(e) => e.exit(),
            IngestError::Task(_) | IngestError::Bug(_) => Exit::Internal,
        }
    }
}

/// Which manifest objects each live snapshot has, from one listing of the snapshots folder.
#[derive(Debug)]
pub(crate) struct Inventory {
    jobs: Vec<SnapshotJob>,
    /// The manifest objects of every snapshot that is not live: spec 9.2's cross-check.
    pub not_live: Vec<ManifestObject>,
    /// An upper bound on the ids the manifests hold, from the objects' sizes: sizes the filter.
    pub id_bound: u64,
}

#[derive(Debug, Clone)]
struct SnapshotJob {
    snapshot: SnapshotId,
    legacy: bool,
    unified: bool,
}

/// Counters of the stage, for the report and the progress events.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub legacy: AtomicU64,
    pub unified: AtomicU64,
    pub referenced_ids: AtomicU64,
    /// Snapshots whose manifests are all ingested, and how many the live set has.
    pub snapshots_done: AtomicU64,
    pub snapshots_total: AtomicU64,
}

/// Where the stage sends every referenced id, as soon as its file is checked: the filter,
/// and whatever else the run needs (verify's spill, explain's lookups). An id seen here may
/// still belong to a manifest that fails later: the run then aborts, so the ids only ever
/// kept chunks.
pub(crate) trait RefSink: Send + Sync {
    fn add(&self, snapshot: &SnapshotId, location: u32, ids: &[[u8; 32]]);
}

/// Shared inputs of the manifest workers.
#[derive(Clone)]
pub(crate) struct Ingest {
    pub stores: Stores,
    pub meta_bucket: String,
    pub partition: PartitionId,
    pub legacy_location: u32,
    pub sink: Arc<dyn RefSink>,
    /// Where each location a unified manifest names is registered (and its listing started).
    pub locations: LocationTable,
    pub stats: Arc<IngestStats>,
}

/// At most how many ids a manifest object of `size` bytes holds: sizes a filter before the
/// objects are read. A legacy `.manifest` holds none (its index does).
fn ids_bound(kind: ManifestKind, size: u64) -> u64 {
    match kind {
        ManifestKind::LegacyManifest => 0,
        ManifestKind::LegacyIndex => size.saturating_sub(legacy::INDEX_HEADER_LEN as u64) / 32,
        ManifestKind::Unified => size / 32,
    }
}

fn object_name(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

fn manifest_err(snapshot: &SnapshotId, object: String, kind: ManifestErrorKind) -> ManifestError {
    ManifestError { snapshot: snapshot.to_string(), object, kind }
}

/// Lists the snapshots folder once and checks every live snapshot has its manifests: a
/// `.snap`, or a whole legacy pair, or both. Also keeps the manifest objects of the snapshots
/// that are not live, for the cross-check.
pub(crate) async fn inventory(
    stores: &Stores,
    meta_bucket: &str,
    partition: &PartitionId,
    live: &LiveSet,
) -> Result<Inventory, IngestError> {
    let dir = manifest::snapshots_dir(partition);
    let inventory_err =
        |why: String| IngestError::Inventory { bucket: meta_bucket.to_owned(), prefix: dir.clone(), why };
    // Every name of the folder, exactly as listed, with its size when the store gave one.
    // Only the exact keys of live snapshots are looked up below: any other name (a folder
    // placeholder, a control character, a stray `.` segment) is never read as a snapshot.
    // The manifest objects of snapshots that are not live are kept for the cross-check (an
    // object whose last-modified the listing did not give counts as old: the strict side).
    let mut sizes: HashMap<String, Option<u64>> = HashMap::new();
    let live_ids: HashSet<&SnapshotId> = live.snapshots.iter().collect();
    let mut not_live = Vec::new();
    let mut keep = |key: String, size: Option<u64>, last_modified_ms: Option<i64>| {
        if let Some((snapshot, _)) = manifest::manifest_of_key(partition, &key).filter(|(s, _)| !live_ids.contains(s)) {
            let last_modified_ms = last_modified_ms.unwrap_or(i64::MIN);
            not_live.push(ManifestObject { snapshot, key: key.clone(), last_modified_ms, size });
        }
        sizes.insert(key, size);
    };
    let store = stores.bucket(meta_bucket).map_err(|source| IngestError::Bucket {
        bucket: meta_bucket.to_owned(),
        prefix: dir.clone(),
        source: Box::new(source),
    })?;
    // S3 and GCS: raw pages, so an odd name cannot fail the listing (store/raw_list.rs).
    if let Some(lister) = stores.raw_lister(meta_bucket).map_err(|e| inventory_err(e.to_string()))? {
        let mut pages = lister.pages(&dir, false);
        while let Some(page) = pages.next().await.map_err(|e| inventory_err(e.to_string()))? {
            page.objects.into_iter().for_each(|o| keep(o.key, o.size, o.last_modified_ms));
        }
    } else {
        let mut listing = store.list(Some(&Path::from(dir.as_str())));
        while let Some(meta) = listing.try_next().await.map_err(|e| inventory_err(e.to_string()))? {
            keep(meta.location.to_string(), Some(meta.size), Some(meta.last_modified.timestamp_millis()));
        }
    }
    let mut jobs = Vec::with_capacity(live.snapshots.len());
    let mut id_bound = 0u64;
    for snapshot in &live.snapshots {
        let keys = [
            manifest::unified_key(partition, snapshot),
            manifest::legacy_manifest_key(partition, snapshot),
            manifest::legacy_index_key(partition, snapshot),
        ];
        if let Some(key) = keys.iter().find(|key| sizes.get(*key).is_some_and(Option::is_none)) {
            return Err(inventory_err(format!("{key}: the listing gave no usable size")));
        }
        let [snap, text, index] = keys.each_ref().map(|key| sizes.get(key).copied().flatten());
        match (text, index) {
            (Some(_), None) | (None, Some(_)) => {
                let missing = if text.is_none() { &keys[1] } else { &keys[2] };
                let kind = ManifestErrorKind::Missing;
                return Err(manifest_err(snapshot, object_name(meta_bucket, missing), kind).into());
            }
            (None, None) if snap.is_none() => {
                let object = object_name(meta_bucket, &format!("{} (nor a legacy pair)", keys[0]));
                return Err(manifest_err(snapshot, object, ManifestErrorKind::Missing).into());
            }
            _ => {}
        }
        id_bound += index.map_or(0, |size| ids_bound(ManifestKind::LegacyIndex, size));
        id_bound += snap.map_or(0, |size| ids_bound(ManifestKind::Unified, size));
        jobs.push(SnapshotJob { snapshot: snapshot.clone(), legacy: text.is_some(), unified: snap.is_some() });
    }
    Ok(Inventory { jobs, not_live, id_bound })
}

/// Fetches, checks and ingests every manifest of the inventory, `concurrency` at a time.
/// The first error stops the stage.
pub(crate) async fn ingest_all(ingest: &Ingest, inventory: Inventory, concurrency: usize) -> Result<(), IngestError> {
    ingest.stats.snapshots_total.store(inventory.jobs.len() as u64, Ordering::Relaxed);
    futures::stream::iter(inventory.jobs)
        .map(|job| ingest_snapshot(ingest.clone(), job))
        .buffer_unordered(concurrency.max(1))
        .try_for_each(|()| async { Ok(()) })
        .await
}

async fn ingest_snapshot(ingest: Ingest, job: SnapshotJob) -> Result<(), IngestError> {
    let store = ingest.stores.bucket(&ingest.meta_bucket).map_err(|e| {
        manifest_err(&job.snapshot, ingest.meta_bucket.clone(), ManifestErrorKind::Fetch(e.to_string()))
    })?;
    // Both forms are read even when the first fails: a deleting snapshot is accounted as far
    // as it could be read (spec 9.2); a live one fails the run with the first error either way.
    let legacy = match job.legacy {
        true => Some(ingest_legacy(&ingest, store.as_ref(), &job.snapshot).await),
        false => None,
    };
    let unified = match job.unified {
        true => Some(ingest_unified(&ingest, store.as_ref(), &job.snapshot).await),
        false => None,
    };
    if let Some(Ok(())) = legacy {
        ingest.stats.legacy.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(Ok(())) = unified {
        ingest.stats.unified.fetch_add(1, Ordering::Relaxed);
    }
    legacy.transpose()?;
    unified.transpose()?;
    ingest.stats.snapshots_done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// A manifest object as the store gave it: its bytes, or on `file://` the open file
/// (`GetResultPayload::File`), read or memory-mapped where it is parsed, on a blocking
/// thread. Every read goes through the bucket's store, so its layers (retries, the request
/// bill, the tests' fault injection) see it; `store::LocalBucket` refuses a key that is, or
/// goes through, a symbolic link.
struct Fetched {
    object: String,
    body: Body,
}

enum Body {
    Bytes(Bytes),
    File(std::fs::File),
}

impl Fetched {
    /// The whole object (a file is read).
    fn into_bytes(self, snapshot: &SnapshotId) -> Result<Bytes, ManifestError> {
        match self.body {
            Body::Bytes(bytes) => Ok(bytes),
            Body::File(mut file) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| read_err(snapshot, self.object, &e))?;
                Ok(bytes.into())
            }
        }
    }

    /// The object for an index check: a file is memory-mapped (an index may be gigabytes).
    fn into_index(self, snapshot: &SnapshotId) -> Result<IndexBytes, ManifestError> {
        match self.body {
            Body::Bytes(bytes) => Ok(IndexBytes::Fetched(bytes)),
            Body::File(file) => map_file(&file).map_err(|e| read_err(snapshot, self.object, &e)),
        }
    }
}

fn read_err(snapshot: &SnapshotId, object: String, e: &std::io::Error) -> ManifestError {
    manifest_err(snapshot, object, ManifestErrorKind::Fetch(e.to_string()))
}

/// Memory-maps an open index file (an empty file is not mapped).
fn map_file(file: &std::fs::File) -> std::io::Result<IndexBytes> {
    if file.metadata()?.len() == 0 {
        return Ok(IndexBytes::Fetched(Bytes::new()));
    }
    // SAFETY: snapshot files are written once and never modified in place (spec section 2);
    // the map is read-only and dropped as soon as the ids are in the filter.
    Ok(IndexBytes::Mapped(unsafe { memmap2::Mmap::map(file) }?))
}

async fn fetch(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    snapshot: &SnapshotId,
) -> Result<Fetched, ManifestError> {
    let object = object_name(bucket, key);
    let fail = |e: object_store::Error, object: String| {
        let kind = match e {
            object_store::Error::NotFound { .. } => ManifestErrorKind::Missing,
            other => ManifestErrorKind::Fetch(other.to_string()),
        };
        manifest_err(snapshot, object, kind)
    };
    let got = match store.get(&Path::from(key)).await {
        Ok(got) => got,
        Err(e) => return Err(fail(e, object)),
    };
    let body = match got.payload {
        GetResultPayload::File(file, _) => Body::File(file),
        payload @ GetResultPayload::Stream(_) => match (GetResult { payload, ..got }).bytes().await {
            Ok(bytes) => Body::Bytes(bytes),
            Err(e) => return Err(fail(e, object)),
        },
    };
    Ok(Fetched { object, body })
}

/// The bytes of an index file: memory-mapped on `file://`, fetched elsewhere.
enum IndexBytes {
    Mapped(memmap2::Mmap),
    Fetched(Bytes),
}

impl std::ops::Deref for IndexBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            IndexBytes::Mapped(map) => map,
            IndexBytes::Fetched(bytes) => bytes,
        }
    }
}

/// The pair is fetched at once (one round trip on a remote store), then read, parsed and
/// checked on one blocking thread. A bad or missing manifest is reported before anything
/// about its index, as if the index had never been asked for.
async fn ingest_legacy(ingest: &Ingest, store: &dyn ObjectStore, snapshot: &SnapshotId) -> Result<(), IngestError> {
    let bucket = &ingest.meta_bucket;
    let text_key = manifest::legacy_manifest_key(&ingest.partition, snapshot);
    let index_key = manifest::legacy_index_key(&ingest.partition, snapshot);
    let (text, index) =
        futures::join!(fetch(store, bucket, &text_key, snapshot), fetch(store, bucket, &index_key, snapshot));
    let text = text?;
    let (ingest, snapshot) = (ingest.clone(), snapshot.clone());
    blocking(move || {
        let text_object = text.object.clone();
        let parsed = legacy::parse_manifest(&text.into_bytes(&snapshot)?, &text_object, &snapshot, &ingest.partition)?;
        let index = index?;
        let object = index.object.clone();
        let index = index.into_index(&snapshot)?;
        ingest.add_checked_index(&parsed, &index, &object, &snapshot)
    })
    .await
}

async fn ingest_unified(ingest: &Ingest, store: &dyn ObjectStore, snapshot: &SnapshotId) -> Result<(), IngestError> {
    let key = manifest::unified_key(&ingest.partition, snapshot);
    let fetched = fetch(store, &ingest.meta_bucket, &key, snapshot).await?;
    let (ingest, snapshot) = (ingest.clone(), snapshot.clone());
    blocking(move || {
        let object = fetched.object.clone();
        let bytes = fetched.into_bytes(&snapshot)?;
        ingest.add_unified(bytes, &object, &snapshot)
    })
    .await
}

impl Ingest {
    /// Checks an index against its manifest and inserts its ids, in one pass.
    fn add_checked_index(
        &self,
        parsed: &legacy::LegacyManifest,
        index: &[u8],
        object: &str,
        snapshot: &SnapshotId,
    ) -> Result<(), IngestError> {
        let location = self.legacy_location;
        let sink = |ids: &[[u8; 32]]| self.add_ids(snapshot, location, ids);
        legacy::check_index_streaming(parsed, index, object, &sink)?;
        Ok(())
    }

    /// Checks a `.snap`, registers its locations and inserts its ids a group at a time (a
    /// manifest of many small groups is never held whole; an error voids the run).
    fn add_unified(&self, bytes: Bytes, object: &str, snapshot: &SnapshotId) -> Result<(), IngestError> {
        let ingest = self;
        let reader = unified::SnapReader::open(bytes, object, snapshot, &ingest.partition)?;
        let mut indexes = Vec::with_capacity(reader.head().locations.len());
        for location in &reader.head().locations {
            location.check_owned_by(&ingest.partition).map_err(|source| IngestError::ForeignLocation {
                snapshot: snapshot.to_string(),
                object: object.to_owned(),
                source,
            })?;
            indexes.push(ingest.locations.register(location));
        }
        let mut out_of_range = None;
        reader.for_each_group(|group| match indexes.get(group.location as usize) {
            Some(&location) => ingest.add_ids(snapshot, location, group.ids()),
            // The reader checks every group's location is in range before passing it.
            None => out_of_range = Some(group.location),
        })?;
        if let Some(location) = out_of_range {
            return Err(IngestError::Task(format!("{object}: group location {location} out of range")));
        }
        Ok(())
    }

    fn add_ids(&self, snapshot: &SnapshotId, location: u32, ids: &[[u8; 32]]) {
        self.sink.add(snapshot, location, ids);
        self.stats.referenced_ids.fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
}

/// Reads, parses and checks off the async workers.
async fn blocking<T, F>(work: F) -> Result<T, IngestError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, IngestError> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|e| IngestError::Task(e.to_string()))?
}
