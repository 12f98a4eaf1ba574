//! The few requests `gc_partition` sends itself, beside `object_store`'s (GCS conditional
//! deletes, S3 versioning and version deletes): retried as the retry layer retries the
//! others, and counted.

use std::sync::atomic::Ordering;

use reqwest::StatusCode;

use super::{RequestCounters, RetryPolicy};

/// Why a request got no answer: `transient` when sending it again may work.
pub struct SendError {
    pub transient: bool,
    pub why: String,
}

impl SendError {
    pub fn permanent(why: String) -> Self {
        Self { transient: false, why }
    }

    pub fn from_reqwest(e: &reqwest::Error) -> Self {
        Self { transient: e.is_timeout() || e.is_connect() || e.is_request(), why: e.to_string() }
    }
}

/// Sends with `send` until an answer that is not transient (5xx, 429) or the policy's
/// retries run out; 429 and 503 answers are counted as throttled.
pub async fn with_retry<T, F, Fut>(
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
