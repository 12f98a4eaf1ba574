//! Listings of `s3://`, `gs://` and `az://` buckets fetched and parsed here, so that no object name
//! can fail a page (issue 22, spec 2 and 9.4).
//!
//! `object_store` 0.14 parses every key of a list page into a `Path` and fails the whole
//! page on a name it will not represent (a control character, an empty, `.` or `..`
//! segment), and it strips a trailing `/`, so a folder placeholder `<hh>/<hex>/` reads as the
//! chunk `<hh>/<hex>` (upstream: apache/arrow-rs-object-store#341 and #384, both open). These
//! pages keep every name exactly as the store sent it, as a `String`; the listing decides
//! what is a chunk ([`crate::locations::Location::chunk_of_key`]) and counts everything else
//! as foreign.
//!
//! - S3: `ListObjectsV2` (XML), or on a bucket whose versioning is enabled
//!   `ListObjectVersions` (the latest version of each key and its id, spec 10.1), signed with
//!   `object_store`'s own SigV4 signer and credentials,
//!   at the endpoint its configuration names (as [`super::S3Versions`] does). No
//!   `encoding-type=url`: a server may echo it without encoding (s3s-fs does), and decoding a
//!   name that was never encoded changes it. The XML is read event by event with
//!   `quick-xml` (already in `object_store`'s tree), text neither trimmed nor end-of-line
//!   normalized, so a name keeps its blanks and control characters.
//! - Azure: List Blobs (XML) signed with `object_store`'s own [`AzureAuthorizer`] and
//!   credentials (as [`super::AzureDeleter`] does), read by the same XML reader as S3's; a
//!   name the service sent `Encoded="true"` (percent-encoded, for characters XML cannot
//!   carry) is decoded.
//! - GCS: the JSON API's `objects.list` (`storage/v1/b/<bucket>/o`), with the bearer token of
//!   `object_store`'s credential provider; JSON escapes every character, so names arrive
//!   exactly.
//!
//! Each page is one request, sent, retried and counted by the run's one request path
//! (`store/requests.rs`)
//! (so a retry repeats the page, never the listing) and counted in `list_pages`. A listing
//! that hands back a continuation token it already gave is refused, never followed round.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use super::Version;
use super::requests::{Endpoint, RequestKind, Requests, request};
use super::s3_versions::{Versioning, VersioningOnce, encode_query_value};

mod parse;
pub(super) use parse::resolve_ref;
use parse::version_markers;
pub(crate) use parse::{parse_azure_page, parse_s3_versions_page};
pub use parse::{parse_gcs_page, parse_s3_page};

/// One object of a list page, its name as the store sent it. Size and last-modified are
/// `None` when the store sent none or one that does not parse: the listing refuses such a
/// chunk (it cannot be judged), and ignores it on a foreign object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawObject {
    pub key: String,
    pub size: Option<u64>,
    pub last_modified_ms: Option<i64>,
    /// The version the store listed with it (GCS generation, Azure ETag, S3 version id on a
    /// versioned bucket; spec 10.1), [`Version::NONE`] where it gave none.
    pub version: Version,
}

/// One page of a listing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawPage {
    pub objects: Vec<RawObject>,
    /// With a delimiter: the names up to and including the next `/`, as the store sent them.
    pub common_prefixes: Vec<String>,
    /// The token of the next page, `None` on the last.
    pub next_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("listing {scheme}{bucket} prefix {prefix:?}: {why}")]
pub struct RawListError {
    pub scheme: &'static str,
    pub bucket: String,
    pub prefix: String,
    pub why: String,
}

/// The raw listings of one remote bucket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RawLister {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Arc<Endpoint>,
    api: Api,
    requests: Requests,
}

enum Api {
    /// How the bucket's versioning is read, once, shared with its deletes
    /// ([`super::Stores::s3_versions`]): enabled, it is listed by `ListObjectVersions`.
    S3 {
        versioning: VersioningOnce,
    },
    Gcs,
    Azure,
}

/// Names the bucket only: the credentials inside are never printed.
impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawLister({}{})", self.endpoint.scheme, self.endpoint.bucket)
    }
}

impl RawLister {
    /// The listing of an `s3://` bucket at `endpoint` (its `url` the bucket's URL).
    pub(crate) fn s3(endpoint: Arc<Endpoint>, versioning: VersioningOnce, requests: Requests) -> Self {
        Self::new(endpoint, Api::S3 { versioning }, requests)
    }

    /// The listing of a `gs://` bucket at `endpoint` (its `url` the API's base URL: the JSON
    /// API is served from the same host).
    pub(crate) fn gcs(endpoint: Arc<Endpoint>, requests: Requests) -> Self {
        Self::new(endpoint, Api::Gcs, requests)
    }

    /// The listing of an `az://` container at `endpoint` (its `url` the container's URL).
    pub(crate) fn azure(endpoint: Arc<Endpoint>, requests: Requests) -> Self {
        Self::new(endpoint, Api::Azure, requests)
    }

    fn new(endpoint: Arc<Endpoint>, api: Api, requests: Requests) -> Self {
        Self { inner: Arc::new(Inner { endpoint, api, requests }) }
    }

    pub fn bucket(&self) -> &str {
        &self.inner.endpoint.bucket
    }

    pub fn scheme(&self) -> &'static str {
        self.inner.endpoint.scheme
    }

    /// The pages of the listing of every name starting with `prefix` (a plain string match,
    /// as the stores define it), grouped at the next `/` when `delimited`.
    pub fn pages(&self, prefix: &str, delimited: bool) -> Pages {
        Pages {
            lister: self.clone(),
            prefix: prefix.to_owned(),
            delimited,
            token: None,
            seen: HashSet::new(),
            done: false,
        }
    }

    fn error(&self, prefix: &str, why: String) -> RawListError {
        RawListError { scheme: self.scheme(), bucket: self.bucket().to_owned(), prefix: prefix.to_owned(), why }
    }

    /// Fetches and parses one page.
    async fn page(&self, prefix: &str, delimited: bool, token: Option<&str>) -> Result<RawPage, RawListError> {
        let inner = &self.inner;
        let versioned = match &inner.api {
            Api::S3 { versioning } => versioning.get().await == Versioning::Enabled,
            Api::Gcs | Api::Azure => false,
        };
        let base = &inner.endpoint.url;
        let url = match &inner.api {
            // Versioning enabled: the latest version of each key, with its version id (spec 10.1).
            Api::S3 { .. } if versioned => {
                let mut url = format!("{base}?versions&prefix={}", encode_query_value(prefix));
                if delimited {
                    url.push_str("&delimiter=%2F");
                }
                if let Some(token) = token {
                    let (key_marker, version_marker) = version_markers(token);
                    url.push_str("&key-marker=");
                    url.push_str(&encode_query_value(key_marker));
                    if !version_marker.is_empty() {
                        url.push_str("&version-id-marker=");
                        url.push_str(&encode_query_value(version_marker));
                    }
                }
                url
            }
            Api::S3 { .. } => {
                let mut url = format!("{base}?list-type=2&prefix={}", encode_query_value(prefix));
                if delimited {
                    url.push_str("&delimiter=%2F");
                }
                if let Some(token) = token {
                    url.push_str("&continuation-token=");
                    url.push_str(&encode_query_value(token));
                }
                url
            }
            Api::Azure => {
                let mut url = format!("{base}?restype=container&comp=list&prefix={}", encode_query_value(prefix));
                if delimited {
                    url.push_str("&delimiter=%2F");
                }
                if let Some(token) = token {
                    url.push_str("&marker=");
                    url.push_str(&encode_query_value(token));
                }
                url
            }
            Api::Gcs => {
                // `generation` asked for too: it conditions the delete (spec 10.1).
                let mut url = format!(
                    "{base}/storage/v1/b/{}/o?prefix={}&fields=items(name%2Csize%2Cupdated%2Cgeneration)%2Cprefixes%2CnextPageToken",
                    inner.endpoint.bucket,
                    encode_query_value(prefix)
                );
                if delimited {
                    url.push_str("&delimiter=%2F");
                }
                if let Some(token) = token {
                    url.push_str("&pageToken=");
                    url.push_str(&encode_query_value(token));
                }
                url
            }
        };
        let answer = inner
            .requests
            .send(&inner.endpoint, RequestKind::ListPage, || async {
                request(http::Method::GET, &url, &[], Bytes::new())
            })
            .await
            .map_err(|why| self.error(prefix, why))?;
        if answer.status != StatusCode::OK {
            return Err(self.error(prefix, format!("HTTP {}: {}", answer.status, answer.excerpt())));
        }
        let body = &answer.body;
        let parsed = match inner.api {
            Api::S3 { .. } if versioned => parse_s3_versions_page(body),
            Api::S3 { .. } => parse_s3_page(body),
            Api::Gcs => parse_gcs_page(body),
            Api::Azure => parse_azure_page(body),
        };
        parsed.map_err(|why| self.error(prefix, why))
    }
}

/// A listing in progress: call [`Pages::next`] until it answers `None`.
pub struct Pages {
    lister: RawLister,
    prefix: String,
    delimited: bool,
    token: Option<String>,
    seen: HashSet<String>,
    done: bool,
}

impl Pages {
    pub async fn next(&mut self) -> Result<Option<RawPage>, RawListError> {
        if self.done {
            return Ok(None);
        }
        let page = self.lister.page(&self.prefix, self.delimited, self.token.as_deref()).await?;
        self.advance(page.next_token.as_deref()).map_err(|why| self.lister.error(&self.prefix, why))?;
        Ok(Some(page))
    }

    /// Moves to the page `next` names, or past the last page. A token the listing already
    /// gave would list the same pages again, for ever: refused.
    fn advance(&mut self, next: Option<&str>) -> Result<(), String> {
        match next {
            Some(token) if !self.seen.insert(token.to_owned()) => {
                self.done = true;
                Err(format!("the store sent page token {token:?} twice"))
            }
            Some(token) => {
                self.token = Some(token.to_owned());
                Ok(())
            }
            None => {
                self.done = true;
                Ok(())
            }
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_page(inner: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>{inner}</ListBucketResult>"#
        )
    }

    fn contents(key: &str) -> String {
        format!(
            "<Contents><Key>{key}</Key><LastModified>2026-01-02T03:04:05.678Z</LastModified><Size>7</Size></Contents>"
        )
    }

    #[test]
    fn s3_names_keep_every_character() {
        let body = s3_page(
            &[
                contents("p/ab/\tx"),
                contents("p/ab/x\r"),
                contents("p/ab/x&#13;y"),
                contents("p/ab/x\u{7f}"),
                contents(" p/ab//x "),
                contents("p/ab/a&amp;b&lt;&#x9;"),
                contents("p/ab/<![CDATA[c]]>d"),
                contents("p/ab/x/"),
            ]
            .concat(),
        );
        let page = parse_s3_page(body.as_bytes()).expect("page");
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            ["p/ab/\tx", "p/ab/x\r", "p/ab/x\ry", "p/ab/x\u{7f}", " p/ab//x ", "p/ab/a&b<\t", "p/ab/cd", "p/ab/x/"]
        );
        assert!(page.objects.iter().all(|o| o.size == Some(7) && o.last_modified_ms == Some(1_767_323_045_678)));
        assert_eq!(page.next_token, None);
    }

    #[test]
    fn s3_prefixes_and_tokens() {
        let body = s3_page(
            "<IsTruncated>true</IsTruncated><NextContinuationToken>t/1 2</NextContinuationToken>\
             <CommonPrefixes><Prefix>p/ab/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>p//</Prefix></CommonPrefixes>",
        );
        let page = parse_s3_page(body.as_bytes()).expect("page");
        assert_eq!(page.common_prefixes, ["p/ab/", "p//"]);
        assert_eq!(page.next_token.as_deref(), Some("t/1 2"));
        let truncated_without_token = s3_page("<IsTruncated>true</IsTruncated>");
        assert!(parse_s3_page(truncated_without_token.as_bytes()).is_err());
        // A token on the last page is not followed.
        let last = s3_page("<IsTruncated>false</IsTruncated><NextContinuationToken>t</NextContinuationToken>");
        assert_eq!(parse_s3_page(last.as_bytes()).expect("page").next_token, None);
    }

    #[test]
    fn s3_bad_metadata_is_none_and_bad_xml_fails() {
        let body = s3_page("<Contents><Key>k</Key><Size>-1</Size><LastModified>yesterday</LastModified></Contents>");
        let page = parse_s3_page(body.as_bytes()).expect("page");
        assert_eq!(
            page.objects,
            [RawObject { key: "k".into(), size: None, last_modified_ms: None, version: Version::NONE }]
        );
        for bad in [&s3_page("<Contents><Key>a&bogus;</Key></Contents>")[..], "<ListBucketResult><Contents>", "<a></b>"]
        {
            assert!(parse_s3_page(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    fn versions_page(inner: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker><MaxKeys>1000</MaxKeys>{inner}</ListVersionsResult>"#
        )
    }

    fn version(key: &str, id: &str, latest: bool) -> String {
        format!(
            "<Version><Key>{key}</Key><VersionId>{id}</VersionId><IsLatest>{latest}</IsLatest>\
             <LastModified>2026-01-02T03:04:05.678Z</LastModified><ETag>&quot;e&quot;</ETag><Size>7</Size>\
             <Owner><ID>o</ID></Owner><StorageClass>STANDARD</StorageClass></Version>"
        )
    }

    fn delete_marker(key: &str, id: &str, latest: bool) -> String {
        format!(
            "<DeleteMarker><Owner><ID>o</ID></Owner><Key>{key}</Key><VersionId>{id}</VersionId>\
             <IsLatest>{latest}</IsLatest><LastModified>2026-01-03T03:04:05.000Z</LastModified></DeleteMarker>"
        )
    }

    #[test]
    fn s3_versions_list_the_latest_version_of_each_key_with_its_id() {
        let entries = [
            // a: a writer's refresh made v2; v1 is noncurrent.
            version("p/ab/a", "v2+/=", true),
            version("p/ab/a", "v1", false),
            // b: deleted (its latest entry is a delete marker): absent.
            delete_marker("p/ab/b", "m1", true),
            version("p/ab/b", "v1", false),
            // c: written before versioning was enabled.
            version("p/ab/c", "null", true),
            // d: an old delete marker below a current version.
            version("p/ab/d", "v3", true),
            delete_marker("p/ab/d", "m0", false),
            version("p/ab/d", "v0", false),
            "<CommonPrefixes><Prefix>p/cd/</Prefix></CommonPrefixes>".to_owned(),
        ];
        let body = versions_page(&format!("<IsTruncated>false</IsTruncated>{}", entries.concat()));
        let page = parse_s3_versions_page(body.as_bytes()).expect("page");
        let listed: Vec<(&str, Option<&str>)> =
            page.objects.iter().map(|o| (o.key.as_str(), o.version.as_str())).collect();
        assert_eq!(listed, [("p/ab/a", Some("v2+/=")), ("p/ab/c", Some("null")), ("p/ab/d", Some("v3"))]);
        assert!(page.objects.iter().all(|o| o.size == Some(7) && o.last_modified_ms == Some(1_767_323_045_678)));
        assert_eq!(page.common_prefixes, ["p/cd/"]);
        assert_eq!(page.next_token, None);
        // An entry that does not say it is the latest is not listed.
        let unsure = versions_page("<Version><Key>k</Key><VersionId>v</VersionId><Size>1</Size></Version>");
        assert!(parse_s3_versions_page(unsure.as_bytes()).expect("page").objects.is_empty());
    }

    #[test]
    fn s3_versions_continue_at_both_markers() {
        let body = versions_page(
            "<IsTruncated>true</IsTruncated><NextKeyMarker>p/ab/a b</NextKeyMarker>\
             <NextVersionIdMarker>3/L4+x=</NextVersionIdMarker>",
        );
        let token = parse_s3_versions_page(body.as_bytes()).expect("page").next_token.expect("a next page");
        assert_eq!(version_markers(&token), ("p/ab/a b", "3/L4+x="));
        // Truncated at a common prefix: a key marker without a version id marker.
        let body = versions_page("<IsTruncated>true</IsTruncated><NextKeyMarker>p/cd/</NextKeyMarker>");
        let token = parse_s3_versions_page(body.as_bytes()).expect("page").next_token.expect("a next page");
        assert_eq!(version_markers(&token), ("p/cd/", ""));
        let no_marker = versions_page("<IsTruncated>true</IsTruncated><NextVersionIdMarker>v</NextVersionIdMarker>");
        assert!(parse_s3_versions_page(no_marker.as_bytes()).is_err(), "truncated without a key marker");
        let last = versions_page("<IsTruncated>false</IsTruncated><NextKeyMarker>k</NextKeyMarker>");
        assert_eq!(parse_s3_versions_page(last.as_bytes()).expect("page").next_token, None);
        // A ListObjectsV2 answer is not a versions page, nor the other way round.
        assert!(parse_s3_versions_page(s3_page(&contents("p/ab/x")).as_bytes()).expect("page").objects.is_empty());
    }

    fn azure_page(inner: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://h/a" ContainerName="c"><Prefix>p/</Prefix><Blobs>{inner}</Blobs>"#
        )
    }

    fn blob(name: &str) -> String {
        format!(
            "<Blob><Name>{name}</Name><Properties><Last-Modified>Fri, 02 Jan 2026 03:04:05 GMT</Last-Modified>\
             <Etag>0x8D</Etag><Content-Length>7</Content-Length></Properties></Blob>"
        )
    }

    #[test]
    fn azure_names_keep_every_character_and_encoded_ones_are_decoded() {
        let blobs = [
            blob("p/ab/\tx"),
            blob("p/ab/x&#13;"),
            blob("p/ab//x"),
            blob("p/ab/./x"),
            blob("p/ab/x/"),
            r#"<Blob><Name Encoded="true">p%2Fab%2F%01x</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>"#.to_owned(),
            "<BlobPrefix><Name>p/ab/</Name></BlobPrefix>".to_owned(),
        ];
        let body = azure_page(&blobs.concat()) + "<NextMarker>m/1</NextMarker></EnumerationResults>";
        let page = parse_azure_page(body.as_bytes()).expect("page");
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/ab/\tx", "p/ab/x\r", "p/ab//x", "p/ab/./x", "p/ab/x/", "p/ab/\u{1}x"]);
        assert!(page.objects[..5].iter().all(|o| o.size == Some(7) && o.last_modified_ms == Some(1_767_323_045_000)));
        assert!(page.objects[..5].iter().all(|o| o.version.as_str() == Some("0x8D")), "the listed ETag is kept");
        assert!(page.objects[5].version.is_none());
        assert_eq!(page.objects[5].last_modified_ms, None);
        assert_eq!(page.common_prefixes, ["p/ab/"]);
        assert_eq!(page.next_token.as_deref(), Some("m/1"));
        let last = azure_page(&blob("k")) + "<NextMarker /></EnumerationResults>";
        assert_eq!(parse_azure_page(last.as_bytes()).expect("page").next_token, None, "an empty marker ends it");
        let bad = azure_page(r#"<Blob><Name Encoded="true">%FF</Name></Blob>"#) + "</EnumerationResults>";
        assert!(parse_azure_page(bad.as_bytes()).is_err(), "an encoded name that is not UTF-8");
    }

    #[test]
    fn a_repeated_page_token_stops_the_listing() {
        use crate::store::requests::{Auth, HttpTransport};
        let credentials: object_store::gcp::GcpCredentialProvider =
            Arc::new(object_store::StaticCredentialProvider::new(object_store::gcp::GcpCredential {
                bearer: String::new(),
            }));
        let endpoint = Endpoint {
            scheme: "gs://",
            bucket: "bucket-1".into(),
            url: "http://127.0.0.1:1".into(),
            auth: Auth::Gcs { credentials },
        };
        let transport = Arc::new(
            HttpTransport::new(
                &object_store::ClientOptions::new()
                    .with_timeout(std::time::Duration::from_secs(1))
                    .with_allow_http(true),
            )
            .expect("client"),
        );
        let requests = Requests::new(transport, Arc::default(), Arc::default(), crate::store::RetryPolicy::default());
        let lister = RawLister::gcs(Arc::new(endpoint), requests);
        let mut pages = lister.pages("p/", false);
        assert_eq!(pages.advance(Some("a")), Ok(()));
        assert_eq!(pages.advance(Some("b")), Ok(()));
        assert_eq!(pages.token.as_deref(), Some("b"));
        assert!(pages.advance(Some("a")).is_err(), "a token seen before");
        assert!(pages.done, "and the listing is over");
        let mut pages = lister.pages("p/", false);
        assert_eq!(pages.advance(None), Ok(()));
        assert!(pages.done);
    }

    #[test]
    fn gcs_pages_parse() {
        let body = br#"{"kind":"storage#objects","prefixes":["p/ab/"],"nextPageToken":"n1",
            "items":[{"name":"p/ab/\tx\u007f","size":"12","updated":"2026-01-02T03:04:05.678Z","generation":"1767323045678123"},
                     {"name":"p/ab/x/","size":3},{"name":"q"}]}"#;
        let page = parse_gcs_page(body).expect("page");
        assert_eq!(page.common_prefixes, ["p/ab/"]);
        assert_eq!(page.next_token.as_deref(), Some("n1"));
        assert_eq!(
            page.objects,
            [
                RawObject {
                    key: "p/ab/\tx\u{7f}".into(),
                    size: Some(12),
                    last_modified_ms: Some(1_767_323_045_678),
                    version: Version::or_none(Some("1767323045678123")),
                },
                RawObject { key: "p/ab/x/".into(), size: Some(3), last_modified_ms: None, version: Version::NONE },
                RawObject { key: "q".into(), size: None, last_modified_ms: None, version: Version::NONE },
            ]
        );
        assert_eq!(parse_gcs_page(b"{}").expect("empty"), RawPage::default());
        assert!(parse_gcs_page(b"{\"items\":[{}]}").is_err());
    }
}
