//! The version a listing returned with an object (spec 10.1): a GCS generation, an Azure
//! ETag, the version id of an S3 object on a bucket whose versioning is enabled. The delete
//! carries it, so the store itself checks that the object is still the one judged old.

use std::fmt;

/// Bytes a [`Version`] holds inline. GCS generations (at most 20 digits), Azure ETags
/// (`0x` and 16 hex digits) and the version ids of S3 (32 characters) and of its emulators
/// (a UUID's 36) fit. A longer one is not kept ([`Version::new`] is `None`): that chunk's
/// delete falls back to the re-read of spec 9.1, which is as safe and costs one request.
pub const VERSION_CAPACITY: usize = 47;

/// A listed object's version, kept inline so a listed chunk stays `Copy` and allocation-free.
/// The empty version is "the listing gave none".
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    len: u8,
    bytes: [u8; VERSION_CAPACITY],
}

impl Version {
    /// No version: the store's listing gives none (`file://`, unversioned S3).
    pub const NONE: Version = Version { len: 0, bytes: [0; VERSION_CAPACITY] };

    /// `text` as a version; `None` when it is empty or longer than [`VERSION_CAPACITY`].
    pub fn new(text: &str) -> Option<Version> {
        let raw = text.as_bytes();
        if raw.is_empty() || raw.len() > VERSION_CAPACITY {
            return None;
        }
        let mut bytes = [0; VERSION_CAPACITY];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Version { len: raw.len() as u8, bytes })
    }

    /// `text` as a version, or [`Version::NONE`] where it cannot be kept.
    pub fn or_none(text: Option<&str>) -> Version {
        text.and_then(Version::new).unwrap_or(Version::NONE)
    }

    /// The version as the store wrote it, `None` for [`Version::NONE`].
    pub fn as_str(&self) -> Option<&str> {
        if self.len == 0 {
            return None;
        }
        // Built only from a `&str` (new) or from bytes checked by `from_bytes`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).ok()
    }

    pub fn is_none(&self) -> bool {
        self.len == 0
    }

    /// The version's bytes (empty for none), as the plan spool writes them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// A version from the bytes [`Version::as_bytes`] gave; `None` when they are not a version.
    pub fn from_bytes(raw: &[u8]) -> Option<Version> {
        if raw.is_empty() {
            return Some(Version::NONE);
        }
        Version::new(std::str::from_utf8(raw).ok()?)
    }
}

impl Default for Version {
    fn default() -> Self {
        Version::NONE
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(text) => write!(f, "Version({text:?})"),
            None => f.write_str("Version::NONE"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_overlong_ones_are_not_kept() {
        for text in ["1", "1700000000123456", "0x8DC2A4B5C6D7E8F", "3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrH"] {
            let version = Version::new(text).expect("fits");
            assert_eq!(version.as_str(), Some(text));
            assert_eq!(Version::from_bytes(version.as_bytes()), Some(version));
        }
        assert_eq!(Version::new(""), None);
        assert_eq!(Version::new(&"v".repeat(VERSION_CAPACITY + 1)), None);
        assert_eq!(Version::or_none(Some(&"v".repeat(VERSION_CAPACITY + 1))), Version::NONE);
        assert!(Version::NONE.is_none());
        assert_eq!(Version::from_bytes(&[]), Some(Version::NONE));
        assert_eq!(Version::from_bytes(&[0xff]), None);
    }
}
