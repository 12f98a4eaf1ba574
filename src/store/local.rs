//! The `file://` backend: object_store's `LocalFileSystem`, kept inside its bucket directory.
//!
//! `LocalFileSystem` follows symbolic links: its listings walk into a linked directory, and
//! a delete of `a/b/c` where `a/b` links elsewhere removes a file outside the bucket (for
//! instance another partition's chunk). [`LocalBucket`] never goes through a link below the
//! bucket directory (the directory itself may be one):
//! - listings do not follow links; a link, or a prefix that goes through one, is listed as
//!   one object whose `e_tag` is [`SYMLINK_ETAG`], which the listing stage counts as foreign
//!   (never deleted);
//! - `get`, `head` and `delete` of a key that is, or goes through, a link fail with
//!   `PermissionDenied` (not retried): a manifest read that way aborts the run (exit 4), a
//!   delete that way is a failed delete (exit 7).
//!
//! The checks are `lstat`s of every component below the bucket directory. A writer racing
//! to swap a directory for a link between the check and the call is outside the threat
//! model (it can write the store anyway); the checks stop links left in the tree.

use std::ffi::CStr;
use std::fmt;
use std::fs::Metadata;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use rustix::fs::{FileType, StatxFlags};

/// The `e_tag` of a listed object that is a symbolic link, or under one.
pub(crate) const SYMLINK_ETAG: &str = "gc_partition:symlink";

mod aside;
pub(crate) mod walk;
pub(crate) use aside::{AsideOutcome, LocalAside};

const STORE: &str = "LocalBucket";

#[derive(Debug, Clone)]
pub struct LocalBucket {
    inner: Arc<LocalFileSystem>,
    /// The canonical bucket directory.
    root: PathBuf,
    root_path: Path,
}

impl LocalBucket {
    pub fn new(dir: &FsPath) -> Result<Self> {
        let root = std::fs::canonicalize(dir).map_err(|e| generic(format!("{}: {e}", dir.display())))?;
        let inner = Arc::new(LocalFileSystem::new_with_prefix(&root)?);
        let root_path = Path::from_absolute_path(&root).map_err(|e| generic(e.to_string()))?;
        Ok(Self { inner, root, root_path })
    }

    /// The file behind `location`, refused if it is or goes through a symbolic link.
    pub(crate) fn checked_file(&self, location: &Path) -> Result<PathBuf> {
        let file = self.inner.path_to_filesystem(location)?;
        match first_link(&self.root, &file) {
            Ok(None) => Ok(file),
            Ok(Some(link)) => Err(refused(location, &link)),
            Err(e) => Err(generic(format!("{location}: {e}"))),
        }
    }

    fn object_path(&self, file: &FsPath) -> Result<Path> {
        let absolute = Path::from_absolute_path(file).map_err(|e| generic(e.to_string()))?;
        let parts = absolute
            .prefix_match(&self.root_path)
            .ok_or_else(|| generic(format!("{} is outside {}", file.display(), self.root.display())))?;
        Ok(Path::from_iter(parts))
    }

    /// The directory to walk for `prefix` (and its key), or the one object a prefix that
    /// goes through a link lists as.
    fn start(&self, prefix: Option<&Path>) -> Result<Result<(PathBuf, String), ObjectMeta>> {
        let Some(prefix) = prefix.filter(|p| !p.is_root()) else {
            return Ok(Ok((self.root.clone(), String::new())));
        };
        let dir = self.inner.path_to_filesystem(prefix)?;
        match first_link(&self.root, &dir) {
            Ok(None) => Ok(Ok((dir, prefix.as_ref().to_owned()))),
            Ok(Some(link)) => Ok(Err(self.link_meta(&link)?)),
            Err(e) => Err(generic(format!("{}: {e}", dir.display()))),
        }
    }

    /// Lists every object under `prefix` without following links: a link is one object
    /// tagged [`SYMLINK_ETAG`].
    fn walk(&self, prefix: Option<&Path>) -> Result<Vec<ObjectMeta>> {
        self.read(prefix, true).map(|listed| listed.objects)
    }

    /// Lists `prefix` (all of it when `deep`, else its top level, with its directories as
    /// common prefixes) with the one `file://` walker.
    fn read(&self, prefix: Option<&Path>, deep: bool) -> Result<ListResult> {
        let mut listed =
            ListResult { common_prefixes: Vec::new(), objects: Vec::new(), extensions: Default::default() };
        let (start, key) = match self.start(prefix)? {
            Ok(start) => start,
            Err(link) => {
                listed.objects.push(link);
                return Ok(listed);
            }
        };
        let failed = |(e, key): walk::Failure| generic(format!("{key}: {e}"));
        let Some(fd) = walk::open_top(&start, &key).map_err(failed)? else {
            return Ok(listed);
        };
        let mut visit = Objects { bucket: self, deep, listed: &mut listed };
        walk::walk(&walk::Dir { fd: &fd, path: &start, key: &key, depth: 0 }, &mut visit)
            .map_err(|e| e.into_error(failed))?;
        listed.common_prefixes.sort();
        listed.objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(listed)
    }

    fn link_meta(&self, link: &FsPath) -> Result<ObjectMeta> {
        let location = self.object_path(link)?;
        walk::warn_link(link);
        let meta = std::fs::symlink_metadata(link).map_err(|e| generic(format!("{}: {e}", link.display())))?;
        Ok(object_meta(location, &meta, Some(SYMLINK_ETAG.to_owned())))
    }
}

/// The walker's visitor for `list` and `list_with_delimiter`.
struct Objects<'a> {
    bucket: &'a LocalBucket,
    deep: bool,
    listed: &'a mut ListResult,
}

type WalkError = walk::WalkError<Error>;

impl walk::Visit for Objects<'_> {
    type Error = WalkError;

    fn file(&mut self, dir: &walk::Dir<'_>, name: &CStr) -> Result<(), WalkError> {
        let fields = StatxFlags::TYPE | StatxFlags::SIZE | StatxFlags::MTIME | StatxFlags::INO;
        let Some(stat) = dir.stat(name, fields)? else { return Ok(()) };
        let path = dir.path_of(name);
        let meta = match walk::file_type(&stat) {
            FileType::RegularFile => {
                let location = self.bucket.object_path(&path).map_err(WalkError::Visitor)?;
                let micros = i128::from(stat.stx_mtime.tv_sec) * 1_000_000 + i128::from(stat.stx_mtime.tv_nsec / 1000);
                let last_modified = DateTime::from_timestamp_millis(walk::mtime_ms(&stat)).unwrap_or_default();
                let e_tag = file_e_tag(stat.stx_ino, micros, stat.stx_size);
                ObjectMeta { location, last_modified, size: stat.stx_size, e_tag: Some(e_tag), version: None }
            }
            // Swapped for a link since it was read: listed as the link.
            FileType::Symlink => self.bucket.link_meta(&path).map_err(WalkError::Visitor)?,
            _ => return Ok(()),
        };
        self.listed.objects.push(meta);
        Ok(())
    }

    fn link(&mut self, dir: &walk::Dir<'_>, name: &CStr) -> Result<(), WalkError> {
        self.listed.objects.push(self.bucket.link_meta(&dir.path_of(name)).map_err(WalkError::Visitor)?);
        Ok(())
    }

    fn dir(&mut self, dir: &walk::Dir<'_>, name: &CStr) -> Result<bool, WalkError> {
        if !self.deep {
            let location = self.bucket.object_path(&dir.path_of(name)).map_err(WalkError::Visitor)?;
            self.listed.common_prefixes.push(location);
        }
        Ok(self.deep)
    }
}

/// The ETag `LocalFileSystem` gives a file: inode, mtime in microseconds and size, in hex.
fn file_e_tag(inode: u64, micros: impl fmt::LowerHex, size: u64) -> String {
    format!("\"{inode:x}-{micros:x}-{size:x}\"")
}

fn object_meta(location: Path, meta: &Metadata, e_tag: Option<String>) -> ObjectMeta {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let e_tag = e_tag.or_else(|| {
        let micros = modified.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros();
        Some(file_e_tag(std::os::unix::fs::MetadataExt::ino(meta), micros, meta.len()))
    });
    ObjectMeta { location, last_modified: DateTime::<Utc>::from(modified), size: meta.len(), e_tag, version: None }
}

/// The first component of `path` below `root` that is a symbolic link, if any. A component
/// that does not exist ends the search (nothing below it exists either).
pub(crate) fn first_link(root: &FsPath, path: &FsPath) -> std::io::Result<Option<PathBuf>> {
    let Ok(below) = path.strip_prefix(root) else {
        return Err(std::io::Error::other(format!("{} is outside {}", path.display(), root.display())));
    };
    let mut at = root.to_path_buf();
    for component in below.components() {
        match component {
            std::path::Component::Normal(part) => at.push(part),
            _ => return Err(std::io::Error::other(format!("{}: unexpected path component", path.display()))),
        }
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => return Ok(Some(at)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Runs a walk (which stats files) off the async workers, as `LocalFileSystem` does.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(Error::JoinError { source: e })),
        Err(_) => work(),
    }
}

fn generic(message: String) -> Error {
    Error::Generic { store: STORE, source: message.into() }
}

fn refused(location: &Path, link: &FsPath) -> Error {
    Error::PermissionDenied {
        path: location.to_string(),
        source: format!("{} is a symbolic link: not followed", link.display()).into(),
    }
}

impl fmt::Display for LocalBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalBucket({})", self.root.display())
    }
}

#[async_trait]
impl ObjectStore for LocalBucket {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.checked_file(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.checked_file(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.checked_file(location)?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let root = self.root.clone();
        let inner = Arc::clone(&self.inner);
        locations
            .then(move |location| {
                let (root, inner) = (root.clone(), Arc::clone(&inner));
                async move {
                    let location = location?;
                    let file = inner.path_to_filesystem(&location)?;
                    match first_link(&root, &file) {
                        Ok(None) => {}
                        Ok(Some(link)) => return Err(refused(&location, &link)),
                        Err(e) => return Err(generic(format!("{location}: {e}"))),
                    }
                    // LocalFileSystem names the file in its NotFound; name the key, as every
                    // other result of a delete does, so the caller can match it to its key.
                    match inner.delete(&location).await {
                        Ok(()) => Ok(location),
                        Err(Error::NotFound { source, .. }) => {
                            Err(Error::NotFound { path: location.to_string(), source })
                        }
                        Err(e) => Err(e),
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (this, prefix) = (self.clone(), prefix.cloned());
        stream::once(async move {
            match blocking(move || this.walk(prefix.as_ref())).await {
                Ok(objects) => stream::iter(objects.into_iter().map(Ok)).boxed(),
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let (this, prefix) = (self.clone(), prefix.cloned());
        blocking(move || this.read(prefix.as_ref(), false)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.checked_file(from)?;
        self.checked_file(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.checked_file(from)?;
        self.checked_file(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// The `file://` listing's direct walk of a bucket directory, kept behind the store boundary:
/// the walk asks it for the directory, opens every directory through it (retried with the
/// store's policy when the error may pass: NFS and FUSE answer `ESTALE`, `EIO`, `EAGAIN` or
/// `EINTR` for a moment) and counts each directory it read as list pages, by the same
/// 1,000-object rule as a remote listing. A directory is only ever opened again, never read
/// twice: a walk that failed half way is the listing's error, not a retry (it would send its
/// chunks twice).
#[derive(Debug, Clone)]
pub struct LocalListing {
    pub(super) dir: PathBuf,
    pub(super) policy: super::RetryPolicy,
    pub(super) retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub(super) counters: std::sync::Arc<super::RequestCounters>,
}

impl LocalListing {
    /// The bucket's directory.
    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// `open` once, and again after the store's backoff while its error is transient.
    pub(crate) fn open_retrying<T>(
        &self,
        mut open: impl FnMut() -> Result<T, rustix::io::Errno>,
    ) -> Result<T, rustix::io::Errno> {
        let mut retry = 0;
        loop {
            match open() {
                Err(e) if retry < self.policy.max_retries && is_transient_errno(e) => {
                    std::thread::sleep(self.policy.backoff(retry));
                    self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    retry += 1;
                }
                done => return done,
            }
        }
    }

    /// One directory read with `objects` entries: list pages as S3 and GCS would count them.
    pub(crate) fn count_directory(&self, objects: u64) {
        let pages = objects.div_ceil(super::counting::LIST_PAGE).max(1);
        self.counters.list_pages.fetch_add(pages, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Errors of a local file system that may pass if the call is made again.
fn is_transient_errno(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    matches!(e, Errno::INTR | Errno::AGAIN | Errno::STALE | Errno::IO | Errno::NOMEM | Errno::NFILE | Errno::MFILE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures::TryStreamExt;
    use std::os::unix::fs::symlink;

    /// A bucket dir with `d/00/<a>` (a file), `d/11` linked to a directory outside holding
    /// `<b>`, and `d/22/<c>` a link to a file outside.
    struct Tree {
        _tmp: tempfile::TempDir,
        bucket: PathBuf,
        outside: PathBuf,
    }

    fn tree() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = tmp.path().join("bucket");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(bucket.join("d/00")).unwrap();
        std::fs::create_dir_all(bucket.join("d/22")).unwrap();
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(bucket.join("d/00/a"), b"a").unwrap();
        std::fs::write(outside.join("b"), b"b").unwrap();
        std::fs::write(outside.join("sub/deep"), b"deep").unwrap();
        std::fs::write(outside.join("c"), b"c").unwrap();
        symlink(&outside, bucket.join("d/11")).unwrap();
        symlink(outside.join("c"), bucket.join("d/22/c")).unwrap();
        Tree { _tmp: tmp, bucket, outside }
    }

    async fn names(store: &LocalBucket, prefix: &str) -> Vec<(String, bool)> {
        let mut listed: Vec<(String, bool)> = store
            .list(Some(&Path::from(prefix)))
            .map_ok(|m| (m.location.to_string(), m.e_tag.as_deref() == Some(SYMLINK_ETAG)))
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        listed
    }

    #[tokio::test]
    async fn listings_do_not_follow_links_and_tag_them() {
        let t = tree();
        let store = LocalBucket::new(&t.bucket).unwrap();
        let listed = names(&store, "d").await;
        assert_eq!(
            listed,
            vec![("d/00/a".into(), false), ("d/11".into(), true), ("d/22/c".into(), true)],
            "the linked directory must not be walked"
        );
        // Listing through the link lists nothing inside it, only the link.
        assert_eq!(names(&store, "d/11").await, vec![("d/11".into(), true)]);
        let top = store.list_with_delimiter(Some(&Path::from("d"))).await.unwrap();
        assert_eq!(top.common_prefixes, vec![Path::from("d/00"), Path::from("d/22")]);
        assert_eq!(top.objects.len(), 1);
        assert_eq!(top.objects[0].location, Path::from("d/11"));
        assert_eq!(top.objects[0].e_tag.as_deref(), Some(SYMLINK_ETAG));
        let inner = store.list_with_delimiter(Some(&Path::from("d/22"))).await.unwrap();
        assert_eq!(inner.objects[0].e_tag.as_deref(), Some(SYMLINK_ETAG));
        let through = store.list_with_delimiter(Some(&Path::from("d/11/sub"))).await.unwrap();
        assert!(through.common_prefixes.is_empty());
        assert_eq!(through.objects[0].location, Path::from("d/11"));
    }

    #[tokio::test]
    async fn deletes_and_reads_through_links_are_refused() {
        let t = tree();
        let store = LocalBucket::new(&t.bucket).unwrap();
        for key in ["d/11/b", "d/22/c", "d/11/sub/deep"] {
            let deleted = store.delete(&Path::from(key)).await;
            assert!(matches!(deleted, Err(Error::PermissionDenied { .. })), "{key}: {deleted:?}");
            assert!(matches!(store.head(&Path::from(key)).await, Err(Error::PermissionDenied { .. })), "{key}");
            assert!(matches!(store.get(&Path::from(key)).await, Err(Error::PermissionDenied { .. })), "{key}");
        }
        assert!(t.outside.join("b").exists() && t.outside.join("c").exists() && t.outside.join("sub/deep").exists());
        assert!(t.bucket.join("d/22/c").symlink_metadata().is_ok(), "the link itself is not deleted either");
        // Plain files work as before; a missing one is NotFound.
        assert_eq!(store.head(&Path::from("d/00/a")).await.unwrap().size, 1);
        store.delete(&Path::from("d/00/a")).await.unwrap();
        assert!(!t.bucket.join("d/00/a").exists());
        // Deleting it again: NotFound, naming the key (not the file), like every other result.
        let again = store.delete(&Path::from("d/00/a")).await;
        assert!(matches!(&again, Err(Error::NotFound { path, .. }) if path == "d/00/a"), "{again:?}");
        assert!(matches!(store.head(&Path::from("d/00/a")).await, Err(Error::NotFound { .. })));
        assert!(matches!(store.head(&Path::from("nope/x")).await, Err(Error::NotFound { .. })));
    }

    #[tokio::test]
    async fn the_bucket_directory_itself_may_be_a_link() {
        let t = tree();
        let alias = t.bucket.with_file_name("alias");
        symlink(&t.bucket, &alias).unwrap();
        let store = LocalBucket::new(&alias).unwrap();
        assert!(store.checked_file(&Path::from("d/00/a")).is_ok());
        assert_eq!(store.get(&Path::from("d/00/a")).await.unwrap().bytes().await.unwrap().as_ref(), b"a");
        assert!(matches!(store.get(&Path::from("d/22/c")).await, Err(Error::PermissionDenied { .. })));
    }

    fn listing(max_retries: usize) -> LocalListing {
        let policy = crate::store::RetryPolicy {
            max_retries,
            initial_backoff: std::time::Duration::ZERO,
            max_backoff: std::time::Duration::ZERO,
        };
        LocalListing { dir: PathBuf::from("/nowhere"), policy, retries: Arc::default(), counters: Arc::default() }
    }

    /// A directory that fails to open for a moment (NFS's `ESTALE`) is opened again, and the
    /// retry is counted; a permanent error (`EACCES`) is not retried; the retries stop at
    /// the store's bound.
    #[test]
    fn the_walk_opens_again_only_what_may_pass() {
        use rustix::io::Errno;
        let walk = listing(3);
        let mut calls = 0;
        let opened = walk.open_retrying(|| {
            calls += 1;
            if calls < 3 { Err(Errno::STALE) } else { Ok(calls) }
        });
        assert_eq!((opened, walk.retries.load(std::sync::atomic::Ordering::Relaxed)), (Ok(3), 2));
        let mut calls = 0;
        let denied: Result<(), _> = walk.open_retrying(|| {
            calls += 1;
            Err(Errno::ACCESS)
        });
        assert_eq!((denied, calls), (Err(Errno::ACCESS), 1));
        let mut calls = 0;
        let stale: Result<(), _> = walk.open_retrying(|| {
            calls += 1;
            Err(Errno::IO)
        });
        assert_eq!((stale, calls), (Err(Errno::IO), 4), "the first call and 3 retries");
    }

    #[test]
    fn a_directory_read_counts_as_list_pages() {
        let walk = listing(0);
        for objects in [0, 1, 1000, 1001, 2500] {
            walk.count_directory(objects);
        }
        assert_eq!(walk.counters.snapshot().list_pages, 1 + 1 + 1 + 2 + 3);
    }
}
