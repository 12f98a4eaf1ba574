//! The one request path of every request the collector builds itself (spec 10.2): raw list
//! pages, S3 versioning reads, conditional deletes, version deletes and their batches.
//!
//! One [`Requests`] per run (built once by [`super::Stores`]): one HTTP client, so one
//! connection pool for every bucket; each bucket reached at an [`Endpoint`] resolved once from
//! the configuration its `object_store` client uses, with one [`Auth`] (S3 SigV4, Azure
//! shared key / SAS / token, GCS bearer), all signed by `object_store`'s own signers and
//! credential providers. Its one [`Requests::send`] signs each attempt afresh, counts it by
//! kind ([`RequestKind`]), retries a transient answer (429, 5xx, a reset connection, a
//! timeout) under the run's whole policy (`--max-retries`, backoff), and records every retry
//! in the run's `store_retries` and every 429 / 503 in `throttled` (what the limiters of spec
//! 8.7 read).
//!
//! Below it sits a [`Transport`]: the HTTP client, or that client wrapped by a test's
//! [`RequestLayer`] ([`super::Stores::layered_requests`]), which may answer 503, 429 or a reset
//! in the server's place, exactly as `Stores::layered` wraps the `ObjectStore`s. A fault it
//! injects is retried and counted like a real one.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use object_store::ClientOptions;
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::azure::{AzureAuthorizer, AzureCredentialProvider};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, ReqwestConnector,
};
use object_store::gcp::GcpCredentialProvider;

use super::{RequestCounters, RetryPolicy};

/// A request as it goes on the wire: signed, its body whole.
pub type WireRequest = http::Request<Bytes>;

/// An answer, its body read whole. Any status is an answer; [`Requests::send`] retries the
/// transient ones.
#[derive(Debug, Clone)]
pub struct WireAnswer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl WireAnswer {
    /// The start of the body, for an error message.
    pub fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(512)]).into_owned()
    }
}

/// Why a request got no answer; `transient` when sending it again may work (a reset
/// connection, a timeout, a body cut short).
#[derive(Debug, Clone)]
pub struct WireError {
    pub transient: bool,
    pub why: String,
}

impl WireError {
    pub fn permanent(why: String) -> Self {
        Self { transient: false, why }
    }

    /// Transient as `object_store` retries it: a failed connect or send, a timeout, a
    /// connection cut mid-answer.
    fn from_http(e: &HttpError) -> Self {
        let transient = matches!(
            e.kind(),
            HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted
        );
        Self { transient, why: error_chain(e) }
    }
}

/// What a request is, as the bill counts it (spec 8.6, 10.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestKind {
    /// A list page (`list_pages`).
    ListPage,
    /// A read of a bucket's settings (`get`): S3 GetBucketVersioning.
    Get,
    /// A delete request of one key (`delete_calls`).
    Delete,
    /// A delete request of a batch of keys (`delete_calls` and `batch_requests`).
    Batch,
}

/// Sends signed requests: the run's HTTP client at the bottom, test layers above it.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    async fn send(&self, kind: RequestKind, request: WireRequest) -> Result<WireAnswer, WireError>;
}

/// Wraps the run's [`Transport`] (fault injection in tests; see
/// [`super::Stores::layered_requests`]).
pub type RequestLayer = Arc<dyn Fn(Arc<dyn Transport>) -> Arc<dyn Transport> + Send + Sync>;

/// The HTTP client: one per run, one connection pool for every bucket. Made by
/// `object_store`'s own connector from the client options the run's stores are built with
/// ([`super::remote::RemoteEnv::client_options`]), so these requests keep the operator's
/// proxy, certificates, `allow_http`, timeouts and user agent as `object_store`'s do.
#[derive(Debug, Clone)]
pub(crate) struct HttpTransport {
    client: HttpClient,
}

impl HttpTransport {
    pub fn new(options: &ClientOptions) -> Result<Self, object_store::Error> {
        Ok(Self { client: ReqwestConnector::default().connect(options)? })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, _kind: RequestKind, request: WireRequest) -> Result<WireAnswer, WireError> {
        let response =
            self.client.execute(request.map(HttpRequestBody::from)).await.map_err(|e| WireError::from_http(&e))?;
        let (parts, body) = response.into_parts();
        // A body cut short is worth asking for again, like a failed send.
        let body = body.bytes().await.map_err(|e| WireError { transient: true, why: error_chain(&e) })?;
        Ok(WireAnswer { status: parts.status, headers: parts.headers, body })
    }
}

/// `error` and its sources, as one line, each cause once (reqwest's own message is often
/// only "error sending request"; the cause is further down).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !line.contains(&cause_text) {
            line.push_str(": ");
            line.push_str(&cause_text);
        }
        source = cause.source();
    }
    line
}

/// How the requests to one bucket are authorized: `object_store`'s credentials of that
/// bucket, applied by `object_store`'s own signers.
pub(crate) enum Auth {
    S3 { region: String, credentials: AwsCredentialProvider },
    Azure { account: String, credentials: AzureCredentialProvider },
    Gcs { credentials: GcpCredentialProvider },
}

impl Auth {
    /// Signs `request` (its URL too: an Azure SAS adds query pairs).
    pub async fn sign(&self, request: &mut WireRequest) -> Result<(), WireError> {
        let credential_error = |e: object_store::Error| WireError::permanent(format!("credentials: {e}"));
        match self {
            Auth::Gcs { credentials } => {
                let credential = credentials.get_credential().await.map_err(credential_error)?;
                // An emulator configured with `disable_oauth` has an empty token: no header,
                // as `object_store` sends it.
                if !credential.bearer.is_empty() {
                    let value = http::HeaderValue::from_str(&format!("Bearer {}", credential.bearer))
                        .map_err(|e| WireError::permanent(format!("bearer token: {e}")))?;
                    request.headers_mut().insert(http::header::AUTHORIZATION, value);
                }
                Ok(())
            }
            Auth::S3 { region, credentials } => {
                let credential = credentials.get_credential().await.map_err(credential_error)?;
                let mut signed = as_http_request(request)?;
                AwsAuthorizer::new(&credential, "s3", region)
                    .try_authorize(&mut signed, None)
                    .map_err(|e| WireError::permanent(format!("signing: {e}")))?;
                *request.headers_mut() = signed.headers().clone();
                Ok(())
            }
            Auth::Azure { account, credentials } => {
                let credential = credentials.get_credential().await.map_err(credential_error)?;
                let mut signed = as_http_request(request)?;
                AzureAuthorizer::new(&credential, account)
                    .try_authorize(&mut signed)
                    .map_err(|e| WireError::permanent(format!("signing: {e}")))?;
                *request.uri_mut() = signed.uri().clone();
                *request.headers_mut() = signed.headers().clone();
                Ok(())
            }
        }
    }
}

/// `request` as `object_store`'s signers take it.
fn as_http_request(request: &WireRequest) -> Result<HttpRequest, WireError> {
    let mut builder = http::Request::builder().method(request.method().clone()).uri(request.uri().clone());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    builder.body(HttpRequestBody::from(request.body().clone())).map_err(|e| WireError::permanent(e.to_string()))
}

/// One bucket as the collector's own requests reach it, resolved once per run.
pub(crate) struct Endpoint {
    /// `s3://`, `gs://`, `az://`, for messages.
    pub scheme: &'static str,
    pub bucket: String,
    /// S3: the bucket's URL (virtual-hosted or path style); Azure: the container's URL; GCS:
    /// the API's base URL. No trailing `/`.
    pub url: String,
    pub auth: Auth,
}

/// Names the bucket only: the credentials inside are never printed.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({}{} at {})", self.scheme, self.bucket, self.url)
    }
}

/// The run's one request path. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Requests {
    transport: Arc<dyn Transport>,
    counters: Arc<RequestCounters>,
    /// The run's `store_retries`.
    retries: Arc<AtomicU64>,
    policy: RetryPolicy,
}

impl fmt::Debug for Requests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requests").field("transport", &self.transport).field("policy", &self.policy).finish()
    }
}

impl Requests {
    pub fn new(
        transport: Arc<dyn Transport>,
        counters: Arc<RequestCounters>,
        retries: Arc<AtomicU64>,
        policy: RetryPolicy,
    ) -> Self {
        Self { transport, counters, retries, policy }
    }

    pub fn counters(&self) -> &RequestCounters {
        &self.counters
    }

    /// Sends the request `build` makes, signed for `endpoint`, until an answer that is not
    /// transient or the policy's retries run out; that last answer, whatever its status.
    /// `build` is called again for every attempt (a batch signs its parts afresh), and every
    /// attempt is counted as `kind`. An error names what failed, not the bucket: the caller's
    /// error does.
    pub async fn send<F, Fut>(&self, endpoint: &Endpoint, kind: RequestKind, build: F) -> Result<WireAnswer, String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<WireRequest, WireError>>,
    {
        let mut retry = 0;
        loop {
            let outcome = match build().await {
                Ok(mut request) => match endpoint.auth.sign(&mut request).await {
                    Ok(()) => {
                        self.count(kind);
                        self.transport.send(kind, request).await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            let transient = match &outcome {
                Ok(answer) => {
                    if is_throttle_status(answer.status) {
                        self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    is_transient_status(answer.status)
                }
                Err(e) => e.transient,
            };
            if transient && retry < self.policy.max_retries {
                let wait = self.policy.backoff(retry);
                let why = match &outcome {
                    Ok(answer) => format!("HTTP {}", answer.status),
                    Err(e) => e.why.clone(),
                };
                tracing::debug!(
                    bucket = endpoint.bucket,
                    ?kind,
                    retry = retry + 1,
                    wait_ms = wait.as_millis() as u64,
                    why,
                    "retrying"
                );
                self.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                retry += 1;
                continue;
            }
            // A failure the retries could not get past says so: the store kept failing, it
            // was not asked once.
            return outcome.map_err(|e| if retry > 0 { format!("{} (after {retry} retries)", e.why) } else { e.why });
        }
    }
}

impl Requests {
    /// One request sent, in the bill (spec 8.6).
    fn count(&self, kind: RequestKind) {
        let counter = match kind {
            RequestKind::ListPage => &self.counters.list_pages,
            RequestKind::Get => &self.counters.get,
            RequestKind::Delete | RequestKind::Batch => &self.counters.delete_calls,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if kind == RequestKind::Batch {
            self.counters.batch_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// 429 and 503: the store asking to slow down (spec 8.7).
pub(crate) fn is_throttle_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
}

/// An answer worth asking for again: 408, 429, any 5xx.
pub(crate) fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// A request of `method` to `url` with `headers` and `body`, unsigned.
pub(crate) fn request(
    method: http::Method,
    url: &str,
    headers: &[(&'static str, &str)],
    body: Bytes,
) -> Result<WireRequest, WireError> {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).map_err(|e| WireError::permanent(format!("request to {url}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// Answers from a script, then 200.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: Mutex<VecDeque<Result<StatusCode, bool>>>,
    }

    #[async_trait]
    impl Transport for Scripted {
        async fn send(&self, _kind: RequestKind, _request: WireRequest) -> Result<WireAnswer, WireError> {
            let next = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
            match next.unwrap_or(Ok(StatusCode::OK)) {
                Ok(status) => Ok(WireAnswer { status, headers: http::HeaderMap::new(), body: Bytes::new() }),
                Err(transient) => Err(WireError { transient, why: "connection reset".into() }),
            }
        }
    }

    fn gcs_endpoint() -> Endpoint {
        let credentials: GcpCredentialProvider =
            Arc::new(object_store::StaticCredentialProvider::new(object_store::gcp::GcpCredential {
                bearer: "t0ken".into(),
            }));
        Endpoint {
            scheme: "gs://",
            bucket: "b".into(),
            url: "http://127.0.0.1:1".into(),
            auth: Auth::Gcs { credentials },
        }
    }

    fn quick(max_retries: usize) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            initial_backoff: std::time::Duration::from_millis(1),
            max_backoff: std::time::Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn transient_answers_are_retried_counted_and_throttles_noted() {
        let script = [
            Ok(StatusCode::SERVICE_UNAVAILABLE),
            Ok(StatusCode::TOO_MANY_REQUESTS),
            Err(true),
            Ok(StatusCode::INTERNAL_SERVER_ERROR),
            Ok(StatusCode::BAD_GATEWAY),
        ];
        let transport = Arc::new(Scripted { answers: Mutex::new(script.into_iter().collect()) });
        let (counters, retries) = (Arc::new(RequestCounters::default()), Arc::new(AtomicU64::new(0)));
        let requests = Requests::new(transport, Arc::clone(&counters), Arc::clone(&retries), quick(10));
        let endpoint = gcs_endpoint();
        let build = || async { request(http::Method::GET, "http://127.0.0.1:1/b/k", &[], Bytes::new()) };
        let answer = requests.send(&endpoint, RequestKind::ListPage, build).await.expect("an answer");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(retries.load(Ordering::Relaxed), 5, "every retry counted");
        let counts = counters.snapshot();
        assert_eq!((counts.list_pages, counts.throttled), (6, 2), "every attempt counted, 429 and 503 throttled");
    }

    #[tokio::test]
    async fn retries_run_out_and_permanent_answers_are_not_retried() {
        let transport = Arc::new(Scripted { answers: Mutex::new([Err(true), Err(true), Err(true)].into()) });
        let (counters, retries) = (Arc::new(RequestCounters::default()), Arc::new(AtomicU64::new(0)));
        let requests = Requests::new(transport, Arc::clone(&counters), Arc::clone(&retries), quick(2));
        let build = || async { request(http::Method::DELETE, "http://127.0.0.1:1/b/k", &[], Bytes::new()) };
        let error = requests.send(&gcs_endpoint(), RequestKind::Delete, build).await.expect_err("retries run out");
        assert_eq!(error, "connection reset (after 2 retries)");
        assert_eq!((retries.load(Ordering::Relaxed), counters.snapshot().delete_calls), (2, 3));

        let transport = Arc::new(Scripted { answers: Mutex::new([Ok(StatusCode::PRECONDITION_FAILED)].into()) });
        let requests = Requests::new(transport, Arc::clone(&counters), Arc::clone(&retries), quick(2));
        let answer = requests.send(&gcs_endpoint(), RequestKind::Delete, build).await.expect("an answer");
        assert_eq!(answer.status, StatusCode::PRECONDITION_FAILED, "a 412 is an answer, not retried");
        assert_eq!(retries.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn each_auth_signs_with_object_stores_signers() {
        let mut req =
            request(http::Method::GET, "http://127.0.0.1:1/b/o?prefix=p", &[], Bytes::new()).expect("request");
        gcs_endpoint().auth.sign(&mut req).await.expect("signed");
        assert_eq!(req.headers().get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer t0ken"));

        let credentials: AwsCredentialProvider =
            Arc::new(object_store::StaticCredentialProvider::new(object_store::aws::AwsCredential {
                key_id: "AKID".into(),
                secret_key: "secret".into(),
                token: None,
            }));
        let s3 = Auth::S3 { region: "us-east-1".into(), credentials };
        let body = Bytes::from_static(b"<Delete/>");
        let mut req =
            request(http::Method::POST, "http://127.0.0.1:1/b?delete", &[("content-md5", "x")], body).expect("request");
        s3.sign(&mut req).await.expect("signed");
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"), "{auth}");
        assert_eq!(req.headers().get("content-md5").and_then(|v| v.to_str().ok()), Some("x"), "headers kept");
        let sha = req.headers().get("x-amz-content-sha256").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_ne!(sha, "UNSIGNED-PAYLOAD");
        assert_eq!(sha.len(), 64, "the body's SHA-256: {sha}");
    }
}
