//! Counts the requests a bucket's store makes, for the request bill (spec 8.6).
//!
//! [`CountingStore`] wraps a bucket's store below the [`super::RetryStore`], so every attempt
//! the retry layer makes is counted. Retries made inside the HTTP client of a remote store
//! (object_store's `RetryConfig`, which repeats 5xx, 429 and timeouts) happen below it and
//! are not seen: the counts are the requests the collector asked for, retried by us or not,
//! a lower bound of what the provider bills.
//!
//! object_store's `list` stream does not show its pages, so a page is counted the way S3
//! (`ListObjectsV2`) and GCS (`objects.list`) paginate: one request for the first up to 1,000
//! objects of a listing and one more for every further 1,000 (an empty listing is still one
//! request). `list_with_delimiter` counts its objects and common prefixes the same way.
//!
//! `get_opts` with `head: true` (how `ObjectStoreExt::head` reads metadata) is a `head`;
//! any other `get_opts` is a `get`. A `delete_stream` call counts its keys in `deleted_keys`
//! and its requests in `delete_calls` by the backend's batching rule ([`DeleteBatching`]):
//! S3's `DeleteObjects` takes up to 1,000 keys, GCS (and `file://`, `memory://`) one key per
//! request.
//!
//! An answer that says the store is throttling (see [`is_throttle`]) is counted in
//! `throttled`: the signal the AIMD limiters ([`crate::throttle`]) read.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use serde::Serialize;

/// Objects per list page on S3 and GCS (their default and maximum page size).
pub const LIST_PAGE: u64 = 1000;

/// How a backend turns the keys of one `delete_stream` call into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteBatching {
    /// One request per key (GCS, `file://`, `memory://`).
    Single,
    /// One request per up to this many keys (S3 `DeleteObjects`: 1,000).
    Bulk(u64),
}

impl DeleteBatching {
    /// The most keys one request deletes.
    pub fn max_keys(self) -> usize {
        match self {
            DeleteBatching::Single => 1,
            DeleteBatching::Bulk(per) => usize::try_from(per.max(1)).unwrap_or(usize::MAX),
        }
    }

    /// Requests needed to delete `keys` keys given in one call.
    pub fn calls(self, keys: u64) -> u64 {
        match self {
            DeleteBatching::Single => keys,
            DeleteBatching::Bulk(per) => keys.div_ceil(per.max(1)),
        }
    }
}

/// Requests by kind, shared by every bucket of a [`super::Stores`].
#[derive(Debug, Default)]
pub struct RequestCounters {
    pub list_pages: AtomicU64,
    pub get: AtomicU64,
    pub head: AtomicU64,
    pub delete_calls: AtomicU64,
    pub deleted_keys: AtomicU64,
    /// Delete requests that carried a batch (S3 `DeleteObjects`, Azure Blob Batch), also
    /// counted in `delete_calls`.
    pub batch_requests: AtomicU64,
    pub throttled: AtomicU64,
}

/// A snapshot of [`RequestCounters`], as the report carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RequestCounts {
    pub list_pages: u64,
    pub get: u64,
    pub head: u64,
    pub delete_calls: u64,
    pub deleted_keys: u64,
    /// Of the delete calls, those that carried a batch of keys (spec 10.1).
    pub batch_requests: u64,
    /// Answers that said the store was throttling (429, 503 SlowDown), retried or not.
    pub throttled: u64,
}

impl RequestCounters {
    pub fn snapshot(&self) -> RequestCounts {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestCounts {
            list_pages: load(&self.list_pages),
            get: load(&self.get),
            head: load(&self.head),
            delete_calls: load(&self.delete_calls),
            deleted_keys: load(&self.deleted_keys),
            batch_requests: load(&self.batch_requests),
            throttled: load(&self.throttled),
        }
    }
}

impl RequestCounts {
    /// The requests made since `before`.
    pub fn since(self, before: RequestCounts) -> RequestCounts {
        RequestCounts {
            list_pages: self.list_pages.saturating_sub(before.list_pages),
            get: self.get.saturating_sub(before.get),
            head: self.head.saturating_sub(before.head),
            delete_calls: self.delete_calls.saturating_sub(before.delete_calls),
            deleted_keys: self.deleted_keys.saturating_sub(before.deleted_keys),
            batch_requests: self.batch_requests.saturating_sub(before.batch_requests),
            throttled: self.throttled.saturating_sub(before.throttled),
        }
    }
}

/// Whether `error` is a store saying "slow down": HTTP 429, 503, or the S3 / GCS error codes
/// for it. object_store keeps the status in a `RetryError` that is not public, so the error
/// chain's text is read; the phrases are `http::StatusCode`'s own rendering ("503 Service
/// Unavailable") and the providers' codes, never a bare number (a chunk key in the message
/// may contain "503").
pub fn is_throttle(error: &Error) -> bool {
    const SIGNS: [&str; 6] = [
        "429 Too Many Requests",
        "503 Service Unavailable",
        "SlowDown",
        "TooManyRequests",
        "rateLimitExceeded",
        "RequestLimitExceeded",
    ];
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if SIGNS.iter().any(|sign| text.contains(sign)) {
            return true;
        }
        current = e.source();
    }
    false
}

/// Counts one bucket's requests into shared counters (see the module docs).
#[derive(Debug)]
pub(crate) struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<RequestCounters>,
    batching: DeleteBatching,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, counters: Arc<RequestCounters>, batching: DeleteBatching) -> Self {
        Self { inner, counters, batching }
    }

    fn note<T>(&self, result: &Result<T>) {
        if let Err(e) = result
            && is_throttle(e)
        {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counted_list(&self, stream: BoxStream<'static, Result<ObjectMeta>>) -> BoxStream<'static, Result<ObjectMeta>> {
        let counters = Arc::clone(&self.counters);
        // The first page is requested whether or not it holds anything.
        counters.list_pages.fetch_add(1, Ordering::Relaxed);
        let mut seen = 0u64;
        stream
            .map(move |item| {
                match &item {
                    Ok(_) => {
                        seen += 1;
                        if seen > 1 && (seen - 1).is_multiple_of(LIST_PAGE) {
                            counters.list_pages.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) if is_throttle(e) => {
                        counters.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
                item
            })
            .boxed()
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let counter = if options.head { &self.counters.head } else { &self.counters.get };
        counter.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.get_opts(location, options).await;
        self.note(&result);
        result
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let (counters, batching) = (Arc::clone(&self.counters), self.batching);
        let mut keys = 0u64;
        let input = locations
            .inspect(move |location| {
                if location.is_ok() {
                    keys += 1;
                    counters.deleted_keys.fetch_add(1, Ordering::Relaxed);
                    // The key that opens a new request.
                    if batching.calls(keys) > batching.calls(keys - 1) {
                        counters.delete_calls.fetch_add(1, Ordering::Relaxed);
                        if matches!(batching, DeleteBatching::Bulk(_)) {
                            counters.batch_requests.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
            .boxed();
        let counters = Arc::clone(&self.counters);
        self.inner
            .delete_stream(input)
            .inspect(move |result| {
                if let Err(e) = result
                    && is_throttle(e)
                {
                    counters.throttled.fetch_add(1, Ordering::Relaxed);
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counted_list(self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counted_list(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let result = self.inner.list_with_delimiter(prefix).await;
        self.note(&result);
        let entries = result.as_ref().map_or(0, |r| (r.objects.len() + r.common_prefixes.len()) as u64);
        self.counters.list_pages.fetch_add(entries.div_ceil(LIST_PAGE).max(1), Ordering::Relaxed);
        result
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBucket;
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;

    async fn bucket_with(n: usize) -> Arc<dyn ObjectStore> {
        let bucket = Arc::new(MemoryBucket::default());
        for i in 0..n {
            bucket.put(&Path::from(format!("d/{i:06}")), PutPayload::from_static(b"x")).await.unwrap();
        }
        bucket
    }

    #[tokio::test]
    async fn list_pages_follow_the_1000_object_page_rule() {
        let counters = Arc::new(RequestCounters::default());
        for (objects, pages) in [(0, 1), (1, 1), (1000, 1), (1001, 2), (2500, 3)] {
            let before = counters.snapshot();
            let store = CountingStore::new(bucket_with(objects).await, Arc::clone(&counters), DeleteBatching::Single);
            let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
            assert_eq!(listed.len(), objects);
            assert_eq!(counters.snapshot().since(before).list_pages, pages, "{objects} objects");
        }
    }

    #[tokio::test]
    async fn heads_gets_and_deletes_are_counted_by_kind_and_batching() {
        for (batching, calls) in [(DeleteBatching::Single, 2500), (DeleteBatching::Bulk(1000), 3)] {
            let counters = Arc::new(RequestCounters::default());
            let store = CountingStore::new(bucket_with(2500).await, Arc::clone(&counters), batching);
            store.head(&Path::from("d/000001")).await.unwrap();
            store.get(&Path::from("d/000002")).await.unwrap().bytes().await.unwrap();
            assert!(store.head(&Path::from("missing")).await.is_err());
            let keys = futures::stream::iter((0..2500).map(|i| Ok(Path::from(format!("d/{i:06}"))))).boxed();
            let deleted: Vec<Path> = store.delete_stream(keys).try_collect().await.unwrap();
            assert_eq!(deleted.len(), 2500);
            let counts = counters.snapshot();
            assert_eq!((counts.head, counts.get), (2, 1));
            assert_eq!((counts.delete_calls, counts.deleted_keys), (calls, 2500));
            assert_eq!(counts.throttled, 0);
        }
    }

    #[test]
    fn throttle_answers_are_recognised_by_phrase_not_by_number() {
        let generic = |text: &str| Error::Generic { store: "S3", source: text.to_owned().into() };
        assert!(is_throttle(&generic("Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown")));
        assert!(is_throttle(&generic("Server returned non-2xx status code: 429 Too Many Requests")));
        assert!(is_throttle(&generic("DeleteObjects request failed for key a/1: SlowDown")));
        assert!(!is_throttle(&generic("Error performing GET http://x/b/50/503ab: connection reset")));
        assert!(!is_throttle(&Error::NotFound { path: "429".into(), source: "gone".into() }));
    }
}
