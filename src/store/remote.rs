//! The remote stores' side of [`Stores`]: their configuration captured once, a client per
//! bucket, and the requests `object_store` has no call for (raw list pages with versions,
//! conditional and batched deletes) on the one request path, with each bucket's endpoint
//! resolved once from the configuration its client uses.

use std::sync::{Arc, PoisonError};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};

use super::requests::{Auth, Endpoint, HttpTransport, Requests};
use super::s3_versions::s3_bucket_url;
use super::{
    AzureDeleter, Backend, DeleteCondition, GcsDeleter, RawLister, RetryPolicy, S3Versions, StoreError, Stores,
    Transport, VersioningOnce, container_url,
};
use super::{azure, gcs_delete};

/// The emulator's URL, which `object_store`'s Azure builder reads from the environment.
const AZURITE_URL_VAR: &str = "AZURITE_BLOB_STORAGE_URL";

/// The configuration variables of a remote store, captured once. Values may be secrets:
/// this type has no `Debug` that shows them.
#[derive(Clone, Default)]
pub(super) struct RemoteEnv(Arc<Vec<(String, String)>>);

impl RemoteEnv {
    /// Keeps the variables `object_store`'s `from_env` builders read.
    pub(super) fn capture(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let keep = |k: &str| {
            ["AWS_", "GOOGLE_", "AZURE_"].iter().any(|p| k.starts_with(p))
                || k == "SERVICE_ACCOUNT"
                || k == AZURITE_URL_VAR
        };
        let mut vars: Vec<(String, String)> = vars.into_iter().filter(|(k, _)| keep(k)).collect();
        vars.sort();
        Self(Arc::new(vars))
    }

    /// `builder` given every captured variable that starts with `prefix` and names one of
    /// its configuration keys (`K`), as `object_store`'s `from_env` reads them.
    fn configure<B, K: std::str::FromStr>(&self, prefix: &str, builder: B, with: impl Fn(B, K, &str) -> B) -> B {
        let mut builder = builder;
        for (key, value) in self.0.iter().filter(|(k, _)| k.starts_with(prefix)) {
            if let Ok(config_key) = key.to_ascii_lowercase().parse::<K>() {
                builder = with(builder, config_key, value);
            }
        }
        builder
    }

    pub(super) fn s3(&self) -> AmazonS3Builder {
        self.configure("AWS_", AmazonS3Builder::new(), |b, k: AmazonS3ConfigKey, v: &str| b.with_config(k, v))
    }

    pub(super) fn azure(&self) -> MicrosoftAzureBuilder {
        self.configure("AZURE_", MicrosoftAzureBuilder::new(), |b, k: AzureConfigKey, v: &str| b.with_config(k, v))
    }

    /// Where `object_store` reaches the storage emulator; it reads this one variable from
    /// the process environment itself.
    pub(super) fn azurite_url(&self) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == AZURITE_URL_VAR).map(|(_, v)| v.as_str())
    }

    /// The HTTP client options `backend`'s `object_store` clients are built with: the
    /// builder's defaults (plain `http://` allowed on GCS, and on Azure's emulator), then
    /// every captured variable that names a client key (`AWS_PROXY_URL`,
    /// `AZURE_ALLOW_INVALID_CERTIFICATES`, `GOOGLE_USER_AGENT`, ...), parsed by the builder's
    /// own key type.
    pub(super) fn client_options(&self, backend: &Backend) -> ClientOptions {
        match backend {
            Backend::Gcs => {
                let defaults = ClientOptions::new().with_allow_http(true);
                self.configure("GOOGLE_", defaults, |o, k: GoogleConfigKey, v: &str| match k {
                    GoogleConfigKey::Client(k) => o.with_config(k, v),
                    _ => o,
                })
            }
            Backend::Azure => {
                let options = self.configure("AZURE_", ClientOptions::new(), |o, k: AzureConfigKey, v: &str| match k {
                    AzureConfigKey::Client(k) => o.with_config(k, v),
                    _ => o,
                });
                // As the builder does at `build`, whatever `AZURE_ALLOW_HTTP` says.
                let emulator = azure::is_set(&self.azure(), AzureConfigKey::UseEmulator);
                if emulator { options.with_allow_http(true) } else { options }
            }
            _ => self.configure("AWS_", ClientOptions::new(), |o, k: AmazonS3ConfigKey, v: &str| match k {
                AmazonS3ConfigKey::Client(k) => o.with_config(k, v),
                _ => o,
            }),
        }
    }

    pub(super) fn gcs(&self) -> GoogleCloudStorageBuilder {
        let mut builder = GoogleCloudStorageBuilder::new();
        if let Some((_, path)) = self.0.iter().find(|(k, _)| k == "SERVICE_ACCOUNT") {
            builder = builder.with_service_account_path(path);
        }
        self.configure("GOOGLE_", builder, |b, k: GoogleConfigKey, v: &str| b.with_config(k, v))
    }
}

impl std::fmt::Debug for RemoteEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| k)).finish()
    }
}

impl Stores {
    /// A client of one remote bucket. Our flags override the environment's timeout; the
    /// environment's other client settings (`AWS_ALLOW_HTTP`, proxies, ...) are kept.
    pub(super) fn build_remote(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
        let retry = RetryConfig { max_retries: self.options.max_retries, ..RetryConfig::default() };
        let timeout = humantime::format_duration(self.options.request_timeout).to_string();
        Ok(match &self.backend {
            Backend::Gcs => Arc::new(
                self.env
                    .gcs()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_config(GoogleConfigKey::Client(ClientConfigKey::Timeout), timeout)
                    .build()?,
            ),
            Backend::Azure => Arc::new(
                self.env
                    .azure()
                    .with_container_name(bucket)
                    .with_retry(retry)
                    .with_config(AzureConfigKey::Client(ClientConfigKey::Timeout), timeout)
                    .build()?,
            ),
            _ => Arc::new(
                self.env
                    .s3()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), timeout)
                    .build()?,
            ),
        })
    }

    /// How `bucket` is listed when the store is `s3://`, `gs://` or `az://`: pages fetched and parsed
    /// here, every name kept as the store sent it (`object_store` fails a page on a name it
    /// cannot make a `Path` of; see `store/raw_list.rs`). `None` on other stores, and under a
    /// simulated latency (benches), whose listings go through the bucket's `ObjectStore`.
    /// These requests go through the run's one request path ([`Stores::layered_requests`]
    /// wraps it); a [`Layer`] does not see them.
    pub fn raw_lister(&self, bucket: &str) -> Result<Option<RawLister>, StoreError> {
        if self.simulation.is_some() || !self.is_remote() {
            return Ok(None);
        }
        if let Some(lister) = self.listers.lock().unwrap_or_else(PoisonError::into_inner).get(bucket) {
            return Ok(Some(lister.clone()));
        }
        let (endpoint, requests) = (self.endpoint(bucket)?, self.request_path()?);
        let lister = match self.backend {
            Backend::Gcs => RawLister::gcs(endpoint, requests),
            Backend::Azure => RawLister::azure(endpoint, requests),
            _ => RawLister::s3(endpoint, self.s3_versioning(bucket)?, requests),
        };
        let mut listers = self.listers.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Some(listers.entry(bucket.to_owned()).or_insert(lister).clone()))
    }

    /// The conditional deleter of a `gs://` bucket (spec 9.1); `None` on other stores.
    pub(crate) fn gcs_deleter(&self, bucket: &str) -> Result<Option<GcsDeleter>, StoreError> {
        if self.delete_condition() != DeleteCondition::GenerationMatch {
            return Ok(None);
        }
        Ok(Some(GcsDeleter::new(self.endpoint(bucket)?, self.request_path()?)))
    }

    /// The conditional deleter of an `az://` container (spec 9.1); `None` on other stores.
    pub(crate) fn azure_deleter(&self, container: &str) -> Result<Option<AzureDeleter>, StoreError> {
        if self.delete_condition() != DeleteCondition::EtagMatch {
            return Ok(None);
        }
        Ok(Some(AzureDeleter::new(self.endpoint(container)?, self.request_path()?)))
    }

    /// The version deleter of an `s3://` bucket whose versioning is enabled (spec 9.1);
    /// `None` on other stores, and on a bucket that is unversioned or suspended, or whose
    /// versioning cannot be read (its deletes stay unconditional, and are reported so).
    pub(crate) async fn s3_versions(&self, bucket: &str) -> Result<Option<S3Versions>, StoreError> {
        if self.delete_condition() != DeleteCondition::VersionIfEnabled {
            return Ok(None);
        }
        Ok(self.s3_versioning(bucket)?.deleter().await)
    }

    /// How `bucket`'s versioning is read, once a run, by its listing and its deletes alike.
    pub(super) fn s3_versioning(&self, bucket: &str) -> Result<VersioningOnce, StoreError> {
        if let Some(versioning) = self.versionings.lock().unwrap_or_else(PoisonError::into_inner).get(bucket) {
            return Ok(versioning.clone());
        }
        let versioning = VersioningOnce::new(S3Versions::new(self.endpoint(bucket)?, self.request_path()?));
        let mut versionings = self.versionings.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(versionings.entry(bucket.to_owned()).or_insert(versioning).clone())
    }

    /// The run's one request path for the requests the collector builds itself (spec 10.2):
    /// one HTTP client (one connection pool) shared by every clone of these stores, wrapped
    /// by the test layer of [`Stores::layered_requests`], retried under the run's whole
    /// policy (`--max-retries`), counted in [`Stores::requests`] and [`Stores::retries`].
    pub(super) fn request_path(&self) -> Result<Requests, StoreError> {
        let http = {
            let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
            match &*http {
                Some(http) => http.clone(),
                None => {
                    let options = self.env.client_options(&self.backend).with_timeout(self.options.request_timeout);
                    let built = HttpTransport::new(&options)
                        .map_err(|source| StoreError::Config { scheme: self.backend.scheme(), source })?;
                    http.insert(built).clone()
                }
            }
        };
        let mut transport: Arc<dyn Transport> = Arc::new(http);
        if let Some(layer) = &self.request_layer {
            transport = layer(transport);
        }
        let policy = RetryPolicy {
            max_retries: self.options.max_retries,
            initial_backoff: self.options.initial_backoff,
            max_backoff: self.options.max_backoff,
        };
        Ok(Requests::new(transport, Arc::clone(&self.requests), Arc::clone(&self.retries), policy))
    }

    /// Where the collector's own requests reach `bucket`, and as whom: resolved once a run
    /// from the configuration its `object_store` client uses, with that client's credentials.
    pub(super) fn endpoint(&self, bucket: &str) -> Result<Arc<Endpoint>, StoreError> {
        if let Some(endpoint) = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).get(bucket) {
            return Ok(Arc::clone(endpoint));
        }
        let scheme = self.backend.scheme();
        let build = |source| StoreError::Build { bucket: bucket.to_owned(), scheme, source };
        let (url, auth) = match self.backend {
            Backend::Gcs => {
                let builder = self.env.gcs().with_bucket_name(bucket);
                let url = gcs_base_url(&builder).trim_end_matches('/').to_owned();
                let credentials = Arc::clone(builder.build().map_err(build)?.credentials());
                (url, Auth::Gcs { credentials })
            }
            Backend::Azure => {
                let builder = self.env.azure().with_container_name(bucket);
                let at = container_url(&builder, bucket, self.env.azurite_url());
                let credentials = Arc::clone(builder.build().map_err(build)?.credentials());
                (at.url, Auth::Azure { account: at.account, credentials })
            }
            Backend::S3 => {
                let builder = self.env.s3().with_bucket_name(bucket);
                let (url, region) = s3_bucket_url(&builder, bucket);
                let credentials = Arc::clone(builder.build().map_err(build)?.credentials());
                (url, Auth::S3 { region, credentials })
            }
            Backend::Local(_) | Backend::Memory | Backend::Custom(_) => {
                return Err(StoreError::Custom(format!("{scheme}{bucket}: no HTTP endpoint")));
            }
        };
        let endpoint = Arc::new(Endpoint { scheme, bucket: bucket.to_owned(), url, auth });
        let mut endpoints = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Arc::clone(endpoints.entry(bucket.to_owned()).or_insert(endpoint)))
    }
}

/// The XML API base URL `object_store` resolves for `builder`: its own setting, else the
/// service account's `gcs_base_url` (how an emulator is configured), else Google's.
fn gcs_base_url(builder: &GoogleCloudStorageBuilder) -> String {
    let from_account = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get("gcs_base_url").and_then(|u| u.as_str()).map(str::to_owned))
    };
    builder
        .get_config_value(&GoogleConfigKey::BaseUrl)
        .or_else(|| builder.get_config_value(&GoogleConfigKey::ServiceAccountKey).and_then(|key| from_account(&key)))
        .or_else(|| {
            let path = builder.get_config_value(&GoogleConfigKey::ServiceAccount)?;
            from_account(&std::fs::read_to_string(path).ok()?)
        })
        .unwrap_or_else(|| gcs_delete::DEFAULT_BASE_URL.to_owned())
}
