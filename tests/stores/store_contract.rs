//! The store contract (`common/contract.rs`) on every backend the collector ships or is
//! tested with: `memory://`, `file://` (object_store's `LocalFileSystem` and our
//! `LocalBucket`), the retry layer over each of those, and, through `Stores` as
//! `gc_partition` builds them, the s3s-fs, fake-gcs-server and Azurite servers `scripts/test` starts
//! (ignored when their variables were unset at build time).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use common::contract::{Offset, Order, store_contract};
use gc_kit::Ageing;
use gc_partition::store::{LocalBucket, MemoryBucket, RetryPolicy, RetryStore, StoreOptions, Stores};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

fn run(store: &dyn ObjectStore, order: Order, offset: Offset) {
    common::runtime().block_on(store_contract(store, order, offset));
}

fn retried(inner: Arc<dyn ObjectStore>) -> RetryStore {
    RetryStore::new(inner, RetryPolicy::default(), Arc::new(AtomicU64::new(0)))
}

#[test]
fn memory_bucket() {
    run(&MemoryBucket::default(), Order::Keys, Offset::Honoured);
}

#[test]
fn memory_through_stores() {
    let stores = Stores::memory();
    stores.create_bucket("b").unwrap();
    run(&*stores.bucket("b").unwrap(), Order::Keys, Offset::Honoured);
}

#[test]
fn local_file_system() {
    let dir = tempfile::tempdir().unwrap();
    run(&LocalFileSystem::new_with_prefix(dir.path()).unwrap(), Order::Any, Offset::Honoured);
}

#[test]
fn local_bucket() {
    let dir = tempfile::tempdir().unwrap();
    run(&LocalBucket::new(dir.path()).unwrap(), Order::Any, Offset::Honoured);
}

#[test]
fn file_through_stores() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    let stores = Stores::from_url(&format!("file://{}", dir.path().display()), StoreOptions::default()).unwrap();
    run(&*stores.bucket("b").unwrap(), Order::Any, Offset::Honoured);
}

#[test]
fn retry_layer_over_local_bucket() {
    let dir = tempfile::tempdir().unwrap();
    run(&retried(Arc::new(LocalBucket::new(dir.path()).unwrap())), Order::Any, Offset::Honoured);
}

#[test]
fn retry_layer_in_key_order_over_memory() {
    run(&retried(Arc::new(MemoryBucket::default())).listing_in_key_order(), Order::Keys, Offset::Honoured);
}

/// A fresh bucket `contract` on a test server whose buckets are directories of `root`.
fn server_bucket(stores: &Stores, root: &std::path::Path) -> Arc<dyn ObjectStore> {
    let _ = std::fs::remove_dir_all(root.join("contract"));
    stores.create_bucket("contract").unwrap();
    stores.bucket("contract").unwrap()
}

#[test]
#[cfg_attr(not(gc_test_s3), ignore = "no test server: scripts/test starts s3s-fs")]
fn s3s_fs() {
    let backend = common::Backend::s3();
    let root = backend.server_root().unwrap().to_owned();
    let stores = Stores::from_url_and_env("s3://", StoreOptions::default(), backend.env())
        .unwrap()
        .with_backdate_root(root.clone());
    run(&*server_bucket(&stores, &root), Order::Keys, Offset::Honoured);
}

#[test]
#[cfg_attr(not(gc_test_gcs), ignore = "no test server: scripts/test starts fake-gcs-server")]
fn fake_gcs_server() {
    let backend = common::Backend::gcs();
    let common::Backend::Gcs { endpoint, root, .. } = &backend else { unreachable!() };
    let stores = Stores::from_url_and_env("gs://", StoreOptions::default(), backend.env()).unwrap();
    let stores = gc_kit::fake_gcs::test_server_stores(stores, root.clone(), endpoint);
    run(&*server_bucket(&stores, root), Order::Keys, Offset::IgnoredByTheEmulator);
}

#[test]
#[cfg_attr(not(gc_test_az), ignore = "no test server: scripts/test starts Azurite")]
fn azurite() {
    let common::Backend::Az { root, env, .. } = common::Backend::az() else { unreachable!() };
    let _turn = common::S3_TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let stores = common::azurite_stores(&root, &env);
    stores.create_bucket("contract").unwrap();
    run(&*stores.bucket("contract").unwrap(), Order::Keys, Offset::IgnoredByTheEmulator);
}
