//! A simulated remote store, for benches: [`LatencyStore`] holds each call for the time a
//! remote store would take, per kind (list page, get, head, delete, bulk delete), deletes the
//! way object_store's GCS or S3 client does (single deletes 10 in flight per call, or bulk
//! requests of 1,000 keys), and can answer `503 Service Unavailable: SlowDown` above a request
//! rate, as S3 and GCS do when a bucket is pushed faster than it has scaled to.
//!
//! Selected only by the environment variable [`ENV`], read by the store builder and never by
//! the command line, so no bench knob leaks into the spec's flags:
//! `GC_PARTITION_SIM_LATENCY=gcs` or `=s3`, optionally followed by overrides,
//! `s3,throttle=1000,head=5ms` (keys: `list`, `get`, `head`, `delete`, `bulk_delete`,
//! durations as `30ms`; `throttle` in requests per second, a bulk delete counting one request
//! per key). It wraps any backend; on `file://` it also turns off the listing's direct
//! directory walk, so every listing goes through it.
//!
//! The profiles are round figures from the providers' published guidance, not measurements
//! of them:
//! - GCS-like: a list page of 1,000 objects 50 ms, reads 30 ms, metadata 20 ms, a delete
//!   30 ms ("tens of milliseconds", issue 12), deletes one request per key; a new bucket takes
//!   about 1,000 writes (deletes included) and 5,000 reads (listing included) per second
//!   before it scales (<https://cloud.google.com/storage/docs/request-rate>).
//! - S3-like: 100 ms per request, the low end of the "100-200 ms" small-object latency AWS
//!   gives (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html>),
//!   200 ms for a `DeleteObjects` of up to 1,000 keys; 3,500 writes and 5,500 reads per second
//!   per prefix (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html>),
//!   above which S3 answers 503 SlowDown.
//!
//! The throttle is off in both profiles unless `throttle=N` is given.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use tokio::time::Instant;

use gc_partition::store::{
    LIST_PAGE, Layer, RequestKind, RequestLayer, Stores, Transport, WireAnswer, WireError, WireRequest,
};

/// The environment variable that selects a simulated remote store (benches only).
pub const ENV: &str = "GC_PARTITION_SIM_LATENCY";

/// How a simulated store answers.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyProfile {
    pub name: String,
    pub list_page: Duration,
    pub get: Duration,
    pub head: Duration,
    pub delete: Duration,
    pub bulk_delete: Duration,
    /// `Some(n)`: deletes go in bulk requests of up to `n` keys (S3); `None`: one request
    /// per key, 10 in flight per `delete_stream` call (object_store's GCS client).
    pub bulk_keys: Option<usize>,
    /// Requests per second above which the store answers 503 SlowDown.
    pub throttle_above: Option<f64>,
}

/// In flight per `delete_stream` call when deletes are single: object_store's GCS client.
const SINGLE_DELETES_IN_FLIGHT: usize = 10;

impl LatencyProfile {
    pub fn gcs() -> Self {
        let ms = Duration::from_millis;
        Self {
            name: "gcs".into(),
            list_page: ms(50),
            get: ms(30),
            head: ms(20),
            delete: ms(30),
            bulk_delete: ms(30),
            bulk_keys: None,
            throttle_above: None,
        }
    }

    pub fn s3() -> Self {
        let ms = Duration::from_millis;
        Self {
            name: "s3".into(),
            list_page: ms(100),
            get: ms(100),
            head: ms(100),
            delete: ms(100),
            bulk_delete: ms(200),
            bulk_keys: Some(1000),
            throttle_above: None,
        }
    }

    /// Azure-like, for the collector's own requests (benches of the conditional paths): the
    /// GCS-like figures, and 200 ms for a Blob Batch of up to 256 deletes, as S3's bulk
    /// delete. An assumption, like the others: Azure publishes no per-request latency.
    pub fn az() -> Self {
        Self { name: "az".into(), bulk_delete: Duration::from_millis(200), bulk_keys: Some(256), ..Self::gcs() }
    }

    /// How long the store takes to answer a request the collector builds itself.
    fn answer_time(&self, kind: RequestKind) -> Duration {
        match kind {
            RequestKind::ListPage => self.list_page,
            RequestKind::Delete => self.delete,
            RequestKind::Batch => self.bulk_delete,
            _ => self.get,
        }
    }

    /// Parses the value of [`ENV`]: a profile name, then `key=value` overrides.
    pub fn parse(spec: &str) -> std::result::Result<Self, String> {
        let mut parts = spec.split(',').map(str::trim);
        let mut profile = match parts.next() {
            Some("gcs") => Self::gcs(),
            Some("s3") => Self::s3(),
            Some("az") => Self::az(),
            other => return Err(format!("{ENV}: unknown profile {other:?} (gcs, s3 or az)")),
        };
        for part in parts.filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("{ENV}: {part:?} is not key=value"))?;
            let duration = || humantime::parse_duration(value).map_err(|e| format!("{ENV}: {key}={value}: {e}"));
            match key {
                "list" => profile.list_page = duration()?,
                "get" => profile.get = duration()?,
                "head" => profile.head = duration()?,
                "delete" => profile.delete = duration()?,
                "bulk_delete" => profile.bulk_delete = duration()?,
                "throttle" => {
                    let rate: f64 = value.parse().map_err(|_| format!("{ENV}: throttle={value} is not a number"))?;
                    profile.throttle_above = (rate > 0.0).then_some(rate);
                }
                _ => return Err(format!("{ENV}: unknown key {key:?}")),
            }
        }
        Ok(profile)
    }
}

/// Requests started in the current one-second window, shared by every bucket of a store.
#[derive(Debug, Default)]
pub struct RequestWindow(Mutex<Option<(Instant, f64)>>);

impl RequestWindow {
    /// Counts `requests` more; whether they fit under `limit` per second.
    fn admit(&self, requests: f64, limit: Option<f64>) -> bool {
        let Some(limit) = limit else { return true };
        let mut window = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let (start, used) = match *window {
            Some((start, used)) if now.duration_since(start) < Duration::from_secs(1) => (start, used),
            _ => (now, 0.0),
        };
        let fits = used + requests <= limit;
        *window = Some((start, used + requests));
        fits
    }
}

fn slow_down() -> Error {
    Error::Generic {
        store: "simulated",
        source: "Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown</Code>".into(),
    }
}

/// Wraps a bucket's store with a [`LatencyProfile`] (see the module docs).
#[derive(Debug)]
pub struct LatencyStore {
    inner: Arc<dyn ObjectStore>,
    profile: Arc<LatencyProfile>,
    window: Arc<RequestWindow>,
}

impl LatencyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, profile: Arc<LatencyProfile>, window: Arc<RequestWindow>) -> Self {
        Self { inner, profile, window }
    }

    /// Holds one request for `wait`, then says whether the store accepts it.
    async fn request(&self, wait: Duration, requests: f64) -> Result<()> {
        tokio::time::sleep(wait).await;
        if self.window.admit(requests, self.profile.throttle_above) { Ok(()) } else { Err(slow_down()) }
    }

    /// A listing that takes one page's time before every 1,000 objects.
    fn paged(&self, inner: BoxStream<'static, Result<ObjectMeta>>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (profile, window) = (Arc::clone(&self.profile), Arc::clone(&self.window));
        stream::unfold((inner, 0u64, false), move |(mut inner, seen, failed)| {
            let (profile, window) = (Arc::clone(&profile), Arc::clone(&window));
            async move {
                if failed {
                    return None;
                }
                // The store answers a page at a time: the first page (even an empty one), then
                // one more for the object after every 1,000th.
                let next = inner.next().await;
                if seen.is_multiple_of(LIST_PAGE) && (seen == 0 || next.is_some()) {
                    tokio::time::sleep(profile.list_page).await;
                    if !window.admit(1.0, profile.throttle_above) {
                        return Some((Err(slow_down()), (inner, seen, true)));
                    }
                }
                let next = next?;
                Some((next, (inner, seen + 1, false)))
            }
        })
        .boxed()
    }
}

impl fmt::Display for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatencyStore({}, {})", self.profile.name, self.inner)
    }
}

#[async_trait]
impl ObjectStore for LatencyStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let wait = if options.head { self.profile.head } else { self.profile.get };
        self.request(wait, 1.0).await?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let (inner, profile, window) = (Arc::clone(&self.inner), Arc::clone(&self.profile), Arc::clone(&self.window));
        match profile.bulk_keys {
            Some(per) => locations
                .chunks(per.max(1))
                .then(move |chunk| {
                    let (inner, profile, window) = (Arc::clone(&inner), Arc::clone(&profile), Arc::clone(&window));
                    async move {
                        tokio::time::sleep(profile.bulk_delete).await;
                        if !window.admit(chunk.len() as f64, profile.throttle_above) {
                            // S3 fails the whole request: one error for every key of it.
                            return stream::iter(vec![Err(slow_down())]).boxed();
                        }
                        let results: Vec<Result<Path>> =
                            inner.delete_stream(stream::iter(chunk).boxed()).collect().await;
                        stream::iter(results).boxed()
                    }
                })
                .flatten()
                .boxed(),
            None => locations
                .map(move |location| {
                    let (inner, profile, window) = (Arc::clone(&inner), Arc::clone(&profile), Arc::clone(&window));
                    async move {
                        let location = location?;
                        tokio::time::sleep(profile.delete).await;
                        if !window.admit(1.0, profile.throttle_above) {
                            return Err(slow_down());
                        }
                        let mut done = inner.delete_stream(stream::once(async move { Ok(location) }).boxed());
                        done.next().await.unwrap_or_else(|| Err(slow_down()))
                    }
                })
                .buffered(SINGLE_DELETES_IN_FLIGHT)
                .boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.paged(self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.paged(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.request(self.profile.list_page, 1.0).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// The latencies of a profile around the requests the collector builds itself (spec 10.2:
/// raw list pages, conditional deletes, version deletes, their batches), as a
/// [`RequestLayer`] over the run's HTTP client: each request is held for its kind's time
/// before the server below answers it, and answered `503 SlowDown` above the throttle.
#[derive(Debug)]
pub struct LatencyTransport {
    inner: Arc<dyn Transport>,
    profile: Arc<LatencyProfile>,
    window: Arc<RequestWindow>,
}

#[async_trait]
impl Transport for LatencyTransport {
    async fn send(&self, kind: RequestKind, request: WireRequest) -> std::result::Result<WireAnswer, WireError> {
        tokio::time::sleep(self.profile.answer_time(kind)).await;
        if !self.window.admit(1.0, self.profile.throttle_above) {
            let body = bytes::Bytes::from_static(b"<Error><Code>SlowDown</Code></Error>");
            return Ok(WireAnswer { status: http::StatusCode::SERVICE_UNAVAILABLE, headers: Default::default(), body });
        }
        self.inner.send(kind, request).await
    }
}

/// A real server's stores (an emulator's) seen through `profile`: every bucket's
/// `ObjectStore` in a [`LatencyStore`], every request the collector builds in a
/// [`LatencyTransport`], one request window for both. The stores' own delete batching and
/// conditions stay the server's, so the production paths run as they do against it.
pub fn over_server(stores: &Stores, profile: LatencyProfile) -> Stores {
    let (profile, window) = (Arc::new(profile), Arc::new(RequestWindow::default()));
    let layer: Layer = {
        let (profile, window) = (Arc::clone(&profile), Arc::clone(&window));
        Arc::new(move |_bucket: &str, inner: Arc<dyn ObjectStore>| -> Arc<dyn ObjectStore> {
            Arc::new(LatencyStore::new(inner, Arc::clone(&profile), Arc::clone(&window)))
        })
    };
    let requests: RequestLayer = Arc::new(move |inner: Arc<dyn Transport>| -> Arc<dyn Transport> {
        Arc::new(LatencyTransport { inner, profile: Arc::clone(&profile), window: Arc::clone(&window) })
    });
    stores.layered(layer).layered_requests(requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use gc_partition::store::MemoryBucket;
    use object_store::ObjectStoreExt;

    async fn store(profile: LatencyProfile, objects: usize) -> LatencyStore {
        let bucket = Arc::new(MemoryBucket::default());
        for i in 0..objects {
            bucket.put(&Path::from(format!("d/{i:05}")), PutPayload::from_static(b"x")).await.unwrap();
        }
        LatencyStore::new(bucket, Arc::new(profile), Arc::default())
    }

    #[test]
    fn profiles_parse_with_overrides_and_refuse_unknown_keys() {
        let p = LatencyProfile::parse("s3,throttle=1000,head=5ms").unwrap();
        assert_eq!((p.bulk_keys, p.throttle_above, p.head), (Some(1000), Some(1000.0), Duration::from_millis(5)));
        assert_eq!(LatencyProfile::parse("gcs").unwrap(), LatencyProfile::gcs());
        assert!(LatencyProfile::parse("azure").is_err());
        assert!(LatencyProfile::parse("gcs,speed=9").is_err());
        assert!(LatencyProfile::parse("gcs,list=fast").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_takes_one_page_time_per_1000_objects() {
        let store = store(LatencyProfile::gcs(), 2500).await;
        let t0 = Instant::now();
        let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 2500);
        assert_eq!(Instant::now() - t0, Duration::from_millis(150));
        // Exactly one full page is one page, as S3 and GCS answer it (not truncated).
        let store = self::store(LatencyProfile::gcs(), 1000).await;
        let t0 = Instant::now();
        let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert_eq!((listed.len(), Instant::now() - t0), (1000, Duration::from_millis(50)));
    }

    #[tokio::test(start_paused = true)]
    async fn gcs_like_deletes_go_10_at_a_time_and_s3_like_in_bulk() {
        let keys = || stream::iter((0..100).map(|i| Ok(Path::from(format!("d/{i:05}"))))).boxed();
        let gcs = store(LatencyProfile::gcs(), 100).await;
        let t0 = Instant::now();
        let done: Vec<Path> = gcs.delete_stream(keys()).try_collect().await.unwrap();
        assert_eq!((done.len(), Instant::now() - t0), (100, Duration::from_millis(300)));
        let s3 = store(LatencyProfile::s3(), 100).await;
        let t0 = Instant::now();
        let done: Vec<Path> = s3.delete_stream(keys()).try_collect().await.unwrap();
        assert_eq!((done.len(), Instant::now() - t0), (100, Duration::from_millis(200)));
    }

    #[tokio::test(start_paused = true)]
    async fn above_the_rate_it_answers_slow_down_then_recovers_next_second() {
        let profile = LatencyProfile { throttle_above: Some(3.0), ..LatencyProfile::gcs() };
        let store = store(profile, 10).await;
        let mut outcomes = Vec::new();
        for i in 0..5 {
            outcomes.push(store.head(&Path::from(format!("d/{i:05}"))).await.is_ok());
        }
        assert_eq!(outcomes, [true, true, true, false, false]);
        let err = store.head(&Path::from("d/00000")).await.unwrap_err();
        assert!(gc_partition::store::is_throttle(&err), "{err}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(store.head(&Path::from("d/00001")).await.is_ok());
    }

    /// The server below: answers every request at once.
    #[derive(Debug)]
    struct Answering;

    #[async_trait]
    impl Transport for Answering {
        async fn send(&self, _: RequestKind, _: WireRequest) -> std::result::Result<WireAnswer, WireError> {
            Ok(WireAnswer { status: http::StatusCode::OK, headers: Default::default(), body: bytes::Bytes::new() })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_collectors_requests_wait_their_kinds_time_and_are_throttled_above_the_rate() {
        let profile = Arc::new(LatencyProfile::parse("az,throttle=2").unwrap());
        let transport = LatencyTransport { inner: Arc::new(Answering), profile, window: Arc::default() };
        let request = || http::Request::new(bytes::Bytes::new());
        let start = Instant::now();
        let batch = transport.send(RequestKind::Batch, request()).await.unwrap();
        assert_eq!((batch.status, start.elapsed()), (http::StatusCode::OK, Duration::from_millis(200)));
        let page = transport.send(RequestKind::ListPage, request()).await.unwrap();
        assert_eq!((page.status, start.elapsed()), (http::StatusCode::OK, Duration::from_millis(250)));
        let third = transport.send(RequestKind::Delete, request()).await.unwrap();
        assert_eq!(third.status, http::StatusCode::SERVICE_UNAVAILABLE, "a third request in the same second");
    }
}
