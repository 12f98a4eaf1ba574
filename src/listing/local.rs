//! The `file://` fast path of the listing: a parallel walk of a location's directories that
//! reads names with `read_dir` and stats (relative to the open directory, one `statx` each)
//! only the files named like chunks. object_store's `LocalFileSystem::list` stats every file
//! about three times and builds a `Path`, an `ObjectMeta` and an ETag `String` per object.
//!
//! It sees what the generic path sees, and classifies it with the same rule
//! ([`chunk_of_fanout_entry`], which [`Location::chunk_of_key`] also uses):
//! - every regular file under the location is an object: a chunk if it is `<hh>/<hex>`,
//!   foreign otherwise; names ending in `#<digits>` are skipped, as object_store skips them
//!   (its in-progress uploads); a file that vanishes between the read and the stat is skipped;
//! - at the top level of the location, any non-directory entry is an object (object_store's
//!   delimiter listing does not check the type there); deeper, only regular files are.
//!
//! A symbolic link is never followed (it could lead out of the store root, or loop): it is
//! counted as one foreign object, never deleted, and logged, as `store::LocalBucket` does on
//! the generic path.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use super::{DirListing, ListingError, LocationCounts};
use crate::locations::{Location, chunk_of_fanout_entry};

/// Walker threads per core: the walk waits on the file system (and on other processes for
/// the CPU), so a few more threads than cores keep both cores busy.
const THREADS_PER_CORE: usize = 2;

/// The walk's own thread pool. Not rayon's global pool: the manifest workers insert into the
/// filter there, and a walk blocked in `read_dir`/`statx` must not hold them up.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores * THREADS_PER_CORE)
            .thread_name(|i| format!("gc-list-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Lists one location under `bucket_dir`, the directory of its bucket.
pub(super) fn list_location(
    bucket_dir: &Path,
    location: &Location,
    index: u32,
    progress: &AtomicU64,
) -> Result<Vec<DirListing>, ListingError> {
    let prefix = location.prefix();
    let top = if prefix.is_empty() { bucket_dir.to_path_buf() } else { bucket_dir.join(prefix) };
    let fail = |source: io::Error, key: &str| ListingError::Local {
        bucket: location.bucket().to_owned(),
        prefix: key.to_owned(),
        source,
    };
    let mut counts = LocationCounts::default();
    let mut dirs = Vec::new();
    let entries = match fs::read_dir(&top) {
        Ok(entries) => entries,
        // A location with nothing in it yet: object_store lists nothing too.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![empty(index)]),
        Err(e) => return Err(fail(e, prefix)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fail(e, prefix)),
        };
        let name = entry.file_name();
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fail(e, &key_of(prefix, name.as_bytes()))),
        };
        if file_type.is_symlink() {
            warn_link(&top.join(&name));
        }
        if file_type.is_dir() {
            dirs.push(name);
        } else if file_type.is_symlink() || is_object_name(name.as_bytes()) {
            counts.foreign_with(|| key_of(prefix, name.as_bytes()));
        }
    }
    progress.fetch_add(counts.listed_objects, Ordering::Relaxed);
    let mut parts = vec![DirListing::new(index, counts)];
    let walk = || -> Result<Vec<DirListing>, ListingError> {
        dirs.par_iter()
            .map(|name| {
                let mut part = empty(index);
                let key = key_of(prefix, name.as_bytes());
                let hh = name.as_bytes();
                list_dir(&top.join(name), &key, Some(hh), &mut part).map_err(|(e, key)| fail(e, &key))?;
                part.chunks.shrink_to_fit();
                progress.fetch_add(part.counts.listed_objects, Ordering::Relaxed);
                Ok(part)
            })
            .collect()
    };
    // Without a pool of its own (thread creation refused), the walk shares the global one.
    let listed = match pool() {
        Some(pool) => pool.install(walk),
        None => walk(),
    };
    parts.extend(listed?);
    Ok(parts)
}

/// The same warning as `store::LocalBucket` gives on the generic path.
fn warn_link(link: &Path) {
    tracing::warn!(link = %link.display(), "symbolic link in a file:// bucket: not followed, never deleted");
}

fn empty(index: u32) -> DirListing {
    DirListing::new(index, LocationCounts::default())
}

fn key_of(prefix: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if prefix.is_empty() { name.into_owned() } else { format!("{prefix}/{name}") }
}

/// object_store skips file names ending in `#` and digits (its multipart temporaries).
fn is_object_name(name: &[u8]) -> bool {
    match name.iter().rposition(|&b| b == b'#') {
        Some(at) => {
            let suffix = &name[at + 1..];
            suffix.is_empty() || !suffix.iter().all(u8::is_ascii_digit)
        }
        None => true,
    }
}

/// Walks one directory below the top of a location. `hh` is its name when it sits right
/// under the top, where chunks live; deeper directories hold only foreign objects.
fn list_dir(dir: &Path, key: &str, hh: Option<&[u8]>, part: &mut DirListing) -> Result<(), (io::Error, String)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((e, key.to_owned())),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err((e, key.to_owned())),
        };
        let name = entry.file_name();
        let name = name.as_bytes();
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err((e, key_of(key, name))),
        };
        if file_type.is_file() {
            if let Some(id) = hh.and_then(|hh| chunk_of_fanout_entry(hh, name)) {
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err((e, key_of(key, name))),
                };
                let modified = meta.modified().map_err(|e| (e, key_of(key, name)))?;
                part.chunk(id.0, meta.len(), DateTime::<Utc>::from(modified).timestamp_millis());
            } else if is_object_name(name) {
                part.counts.foreign_with(|| key_of(key, name));
            }
        } else if file_type.is_dir() {
            list_dir(&dir.join(entry.file_name()), &key_of(key, name), None, part)?;
        } else if file_type.is_symlink() {
            warn_link(&dir.join(entry.file_name()));
            part.counts.foreign_with(|| key_of(key, name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_object_store() {
        assert!(is_object_name(b"abc"));
        assert!(is_object_name(b"abc#"));
        assert!(is_object_name(b"abc#1x"));
        assert!(!is_object_name(b"abc#12"));
        assert!(!is_object_name(b"#0"));
    }
}
