//! Spec 9.2's accounting computed from the store itself, to check a report's
//! `deleting_snapshots` against.

use std::collections::{BTreeMap, BTreeSet};

use gc_partition::ids::SnapshotId;
use object_store::path::Path as ObjectPath;

use super::{Fixture, runtime};

/// Every chunk object of the fixture's locations: (location, id) -> size.
pub fn chunks_stored(fx: &Fixture) -> BTreeMap<(usize, [u8; 32]), u64> {
    use futures::TryStreamExt;
    let mut out = BTreeMap::new();
    for (i, location) in fx.summary.locations.iter().enumerate() {
        let store = fx.stores.bucket(location.bucket()).unwrap();
        let listed: Vec<_> =
            runtime().block_on(store.list(Some(&ObjectPath::from(location.prefix()))).try_collect::<Vec<_>>()).unwrap();
        for meta in listed {
            if let Some(id) = location.chunk_of_key(meta.location.as_ref()) {
                out.insert((i, id.0), meta.size);
            }
        }
    }
    out
}

/// The accounting of spec 9.2 computed from the store, the manifests and what was freed:
/// one JSON object per deleting snapshot, as the report has it.
pub fn truth(
    named: &[(SnapshotId, BTreeSet<[u8; 32]>)],
    live: &BTreeSet<[u8; 32]>,
    listed: &BTreeMap<(usize, [u8; 32]), u64>,
    freed: &BTreeMap<(usize, [u8; 32]), u64>,
) -> Vec<serde_json::Value> {
    let listed_ids: BTreeSet<[u8; 32]> = listed.keys().map(|(_, id)| *id).collect();
    let mut freed_bytes: BTreeMap<[u8; 32], u64> = BTreeMap::new();
    for ((_, id), size) in freed {
        *freed_bytes.entry(*id).or_default() += size;
    }
    named
        .iter()
        .map(|(snapshot, named)| {
            let not_shared: Vec<_> = named.iter().filter(|id| !live.contains(*id)).collect();
            let freed: Vec<_> = not_shared.iter().filter(|id| freed_bytes.contains_key(**id)).collect();
            serde_json::json!({
                "snapshot": snapshot.as_str(),
                "chunks": named.len(),
                "shared_kept": named.len() - not_shared.len(),
                "freed_chunks": freed.len(),
                "freed_bytes": freed.iter().map(|id| freed_bytes[**id]).sum::<u64>(),
                "not_found": not_shared.iter().filter(|id| !listed_ids.contains(**id)).count(),
                "error": null,
            })
        })
        .collect()
}
