//! Criterion benches of the pipeline's CPU stages, each with a `Throughput` so criterion
//! prints rates: legacy index check (GB/s) and one-pass ingest (ids/s), unified manifest
//! decode (ids/s), filter fill on one and two threads (ids/s), `contains` (lookups/s), decide
//! over listed batches (chunks/s), plan writing (records/s).
//!
//! `cargo bench --bench pipeline` (add `-- <filter>` for one group). Timing on a shared
//! machine is noisy: compare medians of several runs, never single figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gc_kit::mix::ids;
use gc_partition::bloom::RefFilter;
use gc_partition::decide::Decider;
use gc_partition::ids::{ChunkId, PartitionId, SnapshotId};
use gc_partition::listing::{Listed, ListedChunk, LocationCounts, PART_CHUNKS};
use gc_partition::locations::Location;
use gc_partition::manifest::legacy;
use gc_partition::manifest::unified::{self, ChunkGroup, UnifiedManifest};
use gc_partition::plan::{PLAN_VERSION, PlanHeader, PlanSpool, write_plan};

const IDS: usize = 1_000_000;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

fn snapshot() -> (SnapshotId, PartitionId) {
    (SnapshotId::parse("snap-1").unwrap(), PartitionId::parse("p1").unwrap())
}

fn legacy_index(c: &mut Criterion) {
    let (s, p) = snapshot();
    let all: Vec<ChunkId> = ids(IDS, 1).into_iter().map(ChunkId).collect();
    let index = legacy::render_index(&all);
    let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let m = legacy::manifest_for_index(&s, &p, &index, at);
    let mut g = c.benchmark_group("legacy_index");
    g.throughput(Throughput::Bytes(index.len() as u64));
    g.bench_function("check_sha256_1M", |b| b.iter(|| legacy::check_index(&m, black_box(&index), "o").unwrap().len()));
    g.throughput(Throughput::Elements(IDS as u64));
    for threads in [1, 2] {
        let pool = pool(threads);
        g.bench_function(format!("ingest_check_and_insert_1M_{threads}t"), |b| {
            b.iter_batched(
                || RefFilter::new(IDS as u64, 0.001, 7),
                |filter| {
                    pool.install(|| {
                        let sink = |ids: &[[u8; 32]]| filter.insert_all(ids);
                        legacy::check_index_streaming(&m, black_box(&index), "o", &sink).unwrap();
                    });
                    filter
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
    // Several manifests at once, as the stage runs them: indexes of 125k ids over the pool,
    // 1M ids in all (the filter fits the L2 caches) and 10M (17 MiB of filter: it does not).
    for total in [IDS, 10 * IDS] {
        ingest_files(c, total, 125_000);
    }
}

/// Ingests `total` ids from indexes of `per_file` ids each, files in parallel over a pool of
/// one and of two threads, into a filter sized for `total`.
fn ingest_files(c: &mut Criterion, total: usize, per_file: usize) {
    let (s, p) = snapshot();
    let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let all: Vec<ChunkId> = ids(total, 5).into_iter().map(ChunkId).collect();
    let parts: Vec<(legacy::LegacyManifest, Vec<u8>)> = all
        .chunks(per_file)
        .map(|part| {
            let index = legacy::render_index(part);
            (legacy::manifest_for_index(&s, &p, &index, at), index)
        })
        .collect();
    drop(all);
    let mut g = c.benchmark_group("legacy_index");
    g.throughput(Throughput::Elements(total as u64));
    for threads in [1, 2] {
        let pool = pool(threads);
        let name = format!("ingest_{}_files_{}M_{threads}t", parts.len(), total / 1_000_000);
        g.bench_function(name, |b| {
            b.iter_batched(
                || RefFilter::new(total as u64, 0.001, 7),
                |filter| {
                    pool.install(|| {
                        use rayon::prelude::*;
                        parts.par_iter().for_each(|(m, index)| {
                            let sink = |ids: &[[u8; 32]]| filter.insert_all(ids);
                            legacy::check_index_streaming(m, black_box(index), "o", &sink).unwrap();
                        })
                    });
                    filter
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn unified_decode(c: &mut Criterion) {
    let (s, p) = snapshot();
    let raw: Vec<u8> = ids(IDS, 2).concat();
    let groups = raw.chunks(32 * 65_536).map(|part| ChunkGroup::from_bytes(0, Bytes::copy_from_slice(part)).unwrap());
    let manifest = UnifiedManifest {
        snapshot_id: s.clone(),
        partition_id: p.clone(),
        created_unix_ms: 0,
        locations: vec![Location::new("chunks-b", "tier1/p1").unwrap()],
        groups: groups.collect(),
    };
    let bytes = Bytes::from(unified::render(&manifest));
    let mut g = c.benchmark_group("unified_decode");
    g.throughput(Throughput::Elements(IDS as u64));
    g.bench_function("parse_1M", |b| b.iter(|| unified::parse(bytes.clone(), "o", &s, &p).unwrap().groups.len()));
    g.finish();
}

fn filter(c: &mut Criterion) {
    let members = ids(IDS, 3);
    let absent = ids(IDS, 4);
    let mut g = c.benchmark_group("filter");
    g.throughput(Throughput::Elements(IDS as u64));
    for threads in [1, 2] {
        let pool = pool(threads);
        g.bench_function(format!("fill_1M_fpr1e-3_{threads}t"), |b| {
            b.iter_batched(
                || RefFilter::new(IDS as u64, 0.001, 7),
                |filter| {
                    pool.install(|| filter.insert_all(black_box(&members)));
                    filter
                },
                BatchSize::LargeInput,
            )
        });
    }
    // 10M ids: the filter (17 MiB) no longer fits the caches.
    let many = ids(10 * IDS, 6);
    g.throughput(Throughput::Elements(many.len() as u64));
    for threads in [1, 2] {
        let pool = pool(threads);
        g.bench_function(format!("fill_10M_fpr1e-3_{threads}t"), |b| {
            b.iter_batched(
                || RefFilter::new(many.len() as u64, 0.001, 7),
                |filter| {
                    pool.install(|| filter.insert_all(black_box(&many)));
                    filter
                },
                BatchSize::LargeInput,
            )
        });
    }
    drop(many);
    g.throughput(Throughput::Elements(IDS as u64));
    let full = RefFilter::new(IDS as u64, 0.001, 7);
    full.insert_all(&members);
    g.bench_function("contains_absent_1M_1t", |b| b.iter(|| absent.iter().filter(|id| full.contains(id)).count()));
    g.bench_function("contains_present_1M_1t", |b| b.iter(|| members.iter().filter(|id| full.contains(id)).count()));
    g.finish();
}

/// Parts as the listing makes them (at most `PART_CHUNKS` each, one first byte each): half
/// referenced, a tenth young, the rest old garbage.
fn listing(n: usize, filter: &RefFilter, cutoff_ms: i64) -> Vec<Listed> {
    let referenced = ids(n / 2, 5);
    filter.insert_all(&referenced);
    let mut chunks: Vec<ListedChunk> = referenced
        .into_iter()
        .chain(ids(n - n / 2, 6))
        .enumerate()
        .map(|(i, id)| ListedChunk {
            id,
            size: 4096,
            last_modified_ms: if i % 10 == 0 { cutoff_ms + 1 } else { cutoff_ms - 1 },
            version: gc_partition::store::Version::NONE,
        })
        .collect();
    chunks.sort_unstable_by_key(|c| c.id);
    chunks
        .chunk_by(|a, b| a.id[0] == b.id[0])
        .flat_map(|dir| dir.chunks(PART_CHUNKS))
        .map(|part| Listed { location: 0, counts: LocationCounts::default(), chunks: part.to_vec() })
        .collect()
}

fn decide(c: &mut Criterion) {
    let cutoff = 1_700_000_000_000;
    let filter = RefFilter::new(IDS as u64, 0.001, 9);
    let parts = listing(IDS, &filter, cutoff);
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(IDS as u64));
    g.bench_function("decide_1M_counters_only", |b| {
        b.iter(|| {
            let mut decider = Decider::new(&filter, cutoff, None);
            parts.iter().for_each(|part| decider.decide_part(part).unwrap());
            decider.finish(1).unwrap().totals().planned
        })
    });
    g.bench_function("decide_1M_spooled", |b| {
        b.iter(|| {
            let mut decider = Decider::new(&filter, cutoff, Some(PlanSpool::create(dir.path()).unwrap()));
            parts.iter().for_each(|part| decider.decide_part(part).unwrap());
            decider.finish(1).unwrap().totals().planned
        })
    });
    g.finish();
}

fn plan(c: &mut Criterion) {
    const RECORDS: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let locations = vec![Location::new("snapshots", "partitions/p1/chunks").unwrap()];
    let mut spool = PlanSpool::create(dir.path()).unwrap();
    let mut chunks: Vec<ListedChunk> = ids(RECORDS, 8)
        .into_iter()
        .map(|id| ListedChunk {
            id,
            size: 4096,
            last_modified_ms: 1_700_000_000_123,
            version: gc_partition::store::Version::NONE,
        })
        .collect();
    spool.append(0, &mut chunks).unwrap();
    let spool = spool.finish().unwrap();
    let header = PlanHeader {
        kind: "header".into(),
        version: PLAN_VERSION,
        partition: "p1".into(),
        store: "file:///bench".into(),
        mode: "dry-run".into(),
        cutoff: "2026-01-01T00:00:00.000Z".into(),
        created_at: "2026-01-08T00:00:00.000Z".into(),
        taken_at: "2026-01-08T00:00:00.000Z".into(),
        live_snapshots: 1,
        live_set_sha256: "00".repeat(32),
        deleting_set_sha256: None,
        max_delete_fraction: 0.5,
        bloom_fpr: 0.001,
        bloom_seed: 1,
        locations: vec![locations[0].to_string()],
    };
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for name in ["plan.jsonl", "plan.jsonl.zst"] {
        let path = dir.path().join(name);
        g.bench_function(format!("write_200k_records_{name}"), |b| {
            b.iter(|| write_plan(&path, &header, &locations, &spool, 0).unwrap())
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4))
}

criterion_group! { name = benches; config = config(); targets = legacy_index, unified_decode, filter, decide, plan }
criterion_main!(benches);
