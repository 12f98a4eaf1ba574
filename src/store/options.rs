//! The request settings of a run's stores (`--request-timeout`, `--max-retries`, backoff).

use std::time::Duration;

use super::{Backend, RetryPolicy};

/// Request settings an SRE may need to tune for remote stores.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub request_timeout: Duration,
    /// Retries of a failed request: inside the HTTP client of a remote store, by the
    /// [`RetryStore`] every bucket is wrapped in (transient errors of any store), and of
    /// every request the collector builds itself (its one request path, spec 10.2).
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
    pub(super) fn retry_policy(&self, backend: &Backend) -> RetryPolicy {
        // Remote stores already retry `max_retries` times inside their HTTP client: two more
        // rounds on top (for what it does not retry, such as a listing failing between
        // pages) keep the worst case from multiplying. (The requests the collector builds
        // itself have no retries underneath: they get every one of `max_retries`.)
        let max_retries = match backend {
            Backend::Gcs | Backend::S3 | Backend::Azure => self.max_retries.min(2),
            Backend::Local(_) | Backend::Memory | Backend::Custom(_) => self.max_retries,
        };
        RetryPolicy { max_retries, initial_backoff: self.initial_backoff, max_backoff: self.max_backoff }
    }
}
