//! Azure deletes conditioned on the ETag the listing returned (spec 10.1), sent as Blob Batches
//! (Azurite enforces each sub-request's `If-Match`): the execute stage runs in-process on blobs
//! listed from the server. Blobs rewritten after the listing (a new ETag) are kept as
//! refreshed, blobs removed after it count as gone, the others are deleted, and the whole
//! batch is one request, with no re-read.
//!
//! Ignored unless `GC_TEST_AZ_ENDPOINT` was set at build time (`scripts/test` sets it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::AtomicU64;

use common::{Backend, S3_TURN, azurite_stores, runtime};
use futures::TryStreamExt;
use gc_kit::mix::unit;
use gc_partition::execute::{Executor, Reread};
use gc_partition::ids::ChunkId;
use gc_partition::listing::ListedChunk;
use gc_partition::locations::Location;
use object_store::ObjectStoreExt;
use object_store::path::Path;

const CHUNKS: u64 = 300;

#[test]
#[cfg_attr(not(gc_test_az), ignore = "no test server: scripts/test starts Azurite")]
fn a_blob_batch_deletes_the_listed_etags_and_keeps_the_rewritten_blobs() {
    let Backend::Az { root, env, .. } = Backend::az() else { unreachable!() };
    let _turn = S3_TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let stores = azurite_stores(&root, &env);
    gc_kit::azurite::of(&stores).unwrap().create_container("snapshots").unwrap();
    let location = Location::new("snapshots", "partitions/p1/chunks").unwrap();
    let keys: Vec<String> = (0..CHUNKS)
        .map(|n| {
            let id: [u8; 32] = std::array::from_fn(|i| (unit(31, n * 32 + i as u64) * 256.0) as u8);
            location.chunk_key(&ChunkId(id))
        })
        .collect();
    let store = stores.bucket("snapshots").unwrap();
    let rt = runtime();
    rt.block_on(async {
        for key in &keys {
            store.put(&Path::from(key.as_str()), key.clone().into()).await.unwrap();
        }
    });
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send((0, location.clone())).unwrap();
    drop(tx);
    let listing =
        rt.block_on(gc_partition::listing::list_all(stores.clone(), rx, 4, Arc::new(AtomicU64::new(0)))).unwrap();
    let listed: BTreeMap<String, ListedChunk> =
        listing.chunks().map(|(_, c)| (location.chunk_key(&ChunkId(c.id)), *c)).collect();
    assert_eq!(listed.len(), keys.len());
    assert!(listed.values().all(|c| !c.version.is_none()), "List Blobs gives every blob's ETag");

    // After the listing: every 5th blob rewritten (a new ETag), every 7th removed.
    let rewritten: BTreeSet<String> = keys.iter().step_by(5).cloned().collect();
    let removed: BTreeSet<String> =
        keys.iter().skip(1).step_by(7).filter(|k| !rewritten.contains(*k)).cloned().collect();
    rt.block_on(async {
        for key in &rewritten {
            store.put(&Path::from(key.as_str()), "rewritten by a writer".into()).await.unwrap();
        }
        for key in &removed {
            store.delete(&Path::from(key.as_str())).await.unwrap();
        }
    });
    let before = stores.requests();
    let stop = tokio_util::sync::CancellationToken::new();
    let executor = Executor {
        stores: &stores,
        concurrency: 8,
        max_delete_rate: None,
        stop: &stop,
        progress: Arc::new(AtomicU64::new(0)),
        deleted: None,
    };
    let cutoff_ms = (chrono::Utc::now() + chrono::TimeDelta::days(1)).timestamp_millis();
    let planned: Vec<(u32, ListedChunk)> = listed.values().map(|c| (0, *c)).collect();
    let stats = rt
        .block_on(executor.execute(
            std::slice::from_ref(&location),
            planned.into_iter(),
            Reread::OlderThan { cutoff_ms },
        ))
        .unwrap();
    let bill = stores.requests().since(before);
    assert!(stats.failures.is_empty(), "{:?}", stats.failures);
    // A removed blob answers `If-Match` with 404 (gone: done) on Azure, and with 412 (kept:
    // counted refreshed) on Azurite 3.35: either way it is not there, and nothing else is kept.
    let (rewritten_n, removed_n) = (rewritten.len() as u64, removed.len() as u64);
    assert!(
        [rewritten_n, rewritten_n + removed_n].contains(&stats.refreshed_kept),
        "412: the rewritten blobs are kept ({rewritten_n} rewritten, {removed_n} removed): {stats:?}"
    );
    assert_eq!(stats.deleted + stats.refreshed_kept, keys.len() as u64, "202 deleted, 404 gone (done)");
    assert_eq!(stats.conditions.conditional, keys.len() as u64);
    assert_eq!(bill.head, 0, "no re-read: the listing's ETag conditions the delete");
    assert_eq!(bill.delete_calls, keys.len().div_ceil(256) as u64, "one Blob Batch per 256 blobs: {bill:?}");
    assert_eq!(bill.deleted_keys, (keys.len() - rewritten.len() - removed.len()) as u64);
    let now: BTreeSet<String> =
        rt.block_on(async { store.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap() });
    assert_eq!(now, rewritten, "exactly the rewritten blobs are left");
}
