//! Azure Blob deletes conditional on the ETag the collector read (spec 9.1), and the signing
//! of the requests `gc_partition` sends itself to an `az://` container (these deletes and the
//! raw listing, `store/raw_list.rs`).
//!
//! A blob's ETag changes on every write, so `If-Match: <ETag re-read>` on the DELETE refuses
//! (412) to remove a blob a writer refreshed since. `object_store` 0.14's `delete` takes no
//! condition, so the request is sent here, signed by `object_store`'s own [`AzureAuthorizer`]
//! with the credentials of the container's `object_store` client, at the URL its
//! configuration names (an emulator is reached the same way). A 412 is the chunk kept, not a
//! failure; the requests are counted and retried as the others (see `store/direct.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use object_store::azure::{AzureAuthorizer, AzureConfigKey, AzureCredentialProvider, MicrosoftAzureBuilder};
use object_store::client::{HttpRequest, HttpRequestBody};
use reqwest::StatusCode;

use super::direct::{ConditionalDelete, SendError, plain_key, with_retry};
use super::{RequestCounters, RetryPolicy};

/// The account and key of the storage emulator (Azurite), as `object_store` uses them.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
/// Where `object_store` reaches the emulator unless `AZURITE_BLOB_STORAGE_URL` says otherwise.
const EMULATOR_URL: &str = "http://127.0.0.1:10000";

/// Where a container is reached, and as which account requests to it are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUrl {
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER`, `ENDPOINT/CONTAINER`, or
    /// `EMULATOR/ACCOUNT/CONTAINER`: no trailing `/`.
    pub url: String,
    pub account: String,
}

/// The URL of `container` as `object_store` resolves it from `builder` (`emulator_url`: the
/// environment's `AZURITE_BLOB_STORAGE_URL`, which `object_store` reads itself).
pub(crate) fn container_url(
    builder: &MicrosoftAzureBuilder,
    container: &str,
    emulator_url: Option<&str>,
) -> ContainerUrl {
    let config = |key| builder.get_config_value(&key);
    let yes = |key| config(key).is_some_and(|v: String| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"));
    let account = config(AzureConfigKey::AccountName);
    if yes(AzureConfigKey::UseEmulator) {
        let account = account.unwrap_or_else(|| EMULATOR_ACCOUNT.to_owned());
        let base = emulator_url.unwrap_or(EMULATOR_URL).trim_end_matches('/');
        return ContainerUrl { url: format!("{base}/{account}/{container}"), account };
    }
    let account = account.unwrap_or_default();
    let base = match config(AzureConfigKey::Endpoint) {
        Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
        None if yes(AzureConfigKey::UseFabricEndpoint) => format!("https://{account}.blob.fabric.microsoft.com"),
        None => format!("https://{account}.blob.core.windows.net"),
    };
    ContainerUrl { url: format!("{base}/{container}"), account }
}

/// A bodiless request to `url` with `headers`, authorized by `object_store`'s signer: its
/// URL (a SAS credential adds query pairs) and its headers.
pub(super) async fn sign_azure(
    credentials: &AzureCredentialProvider,
    account: &str,
    method: http::Method,
    url: &str,
    headers: &[(&'static str, &str)],
) -> Result<(String, http::HeaderMap), SendError> {
    let credential =
        credentials.get_credential().await.map_err(|e| SendError::permanent(format!("credentials: {e}")))?;
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request: HttpRequest =
        builder.body(HttpRequestBody::empty()).map_err(|e| SendError::permanent(e.to_string()))?;
    AzureAuthorizer::new(&credential, account)
        .try_authorize(&mut request)
        .map_err(|e| SendError::permanent(format!("signing: {e}")))?;
    Ok((request.uri().to_string(), request.headers().clone()))
}

#[derive(Debug, thiserror::Error)]
#[error("az://{container}/{key}: conditional delete failed: {why}")]
pub(crate) struct AzureDeleteError {
    pub container: String,
    pub key: String,
    pub why: String,
}

/// Conditional deletes of one container.
#[derive(Debug, Clone)]
pub(crate) struct AzureDeleter {
    client: reqwest::Client,
    container: String,
    at: ContainerUrl,
    credentials: AzureCredentialProvider,
    counters: Arc<RequestCounters>,
    policy: RetryPolicy,
}

impl AzureDeleter {
    pub fn new(
        at: ContainerUrl,
        container: &str,
        credentials: AzureCredentialProvider,
        counters: Arc<RequestCounters>,
        policy: RetryPolicy,
        timeout: std::time::Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { client, container: container.to_owned(), at, credentials, counters, policy })
    }

    #[cfg(test)]
    pub fn container(&self) -> &str {
        &self.container
    }

    /// Deletes `key` only if its ETag is still `etag` (as read, quotes included).
    pub async fn delete(&self, key: &str, etag: &str) -> Result<ConditionalDelete, AzureDeleteError> {
        let fail = |why: String| AzureDeleteError { container: self.container.clone(), key: key.to_owned(), why };
        if !plain_key(key) {
            return Err(fail("the key has characters this client does not encode".into()));
        }
        let url = format!("{}/{key}", self.at.url);
        let (status, ()) = with_retry(self.policy, &self.counters, || async {
            self.counters.delete_calls.fetch_add(1, Ordering::Relaxed);
            Ok((self.send(&url, etag).await?, ()))
        })
        .await
        .map_err(fail)?;
        delete_outcome(status, &self.counters).map_err(fail)
    }

    async fn send(&self, url: &str, etag: &str) -> Result<StatusCode, SendError> {
        let (url, headers) =
            sign_azure(&self.credentials, &self.at.account, http::Method::DELETE, url, &[("if-match", etag)]).await?;
        let response =
            self.client.delete(url).headers(headers).send().await.map_err(|e| SendError::from_reqwest(&e))?;
        Ok(response.status())
    }
}

/// What a Delete Blob answer means for the chunk.
fn delete_outcome(status: StatusCode, counters: &RequestCounters) -> Result<ConditionalDelete, String> {
    match status {
        StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => {
            counters.deleted_keys.fetch_add(1, Ordering::Relaxed);
            Ok(ConditionalDelete::Deleted)
        }
        StatusCode::NOT_FOUND => Ok(ConditionalDelete::Gone),
        // A new ETag since the re-read: a writer refreshed the blob.
        StatusCode::PRECONDITION_FAILED => Ok(ConditionalDelete::Changed),
        status => Err(format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(pairs: &[(AzureConfigKey, &str)]) -> MicrosoftAzureBuilder {
        pairs.iter().fold(MicrosoftAzureBuilder::new(), |b, (k, v)| b.with_config(*k, *v))
    }

    #[test]
    fn container_urls_follow_object_stores_rules() {
        let account = (AzureConfigKey::AccountName, "acct");
        let url = container_url(&builder(&[account]), "c1", None);
        assert_eq!(url, ContainerUrl { url: "https://acct.blob.core.windows.net/c1".into(), account: "acct".into() });
        let endpoint = (AzureConfigKey::Endpoint, "http://127.0.0.1:5/devstoreaccount1/");
        assert_eq!(
            container_url(&builder(&[account, endpoint]), "c1", None).url,
            "http://127.0.0.1:5/devstoreaccount1/c1"
        );
        let fabric = (AzureConfigKey::UseFabricEndpoint, "true");
        assert_eq!(
            container_url(&builder(&[account, fabric]), "c1", None).url,
            "https://acct.blob.fabric.microsoft.com/c1"
        );
        let emulator = builder(&[(AzureConfigKey::UseEmulator, "true")]);
        let url = container_url(&emulator, "c1", None);
        assert_eq!(
            url,
            ContainerUrl { url: "http://127.0.0.1:10000/devstoreaccount1/c1".into(), account: EMULATOR_ACCOUNT.into() }
        );
        assert_eq!(container_url(&emulator, "c1", Some("http://h:9/")).url, "http://h:9/devstoreaccount1/c1");
    }

    #[test]
    fn a_failed_if_match_keeps_the_chunk() {
        let counters = RequestCounters::default();
        assert_eq!(delete_outcome(StatusCode::PRECONDITION_FAILED, &counters), Ok(ConditionalDelete::Changed));
        assert_eq!(delete_outcome(StatusCode::NOT_FOUND, &counters), Ok(ConditionalDelete::Gone));
        assert_eq!(counters.deleted_keys.load(Ordering::Relaxed), 0);
        assert_eq!(delete_outcome(StatusCode::ACCEPTED, &counters), Ok(ConditionalDelete::Deleted));
        assert_eq!(counters.deleted_keys.load(Ordering::Relaxed), 1);
        assert!(delete_outcome(StatusCode::CONFLICT, &counters).is_err());
    }

    #[tokio::test]
    async fn the_delete_is_signed_with_its_if_match() {
        let key = object_store::azure::AzureCredential::AccessKey(
            object_store::azure::AzureAccessKey::try_new("a2V5").expect("base64 key"),
        );
        let credentials: AzureCredentialProvider = Arc::new(object_store::StaticCredentialProvider::new(key));
        let url = "http://127.0.0.1:1/devstoreaccount1/c/ab/cd";
        let signed =
            sign_azure(&credentials, "devstoreaccount1", http::Method::DELETE, url, &[("if-match", "\"0x1\"")]).await;
        let Ok((signed_url, headers)) = signed else { panic!("not signed") };
        assert_eq!(signed_url, url);
        assert_eq!(headers.get("if-match").and_then(|v| v.to_str().ok()), Some("\"0x1\""));
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(auth.starts_with("SharedKey devstoreaccount1:"), "{auth}");
    }
}
