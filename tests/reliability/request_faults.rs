//! Spec 10.2 through the real pipeline (`gc::run`, in-process) on the emulators: every request
//! the collector builds itself (raw list pages, conditional deletes, version deletes and their
//! batches) goes through the run's one request path, wrapped here by a layer
//! ([`Stores::layered_requests`]) that answers the first 5 attempts of each distinct request
//! with a transient failure (503, 429, a reset connection, 500, 503), in the server's place.
//! With the default `--max-retries` (10) the run completes, collects the garbage, loses
//! nothing, and counts every injected failure in `store_retries` (and the 429 / 503 ones in
//! `throttled`). Quick backoff: the retries, not their waits, are under test.
//!
//! `gs://` (fake-gcs-server): list pages and single conditional deletes (the listed
//! generation). `az://` (Azurite): list pages and Blob Batches. Ignored unless the server's
//! variable was set at build time (`scripts/test` sets them).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use common::{Backend, EXACT_FPR, Fixture, chunk_name, partition, runtime};
use gc_partition::cli::Args;
use gc_partition::config::Config;
use gc_partition::gc::{self, Progress, Stop};
use gc_partition::report::Report;
use gc_partition::store::{
    RequestKind, RequestLayer, StoreOptions, Stores, Transport, WireAnswer, WireError, WireRequest,
};

/// Transient failures of each distinct request before it is let through.
const FAILURES: u64 = 5;

/// Answers the first [`FAILURES`] attempts of each distinct request (method and URL) with a
/// transient failure, then lets it through to the server.
struct Flaky {
    inner: Arc<dyn Transport>,
    attempts: Mutex<HashMap<String, u64>>,
    injected: Arc<AtomicU64>,
    throttles: Arc<AtomicU64>,
    /// Injected failures by kind of request.
    by_kind: Arc<Mutex<HashMap<String, u64>>>,
}

impl fmt::Debug for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flaky({:?})", self.inner)
    }
}

#[async_trait]
impl Transport for Flaky {
    async fn send(&self, kind: RequestKind, request: WireRequest) -> Result<WireAnswer, WireError> {
        let id = format!("{} {}", request.method(), request.uri());
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        if attempt > FAILURES {
            return self.inner.send(kind, request).await;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        *self.by_kind.lock().unwrap().entry(format!("{kind:?}")).or_insert(0) += 1;
        let status = match attempt {
            1 | 5 => http::StatusCode::SERVICE_UNAVAILABLE,
            2 => http::StatusCode::TOO_MANY_REQUESTS,
            3 => return Err(WireError { transient: true, why: "connection reset by peer (injected)".into() }),
            _ => http::StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status != http::StatusCode::INTERNAL_SERVER_ERROR {
            self.throttles.fetch_add(1, Ordering::Relaxed);
        }
        Ok(WireAnswer { status, headers: http::HeaderMap::new(), body: bytes::Bytes::from_static(b"injected") })
    }
}

struct Injected {
    total: Arc<AtomicU64>,
    throttles: Arc<AtomicU64>,
    by_kind: Arc<Mutex<HashMap<String, u64>>>,
}

fn flaky() -> (RequestLayer, Injected) {
    let injected = Injected { total: Arc::default(), throttles: Arc::default(), by_kind: Arc::default() };
    let (total, throttles, by_kind) =
        (Arc::clone(&injected.total), Arc::clone(&injected.throttles), Arc::clone(&injected.by_kind));
    let layer: RequestLayer = Arc::new(move |inner| -> Arc<dyn Transport> {
        Arc::new(Flaky {
            inner,
            attempts: Mutex::default(),
            injected: Arc::clone(&total),
            throttles: Arc::clone(&throttles),
            by_kind: Arc::clone(&by_kind),
        })
    });
    (layer, injected)
}

/// One `--execute --verify` run of the fixture's partition, in-process, on `stores`.
fn run(fx: &Fixture, stores: &Stores) -> Report {
    let live = fx.live_path.to_str().unwrap();
    let argv = [
        "gc_partition",
        "--partition",
        &fx.partition,
        "--live-snapshots",
        live,
        "--cutoff",
        "7d",
        "--store",
        &fx.url,
        "--execute",
        "--verify",
        "--bloom-fpr",
        EXACT_FPR,
    ];
    let config = Config::from_args(&Args::try_parse_from(argv).unwrap(), chrono::Utc::now()).unwrap();
    runtime().block_on(gc::run(stores, &config, &Stop::default(), &Progress::default()))
}

fn five_transient_answers_per_request(backend: &Backend, scheme: &str) {
    let fx = partition(backend, |c| c.seed = 41);
    let sets = fx.summary.sets.clone().unwrap();
    // The default --max-retries, quick waits.
    let options = StoreOptions {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..StoreOptions::default()
    };
    assert_eq!(options.max_retries, 10);
    let (layer, injected) = flaky();
    let stores = Stores::from_url_and_env(scheme, options, backend.env()).unwrap().layered_requests(layer);
    let report = run(&fx, &stores);
    assert_eq!(report.exit_code, 0, "{:?}", report.error);
    let by_kind = injected.by_kind.lock().unwrap().clone();
    let total = injected.total.load(Ordering::Relaxed);
    assert!(by_kind.get("ListPage").is_some_and(|n| *n >= FAILURES), "list pages faulted: {by_kind:?}");
    let deletes = by_kind.get("Delete").copied().unwrap_or(0) + by_kind.get("Batch").copied().unwrap_or(0);
    assert!(deletes >= FAILURES, "conditional deletes faulted: {by_kind:?}");
    // Every injected failure was retried, and counted; nothing else failed.
    assert!(report.store_retries >= total, "store_retries {} < {total} injected", report.store_retries);
    let bill = report.requests.clone().expect("requests");
    assert!(bill.counts.throttled >= injected.throttles.load(Ordering::Relaxed), "{bill:?}");
    assert_eq!(report.deleted, sets.garbage.len() as u64, "every garbage chunk collected");
    assert_eq!(bill.counts.head, 0, "the listing's versions condition every delete: no re-read");
    eprintln!(
        "{scheme}: injected {total} ({by_kind:?}); store_retries {}; requests {:?}; per deleted chunk {:?}",
        report.store_retries, bill.counts, bill.per_deleted_chunk
    );
    for (location, id) in sets.referenced.iter().chain(&sets.young) {
        assert!(fx.exists(location.bucket(), &location.chunk_key(id)), "{} was deleted", chunk_name(location, id));
    }
    for (bucket, key) in &sets.foreign {
        assert!(fx.exists(bucket, key), "foreign object {bucket}/{key} was deleted");
    }
    for (location, id) in &sets.garbage {
        assert!(!fx.exists(location.bucket(), &location.chunk_key(id)), "{} was kept", chunk_name(location, id));
    }
}

#[test]
#[cfg_attr(not(gc_test_gcs), ignore = "no test server: scripts/test starts fake-gcs-server")]
fn gcs_list_pages_and_conditional_deletes_survive_five_transient_answers() {
    five_transient_answers_per_request(&Backend::gcs(), "gs://");
}

#[test]
#[cfg_attr(not(gc_test_az), ignore = "no test server: scripts/test starts Azurite")]
fn azure_list_pages_and_blob_batches_survive_five_transient_answers() {
    five_transient_answers_per_request(&Backend::az(), "az://");
}
