//! `--explain HEX` (spec 8.4): why a chunk is kept or deleted. Exact, not through the filter:
//! the live snapshots whose manifests name the id (seen as the manifests stage reads them),
//! where the chunk is stored (a HEAD of its key in every candidate location), and what a run
//! would decide, with the reason. Read-only.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, PoisonError};

use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::Serialize;

use crate::ids::{ChunkId, SnapshotId};
use crate::listing::ListingError;
use crate::locations::Location;
use crate::manifest_fetch::RefSink;
use crate::plan::ms_to_rfc3339;
use crate::store::Stores;

/// Collects, for the explained ids only, the live snapshots that reference them.
pub(crate) struct ExplainSink {
    wanted: HashSet<[u8; 32]>,
    referenced_by: Mutex<BTreeMap<[u8; 32], BTreeSet<String>>>,
}

impl ExplainSink {
    pub fn new(ids: &[ChunkId]) -> Self {
        Self { wanted: ids.iter().map(|id| id.0).collect(), referenced_by: Mutex::default() }
    }

    fn snapshots_of(&self, id: &[u8; 32]) -> Vec<String> {
        let referenced_by = self.referenced_by.lock().unwrap_or_else(PoisonError::into_inner);
        referenced_by.get(id).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

impl RefSink for ExplainSink {
    fn add(&self, snapshot: &SnapshotId, _location: u32, ids: &[[u8; 32]]) {
        let hits: Vec<&[u8; 32]> = ids.iter().filter(|id| self.wanted.contains(*id)).collect();
        if hits.is_empty() {
            return;
        }
        let mut referenced_by = self.referenced_by.lock().unwrap_or_else(PoisonError::into_inner);
        for id in hits {
            referenced_by.entry(*id).or_default().insert(snapshot.to_string());
        }
    }
}

/// One stored copy of an explained chunk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(rename = "StoredCopy")]
pub struct Copy {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub last_modified: String,
    #[serde(skip)]
    pub last_modified_ms: i64,
}

/// The answer for one chunk id (spec 8.4).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Explanation {
    /// The chunk id, hex.
    pub id: String,
    /// The live snapshots whose manifests name it, found exactly.
    pub referenced_by: Vec<String>,
    /// Where it is stored in a candidate location.
    pub found: Vec<Copy>,
    #[schemars(extend("enum" = ["keep-referenced", "keep-young", "delete", "absent"]))]
    pub decision: &'static str,
    /// Why, in one line.
    pub reason: String,
}

/// Finds every copy of `id` in the candidate locations with one HEAD each.
pub(crate) async fn find_copies(
    stores: &Stores,
    locations: &[Location],
    id: &ChunkId,
) -> Result<Vec<Copy>, ListingError> {
    let mut copies = Vec::new();
    for location in locations {
        let store = stores.bucket(location.bucket())?;
        let key = location.chunk_key(id);
        match store.head(&Path::from(key.as_str())).await {
            Ok(meta) => copies.push(Copy {
                bucket: location.bucket().to_owned(),
                key,
                size: meta.size,
                last_modified: ms_to_rfc3339(meta.last_modified.timestamp_millis()),
                last_modified_ms: meta.last_modified.timestamp_millis(),
            }),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(ListingError::List { bucket: location.bucket().to_owned(), prefix: key, source });
            }
        }
    }
    Ok(copies)
}

/// What a run would decide for a chunk, and why (the rule of spec 4.5, applied exactly).
pub fn explain(id: &ChunkId, referenced_by: Vec<String>, found: Vec<Copy>, cutoff_ms: i64, fpr: f64) -> Explanation {
    let cutoff = ms_to_rfc3339(cutoff_ms);
    let oldest = found.iter().min_by_key(|c| c.last_modified_ms);
    let (decision, reason) = match (referenced_by.first(), oldest) {
        (Some(first), Some(_)) => (
            "keep-referenced",
            format!(
                "referenced by {} live snapshot(s), e.g. {first}: kept while any of them lives",
                referenced_by.len()
            ),
        ),
        (Some(first), None) => (
            "keep-referenced",
            format!(
                "referenced by {} live snapshot(s), e.g. {first}, but stored in no candidate location: MISSING",
                referenced_by.len()
            ),
        ),
        (None, None) => ("absent", "referenced by no live snapshot and stored in no candidate location".to_owned()),
        (None, Some(oldest)) if oldest.last_modified_ms >= cutoff_ms => (
            "keep-young",
            format!(
                "referenced by no live snapshot, but last modified {} (at or after the cutoff {cutoff}): inside the grace window",
                oldest.last_modified
            ),
        ),
        (None, Some(oldest)) => (
            "delete",
            format!(
                "referenced by no live snapshot and last modified {} (before the cutoff {cutoff}): {}/{} is planned for deletion (a bloom false positive keeps it one run longer with probability {fpr})",
                oldest.last_modified, oldest.bucket, oldest.key
            ),
        ),
    };
    Explanation { id: id.to_hex(), referenced_by, found, decision, reason }
}

/// Explains every id of the sink, looking each up in `locations`.
pub(crate) async fn explain_all(
    stores: &Stores,
    locations: &[Location],
    sink: &ExplainSink,
    ids: &[ChunkId],
    cutoff_ms: i64,
    fpr: f64,
) -> Result<Vec<Explanation>, ListingError> {
    let mut explanations = Vec::with_capacity(ids.len());
    for id in ids {
        let found = find_copies(stores, locations, id).await?;
        explanations.push(explain(id, sink.snapshots_of(&id.0), found, cutoff_ms, fpr));
    }
    Ok(explanations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(ms: i64) -> Copy {
        Copy { bucket: "b".into(), key: "k".into(), size: 1, last_modified: ms_to_rfc3339(ms), last_modified_ms: ms }
    }

    #[test]
    fn each_decision_follows_the_rule() {
        let id = ChunkId([7; 32]);
        let decide = |refs: &[&str], found: Vec<Copy>| {
            explain(&id, refs.iter().map(|s| s.to_string()).collect(), found, 1000, 0.001).decision
        };
        assert_eq!(decide(&["s1"], vec![copy(0)]), "keep-referenced");
        assert_eq!(decide(&["s1"], vec![]), "keep-referenced");
        assert_eq!(decide(&[], vec![copy(1000)]), "keep-young", "at the cutoff is young");
        assert_eq!(decide(&[], vec![copy(999)]), "delete");
        assert_eq!(decide(&[], vec![copy(5000), copy(10)]), "delete", "the old copy is planned");
        assert_eq!(decide(&[], vec![]), "absent");
        assert!(explain(&id, vec!["s1".into()], vec![], 1000, 0.001).reason.contains("MISSING"));
    }

    #[test]
    fn the_sink_records_only_the_wanted_ids_and_who_names_them() {
        let sink = ExplainSink::new(&[ChunkId([1; 32])]);
        let (a, b) = (SnapshotId::parse("snap-a").unwrap(), SnapshotId::parse("snap-b").unwrap());
        sink.add(&b, 0, &[[1; 32], [2; 32]]);
        sink.add(&a, 3, &[[1; 32]]);
        sink.add(&a, 0, &[[2; 32]]);
        assert_eq!(sink.snapshots_of(&[1; 32]), ["snap-a", "snap-b"]);
        assert!(sink.snapshots_of(&[2; 32]).is_empty());
    }
}
