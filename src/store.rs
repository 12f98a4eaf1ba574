//! Store URL -> one `Arc<dyn ObjectStore>` per bucket. The only place that builds stores.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

mod local;
mod memory;
mod retry;
pub use local::{LocalBucket, SYMLINK_ETAG, first_link, open_no_links};
pub use memory::MemoryBucket;
pub use retry::{RetryPolicy, RetryStore, is_transient};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {0:?} is not file:///ABS/DIR, gs://, s3:// or memory://")]
    BadUrl(String),
    #[error("bucket {bucket}: no such directory {path}")]
    NoSuchBucket { bucket: String, path: PathBuf },
    #[error("bucket {bucket}: {source}")]
    Build { bucket: String, source: object_store::Error },
    #[error("bucket {bucket} key {key}: cannot set last-modified on this store: {why}")]
    Backdate { bucket: String, key: String, why: String },
}

/// Request settings an SRE may need to tune for remote stores.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub request_timeout: Duration,
    /// Retries of a failed request: inside the HTTP client of a remote store, and by the
    /// [`RetryStore`] every bucket is wrapped in (transient errors of any store).
    pub max_retries: usize,
    /// The [`RetryStore`]'s first wait; it doubles with every retry up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        Self {
            request_timeout: Duration::from_secs(30),
            max_retries: retry.max_retries,
            initial_backoff: retry.initial_backoff,
            max_backoff: retry.max_backoff,
        }
    }
}

impl StoreOptions {
    fn retry_policy(&self, backend: &Backend) -> RetryPolicy {
        // Remote stores already retry `max_retries` times inside their HTTP client: two more
        // rounds on top (for what it does not retry, such as a listing failing between
        // pages) keep the worst case from multiplying.
        let max_retries = match backend {
            Backend::Gcs | Backend::S3 => self.max_retries.min(2),
            Backend::Local(_) | Backend::Memory => self.max_retries,
        };
        RetryPolicy { max_retries, initial_backoff: self.initial_backoff, max_backoff: self.max_backoff }
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Local(PathBuf),
    Gcs,
    S3,
    Memory,
}

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
    buckets: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
    memory: Arc<Mutex<HashMap<String, Arc<MemoryBucket>>>>,
    layer: Option<Layer>,
    /// Retries made by the [`RetryStore`]s, for the report.
    retries: Arc<AtomicU64>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Stores {
    pub fn from_url(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
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
        } else if url == "memory://" || url == "memory:" {
            Backend::Memory
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        Ok(Self::with_backend(backend, options))
    }

    /// A fresh in-process store, for tests and benches.
    pub fn memory() -> Self {
        Self::with_backend(Backend::Memory, StoreOptions::default())
    }

    fn with_backend(backend: Backend, options: StoreOptions) -> Self {
        Self { backend, options, buckets: Arc::default(), memory: Arc::default(), layer: None, retries: Arc::default() }
    }

    /// The same buckets seen through `layer` (fault injection, call counting).
    pub fn layered(&self, layer: Layer) -> Self {
        Self { layer: Some(layer), buckets: Arc::default(), ..self.clone() }
    }

    /// How many requests the retry layer has repeated so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The directory of `bucket` when the store is `file://`.
    pub fn local_dir(&self, bucket: &str) -> Option<PathBuf> {
        match &self.backend {
            Backend::Local(root) => Some(root.join(bucket)),
            _ => None,
        }
    }

    /// The file behind `key` of `bucket` when the store is `file://`, for memory-mapping.
    /// Not checked for symbolic links: open it with [`Stores::open_local`].
    pub fn local_file(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        self.local_dir(bucket).map(|dir| dir.join(key))
    }

    /// Opens the file behind `key` of `bucket` when the store is `file://`, refusing one
    /// that is, or goes through, a symbolic link below the bucket directory.
    pub fn open_local(&self, bucket: &str, key: &str) -> Option<std::io::Result<std::fs::File>> {
        self.local_dir(bucket).map(|dir| open_no_links(&dir, key))
    }

    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    pub fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = buckets.get(bucket) {
            return Ok(Arc::clone(store));
        }
        // The backend, then the test layer (faults, counting), then the retries: injected
        // transient faults are retried like real ones.
        let mut store = self.build(bucket)?;
        if let Some(layer) = &self.layer {
            store = layer(bucket, store);
        }
        let policy = self.options.retry_policy(&self.backend);
        store = Arc::new(RetryStore::new(store, policy, Arc::clone(&self.retries)));
        buckets.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    fn build(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let build_err = |source| StoreError::Build { bucket: bucket.to_owned(), source };
        let retry = RetryConfig { max_retries: self.options.max_retries, ..RetryConfig::default() };
        let client = ClientOptions::new().with_timeout(self.options.request_timeout);
        Ok(match &self.backend {
            Backend::Local(root) => {
                let dir = root.join(bucket);
                if !dir.is_dir() {
                    return Err(StoreError::NoSuchBucket { bucket: bucket.to_owned(), path: dir });
                }
                Arc::new(LocalBucket::new(&dir).map_err(build_err)?)
            }
            Backend::Gcs => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(build_err)?,
            ),
            Backend::S3 => Arc::new(
                AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(build_err)?,
            ),
            Backend::Memory => self.memory_bucket(bucket),
        })
    }

    fn memory_bucket(&self, bucket: &str) -> Arc<MemoryBucket> {
        let mut memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(memory.entry(bucket.to_owned()).or_default())
    }

    /// Creates the bucket where the store allows it (`file://` directories, `memory://`).
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        match &self.backend {
            Backend::Local(root) => std::fs::create_dir_all(root.join(bucket)),
            Backend::Memory => {
                self.memory_bucket(bucket);
                Ok(())
            }
            Backend::Gcs | Backend::S3 => Ok(()),
        }
    }

    /// Makes an object look written at `when`: the file's mtime on `file://`, an override on
    /// `memory://`. Tests and `gc_synth` use it to age chunks.
    pub fn set_last_modified(&self, bucket: &str, key: &str, when: DateTime<Utc>) -> Result<(), StoreError> {
        let fail = |why: String| StoreError::Backdate { bucket: bucket.to_owned(), key: key.to_owned(), why };
        match &self.backend {
            Backend::Local(root) => set_mtime(&root.join(bucket).join(key), when).map_err(|e| fail(e.to_string())),
            Backend::Memory => {
                self.memory_bucket(bucket).set_last_modified(key, when);
                Ok(())
            }
            Backend::Gcs | Backend::S3 => Err(fail("only file:// and memory:// can be backdated".into())),
        }
    }
}

pub fn set_mtime(path: &FsPath, when: DateTime<Utc>) -> std::io::Result<()> {
    let mtime = filetime::FileTime::from_unix_time(when.timestamp(), when.timestamp_subsec_nanos());
    filetime::set_file_mtime(path, mtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(Stores::from_url("file:///tmp/x", StoreOptions::default()).is_ok());
        assert!(Stores::from_url("file://relative", StoreOptions::default()).is_err());
        assert!(Stores::from_url("memory://", StoreOptions::default()).is_ok());
        assert!(Stores::from_url("gs://", StoreOptions::default()).is_ok());
        assert!(Stores::from_url("s3://", StoreOptions::default()).is_ok());
        assert!(Stores::from_url("http://x", StoreOptions::default()).is_err());
    }

    #[test]
    fn missing_local_bucket_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().display());
        let stores = Stores::from_url(&url, StoreOptions::default()).expect("url");
        assert!(matches!(stores.bucket("nope"), Err(StoreError::NoSuchBucket { .. })));
        stores.create_bucket("yes").expect("mkdir");
        assert!(stores.bucket("yes").is_ok());
    }
}
