//! The `file://` fast path of the listing sees exactly what the generic object_store path
//! sees: the same chunks with the same sizes and mtimes, the same foreign counts, on a
//! synthetic partition with odd extra entries. A layered store always takes the generic path.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use common::*;
use gc_partition::listing::{ListedChunk, Listing, list_all};
use gc_partition::locations::Location;
use gc_partition::store::Stores;

fn list(stores: &Stores, locations: &[Location]) -> Listing {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, location) in locations.iter().enumerate() {
        tx.send((i as u32, location.clone())).unwrap();
    }
    drop(tx);
    runtime().block_on(list_all(stores.clone(), rx, 8, Arc::new(AtomicU64::new(0)))).unwrap()
}

fn chunks(listing: &Listing) -> BTreeSet<(u32, [u8; 32], u64, i64)> {
    listing.chunks().map(|(location, c): (u32, &ListedChunk)| (location, c.id, c.size, c.last_modified_ms)).collect()
}

fn counts(listing: &Listing) -> Vec<(u64, u64, u64, u64)> {
    listing.per_location.iter().map(|c| (c.listed_objects, c.chunks, c.chunk_bytes, c.foreign_objects)).collect()
}

fn generic(stores: &Stores) -> Stores {
    stores.layered(Arc::new(|_, store| store))
}

#[test]
fn fast_path_matches_object_store() {
    let fx = partition(&Backend::File, |c| c.seed = 11);
    let locations = fx.summary.locations.clone();
    // Odd entries: a nested directory under a fan-out directory, a directory beside them,
    // object_store's upload temporaries (skipped by both), an empty fan-out directory.
    let loc = &locations[0].clone();
    let base = fx.stores.local_dir(loc.bucket()).unwrap().join(loc.prefix());
    let hex = "ab".repeat(32);
    std::fs::create_dir_all(base.join("ab/nested")).unwrap();
    std::fs::write(base.join(format!("ab/nested/{hex}")), b"x").unwrap();
    std::fs::write(base.join(format!("ab/{hex}#12")), b"x").unwrap();
    std::fs::write(base.join(format!("ab/{hex}#x")), b"x").unwrap();
    std::fs::write(base.join("top#3"), b"x").unwrap();
    std::fs::create_dir_all(base.join("other/deeper")).unwrap();
    std::fs::write(base.join(format!("other/deeper/{hex}")), b"x").unwrap();
    std::fs::create_dir_all(base.join("ff")).unwrap();
    // A location that does not exist yet lists as empty on both paths.
    let mut locations = locations;
    locations.push(Location::new(loc.bucket(), "nothing/p1/here").unwrap());

    let fast = list(&fx.stores, &locations);
    let slow = list(&generic(&fx.stores), &locations);
    assert_eq!(chunks(&fast), chunks(&slow));
    assert_eq!(counts(&fast), counts(&slow));
    assert_eq!(fast.chunk_count(), fx.summary.referenced_ids + fx.summary.garbage_chunks + fx.summary.young_chunks);
    let foreign: u64 = fast.per_location.iter().map(|c| c.foreign_objects).sum();
    assert_eq!(foreign, fx.summary.foreign_objects + 3);
}

#[test]
fn symlinks_are_foreign_and_never_followed() {
    let fx = partition(&Backend::File, |c| c.seed = 12);
    let loc = fx.summary.locations[0].clone();
    let base = fx.stores.local_dir(loc.bucket()).unwrap().join(loc.prefix());
    let outside = fx.dir.path().join("outside");
    std::fs::create_dir_all(outside.join("cd")).unwrap();
    let hex = "cd".repeat(32);
    std::fs::write(outside.join(format!("cd/{hex}")), b"x").unwrap();
    std::os::unix::fs::symlink(&outside, base.join("linked")).unwrap();
    std::os::unix::fs::symlink(outside.join(format!("cd/{hex}")), base.join(format!("cd/{hex}"))).unwrap();

    let before = list(&fx.stores, std::slice::from_ref(&loc));
    let id = gc_partition::ids::ChunkId::from_hex(&hex).unwrap();
    assert!(before.chunks().all(|(_, c)| c.id != id.0), "a symlinked chunk was listed as a chunk");
    let expected = fx.summary.per_location[0].foreign + 2;
    assert_eq!(before.per_location[0].foreign_objects, expected, "each symlink is one foreign object");
}

#[test]
fn a_prefix_through_a_link_is_one_foreign_object_on_both_paths() {
    let fx = partition(&Backend::File, |c| c.seed = 13);
    let loc = fx.summary.locations[0].clone();
    let bucket_dir = fx.stores.local_dir(loc.bucket()).unwrap();
    // `<bucket>/linked` points at a directory that holds chunks in the fan-out layout.
    let outside = fx.dir.path().join("outside");
    let hex = "ef".repeat(32);
    std::fs::create_dir_all(outside.join("p1/ef")).unwrap();
    std::fs::write(outside.join(format!("p1/ef/{hex}")), b"x").unwrap();
    std::os::unix::fs::symlink(&outside, bucket_dir.join("linked")).unwrap();
    let through_link = Location::new(loc.bucket(), "linked/p1").unwrap();

    let fast = list(&fx.stores, std::slice::from_ref(&through_link));
    let slow = list(&generic(&fx.stores), std::slice::from_ref(&through_link));
    assert_eq!(fast.chunk_count(), 0, "the fast path listed chunks through a link");
    assert_eq!(counts(&fast), vec![(1, 0, 0, 1)]);
    assert_eq!(counts(&fast), counts(&slow));
    assert_eq!(fast.per_location[0].foreign_sample, vec!["linked".to_owned()]);
}

/// Chunks deleted while the fast path walks (a real race with another thread's deletes,
/// no fault layer): the listing never fails for a vanished file, never lists a chunk that
/// was not there, and lists every chunk nobody touched, with its size and mtime. Three
/// rounds, each deleting every other chunk left, so the race is met more than once.
#[test]
fn chunks_vanishing_during_the_fast_walk_are_skipped_and_nothing_else_is_missed() {
    let fx = partition(&Backend::File, |c| {
        c.seed = 14;
        c.garbage_chunks = 6000;
    });
    let locations = fx.summary.locations.clone();
    let file_of = |(location, id, _, _): &(u32, [u8; 32], u64, i64)| {
        let loc = &locations[*location as usize];
        let hex = const_hex::encode(id);
        fx.stores.local_dir(loc.bucket()).unwrap().join(loc.prefix()).join(&hex[..2]).join(&hex)
    };
    let mut before = chunks(&list(&fx.stores, &locations));
    assert!(before.len() > 4000, "the race needs a listing of some size: {}", before.len());
    for round in 0..3 {
        let doomed: Vec<std::path::PathBuf> = before.iter().step_by(2).map(file_of).collect();
        let deleter = std::thread::spawn(move || doomed.iter().for_each(|file| std::fs::remove_file(file).unwrap()));
        let during = chunks(&list(&fx.stores, &locations));
        deleter.join().unwrap();
        assert!(during.is_subset(&before), "round {round}: a chunk was listed that was not there");
        let untouched: BTreeSet<_> = before.iter().skip(1).step_by(2).cloned().collect();
        assert!(untouched.is_subset(&during), "round {round}: a chunk nobody touched was missed");
        before = untouched;
    }
}

/// The fast path is behind the store boundary: the store counts its directory reads as list
/// pages (one per directory read, one more per further 1,000 entries), as a remote listing's
/// pages are counted.
#[test]
fn the_fast_path_counts_its_directory_reads() {
    let fx = partition(&Backend::File, |c| c.seed = 12);
    let locations = fx.summary.locations.clone();
    let mut directories = 0u64;
    for loc in &locations {
        let base = fx.stores.local_dir(loc.bucket()).unwrap().join(loc.prefix());
        let fanouts = std::fs::read_dir(&base).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
        directories += 1 + fanouts as u64;
    }
    let before = fx.stores.requests();
    list(&fx.stores, &locations);
    let pages = fx.stores.requests().since(before).list_pages;
    // No directory of this partition holds 1,000 entries: one page each.
    assert_eq!(pages, directories);
}
