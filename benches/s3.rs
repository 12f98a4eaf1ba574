//! Listing, deciding and deleting against the `s3s-fs` server `scripts/test` starts
//! (`GC_TEST_S3_ENDPOINT`, `GC_TEST_S3_ROOT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
//! Built without `GC_TEST_S3_ENDPOINT` (build.rs: cfg `gc_test_s3`), `cargo bench` fails
//! and the single run of `cargo test --all-targets` says it is ignored. The server root is emptied first
//! (only a root with the `.gc-test-s3-root` marker). See BENCHMARKS.md, section S3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use criterion::{Criterion, criterion_group, criterion_main};
use gc_kit::Ageing;
use gc_kit::synth::{SynthConfig, synthesize};
use gc_partition::cli::Args;
use gc_partition::config::Config;
use gc_partition::gc::{self, Progress, Stop};
use gc_partition::store::{StoreOptions, Stores};

struct Server {
    root: PathBuf,
    env: Vec<(String, String)>,
}

/// The server, or `None` (saying so) when this bench was built without it and runs once as
/// a test; `cargo bench` without it fails.
fn server(full: bool) -> Option<Server> {
    if !cfg!(gc_test_s3) {
        assert!(!full, "benches/s3 was built without GC_TEST_S3_ENDPOINT: start s3s-fs (BENCHMARKS.md, S3)");
        eprintln!("ignored: benches/s3 was built without GC_TEST_S3_ENDPOINT (scripts/test sets it)");
        return None;
    }
    let endpoint = std::env::var("GC_TEST_S3_ENDPOINT").expect("GC_TEST_S3_ENDPOINT, set at build time");
    let root = PathBuf::from(std::env::var("GC_TEST_S3_ROOT").expect("GC_TEST_S3_ROOT"));
    assert!(root.join(".gc-test-s3-root").exists(), "{} is not a test server root", root.display());
    let env = vec![
        ("AWS_ENDPOINT".to_owned(), endpoint),
        ("AWS_ACCESS_KEY_ID".to_owned(), std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY")),
        ("AWS_ALLOW_HTTP".to_owned(), "true".to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
    ];
    Some(Server { root, env })
}

fn empty_root(root: &Path) {
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == ".gc-test-s3-root" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(entry.path()).unwrap();
        } else {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
}

fn stores(server: &Server) -> Stores {
    Stores::from_url_and_env("s3://", StoreOptions::default(), server.env.clone())
        .unwrap()
        .with_backdate_root(server.root.clone())
}

/// A fresh partition: `garbage` old unreferenced chunks among `referenced` live ones.
fn synth(rt: &tokio::runtime::Runtime, server: &Server, live: &Path, referenced: u64, garbage: u64) {
    empty_root(&server.root);
    let config = SynthConfig {
        snapshots: 8,
        referenced_ids: referenced,
        garbage_chunks: garbage,
        young_chunks: referenced / 20,
        foreign_objects: 10,
        live_set_path: Some(live.to_owned()),
        ..SynthConfig::default()
    };
    rt.block_on(synthesize(&stores(server), &config)).unwrap();
}

fn run_gc(rt: &tokio::runtime::Runtime, server: &Server, live: &Path, extra: &[&str]) -> gc_partition::report::Report {
    let live = live.to_str().unwrap();
    let mut argv = vec!["gc_partition", "--partition", "p1", "--live-snapshots", live, "--cutoff", "7d"];
    argv.extend(["--store", "s3://", "--bloom-seed", "1"]);
    argv.extend_from_slice(extra);
    let config = Config::from_args(&Args::try_parse_from(argv).unwrap(), chrono::Utc::now()).unwrap();
    let report = rt.block_on(gc::run(&stores(server), &config, &Stop::default(), &Progress::default()));
    assert_eq!(report.exit_code, 0, "{:?}", report.error);
    report
}

const LISTED: &str = "partitions/p1/chunks";

async fn list_via_object_store(stores: &Stores) -> usize {
    use futures::{StreamExt, TryStreamExt};
    let store = stores.bucket("snapshots").unwrap();
    let top = store.list_with_delimiter(Some(&object_store::path::Path::from(LISTED))).await.unwrap();
    let dirs = top.common_prefixes.into_iter().map(|dir| {
        let store = std::sync::Arc::clone(&store);
        async move { store.list(Some(&dir)).try_collect::<Vec<_>>().await.unwrap().len() }
    });
    top.objects.len() + futures::stream::iter(dirs).buffer_unordered(16).collect::<Vec<_>>().await.iter().sum::<usize>()
}

async fn list_raw(stores: &Stores) -> usize {
    use futures::StreamExt;
    let lister = stores.raw_lister("snapshots").unwrap().unwrap();
    let (mut objects, mut groups) = (0, Vec::new());
    let mut pages = lister.pages(&format!("{LISTED}/"), true);
    while let Some(page) = pages.next().await.unwrap() {
        objects += page.objects.len();
        groups.extend(page.common_prefixes);
    }
    let dirs = groups.into_iter().map(|group| {
        let lister = lister.clone();
        async move {
            let (mut pages, mut n) = (lister.pages(&group, false), 0);
            while let Some(page) = pages.next().await.unwrap() {
                n += page.objects.len();
            }
            n
        }
    });
    objects + futures::stream::iter(dirs).buffer_unordered(16).collect::<Vec<_>>().await.iter().sum::<usize>()
}

fn bench_s3(c: &mut Criterion) {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs each bench once, small.
    let full = std::env::args().any(|a| a == "--bench");
    let Some(server) = server(full) else { return };
    let (referenced, garbage) = if full { (8_000, 2_000) } else { (300, 100) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.txt");

    let mut group = c.benchmark_group("s3");
    group.sample_size(10).measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(1));

    synth(&rt, &server, &live, referenced, garbage);
    let name = format!("dry_run_list_and_decide_{}_chunks", referenced + garbage + referenced / 20);
    group.bench_function(name, |b| b.iter(|| run_gc(&rt, &server, &live, &[])));

    // The listing alone, both ways over the same loop (issue 22): the legacy location's
    // top level, then its fan-out directories 16 at a time, counting objects; through the
    // bucket's `object_store` client (the listing before issue 22) and through the raw S3
    // pages the listing uses now.
    let stores = stores(&server);
    let expected = rt.block_on(list_via_object_store(&stores));
    assert_eq!(rt.block_on(list_raw(&stores)), expected, "both listings see the same objects");
    group.bench_function(format!("list_object_store_{expected}_objects"), |b| {
        b.iter(|| rt.block_on(list_via_object_store(&stores)))
    });
    group.bench_function(format!("list_raw_pages_{expected}_objects"), |b| b.iter(|| rt.block_on(list_raw(&stores))));

    // Deleting: each sample gets a fresh partition (untimed) and times only the execute
    // stage (batched re-reads and bulk deletes) as the report measures it.
    let name = format!("execute_{garbage}_deletes");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                synth(&rt, &server, &live, referenced, garbage);
                let report = run_gc(&rt, &server, &live, &["--execute"]);
                assert_eq!(report.deleted, report.planned_deletes);
                total += Duration::from_millis(report.durations_ms["execute"]);
            }
            total
        })
    });
    group.finish();
    empty_root(&server.root);
}

criterion_group!(benches, bench_s3);
criterion_main!(benches);
