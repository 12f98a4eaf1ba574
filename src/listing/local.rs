//! The `file://` path of the listing: a parallel walk of a location's `<hh>` directories
//! with the store's own walker ([`crate::store::walk`]), turned straight into parts: a
//! listed chunk costs no allocation beyond its slot in the part, and only files named like
//! chunks are stat'ed. The store hands the walk its bucket ([`LocalListing`]): every
//! directory is opened through it (retried as the store retries) and counted as list pages.
//!
//! It sees what the generic path sees through [`crate::store::LocalBucket`] (the same
//! walker), and classifies it with the same rule ([`chunk_of_fanout_entry`], which
//! [`Location::chunk_of_key`] also uses). A symbolic link is counted as one foreign object,
//! never deleted, and logged; a location whose prefix goes through a link is that one
//! foreign object.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::{FileType, StatxFlags};
use rustix::io::Errno;

use super::{Listed, ListingError, PartSender};
use crate::locations::{Location, chunk_of_fanout_entry};
use crate::store::walk::{self, Dir, Failure, Visit};
use crate::store::{LocalListing, first_link};

/// Lists one location of the bucket `walk` opens, sending its parts to `out` (blocking while
/// the channel is full).
pub(super) fn list_location(
    walk: &LocalListing,
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
    let bucket_dir = walk.dir();
    let top = if prefix.is_empty() { bucket_dir.to_path_buf() } else { bucket_dir.join(prefix) };
    let mut part = Listed::new(index);
    if let Some(link) = first_link(bucket_dir, &top).map_err(|e| fail((e, prefix.to_owned())))? {
        walk::warn_link(&link);
        let key = link.strip_prefix(bucket_dir).map_or_else(|_| prefix.to_owned(), |k| k.display().to_string());
        part.counts.foreign_with(|| key);
        return send(part);
    }
    let opened = walk.open_retrying(|| walk::open_dir(rustix::fs::CWD, &top));
    let Some(top_fd) = walk::top_dir(opened, prefix).map_err(fail)? else {
        walk.count_directory(0);
        return send(part);
    };
    let top_dir = Dir { fd: &top_fd, path: &top, key: prefix, depth: 0 };
    let mut top_level = TopLevel { part: &mut part, dirs: Vec::new(), seen: 0 };
    walk::walk(&top_dir, &mut top_level).map_err(|e| e.into_error(fail))?;
    walk.count_directory(top_level.seen);
    let dirs = top_level.dirs;
    send(part)?;
    let list_dir = |hh: &std::ffi::CString| -> Result<(), ListingError> {
        let (path, key) = (top_dir.path_of(hh), top_dir.key_of(hh));
        let Some(fd) = (match walk.open_retrying(|| walk::open_dir(&top_fd, hh.as_c_str())) {
            Ok(fd) => Some(fd),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(fail((e.into(), key))),
        }) else {
            return Ok(());
        };
        let mut chunks = Chunks { hh: hh.to_bytes(), part: Listed::new(index), send: &send, seen: 0 };
        walk::walk(&Dir { fd: &fd, path: &path, key: &key, depth: 0 }, &mut chunks).map_err(|e| e.into_error(fail))?;
        walk.count_directory(chunks.seen);
        send(chunks.part.take())
    };
    let walk_all = || dirs.par_iter().try_for_each(list_dir);
    // Without a pool of its own (thread creation refused), the walk shares the global one.
    match walk::pool() {
        Some(pool) => pool.install(walk_all),
        None => walk_all(),
    }
}

/// What stops a walk of the listing: an I/O error, or the listing's own (its consumer gone).
type WalkError = walk::WalkError<ListingError>;

fn foreign_link(part: &mut Listed, dir: &Dir<'_>, name: &CStr) {
    walk::warn_link(&dir.path_of(name));
    part.counts.foreign_with(|| dir.key_of(name));
}

/// The top level of a location: its directories are kept to be walked in parallel, every
/// object beside them is foreign.
struct TopLevel<'a> {
    part: &'a mut Listed,
    dirs: Vec<std::ffi::CString>,
    /// Entries read (objects and directories): what the store counts as list pages.
    seen: u64,
}

impl Visit for TopLevel<'_> {
    type Error = WalkError;

    fn file(&mut self, dir: &Dir<'_>, name: &CStr) -> Result<(), WalkError> {
        self.seen += 1;
        self.part.counts.foreign_with(|| dir.key_of(name));
        Ok(())
    }

    fn link(&mut self, dir: &Dir<'_>, name: &CStr) -> Result<(), WalkError> {
        self.seen += 1;
        foreign_link(self.part, dir, name);
        Ok(())
    }

    fn dir(&mut self, _dir: &Dir<'_>, name: &CStr) -> Result<bool, WalkError> {
        self.seen += 1;
        self.dirs.push(name.to_owned());
        Ok(false)
    }
}

/// A fan-out directory `<hh>` and everything below it: its files named `<hh><rest>` are
/// chunks, every other object (deeper ones included) is foreign. Full parts are sent as
/// they fill.
struct Chunks<'a, S> {
    hh: &'a [u8],
    part: Listed,
    send: &'a S,
    /// Objects read, chunks or not.
    seen: u64,
}

impl<S: Fn(Listed) -> Result<(), ListingError>> Visit for Chunks<'_, S> {
    type Error = WalkError;

    fn file(&mut self, dir: &Dir<'_>, name: &CStr) -> Result<(), WalkError> {
        self.seen += 1;
        let id = if dir.depth == 0 { chunk_of_fanout_entry(self.hh, name.to_bytes()) } else { None };
        let Some(id) = id else {
            self.part.counts.foreign_with(|| dir.key_of(name));
            return Ok(());
        };
        let Some(stat) = dir.stat(name, StatxFlags::TYPE | StatxFlags::SIZE | StatxFlags::MTIME)? else {
            return Ok(());
        };
        match walk::file_type(&stat) {
            FileType::RegularFile => {
                self.part.chunk(id.0, stat.stx_size, walk::mtime_ms(&stat), crate::store::Version::NONE);
                if self.part.is_full() {
                    (self.send)(self.part.take()).map_err(WalkError::Visitor)?;
                }
            }
            // Swapped for a link since it was read: a link is foreign, never a chunk.
            FileType::Symlink => foreign_link(&mut self.part, dir, name),
            _ => {}
        }
        Ok(())
    }

    fn link(&mut self, dir: &Dir<'_>, name: &CStr) -> Result<(), WalkError> {
        self.seen += 1;
        foreign_link(&mut self.part, dir, name);
        Ok(())
    }
}
