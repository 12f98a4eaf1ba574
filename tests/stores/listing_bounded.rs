//! Listed chunks never pile up: while nothing takes the listing's parts (the decide stage
//! waits for the filter), the listing waits too, with at most a bounded number of chunks
//! listed and not yet taken; once parts are taken, every chunk arrives exactly once.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gc_partition::ids::ChunkId;
use gc_partition::listing::{PART_CHUNKS, list_stream};
use gc_partition::locations::Location;
use gc_partition::store::{StoreOptions, Stores};
use object_store::{ObjectStoreExt, PutPayload};

const DIRS: u8 = 8;
const PER_DIR: u32 = 25_000;
const CHANNEL_PARTS: usize = 2;
const LIST_CONCURRENCY: usize = 2;

#[test]
fn the_listing_waits_for_its_consumer_and_loses_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let stores = Stores::from_url("memory://", StoreOptions::default()).unwrap();
    let location = Location::new("chunks", "p1").unwrap();
    let bucket = stores.bucket("chunks").unwrap();
    let mut written = HashSet::new();
    runtime.block_on(async {
        for d in 0..DIRS {
            for i in 0..PER_DIR {
                let mut id = [0u8; 32];
                id[0] = d * 16;
                id[1..5].copy_from_slice(&i.to_be_bytes());
                let key = location.chunk_key(&ChunkId(id));
                bucket.put(&key.as_str().into(), PutPayload::from_static(b"x")).await.unwrap();
                written.insert(id);
            }
        }
    });
    let total = u64::from(DIRS) * u64::from(PER_DIR);

    let listed = Arc::new(AtomicU64::new(0));
    let (out, mut parts) = tokio::sync::mpsc::channel(CHANNEL_PARTS);
    let (locations_tx, locations_rx) = tokio::sync::mpsc::unbounded_channel();
    locations_tx.send((0, location)).unwrap();
    drop(locations_tx);
    let listing = runtime.spawn(list_stream(stores, locations_rx, LIST_CONCURRENCY, Arc::clone(&listed), out));

    // Nobody takes parts: once the listing has started, it must not finish. (The 2 s bound
    // how far it may run ahead; they are not a timing check of the listing, and the wait for
    // its start has no deadline: the test harness bounds it.)
    let finished_alone = runtime.block_on(async {
        while listed.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        listing.is_finished()
    });
    assert!(!finished_alone, "the listing finished with no consumer: its buffer is unbounded");
    // The channel, plus per directory task one part being filled and one waiting to be sent.
    let bound = ((CHANNEL_PARTS + 2 * LIST_CONCURRENCY) * PART_CHUNKS) as u64;
    let ahead = listed.load(Ordering::Relaxed);
    assert!(ahead <= bound, "{ahead} chunks listed with nobody taking them, bound {bound}");

    let received = runtime.block_on(async {
        let mut received = Vec::new();
        while let Some(part) = parts.recv().await {
            assert!(part.chunks.len() <= PART_CHUNKS);
            assert!(part.chunks.windows(2).all(|w| w[0].id[0] == w[1].id[0]), "a part spans two directories");
            received.extend(part.chunks.iter().map(|c| c.id));
        }
        received
    });
    runtime.block_on(listing).unwrap().unwrap();
    assert_eq!(received.len() as u64, total, "every chunk once");
    assert_eq!(received.into_iter().collect::<HashSet<_>>(), written);
}
