//! Writers racing `--execute` on `gs://` (spec 9.1), through real HTTP: fake-gcs-server
//! behind `common::gcs_proxy`, which enforces the delete preconditions the emulator ignores.
//! Writer tasks watch what the collector lists and re-reads (its list pages and HEADs
//! through the proxy) and upload the chunk again 0 to 20 ms later, anywhere between the
//! listing and the delete, the window the listed generation guards (spec 10.1). Every chunk
//! a writer committed must survive, and every DELETE must carry the precondition of a
//! generation the collector listed or read. Seeded, bounded; no timing asserted.
//!
//! Ignored unless `GC_TEST_GCS_ENDPOINT` was set at build time (`scripts/test` sets it).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{TimeDelta, Utc};
use common::gcs_proxy::GcsProxy;
use common::race::{Race, assert_race, start_collector};
use common::{Backend, S3_TURN, empty_root, runtime};
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
#[cfg_attr(not(gc_test_gcs), ignore = "no test server: scripts/test starts fake-gcs-server")]
fn writers_racing_execute_lose_no_chunk_on_gcs() {
    let Backend::Gcs { endpoint, root, .. } = Backend::gcs() else { unreachable!() };
    let _turn = S3_TURN.lock().unwrap_or_else(PoisonError::into_inner);
    empty_root(&root);
    let rt = runtime();
    let proxy = GcsProxy::start(&rt, &endpoint);
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("sa.json");
    let json = serde_json::json!({
        "gcs_base_url": proxy.url, "disable_oauth": true,
        "client_email": "", "private_key": "", "private_key_id": "",
    });
    std::fs::write(&account, json.to_string()).unwrap();
    let env = vec![
        ("GOOGLE_SERVICE_ACCOUNT".to_owned(), account.display().to_string()),
        ("GOOGLE_BASE_URL".to_owned(), proxy.url.clone()),
    ];

    // Old garbage, written straight to the emulator and aged there.
    let stores = Stores::from_url_and_env("gs://", StoreOptions::default(), env.clone()).unwrap();
    let stores = gc_kit::fake_gcs::test_server_stores(stores, root.clone(), &endpoint);
    stores.create_bucket("snapshots").unwrap();
    let location = Location::new("snapshots", "partitions/p1/chunks").unwrap();
    let seed = 22;
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
    let child = start_collector(dir.path(), "gs://", &env);

    // Writers: a chunk the collector just listed or re-read is uploaded again (through the
    // proxy, which orders it against the deletes), half the time, 0 to 20 ms later.
    let done = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(Mutex::new(BTreeSet::new()));
    let uploads = Arc::new(AtomicU64::new(0));
    let proxy = Arc::new(proxy);
    let writers: Vec<_> = (0..WRITERS)
        .map(|me| {
            let (done, committed, uploads, proxy) =
                (Arc::clone(&done), Arc::clone(&committed), Arc::clone(&uploads), Arc::clone(&proxy));
            let client = reqwest::Client::new();
            let chunk_folder = format!("/snapshots/{}/", location.prefix());
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
                        let Some(key) = path.strip_prefix("/snapshots/") else { continue };
                        if !path.starts_with(&chunk_folder) || unit(seed ^ me, n) < 0.5 {
                            continue;
                        }
                        tokio::time::sleep(common::race::writer_delay(seed ^ me, n)).await;
                        let url = format!("{}/upload/storage/v1/b/snapshots/o?uploadType=media&name={key}", proxy.url);
                        let status = client.post(url).body(key.to_owned()).send().await.unwrap().status();
                        assert!(status.is_success(), "upload {key}: {status}");
                        uploads.fetch_add(1, Ordering::Relaxed);
                        committed.lock().unwrap().insert(key.to_owned());
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
    if std::env::var_os("GC_RACE_BINARY").is_none() {
        // This build's binary (another one, measured by hand, may be older than the schemas).
        common::schemas::check_report(&report);
    }

    let committed = committed.lock().unwrap().clone();
    let uploads = uploads.load(Ordering::Relaxed);
    let race = Race { report: &report, committed: &committed, uploads, keys: &keys, condition: "precondition" };
    assert_race(&rt, bucket.as_ref(), &proxy, &race);
}
