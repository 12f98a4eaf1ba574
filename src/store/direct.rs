//! The few requests `gc_partition` sends itself, beside `object_store`'s (GCS conditional
//! deletes, S3 versioning and version deletes): retried as the retry layer retries the
//! others, and counted.

use std::sync::atomic::Ordering;

use reqwest::StatusCode;

use super::{RequestCounters, RetryPolicy};

/// What a delete tied to the object the collector read did (spec 9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConditionalDelete {
    Deleted,
    /// 404: already gone, which counts as done (spec 4.6).
    Gone,
    /// The object is not the one read any more (GCS: 412, a new generation); kept.
    Changed,
}

/// Whether `key` needs no encoding in a request path: the collector's own keys (the id
/// alphabet and `/`). Anything else is refused rather than sent wrongly encoded.
pub(crate) fn plain_key(key: &str) -> bool {
    key.bytes().all(|b| b == b'/' || crate::ids::is_id_byte(b))
}

/// Why a request got no answer: `transient` when sending it again may work.
pub(crate) struct SendError {
    pub transient: bool,
    pub why: String,
}

impl SendError {
    pub fn permanent(why: String) -> Self {
        Self { transient: false, why }
    }

    pub(crate) fn from_reqwest(e: &reqwest::Error) -> Self {
        Self { transient: e.is_timeout() || e.is_connect() || e.is_request(), why: e.to_string() }
    }
}

/// Sends with `send` until an answer that is not transient (5xx, 429) or the policy's
/// retries run out; 429 and 503 answers are counted as throttled.
pub(crate) async fn with_retry<T, F, Fut>(
    policy: RetryPolicy,
    counters: &RequestCounters,
    mut send: F,
) -> Result<(StatusCode, T), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(StatusCode, T), SendError>>,
{
    let mut retry = 0;
    loop {
        let outcome = send().await;
        let transient = match &outcome {
            Ok((status, _)) => {
                let throttled = *status == StatusCode::TOO_MANY_REQUESTS || *status == StatusCode::SERVICE_UNAVAILABLE;
                if throttled {
                    counters.throttled.fetch_add(1, Ordering::Relaxed);
                }
                throttled || status.is_server_error()
            }
            Err(e) => e.transient,
        };
        if transient && retry < policy.max_retries {
            tokio::time::sleep(policy.backoff(retry)).await;
            retry += 1;
            continue;
        }
        return outcome.map_err(|e| e.why);
    }
}
