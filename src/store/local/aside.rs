//! `file://`'s compare-and-delete (spec 9.1) done by the store: the chunk is renamed aside to
//! its held key (`renameat`), its mtime read there (`statx`), then it is unlinked
//! (`unlinkat`) or put back without replacing what a writer put at the key meanwhile
//! (`renameat2` with `RENAME_NOREPLACE`). Every call is relative to the descriptors of the
//! chunk's directory and of its held directory, each opened once and kept (a plan comes
//! sorted by directory), one component at a time with `O_NOFOLLOW` from the bucket
//! directory: that open is the bucket's symbolic-link check, made once per directory, where
//! [`super::LocalBucket`] `lstat`s every component of both paths at every call (about 26
//! `statx` a chunk, and a blocking-pool hop for each of its four calls).
//!
//! The chunks handed in (one future each, `--delete-concurrency` at once) queue for a few
//! blocking workers (no more than cores, see [`MAX_WORKERS`]) that take them in order, each
//! chunk whole in one go, and hand the outcomes back several at a time: no blocking-pool hop
//! per chunk, and the run's task wakes once for several chunks. A chunk still queued when the
//! run's stop comes is not started. Measured on 2 cores (the 2.1M
//! partition, BENCHMARKS.md): with a `spawn_blocking` per chunk the whole `--execute` took
//! 1.74-1.98x its floor, with these workers 1.19-1.42x.
//!
//! What a chunk sees is what it saw through [`super::LocalBucket`]:
//! - a key that is, or goes through, a symbolic link is refused, and nothing is renamed or
//!   deleted: the key is `statx`'d (not following) before its rename, and a link, a
//!   directory or anything else that is not a regular file fails the delete;
//! - a chunk not at its key (nor at its held key, where an attempt that reported an error
//!   may have moved it) is already gone; a chunk whose mtime is no longer doomed is kept,
//!   before or after its rename;
//! - once renamed aside, a chunk is always finished (deleted or put back) by the same
//!   worker before it takes another, whatever signal arrives, even if the run stopped
//!   waiting for it; a kill leaves it for the next run's put-back;
//! - on a file system without `RENAME_NOREPLACE` the put-back links then unlinks, as
//!   `LocalFileSystem`'s no-replace rename does.
//!
//! Errors that may pass (NFS's `ESTALE`, `EIO`, `EINTR`, ...) are retried with the store's
//! policy and counted as retries; the re-read counts as a `head`, every unlink as a delete,
//! as the `ObjectStore` path counts them. [`crate::store::Stores::local_aside`] hands this
//! out only when no test layer wraps the store, so injected faults still reach deletes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Statx, StatxFlags};
use rustix::io::Errno;
use tokio_util::sync::CancellationToken;

use super::{is_transient_errno, walk};
use crate::store::{RequestCounters, RetryPolicy};

/// Directories kept open at once; the plan's order needs a few (a directory, its held one).
const OPEN_DIRS: usize = 64;

/// Outcomes a worker hands back at once (fewer when the queue runs dry).
const RELEASE: usize = 8;

/// Workers per bucket, at most (and no more than cores): the chunks of one directory contend
/// for its lock, and on 2 cores 4 workers spent a fifth more system time than 2 for no gain.
const MAX_WORKERS: usize = 4;

/// What became of a chunk deleted by renaming it aside.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AsideOutcome {
    /// Still doomed at its held key, and unlinked there.
    Deleted,
    /// Not at its key (nor held), or unlinked by someone else meanwhile: done (spec 4.6).
    AlreadyGone,
    /// No longer doomed: left or put back at its key (or a writer's new copy was there).
    Kept,
    /// Not deleted; the chunk is at its key, or where the message says.
    Failed(String),
    /// Still queued when the run's stop came: untouched.
    NotStarted,
}

/// The compare-and-delete of one `file://` bucket (see the module docs). Cheap to clone;
/// clones share their open directories.
#[derive(Debug, Clone)]
pub struct LocalAside {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The bucket's name and directory (which may itself be a link: it is the store's root).
    bucket: String,
    dir: PathBuf,
    policy: RetryPolicy,
    retries: Arc<AtomicU64>,
    counters: Arc<RequestCounters>,
    /// Directories opened (and so checked), by key.
    open: Mutex<HashMap<String, Arc<OwnedFd>>>,
    /// Chunks waiting for a worker, and how many workers drain them.
    queue: Mutex<Queue>,
    max_workers: usize,
}

/// The chunks handed to the workers, in the order they came (the plan's: by directory).
#[derive(Debug, Default)]
struct Queue {
    jobs: std::collections::VecDeque<Job>,
    workers: usize,
}

/// One chunk to delete, and where its outcome goes.
struct Job {
    key: String,
    held: String,
    still_doomed: Box<dyn Fn(i64) -> bool + Send>,
    stop: CancellationToken,
    done: Reply,
}

/// Where a chunk's outcome goes.
type Reply = tokio::sync::oneshot::Sender<AsideOutcome>;

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("key", &self.key).finish_non_exhaustive()
    }
}

/// A directory that could not be opened, in words naming its key.
type DirError = String;

impl LocalAside {
    pub(crate) fn new(
        bucket: &str,
        dir: PathBuf,
        policy: RetryPolicy,
        retries: Arc<AtomicU64>,
        counters: Arc<RequestCounters>,
    ) -> Self {
        let open = Mutex::new(HashMap::new());
        let max_workers = std::thread::available_parallelism().map_or(2, usize::from).min(MAX_WORKERS);
        let queue = Mutex::default();
        let bucket = bucket.to_owned();
        Self { inner: Arc::new(Inner { bucket, dir, policy, retries, counters, open, queue, max_workers }) }
    }

    /// Whether `key` names a file the way `LocalFileSystem` does (segments that object_store
    /// keeps as they are, none empty, `.` or `..`): only such keys are deleted here.
    pub(crate) fn takes(key: &str) -> bool {
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+');
        key.split('/').all(|part| !matches!(part, "" | "." | ".."))
            && (key.bytes().all(plain) || !key.contains('\0') && object_store::path::Path::from(key).as_ref() == key)
    }

    /// Renames the file at `key` to `held`, reads its mtime there, and unlinks it if
    /// `still_doomed` says so, else puts it back (see the module docs), on a worker (inline
    /// outside a runtime), unless `stop` comes before a worker takes it.
    pub(crate) async fn delete_aside(
        &self,
        key: &str,
        held: &str,
        still_doomed: impl Fn(i64) -> bool + Send + 'static,
        stop: &CancellationToken,
    ) -> AsideOutcome {
        if stop.is_cancelled() {
            return AsideOutcome::NotStarted;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return self.inner.delete_aside(key, held, still_doomed);
        }
        let (done, outcome) = tokio::sync::oneshot::channel();
        let (key, held, still_doomed, stop) = (key.to_owned(), held.to_owned(), Box::new(still_doomed), stop.clone());
        let job = Job { key, held, still_doomed, stop, done };
        let start_worker = {
            let mut queue = self.inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.jobs.push_back(job);
            let start = queue.workers < self.inner.max_workers;
            queue.workers += usize::from(start);
            start
        };
        if start_worker {
            let inner = Arc::clone(&self.inner);
            drop(tokio::task::spawn_blocking(move || inner.work()));
        }
        outcome.await.unwrap_or_else(|_| {
            AsideOutcome::Failed("the delete stopped: if it was renamed aside, the next --execute puts it back".into())
        })
    }
}

impl Inner {
    /// A worker: deletes the queued chunks one after the other until none is left. Outcomes
    /// are handed back [`RELEASE`] at a time, or when the queue runs dry: the run's task then
    /// wakes once for several chunks, not once for each.
    fn work(&self) {
        let mut panicking = Panicking(Some(self));
        let mut finished: Vec<(Reply, AsideOutcome)> = Vec::with_capacity(RELEASE);
        loop {
            let job = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                let job = if finished.len() < RELEASE { queue.jobs.pop_front() } else { None };
                if job.is_none() && finished.is_empty() {
                    // Under the lock that queued the last job: a job queued later starts a
                    // worker.
                    queue.workers -= 1;
                    panicking.0 = None;
                    return;
                }
                job
            };
            let Some(job) = job else {
                // The caller may be gone (its run stopped): the chunk is finished all the same.
                for (done, outcome) in finished.drain(..) {
                    let _ = done.send(outcome);
                }
                continue;
            };
            let outcome = if job.stop.is_cancelled() {
                AsideOutcome::NotStarted
            } else {
                self.delete_aside(&job.key, &job.held, job.still_doomed)
            };
            finished.push((job.done, outcome));
        }
    }
    fn delete_aside(&self, key: &str, held: &str, still_doomed: impl Fn(i64) -> bool) -> AsideOutcome {
        let ((key_dir, name), (held_dir, held_name)) = (split(key), split(held));
        let fail = AsideOutcome::Failed;
        // What is at the key, not following a link; the same read again in a directory
        // opened afresh if the one kept was removed (and perhaps made again) since.
        let mut at = match self.dir(key_dir, false) {
            Ok(Some(fd)) => fd,
            Ok(None) => return AsideOutcome::AlreadyGone,
            Err(e) => return fail(e),
        };
        let mut found = self.stat(&at, name);
        if matches!(found, Err(Errno::NOENT)) {
            match self.reopen(key_dir, false) {
                Ok(Some(fd)) => at = fd,
                Ok(None) => return AsideOutcome::AlreadyGone,
                Err(e) => return fail(e),
            }
            found = self.stat(&at, name);
        }
        match found.as_ref().map(walk::file_type) {
            // Refreshed already: kept without being moved.
            Ok(FileType::RegularFile) if found.as_ref().is_ok_and(|s| !still_doomed(walk::mtime_ms(s))) => {
                self.counters.head.fetch_add(1, Ordering::Relaxed);
                return AsideOutcome::Kept;
            }
            Ok(FileType::RegularFile) => {}
            Ok(FileType::Symlink) => return fail(format!("{key} is a symbolic link: not followed")),
            Ok(other) => return fail(format!("{key} is not a regular file ({other:?}): not deleted")),
            Err(&Errno::NOENT) => return AsideOutcome::AlreadyGone,
            Err(&e) => return fail(format!("reading {key}: {}", io(e))),
        }
        let mut aside = match self.dir(held_dir, true) {
            Ok(Some(fd)) => fd,
            Ok(None) => return fail(format!("{held_dir}: cannot be made")),
            Err(e) => return fail(e),
        };
        let mut renamed = self.retrying(|| rustix::fs::renameat(&*at, name, &*aside, held_name));
        if renamed == Err(Errno::NOENT) && self.stat(&at, name).is_ok() {
            // The held directory was removed since it was opened: made again, once.
            match self.reopen(held_dir, true) {
                Ok(Some(fd)) => aside = fd,
                Ok(None) => return fail(format!("{held_dir}: cannot be made")),
                Err(e) => return fail(e),
            }
            renamed = self.retrying(|| rustix::fs::renameat(&*at, name, &*aside, held_name));
        }
        match renamed {
            Ok(()) => {}
            // Gone, unless an attempt that reported an error had moved it.
            Err(Errno::NOENT) => match self.stat(&aside, held_name) {
                Ok(_) => {}
                Err(Errno::NOENT) => return AsideOutcome::AlreadyGone,
                Err(e) => return fail(format!("renaming aside to {held}: the chunk is not at its key, and {}", io(e))),
            },
            Err(e) => return fail(format!("renaming aside to {held}: {}", io(e))),
        }
        let dirs = Held { at: &at, name, aside: &aside, held_name, key_dir };
        self.counters.head.fetch_add(1, Ordering::Relaxed);
        let doomed = match self.stat(&aside, held_name) {
            Ok(stat) if walk::file_type(&stat) == FileType::RegularFile => still_doomed(walk::mtime_ms(&stat)),
            // Swapped for something else between the two reads: back where it was, untouched.
            Ok(_) => return fail(format!("{key} changed into a non-file while deleted: {}", self.note(&dirs))),
            Err(e) => return fail(format!("re-reading last-modified of {held}: {}; {}", io(e), self.note(&dirs))),
        };
        if !doomed {
            return match self.put_back(&dirs) {
                Ok(()) => AsideOutcome::Kept,
                Err(e) => fail(format!("refreshed, but {}", note(Err(e)))),
            };
        }
        self.count_delete();
        match self.retrying(|| rustix::fs::unlinkat(&*aside, held_name, AtFlags::empty())) {
            Ok(()) => AsideOutcome::Deleted,
            // Someone else deleted it meanwhile: done, but not freed by this run.
            Err(Errno::NOENT) => AsideOutcome::AlreadyGone,
            // Put back, so a failed delete leaves the chunk where it was.
            Err(e) => fail(format!("deleting {held}: {}; {}", io(e), self.note(&dirs))),
        }
    }

    /// Moves a held file back to its key without replacing what is there: a copy a writer
    /// made meanwhile wins, and the held one is then unlinked (chunks are content-addressed).
    fn put_back(&self, dirs: &Held<'_>) -> Result<(), Errno> {
        let Held { at, name, aside, held_name, key_dir } = *dirs;
        let back = |to: &OwnedFd| {
            self.retrying(|| {
                match rustix::fs::renameat_with(aside, held_name, to, name, RenameFlags::NOREPLACE) {
                    // A file system without RENAME_NOREPLACE: link, then unlink.
                    Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                        rustix::fs::linkat(aside, held_name, to, name, AtFlags::empty())?;
                        rustix::fs::unlinkat(aside, held_name, AtFlags::empty())
                    }
                    done => done,
                }
            })
        };
        let mut moved = back(at);
        if moved == Err(Errno::NOENT) && self.stat(aside, held_name).is_ok() {
            // The key's directory was removed since the rename: made again, once.
            let fresh = self.reopen(key_dir, true).ok().flatten().ok_or(Errno::NOENT)?;
            moved = back(&fresh);
        }
        match moved {
            Err(Errno::EXIST) => {
                self.count_delete();
                match self.retrying(|| rustix::fs::unlinkat(aside, held_name, AtFlags::empty())) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            // Moved back already, by an attempt that reported an error.
            Err(Errno::NOENT) => self.stat(at, name).map(drop).map_err(|_| Errno::NOENT),
            done => done,
        }
    }

    /// [`Self::put_back`] in the words of a failure's message.
    fn note(&self, dirs: &Held<'_>) -> String {
        note(self.put_back(dirs))
    }

    /// `statx` (type and mtime) of an entry of `dir`, not following a link.
    fn stat(&self, dir: &OwnedFd, name: &str) -> Result<Statx, Errno> {
        let fields = StatxFlags::TYPE | StatxFlags::MTIME;
        self.retrying(|| rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, fields))
    }

    fn count_delete(&self) {
        self.counters.delete_calls.fetch_add(1, Ordering::Relaxed);
        self.counters.deleted_keys.fetch_add(1, Ordering::Relaxed);
    }

    /// `call` once, and again after the store's backoff while its error may pass.
    fn retrying<T>(&self, mut call: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
        let mut retry = 0;
        loop {
            match call() {
                Err(e) if retry < self.policy.max_retries && is_transient_errno(e) => {
                    std::thread::sleep(self.policy.backoff(retry));
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    retry += 1;
                }
                done => return done,
            }
        }
    }

    /// The directory `key` of the bucket, opened (and kept) without following a link;
    /// `None` if it does not exist and `create` is not asked.
    fn dir(&self, key: &str, create: bool) -> Result<Option<Arc<OwnedFd>>, DirError> {
        // Opened under the lock: the chunks of a directory wait for its one opening.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fd) = open.get(key) {
            return Ok(Some(Arc::clone(fd)));
        }
        self.open_into(&mut open, key, create)
    }

    /// [`Self::dir`], opened afresh (the one kept may have been removed since).
    fn reopen(&self, key: &str, create: bool) -> Result<Option<Arc<OwnedFd>>, DirError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        self.open_into(&mut open, key, create)
    }

    fn open_into(
        &self,
        open: &mut HashMap<String, Arc<OwnedFd>>,
        key: &str,
        create: bool,
    ) -> Result<Option<Arc<OwnedFd>>, DirError> {
        let Some(fd) = self.open_dir(key, create)? else {
            open.remove(key);
            return Ok(None);
        };
        let fd = Arc::new(fd);
        if open.len() >= OPEN_DIRS {
            open.clear();
        }
        open.insert(key.to_owned(), Arc::clone(&fd));
        Ok(Some(fd))
    }

    /// Opens the bucket directory, then each component of `key` below it with `O_NOFOLLOW`
    /// (made first if missing and `create`): a component that is a link is refused.
    fn open_dir(&self, key: &str, create: bool) -> Result<Option<OwnedFd>, DirError> {
        let fail = |what: &str, e: Errno| format!("{what}: {}", io(e));
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root = self.dir.display().to_string();
        let mut fd = match self.retrying(|| rustix::fs::openat(rustix::fs::CWD, &self.dir, flags, Mode::empty())) {
            Ok(fd) => fd,
            Err(e) => return Err(fail(&format!("bucket {} directory {root}", self.bucket), e)),
        };
        let mut at = String::new();
        for part in key.split('/').filter(|part| !part.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            let mut opened = self.retrying(|| walk::open_dir(&fd, part));
            if create && matches!(opened, Err(Errno::NOENT)) {
                match self.retrying(|| rustix::fs::mkdirat(&fd, part, Mode::from_raw_mode(0o777))) {
                    Ok(()) | Err(Errno::EXIST) => opened = self.retrying(|| walk::open_dir(&fd, part)),
                    Err(e) => return Err(fail(&format!("making {at}"), e)),
                }
            }
            fd = match opened {
                Ok(next) => next,
                Err(Errno::NOENT) => return Ok(None),
                // `O_NOFOLLOW` on a link: ELOOP; `O_DIRECTORY` on anything else: ENOTDIR.
                Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                    return Err(match self.stat(&fd, part).map(|s| walk::file_type(&s)) {
                        Ok(FileType::Symlink) => format!("{at} is a symbolic link: not followed"),
                        _ => fail(&at, e),
                    });
                }
                Err(e) => return Err(fail(&at, e)),
            };
        }
        Ok(Some(fd))
    }
}

/// A worker that leaves by a panic (a bug): one fewer, and the chunks still queued fail
/// unstarted instead of waiting for a worker that may never come.
struct Panicking<'a>(Option<&'a Inner>);

impl Drop for Panicking<'_> {
    fn drop(&mut self) {
        if let Some(inner) = self.0 {
            let mut queue = inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.workers -= 1;
            queue.jobs.clear();
        }
    }
}

/// A chunk renamed aside: its directory and name, and where it is held.
#[derive(Clone, Copy)]
struct Held<'a> {
    at: &'a OwnedFd,
    name: &'a str,
    aside: &'a OwnedFd,
    held_name: &'a str,
    /// The key of `at`, to open it again.
    key_dir: &'a str,
}

/// A key's directory (`""` at the top of the bucket) and name.
fn split(key: &str) -> (&str, &str) {
    key.rsplit_once('/').unwrap_or(("", key))
}

fn io(e: Errno) -> std::io::Error {
    e.into()
}

/// How a put-back after a failure went, in a failure's words.
fn note(put_back: Result<(), Errno>) -> String {
    match put_back {
        Ok(()) => "put back".to_owned(),
        Err(e) => {
            let e = io(e);
            tracing::error!(error = %e, "a chunk renamed aside could not be put back: the next --execute puts it back");
            format!("putting it back failed ({e}): the next --execute puts it back")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;

    const HELD: &str = "held+";

    struct Bucket {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        outside: PathBuf,
        aside: LocalAside,
        counters: Arc<RequestCounters>,
    }

    /// A bucket with `d/00/a` and `d/00/b` (regular files), `d/11` a link to a directory
    /// outside holding `x`, and `d/22/c` a link to a file outside.
    fn bucket() -> Bucket {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, outside) = (tmp.path().join("bucket"), tmp.path().join("outside"));
        std::fs::create_dir_all(dir.join("d/00")).unwrap();
        std::fs::create_dir_all(dir.join("d/22")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        for name in ["a", "b"] {
            std::fs::write(dir.join("d/00").join(name), name).unwrap();
        }
        std::fs::write(outside.join("x"), b"x").unwrap();
        std::fs::write(outside.join("c"), b"c").unwrap();
        symlink(&outside, dir.join("d/11")).unwrap();
        symlink(outside.join("c"), dir.join("d/22/c")).unwrap();
        let counters = Arc::new(RequestCounters::default());
        let policy = RetryPolicy::default();
        let aside = LocalAside::new("b1", dir.clone(), policy, Arc::default(), Arc::clone(&counters));
        Bucket { _tmp: tmp, dir, outside, aside, counters }
    }

    fn held(key: &str) -> String {
        format!("{HELD}/{key}")
    }

    fn delete(b: &Bucket, key: &str, still_doomed: impl Fn(i64) -> bool + Send + 'static) -> AsideOutcome {
        b.aside.inner.delete_aside(key, &held(key), still_doomed)
    }

    /// `true` for the read before the rename, then what `after` says (the read at the held key).
    fn doomed_then(after: impl Fn() -> bool + Send + 'static) -> impl Fn(i64) -> bool + Send + 'static {
        let calls = AtomicUsize::new(0);
        move |_| calls.fetch_add(1, Ordering::SeqCst) == 0 || after()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[tokio::test]
    async fn a_doomed_chunk_is_renamed_aside_then_unlinked() {
        let b = bucket();
        let mtime = std::fs::metadata(b.dir.join("d/00/a")).unwrap().modified().unwrap();
        let expected = chrono::DateTime::<chrono::Utc>::from(mtime).timestamp_millis();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let outcome = b
            .aside
            .delete_aside(
                "d/00/a",
                &held("d/00/a"),
                move |ms| {
                    log.lock().unwrap().push(ms);
                    true
                },
                &CancellationToken::new(),
            )
            .await;
        assert_eq!(outcome, AsideOutcome::Deleted);
        assert_eq!(*seen.lock().unwrap(), [expected, expected], "the mtime as LocalFileSystem's head gives it");
        assert!(!b.dir.join("d/00/a").exists() && !b.dir.join(held("d/00/a")).exists());
        assert_eq!(read(&b.dir.join("d/00/b")), "b", "its neighbour is untouched");
        let counts = b.counters.snapshot();
        assert_eq!((counts.head, counts.delete_calls, counts.deleted_keys), (1, 1, 1));
        // Missing now: done, nothing counted; a missing directory too.
        assert_eq!(delete(&b, "d/00/a", |_| true), AsideOutcome::AlreadyGone);
        assert_eq!(delete(&b, "d/99/a", |_| true), AsideOutcome::AlreadyGone);
        assert_eq!(b.counters.snapshot().head, 1);
    }

    /// Many chunks in flight at once through the workers, a third of them refreshed: every
    /// one finishes, nothing is left aside, whatever the number in flight.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_in_flight_together_all_finish() {
        use futures::StreamExt;
        let b = bucket();
        let keys: Vec<String> = (0..300).map(|i| format!("d/33/{i:04}")).collect();
        std::fs::create_dir_all(b.dir.join("d/33")).unwrap();
        for key in &keys {
            std::fs::write(b.dir.join(key), key).unwrap();
        }
        for (in_flight, part) in [(32, &keys[..150]), (1, &keys[150..])] {
            let outcomes: Vec<(String, AsideOutcome)> = futures::stream::iter(part)
                .map(|key| {
                    let (aside, key) = (b.aside.clone(), key.clone());
                    let refreshed = key.ends_with(['0', '3', '6']);
                    async move {
                        let stop = CancellationToken::new();
                        let outcome = aside.delete_aside(&key, &held(&key), move |_| !refreshed, &stop).await;
                        (key, outcome)
                    }
                })
                .buffer_unordered(in_flight)
                .collect()
                .await;
            assert_eq!(outcomes.len(), part.len());
            for (key, outcome) in outcomes {
                let refreshed = key.ends_with(['0', '3', '6']);
                assert_eq!(outcome, if refreshed { AsideOutcome::Kept } else { AsideOutcome::Deleted }, "{key}");
                assert_eq!(b.dir.join(&key).exists(), refreshed, "{key}");
            }
        }
        assert_eq!(std::fs::read_dir(b.dir.join(held("d/33"))).unwrap().count(), 0, "nothing left aside");
        // A worker leaves once it finds the queue empty, just after handing back its last.
        let gone = || b.aside.inner.queue.lock().unwrap().workers == 0;
        for _ in 0..100 {
            if gone() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(gone(), "the workers are gone");
        assert_eq!(b.counters.snapshot().deleted_keys, 210);
    }

    /// The run's stop keeps a chunk from starting, whether it comes before the chunk is handed
    /// in or while the chunk waits in the queue; a chunk queued with no stop is deleted.
    #[tokio::test]
    async fn a_stop_leaves_the_chunks_not_yet_started_untouched() {
        let b = bucket();
        let stop = CancellationToken::new();
        stop.cancel();
        assert_eq!(b.aside.delete_aside("d/00/a", &held("d/00/a"), |_| true, &stop).await, AsideOutcome::NotStarted);
        // Queued, then taken by a worker (here, this thread) once the stop has come.
        let mut replies = Vec::new();
        for (key, stop) in [("d/00/a", stop), ("d/00/b", CancellationToken::new())] {
            let (done, reply) = tokio::sync::oneshot::channel();
            let job = Job { key: key.into(), held: held(key), still_doomed: Box::new(|_| true), stop, done };
            b.aside.inner.queue.lock().unwrap().jobs.push_back(job);
            replies.push(reply);
        }
        b.aside.inner.queue.lock().unwrap().workers = 1;
        b.aside.inner.work();
        let outcomes: Vec<AsideOutcome> = replies.into_iter().map(|mut r| r.try_recv().unwrap()).collect();
        assert_eq!(outcomes, [AsideOutcome::NotStarted, AsideOutcome::Deleted]);
        assert_eq!(read(&b.dir.join("d/00/a")), "a", "untouched");
        assert!(!b.dir.join("d/00/b").exists());
        assert_eq!(b.aside.inner.queue.lock().unwrap().workers, 0);
    }

    #[test]
    fn a_chunk_refreshed_before_its_rename_is_not_moved() {
        let b = bucket();
        assert_eq!(delete(&b, "d/00/a", |_| false), AsideOutcome::Kept);
        assert_eq!(read(&b.dir.join("d/00/a")), "a");
        assert!(!b.dir.join(HELD).exists(), "nothing was renamed aside");
        assert_eq!(b.counters.snapshot().head, 1);
    }

    #[test]
    fn a_chunk_refreshed_at_its_reread_is_put_back() {
        let b = bucket();
        assert_eq!(delete(&b, "d/00/a", doomed_then(|| false)), AsideOutcome::Kept);
        assert_eq!(read(&b.dir.join("d/00/a")), "a");
        assert!(!b.dir.join(held("d/00/a")).exists());
        let counts = b.counters.snapshot();
        assert_eq!((counts.head, counts.delete_calls), (1, 0));
    }

    #[test]
    fn a_writers_copy_at_the_key_wins_over_the_put_back() {
        let b = bucket();
        let key = b.dir.join("d/00/a");
        // The writer finds the chunk gone while it is aside, and uploads it again.
        let writer = key.clone();
        let outcome = delete(&b, "d/00/a", doomed_then(move || std::fs::write(&writer, "new").is_err()));
        assert_eq!(outcome, AsideOutcome::Kept);
        assert_eq!(read(&key), "new", "the writer's copy is not replaced");
        assert!(!b.dir.join(held("d/00/a")).exists(), "the held copy is unlinked");
        assert_eq!(b.counters.snapshot().deleted_keys, 1);
    }

    #[test]
    fn links_are_never_followed_renamed_or_deleted() {
        let b = bucket();
        // Through a linked directory: refused before anything moves.
        let outcome = delete(&b, "d/11/x", |_| true);
        assert!(matches!(&outcome, AsideOutcome::Failed(e) if e.contains("d/11 is a symbolic link")), "{outcome:?}");
        assert_eq!(read(&b.outside.join("x")), "x");
        // A link at the key: refused, the link stays, its target too.
        let outcome = delete(&b, "d/22/c", |_| true);
        assert!(matches!(&outcome, AsideOutcome::Failed(e) if e.contains("d/22/c is a symbolic link")), "{outcome:?}");
        assert!(b.dir.join("d/22/c").symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(read(&b.outside.join("c")), "c");
        // The held folder a link out of the bucket: nothing is renamed into it.
        symlink(&b.outside, b.dir.join(HELD)).unwrap();
        let outcome = delete(&b, "d/00/a", |_| true);
        assert!(matches!(&outcome, AsideOutcome::Failed(e) if e.contains("held+ is a symbolic link")), "{outcome:?}");
        assert_eq!(read(&b.dir.join("d/00/a")), "a");
        assert!(!b.outside.join("d").exists());
        // A directory at the key is not a chunk either.
        let outcome = delete(&b, "d/00", |_| true);
        assert!(matches!(&outcome, AsideOutcome::Failed(e) if e.contains("not a regular file")), "{outcome:?}");
        let counts = b.counters.snapshot();
        assert_eq!((counts.head, counts.delete_calls), (0, 0));
    }

    #[test]
    fn a_directory_removed_and_made_again_is_opened_afresh() {
        let b = bucket();
        assert_eq!(delete(&b, "d/00/a", |_| true), AsideOutcome::Deleted);
        // The kept descriptors now name removed directories.
        std::fs::remove_dir_all(b.dir.join("d/00")).unwrap();
        std::fs::remove_dir_all(b.dir.join(HELD)).unwrap();
        std::fs::create_dir_all(b.dir.join("d/00")).unwrap();
        std::fs::write(b.dir.join("d/00/a"), "again").unwrap();
        assert_eq!(delete(&b, "d/00/a", doomed_then(|| false)), AsideOutcome::Kept);
        assert_eq!(read(&b.dir.join("d/00/a")), "again");
        assert_eq!(delete(&b, "d/00/a", |_| true), AsideOutcome::Deleted);
        assert!(!b.dir.join("d/00/a").exists());
    }

    #[test]
    fn the_bucket_directory_itself_may_be_a_link() {
        let b = bucket();
        let alias = b.dir.with_file_name("alias");
        symlink(&b.dir, &alias).unwrap();
        let aside = LocalAside::new("b1", alias, RetryPolicy::default(), Arc::default(), Arc::default());
        assert_eq!(aside.inner.delete_aside("d/00/b", &held("d/00/b"), |_| true), AsideOutcome::Deleted);
        assert!(!b.dir.join("d/00/b").exists());
    }

    #[test]
    fn only_plain_keys_are_taken() {
        for key in ["ab/abcd", "partitions/p1/chunks/ab/abcd", "gc_partition+deleting/ab/abcd", "x.manifest"] {
            assert!(LocalAside::takes(key), "{key}");
        }
        for key in ["", "/a", "a/", "a//b", "a/./b", "a/../b", "..", "a\0b"] {
            assert!(!LocalAside::takes(key), "{key:?}");
        }
    }
}
