//! How `gc_partition_kit` opens `--store`: the production stores ([`Stores::from_url`]),
//! plus the kit's `gen://` ([`crate::generated`], a [`CustomBackend`]) and, when
//! `GC_PARTITION_SIM_LATENCY` is set, the latency layer around every bucket
//! ([`crate::latency`], a [`Simulation`]). The release `gc_partition` has neither.

use std::any::Any;
use std::sync::Arc;

use gc_partition::store::{CustomBackend, DeleteBatching, Simulation, StoreError, StoreOptions, Stores};
use object_store::ObjectStore;

use crate::generated::Generated;
use crate::latency::{ENV as SIM_LATENCY_ENV, LatencyProfile, LatencyStore, RequestWindow};

/// The `gen://` store as a backend of [`Stores`].
#[derive(Debug)]
pub struct GenBackend(pub Arc<Generated>);

impl CustomBackend for GenBackend {
    fn scheme(&self) -> &'static str {
        "gen://"
    }

    fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        Ok(Arc::new(self.0.bucket(bucket)))
    }

    /// One request per key, as `file://` and `memory://`.
    fn delete_batching(&self) -> DeleteBatching {
        DeleteBatching::Single
    }

    /// Each `<hh>` directory is generated in key order.
    fn lists_in_key_order(&self) -> bool {
        true
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The partition behind a `gen://` store (its expected counts, its delete counters).
pub fn generated(stores: &Stores) -> Option<&Arc<Generated>> {
    stores.custom_backend()?.as_any().downcast_ref::<GenBackend>().map(|backend| &backend.0)
}

/// The stores of `url`: `gen://?...` is generated, any other URL is `gc_partition`'s; then
/// the latency layer when `GC_PARTITION_SIM_LATENCY` is set. Remote stores are configured
/// from the process's environment, as `gc_partition` does.
pub fn open(url: &str, options: StoreOptions) -> Result<Stores, StoreError> {
    let env: Vec<(String, String)> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    open_with_env(url, options, env)
}

/// [`open`] with the environment given as (name, value) pairs.
pub fn open_with_env(url: &str, options: StoreOptions, env: Vec<(String, String)>) -> Result<Stores, StoreError> {
    let mut stores = if url.starts_with("gen:") {
        let generated = Generated::from_url(url).map_err(|e| StoreError::Custom(format!("store URL {url:?}: {e}")))?;
        Stores::custom(Arc::new(GenBackend(Arc::new(generated))), options)
    } else {
        Stores::from_url_and_env(url, options, env.iter().cloned())?
    };
    if let Some((_, spec)) = env.iter().find(|(k, _)| k == SIM_LATENCY_ENV) {
        let profile = LatencyProfile::parse(spec).map_err(StoreError::Custom)?;
        tracing::warn!(profile = ?profile, "simulated remote latency ({SIM_LATENCY_ENV}): for benches only");
        stores = stores.with_latency(profile);
    }
    Ok(stores)
}

/// The latency layer as a [`Simulation`]: one request window shared by every bucket.
#[derive(Debug)]
struct Latency {
    profile: Arc<LatencyProfile>,
    window: Arc<RequestWindow>,
}

impl Simulation for Latency {
    fn wrap(&self, _bucket: &str, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(LatencyStore::new(store, Arc::clone(&self.profile), Arc::clone(&self.window)))
    }

    fn delete_batching(&self) -> DeleteBatching {
        self.profile.bulk_keys.map_or(DeleteBatching::Single, |n| DeleteBatching::Bulk(n as u64))
    }
}

/// Every bucket behind a simulated remote store ([`LatencyStore`]); benches only.
pub trait WithLatency {
    fn with_latency(self, profile: LatencyProfile) -> Self;
}

impl WithLatency for Stores {
    fn with_latency(self, profile: LatencyProfile) -> Self {
        self.simulated(Arc::new(Latency { profile: Arc::new(profile), window: Arc::default() }))
    }
}

#[cfg(test)]
mod tests {
    use gc_partition::store::DeleteCondition;

    use super::*;

    #[test]
    fn gen_urls_are_generated_and_others_are_the_production_stores() {
        let stores = open_with_env("gen://?chunks=100", StoreOptions::default(), Vec::new()).expect("gen");
        assert_eq!(stores.scheme(), "gen://");
        assert_eq!(stores.delete_condition(), DeleteCondition::Unconditional);
        assert_eq!(stores.delete_batching(), DeleteBatching::Single);
        assert!(stores.raw_lister("chunks").expect("raw lister").is_none());
        assert!(generated(&stores).is_some());
        let err = open_with_env("gen://?chunks=x", StoreOptions::default(), Vec::new()).expect_err("bad gen url");
        assert!(err.to_string().contains("gen://?chunks=x"), "{err}");
        let memory = open_with_env("memory://", StoreOptions::default(), Vec::new()).expect("memory");
        assert_eq!(memory.delete_condition(), DeleteCondition::RenameAside);
        assert!(generated(&memory).is_none());
        assert!(open_with_env("http://x", StoreOptions::default(), Vec::new()).is_err());
    }

    #[test]
    fn the_latency_variable_wraps_every_bucket() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("b")).expect("mkdir");
        let url = format!("file://{}", dir.path().display());
        let env = vec![(SIM_LATENCY_ENV.to_owned(), "s3".to_owned())];
        let stores = open_with_env(&url, StoreOptions::default(), env).expect("file with latency");
        assert_eq!(stores.delete_condition(), DeleteCondition::Unconditional);
        assert_eq!(stores.delete_batching(), DeleteBatching::Bulk(1000));
        assert!(stores.local_listing("b").is_none(), "no direct walk under a simulation");
        let plain = open_with_env(&url, StoreOptions::default(), Vec::new()).expect("file");
        assert!(plain.local_listing("b").is_some());
        let env = vec![(SIM_LATENCY_ENV.to_owned(), "nope".to_owned())];
        assert!(open_with_env(&url, StoreOptions::default(), env).is_err());
    }
}
