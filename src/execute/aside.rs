//! The compare-and-delete of `file://` and `memory://` (spec 9.1): each chunk renamed aside,
//! where no writer reaches it, re-read there, then deleted or put back.

use std::collections::HashMap;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, RenameOptions};
use tokio_util::sync::CancellationToken;

use crate::held::put_back;
use crate::listing::ListedChunk;
use crate::locations::{Location, held_key};
use crate::plan::Reread;
use crate::store::Stores;
use crate::store::{AsideOutcome, LocalAside};

use super::Permits;

/// The `file://` compare-and-delete of each location's bucket, one per bucket: the locations
/// of a bucket share its workers and its open directories (the held folder's among them).
pub(super) fn local_asides(stores: &Stores, locations: &[Location]) -> Vec<Option<LocalAside>> {
    let mut by_bucket: HashMap<&str, Option<LocalAside>> = HashMap::new();
    let mut out = Vec::with_capacity(locations.len());
    for location in locations {
        let bucket = location.bucket();
        out.push(by_bucket.entry(bucket).or_insert_with(|| stores.local_aside(bucket)).clone());
    }
    out
}

/// What became of one chunk deleted by renaming it aside.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Aside {
    Deleted {
        bytes: u64,
    },
    /// Not at its key any more when the rename was tried: done (spec 4.6).
    AlreadyGone,
    /// Refreshed before the rename: put back (or a writer's new copy was there already).
    Kept,
    NotStarted,
    Failed(String),
}

/// Renames the chunk at `key` aside, where no writer reaches it, reads its last-modified
/// there, and deletes it if still old; otherwise puts it back. Once renamed, a chunk is
/// always finished (deleted or put back), whatever signal arrives. On `file://` without a
/// test layer the store does it all in one blocking call ([`LocalAside`]).
pub(super) async fn delete_aside(
    store: &dyn ObjectStore,
    local: Option<&LocalAside>,
    key: &str,
    chunk: &ListedChunk,
    reread: Reread,
    permits: &Permits,
    stop: &CancellationToken,
) -> Aside {
    let _permit = permits.acquire().await;
    if stop.is_cancelled() {
        return Aside::NotStarted;
    }
    let held = held_key(key);
    if let Some(local) = local.filter(|_| LocalAside::takes(key) && LocalAside::takes(&held)) {
        let planned = *chunk;
        return match local.delete_aside(key, &held, move |now_ms| reread.still_doomed(&planned, now_ms), stop).await {
            AsideOutcome::Deleted => Aside::Deleted { bytes: chunk.size },
            AsideOutcome::NotStarted => Aside::NotStarted,
            AsideOutcome::AlreadyGone => Aside::AlreadyGone,
            AsideOutcome::Kept => Aside::Kept,
            AsideOutcome::Failed(error) => Aside::Failed(error),
        };
    }
    let (path, held) = (Path::from(key), Path::from(held));
    match store.rename_opts(&path, &held, RenameOptions::default()).await {
        Ok(()) => {}
        // Gone, unless a retried rename had moved it on its first attempt.
        Err(object_store::Error::NotFound { .. }) => match store.head(&held).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Aside::AlreadyGone,
            Err(e) => return Aside::Failed(format!("renaming aside to {held}: the chunk is not at its key, and {e}")),
        },
        Err(e) => return Aside::Failed(format!("renaming aside to {held}: {e}")),
    }
    let still_doomed = match store.head(&held).await {
        Ok(meta) => reread.still_doomed(chunk, meta.last_modified.timestamp_millis()),
        Err(e) => {
            let put_back = put_back(store, &held, &path).await;
            return Aside::Failed(format!("re-reading last-modified of {held}: {e}; {}", put_back_note(put_back)));
        }
    };
    if !still_doomed {
        return match put_back(store, &held, &path).await {
            Ok(()) => Aside::Kept,
            Err(e) => Aside::Failed(format!("refreshed, but {}", put_back_note(Err(e)))),
        };
    }
    match store.delete(&held).await {
        Ok(()) => Aside::Deleted { bytes: chunk.size },
        // Someone else deleted it meanwhile: done, but not freed by this run.
        Err(object_store::Error::NotFound { .. }) => Aside::AlreadyGone,
        // Put back, so a failed delete leaves the chunk where it was.
        Err(e) => {
            Aside::Failed(format!("deleting {held}: {e}; {}", put_back_note(put_back(store, &held, &path).await)))
        }
    }
}

fn put_back_note(put_back: object_store::Result<()>) -> String {
    match put_back {
        Ok(()) => "put back".to_owned(),
        Err(e) => {
            tracing::error!(error = %e, "a chunk renamed aside could not be put back: the next --execute puts it back");
            format!("putting it back failed ({e}): the next --execute puts it back")
        }
    }
}
