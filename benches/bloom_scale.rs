//! The referenced-id filter at scale, one filter against 256 shards by first id byte
//! (`RefFilter::with_shards`): insert rate on two threads (batches of 250k ids, as manifests
//! arrive), probe rate of absent ids in random order and in `<hh>` order (as a directory
//! listing probes), and the measured false-positive rate.
//!
//! `cargo bench --bench bloom_scale`; `BLOOM_SCALE_IDS=100000000` (or 1000000000) for the big
//! sizes. The filter is filled once per layout to the size (ids generated on the fly, never
//! held: the fill time and the false-positive rate over 10M absent ids are printed), then each
//! sample probes (then inserts) 1M more ids; the inserts come last, as they load the filter
//! past its size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gc_partition::bloom::{RefFilter, SHARDS};
use rayon::prelude::*;

const FPR: f64 = 0.001;
const BATCH: u64 = 250_000;
const SAMPLE_OPS: u64 = 1_000_000;
const MEMBERS: u64 = 1;
const ABSENT: u64 = 2;
const EXTRA: u64 = 3;

fn size() -> u64 {
    std::env::var("BLOOM_SCALE_IDS").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(4_194_304)
}

use gc_partition::ids::splitmix64 as mix;

/// Id number `i` of family `salt`: uniform bytes, as SHA-256 digests are.
fn id(salt: u64, i: u64) -> [u8; 32] {
    let mut id = [0u8; 32];
    for (j, word) in id.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&mix(mix(salt << 8 | j as u64) ^ i).to_le_bytes());
    }
    id
}

fn batch(salt: u64, start: u64, len: u64) -> Vec<[u8; 32]> {
    (start..start + len).map(|i| id(salt, i)).collect()
}

/// Absent ids in `<hh>` order: the first byte runs 00..ff, the rest random.
fn hh_ordered(len: u64) -> Vec<[u8; 32]> {
    (0..len)
        .map(|i| {
            let mut id = id(ABSENT, u64::MAX / 2 + i);
            id[0] = (i * SHARDS as u64 / len) as u8;
            id
        })
        .collect()
}

fn fill(filter: &RefFilter, pool: &rayon::ThreadPool, n: u64) -> Duration {
    let started = Instant::now();
    pool.install(|| {
        (0..n.div_ceil(BATCH)).into_par_iter().for_each(|b| {
            let start = b * BATCH;
            filter.insert_all(&batch(MEMBERS, start, BATCH.min(n - start)));
        })
    });
    started.elapsed()
}

fn measured_fpr(filter: &RefFilter, pool: &rayon::ThreadPool) -> f64 {
    const PROBES: u64 = 10_000_000;
    let positives: u64 = pool.install(|| {
        (0..PROBES / BATCH)
            .into_par_iter()
            .map(|b| batch(ABSENT, b * BATCH, BATCH).iter().filter(|id| filter.contains(id)).count() as u64)
            .sum()
    });
    positives as f64 / PROBES as f64
}

fn bloom_scale(c: &mut Criterion) {
    let n = size();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let absent = batch(ABSENT, 1 << 40, SAMPLE_OPS);
    let ordered = hh_ordered(SAMPLE_OPS);
    let mut group = c.benchmark_group(format!("bloom_scale_{n}"));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SAMPLE_OPS));
    for shards in [1, SHARDS] {
        let filter = RefFilter::with_shards(n, FPR, 9, shards);
        let took = fill(&filter, &pool, n);
        let fpr = measured_fpr(&filter, &pool);
        eprintln!(
            "bloom_scale: {shards} shard(s), {n} ids: {:.1} MiB, fill {:.2} s ({:.2} M ids/s on 2 threads, ids generated on the fly), measured FPR {fpr:.6} (expected {:.6})",
            filter.num_bits() as f64 / 8.0 / 1048576.0,
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64() / 1e6,
            filter.expected_fpr(),
        );
        group.bench_function(format!("probe_absent_random/{shards}_shards"), |b| {
            b.iter(|| absent.iter().filter(|id| filter.contains(black_box(id))).count());
        });
        group.bench_function(format!("probe_absent_hh_order/{shards}_shards"), |b| {
            b.iter(|| ordered.iter().filter(|id| filter.contains(black_box(id))).count());
        });
        // Last: these inserts load the filter past `n`.
        let mut next_extra = 0u64;
        group.bench_function(format!("insert_2_threads/{shards}_shards"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ids: Vec<Vec<[u8; 32]>> =
                        (0..SAMPLE_OPS / BATCH).map(|k| batch(EXTRA, next_extra + k * BATCH, BATCH)).collect();
                    next_extra += SAMPLE_OPS;
                    let started = Instant::now();
                    pool.install(|| ids.par_iter().for_each(|ids| filter.insert_all(ids)));
                    total += started.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bloom_scale);
criterion_main!(benches);
