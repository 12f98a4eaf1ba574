//! The store contract: what the collector relies on from an `ObjectStore`, asserted the same
//! way on every backend (in the spirit of `object_store`'s own `integration.rs`). Run by
//! `tests/stores/store_contract.rs`.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

/// The objects written, key -> size. `p/ab/x` and `pq/z` share a string prefix with `p/a`
/// and `p` but not a whole segment.
const OBJECTS: [(&str, usize); 6] =
    [("p/a/1", 1), ("p/a/2", 22), ("p/a/3", 333), ("p/ab/x", 4), ("p/b/0", 50), ("pq/z", 6)];

/// How a backend lists: whether it promises key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// UTF-8 key order (S3, GCS, `InMemory`): the collector resumes a failed listing after
    /// the last key it saw.
    Keys,
    /// Any order (a local file system lists in directory order).
    Any,
}

async fn list(store: &dyn ObjectStore, prefix: &str) -> Vec<ObjectMeta> {
    store.list(Some(&Path::from(prefix))).try_collect().await.expect("list")
}

fn keys(metas: &[ObjectMeta]) -> Vec<String> {
    metas.iter().map(|m| m.location.to_string()).collect()
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

/// How a backend treats `list_with_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// Lists only the keys after the offset: what the retry layer's resume relies on.
    Honoured,
    /// fake-gcs-server (the 0.1.1 wheel's build) ignores the XML API's `start-after`, and
    /// Azurite 3.35 List Blobs' `startFrom`, and list everything: asserted as such, so the
    /// day it changes this test says so.
    IgnoredByTheEmulator,
}

/// Asserts every property on `store`, an empty bucket the caller owns.
pub async fn store_contract(store: &dyn ObjectStore, order: Order, offset: Offset) {
    // Listings may report whole seconds (GCS, S3): the window starts at a whole second. One
    // second earlier, because a server's file mtime comes from the kernel's coarse clock, a
    // few ms behind `Utc::now()`: s3s-fs once listed 18:16:06.998 for a write made after a
    // reading of 18:16:07.0.
    let before = (Utc::now() - chrono::TimeDelta::seconds(1)).trunc_subsecs(0);
    for (key, size) in OBJECTS {
        store.put(&Path::from(key), vec![b'x'; size].into()).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    let after = Utc::now();

    listing_reports_every_object_with_size_and_time(store, order, before, after).await;
    prefixes_match_whole_segments(store).await;
    listing_resumes_after_a_key(store, order, offset).await;
    head_reports_the_listings_time_and_size(store).await;
    missing_keys_are_not_found_and_told_apart(store).await;
    deleting_a_missing_key_is_done(store).await;
    deletes_remove_exactly_the_named_keys(store).await;
}

async fn listing_reports_every_object_with_size_and_time(
    store: &dyn ObjectStore,
    order: Order,
    before: DateTime<Utc>,
    after: DateTime<Utc>,
) {
    let listed = list(store, "p").await;
    let expected: Vec<String> =
        OBJECTS.iter().filter(|(k, _)| k.starts_with("p/")).map(|(k, _)| k.to_string()).collect();
    match order {
        Order::Keys => assert_eq!(keys(&listed), expected, "not listed in key order"),
        Order::Any => assert_eq!(sorted(keys(&listed)), expected),
    }
    let sizes: BTreeMap<&str, usize> = OBJECTS.into_iter().collect();
    for meta in &listed {
        let key = meta.location.as_ref();
        assert_eq!(meta.size, sizes[key] as u64, "listed size of {key}");
        assert!(
            before <= meta.last_modified && meta.last_modified <= after,
            "listed last-modified of {key}, {}, is not within the writes ({before} to {after})",
            meta.last_modified
        );
    }
}

async fn prefixes_match_whole_segments(store: &dyn ObjectStore) {
    assert_eq!(sorted(keys(&list(store, "p/a").await)), ["p/a/1", "p/a/2", "p/a/3"], "p/a must not match p/ab");
    assert_eq!(keys(&list(store, "pq").await), ["pq/z"]);
    assert!(list(store, "nothing").await.is_empty(), "a prefix with no objects lists nothing");
}

async fn listing_resumes_after_a_key(store: &dyn ObjectStore, order: Order, treatment: Offset) {
    let prefix = Path::from("p");
    for offset in ["p/a/2", "p/a/3", "p/aa", "p/b/0"] {
        let resumed: Vec<ObjectMeta> =
            store.list_with_offset(Some(&prefix), &Path::from(offset)).try_collect().await.expect("list_with_offset");
        let after = |k: &str| treatment == Offset::IgnoredByTheEmulator || k > offset;
        let expected: Vec<String> =
            OBJECTS.iter().map(|(k, _)| k.to_string()).filter(|k| k.starts_with("p/") && after(k)).collect();
        let got = match order {
            Order::Keys => keys(&resumed),
            Order::Any => sorted(keys(&resumed)),
        };
        assert_eq!(got, expected, "listing resumed after {offset}");
    }
}

async fn head_reports_the_listings_time_and_size(store: &dyn ObjectStore) {
    for listed in list(store, "p").await {
        let head = store.head(&listed.location).await.unwrap_or_else(|e| panic!("head {}: {e}", listed.location));
        // HEAD's Last-Modified is an HTTP date, whole seconds; listings may carry milliseconds
        // (s3s-fs does). The re-read before a delete compares it with the cutoff: to the second.
        assert_eq!(
            head.last_modified.timestamp(),
            listed.last_modified.timestamp(),
            "HEAD and listing disagree on {}: {} and {}",
            listed.location,
            head.last_modified,
            listed.last_modified
        );
        assert_eq!(head.size, listed.size, "HEAD and listing disagree on the size of {}", listed.location);
    }
}

async fn missing_keys_are_not_found_and_told_apart(store: &dyn ObjectStore) {
    let missing = Path::from("p/a/never");
    match store.head(&missing).await {
        Err(object_store::Error::NotFound { .. }) => {}
        other => panic!("head of a missing key: {other:?}, not NotFound"),
    }
    match store.get(&missing).await {
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => panic!("get of a missing key: {e}, not NotFound"),
        Ok(_) => panic!("get of a missing key succeeded"),
    }
    // A present key is not NotFound: the re-read before a delete tells the two apart.
    store.head(&Path::from("p/a/1")).await.expect("head of a present key");
}

async fn deleting_a_missing_key_is_done(store: &dyn ObjectStore) {
    let missing = Path::from("p/a/never");
    match store.delete(&missing).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => panic!("delete of a missing key: {e}, neither Ok nor NotFound"),
    }
    let results: Vec<_> = store.delete_stream(futures::stream::iter([Ok(missing.clone())]).boxed()).collect().await;
    assert_eq!(results.len(), 1, "one result per key");
    match &results[0] {
        Ok(path) => assert_eq!(path, &missing),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => panic!("bulk delete of a missing key: {e}, neither Ok nor NotFound"),
    }
}

async fn deletes_remove_exactly_the_named_keys(store: &dyn ObjectStore) {
    let doomed = [Path::from("p/a/1"), Path::from("p/a/3")];
    let results: Vec<_> = store.delete_stream(futures::stream::iter(doomed.clone().map(Ok)).boxed()).collect().await;
    let mut deleted: Vec<String> = results.into_iter().map(|r| r.expect("bulk delete").to_string()).collect();
    deleted.sort();
    assert_eq!(deleted, ["p/a/1", "p/a/3"]);
    assert_eq!(sorted(keys(&list(store, "p").await)), ["p/a/2", "p/ab/x", "p/b/0"]);
    for path in &doomed {
        assert!(matches!(store.head(path).await, Err(object_store::Error::NotFound { .. })), "{path} still there");
    }
    // Clean up, so the bucket is empty again.
    for key in ["p/a/2", "p/ab/x", "p/b/0", "pq/z"] {
        store.delete(&Path::from(key)).await.unwrap_or_else(|e| panic!("delete {key}: {e}"));
    }
    assert!(list(store, "p").await.is_empty() && list(store, "pq").await.is_empty(), "the bucket is not empty");
}
