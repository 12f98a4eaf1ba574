//! The production delete paths of each remote store (spec 10.1) over the latency model: the
//! servers `scripts/test` starts (fake-gcs-server, moto, `s3s-fs`, Azurite), each behind the
//! kit's latency layers (`gc_kit::latency::over_server`), so the collector's own requests
//! run exactly as against the server and are held for the model's time:
//! - `gcs`: one DELETE a chunk conditioned on the listed generation, no re-read;
//! - `s3v` (moto, a versioned bucket): `DeleteObjects` naming each listed `VersionId`;
//! - `s3` (`s3s-fs`, no versions): a HEAD re-read a chunk, then `DeleteObjects`;
//! - `az` (Azurite): Blob Batches of 256 deletes, each with the listed ETag's `If-Match`.
//!
//! Each point lists a fresh bucket of planted chunks (all old), executes their deletes and
//! checks that none is left; it prints keys/s, the bound the model allows at that
//! concurrency, and the requests per deleted chunk. `model off` rows run without the
//! latency layers: the server's own speed, which caps what the model rows can reach.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use gc_kit::latency::{LatencyProfile, over_server};
use gc_partition::listing::{ListedChunk, list_all};
use gc_partition::locations::Location;
use gc_partition::store::{StoreOptions, Stores};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use common::Backend;

/// A server and the delete path the collector takes on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Server {
    Gcs,
    S3Versioned,
    S3,
    Az,
}

impl Server {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gcs" => Some(Self::Gcs),
            "s3v" => Some(Self::S3Versioned),
            "s3" => Some(Self::S3),
            "az" => Some(Self::Az),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Gcs => "gcs",
            Self::S3Versioned => "s3v",
            Self::S3 => "s3",
            Self::Az => "az",
        }
    }

    fn profile(self) -> LatencyProfile {
        match self {
            Self::Gcs => LatencyProfile::gcs(),
            Self::S3Versioned | Self::S3 => LatencyProfile::s3(),
            Self::Az => LatencyProfile::az(),
        }
    }

    /// Keys one delete request carries on this path.
    fn keys_per_request(self) -> u64 {
        match self {
            Self::Gcs => 1,
            Self::S3Versioned | Self::S3 => 1000,
            Self::Az => 256,
        }
    }

    fn keys(self, concurrency: usize) -> u64 {
        match self {
            Self::Gcs | Self::S3 => (concurrency as u64 * 40).clamp(200, 4000),
            Self::S3Versioned | Self::Az => 5000,
        }
    }

    /// Keys per second the model allows at `concurrency` requests in flight: per-key
    /// deletes keep every permit busy; a re-read holds a permit per key and a bulk delete
    /// one per request; batches without a re-read go out in waves of `concurrency`.
    fn bound(self, keys: u64, concurrency: usize) -> f64 {
        let p = self.profile();
        let conc = concurrency as f64;
        match self {
            Self::Gcs => conc / p.delete.as_secs_f64(),
            Self::S3 => conc / (p.head.as_secs_f64() + p.bulk_delete.as_secs_f64() / 1000.0),
            Self::S3Versioned | Self::Az => {
                let batches = keys.div_ceil(self.keys_per_request()) as f64;
                keys as f64 / ((batches / conc).ceil() * p.bulk_delete.as_secs_f64())
            }
        }
    }

    /// A fresh, empty bucket on the server and the stores that reach it.
    async fn fresh_bucket(self, tag: &str) -> (Stores, String) {
        let bucket = format!("bench-{}-{}-{tag}", self.name(), std::process::id());
        let client = reqwest::Client::new();
        let stores = |url: &str, env: Vec<(String, String)>| {
            Stores::from_url_and_env(url, StoreOptions::default(), env).expect("the server's stores")
        };
        match self {
            Self::Gcs => {
                let backend = Backend::gcs();
                let Backend::Gcs { endpoint, root, .. } = &backend else { unreachable!() };
                let made = client
                    .post(format!("{endpoint}/storage/v1/b?project=bench"))
                    .header("content-type", "application/json")
                    .body(serde_json::json!({ "name": bucket }).to_string())
                    .send()
                    .await
                    .expect("fake-gcs-server");
                assert!(made.status().is_success(), "creating bucket {bucket}: {}", made.status());
                // Written through the emulator's JSON API (its XML PUT is refused).
                let stores =
                    gc_kit::fake_gcs::test_server_stores(stores("gs://", backend.env()), root.clone(), endpoint);
                (stores, bucket)
            }
            Self::S3 => {
                let backend = Backend::s3();
                std::fs::create_dir(backend.server_root().expect("root").join(&bucket)).expect("bucket directory");
                (stores("s3://", backend.env()), bucket)
            }
            Self::S3Versioned => {
                let endpoint = common::moto_endpoint();
                let made = client.put(format!("{endpoint}/{bucket}")).send().await.expect("moto");
                assert!(made.status().is_success(), "creating bucket {bucket}: {}", made.status());
                let versioning = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
                let set =
                    client.put(format!("{endpoint}/{bucket}?versioning")).body(versioning).send().await.expect("moto");
                assert!(set.status().is_success(), "versioning {bucket}: {}", set.status());
                (stores("s3://", common::moto_env(&endpoint)), bucket)
            }
            Self::Az => {
                let backend = Backend::az();
                let Backend::Az { root, env, .. } = &backend else { unreachable!() };
                // The kit's Azurite calls block.
                tokio::task::block_in_place(|| {
                    let stores = gc_kit::azurite::test_server_stores(stores("az://", env.clone()), root.clone(), env)
                        .expect("Azurite");
                    gc_kit::azurite::of(&stores).expect("Azurite").create_container(&bucket).expect("container");
                    (stores, bucket)
                })
            }
        }
    }
}

/// One run: `keys` chunks planted, listed and deleted at `concurrency`, with the model or
/// without it.
async fn point(server: Server, keys: u64, concurrency: usize, model: bool) {
    let tag = format!("{concurrency}-{}", if model { "m" } else { "p" });
    let (plain, bucket) = server.fresh_bucket(&tag).await;
    let location = Location::new(&bucket, "partitions/p1/chunks").expect("location");
    let store = plain.bucket(&bucket).expect("bucket");
    futures::stream::iter(0..keys)
        .map(|n| {
            let key = Path::from(location.chunk_key(&super::id(n)));
            let store = Arc::clone(&store);
            async move { store.put(&key, "chunk".into()).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("planting the chunks");
    let stores = if model { over_server(&plain, server.profile()) } else { plain.clone() };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send((0, location.clone())).expect("send");
    drop(tx);
    let listing = list_all(stores.clone(), rx, 4, Arc::new(AtomicU64::new(0))).await.expect("listing");
    assert_eq!(listing.chunk_count(), keys);
    let planned: Vec<(u32, ListedChunk)> = listing.chunks().map(|(_, c)| (0, *c)).collect();
    let before = stores.requests();
    let t = Instant::now();
    let stats = super::delete_planned(&stores, &location, &planned, concurrency, None).await;
    let secs = t.elapsed().as_secs_f64();
    let r = stores.requests().since(before);
    assert_eq!(stats.deleted, keys, "failures: {:?}", stats.failures.first());
    let left: Vec<ObjectMeta> = store.list(None).try_collect().await.expect("listing what is left");
    assert!(left.is_empty(), "{} chunks left", left.len());
    let rate = keys as f64 / secs;
    let per_chunk = (r.head + r.delete_calls) as f64 / stats.deleted as f64;
    let bound = if model {
        let bound = server.bound(keys, concurrency);
        format!("bound {bound:>8.0} keys/s ({:>3.0}%)", 100.0 * rate / bound)
    } else {
        "model off".to_owned()
    };
    println!(
        "conditional {:<3} conc {concurrency:>3}: {keys:>5} keys, {:>5} heads, {:>4} delete requests, {per_chunk:.4} req/chunk, {secs:>7.3} s, {rate:>8.0} keys/s, {bound}",
        server.name(),
        r.head,
        r.delete_calls,
    );
}

/// The rows of `server` at each of `concurrencies`, with the model, then the server alone.
pub fn rows(runtime: &tokio::runtime::Runtime, server: Server, concurrencies: &[usize]) {
    for &concurrency in concurrencies {
        let keys = server.keys(concurrency);
        runtime.block_on(point(server, keys, concurrency, true));
    }
    for &concurrency in concurrencies {
        let keys = server.keys(concurrency);
        runtime.block_on(point(server, keys, concurrency, false));
    }
}
