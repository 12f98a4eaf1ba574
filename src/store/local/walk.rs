//! The one walker of `file://` directories, shared by [`super::LocalBucket`]'s listings and
//! the listing stage's `file://` path. It reads names with raw `getdents64` into one buffer
//! per directory and stats (one `statx` relative to the open directory) only what its
//! visitor asks for, so the listing stage's visitor costs no allocation per chunk.
//! object_store's `LocalFileSystem::list` stats every file about three times and builds a
//! `Path`, an `ObjectMeta` and an ETag `String` per object; std's `read_dir` allocates each name.
//!
//! What is an object, for every caller alike:
//! - a regular file, unless its name ends in `#<digits>` (object_store's in-progress uploads,
//!   which it never lists); a file that vanishes between the read and the stat is skipped;
//! - a symbolic link, which is never followed (it could lead out of the store root, or
//!   loop): it is reported to the visitor as a link, one object that is never a chunk.
//!
//! Directories are opened with `O_NOFOLLOW` relative to their parent, and `statx` does not
//! follow links either, so a directory or file swapped for a link during the walk is seen
//! as the link.

use std::ffi::CStr;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Statx, StatxFlags};
use rustix::io::Errno;

/// Walker threads per core: the walk waits on the file system (and on other processes for
/// the CPU), so a few more threads than cores keep both cores busy.
const THREADS_PER_CORE: usize = 2;

/// Bytes of directory entries one `getdents64` call reads: about 700 chunk names.
const DIRENT_BUFFER: usize = 32 * 1024;

/// An I/O error and the key (relative to the bucket) it happened on.
pub(crate) type Failure = (io::Error, String);

/// What stops a walk: an I/O error on a key, or the visitor's own error `E`.
pub(crate) enum WalkError<E> {
    Io(Failure),
    Visitor(E),
}

impl<E> From<Failure> for WalkError<E> {
    fn from(failure: Failure) -> Self {
        WalkError::Io(failure)
    }
}

impl<E> WalkError<E> {
    /// The visitor's error type, an I/O failure turned into it by `fail`.
    pub(crate) fn into_error(self, fail: impl FnOnce(Failure) -> E) -> E {
        match self {
            WalkError::Io(failure) => fail(failure),
            WalkError::Visitor(e) => e,
        }
    }
}

/// The walk's own thread pool. Not rayon's global pool: the manifest workers insert into the
/// filter there, and a walk blocked in `getdents64`/`statx` must not hold them up. `None`
/// when threads cannot be made: the caller then walks on the global pool.
pub fn pool() -> Option<&'static rayon::ThreadPool> {
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

/// One open directory of a walk, with its path and key (relative to the bucket) for
/// messages and keys, and its depth below where the walk started.
pub struct Dir<'a> {
    pub fd: &'a OwnedFd,
    pub path: &'a Path,
    pub key: &'a str,
    pub depth: u32,
}

impl Dir<'_> {
    /// The key of an entry of this directory.
    pub fn key_of(&self, name: &CStr) -> String {
        key_of(self.key, name.to_bytes())
    }

    /// The path of an entry of this directory.
    pub(crate) fn path_of(&self, name: &CStr) -> std::path::PathBuf {
        self.path.join(String::from_utf8_lossy(name.to_bytes()).as_ref())
    }

    /// `statx` of an entry, not following a link; `None` if it is gone.
    pub(crate) fn stat(&self, name: &CStr, fields: StatxFlags) -> Result<Option<Statx>, Failure> {
        match stat(self.fd, name, fields) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err((e.into(), self.key_of(name))),
        }
    }
}

/// What a walk reports. `file` is called for every regular file named like an object,
/// `link` for every symbolic link; `dir` decides whether to walk into a directory.
pub(crate) trait Visit {
    type Error: From<Failure>;
    fn file(&mut self, dir: &Dir<'_>, name: &CStr) -> Result<(), Self::Error>;
    fn link(&mut self, dir: &Dir<'_>, name: &CStr) -> Result<(), Self::Error>;
    /// Called for each directory met; returns whether to walk into it (the default).
    fn dir(&mut self, _dir: &Dir<'_>, _name: &CStr) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Walks everything below `dir`, depth first, reporting objects and links to `visit`.
pub fn walk<V: Visit>(dir: &Dir<'_>, visit: &mut V) -> Result<(), V::Error> {
    for_each_entry(dir.fd, dir.key, |name, file_type| match file_type {
        FileType::RegularFile if is_object_name(name.to_bytes()) => visit.file(dir, name),
        FileType::Symlink => visit.link(dir, name),
        FileType::Directory => {
            if !visit.dir(dir, name)? {
                return Ok(());
            }
            let (path, key) = (dir.path_of(name), dir.key_of(name));
            match open_dir(dir.fd, name) {
                Ok(fd) => walk(&Dir { fd: &fd, path: &path, key: &key, depth: dir.depth + 1 }, visit),
                // Removed since it was read: it lists as nothing, as an empty one would.
                Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(V::Error::from((e.into(), key))),
            }
        }
        _ => Ok(()),
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

/// Opens a directory relative to `at` without following a link (`path` may be absolute).
pub(crate) fn open_dir(at: impl AsFd, path: impl rustix::path::Arg) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(at, path, flags, Mode::empty())
}

/// Opens the directory at `path`, `None` if it does not exist.
pub(crate) fn open_top(path: &Path, key: &str) -> Result<Option<OwnedFd>, Failure> {
    top_dir(open_dir(rustix::fs::CWD, path), key)
}

/// A listing's top directory as `open_dir` left it: `None` when there is nothing to list.
pub(crate) fn top_dir(opened: Result<OwnedFd, Errno>, key: &str) -> Result<Option<OwnedFd>, Failure> {
    match opened {
        Ok(fd) => Ok(Some(fd)),
        // Nothing there yet, or a file: object_store lists nothing under it either.
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
        Err(e) => Err((e.into(), key.to_owned())),
    }
}

/// `statx` of an entry of an open directory, not following a link.
fn stat(dir: &OwnedFd, name: &CStr, fields: StatxFlags) -> Result<Statx, Errno> {
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, fields)
}

/// The file type a `statx` shows.
pub fn file_type(stat: &Statx) -> FileType {
    FileType::from_raw_mode(stat.stx_mode.into())
}

/// Milliseconds since the epoch, rounded down as `chrono` rounds a `SystemTime`.
pub(crate) fn mtime_ms(stat: &Statx) -> i64 {
    let t = stat.stx_mtime;
    t.tv_sec.saturating_mul(1000).saturating_add(i64::from(t.tv_nsec / 1_000_000))
}

/// The one warning for a link met in a `file://` bucket.
pub(crate) fn warn_link(link: &Path) {
    tracing::warn!(link = %link.display(), "symbolic link in a file:// bucket: not followed, never deleted");
}

pub fn key_of(prefix: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if prefix.is_empty() { name.into_owned() } else { format!("{prefix}/{name}") }
}

/// object_store skips file names ending in `#` and digits (its multipart temporaries).
/// Read from the end: a chunk name is rejected as a temporary after a byte or two.
fn is_object_name(name: &[u8]) -> bool {
    let digits = name.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    digits == 0 || name.len() == digits || name[name.len() - digits - 1] != b'#'
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
        assert!(is_object_name(b"0123"));
        assert!(is_object_name(&[b'a'; 64]));
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
