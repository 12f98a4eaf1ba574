//! Store URL -> one `Arc<dyn ObjectStore>` per bucket. The only place that builds stores.
//!
//! `gc_partition` knows `file://`, `gs://`, `s3://`, `az://` and `memory://`. A program built on this
//! library may add a backend of its own ([`CustomBackend`], [`Stores::custom`]) and a
//! simulation around every bucket ([`Simulation`], [`Stores::simulated`]): that is how the
//! test kit (`kit/`, `gc_partition_kit`) has `gen://` and its latency layer, which the
//! production binary does not.
//!
//! Remote stores (`s3://`, `gs://`, `az://`) take their whole configuration, credentials
//! included, from the environment, read the way `object_store` reads it (`AWS_*`, `GOOGLE_*`,
//! `SERVICE_ACCOUNT`, `AZURE_*` and `AZURITE_BLOB_STORAGE_URL`). Nothing here prints a configuration value: `Stores`' `Debug` names the
//! backend and the names of the variables it read, never their values.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use object_store::ObjectStore;

mod azure;
mod counting;
mod direct;
mod gcs_delete;
mod local;
mod memory;
mod options;
mod raw_list;
mod remote;
mod requests;
use remote::RemoteEnv;
mod retry;
mod s3_versions;
mod version;
pub(crate) use azure::{AzureDeleter, container_url};
pub(crate) use counting::{CountingStore, RequestCounters};
pub use counting::{DeleteBatching, LIST_PAGE, RequestCounts, is_throttle};
pub(crate) use direct::ConditionalDelete;
pub(crate) use gcs_delete::GcsDeleter;
pub use local::LocalBucket;
pub(crate) use local::walk;
pub(crate) use local::{AsideOutcome, LocalAside, LocalListing, SYMLINK_ETAG, first_link};
pub use memory::MemoryBucket;
pub(crate) use raw_list::{RawListError, RawLister};
pub use raw_list::{parse_gcs_page, parse_s3_page};

pub use options::StoreOptions;
use requests::{Endpoint, HttpTransport};
pub use requests::{RequestKind, RequestLayer, Transport, WireAnswer, WireError, WireRequest, error_chain};
pub use retry::{RetryPolicy, RetryStore};
pub(crate) use s3_versions::{S3Versions, VersioningOnce};
pub use version::{VERSION_CAPACITY, Version};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {0:?} is not file:///ABS/DIR, gs://, s3://, az:// or memory://")]
    BadUrl(String),
    /// A [`CustomBackend`] or a [`Simulation`] that cannot be set up, in its own words.
    #[error("{0}")]
    Custom(String),
    #[error("bucket {bucket}: no such directory {path}")]
    NoSuchBucket { bucket: String, path: PathBuf },
    #[error("bucket {bucket}: cannot configure the {scheme} client from the environment: {source}")]
    Build { bucket: String, scheme: &'static str, source: object_store::Error },
    #[error("{scheme} store: configuration from the environment is invalid: {source}")]
    Config { scheme: &'static str, source: object_store::Error },
}

/// How a planned delete is tied to the object the collector judged old (spec 9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteCondition {
    /// `file://`, `memory://`: the chunk is renamed aside (no writer reaches it there), its
    /// last-modified read there, then it is deleted, or put back without replacing a copy a
    /// writer made meanwhile.
    RenameAside,
    /// `gs://`: the DELETE carries `x-goog-if-generation-match` on the generation re-read.
    GenerationMatch,
    /// `az://`: the DELETE carries `If-Match` on the ETag re-read.
    EtagMatch,
    /// `s3://`: on a bucket whose versioning is enabled, the delete names the version
    /// re-read; elsewhere it is unconditional ([`Stores::s3_versions`] tells per bucket).
    VersionIfEnabled,
    /// A [`CustomBackend`] (the test kit's `gen://`), a [`Simulation`]: the re-read, then a
    /// plain delete.
    Unconditional,
}

#[derive(Debug, Clone)]
enum Backend {
    Local(PathBuf),
    Gcs,
    S3,
    Azure,
    Memory,
    /// A backend the program that built the stores brought (see [`CustomBackend`]).
    Custom(Arc<dyn CustomBackend>),
}

impl Backend {
    /// S3, GCS and Azure Blob list in UTF-8 key order (their APIs say so), and so does
    /// object_store's `InMemory`; a local file system lists in directory order.
    fn lists_in_key_order(&self) -> bool {
        match self {
            Backend::Local(_) => false,
            Backend::Gcs | Backend::S3 | Backend::Azure | Backend::Memory => true,
            Backend::Custom(custom) => custom.lists_in_key_order(),
        }
    }

    fn scheme(&self) -> &'static str {
        match self {
            Backend::Local(_) => "file://",
            Backend::Gcs => "gs://",
            Backend::S3 => "s3://",
            Backend::Azure => "az://",
            Backend::Memory => "memory://",
            Backend::Custom(custom) => custom.scheme(),
        }
    }
}

/// A store backend that `gc_partition` itself does not have, brought by a program built on
/// this library ([`Stores::custom`]): the test kit's `gen://`. Its buckets are wrapped like
/// any backend's (simulation, test layer, request counter, retries). Its deletes are
/// [`DeleteCondition::Unconditional`] (the re-read, then a plain delete: the trait has no
/// compare-and-delete), there is no direct directory walk and no raw listing, and its
/// transient errors get every retry of `--max-retries`.
pub trait CustomBackend: Send + Sync + fmt::Debug {
    /// Its URL scheme as messages and the report name it (`gen://`).
    fn scheme(&self) -> &'static str;
    /// The store of one bucket.
    fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError>;
    /// How its `delete_stream` turns keys into requests.
    fn delete_batching(&self) -> DeleteBatching;
    /// Whether its listings come in UTF-8 key order, as S3's and GCS's do.
    fn lists_in_key_order(&self) -> bool;
    /// Itself, for the program that made it ([`Stores::custom_backend`]).
    fn as_any(&self) -> &dyn Any;
}

/// A simulated remote store around every bucket, whatever the backend ([`Stores::simulated`]):
/// the test kit's latency layer. The buckets then behave as the remote store it imitates: no
/// direct directory walk, no raw listing, deletes [`DeleteCondition::Unconditional`] and
/// batched as [`Simulation::delete_batching`] says.
pub trait Simulation: Send + Sync + fmt::Debug {
    /// `store`, the backend's store of `bucket`, seen through the simulation.
    fn wrap(&self, bucket: &str, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>;
    /// How the simulated store's `delete_stream` turns keys into requests.
    fn delete_batching(&self) -> DeleteBatching;
}

/// How a program built on this library opens the `--store` URL: [`Stores::from_url`] for
/// `gc_partition`; the test kit's adds `gen://` and its latency layer. See `crate::app`.
pub(crate) type OpenStores = fn(&str, StoreOptions) -> Result<Stores, StoreError>;

/// Wraps every bucket's store as it is built: the hook tests use for fault injection and
/// for counting calls. It sits between the backend and the [`RetryStore`], so a transient
/// error it injects is retried like a real one.
pub type Layer = Arc<dyn Fn(&str, Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync>;

/// All the buckets of one store URL. Cheap to clone; clones share their buckets, so a
/// `memory://` store written by one part of a test is seen by another.
#[derive(Clone)]
pub struct Stores {
    backend: Backend,
    options: StoreOptions,
    env: RemoteEnv,
    /// What the program that built these stores keeps with them (the test kit: how to age
    /// objects on a test server); the collector never reads it.
    attachment: Option<Arc<dyn Any + Send + Sync>>,
    buckets: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
    memory: Arc<Mutex<HashMap<String, Arc<MemoryBucket>>>>,
    /// The raw listings of remote buckets ([`Stores::raw_lister`]), one per bucket.
    listers: Arc<Mutex<HashMap<String, RawLister>>>,
    /// The versioning of each `s3://` bucket, read once ([`Stores::s3_versions`]).
    versionings: Arc<Mutex<HashMap<String, VersioningOnce>>>,
    /// Where each remote bucket's own requests go ([`Stores::endpoint`]), resolved once.
    endpoints: Arc<Mutex<HashMap<String, Arc<Endpoint>>>>,
    /// The run's HTTP client for the requests the collector builds itself, built on first
    /// use: one connection pool for every bucket and every clone.
    http: Arc<Mutex<Option<HttpTransport>>>,
    /// Wraps that client (tests' fault injection, [`Stores::layered_requests`]).
    request_layer: Option<RequestLayer>,
    layer: Option<Layer>,
    /// Retries made by the [`RetryStore`]s, for the report.
    retries: Arc<AtomicU64>,
    /// Requests by kind, counted below the retries (the request bill, spec 8.6).
    requests: Arc<RequestCounters>,
    /// A simulated remote store around every bucket (benches only, see [`Simulation`]).
    simulation: Option<Arc<dyn Simulation>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("backend", &self.backend).field("env_keys", &self.env).finish_non_exhaustive()
    }
}

impl Stores {
    /// The stores of `url`, remote ones configured from this process's environment.
    pub fn from_url(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        Self::from_url_and_env(
            url,
            options,
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// The stores of `url`, remote ones configured from `env` (name, value) pairs read the
    /// way `object_store`'s `from_env` reads the process environment. A remote
    /// configuration is checked here, once, so a bad one fails before any work starts.
    pub fn from_url_and_env(
        url: &str,
        options: StoreOptions,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, StoreError> {
        let backend = if let Some(path) = url.strip_prefix("file://") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(StoreError::BadUrl(url.to_owned()));
            }
            Backend::Local(path)
        } else if url == "gs://" || url == "gs:" {
            Backend::Gcs
        } else if url == "s3://" || url == "s3:" {
            Backend::S3
        } else if url == "az://" || url == "az:" {
            Backend::Azure
        } else if url == "memory://" || url == "memory:" {
            Backend::Memory
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        let mut stores = Self::with_backend(backend, options);
        if stores.is_remote() {
            stores.env = RemoteEnv::capture(env);
            // A well-formed bucket name: only the environment's part of the configuration
            // can fail here. Building a client does not touch the network.
            stores
                .build_remote("config-check")
                .map_err(|source| StoreError::Config { scheme: stores.backend.scheme(), source })?;
        }
        Ok(stores)
    }

    /// A fresh in-process store, for tests and benches.
    pub fn memory() -> Self {
        Self::with_backend(Backend::Memory, StoreOptions::default())
    }

    /// The stores of a backend `gc_partition` does not have (see [`CustomBackend`]).
    pub fn custom(backend: Arc<dyn CustomBackend>, options: StoreOptions) -> Self {
        Self::with_backend(Backend::Custom(backend), options)
    }

    /// The [`CustomBackend`] these stores were made with ([`Stores::custom`]).
    pub fn custom_backend(&self) -> Option<&Arc<dyn CustomBackend>> {
        match &self.backend {
            Backend::Custom(custom) => Some(custom),
            _ => None,
        }
    }

    fn with_backend(backend: Backend, options: StoreOptions) -> Self {
        Self {
            backend,
            options,
            env: RemoteEnv::default(),
            attachment: None,
            buckets: Arc::default(),
            memory: Arc::default(),
            listers: Arc::default(),
            versionings: Arc::default(),
            endpoints: Arc::default(),
            http: Arc::default(),
            request_layer: None,
            layer: None,
            retries: Arc::default(),
            requests: Arc::default(),
            simulation: None,
        }
    }

    /// Every bucket behind a simulated remote store (see [`Simulation`]); benches only.
    pub fn simulated(mut self, simulation: Arc<dyn Simulation>) -> Self {
        self.simulation = Some(simulation);
        self.buckets = Arc::default();
        self
    }

    /// Keeps `value` with these stores and their clones, for the program that built them
    /// ([`Stores::attachment`]): the test kit keeps there how objects are aged on its test
    /// servers. The collector never reads it.
    pub fn with_attachment(mut self, value: Arc<dyn Any + Send + Sync>) -> Self {
        self.attachment = Some(value);
        self
    }

    /// What [`Stores::with_attachment`] kept, if it is a `T`.
    pub fn attachment<T: Any>(&self) -> Option<&T> {
        self.attachment.as_deref().and_then(|value| value.downcast_ref())
    }

    /// The same buckets seen through `layer` (fault injection, call counting).
    pub fn layered(&self, layer: Layer) -> Self {
        Self { layer: Some(layer), buckets: Arc::default(), ..self.clone() }
    }

    /// The same buckets with the requests the collector builds itself (raw list pages,
    /// conditional and version deletes, their batches) sent through `layer` wrapped around
    /// the run's HTTP client: tests answer 503, 429 or a reset there, in the server's place.
    /// What it injects is retried and counted like a real answer (spec 10.2).
    pub fn layered_requests(&self, layer: RequestLayer) -> Self {
        Self { request_layer: Some(layer), listers: Arc::default(), versionings: Arc::default(), ..self.clone() }
    }

    /// How many requests the retry layer has repeated so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests made so far, by kind, retries included (see [`CountingStore`]).
    pub fn requests(&self) -> RequestCounts {
        self.requests.snapshot()
    }

    /// The shared request counters, read live by the throttling limiters.
    pub(crate) fn request_counters(&self) -> Arc<RequestCounters> {
        Arc::clone(&self.requests)
    }

    /// How this store's `delete_stream` turns keys into requests: S3 sends `DeleteObjects`
    /// of up to 1,000 keys, Azure a blob batch of up to 256; GCS (object_store sends single deletes), `file://` and
    /// `memory://` one request per key; a simulated store as its profile says.
    pub fn delete_batching(&self) -> DeleteBatching {
        if let Some(simulation) = &self.simulation {
            return simulation.delete_batching();
        }
        match &self.backend {
            Backend::S3 => DeleteBatching::Bulk(1000),
            Backend::Azure => DeleteBatching::Bulk(256),
            Backend::Gcs | Backend::Local(_) | Backend::Memory => DeleteBatching::Single,
            Backend::Custom(custom) => custom.delete_batching(),
        }
    }

    /// How this store's deletes are tied to the object the collector judged old (spec 9.1).
    /// A simulated remote store deletes as the remote stores it imitates do: one
    /// conditional request after the re-read, counted as unconditional.
    pub fn delete_condition(&self) -> DeleteCondition {
        if self.simulation.is_some() {
            return DeleteCondition::Unconditional;
        }
        match self.backend {
            Backend::Local(_) | Backend::Memory => DeleteCondition::RenameAside,
            Backend::Gcs => DeleteCondition::GenerationMatch,
            Backend::S3 => DeleteCondition::VersionIfEnabled,
            Backend::Azure => DeleteCondition::EtagMatch,
            Backend::Custom(_) => DeleteCondition::Unconditional,
        }
    }

    /// The directory of `bucket` when the store is `file://`.
    pub fn local_dir(&self, bucket: &str) -> Option<PathBuf> {
        match &self.backend {
            Backend::Local(root) => Some(root.join(bucket)),
            _ => None,
        }
    }

    /// The file behind `key` of `bucket` when the store is `file://`, for memory-mapping.
    /// Not checked for symbolic links: the test kit's writer and ageing use it.
    pub fn local_file(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        self.local_dir(bucket).map(|dir| dir.join(key))
    }

    /// The listing's direct walk of `bucket` when the store is `file://` and no [`Layer`]
    /// wraps it, with this store's retry policy and request counters. With a layer (fault
    /// injection, call counting) every listing goes through the layered `ObjectStore`, so
    /// `None`.
    pub fn local_listing(&self, bucket: &str) -> Option<LocalListing> {
        if self.layer.is_some() || self.simulation.is_some() {
            return None;
        }
        Some(LocalListing {
            dir: self.local_dir(bucket)?,
            policy: self.options.retry_policy(&self.backend),
            retries: Arc::clone(&self.retries),
            counters: Arc::clone(&self.requests),
        })
    }

    /// `file://`'s compare-and-delete (spec 9.1) done by the store in `bucket`'s directory, one
    /// blocking call per chunk relative to its directory's descriptor ([`LocalAside`]), with
    /// this store's retry policy and request counters. Like [`Stores::local_listing`], `None`
    /// when a [`Layer`] wraps the store: then every delete goes through the layered
    /// `ObjectStore`, so injected faults reach it.
    pub(crate) fn local_aside(&self, bucket: &str) -> Option<LocalAside> {
        if self.layer.is_some() || self.simulation.is_some() {
            return None;
        }
        let dir = self.local_dir(bucket)?;
        let policy = self.options.retry_policy(&self.backend);
        Some(LocalAside::new(bucket, dir, policy, Arc::clone(&self.retries), Arc::clone(&self.requests)))
    }

    /// `s3://`, `gs://` or `az://`: configured from the environment.
    fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::S3 | Backend::Gcs | Backend::Azure)
    }

    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    /// The in-process bucket behind `bucket` when the store is `memory://`.
    pub fn memory_bucket(&self, bucket: &str) -> Option<Arc<MemoryBucket>> {
        matches!(self.backend, Backend::Memory).then(|| self.memory_bucket_of(bucket))
    }

    /// `file://`, `gs://`, `s3://`, `az://`, `memory://`, or a [`CustomBackend`]'s.
    pub fn scheme(&self) -> &'static str {
        self.backend.scheme()
    }

    pub fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = buckets.get(bucket) {
            return Ok(Arc::clone(store));
        }
        // The backend, then the test layer (faults, counting), then the request counter,
        // then the retries: injected transient faults are retried like real ones, and every
        // attempt is counted.
        let mut store = self.build(bucket)?;
        if let Some(simulation) = &self.simulation {
            store = simulation.wrap(bucket, store);
        }
        if let Some(layer) = &self.layer {
            store = layer(bucket, store);
        }
        store = Arc::new(CountingStore::new(store, Arc::clone(&self.requests), self.delete_batching()));
        let policy = self.options.retry_policy(&self.backend);
        let retry = RetryStore::new(store, policy, Arc::clone(&self.retries));
        store = Arc::new(if self.backend.lists_in_key_order() { retry.listing_in_key_order() } else { retry });
        buckets.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    fn build(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        Ok(match &self.backend {
            Backend::Local(root) => {
                let dir = root.join(bucket);
                if !dir.is_dir() {
                    return Err(StoreError::NoSuchBucket { bucket: bucket.to_owned(), path: dir });
                }
                let store = LocalBucket::new(&dir).map_err(|source| StoreError::Build {
                    bucket: bucket.to_owned(),
                    scheme: self.backend.scheme(),
                    source,
                })?;
                Arc::new(store)
            }
            Backend::Gcs | Backend::S3 | Backend::Azure => self.build_remote(bucket).map_err(|source| {
                StoreError::Build { bucket: bucket.to_owned(), scheme: self.backend.scheme(), source }
            })?,
            Backend::Memory => self.memory_bucket_of(bucket),
            Backend::Custom(custom) => custom.bucket(bucket)?,
        })
    }

    fn memory_bucket_of(&self, bucket: &str) -> Arc<MemoryBucket> {
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(memory.entry(bucket.to_owned()).or_default())
    }
}

#[cfg(test)]
mod tests {
    use object_store::ClientConfigKey;
    use object_store::aws::AmazonS3ConfigKey;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn urls_are_checked() {
        let s3 = env(&[("AWS_REGION", "us-east-1")]);
        assert!(Stores::from_url("file:///tmp/x", StoreOptions::default()).is_ok());
        assert!(Stores::from_url("file://relative", StoreOptions::default()).is_err());
        assert!(Stores::from_url("memory://", StoreOptions::default()).is_ok());
        assert!(Stores::from_url_and_env("s3://", StoreOptions::default(), s3).is_ok());
        assert!(Stores::from_url("http://x", StoreOptions::default()).is_err());
        assert!(Stores::from_url("s3://bucket", StoreOptions::default()).is_err());
        assert!(Stores::from_url("gs://bucket/prefix", StoreOptions::default()).is_err());
        // The test kit's generated store is not a store of `gc_partition`.
        let err = Stores::from_url("gen://?chunks=10", StoreOptions::default()).expect_err("gen:// is unknown");
        assert!(matches!(err, StoreError::BadUrl(_)), "{err}");
        assert!(err.to_string().ends_with("is not file:///ABS/DIR, gs://, s3://, az:// or memory://"), "{err}");
    }

    #[test]
    fn azure_is_configured_from_azure_variables_and_deletes_on_its_etag() {
        let vars = env(&[
            ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
            ("AZURE_STORAGE_ENDPOINT", "http://127.0.0.1:1/devstoreaccount1"),
            ("AZURE_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
        ]);
        let stores = Stores::from_url_and_env("az://", StoreOptions::default(), vars).expect("az config");
        assert_eq!(stores.scheme(), "az://");
        assert_eq!(stores.delete_condition(), DeleteCondition::EtagMatch);
        let deleter = stores.azure_deleter("c1").expect("deleter").expect("az:// deletes conditionally");
        assert_eq!(deleter.container(), "c1");
        let lister = stores.raw_lister("c1").expect("lister").expect("az:// lists raw pages");
        assert_eq!(lister.scheme(), "az://");
        assert!(stores.bucket("c1").is_ok());
        assert!(Stores::memory().azure_deleter("c1").expect("memory").is_none());
        // No account: object_store refuses the configuration, at start, naming the scheme.
        let err = Stores::from_url_and_env("az://", StoreOptions::default(), Vec::new()).expect_err("no account");
        assert!(matches!(err, StoreError::Config { scheme: "az://", .. }), "{err}");
    }

    #[test]
    fn missing_local_bucket_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().display());
        let stores = Stores::from_url(&url, StoreOptions::default()).expect("url");
        assert!(matches!(stores.bucket("nope"), Err(StoreError::NoSuchBucket { .. })));
        std::fs::create_dir(dir.path().join("yes")).expect("mkdir");
        assert!(stores.bucket("yes").is_ok());
    }

    const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY-0xdeadbeef";

    #[test]
    fn s3_secrets_never_show_in_debug_or_display() {
        let vars = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", SECRET),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT", "http://127.0.0.1:1"),
            ("AWS_ALLOW_HTTP", "true"),
            ("HOME", "/not-kept"),
        ]);
        let stores = Stores::from_url_and_env("s3://", StoreOptions::default(), vars).expect("s3 config");
        let bucket = stores.bucket("b1").expect("bucket");
        for text in [format!("{stores:?}"), format!("{bucket:?}"), format!("{bucket}")] {
            assert!(!text.contains(SECRET), "secret printed: {text}");
        }
        let debug = format!("{stores:?}");
        assert!(debug.contains("AWS_SECRET_ACCESS_KEY"), "{debug}");
        assert!(!debug.contains("HOME"), "{debug}");
    }

    #[test]
    fn s3_client_settings_from_the_environment_survive_our_timeout() {
        // AWS_ALLOW_HTTP must not be dropped when the request timeout is applied: an
        // http:// endpoint is refused at request time otherwise.
        let vars =
            env(&[("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT", "http://127.0.0.1:1"), ("AWS_ALLOW_HTTP", "true")]);
        let stores = Stores::from_url_and_env("s3://", StoreOptions::default(), vars).expect("s3 config");
        let builder = stores.env.s3().with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "30s");
        assert_eq!(
            builder.get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp)).as_deref(),
            Some("true")
        );
    }

    /// A loopback listener that answers one request `200` and hands back its request line.
    fn one_answer() -> (u16, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("port").port();
        let seen = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream);
            let mut first = String::new();
            reader.read_line(&mut first).expect("request line");
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            reader.get_mut().write_all(answer).expect("answer");
            first.trim_end().to_owned()
        });
        (port, seen)
    }

    async fn get_versioning(stores: &Stores) -> Result<requests::WireAnswer, String> {
        let (endpoint, requests) = (stores.endpoint("b1").expect("endpoint"), stores.request_path().expect("path"));
        let url = format!("{}?versioning", endpoint.url);
        let get = || async { requests::request(http::Method::GET, &url, &[], bytes::Bytes::new()) };
        requests.send(&endpoint, RequestKind::Get, get).await
    }

    /// The requests the collector builds itself go out as `object_store`'s do: through the
    /// proxy the environment names, and over plain `http://` only where it is allowed.
    #[tokio::test]
    async fn our_own_requests_keep_the_environments_client_settings() {
        let (port, seen) = one_answer();
        let proxy = format!("http://127.0.0.1:{port}");
        let mut vars = vec![
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_ENDPOINT", "http://s3.gc-test.invalid"),
            ("AWS_ALLOW_HTTP", "true"),
        ];
        vars.push(("AWS_PROXY_URL", &proxy));
        let stores = Stores::from_url_and_env("s3://", StoreOptions::default(), env(&vars)).expect("s3 config");
        let answer = get_versioning(&stores).await.expect("answered through the proxy");
        assert_eq!(answer.status, http::StatusCode::OK);
        let line = seen.join().expect("proxy");
        assert_eq!(line, "GET http://s3.gc-test.invalid/b1?versioning HTTP/1.1", "the proxy saw the request");

        // Plain http:// to the listener itself, not allowed: refused before anything is sent.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().expect("port").port());
        vars.truncate(3);
        vars.push(("AWS_ENDPOINT", &endpoint));
        let vars = env(&vars);
        let stores = Stores::from_url_and_env("s3://", StoreOptions::default(), vars).expect("s3 config");
        let err = get_versioning(&stores).await.expect_err("http:// is not allowed");
        assert!(err.contains("scheme"), "{err}");
        assert!(listener.accept().is_err(), "a request reached the server");
        assert_eq!(stores.retries(), 0, "a refused scheme is not retried");
    }

    /// A request that gets no answer says why without its URL: an Azure SAS is in the query.
    #[tokio::test]
    async fn a_request_error_never_shows_the_signature_in_its_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://127.0.0.1:{}/devstoreaccount1", closed.local_addr().expect("port").port());
        drop(closed);
        let sas = format!("sv=2019-12-12&sr=c&sp=rdl&sig={SECRET}");
        let vars = env(&[
            ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
            ("AZURE_STORAGE_SAS_KEY", &sas),
            ("AZURE_STORAGE_ENDPOINT", &endpoint),
            ("AZURE_ALLOW_HTTP", "true"),
        ]);
        let options = StoreOptions { max_retries: 0, ..StoreOptions::default() };
        let stores = Stores::from_url_and_env("az://", options, vars).expect("az config");
        let (endpoint, requests) = (stores.endpoint("c1").expect("endpoint"), stores.request_path().expect("path"));
        let url = format!("{}?restype=container&comp=list", endpoint.url);
        let list = || async { requests::request(http::Method::GET, &url, &[], bytes::Bytes::new()) };
        let err = requests.send(&endpoint, RequestKind::ListPage, list).await.expect_err("nothing listens");
        assert!(err.contains("onnect"), "{err}");
        assert!(!err.contains(SECRET), "the signature was printed: {err}");
    }

    #[test]
    fn bad_remote_configuration_fails_at_startup_naming_the_scheme() {
        let vars = env(&[("AWS_REGION", "us-east-1"), ("AWS_ALLOW_HTTP", "maybe")]);
        let err = Stores::from_url_and_env("s3://", StoreOptions::default(), vars).expect_err("bad bool");
        assert!(matches!(err, StoreError::Config { scheme: "s3://", .. }), "{err}");
        let vars = env(&[("GOOGLE_SERVICE_ACCOUNT", "/nonexistent/sa.json")]);
        let err = Stores::from_url_and_env("gs://", StoreOptions::default(), vars).expect_err("missing file");
        assert!(err.to_string().contains("gs://"), "{err}");
    }

    /// The configuration fake-gcs-server needs (object_store's documented emulator setup):
    /// a service-account file with `disable_oauth` and `gcs_base_url`. Building reads the
    /// file and touches no network.
    #[test]
    fn gcs_builds_offline_from_a_service_account_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sa.json");
        let key = format!("-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n");
        let json = serde_json::json!({
            "gcs_base_url": "http://127.0.0.1:4443",
            "disable_oauth": true,
            "client_email": "gc@example.iam.gserviceaccount.com",
            "private_key": key,
            "private_key_id": "k1",
        });
        std::fs::write(&path, json.to_string()).expect("write sa");
        let sa = path.to_str().expect("utf-8 path");
        // The key itself in the environment (not only a file path): the configuration holds
        // the secret, so the checks below can fail.
        let inline = json.to_string();
        assert!(inline.contains(SECRET));
        let key_vars = env(&[("GOOGLE_SERVICE_ACCOUNT_KEY", &inline)]);
        for vars in [env(&[("GOOGLE_SERVICE_ACCOUNT", sa)]), env(&[("SERVICE_ACCOUNT", sa)]), key_vars] {
            let names: Vec<String> = vars.iter().map(|(k, _)| k.clone()).collect();
            let stores = Stores::from_url_and_env("gs://", StoreOptions::default(), vars).expect("gcs config");
            let debug = format!("{stores:?}");
            assert!(names.iter().all(|k| debug.contains(k.as_str())), "the settings are kept: {debug}");
            let bucket = stores.bucket("snapshots").expect("bucket");
            assert_eq!(stores.scheme(), "gs://");
            for text in [format!("{stores:?}"), format!("{bucket:?}"), format!("{bucket}")] {
                assert!(!text.contains(SECRET), "secret printed: {text}");
            }
            assert!(format!("{bucket}").contains("snapshots"), "{bucket}");
        }
    }
}
