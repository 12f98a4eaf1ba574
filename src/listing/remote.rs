//! The listing of an `s3://` or `gs://` location from raw list pages ([`RawLister`]): every
//! name arrives as the store holds it, so no name can fail a page (issue 22). A name that is
//! not exactly `<prefix>/<hh>/<hex>` (a control character, an empty, `.` or `..` segment, a
//! folder placeholder ending in `/`, ...) is foreign: counted, sampled, never read further.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::task::JoinSet;

use super::{Listed, ListingError, PartSender, join_dirs, send_part};
use crate::locations::Location;
use crate::store::RawLister;
use crate::throttle::Aimd;

/// Lists one location: its top level grouped at `/`, then every group (the fan-out
/// directories, and whatever odd groups a stray name makes) concurrently.
pub(super) async fn list_location(
    lister: RawLister,
    location: Location,
    index: u32,
    permits: Arc<Aimd>,
    progress: Arc<AtomicU64>,
    out: PartSender,
) -> Result<(), ListingError> {
    let top = if location.prefix().is_empty() { String::new() } else { format!("{}/", location.prefix()) };
    let mut part = Listed::new(index);
    let mut groups = Vec::new();
    {
        let _permit = permits.acquire().await;
        let mut pages = lister.pages(&top, true);
        while let Some(page) = pages.next().await? {
            for object in &page.objects {
                part.counts.foreign(&object.key);
            }
            groups.extend(page.common_prefixes);
        }
    }
    send_part(&mut part, &progress, &out).await?;
    let location = Arc::new(location);
    let mut dirs = JoinSet::new();
    for group in groups {
        let job = list_group(
            lister.clone(),
            Arc::clone(&location),
            index,
            group,
            Arc::clone(&permits),
            Arc::clone(&progress),
            out.clone(),
        );
        dirs.spawn(job);
    }
    join_dirs(dirs).await
}

/// Lists every name starting with `group` (a common prefix of the top level, `/` included).
async fn list_group(
    lister: RawLister,
    location: Arc<Location>,
    index: u32,
    group: String,
    permits: Arc<Aimd>,
    progress: Arc<AtomicU64>,
    out: PartSender,
) -> Result<(), ListingError> {
    let _permit = permits.acquire().await;
    let mut part = Listed::new(index);
    let mut pages = lister.pages(&group, false);
    while let Some(page) = pages.next().await? {
        for object in page.objects {
            let Some(id) = location.chunk_of_key(&object.key) else {
                part.counts.foreign(&object.key);
                continue;
            };
            // A chunk whose size or age the store did not say cannot be judged: fail closed.
            let (Some(size), Some(last_modified_ms)) = (object.size, object.last_modified_ms) else {
                return Err(ListingError::ChunkMetadata { bucket: location.bucket().to_owned(), key: object.key });
            };
            part.chunk(id.0, size, last_modified_ms, object.version);
            if part.is_full() {
                send_part(&mut part, &progress, &out).await?;
            }
        }
    }
    send_part(&mut part, &progress, &out).await
}
