//! The `gen://` store's raw listing rate (objects/s through `ObjectStore::list`), on one and
//! two threads: it must outrun the collector, or a scale run measures the generator.
//!
//! `cargo bench --bench gen_store`. `GEN_BENCH_CHUNKS` (default 2,560,000: 10,000 objects
//! per `<hh>` directory) sets the partition's size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use gc_kit::generated::Generated;
use object_store::ObjectStore;
use object_store::path::Path;

fn chunks() -> u64 {
    std::env::var("GEN_BENCH_CHUNKS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_560_000)
}

/// Lists `dirs` of the legacy location on a runtime of `threads` workers, one task per
/// directory, and returns how many objects came back.
fn list_dirs(runtime: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>, dirs: &[Path]) -> u64 {
    runtime.block_on(async {
        let tasks: Vec<_> = dirs
            .iter()
            .map(|dir| {
                let store = Arc::clone(store);
                let dir = dir.clone();
                tokio::spawn(async move {
                    store.list(Some(&dir)).fold(0u64, |n, m| async move { n + u64::from(m.is_ok()) }).await
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        total
    })
}

fn listing(c: &mut Criterion) {
    let chunks = chunks();
    let url = format!("gen://?chunks={chunks}&referenced=0.5&young=0.05&seed=1&snapshots=100");
    let generated = Arc::new(Generated::from_url(&url).unwrap());
    let store: Arc<dyn ObjectStore> = Arc::new(generated.bucket("snapshots"));
    let root = generated.locations()[0].prefix().to_owned();
    let dirs: Vec<Path> = (0..16u8).map(|d| Path::from(format!("{root}/{d:02x}"))).collect();
    let per_16_dirs = chunks / 256 * 16;
    let mut g = c.benchmark_group("gen_store_list");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(per_16_dirs));
    for threads in [1, 2] {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).build().unwrap();
        g.bench_function(format!("16_dirs_{threads}_threads"), |b| {
            b.iter(|| assert_eq!(list_dirs(&runtime, &store, &dirs), per_16_dirs));
        });
    }
    g.finish();
}

criterion_group!(benches, listing);
criterion_main!(benches);
