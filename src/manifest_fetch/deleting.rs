//! The deleting snapshots' manifests (spec 9.2's accounting), read and checked as the live
//! ones are, but tolerantly: a missing or bad manifest is that snapshot's error, never the
//! run's (it is not live), and the locations they name are never listed (a location only a
//! deleting manifest names is not a candidate). Their ids go to a spill by id range, with the
//! snapshot's index where a reference has its location, and to a filter, which the other
//! stages ask before they spill anything for the accounting.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use tracing::{Instrument, info, info_span};

use crate::bloom::RefFilter;
use crate::bug::Bug;
use crate::config::Config;
use crate::deleting::{ManifestObject, Named};
use crate::ids::SnapshotId;
use crate::live_set::LiveSet;
use crate::locations::LocationTable;
use crate::manifest::{self, ManifestKind};
use crate::spill::RangeSpill;
use crate::store::Stores;

use super::{Ingest, IngestError, RefSink, SnapshotJob, ids_bound, ingest_snapshot};

struct NamedSink {
    index: HashMap<SnapshotId, u32>,
    filter: Arc<RefFilter>,
    spill: RangeSpill,
}

impl RefSink for NamedSink {
    fn add(&self, snapshot: &SnapshotId, _location: u32, ids: &[[u8; 32]]) {
        if let Some(&index) = self.index.get(snapshot) {
            self.spill.add(index, ids);
            self.filter.insert_all(ids);
        }
    }
}

/// Reads the manifest objects `folder` lists for each snapshot of `deleting`. A snapshot with
/// none left names nothing and has no error.
pub(crate) async fn read_deleting(
    stores: &Stores,
    config: &Config,
    deleting: &LiveSet,
    folder: &[ManifestObject],
) -> Result<Named, IngestError> {
    let span = info_span!("deleting_manifests", snapshots = deleting.snapshots.len());
    let index: HashMap<SnapshotId, u32> =
        deleting.snapshots.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
    let mut kinds: HashMap<&SnapshotId, (bool, bool)> = HashMap::new();
    let mut id_bound = 0u64;
    for object in folder.iter().filter(|o| index.contains_key(&o.snapshot)) {
        let Some((_, kind)) = manifest::manifest_of_key(&config.partition, &object.key) else { continue };
        let (legacy, unified) = kinds.entry(&object.snapshot).or_default();
        match kind {
            ManifestKind::Unified => *unified = true,
            ManifestKind::LegacyManifest | ManifestKind::LegacyIndex => *legacy = true,
        }
        id_bound += ids_bound(kind, object.size.unwrap_or(0));
    }
    let jobs: Vec<(u32, SnapshotJob)> = deleting
        .snapshots
        .iter()
        .filter_map(|s| {
            let &(legacy, unified) = kinds.get(s)?;
            Some((index[s], SnapshotJob { snapshot: s.clone(), legacy, unified }))
        })
        .collect();
    let filter = Arc::new(RefFilter::for_run(id_bound.max(1), config.bloom_fpr, config.bloom_seed));
    let sink = Arc::new(NamedSink { index, filter: Arc::clone(&filter), spill: RangeSpill::create(&config.work_dir)? });
    let ingest = Ingest {
        stores: stores.clone(),
        meta_bucket: config.meta_bucket.clone(),
        partition: config.partition.clone(),
        // Legacy ids are named by the snapshot, not by a location: any index does.
        legacy_location: 0,
        sink: Arc::clone(&sink) as Arc<dyn RefSink>,
        // Never listed: the locations only a deleting manifest names are not candidates.
        locations: LocationTable::new(None),
        stats: Arc::default(),
    };
    let mut errors = vec![None; deleting.snapshots.len()];
    let mut results = futures::stream::iter(jobs)
        .map(|(i, job)| {
            let ingest = ingest.clone();
            async move { (i, ingest_snapshot(ingest, job).await) }
        })
        .buffer_unordered(config.manifest_concurrency.max(1));
    async {
        while let Some((i, result)) = results.next().await {
            match result {
                Ok(()) => {}
                Err(error @ (IngestError::Manifest(_) | IngestError::ForeignLocation { .. })) => {
                    errors[i as usize] = Some(error.to_string());
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
    .instrument(span)
    .await?;
    drop(results);
    drop(ingest);
    let sink = Arc::try_unwrap(sink).map_err(|_| Bug::new("the deleting ids' sink is still shared"))?;
    let refs = sink.spill.finish()?;
    let failed = errors.iter().flatten().count();
    info!(snapshots = deleting.snapshots.len(), ids = sink.filter.inserted(), failed, "deleting manifests read");
    Ok(Named { snapshots: deleting.snapshots.clone(), filter, refs, errors })
}
