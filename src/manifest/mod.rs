//! Snapshot manifests (spec 3.2-3.4): the legacy pair (`.manifest` text + `.index` binary)
//! and the unified protobuf manifest (`.snap`), their object keys and their errors.

pub mod legacy;
pub mod unified;

use crate::ids::{PartitionId, SnapshotId};
use crate::locations::{Location, LocationError};

/// The directory of a partition's manifests in the metadata bucket: `partitions/<p>/snapshots/`.
pub fn snapshots_dir(partition: &PartitionId) -> String {
    format!("partitions/{partition}/snapshots/")
}

/// The snapshots folder as a location: where manifests are deleted (and held aside).
pub(crate) fn snapshots_folder(meta_bucket: &str, partition: &PartitionId) -> Result<Location, LocationError> {
    Location::new(meta_bucket, snapshots_dir(partition).trim_end_matches('/'))
}

/// `partitions/<p>/snapshots/<s>.manifest`
pub fn legacy_manifest_key(partition: &PartitionId, snapshot: &SnapshotId) -> String {
    format!("partitions/{partition}/snapshots/{snapshot}.manifest")
}

/// `partitions/<p>/snapshots/<s>.index`
pub fn legacy_index_key(partition: &PartitionId, snapshot: &SnapshotId) -> String {
    format!("partitions/{partition}/snapshots/{snapshot}.index")
}

/// `partitions/<p>/snapshots/<s>.snap`
pub fn unified_key(partition: &PartitionId, snapshot: &SnapshotId) -> String {
    format!("partitions/{partition}/snapshots/{snapshot}.snap")
}

/// Which manifest object a name of the snapshots folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    LegacyManifest,
    LegacyIndex,
    Unified,
}

/// Classifies a name listed in the snapshots folder (spec 9.2, "Precisely"): the snapshot and
/// the manifest object it is, only for exactly `partitions/<p>/snapshots/<s>.manifest`,
/// `.index` or `.snap` with `<s>` a valid snapshot id. Anything else there (a folder
/// placeholder, a control character, a deeper name, a stray `.` segment) is no snapshot's.
pub fn manifest_of_key(partition: &PartitionId, key: &str) -> Option<(SnapshotId, ManifestKind)> {
    let name = key.strip_prefix(snapshots_dir(partition).as_str())?;
    let (stem, kind) = if let Some(stem) = name.strip_suffix(".manifest") {
        (stem, ManifestKind::LegacyManifest)
    } else if let Some(stem) = name.strip_suffix(".index") {
        (stem, ManifestKind::LegacyIndex)
    } else {
        (name.strip_suffix(".snap")?, ManifestKind::Unified)
    };
    // An id has no `/` (its alphabet is [A-Za-z0-9._-]): the name is directly in the folder.
    let snapshot = SnapshotId::parse(stem).ok()?;
    let rendered = match kind {
        ManifestKind::LegacyManifest => legacy_manifest_key(partition, &snapshot),
        ManifestKind::LegacyIndex => legacy_index_key(partition, &snapshot),
        ManifestKind::Unified => unified_key(partition, &snapshot),
    };
    (rendered == key).then_some((snapshot, kind))
}

/// A live snapshot's manifest could not be used: which snapshot, which object, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot {snapshot}: {object}: {kind}")]
pub struct ManifestError {
    pub snapshot: String,
    /// The object the error is about, e.g. `snap-0007.index`.
    pub object: String,
    pub kind: ManifestErrorKind,
}

impl ManifestError {
    pub fn new(snapshot: impl Into<String>, object: impl Into<String>, kind: ManifestErrorKind) -> Self {
        Self { snapshot: snapshot.into(), object: object.into(), kind }
    }
}

/// Everything that can be wrong with a manifest. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestErrorKind {
    // --- used by the pipeline ---
    /// The object does not exist (neither `.snap` nor legacy pair, or half a legacy pair).
    #[error("missing")]
    Missing,
    /// The store failed to return the object.
    #[error("fetch failed: {0}")]
    Fetch(String),

    // --- legacy manifest (3.2) ---
    #[error("not UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("line {line}: not a `key: value` line: {text:?}")]
    BadLine { line: usize, text: String },
    #[error("line {line}: unknown key {key:?}")]
    UnknownKey { line: usize, key: String },
    #[error("line {line}: key {key:?} repeated (first on line {first_line})")]
    RepeatedKey { line: usize, key: String, first_line: usize },
    #[error("missing key {key:?}")]
    MissingKey { key: &'static str },
    #[error("line {line}: version {value:?} is not 1")]
    LegacyVersion { line: usize, value: String },
    #[error("line {line}: chunk_count {value:?} is not a decimal u64")]
    BadChunkCount { line: usize, value: String },
    #[error("line {line}: index_sha256 {value:?} is not 64 lowercase hex digits")]
    BadSha256 { line: usize, value: String },
    #[error("line {line}: created_at {value:?} is not RFC 3339: {why}")]
    BadCreatedAt { line: usize, value: String, why: String },

    // --- both manifest kinds ---
    #[error("snapshot_id {found:?} is not the snapshot it was fetched for ({expected:?})")]
    SnapshotMismatch { expected: String, found: String },
    #[error("partition_id {found:?} is not the partition being collected ({expected:?})")]
    PartitionMismatch { expected: String, found: String },

    // --- legacy index (3.3) ---
    #[error("length {len} is shorter than the 24-byte header")]
    IndexTooShort { len: usize },
    #[error("magic {found:?} is not \"CHUNKIDX\"")]
    BadMagic { found: String },
    #[error("index version {found} is not 1")]
    IndexVersion { found: u32 },
    #[error("id length {found} is not 32")]
    IdLength { found: u32 },
    #[error("length {len} is not 24 + 32 x {count}")]
    IndexLength { len: usize, count: u64 },
    #[error("index has {index} ids but the manifest's chunk_count is {manifest}")]
    CountMismatch { manifest: u64, index: u64 },
    #[error("SHA-256 of the index is {actual}, the manifest says {expected}")]
    ShaMismatch { expected: String, actual: String },

    // --- unified manifest (3.4) ---
    #[error("decode error: {0}")]
    Decode(String),
    #[error("byte {offset}: field number {field} is not in the schema of {message}")]
    UnknownField { message: &'static str, field: u64, offset: usize },
    #[error("byte {offset}: field {field} of {message} has wire type {wire_type}, the schema says {expected}")]
    WrongWireType { message: &'static str, field: u64, wire_type: u8, expected: u8, offset: usize },
    #[error("format_version {found} is not 1")]
    FormatVersion { found: u32 },
    #[error("location {index}: {error}")]
    BadLocation { index: usize, error: Box<LocationError> },
    #[error("group {group}: location {location} is out of range ({locations} locations)")]
    LocationOutOfRange { group: usize, location: u32, locations: usize },
    #[error("group {group}: ids are {len} bytes, not 32 x {count}")]
    IdsLength { group: usize, len: usize, count: u64 },
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Applies `(position, byte, op)` edits: 0 = overwrite, 1 = insert, 2 = truncate.
    pub(crate) fn mutate(bytes: &mut Vec<u8>, edits: &[(usize, u8, u8)]) {
        for &(pos, byte, op) in edits {
            let len = bytes.len();
            match op {
                0 if len > 0 => bytes[pos % len] = byte,
                1 => bytes.insert(pos % (len + 1), byte),
                _ => bytes.truncate(pos % (len + 1)),
            }
        }
    }

    #[test]
    fn keys() {
        let p = PartitionId::parse("p1").unwrap();
        let s = SnapshotId::parse("snap-0007").unwrap();
        assert_eq!(snapshots_dir(&p), "partitions/p1/snapshots/");
        assert_eq!(legacy_manifest_key(&p, &s), "partitions/p1/snapshots/snap-0007.manifest");
        assert_eq!(legacy_index_key(&p, &s), "partitions/p1/snapshots/snap-0007.index");
        assert_eq!(unified_key(&p, &s), "partitions/p1/snapshots/snap-0007.snap");
        assert!(unified_key(&p, &s).starts_with(&snapshots_dir(&p)));
    }

    #[test]
    fn error_display() {
        let e =
            ManifestError::new("snap-0007", "snap-0007.index", ManifestErrorKind::IndexLength { len: 1000, count: 40 });
        assert_eq!(e.to_string(), "snapshot snap-0007: snap-0007.index: length 1000 is not 24 + 32 x 40");
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    fn p1() -> PartitionId {
        PartitionId::parse("p1").expect("valid")
    }

    #[test]
    fn only_exact_manifest_names_are_manifests() {
        let p = p1();
        let s = SnapshotId::parse("snap-1").expect("valid");
        for (key, kind) in [
            (legacy_manifest_key(&p, &s), ManifestKind::LegacyManifest),
            (legacy_index_key(&p, &s), ManifestKind::LegacyIndex),
            (unified_key(&p, &s), ManifestKind::Unified),
        ] {
            assert_eq!(manifest_of_key(&p, &key), Some((s.clone(), kind)), "{key}");
        }
        let dir = "partitions/p1/snapshots";
        for odd in [
            format!("{dir}/snap-1.snap/"),
            format!("{dir}/"),
            format!("{dir}//snap-1.snap"),
            format!("{dir}/./snap-1.snap"),
            format!("{dir}/../snapshots/snap-1.snap"),
            format!("{dir}/x/snap-1.snap"),
            format!("{dir}/\tsnap-1.snap"),
            format!("{dir}/snap-1\u{7f}.snap"),
            format!("{dir}/snap-1.snap\r"),
            format!("{dir}/snap-1.snap.tmp"),
            format!("{dir}/.snap"),
            format!("{dir}/...snap"),
            format!("{dir}/snap 1.snap"),
            "partitions/p2/snapshots/snap-1.snap".to_owned(),
            "partitions/p1/snapshots".to_owned(),
        ] {
            assert_eq!(manifest_of_key(&p, &odd), None, "{odd:?}");
        }
    }

    proptest::proptest! {
        /// Any name: a manifest only when it is exactly the key rendered for it.
        #[test]
        fn names_are_manifests_only_when_exact(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let p = p1();
            let key = format!("partitions/p1/snapshots/{}", String::from_utf8_lossy(&tail));
            if let Some((s, kind)) = manifest_of_key(&p, &key) {
                let rendered = match kind {
                    ManifestKind::LegacyManifest => legacy_manifest_key(&p, &s),
                    ManifestKind::LegacyIndex => legacy_index_key(&p, &s),
                    ManifestKind::Unified => unified_key(&p, &s),
                };
                proptest::prop_assert_eq!(rendered, key);
            }
        }
    }
}
