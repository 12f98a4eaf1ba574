//! Test-kit support for fake-gcs-server (`scripts/gcs-server`), the GCS emulator the test
//! suite and benches run against. Never used by `gc_partition` itself.
//!
//! Two things `object_store`'s GCS client cannot do there: write (the emulator answers its
//! XML-API PUT with `400 invalid uploadType`, so [`JsonUploads`] uploads through the JSON
//! API instead) and age objects (the emulator keeps each object as the file
//! `ROOT/<bucket>/<key>` with its metadata as JSON in the `user.metadata` extended attribute;
//! [`set_updated`] rewrites the times there, and listings and HEAD report them at once).

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use gc_partition::store::{Layer, Stores};

use crate::ageing::Ageing;

/// The extended attribute where fake-gcs-server's filesystem backend keeps an object's
/// metadata.
const METADATA_XATTR: &str = "user.metadata";
const STORE: &str = "fake-gcs-server";

/// `stores` (a `gs://` store whose endpoint is fake-gcs-server at `endpoint`, with its
/// `-filesystem-root` at `root`) made writable and ageable: puts go through the JSON API,
/// [`Ageing::set_last_modified`] rewrites the object's metadata, buckets are directories.
pub fn test_server_stores(stores: Stores, root: PathBuf, endpoint: &str) -> Stores {
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let layer: Layer = Arc::new(move |bucket: &str, inner: Arc<dyn ObjectStore>| -> Arc<dyn ObjectStore> {
        Arc::new(JsonUploads { inner, client: client.clone(), endpoint: endpoint.clone(), bucket: bucket.to_owned() })
    });
    stores.with_backdate_root(root).layered(layer)
}

/// Makes the object stored in `file` (under fake-gcs-server's filesystem root) report `when`
/// as its last-modified time, in listings and HEAD.
pub fn set_updated(file: &FsPath, when: DateTime<Utc>) -> std::io::Result<()> {
    let invalid = |e: serde_json::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut buf = vec![0u8; 4096];
    let len = loop {
        match rustix::fs::getxattr(file, METADATA_XATTR, &mut buf[..]) {
            Ok(len) => break len,
            Err(rustix::io::Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e.into()),
        }
    };
    let mut meta: serde_json::Value = serde_json::from_slice(&buf[..len]).map_err(invalid)?;
    let stamp = serde_json::Value::from(when.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    for field in ["Updated", "Created"] {
        meta[field] = stamp.clone();
    }
    let json = serde_json::to_vec(&meta).map_err(invalid)?;
    rustix::fs::setxattr(file, METADATA_XATTR, &json, rustix::fs::XattrFlags::empty())?;
    Ok(())
}

/// One bucket of fake-gcs-server: `object_store`'s GCS client for everything but puts,
/// which are single JSON-API media uploads.
struct JsonUploads {
    inner: Arc<dyn ObjectStore>,
    client: reqwest::Client,
    endpoint: String,
    bucket: String,
}

impl fmt::Debug for JsonUploads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonUploads({}, {})", self.endpoint, self.bucket)
    }
}

impl fmt::Display for JsonUploads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

fn generic(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic { store: STORE, source: source.into() }
}

#[async_trait]
impl ObjectStore for JsonUploads {
    async fn put_opts(&self, location: &Path, payload: PutPayload, _opts: PutOptions) -> Result<PutResult> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/upload/storage/v1/b/{}/o", self.endpoint, self.bucket),
            [("uploadType", "media"), ("name", location.as_ref())],
        )
        .map_err(generic)?;
        let body: bytes::Bytes = payload.into();
        let response = self.client.post(url).body(body).send().await.map_err(generic)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(generic(format!("upload of {}/{location}: {status}: {text}", self.bucket)));
        }
        Ok(PutResult { e_tag: None, version: None, extensions: Default::default() })
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(object_store::Error::NotImplemented {
            operation: format!("multipart upload of {}/{location}", self.bucket),
            implementer: STORE.to_owned(),
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_updated_rewrites_both_times_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("obj");
        std::fs::write(&file, b"x").unwrap();
        let before = br#"{"Updated":"2026-01-01T00:00:00Z","Created":"2026-01-01T00:00:00Z","Generation":7}"#;
        rustix::fs::setxattr(&file, METADATA_XATTR, before, rustix::fs::XattrFlags::empty())
            .expect("the temporary directory supports user xattrs");
        let when = DateTime::from_timestamp(1_500_000_000, 123_000_000).unwrap();
        set_updated(&file, when).unwrap();
        let mut buf = vec![0u8; 4096];
        let len = rustix::fs::getxattr(&file, METADATA_XATTR, &mut buf[..]).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&buf[..len]).unwrap();
        assert_eq!(meta["Updated"], "2017-07-14T02:40:00.123Z");
        assert_eq!(meta["Created"], "2017-07-14T02:40:00.123Z");
        assert_eq!(meta["Generation"], 7);
    }

    #[test]
    fn set_updated_names_a_missing_object() {
        let dir = tempfile::tempdir().unwrap();
        let err = set_updated(&dir.path().join("gone"), Utc::now()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
