//! Writers racing `--execute` on `az://` (spec 9.1), through real HTTP: Azurite behind
//! `common::gcs_proxy` in recording mode (Azurite enforces `If-Match` itself). Writer tasks
//! watch what the collector lists and re-reads (its list pages and HEADs through the proxy)
//! and upload the chunk again 0 to 20 ms later, anywhere between the listing and the
//! delete, the window the listed ETag guards (spec 10.1). Every chunk a writer committed
//! must survive, and every DELETE must carry `If-Match` on an ETag the collector listed or
//! read. Seeded, bounded; no timing asserted.
//!
//! Ignored unless `GC_TEST_AZ_ENDPOINT` was set at build time (`scripts/test` sets it).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{TimeDelta, Utc};
use common::gcs_proxy::GcsProxy;
use common::race::{Race, assert_race, start_collector};
use common::{Backend, S3_TURN, az_env, azurite_stores, runtime};
use gc_kit::Ageing;
use gc_kit::mix::unit;
use gc_partition::ids::ChunkId;
use gc_partition::locations::Location;
use gc_partition::store::{StoreOptions, Stores};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

const CHUNKS: u64 = 300;
const WRITERS: u64 = 4;

#[test]
#[cfg_attr(not(gc_test_az), ignore = "no test server: scripts/test starts Azurite")]
fn writers_racing_execute_lose_no_chunk_on_azure() {
    let Backend::Az { endpoint, root, .. } = Backend::az() else { unreachable!() };
    let _turn = S3_TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let rt = runtime();
    let upstream = endpoint.trim_end_matches(&format!("/{}", common::AZURITE_ACCOUNT)).to_owned();
    let proxy = GcsProxy::start_azure(&rt, &upstream);
    let env = az_env(&format!("{}/{}", proxy.url, common::AZURITE_ACCOUNT));

    // An empty server (straight, not through the proxy), then old garbage, written and aged
    // through the proxy.
    azurite_stores(&root, &az_env(&endpoint));
    let stores = Stores::from_url_and_env("az://", StoreOptions::default(), env.clone()).unwrap();
    let stores = gc_kit::azurite::test_server_stores(stores, root.clone(), &env).unwrap();
    stores.create_bucket("snapshots").unwrap();
    let location = Location::new("snapshots", "partitions/p1/chunks").unwrap();
    let seed = 23;
    let keys: Vec<String> = (0..CHUNKS)
        .map(|n| {
            let id: [u8; 32] = std::array::from_fn(|i| (unit(seed, n * 32 + i as u64) * 256.0) as u8);
            location.chunk_key(&ChunkId(id))
        })
        .collect();
    let bucket = stores.bucket("snapshots").unwrap();
    let old = Utc::now() - TimeDelta::days(3);
    rt.block_on(async {
        for key in &keys {
            bucket.put(&ObjectPath::from(key.as_str()), key.clone().into()).await.unwrap();
            stores.set_last_modified("snapshots", key, old).unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let child = start_collector(dir.path(), "az://", &env);

    // Writers: a chunk the collector just listed or re-read is uploaded again through
    // object_store, half the time, 0 to 20 ms later.
    let done = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(Mutex::new(BTreeSet::new()));
    let uploads = Arc::new(AtomicU64::new(0));
    let proxy = Arc::new(proxy);
    let chunk_folder = format!("/{}/snapshots/{}/", common::AZURITE_ACCOUNT, location.prefix());
    let writers: Vec<_> = (0..WRITERS)
        .map(|me| {
            let (done, committed, uploads, proxy) =
                (Arc::clone(&done), Arc::clone(&committed), Arc::clone(&uploads), Arc::clone(&proxy));
            let (bucket, chunk_folder) = (Arc::clone(&bucket), chunk_folder.clone());
            rt.spawn(async move {
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let read = proxy.take_read();
                    if read.is_empty() {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        continue;
                    }
                    for path in read {
                        n += 1;
                        let Some(rest) = path.strip_prefix(&chunk_folder) else { continue };
                        if unit(seed ^ me, n) < 0.5 {
                            continue;
                        }
                        tokio::time::sleep(common::race::writer_delay(seed ^ me, n)).await;
                        let key = format!("partitions/p1/chunks/{rest}");
                        bucket.put(&ObjectPath::from(key.as_str()), key.clone().into()).await.unwrap();
                        uploads.fetch_add(1, Ordering::Relaxed);
                        committed.lock().unwrap().insert(key);
                    }
                }
            })
        })
        .collect();
    let output = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    for writer in writers {
        rt.block_on(writer).unwrap();
    }
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let committed = committed.lock().unwrap().clone();
    let uploads = uploads.load(Ordering::Relaxed);
    let race = Race { report: &report, committed: &committed, uploads, keys: &keys, condition: "If-Match" };
    assert_race(&rt, bucket.as_ref(), &proxy, &race);
}
