//! The legacy pair: the `.manifest` text (spec 3.2) and the `.index` binary (spec 3.3).

use chrono::{DateTime, FixedOffset, SecondsFormat};
use sha2::{Digest, Sha256};

use super::{ManifestError, ManifestErrorKind};
use crate::ids::{ChunkId, PartitionId, SnapshotId};

/// A parsed and checked `.manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyManifest {
    pub snapshot_id: SnapshotId,
    pub partition_id: PartitionId,
    pub chunk_count: u64,
    /// SHA-256 of the whole `.index` file.
    pub index_sha256: [u8; 32],
    pub created_at: DateTime<FixedOffset>,
}

/// The keys of a `.manifest`, each required exactly once.
pub(crate) const MANIFEST_KEYS: [&str; 6] =
    ["version", "snapshot_id", "partition_id", "chunk_count", "index_sha256", "created_at"];

/// Parses a `.manifest` fetched for `snapshot` of `partition`. `object` names it in errors.
pub fn parse_manifest(
    text: &[u8],
    object: &str,
    snapshot: &SnapshotId,
    partition: &PartitionId,
) -> Result<LegacyManifest, ManifestError> {
    use ManifestErrorKind as K;
    let err = |kind| ManifestError::new(snapshot.as_str(), object, kind);
    let text = std::str::from_utf8(text).map_err(|e| err(K::NotUtf8 { offset: e.valid_up_to() }))?;

    // The line each key was seen on.
    let mut seen = [None::<usize>; MANIFEST_KEYS.len()];
    let mut chunk_count = 0;
    let mut index_sha256 = [0; 32];
    let mut created_at = None;
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            return Err(err(K::BadLine { line, text: trimmed.to_owned() }));
        };
        let (key, value) = (key.trim_ascii(), value.trim_ascii());
        let Some(slot) = MANIFEST_KEYS.iter().position(|&k| k == key) else {
            return Err(err(K::UnknownKey { line, key: key.to_owned() }));
        };
        if let Some(first_line) = seen[slot] {
            return Err(err(K::RepeatedKey { line, key: key.to_owned(), first_line }));
        }
        seen[slot] = Some(line);
        match key {
            "version" if value != "1" => {
                return Err(err(K::LegacyVersion { line, value: value.to_owned() }));
            }
            "snapshot_id" if value != snapshot.as_str() => {
                return Err(err(K::SnapshotMismatch { expected: snapshot.to_string(), found: value.to_owned() }));
            }
            "partition_id" if value != partition.as_str() => {
                return Err(err(K::PartitionMismatch { expected: partition.to_string(), found: value.to_owned() }));
            }
            "chunk_count" => {
                chunk_count = crate::live_set::parse_u64(value)
                    .ok_or_else(|| err(K::BadChunkCount { line, value: value.to_owned() }))?;
            }
            "index_sha256" => {
                index_sha256 =
                    ChunkId::from_hex(value).ok_or_else(|| err(K::BadSha256 { line, value: value.to_owned() }))?.0;
            }
            "created_at" => {
                let at = DateTime::parse_from_rfc3339(value)
                    .map_err(|e| err(K::BadCreatedAt { line, value: value.to_owned(), why: e.to_string() }))?;
                created_at = Some(at);
            }
            _ => {}
        }
    }
    if let Some(slot) = seen.iter().position(Option::is_none) {
        return Err(err(K::MissingKey { key: MANIFEST_KEYS[slot] }));
    }
    let Some(created_at) = created_at else {
        return Err(err(K::MissingKey { key: "created_at" }));
    };
    Ok(LegacyManifest {
        snapshot_id: snapshot.clone(),
        partition_id: partition.clone(),
        chunk_count,
        index_sha256,
        created_at,
    })
}

/// Renders a `.manifest` that [`parse_manifest`] accepts.
pub fn render_manifest(m: &LegacyManifest) -> String {
    format!(
        "version: 1\nsnapshot_id: {}\npartition_id: {}\nchunk_count: {}\nindex_sha256: {}\ncreated_at: {}\n",
        m.snapshot_id,
        m.partition_id,
        m.chunk_count,
        const_hex::encode(m.index_sha256),
        m.created_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )
}

/// Length of the `.index` header: magic, version, id length, count.
pub(crate) const INDEX_HEADER_LEN: usize = 24;
/// The `.index` magic.
pub(crate) const INDEX_MAGIC: &[u8; 8] = b"CHUNKIDX";

/// The header fields, unchecked.
struct IndexHeader {
    magic: [u8; 8],
    version: u32,
    id_len: u32,
    count: u64,
}

fn read_header(bytes: &[u8]) -> Option<IndexHeader> {
    let (magic, rest) = bytes.split_first_chunk::<8>()?;
    let (version, rest) = rest.split_first_chunk::<4>()?;
    let (id_len, rest) = rest.split_first_chunk::<4>()?;
    let (count, _) = rest.split_first_chunk::<8>()?;
    Some(IndexHeader {
        magic: *magic,
        version: u32::from_le_bytes(*version),
        id_len: u32::from_le_bytes(*id_len),
        count: u64::from_le_bytes(*count),
    })
}

/// Checks the `.index` header and its exact length, and returns the id array without
/// copying. `object` and `snapshot` name the file in errors.
pub fn index_ids<'a>(bytes: &'a [u8], object: &str, snapshot: &SnapshotId) -> Result<&'a [[u8; 32]], ManifestError> {
    use ManifestErrorKind as K;
    let err = |kind| ManifestError::new(snapshot.as_str(), object, kind);
    let len = bytes.len();
    let header = read_header(bytes).ok_or_else(|| err(K::IndexTooShort { len }))?;
    if &header.magic != INDEX_MAGIC {
        return Err(err(K::BadMagic { found: header.magic.escape_ascii().to_string() }));
    }
    if header.version != 1 {
        return Err(err(K::IndexVersion { found: header.version }));
    }
    if header.id_len != 32 {
        return Err(err(K::IdLength { found: header.id_len }));
    }
    let expected = header.count.checked_mul(32).and_then(|n| n.checked_add(INDEX_HEADER_LEN as u64));
    let body = bytes.get(INDEX_HEADER_LEN..).unwrap_or_default();
    let (ids, rest) = body.as_chunks::<32>();
    if expected != Some(len as u64) || !rest.is_empty() {
        return Err(err(K::IndexLength { len, count: header.count }));
    }
    Ok(ids)
}

/// The full check of an `.index` against its manifest: header and length, count equal to
/// `chunk_count`, SHA-256 of the whole file equal to `index_sha256`. Returns the ids.
pub fn check_index<'a>(m: &LegacyManifest, bytes: &'a [u8], object: &str) -> Result<&'a [[u8; 32]], ManifestError> {
    use ManifestErrorKind as K;
    let err = |kind| ManifestError::new(m.snapshot_id.as_str(), object, kind);
    let ids = index_ids(bytes, object, &m.snapshot_id)?;
    let index = ids.len() as u64;
    if index != m.chunk_count {
        return Err(err(K::CountMismatch { manifest: m.chunk_count, index }));
    }
    let actual: [u8; 32] = Sha256::digest(bytes).into();
    if actual != m.index_sha256 {
        return Err(err(K::ShaMismatch {
            expected: const_hex::encode(m.index_sha256),
            actual: const_hex::encode(actual),
        }));
    }
    Ok(ids)
}

/// Ids per block of [`check_index_streaming`]: 256 KiB of index, hashed and then inserted
/// while it is still in the core's cache.
pub(crate) const STREAM_BLOCK_IDS: usize = 1 << 13;

/// [`check_index`] in one pass over the file: the SHA-256 runs block by block, and each
/// block's ids go to `sink` right after it is hashed, while the block is still in cache. (A
/// `rayon::join` of hash and insert per block measured slower on this 2-core shared machine:
/// see BENCHMARKS.md; manifests are spread over the cores by running several at once.)
///
/// `sink` sees the ids before the checksum is confirmed. On `Err` the caller must treat
/// everything it was given as void: the run aborts with nothing deleted (spec 4.2), and extra
/// ids in a filter only ever keep chunks.
pub fn check_index_streaming<'a>(
    m: &LegacyManifest,
    bytes: &'a [u8],
    object: &str,
    sink: &(dyn Fn(&[[u8; 32]]) + Sync),
) -> Result<&'a [[u8; 32]], ManifestError> {
    use ManifestErrorKind as K;
    let err = |kind| ManifestError::new(m.snapshot_id.as_str(), object, kind);
    let ids = index_ids(bytes, object, &m.snapshot_id)?;
    let index = ids.len() as u64;
    if index != m.chunk_count {
        return Err(err(K::CountMismatch { manifest: m.chunk_count, index }));
    }
    let mut hasher = Sha256::new();
    hasher.update(&bytes[..INDEX_HEADER_LEN]);
    for block in ids.chunks(STREAM_BLOCK_IDS) {
        hasher.update(block.as_flattened());
        sink(block);
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != m.index_sha256 {
        return Err(err(K::ShaMismatch {
            expected: const_hex::encode(m.index_sha256),
            actual: const_hex::encode(actual),
        }));
    }
    Ok(ids)
}

/// Renders an `.index` holding `ids`, in order.
pub fn render_index(ids: &[ChunkId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + 32 * ids.len());
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&32u32.to_le_bytes());
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.0);
    }
    out
}

/// The manifest describing `index`, for writers: the SHA-256 of the whole file, and the
/// count its header states (0 when it has no header).
pub fn manifest_for_index(
    snapshot: &SnapshotId,
    partition: &PartitionId,
    index: &[u8],
    created_at: DateTime<FixedOffset>,
) -> LegacyManifest {
    LegacyManifest {
        snapshot_id: snapshot.clone(),
        partition_id: partition.clone(),
        chunk_count: read_header(index).map_or(0, |h| h.count),
        index_sha256: Sha256::digest(index).into(),
        created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::mutate;
    use proptest::prelude::*;

    fn s() -> SnapshotId {
        SnapshotId::parse("snap-1").unwrap()
    }
    fn p() -> PartitionId {
        PartitionId::parse("p1").unwrap()
    }
    fn at() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2025-06-01T12:00:00+02:00").unwrap()
    }
    fn ids(n: u8) -> Vec<ChunkId> {
        (0..n).map(|i| ChunkId([i; 32])).collect()
    }
    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn manifest_text(lines: &[&str]) -> String {
        lines.join("\n")
    }
    fn valid_lines() -> Vec<String> {
        vec![
            "version: 1".into(),
            "snapshot_id: snap-1".into(),
            "partition_id: p1".into(),
            "chunk_count: 0".into(),
            format!("index_sha256: {SHA}"),
            "created_at: 2025-06-01T12:00:00Z".into(),
        ]
    }
    fn parse_lines(lines: &[String]) -> Result<LegacyManifest, ManifestError> {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        parse_manifest(manifest_text(&refs).as_bytes(), "snap-1.manifest", &s(), &p())
    }
    fn with(line: usize, text: &str) -> ManifestErrorKind {
        let mut lines = valid_lines();
        lines[line] = text.into();
        parse_lines(&lines).unwrap_err().kind
    }

    #[test]
    fn valid_manifest_with_comments_and_blanks() {
        let mut lines = valid_lines();
        lines.insert(0, "# a legacy manifest".into());
        lines.insert(3, "".into());
        lines.push("   ".into());
        let m = parse_lines(&lines).unwrap();
        assert_eq!(m.chunk_count, 0);
        assert_eq!(const_hex::encode(m.index_sha256), SHA);
        assert_eq!(m.created_at, DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").unwrap());
    }

    #[test]
    fn manifest_errors() {
        use ManifestErrorKind as K;
        let e = parse_manifest(b"version: 1\n\xff", "o", &s(), &p()).unwrap_err();
        assert_eq!(e.kind, K::NotUtf8 { offset: 11 });
        assert_eq!(with(2, "partition_id p1"), K::BadLine { line: 3, text: "partition_id p1".into() });
        assert_eq!(with(2, "owner: p1"), K::UnknownKey { line: 3, key: "owner".into() });
        assert_eq!(with(2, "Version: 1"), K::UnknownKey { line: 3, key: "Version".into() });
        assert_eq!(with(2, "version: 1"), K::RepeatedKey { line: 3, key: "version".into(), first_line: 1 });
        assert_eq!(with(0, "version: 2"), K::LegacyVersion { line: 1, value: "2".into() });
        assert_eq!(with(0, "version: 01"), K::LegacyVersion { line: 1, value: "01".into() });
        assert_eq!(
            with(1, "snapshot_id: snap-2"),
            K::SnapshotMismatch { expected: "snap-1".into(), found: "snap-2".into() }
        );
        assert_eq!(with(2, "partition_id: p2"), K::PartitionMismatch { expected: "p1".into(), found: "p2".into() });
        for bad in ["-1", "+1", "1e3", "", "18446744073709551616", "0x10"] {
            let k = with(3, &format!("chunk_count: {bad}"));
            assert_eq!(k, K::BadChunkCount { line: 4, value: bad.into() });
        }
        for bad in [SHA.to_uppercase(), SHA[..63].to_owned(), format!("{SHA}0"), "x".repeat(64)] {
            let k = with(4, &format!("index_sha256: {bad}"));
            assert_eq!(k, K::BadSha256 { line: 5, value: bad });
        }
        assert!(matches!(with(5, "created_at: yesterday"), K::BadCreatedAt { line: 6, .. }));
        for key in MANIFEST_KEYS {
            let lines: Vec<String> = valid_lines().into_iter().filter(|l| !l.starts_with(key)).collect();
            assert_eq!(parse_lines(&lines).unwrap_err().kind, K::MissingKey { key });
        }
        let e = parse_manifest(b"", "snap-1.manifest", &s(), &p()).unwrap_err();
        assert_eq!(e.to_string(), "snapshot snap-1: snap-1.manifest: missing key \"version\"");
    }

    #[test]
    fn index_errors() {
        use ManifestErrorKind as K;
        let good = render_index(&ids(3));
        let kind = |bytes: &[u8]| index_ids(bytes, "snap-1.index", &s()).unwrap_err().kind;
        assert_eq!(index_ids(&good, "x", &s()).unwrap(), &[[0; 32], [1; 32], [2; 32]]);
        assert_eq!(kind(&good[..23]), K::IndexTooShort { len: 23 });
        assert_eq!(kind(b""), K::IndexTooShort { len: 0 });
        let mut bad = good.clone();
        bad[0] = b'c';
        assert_eq!(kind(&bad), K::BadMagic { found: "cHUNKIDX".into() });
        let mut bad = good.clone();
        bad[8] = 2;
        assert_eq!(kind(&bad), K::IndexVersion { found: 2 });
        let mut bad = good.clone();
        bad[12] = 16;
        assert_eq!(kind(&bad), K::IdLength { found: 16 });
        assert_eq!(kind(&good[..good.len() - 1]), K::IndexLength { len: 119, count: 3 });
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(kind(&bad), K::IndexLength { len: 121, count: 3 });
        for count in [u64::MAX, u64::MAX / 32, u64::MAX / 32 - 1, 1 << 59] {
            let mut bad = good.clone();
            bad[16..24].copy_from_slice(&count.to_le_bytes());
            assert_eq!(kind(&bad), K::IndexLength { len: 120, count });
        }
        let e = index_ids(&[0; 1000], "snap-0007.index", &SnapshotId::parse("snap-0007").unwrap()).unwrap_err();
        assert!(e.to_string().starts_with("snapshot snap-0007: snap-0007.index: magic"), "{e}");
    }

    #[test]
    fn index_against_manifest() {
        use ManifestErrorKind as K;
        let index = render_index(&ids(3));
        let m = manifest_for_index(&s(), &p(), &index, at());
        assert_eq!(m.chunk_count, 3);
        assert_eq!(check_index(&m, &index, "o").unwrap().len(), 3);
        let wrong_count = LegacyManifest { chunk_count: 4, ..m.clone() };
        assert_eq!(
            check_index(&wrong_count, &index, "o").unwrap_err().kind,
            K::CountMismatch { manifest: 4, index: 3 }
        );
        let mut other = index.clone();
        other[30] ^= 1;
        assert!(matches!(check_index(&m, &other, "o").unwrap_err().kind, K::ShaMismatch { .. }));
        // A header error wins over the manifest checks.
        assert!(matches!(check_index(&m, &index[..100], "o").unwrap_err().kind, K::IndexLength { .. }));
        assert_eq!(manifest_for_index(&s(), &p(), b"short", at()).chunk_count, 0);
        assert_eq!(const_hex::encode(manifest_for_index(&s(), &p(), b"", at()).index_sha256), SHA);
    }

    #[test]
    fn streaming_check_agrees_with_the_two_pass_check() {
        use std::sync::Mutex;
        for n in [0, 3, STREAM_BLOCK_IDS, 2 * STREAM_BLOCK_IDS + 5] {
            let all: Vec<ChunkId> = (0..n as u32)
                .map(|i| {
                    let mut id = [0u8; 32];
                    id[..4].copy_from_slice(&i.to_le_bytes());
                    ChunkId(id)
                })
                .collect();
            let index = render_index(&all);
            let m = manifest_for_index(&s(), &p(), &index, at());
            let seen = Mutex::new(Vec::new());
            let sink = |ids: &[[u8; 32]]| seen.lock().unwrap().extend_from_slice(ids);
            assert_eq!(check_index_streaming(&m, &index, "o", &sink).unwrap(), check_index(&m, &index, "o").unwrap());
            let mut seen = seen.into_inner().unwrap();
            seen.sort_unstable();
            let mut expected: Vec<[u8; 32]> = all.iter().map(|c| c.0).collect();
            expected.sort_unstable();
            assert!(seen == expected, "the sink saw other ids than the index holds");
            let mut other = index.clone();
            if let Some(last) = other.last_mut() {
                *last ^= 1;
                let err = check_index_streaming(&m, &other, "o", &|_| {}).unwrap_err();
                assert_eq!(err.kind, check_index(&m, &other, "o").unwrap_err().kind);
            }
            let wrong_count = LegacyManifest { chunk_count: n as u64 + 1, ..m.clone() };
            assert!(
                check_index_streaming(&wrong_count, &index, "o", &|_| panic!("ids before the count check")).is_err()
            );
        }
    }

    fn manifest_strategy() -> impl Strategy<Value = LegacyManifest> {
        (
            "[A-Za-z0-9][A-Za-z0-9._-]{0,30}",
            "[A-Za-z0-9][A-Za-z0-9._-]{0,30}",
            any::<u64>(),
            any::<[u8; 32]>(),
            -62_000_000_000i64..250_000_000_000,
            0u32..1_000_000_000,
            -86_399i32..86_400,
        )
            .prop_map(|(s, p, chunk_count, index_sha256, secs, nanos, offset)| {
                let offset = FixedOffset::east_opt(offset / 60 * 60).unwrap();
                LegacyManifest {
                    snapshot_id: SnapshotId::parse(&s).unwrap(),
                    partition_id: PartitionId::parse(&p).unwrap(),
                    chunk_count,
                    index_sha256,
                    created_at: DateTime::from_timestamp(secs, nanos).unwrap().with_timezone(&offset),
                }
            })
    }

    proptest! {
        #[test]
        fn manifest_round_trip(m in manifest_strategy()) {
            let text = render_manifest(&m);
            let back = parse_manifest(text.as_bytes(), "o", &m.snapshot_id, &m.partition_id).unwrap();
            prop_assert_eq!(back.created_at.offset(), m.created_at.offset());
            prop_assert_eq!(back, m);
        }

        #[test]
        fn index_round_trip(raw in proptest::collection::vec(any::<[u8; 32]>(), 0..50)) {
            let ids: Vec<ChunkId> = raw.iter().copied().map(ChunkId).collect();
            let index = render_index(&ids);
            let m = manifest_for_index(&s(), &p(), &index, at());
            prop_assert_eq!(check_index(&m, &index, "o").unwrap(), raw.as_slice());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_manifest(&bytes, "o", &s(), &p());
            let _ = index_ids(&bytes, "o", &s());
            let m = manifest_for_index(&s(), &p(), &bytes, at());
            let _ = check_index(&m, &bytes, "o");
        }

        #[test]
        fn arbitrary_headers_never_panic(header in any::<[u8; 24]>(), tail in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut bytes = b"CHUNKIDX\x01\0\0\0\x20\0\0\0".to_vec();
            bytes.extend_from_slice(&header[16..]);
            bytes.extend_from_slice(&tail);
            if let Ok(ids) = index_ids(&bytes, "o", &s()) {
                prop_assert_eq!(ids.len() * 32 + 24, bytes.len());
            }
            let _ = index_ids(&header, "o", &s());
        }

        #[test]
        fn mutated_files_never_panic(
            m in manifest_strategy(),
            n in 0u8..5,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let mut text = render_manifest(&m).into_bytes();
            mutate(&mut text, &edits);
            let _ = parse_manifest(&text, "o", &m.snapshot_id, &m.partition_id);
            let mut index = render_index(&ids(n));
            mutate(&mut index, &edits);
            let _ = index_ids(&index, "o", &s());
            let _ = check_index(&m, &index, "o");
        }
    }
}
