//! The deletes tied to the version the listing returned (spec 10.1): one conditional DELETE
//! per chunk on GCS, `DeleteObjects` by version on a versioned S3 bucket, Blob Batches with
//! each blob's `If-Match` on Azure.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::ObjectMeta;

use crate::locations::Location;
use crate::store::{
    AzureDeleter, ConditionalDelete, DeleteCondition, GcsDeleter, S3Versions, StoreError, Stores, Version,
};

use super::{AZURE_BATCH, S3_BATCH};

/// The conditional delete of a bucket whose store has one (spec 9.1).
pub(crate) enum Conditional {
    /// GCS: `x-goog-if-generation-match` on the generation re-read.
    Generation(GcsDeleter),
    /// S3, versioning enabled: the version re-read is the one deleted.
    Version(S3Versions),
    /// Azure: `If-Match` on the ETag re-read.
    Etag(AzureDeleter),
}

impl Conditional {
    /// The most keys one request deletes: S3's `DeleteObjects` takes 1,000, Azure's Blob
    /// Batch 256; GCS deletes one object a request.
    pub(super) fn max_batch(&self) -> usize {
        match self {
            Conditional::Generation(_) => 1,
            Conditional::Version(_) => S3_BATCH,
            Conditional::Etag(_) => AZURE_BATCH,
        }
    }

    /// The version a re-read saw, as this store's delete names it. Fail closed: a GCS or
    /// Azure re-read without its generation or ETag sends no delete.
    pub(super) fn version_read(&self, key: &str, read: &ObjectMeta) -> Result<Version, String> {
        let (field, text) = match self {
            Conditional::Generation(_) => ("generation", read.version.as_deref()),
            // An object written before versioning was enabled has the version `null`, and
            // a writer's PUT now makes a new version: deleting `null` cannot remove it.
            Conditional::Version(_) => ("version", Some(read.version.as_deref().unwrap_or("null"))),
            Conditional::Etag(_) => ("ETag", read.e_tag.as_deref()),
        };
        text.and_then(Version::new).ok_or_else(|| format!("the re-read of {key} returned no {field}: not deleted"))
    }

    /// Deletes each (key, version) only if the object is still that version; one outcome
    /// per key, in order. A key's own failure is that key's only.
    pub(super) async fn delete(&self, batch: &[(&str, Version)]) -> Vec<Result<ConditionalDelete, String>> {
        match self {
            // One request a batch, each key under its own condition (spec 10.1).
            Conditional::Version(s3) => s3.delete_batch(batch).await,
            Conditional::Etag(azure) => azure.delete_batch(batch).await,
            Conditional::Generation(gcs) => {
                let mut outcomes = Vec::with_capacity(batch.len());
                for (key, version) in batch {
                    outcomes.push(match version.as_str() {
                        Some(version) => gcs.delete(key, version, None).await.map_err(|e| e.to_string()),
                        None => Err(format!("{key}: no version to condition the delete on: not deleted")),
                    });
                }
                outcomes
            }
        }
    }
}

/// The conditional deleter of each location's bucket, or `None` where deletes stay plain.
pub(super) async fn conditionals(
    stores: &Stores,
    locations: &[Location],
) -> Result<Vec<Option<Arc<Conditional>>>, StoreError> {
    let mut by_bucket: HashMap<&str, Option<Arc<Conditional>>> = HashMap::new();
    let mut out = Vec::with_capacity(locations.len());
    for location in locations {
        let bucket = location.bucket();
        if !by_bucket.contains_key(bucket) {
            let conditional = match stores.delete_condition() {
                DeleteCondition::GenerationMatch => stores.gcs_deleter(bucket)?.map(Conditional::Generation),
                DeleteCondition::VersionIfEnabled => stores.s3_versions(bucket).await?.map(Conditional::Version),
                DeleteCondition::EtagMatch => stores.azure_deleter(bucket)?.map(Conditional::Etag),
                DeleteCondition::RenameAside | DeleteCondition::Unconditional => None,
            };
            by_bucket.insert(bucket, conditional.map(Arc::new));
        }
        out.push(by_bucket[bucket].clone());
    }
    Ok(out)
}
