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
//! retries the others (a retried DELETE that finds the object gone counts as done).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use object_store::gcp::GcpCredentialProvider;
use reqwest::StatusCode;

use super::direct::{ConditionalDelete, SendError, plain_key, with_retry};
use super::{RequestCounters, RetryPolicy};

/// The XML API's default endpoint, as `object_store` uses it.
pub(crate) const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

#[derive(Debug, thiserror::Error)]
#[error("gs://{bucket}/{key}: conditional delete failed: {why}")]
pub(crate) struct GcsDeleteError {
    pub bucket: String,
    pub key: String,
    pub why: String,
}

/// Conditional deletes of one bucket.
#[derive(Debug, Clone)]
pub(crate) struct GcsDeleter {
    client: reqwest::Client,
    base_url: String,
    bucket: String,
    credentials: GcpCredentialProvider,
    counters: Arc<RequestCounters>,
    policy: RetryPolicy,
}

impl GcsDeleter {
    pub fn new(
        base_url: &str,
        bucket: &str,
        credentials: GcpCredentialProvider,
        counters: Arc<RequestCounters>,
        policy: RetryPolicy,
        timeout: std::time::Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            bucket: bucket.to_owned(),
            credentials,
            counters,
            policy,
        })
    }

    /// Deletes `key` only if its generation is still `generation` (and its metageneration
    /// `metageneration`, when one was read).
    pub async fn delete(
        &self,
        key: &str,
        generation: &str,
        metageneration: Option<&str>,
    ) -> Result<ConditionalDelete, GcsDeleteError> {
        let fail = |why: String| GcsDeleteError { bucket: self.bucket.clone(), key: key.to_owned(), why };
        if !plain_key(key) {
            return Err(fail("the key has characters this client does not encode".into()));
        }
        let url = format!("{}/{}/{key}", self.base_url, self.bucket);
        let (status, ()) = with_retry(self.policy, &self.counters, || async {
            self.counters.delete_calls.fetch_add(1, Ordering::Relaxed);
            Ok((self.send(&url, generation, metageneration).await?, ()))
        })
        .await
        .map_err(fail)?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => {
                self.counters.deleted_keys.fetch_add(1, Ordering::Relaxed);
                Ok(ConditionalDelete::Deleted)
            }
            StatusCode::NOT_FOUND => Ok(ConditionalDelete::Gone),
            // A new generation since the re-read (a writer refreshed it).
            StatusCode::PRECONDITION_FAILED => Ok(ConditionalDelete::Changed),
            status => Err(fail(format!("HTTP {status}"))),
        }
    }

    async fn send(&self, url: &str, generation: &str, metageneration: Option<&str>) -> Result<StatusCode, SendError> {
        let mut request = self.client.delete(url).header("x-goog-if-generation-match", generation);
        if let Some(metageneration) = metageneration {
            request = request.header("x-goog-if-metageneration-match", metageneration);
        }
        let credential =
            self.credentials.get_credential().await.map_err(|e| SendError::permanent(format!("credentials: {e}")))?;
        // An emulator configured with `disable_oauth` has an empty token: no header, as
        // `object_store` sends it.
        if !credential.bearer.is_empty() {
            request = request.bearer_auth(&credential.bearer);
        }
        let response = request.send().await.map_err(|e| SendError::from_reqwest(&e))?;
        Ok(response.status())
    }
}
