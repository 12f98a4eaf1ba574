//! Chunk locations: (bucket, prefix) pairs, the object key of a chunk in one, and which
//! locations belong to a partition. Object keys are defined here and nowhere else.

use std::fmt;

use crate::ids::{ChunkId, PartitionId};

mod table;
pub(crate) use table::{LocationTable, ToListing};

/// Why a bucket name or prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("bucket name {0:?} is not 3-63 characters of [a-z0-9._-] starting and ending with a letter or digit")]
    BadBucket(String),
    #[error("prefix {0:?} has a leading or trailing '/'")]
    EdgeSlash(String),
    #[error("prefix {0:?} has an empty, '.' or '..' segment")]
    BadSegment(String),
    #[error("prefix {0:?} has a character outside [A-Za-z0-9._-/]")]
    BadChar(String),
    #[error("location {0} does not belong to partition {1}: no segment of its prefix is the partition id")]
    NotOwned(Location, PartitionId),
    #[error("location {0:?} is not BUCKET[/PREFIX]")]
    BadSpec(String),
}

/// A place that holds chunks: `<prefix>/<hh>/<hex>` objects in `bucket`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    bucket: String,
    prefix: String,
}

impl Location {
    pub fn new(bucket: &str, prefix: &str) -> Result<Self, LocationError> {
        check_bucket(bucket)?;
        check_prefix(prefix)?;
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }

    /// Parses the `--location BUCKET[/PREFIX]` form.
    pub fn parse_spec(spec: &str) -> Result<Self, LocationError> {
        let (bucket, prefix) = spec.split_once('/').unwrap_or((spec, ""));
        if bucket.is_empty() {
            return Err(LocationError::BadSpec(spec.to_owned()));
        }
        Self::new(bucket, prefix)
    }

    /// The legacy default location: `partitions/<partition>/chunks` in the metadata bucket.
    pub fn legacy_default(meta_bucket: &str, partition: &PartitionId) -> Result<Self, LocationError> {
        Self::new(meta_bucket, &format!("partitions/{partition}/chunks"))
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// True when one segment of the prefix is the partition id (spec 4.3).
    pub fn belongs_to(&self, partition: &PartitionId) -> bool {
        !self.prefix.is_empty() && self.prefix.split('/').any(|seg| seg == partition.as_str())
    }

    pub fn check_owned_by(&self, partition: &PartitionId) -> Result<(), LocationError> {
        if self.belongs_to(partition) { Ok(()) } else { Err(LocationError::NotOwned(self.clone(), partition.clone())) }
    }

    /// The object key of `id` in this location: `<prefix>/<hh>/<hex>`.
    pub fn chunk_key(&self, id: &ChunkId) -> String {
        let hex = id.to_hex();
        if self.prefix.is_empty() {
            format!("{}/{hex}", &hex[..2])
        } else {
            format!("{}/{}/{hex}", self.prefix, &hex[..2])
        }
    }

    /// The listing prefix of one `<hh>` fan-out directory.
    pub fn fanout_prefix(&self, hh: u8) -> String {
        if self.prefix.is_empty() { format!("{hh:02x}") } else { format!("{}/{hh:02x}", self.prefix) }
    }

    /// Where a chunk of this location is held while its delete checks it (spec 9.1), and the
    /// listing prefix of every chunk of this location held so.
    pub(crate) fn held_prefix(&self) -> String {
        if self.prefix.is_empty() { HELD_FOLDER.to_owned() } else { format!("{HELD_FOLDER}/{}", self.prefix) }
    }

    /// Classifies a key found while listing this location: the chunk it names, or `None` for
    /// a foreign object. The key must be `<prefix>/<hh>/<hex>` with `<hh>` the first two
    /// digits of `<hex>`.
    pub fn chunk_of_key(&self, key: &str) -> Option<ChunkId> {
        let rest =
            if self.prefix.is_empty() { key } else { key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')? };
        let (hh, hex) = rest.split_once('/')?;
        chunk_of_fanout_entry(hh.as_bytes(), hex.as_bytes())
    }
}

/// The top-level folder of a bucket where a delete by renaming (`file://`, `memory://`) holds
/// a chunk while it reads its last-modified (spec 9.1). `+` is outside the id alphabet, so no
/// location's prefix reaches it and no writer writes a chunk there.
pub const HELD_FOLDER: &str = "gc_partition+deleting";

/// The key a chunk at `key` is held under while its delete checks it.
pub fn held_key(key: &str) -> String {
    format!("{HELD_FOLDER}/{key}")
}

/// The key a held object came from, or `None` when `held` is not under [`HELD_FOLDER`].
pub fn key_of_held(held: &str) -> Option<&str> {
    held.strip_prefix(HELD_FOLDER)?.strip_prefix('/').filter(|key| !key.is_empty())
}

/// Classifies the entry `name` of the fan-out directory `hh` of a location: the chunk it
/// names, or `None` for a foreign object. The one rule behind [`Location::chunk_of_key`],
/// shared with the `file://` listing, which sees names without building keys.
pub(crate) fn chunk_of_fanout_entry(hh: &[u8], name: &[u8]) -> Option<ChunkId> {
    if hh.len() != 2 || !name.starts_with(hh) {
        return None;
    }
    ChunkId::from_hex_bytes(name)
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() { write!(f, "{}", self.bucket) } else { write!(f, "{}/{}", self.bucket, self.prefix) }
    }
}

/// Bucket names as GCS and S3 both accept them.
pub fn check_bucket(bucket: &str) -> Result<(), LocationError> {
    let b = bucket.as_bytes();
    let ok = (3..=63).contains(&b.len())
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
        && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
        && !bucket.contains("..");
    if ok { Ok(()) } else { Err(LocationError::BadBucket(bucket.to_owned())) }
}

/// A prefix is empty or `/`-separated segments of the id alphabet, none of them `.` or `..`.
pub fn check_prefix(prefix: &str) -> Result<(), LocationError> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.starts_with('/') || prefix.ends_with('/') {
        return Err(LocationError::EdgeSlash(prefix.to_owned()));
    }
    if !prefix.bytes().all(|b| b == b'/' || crate::ids::is_id_byte(b)) {
        return Err(LocationError::BadChar(prefix.to_owned()));
    }
    if prefix.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(LocationError::BadSegment(prefix.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PartitionId {
        PartitionId::parse(s).expect("valid partition")
    }

    #[test]
    fn held_keys_round_trip_and_no_prefix_reaches_them() {
        let location = Location::new("bucket1", "partitions/p1/chunks").expect("location");
        let key = location.chunk_key(&ChunkId([0xab; 32]));
        let held = held_key(&key);
        assert!(held.starts_with(&location.held_prefix()), "{held}");
        assert_eq!(key_of_held(&held), Some(key.as_str()));
        assert_eq!(key_of_held(&key), None);
        assert_eq!(key_of_held(HELD_FOLDER), None);
        assert_eq!(location.chunk_of_key(&held), None, "a held chunk is not listed as a chunk of its location");
        assert!(check_prefix(HELD_FOLDER).is_err(), "no location can be the held folder");
    }

    #[test]
    fn keys_round_trip() {
        let id = ChunkId([0xab; 32]);
        for prefix in ["", "partitions/p1/chunks"] {
            let loc = Location::new("snapshots", prefix).expect("valid");
            let key = loc.chunk_key(&id);
            assert_eq!(loc.chunk_of_key(&key), Some(id));
            assert!(key.starts_with(&loc.fanout_prefix(0xab)));
        }
    }

    #[test]
    fn foreign_keys_are_not_chunks() {
        let loc = Location::new("b-1", "x/p1").expect("valid");
        let hex = "ab".repeat(32);
        assert!(loc.chunk_of_key(&format!("x/p1/cd/{hex}")).is_none(), "wrong fan-out dir");
        assert!(loc.chunk_of_key(&format!("x/p1/ab/{hex}.tmp")).is_none());
        assert!(loc.chunk_of_key(&format!("x/p1/ab/x/{hex}")).is_none());
        assert!(loc.chunk_of_key(&format!("x/p1{hex}")).is_none());
        assert!(loc.chunk_of_key(&format!("x/p12/ab/{hex}")).is_none());
        assert!(loc.chunk_of_key(&format!("x/p1/ab/{}", hex.to_uppercase())).is_none());
        // Issue 22: names object_store could not represent, and folder placeholders.
        for odd in [
            format!("x/p1/ab/{hex}/"),
            format!("x/p1/ab//{hex}"),
            format!("x/p1/ab/./{hex}"),
            format!("x/p1/ab/../ab/{hex}"),
            format!("x/p1//ab/{hex}"),
            format!("x/p1/./ab/{hex}"),
            format!("x/p1/ab/\t{hex}"),
            format!("x/p1/ab/{hex}\t"),
            format!("x/p1/ab/{hex}\r"),
            format!("x/p1/ab/{hex}\u{7f}"),
            format!("x/p1/ab/{hex} "),
            format!("/x/p1/ab/{hex}"),
        ] {
            assert!(loc.chunk_of_key(&odd).is_none(), "{odd:?}");
        }
    }

    /// A name is a chunk only when it is exactly the key `chunk_key` renders for it.
    fn exact_or_foreign(loc: &Location, name: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        if let Some(id) = loc.chunk_of_key(name) {
            proptest::prop_assert_eq!(loc.chunk_key(&id), name);
        }
        Ok(())
    }

    fn prop_locations() -> [Location; 2] {
        [Location::new("b-1", "").expect("valid"), Location::new("b-1", "x/p1").expect("valid")]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        /// Any byte string, read as a name the way a listing may deliver it.
        #[test]
        fn arbitrary_names_are_chunks_only_when_exact(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..160)) {
            for loc in prop_locations() {
                exact_or_foreign(&loc, &String::from_utf8_lossy(&bytes))?;
            }
        }

        /// A chunk key with one edit (a byte replaced, inserted or removed; any character,
        /// control characters, `/` and `.` included): never a chunk unless the edit left it
        /// exactly a chunk key.
        #[test]
        fn edited_chunk_keys_are_chunks_only_when_exact(
            id in proptest::array::uniform32(proptest::num::u8::ANY),
            at in 0usize..200,
            edit in 0u8..3,
            c in proptest::prop_oneof![
                proptest::char::range('\0', '\u{7f}'),
                proptest::sample::select(vec!['/', '.', 'a', '0', '\t', '\r', '\u{7f}', ' ', 'é']),
            ],
        ) {
            for loc in prop_locations() {
                let key = loc.chunk_key(&ChunkId(id));
                let mut chars: Vec<char> = key.chars().collect();
                let at = at % (chars.len() + 1);
                match edit {
                    0 if at < chars.len() => chars[at] = c,
                    1 => chars.insert(at, c),
                    _ if at < chars.len() => { chars.remove(at); }
                    _ => chars.push(c),
                }
                let edited: String = chars.into_iter().collect();
                exact_or_foreign(&loc, &edited)?;
                if edited != key {
                    proptest::prop_assert_ne!(loc.chunk_of_key(&edited), Some(ChunkId(id)), "{:?}", edited);
                }
            }
        }
    }

    #[test]
    fn ownership_needs_a_whole_segment() {
        let part = p("p1");
        assert!(Location::new("b-1", "a/p1/c").expect("valid").belongs_to(&part));
        assert!(Location::new("b-1", "p1").expect("valid").belongs_to(&part));
        assert!(!Location::new("b-1", "a/p10/c").expect("valid").belongs_to(&part));
        assert!(!Location::new("b-1", "").expect("valid").belongs_to(&part));
        assert!(Location::legacy_default("snapshots", &part).expect("valid").belongs_to(&part));
    }

    #[test]
    fn bad_names_are_refused() {
        for bucket in ["ab", "Upper", "-ab", "ab-", "a/b", "a..b", "é-bucket", "a\0b"] {
            assert!(check_bucket(bucket).is_err(), "{bucket:?}");
        }
        for prefix in ["/a", "a/", "a//b", "a/../b", "./a", "a\\b", "a%2fb", "a\0", "é"] {
            assert!(check_prefix(prefix).is_err(), "{prefix:?}");
        }
        assert!(Location::parse_spec("/x").is_err());
        assert_eq!(Location::parse_spec("bkt/a/b").expect("valid").prefix(), "a/b");
        assert_eq!(Location::parse_spec("bkt").expect("valid").prefix(), "");
    }
}
