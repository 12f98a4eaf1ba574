//! S3 deletes of the version the collector read, on a bucket whose versioning is enabled
//! (spec 9.1). `object_store` 0.14 neither reads a bucket's versioning nor deletes a version,
//! so these two requests are sent here, signed with `object_store`'s own SigV4 signer
//! ([`AwsAuthorizer`]) and credentials, at the endpoint its configuration names.
//!
//! A delete that names a version can never remove a newer one a writer put, and it frees the
//! data (a plain delete only adds a delete marker there). On an unversioned or suspended
//! bucket a writer's PUT overwrites the `null` version in place, so naming it could remove the
//! writer's copy: there the collector keeps the plain delete (counted unconditional).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpRequest, HttpRequestBody};
use reqwest::StatusCode;

use super::direct::{ConditionalDelete, SendError, plain_key, with_retry};
use super::{RequestCounters, RetryPolicy};

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

#[derive(Debug, thiserror::Error)]
#[error("s3://{bucket}/{key}: {what} failed: {why}")]
pub(crate) struct S3VersionError {
    pub bucket: String,
    pub key: String,
    pub what: &'static str,
    pub why: String,
}

/// Versioning reads and version deletes of one bucket.
#[derive(Debug, Clone)]
pub(crate) struct S3Versions {
    client: reqwest::Client,
    /// `https://bucket.s3.region.amazonaws.com`, or `ENDPOINT/bucket` (path style).
    bucket_url: String,
    bucket: String,
    region: String,
    credentials: AwsCredentialProvider,
    counters: Arc<RequestCounters>,
    policy: RetryPolicy,
}

impl S3Versions {
    pub fn new(
        builder: &AmazonS3Builder,
        bucket: &str,
        credentials: AwsCredentialProvider,
        counters: Arc<RequestCounters>,
        policy: RetryPolicy,
        timeout: std::time::Duration,
    ) -> Result<Self, reqwest::Error> {
        let (bucket_url, region) = s3_bucket_url(builder, bucket);
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { client, bucket_url, bucket: bucket.to_owned(), region, credentials, counters, policy })
    }

    /// The bucket's versioning (GetBucketVersioning).
    pub async fn versioning(&self) -> Result<Versioning, S3VersionError> {
        let url = format!("{}?versioning", self.bucket_url);
        let (status, body) = self.send(http::Method::GET, &url, "", "GetBucketVersioning", &self.counters.get).await?;
        if status != StatusCode::OK {
            return Err(self.error("", "GetBucketVersioning", format!("HTTP {status}: {body}")));
        }
        Ok(Versioning::parse(&body))
    }

    /// Deletes version `version_id` of `key` (`null` names the version an unversioned PUT made).
    /// A version delete is never `Changed`: the version named is the one read.
    pub async fn delete(&self, key: &str, version_id: &str) -> Result<ConditionalDelete, S3VersionError> {
        if !plain_key(key) {
            return Err(self.error(key, "DeleteObject", "the key has characters this client does not encode".into()));
        }
        let url = format!("{}/{key}?versionId={}", self.bucket_url, encode_query_value(version_id));
        let (status, body) =
            self.send(http::Method::DELETE, &url, key, "DeleteObject", &self.counters.delete_calls).await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => {
                self.counters.deleted_keys.fetch_add(1, Ordering::Relaxed);
                Ok(ConditionalDelete::Deleted)
            }
            StatusCode::NOT_FOUND => Ok(ConditionalDelete::Gone),
            _ => Err(self.error(key, "DeleteObject", format!("HTTP {status}: {body}"))),
        }
    }

    fn error(&self, key: &str, what: &'static str, why: String) -> S3VersionError {
        S3VersionError { bucket: self.bucket.clone(), key: key.to_owned(), what, why }
    }

    /// Sends one signed request, retried on transient answers; its status and body.
    async fn send(
        &self,
        method: http::Method,
        url: &str,
        key: &str,
        what: &'static str,
        counter: &AtomicU64,
    ) -> Result<(StatusCode, String), S3VersionError> {
        with_retry(self.policy, &self.counters, || {
            counter.fetch_add(1, Ordering::Relaxed);
            self.send_once(method.clone(), url)
        })
        .await
        .map_err(|why| self.error(key, what, why))
    }

    async fn send_once(&self, method: http::Method, url: &str) -> Result<(StatusCode, String), SendError> {
        let headers = sign_s3(&self.credentials, &self.region, method.clone(), url).await?;
        let response =
            self.client.request(method, url).headers(headers).send().await.map_err(|e| SendError::from_reqwest(&e))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok((status, body))
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

/// The headers of a bodiless request to `url`, signed with `object_store`'s SigV4 signer.
pub(super) async fn sign_s3(
    credentials: &AwsCredentialProvider,
    region: &str,
    method: http::Method,
    url: &str,
) -> Result<http::HeaderMap, SendError> {
    let credential =
        credentials.get_credential().await.map_err(|e| SendError::permanent(format!("credentials: {e}")))?;
    let mut request: HttpRequest = http::Request::builder()
        .method(method)
        .uri(url)
        .body(HttpRequestBody::empty())
        .map_err(|e| SendError::permanent(e.to_string()))?;
    AwsAuthorizer::new(&credential, "s3", region)
        .try_authorize(&mut request, None)
        .map_err(|e| SendError::permanent(format!("signing: {e}")))?;
    Ok(request.headers().clone())
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
