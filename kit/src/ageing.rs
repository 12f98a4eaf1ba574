//! The test kit's hands on a store (`gc_synth`, the tests and the benches; never in
//! `gc_partition`): buckets made as directories, and objects aged, on `file://`, `memory://`
//! and the test servers whose objects are files under a root.
//!
//! [`Ageing`] is implemented for `gc_partition`'s [`Stores`]; the test server's root travels
//! with the stores as their attachment ([`Stores::with_attachment`]), so clones and layered
//! copies can age objects too.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gc_partition::store::Stores;

/// An object that could not be aged.
#[derive(Debug, thiserror::Error)]
#[error("bucket {bucket} key {key}: cannot set last-modified on this store: {why}")]
pub struct AgeError {
    pub bucket: String,
    pub key: String,
    pub why: String,
}

/// The root under which a test server keeps every object as the file `<bucket>/<key>`.
#[derive(Debug, Clone)]
struct BackdateRoot(PathBuf);

/// The store kinds ageing tells apart, from the scheme `gc_partition` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    Memory,
    Gcs,
    S3,
    Azure,
    /// `gen://` and other custom backends: objects age from their own rules.
    Other,
}

fn kind(stores: &Stores) -> Kind {
    match stores.scheme() {
        "file://" => Kind::Local,
        "memory://" => Kind::Memory,
        "gs://" => Kind::Gcs,
        "s3://" => Kind::S3,
        "az://" => Kind::Azure,
        _ => Kind::Other,
    }
}

/// Buckets made and objects aged, where the store allows it.
pub trait Ageing: Sized {
    /// Declares that every object of this remote store is the file `root/<bucket>/<key>`
    /// (as on the `s3s-fs` and fake-gcs-server test servers), so tests and `gc_synth` can age
    /// objects (file mtimes on s3s-fs, [`crate::gcs_metadata::set_updated`] on fake-gcs-server)
    /// and create buckets as directories.
    fn with_backdate_root(self, root: PathBuf) -> Self;
    /// Whether [`Ageing::set_last_modified`] works on this store.
    fn can_backdate(&self) -> bool;
    /// Creates the bucket where the store allows it (`file://` directories, `memory://`, and
    /// a remote store with a backdate root, whose buckets are directories).
    fn create_bucket(&self, bucket: &str) -> std::io::Result<()>;
    /// Makes an object look written at `when`: the file's mtime on `file://` and under an
    /// `s3://` backdate root, its fake-gcs-server metadata under a `gs://` one
    /// ([`crate::fake_gcs`]), its Azurite record on `az://` ([`crate::azurite`]), an
    /// override on `memory://`.
    fn set_last_modified(&self, bucket: &str, key: &str, when: DateTime<Utc>) -> Result<(), AgeError>;
}

fn backdate_root(stores: &Stores) -> Option<&FsPath> {
    stores.attachment::<BackdateRoot>().map(|root| root.0.as_path())
}

impl Ageing for Stores {
    fn with_backdate_root(self, root: PathBuf) -> Self {
        self.with_attachment(Arc::new(BackdateRoot(root)))
    }

    fn can_backdate(&self) -> bool {
        match kind(self) {
            Kind::Local | Kind::Memory => true,
            Kind::Gcs | Kind::S3 => backdate_root(self).is_some(),
            Kind::Azure => crate::azurite::of(self).is_some(),
            Kind::Other => false,
        }
    }

    fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        match (kind(self), backdate_root(self)) {
            (Kind::Local, _) => match self.local_dir(bucket) {
                Some(dir) => std::fs::create_dir_all(dir),
                None => Ok(()),
            },
            (Kind::Gcs | Kind::S3, Some(root)) => std::fs::create_dir_all(root.join(bucket)),
            (Kind::Memory, _) => {
                self.memory_bucket(bucket);
                Ok(())
            }
            (Kind::Azure, _) => match crate::azurite::of(self) {
                Some(azurite) => azurite.create_container(bucket).map_err(std::io::Error::other),
                None => Ok(()),
            },
            (Kind::Gcs | Kind::S3, None) | (Kind::Other, _) => Ok(()),
        }
    }

    fn set_last_modified(&self, bucket: &str, key: &str, when: DateTime<Utc>) -> Result<(), AgeError> {
        let fail = |why: String| AgeError { bucket: bucket.to_owned(), key: key.to_owned(), why };
        let file = |root: &FsPath| root.join(bucket).join(key);
        match (kind(self), backdate_root(self)) {
            (Kind::Local, _) => {
                let path = self.local_file(bucket, key).ok_or_else(|| fail("no local file".to_owned()))?;
                set_mtime(&path, when).map_err(|e| fail(format!("{}: {e}", path.display())))
            }
            (Kind::S3, Some(root)) => {
                let path = file(root);
                set_mtime(&path, when).map_err(|e| fail(format!("{}: {e}", path.display())))
            }
            (Kind::Gcs, Some(root)) => {
                let path = file(root);
                crate::gcs_metadata::set_updated(&path, when).map_err(|e| fail(format!("{}: {e}", path.display())))
            }
            (Kind::Memory, _) => match self.memory_bucket(bucket) {
                Some(memory) => {
                    memory.set_last_modified(key, when);
                    Ok(())
                }
                None => Err(fail("no memory bucket".to_owned())),
            },
            (Kind::Azure, _) => match crate::azurite::of(self) {
                Some(azurite) => azurite.age(bucket, key, when).map_err(fail),
                None => Err(fail("az:// objects can only be aged on Azurite (gc_kit::azurite)".to_owned())),
            },
            (Kind::Gcs | Kind::S3, None) => {
                Err(fail(format!("{} objects can only be aged with a backdate root", self.scheme())))
            }
            (Kind::Other, _) => Err(fail(format!("{} objects age from the store's own rules", self.scheme()))),
        }
    }
}

/// Sets a file's mtime.
pub fn set_mtime(path: &FsPath, when: DateTime<Utc>) -> std::io::Result<()> {
    let mtime = filetime::FileTime::from_unix_time(when.timestamp(), when.timestamp_subsec_nanos());
    filetime::set_file_mtime(path, mtime)
}

#[cfg(test)]
mod tests {
    use gc_partition::store::StoreOptions;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn remote_stores_cannot_be_aged_without_a_root() {
        let vars = env(&[("AWS_REGION", "us-east-1")]);
        assert!(!Stores::from_url_and_env("s3://", StoreOptions::default(), vars).expect("s3").can_backdate());
    }

    #[test]
    fn backdate_root_ages_remote_objects_as_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vars = env(&[("AWS_REGION", "us-east-1")]);
        let stores = Stores::from_url_and_env("s3://", StoreOptions::default(), vars.clone()).expect("s3");
        let err = stores.set_last_modified("b", "k", Utc::now()).expect_err("no root");
        assert!(err.to_string().contains("bucket b key k"), "{err}");
        let stores = stores.with_backdate_root(dir.path().to_owned());
        assert!(stores.can_backdate());
        // A clone seen through a layer keeps the root.
        let stores = stores.layered(Arc::new(|_, store| store));
        assert!(stores.can_backdate());
        stores.create_bucket("b").expect("mkdir");
        std::fs::write(dir.path().join("b/k"), b"x").expect("write");
        let when = DateTime::from_timestamp(1_000_000_000, 0).expect("ts");
        stores.set_last_modified("b", "k", when).expect("backdate");
        let meta = std::fs::metadata(dir.path().join("b/k")).expect("meta");
        assert_eq!(filetime::FileTime::from_last_modification_time(&meta).unix_seconds(), 1_000_000_000);
        let err = stores.set_last_modified("b", "missing", when).expect_err("missing file");
        assert!(err.to_string().contains("bucket b key missing"), "{err}");
    }

    #[test]
    fn file_and_memory_stores_age_their_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("file://{}", dir.path().display());
        let stores = Stores::from_url(&url, StoreOptions::default()).expect("file");
        assert!(stores.can_backdate());
        stores.create_bucket("b").expect("mkdir");
        std::fs::write(dir.path().join("b/k"), b"x").expect("write");
        let when = DateTime::from_timestamp(1_000_000_000, 0).expect("ts");
        stores.set_last_modified("b", "k", when).expect("backdate");
        let meta = std::fs::metadata(dir.path().join("b/k")).expect("meta");
        assert_eq!(filetime::FileTime::from_last_modification_time(&meta).unix_seconds(), 1_000_000_000);
        let memory = Stores::memory();
        memory.create_bucket("m").expect("memory bucket");
        assert!(memory.memory_bucket("m").is_some());
        memory.set_last_modified("m", "k", when).expect("memory override");
    }
}
