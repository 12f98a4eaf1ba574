//! Retries of transient store errors, for every backend.
//!
//! object_store retries only inside its HTTP clients (`gs://`, `s3://`); `file://` (an NFS
//! mount, a FUSE bucket) and anything a test injects get no retry there. [`RetryStore`]
//! wraps every bucket and retries, with capped exponential backoff, the calls the collector
//! makes and that are safe to repeat: reads (`get`, `head`), listings and deletes (a delete
//! is idempotent, and one that finds the object gone counts as done).
//!
//! A listing stream that fails half way is restarted, and nothing is lost or yielded twice:
//! - on a store that lists in key order (S3, GCS, memory), from just after the last key it
//!   yielded (`list_with_offset`), keeping only that key. Should such a store yield a key out
//!   of order, the listing cannot be resumed safely and its next failure is returned as is
//!   (fail closed: the run aborts before any delete);
//! - elsewhere (`file://` lists in directory order), from the beginning, skipping the objects
//!   already yielded, whose paths it keeps until the listing ends.
//!
//! Only errors that may go away are retried: not `NotFound`, `AlreadyExists`,
//! `Precondition`, `NotModified`, `PermissionDenied`, `Unauthenticated`, `NotSupported`,
//! `NotImplemented`, `InvalidPath` or configuration errors. Writes (`put`, `copy`, `rename`,
//! multipart) pass through unretried: the collector never makes them.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// How often and how patiently a failed call is repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: usize,
    /// The wait before the first retry; it doubles with every retry up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 10, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based), with up to 50% jitter added.
    pub(crate) fn backoff(&self, retry: usize) -> Duration {
        let base = self.initial_backoff.saturating_mul(1u32 << retry.min(20)).min(self.max_backoff);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.5);
        (base + jitter).min(self.max_backoff)
    }
}

/// Whether an error may go away if the same call is made again.
pub(crate) fn is_transient(error: &Error) -> bool {
    match error {
        Error::Generic { .. } | Error::JoinError { .. } => true,
        Error::NotFound { .. }
        | Error::InvalidPath { .. }
        | Error::NotSupported { .. }
        | Error::AlreadyExists { .. }
        | Error::Precondition { .. }
        | Error::NotModified { .. }
        | Error::NotImplemented { .. }
        | Error::PermissionDenied { .. }
        | Error::Unauthenticated { .. }
        | Error::UnknownConfigurationKey { .. } => false,
        // A variant added by a later object_store: assume it is permanent (fail closed).
        _ => false,
    }
}

/// Wraps a bucket's store and retries its transient errors (see the module docs).
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    retries: Arc<AtomicU64>,
    key_order: bool,
}

impl RetryStore {
    /// `retries` counts every retry made, for the report.
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy, retries: Arc<AtomicU64>) -> Self {
        Self { inner, policy, retries, key_order: false }
    }

    /// The store lists in key order (its API says so): a failed listing resumes after the
    /// last key it yielded instead of remembering every key.
    pub fn listing_in_key_order(mut self) -> Self {
        self.key_order = true;
        self
    }
}

impl fmt::Display for RetryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryStore({})", self.inner)
    }
}

/// Calls `call` until it succeeds, fails permanently or runs out of retries.
async fn with_retry<T, F, Fut>(policy: RetryPolicy, retries: &AtomicU64, what: &str, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut retry = 0;
    loop {
        match call().await {
            Err(e) if retry < policy.max_retries && is_transient(&e) => {
                let wait = policy.backoff(retry);
                tracing::debug!(what, retry = retry + 1, wait_ms = wait.as_millis() as u64, error = %e, "retrying");
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                retry += 1;
            }
            done => return done,
        }
    }
}

/// Deletes `paths` with one `delete_stream` call (one bulk request where the backend has
/// one), then retries: each path whose own result is a transient error, alone; or, when the
/// backend answered with fewer results than paths (a bulk request failing as a whole), the
/// whole batch, if its errors are transient. Deletes are idempotent, so repeating one that
/// took effect is harmless: the backend then says `Ok` or `NotFound` (both mean done).
async fn delete_batch(
    inner: &dyn ObjectStore,
    paths: Vec<Path>,
    policy: RetryPolicy,
    retries: &AtomicU64,
) -> Vec<Result<Path>> {
    let mut attempt = 0;
    loop {
        let input = stream::iter(paths.clone().into_iter().map(Ok)).boxed();
        let results: Vec<Result<Path>> = inner.delete_stream(input).collect().await;
        if results.len() == paths.len() {
            let mut out = Vec::with_capacity(results.len());
            for (path, result) in paths.iter().zip(results) {
                out.push(match result {
                    Err(e) if is_transient(&e) && policy.max_retries > 0 => {
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(policy.backoff(0)).await;
                        let again = RetryPolicy { max_retries: policy.max_retries - 1, ..policy };
                        with_retry(again, retries, "delete", || inner.delete(path)).await.map(|()| path.clone())
                    }
                    other => other,
                });
            }
            return out;
        }
        let all_transient = results.iter().all(|r| r.as_ref().err().is_none_or(is_transient));
        if !all_transient || attempt >= policy.max_retries {
            return results;
        }
        tracing::debug!(
            paths = paths.len(),
            results = results.len(),
            retry = attempt + 1,
            "bulk delete failed; retrying it"
        );
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(policy.backoff(attempt)).await;
        attempt += 1;
    }
}

/// State of a retried listing stream.
struct ListState {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    offset: Option<Path>,
    policy: RetryPolicy,
    retries: Arc<AtomicU64>,
    current: Option<BoxStream<'static, Result<ObjectMeta>>>,
    resume: Resume,
    /// Failures since the last object yielded.
    failures: usize,
    done: bool,
}

/// How a restarted listing avoids yielding an object twice.
enum Resume {
    /// Key order: restart after the last key yielded. `broken` once a key came out of order.
    /// `restarted_after` is the last key yielded before the latest restart: a store that
    /// ignores the offset (fake-gcs-server ignores `start-after`) lists those keys again, and
    /// they are dropped, not yielded twice.
    After { last: Option<Path>, restarted_after: Option<Path>, broken: bool },
    /// Any order: restart from the beginning and skip every location yielded so far.
    Skip(HashSet<Path>),
}

impl Resume {
    /// Whether `location` is new; records it.
    fn admit(&mut self, location: &Path) -> bool {
        match self {
            Resume::After { last, restarted_after, broken } => {
                if restarted_after.as_ref().is_some_and(|done| location <= done) {
                    return false;
                }
                if last.as_ref().is_some_and(|last| location <= last) {
                    *broken = true;
                } else {
                    *last = Some(location.clone());
                }
                true
            }
            Resume::Skip(seen) => seen.insert(location.clone()),
        }
    }

    /// Notes a restart: every key yielded so far is done.
    fn restart(&mut self) {
        if let Resume::After { last, restarted_after, .. } = self {
            restarted_after.clone_from(last);
        }
    }

    fn can_restart(&self) -> bool {
        !matches!(self, Resume::After { broken: true, .. })
    }

    fn yielded(&self) -> Option<usize> {
        match self {
            Resume::After { .. } => None,
            Resume::Skip(seen) => Some(seen.len()),
        }
    }
}

impl ListState {
    fn open(&self) -> BoxStream<'static, Result<ObjectMeta>> {
        let after_last = match &self.resume {
            Resume::After { last, .. } => last.as_ref(),
            Resume::Skip(_) => None,
        };
        // Every key yielded is after the caller's offset, so the last one supersedes it.
        match after_last.or(self.offset.as_ref()) {
            Some(offset) => self.inner.list_with_offset(self.prefix.as_ref(), offset),
            None => self.inner.list(self.prefix.as_ref()),
        }
    }

    async fn next(mut self) -> Option<(Result<ObjectMeta>, Self)> {
        if self.done {
            return None;
        }
        loop {
            let mut current = match self.current.take() {
                Some(current) => current,
                None => self.open(),
            };
            match current.next().await {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(meta)) => {
                    self.current = Some(current);
                    if self.resume.admit(&meta.location) {
                        self.failures = 0;
                        return Some((Ok(meta), self));
                    }
                }
                Some(Err(e))
                    if self.failures < self.policy.max_retries && is_transient(&e) && self.resume.can_restart() =>
                {
                    let wait = self.policy.backoff(self.failures);
                    tracing::debug!(
                        prefix = ?self.prefix,
                        retry = self.failures + 1,
                        already_listed = ?self.resume.yielded(),
                        error = %e,
                        "listing failed; restarting it"
                    );
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    self.failures += 1;
                    tokio::time::sleep(wait).await;
                    self.resume.restart();
                    // `current` is dropped: the next round opens a fresh listing.
                }
                Some(Err(e)) => {
                    if !self.resume.can_restart() {
                        tracing::warn!(prefix = ?self.prefix, "listing failed after the store listed keys out of order: not resumed");
                    }
                    self.done = true;
                    return Some((Err(e), self));
                }
            }
        }
    }
}

#[async_trait]
impl ObjectStore for RetryStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        with_retry(self.policy, &self.retries, "get", || self.inner.get_opts(location, options.clone())).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let (inner, policy, retries) = (Arc::clone(&self.inner), self.policy, Arc::clone(&self.retries));
        stream::once(async move {
            let input: Vec<Result<Path>> = locations.collect().await;
            let paths: Vec<Path> = input.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
            let mut deleted = delete_batch(inner.as_ref(), paths, policy, &retries).await.into_iter();
            // Input errors keep their places; the batch's results fill the others in order.
            let mut out: Vec<Result<Path>> = Vec::with_capacity(input.len());
            for r in input {
                match r {
                    Ok(_) => out.extend(deleted.next()),
                    Err(e) => out.push(Err(e)),
                }
            }
            out.extend(deleted);
            stream::iter(out)
        })
        .flatten()
        .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_from(prefix, None)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.list_from(prefix, Some(offset.clone()))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        with_retry(self.policy, &self.retries, "list_with_delimiter", || self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    /// Retried like a delete: a retry after a rename that did happen answers `NotFound`
    /// (or `AlreadyExists`), which the caller reads back (see `execute::delete_aside`).
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        with_retry(self.policy, &self.retries, "rename", || self.inner.rename_opts(from, to, options.clone())).await
    }
}

impl RetryStore {
    fn list_from(&self, prefix: Option<&Path>, offset: Option<Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let state = ListState {
            inner: Arc::clone(&self.inner),
            prefix: prefix.cloned(),
            offset,
            policy: self.policy,
            retries: Arc::clone(&self.retries),
            current: None,
            resume: if self.key_order {
                Resume::After { last: None, restarted_after: None, broken: false }
            } else {
                Resume::Skip(HashSet::new())
            },
            failures: 0,
            done: false,
        };
        stream::unfold(state, ListState::next).boxed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use std::sync::Mutex;

    /// Fails calls as scripted: `fail_next` transient failures of the next calls, and a
    /// listing that fails after `list_fail_after` objects on its first `list_failures` runs.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: InMemory,
        fail_next: Mutex<Vec<Error>>,
        list_failures: AtomicU64,
        list_fail_after: usize,
        calls: AtomicU64,
        /// Lists in reverse key order (a store breaking its key-order promise).
        reversed: bool,
        /// The offsets `list_with_offset` was called with.
        offsets: Mutex<Vec<String>>,
        /// Deletes of a missing key answer `NotFound` (as GCS and `file://` do), not `Ok`.
        gone_is_not_found: bool,
        /// `list_with_offset` lists from the start (fake-gcs-server ignores `start-after`).
        ignores_offset: bool,
        /// The next deletes take effect but their reply is lost (a transient error).
        lost_replies: AtomicU64,
    }

    impl fmt::Display for Flaky {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Flaky")
        }
    }

    fn transient() -> Error {
        Error::Generic { store: "flaky", source: "connection reset".into() }
    }

    impl Flaky {
        fn scripted(&self) -> Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.fail_next.lock().unwrap().pop() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
    }

    #[async_trait]
    impl ObjectStore for Flaky {
        async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.scripted()?;
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
            if let Err(e) = self.scripted() {
                return stream::once(async move { Err(e) }).boxed();
            }
            if !self.gone_is_not_found {
                return self.inner.delete_stream(locations);
            }
            let inner = self.inner.clone();
            let lose = self.lost_replies.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            locations
                .then(move |location| {
                    let inner = inner.clone();
                    async move {
                        let location = location?;
                        inner.head(&location).await?;
                        inner.delete(&location).await?;
                        if lose { Err(transient()) } else { Ok(location) }
                    }
                })
                .boxed()
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let inner = if self.reversed {
                let all = self.inner.list(prefix);
                stream::once(async move {
                    let mut all: Vec<Result<ObjectMeta>> = all.collect().await;
                    all.reverse();
                    stream::iter(all)
                })
                .flatten()
                .boxed()
            } else {
                self.inner.list(prefix)
            };
            let fail =
                self.list_failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            if fail {
                inner.take(self.list_fail_after).chain(stream::once(async { Err(transient()) })).boxed()
            } else {
                inner
            }
        }
        fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
            self.offsets.lock().unwrap().push(offset.to_string());
            if self.ignores_offset {
                return self.list(prefix);
            }
            let offset = offset.clone();
            self.list(prefix).try_filter(move |meta| std::future::ready(meta.location > offset)).boxed()
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.scripted()?;
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn quick(max_retries: usize) -> RetryPolicy {
        RetryPolicy { max_retries, initial_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(2) }
    }

    async fn flaky_with(objects: usize, list_fail_after: usize) -> Arc<Flaky> {
        flaky_listing(objects, list_fail_after, false).await
    }

    async fn flaky_listing(objects: usize, list_fail_after: usize, reversed: bool) -> Arc<Flaky> {
        let flaky = Flaky { list_fail_after, reversed, ..Flaky::default() };
        for i in 0..objects {
            flaky.inner.put(&Path::from(format!("d/{i:04}")), vec![1u8; 3].into()).await.unwrap();
        }
        Arc::new(flaky)
    }

    fn retry_store(flaky: &Arc<Flaky>, policy: RetryPolicy) -> (RetryStore, Arc<AtomicU64>) {
        let retries = Arc::new(AtomicU64::new(0));
        let inner: Arc<dyn ObjectStore> = flaky.clone();
        (RetryStore::new(inner, policy, Arc::clone(&retries)), retries)
    }

    #[tokio::test]
    async fn transient_read_errors_are_retried() {
        let flaky = flaky_with(1, 0).await;
        *flaky.fail_next.lock().unwrap() = vec![transient(), transient(), transient()];
        let (store, retries) = retry_store(&flaky, quick(3));
        let meta = store.head(&Path::from("d/0000")).await.unwrap();
        assert_eq!(meta.size, 3);
        assert_eq!(retries.load(Ordering::SeqCst), 3);
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn retries_run_out() {
        let flaky = flaky_with(1, 0).await;
        *flaky.fail_next.lock().unwrap() = vec![transient(), transient(), transient()];
        let (store, _) = retry_store(&flaky, quick(2));
        assert!(matches!(store.head(&Path::from("d/0000")).await, Err(Error::Generic { .. })));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let flaky = flaky_with(1, 0).await;
        let denied = || Error::PermissionDenied { path: "d/0000".into(), source: "no".into() };
        *flaky.fail_next.lock().unwrap() = vec![denied()];
        let (store, retries) = retry_store(&flaky, quick(5));
        assert!(matches!(store.delete(&Path::from("d/0000")).await, Err(Error::PermissionDenied { .. })));
        assert_eq!(retries.load(Ordering::SeqCst), 0);
        assert!(matches!(store.head(&Path::from("missing")).await, Err(Error::NotFound { .. })));
        assert_eq!(retries.load(Ordering::SeqCst), 0);
        assert!(is_transient(&transient()));
        assert!(!is_transient(&Error::Precondition { path: "x".into(), source: "etag".into() }));
    }

    #[tokio::test]
    async fn deletes_are_retried_and_gone_counts_as_done() {
        let flaky = flaky_with(2, 0).await;
        *flaky.fail_next.lock().unwrap() = vec![transient(), transient()];
        let (store, retries) = retry_store(&flaky, quick(3));
        store.delete(&Path::from("d/0000")).await.unwrap();
        store.delete(&Path::from("d/0000")).await.unwrap();
        assert_eq!(retries.load(Ordering::SeqCst), 2);
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        assert!(flaky.inner.head(&Path::from("d/0000")).await.is_err());
        assert!(flaky.inner.head(&Path::from("d/0001")).await.is_ok());
    }

    /// A delete that took effect but whose reply was lost is retried once; the retry finds
    /// the object gone (`NotFound`), and that is what is returned: done, not a failure to
    /// retry again nor an error of another kind.
    #[tokio::test]
    async fn a_retried_delete_that_finds_the_object_gone_reports_not_found() {
        let flaky = Arc::new(Flaky { gone_is_not_found: true, ..Flaky::default() });
        for i in 0..3 {
            flaky.inner.put(&Path::from(format!("d/{i:04}")), vec![1u8; 3].into()).await.unwrap();
        }
        flaky.lost_replies.store(1, Ordering::SeqCst);
        let (store, retries) = retry_store(&flaky, quick(3));
        let paths: Vec<Path> = (0..2).map(|i| Path::from(format!("d/{i:04}"))).collect();
        let input = stream::iter(paths.clone().into_iter().map(Ok)).boxed();
        let results: Vec<Result<Path>> = store.delete_stream(input).collect().await;
        assert_eq!(results.len(), 2, "{results:?}");
        for (path, result) in paths.iter().zip(&results) {
            assert!(
                matches!(result, Err(Error::NotFound { path: p, .. }) if p.contains(path.as_ref())),
                "{path}: {result:?}"
            );
        }
        assert_eq!(retries.load(Ordering::SeqCst), 2, "each lost reply retried once, NotFound never");
        assert!(matches!(store.delete(&Path::from("d/0000")).await, Err(Error::NotFound { .. })));
        assert_eq!(retries.load(Ordering::SeqCst), 2);
        assert!(flaky.inner.head(&Path::from("d/0002")).await.is_ok());
    }

    #[tokio::test]
    async fn a_bulk_delete_failing_as_a_whole_is_retried_as_one_call() {
        let flaky = flaky_with(4, 0).await;
        // The first bulk call answers with a single error for its three keys.
        *flaky.fail_next.lock().unwrap() = vec![transient()];
        let (store, retries) = retry_store(&flaky, quick(3));
        let paths: Vec<Path> = (0..3).map(|i| Path::from(format!("d/{i:04}"))).collect();
        let input = stream::iter(paths.clone().into_iter().map(Ok)).boxed();
        let done: Vec<Path> = store.delete_stream(input).try_collect().await.unwrap();
        assert_eq!(done, paths, "one result per path, in order");
        assert_eq!(retries.load(Ordering::SeqCst), 1);
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 2, "the batch stays one call per attempt");
        assert!(flaky.inner.head(&Path::from("d/0003")).await.is_ok());
        assert!(flaky.inner.head(&Path::from("d/0000")).await.is_err());
    }

    #[tokio::test]
    async fn a_listing_that_fails_half_way_is_restarted_without_loss_or_duplicates() {
        for key_order in [false, true] {
            for (fail_after, failures) in [(0, 1), (5, 1), (7, 3), (19, 2), (20, 1)] {
                restarted_listing_is_whole(key_order, fail_after, failures).await;
            }
        }
    }

    async fn restarted_listing_is_whole(key_order: bool, fail_after: usize, failures: u64) {
        let flaky = flaky_with(20, fail_after).await;
        flaky.list_failures.store(failures, Ordering::SeqCst);
        let (store, retries) = retry_store(&flaky, quick(3));
        let store = if key_order { store.listing_in_key_order() } else { store };
        let listed: Vec<ObjectMeta> = store.list(Some(&Path::from("d"))).try_collect().await.unwrap();
        let mut names: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "duplicates after {fail_after}/{failures}");
        assert_eq!(names, (0..20).map(|i| format!("d/{i:04}")).collect::<Vec<_>>(), "{fail_after}/{failures}");
        // A failure after the last object is still a failure of the stream (20 objects, then an error).
        assert_eq!(retries.load(Ordering::SeqCst), failures, "{fail_after}/{failures}");
        // In key order a restart resumes after the last key yielded, every time.
        let offsets = flaky.offsets.lock().unwrap().clone();
        let expected = match (key_order, fail_after) {
            (false, _) | (true, 0) => Vec::new(),
            (true, n) => vec![format!("d/{:04}", n - 1); failures as usize],
        };
        assert_eq!(offsets, expected, "key order {key_order}, {fail_after}/{failures}");
    }

    /// A key-ordered store that ignores the offset lists from the start again after a
    /// restart: the keys yielded before the restart are dropped, so each key comes once.
    #[tokio::test]
    async fn a_restart_on_a_store_ignoring_the_offset_yields_no_key_twice() {
        for (fail_after, failures) in [(5, 1), (7, 3), (19, 2)] {
            let flaky = Flaky { list_fail_after: fail_after, ignores_offset: true, ..Flaky::default() };
            for i in 0..20 {
                flaky.inner.put(&Path::from(format!("d/{i:04}")), vec![1u8; 3].into()).await.unwrap();
            }
            let flaky = Arc::new(flaky);
            flaky.list_failures.store(failures, Ordering::SeqCst);
            let (store, retries) = retry_store(&flaky, quick(3));
            let listed: Vec<ObjectMeta> =
                store.listing_in_key_order().list(Some(&Path::from("d"))).try_collect().await.unwrap();
            let names: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
            let expected: Vec<String> = (0..20).map(|i| format!("d/{i:04}")).collect();
            assert_eq!(names, expected, "{fail_after}/{failures}: every key once, in order");
            assert_eq!(retries.load(Ordering::SeqCst), failures);
        }
    }

    #[tokio::test]
    async fn a_store_breaking_key_order_is_not_resumed_after_a_failure() {
        // Keys come in reverse order, then the stream fails: resuming after the last key would
        // skip the 15 not yet listed (all before it), so the failure is returned instead.
        let flaky = flaky_listing(20, 5, true).await;
        flaky.list_failures.store(1, Ordering::SeqCst);
        let (store, retries) = retry_store(&flaky, quick(3));
        let listed: Result<Vec<ObjectMeta>> = store.listing_in_key_order().list(None).try_collect().await;
        assert!(matches!(listed, Err(Error::Generic { .. })), "{listed:?}");
        assert_eq!(retries.load(Ordering::SeqCst), 0);
        // Without the key-order promise the same store restarts and loses nothing.
        let flaky = flaky_listing(20, 5, true).await;
        flaky.list_failures.store(1, Ordering::SeqCst);
        let (store, _) = retry_store(&flaky, quick(3));
        let listed: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 20);
    }

    #[tokio::test]
    async fn a_listing_that_keeps_failing_reports_the_error() {
        let flaky = flaky_with(10, 4).await;
        flaky.list_failures.store(10, Ordering::SeqCst);
        let (store, _) = retry_store(&flaky, quick(2));
        let listed: Result<Vec<ObjectMeta>> = store.list(None).try_collect().await;
        assert!(matches!(listed, Err(Error::Generic { .. })));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn list_with_delimiter_is_retried() {
        let flaky = flaky_with(3, 0).await;
        *flaky.fail_next.lock().unwrap() = vec![transient()];
        let (store, retries) = retry_store(&flaky, quick(1));
        let top = store.list_with_delimiter(None).await.unwrap();
        assert_eq!(top.common_prefixes, vec![Path::from("d")]);
        assert_eq!(retries.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 30,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
        };
        assert!(policy.backoff(0) >= Duration::from_millis(10) && policy.backoff(0) <= Duration::from_millis(15));
        assert!(policy.backoff(3) >= Duration::from_millis(80));
        assert!(policy.backoff(29) <= Duration::from_millis(500));
    }
}
