//! List pages parsed, every name kept exactly as the store sent it: S3's and Azure's XML read
//! event by event (text neither trimmed nor normalized), GCS's JSON.

use quick_xml::events::Event;

use super::{RawObject, RawPage};
use crate::store::Version;

/// Milliseconds since the epoch of an RFC 3339 time, as S3 and GCS write them.
fn rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.timestamp_millis())
}

/// Milliseconds since the epoch of an RFC 1123 time (`Wed, 09 Sep 2009 09:20:02 GMT`), as
/// Azure writes them.
fn rfc1123_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(text.trim()).ok().map(|t| t.timestamp_millis())
}

/// Where an XML list answer keeps what a page needs: element paths from the root.
struct XmlShape {
    object: &'static [&'static [u8]],
    key: &'static [&'static [u8]],
    size: &'static [&'static [u8]],
    last_modified: &'static [&'static [u8]],
    time: fn(&str) -> Option<i64>,
    prefix: &'static [&'static [u8]],
    next_token: &'static [&'static [u8]],
    /// S3 says `IsTruncated`; Azure has more pages exactly when `NextMarker` is not empty.
    truncated: Option<&'static [&'static [u8]]>,
    /// Where an object's version is, if the answer has one (Azure's `Etag`, S3's `VersionId`
    /// in `ListObjectVersions`; spec 10.1).
    version: Option<&'static [&'static [u8]]>,
    /// `ListObjectVersions`: an object is listed only if this element says `true` (its latest
    /// version). Delete markers are another element, never an object: a key whose latest
    /// entry is one is absent.
    latest: Option<&'static [&'static [u8]]>,
    /// `ListObjectVersions`: the second half of the continuation (`NextVersionIdMarker`).
    next_version_token: Option<&'static [&'static [u8]]>,
}

const S3_SHAPE: XmlShape = XmlShape {
    object: &[b"ListBucketResult", b"Contents"],
    key: &[b"ListBucketResult", b"Contents", b"Key"],
    size: &[b"ListBucketResult", b"Contents", b"Size"],
    last_modified: &[b"ListBucketResult", b"Contents", b"LastModified"],
    time: rfc3339_ms,
    prefix: &[b"ListBucketResult", b"CommonPrefixes", b"Prefix"],
    next_token: &[b"ListBucketResult", b"NextContinuationToken"],
    truncated: Some(&[b"ListBucketResult", b"IsTruncated"]),
    version: None,
    latest: None,
    next_version_token: None,
};

/// `ListObjectVersions` (`ListVersionsResult`), on a bucket whose versioning is enabled.
const S3_VERSIONS_SHAPE: XmlShape = XmlShape {
    object: &[b"ListVersionsResult", b"Version"],
    key: &[b"ListVersionsResult", b"Version", b"Key"],
    size: &[b"ListVersionsResult", b"Version", b"Size"],
    last_modified: &[b"ListVersionsResult", b"Version", b"LastModified"],
    time: rfc3339_ms,
    prefix: &[b"ListVersionsResult", b"CommonPrefixes", b"Prefix"],
    next_token: &[b"ListVersionsResult", b"NextKeyMarker"],
    truncated: Some(&[b"ListVersionsResult", b"IsTruncated"]),
    version: Some(&[b"ListVersionsResult", b"Version", b"VersionId"]),
    latest: Some(&[b"ListVersionsResult", b"Version", b"IsLatest"]),
    next_version_token: Some(&[b"ListVersionsResult", b"NextVersionIdMarker"]),
};

const AZURE_SHAPE: XmlShape = XmlShape {
    object: &[b"EnumerationResults", b"Blobs", b"Blob"],
    key: &[b"EnumerationResults", b"Blobs", b"Blob", b"Name"],
    size: &[b"EnumerationResults", b"Blobs", b"Blob", b"Properties", b"Content-Length"],
    last_modified: &[b"EnumerationResults", b"Blobs", b"Blob", b"Properties", b"Last-Modified"],
    time: rfc1123_ms,
    prefix: &[b"EnumerationResults", b"Blobs", b"BlobPrefix", b"Name"],
    next_token: &[b"EnumerationResults", b"NextMarker"],
    truncated: None,
    version: Some(&[b"EnumerationResults", b"Blobs", b"Blob", b"Properties", b"Etag"]),
    latest: None,
    next_version_token: None,
};

/// Parses a `ListObjectsV2` answer (`ListBucketResult`). Names keep every character the
/// XML carries: text is not trimmed nor its line ends normalized, and character and the
/// five predefined entity references are resolved. Anything else malformed fails the page.
pub fn parse_s3_page(body: &[u8]) -> Result<RawPage, String> {
    parse_xml_page(body, &S3_SHAPE)
}

/// Parses a `ListObjectVersions` answer (`ListVersionsResult`) as [`parse_s3_page`] parses a
/// `ListObjectsV2` one: the latest version of each key is an object whose `version` is its
/// `VersionId`; older versions and delete markers are not listed (a key whose latest entry
/// is a delete marker is absent). The page token holds `NextKeyMarker` and
/// `NextVersionIdMarker` ([`version_token`]).
pub(crate) fn parse_s3_versions_page(body: &[u8]) -> Result<RawPage, String> {
    parse_xml_page(body, &S3_VERSIONS_SHAPE)
}

/// A `ListObjectVersions` continuation as one page token: the key marker, then, after a NUL
/// (which no XML 1.0 text, so no key, can hold), the version id marker.
fn version_token(key_marker: &str, version_marker: &str) -> String {
    format!("{key_marker}\0{version_marker}")
}

/// The key marker and version id marker of a [`version_token`].
pub(super) fn version_markers(token: &str) -> (&str, &str) {
    token.split_once('\0').unwrap_or((token, ""))
}

/// Parses a List Blobs answer (`EnumerationResults`), names kept as [`parse_s3_page`] keeps
/// them; a name marked `Encoded="true"` is percent-decoded.
pub(crate) fn parse_azure_page(body: &[u8]) -> Result<RawPage, String> {
    parse_xml_page(body, &AZURE_SHAPE)
}

fn parse_xml_page(body: &[u8], shape: &XmlShape) -> Result<RawPage, String> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut page = RawPage::default();
    let mut object: Option<RawObject> = None;
    let mut truncated = shape.truncated.is_none();
    let mut token = None;
    let mut version_marker = String::new();
    let mut latest = false;
    let mut encoded = false;
    loop {
        let event = reader.read_event().map_err(|e| format!("malformed XML: {e}"))?;
        let (start, end) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            Event::End(_) => (None, true),
            Event::Text(t) => {
                text.push_str(&t.decode().map_err(|e| format!("XML text: {e}"))?);
                continue;
            }
            Event::CData(c) => {
                text.push_str(&c.decode().map_err(|e| format!("XML CDATA: {e}"))?);
                continue;
            }
            Event::GeneralRef(r) => {
                text.push(resolve_ref(r)?);
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        if let Some(element) = start {
            stack.push(element.local_name().as_ref().to_vec());
            text.clear();
            if stack_is(&stack, shape.object) {
                object =
                    Some(RawObject { key: String::new(), size: None, last_modified_ms: None, version: Version::NONE });
                latest = false;
            }
            if stack_is(&stack, shape.key) || stack_is(&stack, shape.prefix) {
                encoded = element
                    .try_get_attribute("Encoded")
                    .ok()
                    .flatten()
                    .is_some_and(|a| a.value.as_ref().eq_ignore_ascii_case(b"true"));
            }
        }
        if !end {
            continue;
        }
        let value = std::mem::take(&mut text);
        let name = |value: String| if encoded { percent_decoded(&value) } else { Ok(value) };
        if stack_is(&stack, shape.key) {
            if let Some(o) = object.as_mut() {
                o.key = name(value)?;
            }
        } else if stack_is(&stack, shape.size) {
            if let Some(o) = object.as_mut() {
                o.size = value.trim().parse().ok();
            }
        } else if stack_is(&stack, shape.last_modified) {
            if let Some(o) = object.as_mut() {
                o.last_modified_ms = (shape.time)(&value);
            }
        } else if shape.version.is_some_and(|path| stack_is(&stack, path)) {
            if let Some(o) = object.as_mut() {
                o.version = Version::or_none(Some(value.trim()));
            }
        } else if shape.latest.is_some_and(|path| stack_is(&stack, path)) {
            latest = value.trim() == "true";
        } else if stack_is(&stack, shape.object) {
            let listed = object.take();
            if shape.latest.is_none() || latest {
                page.objects.extend(listed);
            }
        } else if stack_is(&stack, shape.prefix) {
            page.common_prefixes.push(name(value)?);
        } else if stack_is(&stack, shape.next_token) {
            token = Some(value);
        } else if shape.next_version_token.is_some_and(|path| stack_is(&stack, path)) {
            version_marker = value;
        } else if shape.truncated.is_some_and(|path| stack_is(&stack, path)) {
            truncated = value.trim() == "true";
        }
        stack.pop();
    }
    if !stack.is_empty() {
        return Err("truncated XML".into());
    }
    match token {
        Some(t) if truncated && !t.is_empty() && shape.next_version_token.is_some() => {
            page.next_token = Some(version_token(&t, &version_marker));
        }
        Some(t) if truncated && !t.is_empty() => page.next_token = Some(t),
        _ if truncated && shape.truncated.is_some() => {
            return Err("a truncated page without a continuation token".into());
        }
        _ => {}
    }
    Ok(page)
}

/// A name sent percent-encoded (Azure's `Encoded="true"`), decoded; it must be UTF-8.
fn percent_decoded(value: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|name| name.into_owned())
        .map_err(|e| format!("an encoded name that is not UTF-8: {e}"))
}

fn stack_is(stack: &[Vec<u8>], path: &[&[u8]]) -> bool {
    stack.len() == path.len() && stack.iter().zip(path).all(|(a, b)| a.as_slice() == *b)
}

pub(crate) fn resolve_ref(r: &quick_xml::events::BytesRef<'_>) -> Result<char, String> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            Ok(None) | Err(_) => Err(format!("bad XML character reference &{};", String::from_utf8_lossy(r))),
        };
    }
    match r.as_ref() {
        b"amp" => Ok('&'),
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"apos" => Ok('\''),
        b"quot" => Ok('"'),
        other => Err(format!("unknown XML entity &{};", String::from_utf8_lossy(other))),
    }
}

/// Parses an `objects.list` answer of the GCS JSON API.
pub fn parse_gcs_page(body: &[u8]) -> Result<RawPage, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        prefixes: Vec<String>,
        next_page_token: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        name: String,
        // A decimal string in the API ("uint64 as string"); a number is read too.
        size: Option<serde_json::Value>,
        updated: Option<String>,
        // "int64 as string", as `size`.
        generation: Option<serde_json::Value>,
    }
    let text = |v: serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let answer: Answer = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let objects = answer
        .items
        .into_iter()
        .map(|item| RawObject {
            key: item.name,
            size: item.size.and_then(|v| match v {
                serde_json::Value::String(s) => s.parse().ok(),
                v => v.as_u64(),
            }),
            last_modified_ms: item.updated.as_deref().and_then(rfc3339_ms),
            version: Version::or_none(item.generation.and_then(text).as_deref()),
        })
        .collect();
    let next_token = answer.next_page_token.filter(|t| !t.is_empty());
    Ok(RawPage { objects, common_prefixes: answer.prefixes, next_token })
}
