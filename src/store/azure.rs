//! Azure Blob deletes conditional on the ETag the collector read (spec 9.1), single or in a
//! Blob Batch (spec 10.1), and where a container is reached.
//!
//! A blob's ETag changes on every write, so `If-Match: <ETag re-read>` on the DELETE refuses
//! (412) to remove a blob a writer refreshed since. `object_store` 0.14's `delete` takes no
//! condition, so the request is sent here, through the run's one request path
//! (`store/requests.rs`: `object_store`'s own `AzureAuthorizer` with the credentials of the
//! container's `object_store` client, at the URL its configuration names; an emulator is
//! reached the same way). A 412 is the chunk kept, not a failure.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::StatusCode;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use super::direct::{ConditionalDelete, plain_key};
use super::requests::{Endpoint, RequestKind, Requests, WireError, is_throttle_status, is_transient_status, request};
use super::{RequestCounters, Version};

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
    let account = config(AzureConfigKey::AccountName);
    if is_set(builder, AzureConfigKey::UseEmulator) {
        let account = account.unwrap_or_else(|| EMULATOR_ACCOUNT.to_owned());
        let base = emulator_url.unwrap_or(EMULATOR_URL).trim_end_matches('/');
        return ContainerUrl { url: format!("{base}/{account}/{container}"), account };
    }
    let account = account.unwrap_or_default();
    let base = match config(AzureConfigKey::Endpoint) {
        Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
        None if is_set(builder, AzureConfigKey::UseFabricEndpoint) => {
            format!("https://{account}.blob.fabric.microsoft.com")
        }
        None => format!("https://{account}.blob.core.windows.net"),
    };
    ContainerUrl { url: format!("{base}/{container}"), account }
}

/// Whether the boolean `key` of `builder` is on, read as `object_store` reads it.
pub(crate) fn is_set(builder: &MicrosoftAzureBuilder, key: AzureConfigKey) -> bool {
    builder
        .get_config_value(&key)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y"))
}

#[derive(Debug, thiserror::Error)]
#[error("az://{container}/{key}: conditional delete failed: {why}")]
pub(crate) struct AzureDeleteError {
    pub container: String,
    pub key: String,
    pub why: String,
}

/// Conditional deletes of one container, sent through the run's one request path.
#[derive(Debug, Clone)]
pub(crate) struct AzureDeleter {
    /// The container, its `url` the container's URL.
    endpoint: Arc<Endpoint>,
    requests: Requests,
}

impl AzureDeleter {
    pub fn new(endpoint: Arc<Endpoint>, requests: Requests) -> Self {
        Self { endpoint, requests }
    }

    #[cfg(test)]
    pub fn container(&self) -> &str {
        &self.endpoint.bucket
    }

    /// Deletes `key` only if its ETag is still `etag` (as a HEAD gives it, quoted, or as List
    /// Blobs gives it, bare: it is sent quoted).
    pub async fn delete(&self, key: &str, etag: &str) -> Result<ConditionalDelete, AzureDeleteError> {
        let fail = |why: String| self.error(key, why);
        if !plain_key(key) {
            return Err(fail("the key has characters this client does not encode".into()));
        }
        let url = format!("{}/{key}", self.endpoint.url);
        let etag = quoted(etag);
        let headers = [("if-match", etag.as_str())];
        let answer = self
            .requests
            .send(&self.endpoint, RequestKind::Delete, || async {
                request(http::Method::DELETE, &url, &headers, Bytes::new())
            })
            .await
            .map_err(fail)?;
        delete_outcome(answer.status, self.requests.counters()).map_err(fail)
    }

    fn error(&self, key: &str, why: String) -> AzureDeleteError {
        AzureDeleteError { container: self.endpoint.bucket.clone(), key: key.to_owned(), why }
    }

    /// Deletes each (key, ETag) of `batch` with Blob Batches of at most [`AZURE_BATCH`] Delete
    /// Blob sub-requests, each with its own `If-Match` and signature (spec 10.1); one outcome
    /// per key, in order. A sub-response is matched to its key by its `Content-ID`, never by
    /// position; a key without one is that key's failure (fail closed). 202 is deleted, 404
    /// gone, 412 changed (kept); a transient status (429, 5xx) is retried alone, as a single
    /// conditional delete; any other is that key's failure only.
    pub async fn delete_batch(&self, batch: &[(&str, Version)]) -> Vec<Result<ConditionalDelete, String>> {
        let mut outcomes: Vec<Option<Result<ConditionalDelete, String>>> = vec![None; batch.len()];
        let mut sent: Vec<(usize, &str, String)> = Vec::with_capacity(batch.len());
        for (i, (key, version)) in batch.iter().enumerate() {
            match version.as_str() {
                None => {
                    outcomes[i] = Some(Err(self.error(key, "no ETag to condition the delete on".into()).to_string()))
                }
                Some(_) if !plain_key(key) => {
                    let why = "the key has characters this client does not encode".into();
                    outcomes[i] = Some(Err(self.error(key, why).to_string()));
                }
                Some(etag) => sent.push((i, key, quoted(etag))),
            }
        }
        for part in sent.chunks(AZURE_BATCH) {
            let answer = self.blob_batch(part).await;
            for (id, (i, key, etag)) in part.iter().enumerate() {
                let outcome = match &answer {
                    Err(why) => Err(self.error(key, format!("blob batch: {why}")).to_string()),
                    Ok(statuses) => match statuses.get(&id) {
                        None => {
                            Err(self.error(key, "the blob batch answer has no sub-response for it".into()).to_string())
                        }
                        Some(status) if is_transient_status(*status) => {
                            if is_throttle_status(*status) {
                                self.requests.counters().throttled.fetch_add(1, Ordering::Relaxed);
                            }
                            self.delete(key, etag).await.map_err(|e| e.to_string())
                        }
                        Some(status) => delete_outcome(*status, self.requests.counters())
                            .map_err(|why| self.error(key, format!("in a blob batch: {why}")).to_string()),
                    },
                };
                outcomes[*i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .zip(batch)
            .map(|(outcome, (key, _))| outcome.unwrap_or_else(|| Err(self.error(key, "not sent".into()).to_string())))
            .collect()
    }

    /// One Blob Batch (retried whole on a transient answer, its sub-requests signed again):
    /// the status of each sub-response, by `Content-ID` (the index in `part`).
    async fn blob_batch(&self, part: &[(usize, &str, String)]) -> Result<HashMap<usize, StatusCode>, String> {
        let boundary = format!("batch_{:032x}", rand::random::<u128>());
        let url = format!("{}?restype=container&comp=batch", self.endpoint.url);
        let content_type = format!("multipart/mixed; boundary={boundary}");
        let answer = self
            .requests
            .send(&self.endpoint, RequestKind::Batch, || async {
                let body = self.batch_body(&boundary, part).await?;
                let length = body.len().to_string();
                let headers = [("content-type", content_type.as_str()), ("content-length", length.as_str())];
                request(http::Method::POST, &url, &headers, body)
            })
            .await?;
        if answer.status != StatusCode::ACCEPTED {
            return Err(format!("HTTP {}: {}", answer.status, answer.excerpt()));
        }
        let content_type =
            answer.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let boundary = content_type
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
            .map(|b| b.trim_matches('"'))
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("an answer without a multipart boundary (Content-Type {content_type:?})"))?;
        parse_batch_answer(&answer.body, boundary)
    }

    /// The multipart body of one Blob Batch: a Delete Blob sub-request per key, `Content-ID`
    /// its index, each with its `If-Match` and its own signature (the container's [`Auth`],
    /// as `object_store`'s bulk delete signs each part).
    async fn batch_body(&self, boundary: &str, part: &[(usize, &str, String)]) -> Result<Bytes, WireError> {
        let mut body = String::with_capacity(part.len() * 640);
        for (id, (_, key, etag)) in part.iter().enumerate() {
            let url = format!("{}/{key}", self.endpoint.url);
            let headers = [("if-match", etag.as_str()), ("content-length", "0")];
            let mut sub = request(http::Method::DELETE, &url, &headers, Bytes::new())?;
            self.endpoint.auth.sign(&mut sub).await?;
            let target = sub
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .ok_or_else(|| WireError::permanent(format!("a sub-request URL without a path: {url}")))?;
            body.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\nDELETE {target} HTTP/1.1\r\n"
            ));
            for (name, value) in sub.headers() {
                let value = value.to_str().map_err(|e| WireError::permanent(format!("a header of {key}: {e}")))?;
                body.push_str(&title_case(name.as_str()));
                body.push_str(": ");
                body.push_str(value);
                body.push_str("\r\n");
            }
            body.push_str("\r\n\r\n");
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        Ok(Bytes::from(body))
    }
}

/// The most Delete Blob sub-requests one Blob Batch carries.
pub(crate) const AZURE_BATCH: usize = 256;

/// An ETag as `If-Match` takes it: quoted (List Blobs gives it bare, a HEAD quoted).
fn quoted(etag: &str) -> String {
    if etag.starts_with('"') || etag.starts_with("W/\"") { etag.to_owned() } else { format!("\"{etag}\"") }
}

/// `x-ms-date` as `X-Ms-Date`, as object_store writes a sub-request's headers.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The status of each sub-response of a Blob Batch answer, by its `Content-ID`. A part
/// without a `Content-ID` (the service refusing the batch as a whole), a repeated one or a
/// part that cannot be read fails the whole answer (every key then fails: fail closed).
fn parse_batch_answer(body: &[u8], boundary: &str) -> Result<HashMap<usize, StatusCode>, String> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut statuses = HashMap::new();
    let mut parts = text.split(delimiter.as_str());
    parts.next(); // the preamble
    let mut closed = false;
    for part in parts {
        if part.starts_with("--") {
            closed = true;
            break;
        }
        let part = part.trim_start_matches(['\r', '\n']);
        let (headers, response) = part.split_once("\r\n\r\n").ok_or("a part without a blank line")?;
        let id = headers.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-id").then(|| value.trim().to_owned())
        });
        let status_line = response.lines().next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| format!("a sub-response without a status: {status_line:?}"))?;
        let Some(id) = id else {
            return Err(format!("the batch was refused: {status_line}"));
        };
        let id = id.parse::<usize>().map_err(|_| format!("a sub-response with Content-ID {id:?}"))?;
        if statuses.insert(id, status).is_some() {
            return Err(format!("two sub-responses with Content-ID {id}"));
        }
    }
    if !closed {
        return Err("a multipart answer without its closing boundary".into());
    }
    Ok(statuses)
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

    #[test]
    fn listed_etags_are_sent_quoted() {
        assert_eq!(quoted("0x8DC2A4B5C6D7E8F"), "\"0x8DC2A4B5C6D7E8F\"");
        assert_eq!(quoted("\"0x8DC2A4B5C6D7E8F\""), "\"0x8DC2A4B5C6D7E8F\"");
        assert_eq!(title_case("x-ms-client-request-id"), "X-Ms-Client-Request-Id");
    }

    #[test]
    fn blob_batch_answers_are_read_by_content_id() {
        let answer = "--batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n\
            HTTP/1.1 412 The condition specified using HTTP conditional header(s) is not met.\r\nx-ms-error-code: ConditionNotMet\r\n\r\n\
            --batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\n\
            HTTP/1.1 202 Accepted\r\nx-ms-delete-type-permanent: true\r\n\r\n\
            --batchresponse_1\r\ncontent-id: 3\r\n\r\nHTTP/1.1 404 The specified blob does not exist.\r\n\r\n\
            <?xml version=\"1.0\"?><Error><Code>BlobNotFound</Code></Error>\r\n--batchresponse_1--\r\n";
        let statuses = parse_batch_answer(answer.as_bytes(), "batchresponse_1").expect("answer");
        assert_eq!(statuses.get(&0), Some(&StatusCode::ACCEPTED));
        assert_eq!(statuses.get(&1), Some(&StatusCode::PRECONDITION_FAILED));
        assert_eq!(statuses.get(&2), None, "a key the answer does not name");
        assert_eq!(statuses.get(&3), Some(&StatusCode::NOT_FOUND));
        let refused = "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n--b--\r\n";
        assert!(parse_batch_answer(refused.as_bytes(), "b").is_err(), "a part without Content-ID");
        let twice = "--b\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\n\r\n--b\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 A\r\n\r\n--b--";
        assert!(parse_batch_answer(twice.as_bytes(), "b").is_err(), "a repeated Content-ID");
        let cut = "--b\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\n\r\n";
        assert!(parse_batch_answer(cut.as_bytes(), "b").is_err(), "no closing boundary");
    }

    #[tokio::test]
    async fn the_delete_is_signed_with_its_if_match() {
        use crate::store::requests::Auth;
        let key = object_store::azure::AzureCredential::AccessKey(
            object_store::azure::AzureAccessKey::try_new("a2V5").expect("base64 key"),
        );
        let credentials: object_store::azure::AzureCredentialProvider =
            Arc::new(object_store::StaticCredentialProvider::new(key));
        let auth = Auth::Azure { account: "devstoreaccount1".into(), credentials };
        let url = "http://127.0.0.1:1/devstoreaccount1/c/ab/cd";
        let mut signed = request(http::Method::DELETE, url, &[("if-match", "\"0x1\"")], Bytes::new()).expect("request");
        if auth.sign(&mut signed).await.is_err() {
            panic!("not signed");
        }
        assert_eq!(signed.uri().to_string(), url);
        let headers = signed.headers();
        assert_eq!(headers.get("if-match").and_then(|v| v.to_str().ok()), Some("\"0x1\""));
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(auth.starts_with("SharedKey devstoreaccount1:"), "{auth}");
    }
}
