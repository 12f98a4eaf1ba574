//! Spec 9.2's reclaim: after a run that ends with exit 0, the deleting snapshots' manifest
//! objects are deleted exactly as planned chunks are (re-read, still older than the cutoff,
//! tied to the object read), and a snapshot is reclaimed once all of its objects are gone.

use std::collections::BTreeMap;

use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::{info, warn};

use crate::execute::{DeleteFailures, ExecuteStats, Executor};
use crate::exit::Exit;
use crate::ids::SnapshotId;
use crate::listing::ListedChunk;
use crate::live_set::LiveSet;
use crate::locations::{Location, LocationError};
use crate::store::StoreError;

use super::ManifestObject;

/// A deleting snapshot whose manifest objects may all be deleted: each is older than the
/// cutoff (a snapshot with none left qualifies, with nothing to delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaim {
    pub snapshot: SnapshotId,
    pub objects: Vec<ManifestObject>,
}

/// The deleting snapshots an execute ending with exit 0 reclaims (spec 9.2): those with no
/// manifest object at or after the cutoff; if any of a snapshot's objects is younger, none
/// of them is deleted and the snapshot is not listed.
pub fn reclaimable(deleting: &LiveSet, not_live: &[ManifestObject], cutoff_ms: i64) -> Vec<Reclaim> {
    let mut by_snapshot: BTreeMap<&SnapshotId, Vec<ManifestObject>> =
        deleting.snapshots.iter().map(|s| (s, Vec::new())).collect();
    for object in not_live {
        if let Some(objects) = by_snapshot.get_mut(&object.snapshot) {
            objects.push(object.clone());
        }
    }
    by_snapshot
        .into_iter()
        .filter(|(_, objects)| objects.iter().all(|o| o.last_modified_ms < cutoff_ms))
        .map(|(snapshot, objects)| Reclaim { snapshot: snapshot.clone(), objects })
        .collect()
}

/// How the reclaim stage (spec 9.2, after the deletes) fails: the snapshots folder named
/// wrong, the store refusing the deletes, or some of them failing.
#[derive(Debug, thiserror::Error)]
pub enum ReclaimError {
    #[error("location: {0}")]
    Location(#[from] LocationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    DeleteFailures(#[from] DeleteFailures),
}

impl ReclaimError {
    pub fn exit(&self) -> Exit {
        match self {
            ReclaimError::Location(_) | ReclaimError::Store(_) => Exit::Usage,
            ReclaimError::DeleteFailures(_) => Exit::DeleteFailures,
        }
    }
}

/// What a reclaim did: the snapshots reclaimed, and the manifest deletes that failed.
#[derive(Debug, Default)]
pub struct Reclaimed {
    pub snapshots: Vec<String>,
    pub objects: u64,
    pub failed: ExecuteStats,
}

/// Deletes every candidate's manifest objects from `folder` (the snapshots folder) with
/// `executor`; a snapshot is listed once each of its objects is deleted and none is there
/// any more. The second look matters on a versioned S3 bucket: the delete names the version
/// read, so it succeeds even when a writer put a new version after the re-read, and that
/// manifest is still there.
pub async fn reclaim(
    executor: &Executor<'_>,
    folder: &Location,
    candidates: &[Reclaim],
    cutoff_ms: i64,
) -> Result<Reclaimed, StoreError> {
    let objects: Vec<(String, ListedChunk)> = candidates
        .iter()
        .flat_map(|r| &r.objects)
        .map(|o| {
            (
                o.key.clone(),
                ListedChunk {
                    id: [0; 32],
                    size: 0,
                    last_modified_ms: o.last_modified_ms,
                    version: crate::store::Version::NONE,
                },
            )
        })
        .collect();
    let mut done = executor.delete_objects(folder, &objects, cutoff_ms).await?.into_iter();
    let mut reclaimed = Reclaimed { objects: objects.len() as u64, ..Reclaimed::default() };
    for candidate in candidates {
        let outcomes: Vec<ExecuteStats> = done.by_ref().take(candidate.objects.len()).collect();
        if outcomes.iter().all(|o| o.deleted == 1) && all_gone(executor, folder, candidate).await {
            reclaimed.snapshots.push(candidate.snapshot.to_string());
        }
        reclaimed.failed.failures.extend(outcomes.into_iter().flat_map(|o| o.failures));
    }
    let failed = reclaimed.failed.failures.len();
    info!(reclaimed = reclaimed.snapshots.len(), objects = objects.len(), failed, "manifests reclaimed");
    Ok(reclaimed)
}

/// Whether none of `candidate`'s manifest objects is in `folder` now. An error is no answer:
/// the snapshot is then not listed, and a rerun reclaims it.
async fn all_gone(executor: &Executor<'_>, folder: &Location, candidate: &Reclaim) -> bool {
    let store = match executor.stores.bucket(folder.bucket()) {
        Ok(store) => store,
        Err(error) => {
            warn!(snapshot = %candidate.snapshot, %error, "reclaim: cannot look at the snapshots folder");
            return false;
        }
    };
    for object in &candidate.objects {
        match store.head(&Path::from(object.key.as_str())).await {
            Err(object_store::Error::NotFound { .. }) => {}
            Ok(_) => {
                info!(snapshot = %candidate.snapshot, key = %object.key, "reclaim: a manifest was written again; not reclaimed");
                return false;
            }
            Err(error) => {
                warn!(snapshot = %candidate.snapshot, key = %object.key, %error, "reclaim: cannot tell whether a manifest is gone; not reclaimed");
                return false;
            }
        }
    }
    true
}
