//! The `file://` listing makes no heap allocation per listed chunk: the allocations of a
//! listing are counted (this test binary's global allocator counts them), and they grow
//! with the directories, not with the chunks. std's `read_dir` alone allocates every name.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::{counted_allocations, counting_thread};

use gc_partition::listing::list_all;
use gc_partition::locations::Location;
use gc_partition::store::{StoreOptions, Stores};

const DIRS: usize = 16;

/// Writes `per_dir` chunk files into each of `DIRS` fan-out directories of `bucket/p1`.
fn write_chunks(root: &std::path::Path, per_dir: usize) {
    for d in 0..DIRS {
        let hh = format!("{:02x}", d * 16);
        let dir = root.join("chunks/p1").join(&hh);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_dir {
            let name = format!("{hh}{:062x}", i);
            std::fs::write(dir.join(name), b"x").unwrap();
        }
    }
}

/// Lists the location and returns (chunks listed, allocations made while listing).
fn list(root: &std::path::Path) -> (u64, u64) {
    let stores = Stores::from_url(&format!("file://{}", root.display()), StoreOptions::default()).unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).on_thread_start(counting_thread).build().unwrap();
    let location = Location::new("chunks", "p1").unwrap();
    counting_thread();
    let before = counted_allocations();
    let listing = runtime.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send((0, location)).unwrap();
        drop(tx);
        list_all(stores, rx, 8, Arc::new(AtomicU64::new(0))).await.unwrap()
    });
    let allocations = counted_allocations() - before;
    (listing.chunk_count(), allocations)
}

#[test]
fn listing_allocations_do_not_grow_with_the_chunks() {
    let small = tempfile::tempdir().unwrap();
    let large = tempfile::tempdir().unwrap();
    write_chunks(small.path(), 50);
    write_chunks(large.path(), 1_000);
    let (small_chunks, small_allocs) = list(small.path());
    let (large_chunks, large_allocs) = list(large.path());
    assert_eq!((small_chunks, large_chunks), ((DIRS * 50) as u64, (DIRS * 1_000) as u64));
    // 15,200 more chunks; a batch's growth costs O(log n) reallocations per directory.
    let extra = large_allocs.saturating_sub(small_allocs);
    eprintln!("{small_allocs} allocations for {small_chunks} chunks, {large_allocs} for {large_chunks}");
    assert!(
        extra * 20 < large_chunks - small_chunks,
        "{extra} more allocations for {} more chunks ({small_allocs} for {small_chunks}, {large_allocs} for {large_chunks})",
        large_chunks - small_chunks
    );
}
