//! The `file://` fast path of the listing: a parallel walk of a location's directories that
//! reads names with raw `getdents64` into one buffer per directory and stats (one `statx`
//! relative to the open directory) only the entries named like chunks, so a listed chunk
//! costs no allocation beyond its slot in the batch. object_store's `LocalFileSystem::list`
//! stats every file about three times and builds a `Path`, an `ObjectMeta` and an ETag
//! `String` per object; std's `read_dir` allocates each name.
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
//! the generic path. A location whose prefix goes through a link is that one foreign object.
//! Directories are opened with `O_NOFOLLOW` relative to their parent, and a chunk whose
//! `statx` (which does not follow links either) no longer shows a regular file is not a chunk.

use std::ffi::CStr;
use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Statx, StatxFlags};
use rustix::io::Errno;

use super::{Listed, ListingError, PartSender};
use crate::locations::{Location, chunk_of_fanout_entry};
use crate::store::first_link;

/// Walker threads per core: the walk waits on the file system (and on other processes for
/// the CPU), so a few more threads than cores keep both cores busy.
const THREADS_PER_CORE: usize = 2;

/// Bytes of directory entries one `getdents64` call reads: about 700 chunk names.
const DIRENT_BUFFER: usize = 32 * 1024;

/// An I/O error and the key (relative to the bucket) it happened on.
type Failure = (io::Error, String);

/// The walk's own thread pool. Not rayon's global pool: the manifest workers insert into the
/// filter there, and a walk blocked in `getdents64`/`statx` must not hold them up.
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

/// Lists one location under `bucket_dir`, the directory of its bucket, sending its parts to
/// `out` (blocking while the channel is full).
pub(super) fn list_location(
    bucket_dir: &Path,
    location: &Location,
    index: u32,
    progress: &AtomicU64,
    out: &PartSender,
) -> Result<(), ListingError> {
    let prefix = location.prefix();
    let fail =
        |(source, key): Failure| ListingError::Local { bucket: location.bucket().to_owned(), prefix: key, source };
    let send = |part: Listed| -> Result<(), ListingError> {
        progress.fetch_add(part.counts.listed_objects, Ordering::Relaxed);
        out.blocking_send(part).map_err(|_| ListingError::Closed)
    };
    let top = if prefix.is_empty() { bucket_dir.to_path_buf() } else { bucket_dir.join(prefix) };
    let mut part = Listed::new(index);
    if let Some(link) = first_link(bucket_dir, &top).map_err(|e| fail((e, prefix.to_owned())))? {
        warn_link(&link);
        let key = link.strip_prefix(bucket_dir).map_or_else(|_| prefix.to_owned(), |k| k.display().to_string());
        part.counts.foreign_with(|| key);
        return send(part);
    }
    let top_fd = match open_dir(rustix::fs::CWD, top.as_path()) {
        Ok(fd) => fd,
        // A location with nothing in it yet: object_store lists nothing too.
        Err(Errno::NOENT) => return send(part),
        Err(e) => return Err(fail((e.into(), prefix.to_owned()))),
    };
    let mut dirs = Vec::new();
    for_each_entry(&top_fd, prefix, |name, file_type| {
        let name_bytes = name.to_bytes();
        if file_type == FileType::Directory {
            dirs.push(name.to_owned());
        } else if file_type == FileType::Symlink {
            warn_link(&top.join(String::from_utf8_lossy(name_bytes).as_ref()));
            part.counts.foreign_with(|| key_of(prefix, name_bytes));
        } else if is_object_name(name_bytes) {
            part.counts.foreign_with(|| key_of(prefix, name_bytes));
        }
        Ok(())
    })
    .map_err(fail)?;
    send(part)?;
    let walk = || -> Result<(), ListingError> {
        dirs.par_iter().try_for_each(|name| {
            let mut part = Listed::new(index);
            let hh = name.to_bytes();
            let key = key_of(prefix, hh);
            let dir = top.join(String::from_utf8_lossy(hh).as_ref());
            let mut flush = |part: &mut Listed| send(part.take()).map_err(WalkError::Listing);
            match open_dir(&top_fd, name.as_c_str()) {
                Ok(fd) => list_dir(&fd, &dir, &key, Some(hh), &mut part, &mut flush).map_err(|e| match e {
                    WalkError::Io(failure) => fail(failure),
                    WalkError::Listing(e) => e,
                })?,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(fail((e.into(), key))),
            }
            send(part.take())
        })
    };
    // Without a pool of its own (thread creation refused), the walk shares the global one.
    match pool() {
        Some(pool) => pool.install(walk),
        None => walk(),
    }
}

/// What stops a walk: an I/O error on a key, or the listing's own error (its consumer gone).
enum WalkError {
    Io(Failure),
    Listing(ListingError),
}

impl From<Failure> for WalkError {
    fn from(failure: Failure) -> Self {
        WalkError::Io(failure)
    }
}

/// Walks one open directory below the top of a location (`dir` and `key` name it, for
/// messages). `hh` is its name when it sits right under the top, where chunks live; deeper
/// directories hold only foreign objects.
fn list_dir(
    fd: &OwnedFd,
    dir: &Path,
    key: &str,
    hh: Option<&[u8]>,
    part: &mut Listed,
    flush: &mut dyn FnMut(&mut Listed) -> Result<(), WalkError>,
) -> Result<(), WalkError> {
    for_each_entry(fd, key, |name, file_type| {
        let name_bytes = name.to_bytes();
        match file_type {
            FileType::RegularFile => {
                if let Some(id) = hh.and_then(|hh| chunk_of_fanout_entry(hh, name_bytes)) {
                    let stat = match stat(fd, name, StatxFlags::TYPE | StatxFlags::SIZE | StatxFlags::MTIME) {
                        Ok(stat) => stat,
                        Err(Errno::NOENT) => return Ok(()),
                        Err(e) => return Err((e.into(), key_of(key, name_bytes)).into()),
                    };
                    match FileType::from_raw_mode(stat.stx_mode.into()) {
                        FileType::RegularFile => {
                            part.chunk(id.0, stat.stx_size, mtime_ms(&stat));
                            if part.is_full() {
                                flush(part)?;
                            }
                        }
                        // Swapped for a link since it was read: a link is foreign, never a chunk.
                        FileType::Symlink => {
                            warn_link(&dir.join(String::from_utf8_lossy(name_bytes).as_ref()));
                            part.counts.foreign_with(|| key_of(key, name_bytes));
                        }
                        _ => {}
                    }
                } else if is_object_name(name_bytes) {
                    part.counts.foreign_with(|| key_of(key, name_bytes));
                }
            }
            FileType::Directory => {
                let (deeper, deeper_key) =
                    (dir.join(String::from_utf8_lossy(name_bytes).as_ref()), key_of(key, name_bytes));
                match open_dir(fd, name) {
                    Ok(deeper_fd) => list_dir(&deeper_fd, &deeper, &deeper_key, None, part, flush)?,
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err((e.into(), deeper_key).into()),
                }
            }
            FileType::Symlink => {
                warn_link(&dir.join(String::from_utf8_lossy(name_bytes).as_ref()));
                part.counts.foreign_with(|| key_of(key, name_bytes));
            }
            _ => {}
        }
        Ok(())
    })
}

/// Calls `each` with the name and type of every entry of an open directory but `.` and
/// `..`, read with `getdents64` into one buffer: no allocation per entry. A file system that
/// gives no type in its entries costs one `statx` for it.
fn for_each_entry<E: From<Failure>>(
    fd: &OwnedFd,
    key: &str,
    mut each: impl FnMut(&CStr, FileType) -> Result<(), E>,
) -> Result<(), E> {
    let mut buffer = Vec::with_capacity(DIRENT_BUFFER);
    let mut entries = RawDir::new(fd, buffer.spare_capacity_mut());
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(|e| E::from((e.into(), key.to_owned())))?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let file_type = match entry.file_type() {
            FileType::Unknown => match stat(fd, name, StatxFlags::TYPE) {
                Ok(stat) => FileType::from_raw_mode(stat.stx_mode.into()),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(E::from((e.into(), key_of(key, name.to_bytes())))),
            },
            known => known,
        };
        each(name, file_type)?;
    }
    Ok(())
}

fn open_dir(at: impl AsFd, path: impl rustix::path::Arg) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(at, path, flags, Mode::empty())
}

/// `statx` of an entry of an open directory, not following a link.
fn stat(dir: &OwnedFd, name: &CStr, fields: StatxFlags) -> Result<Statx, Errno> {
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, fields)
}

/// Milliseconds since the epoch, rounded down as `chrono` rounds a `SystemTime`.
fn mtime_ms(stat: &Statx) -> i64 {
    let t = stat.stx_mtime;
    t.tv_sec.saturating_mul(1000).saturating_add(i64::from(t.tv_nsec / 1_000_000))
}

/// The same warning as `store::LocalBucket` gives on the generic path.
fn warn_link(link: &Path) {
    tracing::warn!(link = %link.display(), "symbolic link in a file:// bucket: not followed, never deleted");
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

    #[test]
    fn mtime_rounds_down_like_chrono() {
        let at = |sec: i64, nsec: u32| {
            // SAFETY: Statx is a plain C struct of integers; all zeroes is a valid value.
            let mut stat: Statx = unsafe { std::mem::zeroed() };
            stat.stx_mtime.tv_sec = sec;
            stat.stx_mtime.tv_nsec = nsec;
            mtime_ms(&stat)
        };
        for (sec, nsec) in [(0, 0), (1_700_000_000, 999_999_999), (-1, 500_000_000), (-2, 0)] {
            let chrono = chrono::DateTime::from_timestamp(sec, nsec).map(|t| t.timestamp_millis());
            assert_eq!(Some(at(sec, nsec)), chrono, "{sec} s {nsec} ns");
        }
    }
}
