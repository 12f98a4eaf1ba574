//! S3 deletes of the version the collector read, on a bucket whose versioning is enabled
//! (spec 9.1). `object_store` 0.14 neither reads a bucket's versioning nor deletes a version,
//! so these requests (and `DeleteObjects` naming versions, spec 10.1) are sent here, through
//! the run's one request path (`store/requests.rs`: `object_store`'s own SigV4 signer and
//! credentials, at the endpoint its configuration names).
//!
//! A delete that names a version can never remove a newer one a writer put, and it frees the
//! data (a plain delete only adds a delete marker there). On an unversioned or suspended
//! bucket a writer's PUT overwrites the `null` version in place, so naming it could remove the
//! writer's copy: there the collector keeps the plain delete (counted unconditional).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use md5::Digest as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use super::Version;
use super::direct::{ConditionalDelete, plain_key};
use super::requests::{Endpoint, RequestKind, Requests, WireAnswer, request};

/// A bucket's versioning state, as GetBucketVersioning answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versioning {
    /// Never enabled (no `<Status>`).
    Unversioned,
    Enabled,
    Suspended,
}

impl Versioning {
    /// From the body of a GetBucketVersioning answer.
    pub fn parse(body: &str) -> Versioning {
        match body.split("<Status>").nth(1).and_then(|rest| rest.split("</Status>").next()) {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => Versioning::Unversioned,
        }
    }
}

/// A bucket's versioning, read once a run (GetBucketVersioning) and shared by its listing
/// (`ListObjectVersions` when enabled, spec 10.1) and its deletes (by version when enabled,
/// spec 9.1), so both see the same state. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct VersioningOnce {
    state: Arc<tokio::sync::OnceCell<Versioning>>,
    versions: S3Versions,
}

impl VersioningOnce {
    pub fn new(versions: S3Versions) -> Self {
        Self { state: Arc::default(), versions }
    }

    /// The bucket's versioning; one that cannot be read counts as unversioned (the listing
    /// then gives no version, and each delete is re-read first, then plain), with a warning.
    pub async fn get(&self) -> Versioning {
        *self
            .state
            .get_or_init(|| async {
                let bucket = &self.versions.endpoint.bucket;
                match self.versions.versioning().await {
                    Ok(Versioning::Enabled) => Versioning::Enabled,
                    Ok(state) => {
                        tracing::warn!(
                            bucket,
                            ?state,
                            "bucket versioning is not enabled: deletes are unconditional (doc/stores.md, How deletes are issued)"
                        );
                        state
                    }
                    Err(error) => {
                        tracing::warn!(bucket, %error, "cannot read the bucket's versioning: deletes are unconditional");
                        Versioning::Unversioned
                    }
                }
            })
            .await
    }

    /// The version deleter, when the bucket's versioning is enabled.
    pub async fn deleter(&self) -> Option<S3Versions> {
        (self.get().await == Versioning::Enabled).then(|| self.versions.clone())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("s3://{bucket}/{key}: {what} failed: {why}")]
pub(crate) struct S3VersionError {
    pub bucket: String,
    pub key: String,
    pub what: &'static str,
    pub why: String,
}

/// Versioning reads and version deletes of one bucket, sent through the run's one request
/// path.
#[derive(Debug, Clone)]
pub(crate) struct S3Versions {
    /// The bucket, its `url` `https://bucket.s3.region.amazonaws.com` or `ENDPOINT/bucket`.
    endpoint: Arc<Endpoint>,
    requests: Requests,
}

impl S3Versions {
    pub fn new(endpoint: Arc<Endpoint>, requests: Requests) -> Self {
        Self { endpoint, requests }
    }

    /// The bucket's versioning (GetBucketVersioning).
    pub async fn versioning(&self) -> Result<Versioning, S3VersionError> {
        let url = format!("{}?versioning", self.endpoint.url);
        let answer = self.send(http::Method::GET, &url, "", "GetBucketVersioning", RequestKind::Get).await?;
        if answer.status != StatusCode::OK {
            let why = format!("HTTP {}: {}", answer.status, answer.excerpt());
            return Err(self.error("", "GetBucketVersioning", why));
        }
        Ok(Versioning::parse(&String::from_utf8_lossy(&answer.body)))
    }

    /// Deletes version `version_id` of `key` (`null` names the version an unversioned PUT made).
    /// A version delete is never `Changed`: the version named is the one read.
    pub async fn delete(&self, key: &str, version_id: &str) -> Result<ConditionalDelete, S3VersionError> {
        if !plain_key(key) {
            return Err(self.error(key, "DeleteObject", "the key has characters this client does not encode".into()));
        }
        let url = format!("{}/{key}?versionId={}", self.endpoint.url, encode_query_value(version_id));
        let answer = self.send(http::Method::DELETE, &url, key, "DeleteObject", RequestKind::Delete).await?;
        match answer.status {
            StatusCode::NO_CONTENT | StatusCode::OK => {
                self.requests.counters().deleted_keys.fetch_add(1, Ordering::Relaxed);
                Ok(ConditionalDelete::Deleted)
            }
            StatusCode::NOT_FOUND => Ok(ConditionalDelete::Gone),
            status => Err(self.error(key, "DeleteObject", format!("HTTP {status}: {}", answer.excerpt()))),
        }
    }

    /// Deletes each (key, version) of `batch` (at most [`S3_BATCH`]) with one `DeleteObjects`
    /// naming every `VersionId` (spec 10.1); one outcome per key, in order. The answer is
    /// matched to the batch by key and version, never by position; a key it does not name is
    /// that key's failure (fail closed). `NoSuchVersion` / `NoSuchKey` is [`ConditionalDelete::Gone`]; a
    /// transient error of one key (`InternalError`, `SlowDown`, `ServiceUnavailable`) is retried
    /// alone, as a single version delete, and never fails the other keys.
    pub async fn delete_batch(&self, batch: &[(&str, Version)]) -> Vec<Result<ConditionalDelete, String>> {
        let mut outcomes: Vec<Option<Result<ConditionalDelete, String>>> = vec![None; batch.len()];
        // What is sent: the keys this client can name, with a version.
        let mut sent: Vec<(usize, &str, &str)> = Vec::with_capacity(batch.len());
        for (i, (key, version)) in batch.iter().enumerate() {
            match version.as_str() {
                None => {
                    outcomes[i] = Some(Err(self.error(key, "DeleteObjects", "no version to delete".into()).to_string()))
                }
                Some(_) if !plain_key(key) => {
                    let why = "the key has characters this client does not encode".into();
                    outcomes[i] = Some(Err(self.error(key, "DeleteObjects", why).to_string()));
                }
                Some(version) => sent.push((i, key, version)),
            }
        }
        for part in sent.chunks(S3_BATCH) {
            let answer = self.delete_objects(part).await;
            for (i, key, version) in part {
                let outcome = match &answer {
                    Err(why) => Err(self.error(key, "DeleteObjects", why.clone()).to_string()),
                    Ok(answer) => match answer.get(&(key.to_string(), version.to_string())) {
                        Some(KeyOutcome::Deleted) => {
                            self.requests.counters().deleted_keys.fetch_add(1, Ordering::Relaxed);
                            Ok(ConditionalDelete::Deleted)
                        }
                        Some(KeyOutcome::Error { code, .. })
                            if matches!(code.as_str(), "NoSuchVersion" | "NoSuchKey") =>
                        {
                            Ok(ConditionalDelete::Gone)
                        }
                        Some(KeyOutcome::Error { code, .. }) if is_transient_code(code) => {
                            self.delete(key, version).await.map_err(|e| e.to_string())
                        }
                        Some(KeyOutcome::Error { code, message }) => Err(self
                            .error(key, "DeleteObjects", format!("version {version}: {code}: {message}"))
                            .to_string()),
                        None => {
                            let why =
                                format!("version {version}: the answer does not name it: not known to be deleted");
                            Err(self.error(key, "DeleteObjects", why).to_string())
                        }
                    },
                };
                outcomes[*i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .zip(batch)
            .map(|(outcome, (key, _))| {
                outcome.unwrap_or_else(|| Err(self.error(key, "DeleteObjects", "not sent".into()).to_string()))
            })
            .collect()
    }

    /// One `DeleteObjects` request (retried whole on a transient answer): what its answer
    /// says of each (key, version).
    async fn delete_objects(
        &self,
        part: &[(usize, &str, &str)],
    ) -> Result<HashMap<(String, String), KeyOutcome>, String> {
        let body = delete_objects_body(part.iter().map(|(_, key, version)| (*key, *version)));
        let url = format!("{}?delete", self.endpoint.url);
        // S3 requires a Content-MD5 on DeleteObjects.
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let headers = [("content-md5", md5.as_str()), ("content-type", "application/xml")];
        let answer = self
            .requests
            .send(&self.endpoint, RequestKind::Batch, || async {
                request(http::Method::POST, &url, &headers, body.clone())
            })
            .await?;
        if answer.status != StatusCode::OK {
            return Err(format!("DeleteObjects: HTTP {}: {}", answer.status, answer.excerpt()));
        }
        parse_delete_result(&answer.body).map_err(|why| format!("DeleteObjects answer: {why}"))
    }

    fn error(&self, key: &str, what: &'static str, why: String) -> S3VersionError {
        S3VersionError { bucket: self.endpoint.bucket.clone(), key: key.to_owned(), what, why }
    }

    /// Sends one bodiless request through the run's request path; its last answer.
    async fn send(
        &self,
        method: http::Method,
        url: &str,
        key: &str,
        what: &'static str,
        kind: RequestKind,
    ) -> Result<WireAnswer, S3VersionError> {
        self.requests
            .send(&self.endpoint, kind, || async { request(method.clone(), url, &[], Bytes::new()) })
            .await
            .map_err(|why| self.error(key, what, why))
    }
}

/// The URL of `bucket` as `object_store` reaches it (`https://bucket.s3.region.amazonaws.com`,
/// or `ENDPOINT/bucket` path style, or `ENDPOINT` virtual-hosted) and its region.
pub(super) fn s3_bucket_url(builder: &AmazonS3Builder, bucket: &str) -> (String, String) {
    let config = |key| builder.get_config_value(&key);
    let region = config(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_owned());
    let virtual_hosted = config(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
    let bucket_url = match config(AmazonS3ConfigKey::Endpoint) {
        Some(endpoint) if virtual_hosted => endpoint.trim_end_matches('/').to_owned(),
        Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
    };
    (bucket_url, region)
}

/// The most keys one `DeleteObjects` request names.
pub(crate) const S3_BATCH: usize = 1000;

/// What a `DeleteObjects` answer says of one (key, version).
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyOutcome {
    Deleted,
    Error { code: String, message: String },
}

/// The per-key errors worth asking again, alone.
fn is_transient_code(code: &str) -> bool {
    matches!(code, "InternalError" | "SlowDown" | "ServiceUnavailable" | "RequestTimeout")
}

/// The body of a `DeleteObjects` naming each (key, version); not quiet, so every key is answered.
fn delete_objects_body<'a>(objects: impl Iterator<Item = (&'a str, &'a str)>) -> Bytes {
    use quick_xml::escape::escape;
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>false</Quiet>"#,
    );
    for (key, version) in objects {
        body.push_str("<Object><Key>");
        body.push_str(&escape(key));
        body.push_str("</Key><VersionId>");
        body.push_str(&escape(version));
        body.push_str("</VersionId></Object>");
    }
    body.push_str("</Delete>");
    Bytes::from(body)
}

/// A `DeleteResult`: each `<Deleted>` and `<Error>` by (key, version id). An entry without a
/// version id is keyed with an empty one (so it matches no version the batch named). Anything
/// malformed fails the whole answer.
fn parse_delete_result(body: &[u8]) -> Result<HashMap<(String, String), KeyOutcome>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut out = HashMap::new();
    let (mut key, mut version, mut code, mut message) = (String::new(), String::new(), String::new(), String::new());
    loop {
        let event = reader.read_event().map_err(|e| format!("malformed XML: {e}"))?;
        match &event {
            Event::Start(e) => {
                stack.push(e.local_name().as_ref().to_vec());
                text.clear();
                if stack.len() == 2 {
                    (key, version, code, message) = Default::default();
                }
            }
            Event::Empty(_) => {}
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| format!("XML text: {e}"))?),
            Event::CData(c) => text.push_str(&c.decode().map_err(|e| format!("XML CDATA: {e}"))?),
            Event::GeneralRef(r) => text.push(super::raw_list::resolve_ref(r)?),
            Event::End(_) => {
                let value = std::mem::take(&mut text);
                let path: Vec<&[u8]> = stack.iter().map(Vec::as_slice).collect();
                match path.as_slice() {
                    [b"DeleteResult", _, b"Key"] => key = value,
                    [b"DeleteResult", _, b"VersionId"] => version = value,
                    [b"DeleteResult", b"Error", b"Code"] => code = value,
                    [b"DeleteResult", b"Error", b"Message"] => message = value,
                    [b"DeleteResult", b"Deleted"] => {
                        out.insert((std::mem::take(&mut key), std::mem::take(&mut version)), KeyOutcome::Deleted);
                    }
                    [b"DeleteResult", b"Error"] => {
                        let outcome = KeyOutcome::Error {
                            code: std::mem::take(&mut code),
                            message: std::mem::take(&mut message),
                        };
                        out.insert((std::mem::take(&mut key), std::mem::take(&mut version)), outcome);
                    }
                    _ => {}
                }
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("truncated XML".into());
    }
    Ok(out)
}

/// SigV4's encoding of a query value (everything but `A-Za-z0-9-_.~`), which the signer's
/// canonical query reproduces: AWS version ids hold `+`, `/` and `=`.
pub(super) fn encode_query_value(value: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_are_encoded_as_the_signer_canonicalizes_them() {
        // A version id of the form AWS documents, and moto's (a UUID).
        let aws = "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo=";
        assert_eq!(
            encode_query_value(aws),
            "3%2FL4kqtJlcpXroDTDmJ%2BrmSpXd3dIbrHY%2BMTRCxf3vjVBH40Nr8X8gdRQBpUMLUo%3D"
        );
        assert_eq!(encode_query_value("0e2f-4a1b_c.d~"), "0e2f-4a1b_c.d~");
        assert_eq!(encode_query_value("null"), "null");
    }

    #[test]
    fn delete_objects_names_each_version_and_its_answer_is_read_by_key_and_version() {
        let body = delete_objects_body([("p/ab/a&b", "v1+/="), ("p/ab/c", "null")].into_iter());
        let text = std::str::from_utf8(&body).expect("utf-8");
        assert!(text.contains("<Quiet>false</Quiet>"), "{text}");
        assert!(
            text.contains("<Object><Key>p/ab/a&amp;b</Key><VersionId>v1+/=</VersionId></Object><Object><Key>p/ab/c</Key><VersionId>null</VersionId></Object>"),
            "{text}"
        );
        let answer = br#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted><Key>p/ab/a</Key><VersionId>v1</VersionId></Deleted>
  <Error><Key>p/ab/b</Key><VersionId>v2</VersionId><Code>NoSuchVersion</Code><Message>gone</Message></Error>
  <Error><Code>SlowDown</Code><Key>p/ab/c</Key><VersionId>v3</VersionId><Message>slow</Message></Error>
  <Deleted><Key>p/ab/d</Key><DeleteMarker>true</DeleteMarker><DeleteMarkerVersionId>m</DeleteMarkerVersionId></Deleted>
</DeleteResult>"#;
        let parsed = parse_delete_result(answer).expect("answer");
        let at = |k: &str, v: &str| parsed.get(&(k.to_owned(), v.to_owned())).cloned();
        assert_eq!(at("p/ab/a", "v1"), Some(KeyOutcome::Deleted));
        assert_eq!(at("p/ab/a", "v0"), None, "another version of the key is not named");
        assert_eq!(
            at("p/ab/b", "v2"),
            Some(KeyOutcome::Error { code: "NoSuchVersion".into(), message: "gone".into() })
        );
        assert_eq!(at("p/ab/c", "v3"), Some(KeyOutcome::Error { code: "SlowDown".into(), message: "slow".into() }));
        // A delete that made a marker names no version: it matches no version delete.
        assert_eq!(at("p/ab/d", ""), Some(KeyOutcome::Deleted));
        assert!(parse_delete_result(b"<DeleteResult><Deleted><Key>k</Key>").is_err());
        assert!(
            is_transient_code("SlowDown") && is_transient_code("InternalError") && !is_transient_code("AccessDenied")
        );
    }

    #[test]
    fn versioning_answers_parse() {
        let answer = |status: &str| {
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{status}</VersioningConfiguration>"#
            )
        };
        assert_eq!(Versioning::parse(&answer("<Status>Enabled</Status>")), Versioning::Enabled);
        assert_eq!(Versioning::parse(&answer("<Status>Suspended</Status>")), Versioning::Suspended);
        assert_eq!(Versioning::parse(&answer("")), Versioning::Unversioned);
        assert_eq!(Versioning::parse(&answer("<MfaDelete>Disabled</MfaDelete>")), Versioning::Unversioned);
    }
}
