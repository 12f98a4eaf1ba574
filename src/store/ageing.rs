//! The test kit's hands on a store (feature `test-kit`: `gc_synth`, the tests and the
//! benches; never in `gc_partition`): buckets made as directories, and objects aged, on
//! `file://`, `memory://` and the test servers whose objects are files under a root.

use std::path::{Path as FsPath, PathBuf};

use chrono::{DateTime, Utc};

use super::{Backend, StoreError, Stores};

impl Stores {
    /// Declares that every object of this remote store is the file `root/<bucket>/<key>`
    /// (as on the `s3s-fs` and fake-gcs-server test servers), so tests and `gc_synth` can age
    /// objects (file mtimes on s3s-fs, [`crate::fake_gcs::set_updated`] on fake-gcs-server)
    /// and create buckets as directories. Never used by `gc_partition` itself.
    pub fn with_backdate_root(mut self, root: PathBuf) -> Self {
        self.backdate_root = Some(root);
        self
    }

    /// Whether [`Stores::set_last_modified`] works on this store.
    pub fn can_backdate(&self) -> bool {
        match self.backend {
            Backend::Local(_) | Backend::Memory => true,
            Backend::Gcs | Backend::S3 => self.backdate_root.is_some(),
            Backend::Generated(_) => false,
        }
    }

    /// Creates the bucket where the store allows it (`file://` directories, `memory://`, and a
    /// remote store with a backdate root, whose buckets are directories).
    pub fn create_bucket(&self, bucket: &str) -> std::io::Result<()> {
        match (&self.backend, &self.backdate_root) {
            (Backend::Local(root), _) | (Backend::Gcs | Backend::S3, Some(root)) => {
                std::fs::create_dir_all(root.join(bucket))
            }
            (Backend::Memory, _) => {
                self.memory_bucket(bucket);
                Ok(())
            }
            (Backend::Gcs | Backend::S3, None) | (Backend::Generated(_), _) => Ok(()),
        }
    }

    /// Makes an object look written at `when`: the file's mtime on `file://` and under an
    /// `s3://` backdate root, its fake-gcs-server metadata under a `gs://` one
    /// ([`crate::fake_gcs`]), an override on `memory://`. Tests and `gc_synth` use it to age chunks.
    pub fn set_last_modified(&self, bucket: &str, key: &str, when: DateTime<Utc>) -> Result<(), StoreError> {
        let fail = |why: String| StoreError::Backdate { bucket: bucket.to_owned(), key: key.to_owned(), why };
        match (&self.backend, &self.backdate_root) {
            (Backend::Local(root), _) | (Backend::S3, Some(root)) => {
                let path = root.join(bucket).join(key);
                set_mtime(&path, when).map_err(|e| fail(format!("{}: {e}", path.display())))
            }
            (Backend::Gcs, Some(root)) => {
                let path = root.join(bucket).join(key);
                crate::fake_gcs::set_updated(&path, when).map_err(|e| fail(format!("{}: {e}", path.display())))
            }
            (Backend::Memory, _) => {
                self.memory_bucket(bucket).set_last_modified(key, when);
                Ok(())
            }
            (Backend::Gcs | Backend::S3, None) => {
                Err(fail(format!("{} objects can only be aged with a backdate root", self.backend.scheme())))
            }
            (Backend::Generated(_), _) => Err(fail("gen:// objects age from the URL's `now`".to_owned())),
        }
    }
}

pub fn set_mtime(path: &FsPath, when: DateTime<Utc>) -> std::io::Result<()> {
    let mtime = filetime::FileTime::from_unix_time(when.timestamp(), when.timestamp_subsec_nanos());
    filetime::set_file_mtime(path, mtime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn remote_stores_cannot_be_aged_without_a_root() {
        assert!(!stores_can_backdate_without_root());
    }

    fn stores_can_backdate_without_root() -> bool {
        let vars = env(&[("AWS_REGION", "us-east-1")]);
        Stores::from_url_and_env("s3://", StoreOptions::default(), vars).expect("s3").can_backdate()
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
        stores.create_bucket("b").expect("mkdir");
        std::fs::write(dir.path().join("b/k"), b"x").expect("write");
        let when = DateTime::from_timestamp(1_000_000_000, 0).expect("ts");
        stores.set_last_modified("b", "k", when).expect("backdate");
        let meta = std::fs::metadata(dir.path().join("b/k")).expect("meta");
        assert_eq!(filetime::FileTime::from_last_modification_time(&meta).unix_seconds(), 1_000_000_000);
        let err = stores.set_last_modified("b", "missing", when).expect_err("missing file");
        assert!(err.to_string().contains("bucket b key missing"), "{err}");
    }
}
