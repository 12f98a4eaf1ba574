//! GCS deletes conditional on the generation the collector read (spec 9.1).
//!
//! `object_store` 0.14 has no conditional delete (its PR #610 is open), so this sends the XML
//! API's `DELETE /<bucket>/<key>` itself, with `x-goog-if-generation-match`, through the
//! same base URL and the same credentials as the bucket's `object_store` client (built from
//! the same environment, so an emulator is reached the same way). `google-cloud-storage`
//! has delete preconditions too, but it would bring a second HTTP stack, a second
//! credential chain and a second configuration to keep in step with `object_store`'s, for
//! one request.
//!
//! A failed precondition (412) is the chunk kept, not a failure. The requests are counted
//! with the store's other requests, and retried on transient answers as the retry layer
//! retries the others (a retried DELETE that finds the object gone counts as done): through
//! the run's one request path (`store/requests.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::StatusCode;

use super::direct::{ConditionalDelete, plain_key};
use super::requests::{Endpoint, RequestKind, Requests, request};

/// The XML API's default endpoint, as `object_store` uses it.
pub(crate) const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

#[derive(Debug, thiserror::Error)]
#[error("gs://{bucket}/{key}: conditional delete failed: {why}")]
pub(crate) struct GcsDeleteError {
    pub bucket: String,
    pub key: String,
    pub why: String,
}

/// Conditional deletes of one bucket, sent through the run's one request path.
#[derive(Debug, Clone)]
pub(crate) struct GcsDeleter {
    /// The bucket, its `url` the API's base URL.
    endpoint: Arc<Endpoint>,
    requests: Requests,
}

impl GcsDeleter {
    pub fn new(endpoint: Arc<Endpoint>, requests: Requests) -> Self {
        Self { endpoint, requests }
    }

    /// Deletes `key` only if its generation is still `generation` (and its metageneration
    /// `metageneration`, when one was read).
    pub async fn delete(
        &self,
        key: &str,
        generation: &str,
        metageneration: Option<&str>,
    ) -> Result<ConditionalDelete, GcsDeleteError> {
        let fail = |why: String| GcsDeleteError { bucket: self.endpoint.bucket.clone(), key: key.to_owned(), why };
        if !plain_key(key) {
            return Err(fail("the key has characters this client does not encode".into()));
        }
        let url = format!("{}/{}/{key}", self.endpoint.url, self.endpoint.bucket);
        let mut headers = vec![("x-goog-if-generation-match", generation)];
        if let Some(metageneration) = metageneration {
            headers.push(("x-goog-if-metageneration-match", metageneration));
        }
        let answer = self
            .requests
            .send(&self.endpoint, RequestKind::Delete, || async {
                request(http::Method::DELETE, &url, &headers, Bytes::new())
            })
            .await
            .map_err(fail)?;
        match answer.status {
            StatusCode::NO_CONTENT | StatusCode::OK => {
                self.requests.counters().deleted_keys.fetch_add(1, Ordering::Relaxed);
                Ok(ConditionalDelete::Deleted)
            }
            StatusCode::NOT_FOUND => Ok(ConditionalDelete::Gone),
            // A new generation since the re-read (a writer refreshed it).
            StatusCode::PRECONDITION_FAILED => Ok(ConditionalDelete::Changed),
            status => Err(fail(format!("HTTP {status}: {}", answer.excerpt()))),
        }
    }
}
