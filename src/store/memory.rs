//! The `memory://` backend: object_store's `InMemory`, plus last-modified overrides so tests
//! and benches can age chunks the way file mtimes do on `file://`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

type Overrides = Arc<Mutex<HashMap<Path, DateTime<Utc>>>>;

#[derive(Debug, Default)]
pub struct MemoryBucket {
    inner: InMemory,
    overrides: Overrides,
}

impl MemoryBucket {
    pub fn set_last_modified(&self, key: &str, when: DateTime<Utc>) {
        lock(&self.overrides).insert(Path::from(key), when);
    }

    fn forget(&self, path: &Path) {
        lock(&self.overrides).remove(path);
    }
}

fn lock(overrides: &Overrides) -> std::sync::MutexGuard<'_, HashMap<Path, DateTime<Utc>>> {
    overrides.lock().unwrap_or_else(PoisonError::into_inner)
}

fn apply(overrides: &Overrides, mut meta: ObjectMeta) -> ObjectMeta {
    if let Some(when) = lock(overrides).get(&meta.location) {
        meta.last_modified = *when;
    }
    meta
}

impl fmt::Display for MemoryBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemoryBucket({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MemoryBucket {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.forget(location);
        Ok(result)
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.forget(location);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let mut result = self.inner.get_opts(location, options).await?;
        result.meta = apply(&self.overrides, result.meta);
        Ok(result)
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let overrides = Arc::clone(&self.overrides);
        self.inner
            .delete_stream(locations)
            .map(move |deleted| {
                if let Ok(path) = &deleted {
                    lock(&overrides).remove(path);
                }
                deleted
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let overrides = Arc::clone(&self.overrides);
        self.inner.list(prefix).map(move |meta| meta.map(|m| apply(&overrides, m))).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects = result.objects.into_iter().map(|m| apply(&self.overrides, m)).collect();
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.forget(to);
        Ok(())
    }

    /// A rename keeps the object's last-modified, as a file system's does (an `InMemory`
    /// copy would stamp it now).
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let last_modified = self.inner.head(from).await.map(|meta| apply(&self.overrides, meta).last_modified)?;
        self.inner.rename_opts(from, to, options).await?;
        let mut overrides = lock(&self.overrides);
        overrides.remove(from);
        overrides.insert(to.clone(), last_modified);
        Ok(())
    }
}
