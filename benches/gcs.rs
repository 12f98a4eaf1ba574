//! Listing, deciding and deleting against fake-gcs-server (`scripts/gcs-server`, started by
//! `scripts/test`; `GC_TEST_GCS_ENDPOINT`, `GC_TEST_GCS_ROOT`), beside a floor measured in the
//! same run: the same listing requests, and a HEAD + DELETE per garbage chunk, issued by a
//! bare `object_store` GCS client at the collector's default concurrency (32).
//! Built without `GC_TEST_GCS_ENDPOINT` (build.rs: cfg `gc_test_gcs`), `cargo bench` fails
//! and the single run of `cargo test --all-targets` says it is ignored. The server root is
//! emptied first (only a root with the `.gc-test-gcs-root` marker). See BENCHMARKS.md, GCS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::{StreamExt, TryStreamExt};
use gc_kit::synth::{SynthConfig, SynthSummary, synthesize};
use gc_partition::cli::Args;
use gc_partition::config::Config;
use gc_partition::gc::{self, Progress, Stop};
use gc_partition::store::{StoreOptions, Stores};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

/// The collector's default `--list-concurrency` and `--delete-concurrency`.
const CONCURRENCY: usize = 32;

struct Server {
    endpoint: String,
    root: PathBuf,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

/// The server, or `None` (saying so) when this bench was built without it and runs once as
/// a test; `cargo bench` without it fails.
fn server(full: bool) -> Option<Server> {
    if !cfg!(gc_test_gcs) {
        assert!(
            !full,
            "benches/gcs was built without GC_TEST_GCS_ENDPOINT: start scripts/gcs-server (BENCHMARKS.md, GCS)"
        );
        eprintln!("ignored: benches/gcs was built without GC_TEST_GCS_ENDPOINT (scripts/test sets it)");
        return None;
    }
    let endpoint = std::env::var("GC_TEST_GCS_ENDPOINT").expect("GC_TEST_GCS_ENDPOINT, set at build time");
    let root = PathBuf::from(std::env::var("GC_TEST_GCS_ROOT").expect("GC_TEST_GCS_ROOT"));
    assert!(root.join(".gc-test-gcs-root").exists(), "{} is not a test server root", root.display());
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("sa.json");
    let json = serde_json::json!({
        "gcs_base_url": endpoint, "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": "",
    });
    std::fs::write(&account, json.to_string()).unwrap();
    let env = vec![
        ("GOOGLE_SERVICE_ACCOUNT".to_owned(), account.display().to_string()),
        ("GOOGLE_BASE_URL".to_owned(), endpoint.clone()),
    ];
    Some(Server { endpoint, root, env, _dir: dir })
}

fn empty_root(root: &Path) {
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == ".gc-test-gcs-root" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(entry.path()).unwrap();
        } else {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
}

/// A bare client of one bucket: no retry layer, no test kit.
fn bare_client(server: &Server, bucket: &str) -> Arc<dyn ObjectStore> {
    let account = &server.env[0].1;
    Arc::new(
        GoogleCloudStorageBuilder::new()
            .with_config(GoogleConfigKey::ServiceAccount, account)
            .with_base_url(&server.endpoint)
            .with_bucket_name(bucket)
            .build()
            .unwrap(),
    )
}

/// A fresh partition: `garbage` old unreferenced chunks among `referenced` live ones.
fn synth(rt: &tokio::runtime::Runtime, server: &Server, live: &Path, referenced: u64, garbage: u64) -> SynthSummary {
    empty_root(&server.root);
    let config = SynthConfig {
        snapshots: 8,
        referenced_ids: referenced,
        garbage_chunks: garbage,
        young_chunks: referenced / 20,
        foreign_objects: 10,
        live_set_path: Some(live.to_owned()),
        record_sets: true,
        ..SynthConfig::default()
    };
    let stores = Stores::from_url_and_env("gs://", StoreOptions::default(), server.env.clone()).unwrap();
    let stores = gc_kit::fake_gcs::test_server_stores(stores, server.root.clone(), &server.endpoint);
    rt.block_on(synthesize(&stores, &config)).unwrap()
}

fn run_gc(rt: &tokio::runtime::Runtime, server: &Server, live: &Path, extra: &[&str]) -> gc_partition::report::Report {
    let live = live.to_str().unwrap();
    let mut argv = vec!["gc_partition", "--partition", "p1", "--live-snapshots", live, "--cutoff", "7d"];
    argv.extend(["--store", "gs://", "--bloom-seed", "1"]);
    argv.extend_from_slice(extra);
    let config = Config::from_args(&Args::try_parse_from(argv).unwrap(), chrono::Utc::now()).unwrap();
    let stores = Stores::from_url_and_env("gs://", StoreOptions::default(), server.env.clone()).unwrap();
    let report = rt.block_on(gc::run(&stores, &config, &Stop::default(), &Progress::default()));
    assert_eq!(report.exit_code, 0, "{:?}", report.error);
    report
}

/// The floor of a dry run: the collector's listing requests (per location, the top level
/// with a delimiter, then each fan-out directory), 32 in flight; no manifests, no decide.
async fn list_floor(server: &Server, summary: &SynthSummary) -> usize {
    let mut dirs = Vec::new();
    let mut listed = 0;
    for location in &summary.locations {
        let store = bare_client(server, location.bucket());
        let top = store.list_with_delimiter(Some(&ObjectPath::from(location.prefix()))).await.unwrap();
        listed += top.objects.len();
        dirs.extend(top.common_prefixes.into_iter().map(|dir| (Arc::clone(&store), dir)));
    }
    let listings = dirs
        .into_iter()
        .map(|(store, dir)| async move { store.list(Some(&dir)).try_collect::<Vec<_>>().await.unwrap().len() });
    listed
        + futures::stream::iter(listings)
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .sum::<usize>()
}

/// The same listing requests as [`list_floor`], as raw JSON-API pages (`Stores::raw_lister`,
/// the listing the collector uses since issue 22).
async fn list_raw(server: &Server, summary: &SynthSummary) -> usize {
    let stores = Stores::from_url_and_env("gs://", StoreOptions::default(), server.env.clone()).unwrap();
    let mut groups = Vec::new();
    let mut listed = 0;
    for location in &summary.locations {
        let lister = stores.raw_lister(location.bucket()).unwrap().unwrap();
        let mut pages = lister.pages(&format!("{}/", location.prefix()), true);
        while let Some(page) = pages.next().await.unwrap() {
            listed += page.objects.len();
            groups.extend(page.common_prefixes.into_iter().map(|group| (lister.clone(), group)));
        }
    }
    let listings = groups.into_iter().map(|(lister, group)| async move {
        let (mut pages, mut n) = (lister.pages(&group, false), 0);
        while let Some(page) = pages.next().await.unwrap() {
            n += page.objects.len();
        }
        n
    });
    listed
        + futures::stream::iter(listings)
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .sum::<usize>()
}

/// The floor of an execute: a HEAD then a DELETE of every garbage chunk, 32 in flight, one
/// client per bucket.
async fn delete_floor(server: &Server, summary: &SynthSummary) -> usize {
    let garbage = &summary.sets.as_ref().unwrap().garbage;
    let clients: std::collections::HashMap<&str, Arc<dyn ObjectStore>> =
        summary.locations.iter().map(|l| (l.bucket(), bare_client(server, l.bucket()))).collect();
    let deletes = garbage.iter().map(|(location, id)| {
        let store = Arc::clone(&clients[location.bucket()]);
        let key = ObjectPath::from(location.chunk_key(id));
        async move {
            store.head(&key).await.unwrap();
            store.delete(&key).await.unwrap();
        }
    });
    futures::stream::iter(deletes).buffer_unordered(CONCURRENCY).collect::<Vec<_>>().await.len()
}

fn bench_gcs(c: &mut Criterion) {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs each bench once, small.
    let full = std::env::args().any(|a| a == "--bench");
    let Some(server) = server(full) else { return };
    // The dry run lists a 2,600-chunk partition; the deletes are timed on a smaller one with
    // as much garbage, since every sample writes its partition anew (at ~80 objects/s).
    let (referenced, garbage, small) = if full { (2_000, 500, 200) } else { (100, 30, 20) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.txt");

    let mut group = c.benchmark_group("gcs");
    group.sample_size(10).measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(1));

    let summary = synth(&rt, &server, &live, referenced, garbage);
    let chunks = summary.chunk_objects();
    group.bench_function(format!("dry_run_{chunks}_chunks"), |b| b.iter(|| run_gc(&rt, &server, &live, &[])));
    group.bench_function(format!("floor_list_{chunks}_chunks"), |b| {
        b.iter(|| assert!(rt.block_on(list_floor(&server, &summary)) as u64 >= chunks))
    });
    let floor = rt.block_on(list_floor(&server, &summary));
    assert_eq!(rt.block_on(list_raw(&server, &summary)), floor, "both listings see the same objects");
    group.bench_function(format!("raw_list_{chunks}_chunks"), |b| {
        b.iter(|| assert_eq!(rt.block_on(list_raw(&server, &summary)), floor))
    });

    // Deleting: each sample gets a fresh partition (untimed) and times only the execute
    // stage (re-reads and deletes) as the report measures it; the floor, its own requests.
    group.bench_function(format!("execute_{garbage}_deletes"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                synth(&rt, &server, &live, small, garbage);
                // 500 of the 700 old chunks are garbage: above the default 50% guard.
                let report = run_gc(&rt, &server, &live, &["--execute", "--max-delete-fraction", "1"]);
                assert_eq!(report.deleted, report.planned_deletes);
                assert_eq!(report.deleted, garbage);
                total += Duration::from_millis(report.durations_ms["execute"]);
            }
            total
        })
    });
    group.bench_function(format!("floor_head_delete_{garbage}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let summary = synth(&rt, &server, &live, small, garbage);
                let start = Instant::now();
                assert_eq!(rt.block_on(delete_floor(&server, &summary)) as u64, garbage);
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
    empty_root(&server.root);
}

criterion_group!(benches, bench_gcs);
criterion_main!(benches);
