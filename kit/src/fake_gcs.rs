//! Test-kit support for fake-gcs-server (`scripts/gcs-server`), the GCS emulator the test
//! suite and benches run against. Never used by `gc_partition` itself.
//!
//! Two things `object_store`'s GCS client cannot do there: write (the emulator answers its
//! XML-API PUT with `400 invalid uploadType`, so [`JsonUploads`] uploads through the JSON
//! API instead) and age objects (the emulator keeps each object as the file
//! `ROOT/<bucket>/<key>` with its metadata as JSON in the `user.metadata` extended attribute;
//! [`crate::gcs_metadata::set_updated`] rewrites the times there, and listings and HEAD report them at once).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use gc_partition::store::{Layer, Stores};

use crate::ageing::Ageing;

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
