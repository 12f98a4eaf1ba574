//! Remote-store figures (issue 12): the listing and the deletes over a simulated GCS-like or
//! S3-like store (`LatencyStore` over `memory://`), against the bound the latency and the
//! concurrency set, and a run against a store that throttles above N requests per second.
//!
//! Not a criterion bench: each point is one run of seconds, timed by the store's own
//! latencies, and printed as a table row.
//!
//! ```text
//! cargo bench --bench remote -- list  gcs|s3 [CONCURRENCY...]
//! cargo bench --bench remote -- delete gcs|s3 [CONCURRENCY...]
//! cargo bench --bench remote -- throttle gcs|s3 RATE CONCURRENCY KEYS
//! scripts/test --run cargo bench --bench remote -- conditional gcs|s3v|s3|az [CONCURRENCY...]
//! ```
//!
//! `conditional` runs the production delete path of each remote store against its test
//! server behind the same latency model (see `remote/conditional.rs`); it needs the servers'
//! variables `scripts/test` sets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use gc_kit::Ageing;
use gc_kit::WithLatency;
use gc_kit::latency::LatencyProfile;
use gc_partition::execute::{ExecuteStats, Executor, Reread};
use gc_partition::ids::ChunkId;
use gc_partition::listing::{ListedChunk, list_all};
use gc_partition::locations::Location;
use gc_partition::store::{RequestCounts, Stores};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio_util::sync::CancellationToken;

#[path = "remote/conditional.rs"]
mod conditional;

const DIRS: u64 = 256;

fn id(n: u64) -> ChunkId {
    // Spread over the 256 fan-out directories: the first byte is n's low byte.
    let mut id = [0u8; 32];
    id[0] = n as u8;
    id[1..9].copy_from_slice(&n.to_be_bytes());
    ChunkId(id)
}

fn profile(name: &str) -> LatencyProfile {
    LatencyProfile::parse(name).expect("profile")
}

async fn populate(bucket: &Arc<dyn ObjectStore>, location: &Location, range: std::ops::Range<u64>) {
    let payload = PutPayload::from_static(b"chunk");
    for n in range {
        bucket.put(&Path::from(location.chunk_key(&id(n))), payload.clone()).await.unwrap();
    }
}

fn stores(spec: &str) -> (Stores, Location) {
    let stores = Stores::memory().with_latency(profile(spec));
    stores.create_bucket("chunks").unwrap();
    (stores, Location::new("chunks", "p1").unwrap())
}

async fn list_point(spec: &str, objects: u64, concurrency: usize) {
    let (stores, location) = stores(spec);
    populate(&stores.bucket("chunks").unwrap(), &location, 0..objects).await;
    let p = profile(spec);
    let before = stores.requests();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send((0, location)).unwrap();
    drop(tx);
    let t = Instant::now();
    let listing = list_all(stores.clone(), rx, concurrency, Arc::new(AtomicU64::new(0))).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(listing.chunk_count(), objects);
    let pages = stores.requests().since(before).list_pages;
    // The bound: directories listed at once (at most 256) / page time x objects per page,
    // plus the top-level listing that finds the directories.
    let per_page = (objects / DIRS).min(1000) as f64;
    let pages_per_dir = (objects / DIRS).div_ceil(1000).max(1) as f64;
    let waves = (DIRS as f64 / concurrency.min(DIRS as usize) as f64).ceil();
    let bound_secs = p.list_page.as_secs_f64() * (1.0 + waves * pages_per_dir);
    let bound = objects as f64 / bound_secs;
    let rate = objects as f64 / secs;
    println!(
        "list   {:<4} conc {concurrency:>3}: {objects:>7} objects, {pages:>4} pages, {secs:>7.3} s, {rate:>10.0} obj/s, bound {bound:>10.0} obj/s ({:.0}%), ({per_page} obj/page)",
        p.name,
        100.0 * rate / bound
    );
}

fn planned(objects: u64) -> Vec<(u32, ListedChunk)> {
    (0..objects)
        .map(|n| {
            (0, ListedChunk { id: id(n).0, size: 5, last_modified_ms: 0, version: gc_partition::store::Version::NONE })
        })
        .collect()
}

/// Executes the planned deletes of `chunks`, every one of them old (a cutoff a day ahead).
async fn delete_planned(
    stores: &Stores,
    location: &Location,
    chunks: &[(u32, ListedChunk)],
    concurrency: usize,
    rate: Option<f64>,
) -> ExecuteStats {
    let cutoff_ms = chrono::Utc::now().timestamp_millis() + 86_400_000;
    let stop = CancellationToken::new();
    let executor = Executor {
        stores,
        concurrency,
        max_delete_rate: rate,
        stop: &stop,
        progress: Arc::new(AtomicU64::new(0)),
        deleted: None,
    };
    executor
        .execute(std::slice::from_ref(location), chunks.iter().copied(), Reread::OlderThan { cutoff_ms })
        .await
        .unwrap()
}

async fn delete_point(spec: &str, keys: u64, concurrency: usize, rate: Option<f64>) -> (f64, RequestCounts) {
    let (stores, location) = stores(spec);
    let bucket = stores.bucket("chunks").unwrap();
    populate(&bucket, &location, 0..keys + 100).await;
    let chunks = planned(keys);
    let before = stores.requests();
    let t = Instant::now();
    let stats = delete_planned(&stores, &location, &chunks, concurrency, rate).await;
    let secs = t.elapsed().as_secs_f64();
    let requests = stores.requests().since(before);
    assert_eq!(stats.deleted, keys, "failures: {:?}", stats.failures.first());
    assert!(stats.failures.is_empty());
    // Nothing beyond the plan was touched: the 100 extra chunks are all still there.
    for n in keys..keys + 100 {
        bucket.head(&Path::from(location.chunk_key(&id(n)))).await.expect("an unplanned chunk is gone");
    }
    (secs, requests)
}

async fn delete_row(spec: &str, concurrency: usize) {
    let p = profile(spec);
    let keys = (concurrency as u64 * 40).clamp(200, 10_000);
    let (secs, r) = delete_point(spec, keys, concurrency, None).await;
    let rate = keys as f64 / secs;
    // The bound: `concurrency` requests always in flight, each key costing one HEAD and its
    // share of a delete request.
    let per_delete = p.bulk_keys.map_or(1.0, |keys| keys as f64);
    let delete_secs = if p.bulk_keys.is_some() { p.bulk_delete } else { p.delete }.as_secs_f64();
    let bound = concurrency as f64 / (p.head.as_secs_f64() + delete_secs / per_delete);
    println!(
        "delete {:<4} conc {concurrency:>3}: {keys:>6} keys, {:>5} heads, {:>5} delete calls, {secs:>7.3} s, {rate:>8.0} keys/s, bound {bound:>8.0} keys/s ({:.0}%)",
        p.name,
        r.head,
        r.delete_calls,
        100.0 * rate / bound
    );
}

async fn throttle_run(spec: &str, limit: f64, concurrency: usize, keys: u64) {
    let spec = format!("{spec},throttle={limit}");
    let (stores, location) = stores(&spec);
    let bucket = stores.bucket("chunks").unwrap();
    populate(&bucket, &location, 0..keys + 100).await;
    let chunks = planned(keys);
    let samples = Arc::new(std::sync::Mutex::new(vec![(0.0, stores.requests())]));
    let sampler = {
        let (stores, samples) = (stores.clone(), Arc::clone(&samples));
        tokio::spawn(async move {
            let t = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                samples.lock().unwrap().push((t.elapsed().as_secs_f64(), stores.requests()));
            }
        })
    };
    let t = Instant::now();
    let stats = delete_planned(&stores, &location, &chunks, concurrency, None).await;
    let secs = t.elapsed().as_secs_f64();
    sampler.abort();
    let total = stores.requests();
    let mut left = 0;
    for n in 0..keys + 100 {
        let present = bucket.head(&Path::from(location.chunk_key(&id(n)))).await.is_ok();
        if n < keys && present {
            left += 1;
        }
        assert!(n < keys || present, "an unplanned chunk is gone");
    }
    let kept = 100;
    let answered = |c: &RequestCounts| (c.head + c.delete_calls) as f64;
    let all = answered(&total);
    println!(
        "throttle {spec} conc {concurrency}: {keys} keys in {secs:.1} s: deleted {}, failures {}, left {left}, unplanned kept {kept}/100",
        stats.deleted,
        stats.failures.len()
    );
    println!(
        "  requests {} (heads {}, delete calls {}), throttled answers {}, retries {}: {:.0} req/s overall, {:.0} accepted req/s, {:.0} keys/s",
        all,
        total.head,
        total.delete_calls,
        total.throttled,
        stores.retries(),
        all / secs,
        (all - total.throttled as f64) / secs,
        keys as f64 / secs
    );
    // The settled rate: requests the store accepted per second over the second half.
    let samples = samples.lock().unwrap().clone();
    let (t0, c0) = samples[samples.len() / 2];
    let (t1, c1) = samples[samples.len() - 1];
    let accepted = |c: &RequestCounts| answered(c) - c.throttled as f64;
    let settled = (accepted(&c1) - accepted(&c0)) / (t1 - t0);
    println!(
        "  settled (second half, {:.0}-{:.0} s): {settled:.0} accepted req/s = {:.0}% of the limit {limit}",
        t0,
        t1,
        100.0 * settled / limit
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let concurrencies = |from: usize| -> Vec<usize> {
        let given: Vec<usize> = args[from..].iter().filter_map(|a| a.parse().ok()).collect();
        if given.is_empty() { vec![1, 4, 16, 64, 256] } else { given }
    };
    match args.first().map(String::as_str) {
        Some("list") => {
            for c in concurrencies(2) {
                runtime.block_on(list_point(&args[1], 256_000, c));
            }
        }
        Some("delete") => {
            for c in concurrencies(2) {
                runtime.block_on(delete_row(&args[1], c));
            }
        }
        Some("conditional") => {
            let server = args.get(1).and_then(|name| conditional::Server::parse(name));
            let Some(server) = server else {
                eprintln!("usage: remote conditional gcs|s3v|s3|az [CONC...]");
                return;
            };
            conditional::rows(&runtime, server, &concurrencies(2));
        }
        Some("throttle") => {
            let n = |i: usize| args[i].parse::<u64>().expect("number");
            runtime.block_on(throttle_run(&args[1], n(2) as f64, n(3) as usize, n(4)));
        }
        _ => eprintln!(
            "usage: remote list|delete gcs|s3 [CONC...] | remote throttle gcs|s3 RATE CONC KEYS | remote conditional gcs|s3v|s3|az [CONC...]"
        ),
    }
}
