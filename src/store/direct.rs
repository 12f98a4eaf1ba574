//! What the deletes `gc_partition` sends itself (GCS conditional deletes, S3 version
//! deletes, Azure conditional deletes and their batches) answer, and which keys they can
//! name. They are sent, retried and counted by the run's one request path
//! (`store/requests.rs`).

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
