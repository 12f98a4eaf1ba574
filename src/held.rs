//! Chunks held aside: on `file://` and `memory://` a delete renames the chunk aside first
//! (spec 9.1), so a run killed between the rename and the delete leaves it there. The next
//! run puts every held chunk back at its key before anything is listed (a dry run only
//! counts them), and a chunk a writer refreshed meanwhile is put back the same way: never
//! over a copy a writer made. Shared by the manifests stage (the snapshots folder), the
//! listing (each chunk location) and the execute stage.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, RenameOptions, RenameTargetMode};
use serde::Serialize;

use crate::exit::Exit;
use crate::locations::{Location, key_of_held};
use crate::store::{DeleteCondition, StoreError, Stores};

/// Moves a held chunk back to `key` without replacing what is there: a copy a writer made
/// meanwhile wins, and the held one is then deleted (chunks are content-addressed).
pub(crate) async fn put_back(store: &dyn ObjectStore, held: &Path, key: &Path) -> object_store::Result<()> {
    let create = RenameOptions { target_mode: RenameTargetMode::Create, ..RenameOptions::default() };
    match store.rename_opts(held, key, create).await {
        Err(object_store::Error::AlreadyExists { .. }) => match store.delete(held).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        },
        // Moved back already, by the first attempt of a retried rename.
        Err(gone @ object_store::Error::NotFound { .. }) => match store.head(key).await {
            Ok(_) => Ok(()),
            Err(_) => Err(gone),
        },
        done => done,
    }
}

/// What a run found held by an earlier run that was killed between renaming a chunk aside
/// and finishing it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct HeldFound {
    pub found: u64,
    pub put_back: u64,
}

impl HeldFound {
    /// Adds what another put-back found: the manifests' and the chunks' are both counted.
    pub(crate) fn add(&mut self, other: HeldFound) {
        self.found += other.found;
        self.put_back += other.put_back;
    }
}

/// Passes each location on to the listing once the chunks an earlier, killed run left
/// renamed aside in it are back at their keys (only counted in a dry run).
pub(crate) async fn put_back_before_listing(
    stores: &Stores,
    mut locations: tokio::sync::mpsc::UnboundedReceiver<(u32, Location)>,
    listing: tokio::sync::mpsc::UnboundedSender<(u32, Location)>,
    dry_run: bool,
) -> Result<HeldFound, HeldError> {
    let mut held = HeldFound::default();
    while let Some((index, location)) = locations.recv().await {
        held.add(put_back_held(stores, std::slice::from_ref(&location), dry_run).await?);
        if listing.send((index, location)).is_err() {
            break;
        }
    }
    Ok(held)
}

/// Puts back every chunk of `locations` an earlier, killed run left renamed aside (spec 9.1),
/// before anything is listed; with `dry_run`, only counts them (a dry run writes nothing).
pub(crate) async fn put_back_held(
    stores: &Stores,
    locations: &[Location],
    dry_run: bool,
) -> Result<HeldFound, HeldError> {
    let mut found = HeldFound::default();
    if stores.delete_condition() != DeleteCondition::RenameAside {
        return Ok(found);
    }
    for location in locations {
        let store = stores.bucket(location.bucket()).map_err(HeldError::Store)?;
        let prefix = Path::from(location.held_prefix());
        let held: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await.map_err(|source| HeldError::Io {
            bucket: location.bucket().to_owned(),
            key: prefix.to_string(),
            source,
        })?;
        for meta in held {
            found.found += 1;
            let Some(key) = key_of_held(meta.location.as_ref()) else { continue };
            if dry_run {
                continue;
            }
            put_back(store.as_ref(), &meta.location, &Path::from(key)).await.map_err(|source| HeldError::Io {
                bucket: location.bucket().to_owned(),
                key: meta.location.to_string(),
                source,
            })?;
            found.put_back += 1;
        }
    }
    if found.found > 0 {
        tracing::warn!(
            found = found.found,
            put_back = found.put_back,
            "chunks left renamed aside by an earlier run that was stopped{}",
            if dry_run { "; the next --execute puts them back" } else { ": put back" }
        );
    }
    Ok(found)
}

#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error(transparent)]
    Store(StoreError),
    #[error("bucket {bucket} key {key}: cannot put back a chunk an earlier run left renamed aside: {source}")]
    Io { bucket: String, key: String, source: object_store::Error },
}

impl HeldError {
    /// Chunks an earlier run left aside could not be listed or put back: the store failed,
    /// as a listing does (run again later), whichever stage met them.
    pub fn exit(&self) -> Exit {
        match self {
            HeldError::Store(_) | HeldError::Io { .. } => Exit::Listing,
        }
    }
}
