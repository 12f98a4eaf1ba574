//! Writers racing `--execute` on the remote stores (spec 9.1), through real HTTP, one test
//! per store over the same race: `gs://` on fake-gcs-server behind `common::gcs_proxy`,
//! which enforces the delete preconditions the emulator ignores, and `az://` on Azurite behind
//! the same proxy in recording mode (Azurite enforces `If-Match` itself). Writer tasks watch
//! what the collector lists and re-reads (its list pages and HEADs through the proxy) and
//! upload the chunk again 0 to 20 ms later, anywhere between the listing and the delete, the
//! window the listed version guards (spec 10.1). Every chunk a writer committed must survive,
//! and every DELETE must carry the condition of a version the collector listed or read.
//! Seeded, bounded; no timing asserted.
//!
//! Each test is ignored unless its server's variable was set at build time (`scripts/test`
//! sets them).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{TimeDelta, Utc};
use gc_kit::Ageing;
use gc_kit::mix::unit;
use gc_partition::ids::ChunkId;
use gc_partition::locations::Location;
use gc_partition::store::{StoreOptions, Stores};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use common::gcs_proxy::GcsProxy;
use common::race::{Race, assert_race, start_collector, writer_delay};
use common::{AZURITE_ACCOUNT, Backend, S3_TURN, az_env, azurite_stores, empty_root, runtime};

const CHUNKS: u64 = 300;
const WRITERS: u64 = 4;

#[test]
#[cfg_attr(not(gc_test_gcs), ignore = "no test server: scripts/test starts fake-gcs-server")]
fn writers_racing_execute_lose_no_chunk_on_gcs() {
    writers_racing_execute_lose_no_chunk(Remote::Gcs, 22);
}

#[test]
#[cfg_attr(not(gc_test_az), ignore = "no test server: scripts/test starts Azurite")]
fn writers_racing_execute_lose_no_chunk_on_azure() {
    writers_racing_execute_lose_no_chunk(Remote::Azure, 23);
}

#[derive(Clone, Copy)]
enum Remote {
    Gcs,
    Azure,
}

/// A store behind the proxy: its URL, the environment the collector and the writers use,
/// the stores (aged through the emulator's files) and how the proxy names a chunk's path.
struct Raced {
    url: &'static str,
    env: Vec<(String, String)>,
    stores: Stores,
    proxy: Arc<GcsProxy>,
    /// The proxy's path of the chunk folder, up to and including the `/` before a key's
    /// fan-out directory.
    chunk_folder: String,
    /// The proxy's path of the bucket, up to the key.
    bucket_path: String,
    condition: &'static str,
    /// Keeps the GCS service-account file for the run.
    _dir: tempfile::TempDir,
}

impl Remote {
    fn start(self, rt: &tokio::runtime::Runtime, location: &Location) -> Raced {
        let dir = tempfile::tempdir().unwrap();
        match self {
            Remote::Gcs => {
                let Backend::Gcs { endpoint, root, .. } = Backend::gcs() else { unreachable!() };
                empty_root(&root);
                let proxy = GcsProxy::start(rt, &endpoint);
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
                // Written straight to the emulator and aged there.
                let stores = Stores::from_url_and_env("gs://", StoreOptions::default(), env.clone()).unwrap();
                let stores = gc_kit::fake_gcs::test_server_stores(stores, root, &endpoint);
                Raced {
                    url: "gs://",
                    env,
                    stores,
                    proxy: Arc::new(proxy),
                    chunk_folder: format!("/snapshots/{}/", location.prefix()),
                    bucket_path: "/snapshots/".to_owned(),
                    condition: "precondition",
                    _dir: dir,
                }
            }
            Remote::Azure => {
                let Backend::Az { endpoint, root, .. } = Backend::az() else { unreachable!() };
                let upstream = endpoint.trim_end_matches(&format!("/{AZURITE_ACCOUNT}")).to_owned();
                let proxy = GcsProxy::start_recording(rt, &upstream);
                let env = az_env(&format!("{}/{AZURITE_ACCOUNT}", proxy.url));
                // An empty server (straight, not through the proxy); then written and aged
                // through the proxy.
                azurite_stores(&root, &az_env(&endpoint));
                let stores = Stores::from_url_and_env("az://", StoreOptions::default(), env.clone()).unwrap();
                let stores = gc_kit::azurite::test_server_stores(stores, root, &env).unwrap();
                Raced {
                    url: "az://",
                    env,
                    stores,
                    proxy: Arc::new(proxy),
                    chunk_folder: format!("/{AZURITE_ACCOUNT}/snapshots/{}/", location.prefix()),
                    bucket_path: format!("/{AZURITE_ACCOUNT}/snapshots/"),
                    condition: "If-Match",
                    _dir: dir,
                }
            }
        }
    }

    /// Uploads `key` again as a writer does. On GCS, a JSON-API upload through the proxy,
    /// which orders it against the deletes it checks; on Azure, through object_store (the
    /// proxy records, Azurite enforces).
    async fn upload(self, raced: &WriterSide, key: &str) {
        match self {
            Remote::Gcs => {
                let url = format!("{}/upload/storage/v1/b/snapshots/o?uploadType=media&name={key}", raced.proxy.url);
                let status = raced.client.post(url).body(key.to_owned()).send().await.unwrap().status();
                assert!(status.is_success(), "upload {key}: {status}");
            }
            Remote::Azure => {
                raced.bucket.put(&ObjectPath::from(key), key.to_owned().into()).await.unwrap();
            }
        }
    }
}

/// What every writer task shares.
struct WriterSide {
    proxy: Arc<GcsProxy>,
    bucket: Arc<dyn ObjectStore>,
    client: reqwest::Client,
    chunk_folder: String,
    bucket_path: String,
    done: AtomicBool,
    committed: Mutex<BTreeSet<String>>,
    uploads: AtomicU64,
}

fn writers_racing_execute_lose_no_chunk(remote: Remote, seed: u64) {
    let _turn = S3_TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let rt = runtime();
    let location = Location::new("snapshots", "partitions/p1/chunks").unwrap();
    let raced = remote.start(&rt, &location);
    raced.stores.create_bucket("snapshots").unwrap();
    let keys: Vec<String> = (0..CHUNKS)
        .map(|n| {
            let id: [u8; 32] = std::array::from_fn(|i| (unit(seed, n * 32 + i as u64) * 256.0) as u8);
            location.chunk_key(&ChunkId(id))
        })
        .collect();
    let bucket = raced.stores.bucket("snapshots").unwrap();
    let old = Utc::now() - TimeDelta::days(3);
    rt.block_on(async {
        for key in &keys {
            bucket.put(&ObjectPath::from(key.as_str()), key.clone().into()).await.unwrap();
            raced.stores.set_last_modified("snapshots", key, old).unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let child = start_collector(dir.path(), raced.url, &raced.env);

    // Writers: a chunk the collector just listed or re-read is uploaded again, half the
    // time, 0 to 20 ms later.
    let side = Arc::new(WriterSide {
        proxy: Arc::clone(&raced.proxy),
        bucket: Arc::clone(&bucket),
        client: reqwest::Client::new(),
        chunk_folder: raced.chunk_folder.clone(),
        bucket_path: raced.bucket_path.clone(),
        done: AtomicBool::new(false),
        committed: Mutex::new(BTreeSet::new()),
        uploads: AtomicU64::new(0),
    });
    let writers: Vec<_> = (0..WRITERS).map(|me| rt.spawn(write_behind(remote, Arc::clone(&side), seed ^ me))).collect();
    let output = child.wait_with_output().unwrap();
    side.done.store(true, Ordering::Relaxed);
    for writer in writers {
        rt.block_on(writer).unwrap();
    }
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    if std::env::var_os("GC_RACE_BINARY").is_none() {
        // This build's binary (another one, measured by hand, may be older than the schemas).
        common::schemas::check_report(&report);
    }

    let committed = side.committed.lock().unwrap().clone();
    let uploads = side.uploads.load(Ordering::Relaxed);
    let race = Race { report: &report, committed: &committed, uploads, keys: &keys, condition: raced.condition };
    assert_race(&rt, bucket.as_ref(), &raced.proxy, &race);
}

/// One writer: takes the paths the collector read through the proxy and uploads the chunks
/// among them again, half the time, after [`writer_delay`].
async fn write_behind(remote: Remote, side: Arc<WriterSide>, seed: u64) {
    let mut n = 0u64;
    while !side.done.load(Ordering::Relaxed) {
        let read = side.proxy.take_read();
        if read.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            continue;
        }
        for path in read {
            n += 1;
            if !path.starts_with(&side.chunk_folder) || unit(seed, n) < 0.5 {
                continue;
            }
            let Some(key) = path.strip_prefix(&side.bucket_path) else { continue };
            tokio::time::sleep(writer_delay(seed, n)).await;
            remote.upload(&side, key).await;
            side.uploads.fetch_add(1, Ordering::Relaxed);
            side.committed.lock().unwrap().insert(key.to_owned());
        }
    }
}
