//! The committed fixtures under `testdata/` (and their copies in `fuzz/corpus/`).
//!
//! Every fixture is produced by [`fixtures`] below, so they are reproducible: after changing
//! it, run `cargo test --test e2e -- --ignored fixtures::regenerate` and commit the result.
//! `fixtures_are_up_to_date` fails when the committed files and the generator disagree;
//! `every_fixture_parses_as_expected` parses the files on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::DateTime;
use gc_kit::fuzzing::{now, partition, snapshot};
use gc_partition::ids::ChunkId;
use gc_partition::live_set;
use gc_partition::locations::Location;
use gc_partition::manifest::legacy::{self, LegacyManifest};
use gc_partition::manifest::unified::{self, ChunkGroup, UnifiedManifest, pb};
use prost::Message;

/// `None`: must parse; `Some(variant)`: must fail with that error kind variant.
type Expect = Option<&'static str>;

struct Fixture {
    /// Path under `testdata/`.
    path: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

fn fx(path: &'static str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Fixture {
    Fixture { path, bytes: bytes.into(), expect }
}

const TAKEN_AT: &str = "taken_at=2025-12-31T23:00:00Z";

fn live_sets() -> Vec<Fixture> {
    let t = TAKEN_AT;
    vec![
        fx(
            "live_set/valid_three.txt",
            format!("# live set of p1\nsnap-1\n\nsnap-2\n# a comment\nsnap-3\n# end count=3 {t}\n"),
            None,
        ),
        fx("live_set/valid_empty.txt", format!("# end count=0 {t}\n"), None),
        fx(
            "live_set/valid_crlf_whitespace.txt",
            format!("  snap-1 \r\n\tsnap-2\r\n\r\n  # end count=2 {t}  \r\n"),
            None,
        ),
        fx(
            "live_set/not_utf8.txt",
            [b"snap-1\nsnap-\xff2\n".as_slice(), format!("# end count=2 {t}\n").as_bytes()].concat(),
            Some("NotUtf8"),
        ),
        fx("live_set/bad_id.txt", format!("snap-1\nsnap/2\n# end count=2 {t}\n"), Some("BadId")),
        fx("live_set/duplicate.txt", format!("snap-1\nsnap-2\nsnap-1\n# end count=3 {t}\n"), Some("Duplicate")),
        fx("live_set/missing_trailer.txt", "snap-1\nsnap-2\nsna", Some("MissingTrailer")),
        fx("live_set/bad_trailer.txt", "snap-1\n# end count=1 taken_at=yesterday\n", Some("BadTrailer")),
        fx(
            "live_set/two_trailers.txt",
            format!("snap-1\n# end count=1 {t}\nsnap-2\n# end count=2 {t}\n"),
            Some("TrailerNotLast"),
        ),
        fx(
            "live_set/comment_after_trailer.txt",
            format!("snap-1\n# end count=1 {t}\n# done\n"),
            Some("TrailerNotLast"),
        ),
        fx("live_set/count_mismatch.txt", format!("snap-1\nsnap-2\n# end count=3 {t}\n"), Some("CountMismatch")),
        fx(
            "live_set/future_taken_at.txt",
            "snap-1\n# end count=1 taken_at=2026-01-01T00:05:01Z\n",
            Some("FutureTakenAt"),
        ),
    ]
}

fn ids(n: u8) -> Vec<ChunkId> {
    (0..n).map(|i| ChunkId([i.wrapping_mul(37).wrapping_add(1); 32])).collect()
}

fn legacy_pair(index: &[u8]) -> LegacyManifest {
    let at = DateTime::parse_from_rfc3339("2025-06-01T12:00:00+02:00").unwrap();
    legacy::manifest_for_index(&snapshot(), &partition(), index, at)
}

/// A valid manifest text with line `key` replaced by `line` (`None`: removed).
fn manifest_with(key: &str, line: Option<&str>) -> String {
    let text = legacy::render_manifest(&legacy_pair(&legacy::render_index(&ids(3))));
    text.lines()
        .filter_map(|l| if l.starts_with(&format!("{key}:")) { line } else { Some(l) })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn legacy() -> Vec<Fixture> {
    let index = legacy::render_index(&ids(3));
    let empty = legacy::render_index(&[]);
    let header = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = index.clone();
        f(&mut b);
        b
    };
    let mut valid_manifest = String::from("# legacy manifest of snap-1\n\n");
    valid_manifest.push_str(&legacy::render_manifest(&legacy_pair(&index)));
    let mut other = index.clone();
    other[30] ^= 0xff;
    vec![
        fx("legacy/valid.manifest", valid_manifest, None),
        fx("legacy/valid.index", index.clone(), None),
        fx("legacy/valid_empty.manifest", legacy::render_manifest(&legacy_pair(&empty)), None),
        fx("legacy/valid_empty.index", empty, None),
        fx(
            "legacy/manifest_not_utf8.manifest",
            [b"# latin-1 comment: caf\xe9\n".as_slice(), manifest_with("version", Some("version: 1")).as_bytes()]
                .concat(),
            Some("NotUtf8"),
        ),
        fx("legacy/manifest_bad_line.manifest", manifest_with("version", Some("version 1")), Some("BadLine")),
        fx(
            "legacy/manifest_unknown_key.manifest",
            manifest_with("version", Some("version: 1\nowner: team-a")),
            Some("UnknownKey"),
        ),
        fx(
            "legacy/manifest_repeated_key.manifest",
            manifest_with("version", Some("version: 1\nversion: 1")),
            Some("RepeatedKey"),
        ),
        fx("legacy/manifest_missing_key.manifest", manifest_with("index_sha256", None), Some("MissingKey")),
        fx("legacy/manifest_bad_version.manifest", manifest_with("version", Some("version: 2")), Some("LegacyVersion")),
        fx(
            "legacy/manifest_wrong_snapshot.manifest",
            manifest_with("snapshot_id", Some("snapshot_id: snap-2")),
            Some("SnapshotMismatch"),
        ),
        fx(
            "legacy/manifest_wrong_partition.manifest",
            manifest_with("partition_id", Some("partition_id: p2")),
            Some("PartitionMismatch"),
        ),
        fx(
            "legacy/manifest_bad_chunk_count.manifest",
            manifest_with("chunk_count", Some("chunk_count: -3")),
            Some("BadChunkCount"),
        ),
        fx(
            "legacy/manifest_bad_sha256.manifest",
            manifest_with("index_sha256", Some(&format!("index_sha256: {}", "AB".repeat(32)))),
            Some("BadSha256"),
        ),
        fx(
            "legacy/manifest_bad_created_at.manifest",
            manifest_with("created_at", Some("created_at: 2025-06-01 12:00")),
            Some("BadCreatedAt"),
        ),
        fx("legacy/index_too_short.index", index[..20].to_vec(), Some("IndexTooShort")),
        fx("legacy/index_bad_magic.index", header(&|b| b[..8].copy_from_slice(b"CHUNKIDY")), Some("BadMagic")),
        fx("legacy/index_bad_version.index", header(&|b| b[8] = 2), Some("IndexVersion")),
        fx("legacy/index_bad_id_length.index", header(&|b| b[12] = 20), Some("IdLength")),
        fx("legacy/index_bad_length.index", index[..index.len() - 7].to_vec(), Some("IndexLength")),
        fx(
            "legacy/index_huge_count.index",
            header(&|b| b[16..24].copy_from_slice(&u64::MAX.to_le_bytes())),
            Some("IndexLength"),
        ),
        fx("legacy/pair_count_mismatch.manifest", manifest_with("chunk_count", Some("chunk_count: 4")), None),
        fx("legacy/pair_count_mismatch.index", index.clone(), Some("CountMismatch")),
        fx("legacy/pair_sha_mismatch.manifest", manifest_with("version", Some("version: 1")), None),
        fx("legacy/pair_sha_mismatch.index", other, Some("ShaMismatch")),
    ]
}

fn valid_unified() -> UnifiedManifest {
    UnifiedManifest {
        snapshot_id: snapshot(),
        partition_id: partition(),
        created_unix_ms: 1_750_000_000_000,
        locations: vec![
            Location::new("snapshots", "partitions/p1/chunks").unwrap(),
            Location::new("chunks-eu", "p1").unwrap(),
        ],
        groups: vec![ChunkGroup::new(0, &ids(3)), ChunkGroup::new(1, &ids(2)[1..]), ChunkGroup::new(1, &[])],
    }
}

fn key(field: u64, wire_type: u64) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint((field << 3) | wire_type, &mut out);
    out
}

fn len_field(field: u64, body: &[u8]) -> Vec<u8> {
    let mut out = key(field, 2);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

fn unified() -> Vec<Fixture> {
    let valid = unified::to_pb(&valid_unified());
    let bytes = valid.encode_to_vec();
    let edit = |f: &dyn Fn(&mut pb::SnapshotManifest)| {
        let mut m = valid.clone();
        f(&mut m);
        m.encode_to_vec()
    };
    let append = |extra: Vec<u8>| {
        let mut b = bytes.clone();
        b.extend(extra);
        b
    };
    let mut loc = pb::ChunkLocation { bucket: "chunks-eu".into(), prefix: "p1/more".into() }.encode_to_vec();
    loc.extend(len_field(3, b"storage-class=cold"));
    let mut group = pb::ChunkGroup { location: 0, count: 0, ids: Bytes::new() }.encode_to_vec();
    group.extend(len_field(4, &ChunkId([9; 32]).0));
    let mut bad_utf8 = key(1, 0);
    bad_utf8.push(1);
    bad_utf8.extend(len_field(2, b"snap-\xff"));
    let empty = UnifiedManifest { locations: vec![], groups: vec![], ..valid_unified() };
    vec![
        fx("unified/valid.snap", bytes.clone(), None),
        fx("unified/valid_empty.snap", unified::render(&empty), None),
        fx("unified/truncated.snap", bytes[..bytes.len() - 10].to_vec(), Some("Decode")),
        fx("unified/bad_utf8.snap", bad_utf8, Some("Decode")),
        fx("unified/unknown_field.snap", append([key(7, 0), vec![1]].concat()), Some("UnknownField")),
        fx("unified/unknown_field_in_location.snap", append(len_field(5, &loc)), Some("UnknownField")),
        fx("unified/unknown_field_in_group.snap", append(len_field(6, &group)), Some("UnknownField")),
        fx("unified/wrong_wire_type.snap", append(len_field(4, b"1750000000000")), Some("WrongWireType")),
        fx("unified/format_version_2.snap", edit(&|m| m.format_version = 2), Some("FormatVersion")),
        fx("unified/missing_format_version.snap", edit(&|m| m.format_version = 0), Some("FormatVersion")),
        fx("unified/wrong_snapshot.snap", edit(&|m| m.snapshot_id = "snap-2".into()), Some("SnapshotMismatch")),
        fx("unified/wrong_partition.snap", edit(&|m| m.partition_id = "p2".into()), Some("PartitionMismatch")),
        fx("unified/location_out_of_range.snap", edit(&|m| m.groups[1].location = 2), Some("LocationOutOfRange")),
        fx("unified/ids_length_mismatch.snap", edit(&|m| m.groups[0].count = 4), Some("IdsLength")),
        fx("unified/huge_count.snap", edit(&|m| m.groups[0].count = u64::MAX), Some("IdsLength")),
        fx("unified/bad_bucket.snap", edit(&|m| m.locations[1].bucket = "Chunks_EU".into()), Some("BadLocation")),
        fx("unified/bad_prefix.snap", edit(&|m| m.locations[1].prefix = "/p1/".into()), Some("BadLocation")),
    ]
}

fn fixtures() -> Vec<Fixture> {
    [live_sets(), legacy(), unified()].into_iter().flatten().collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fuzz target whose corpus gets a copy of a fixture.
fn corpus_of(path: &str) -> &'static str {
    match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("txt") => "live_set",
        Some("manifest") => "legacy_manifest",
        Some("index") => "legacy_index",
        _ => "unified_manifest",
    }
}

fn corpus_path(path: &str) -> PathBuf {
    let name = Path::new(path).file_name().unwrap_or_default();
    root().join("fuzz/corpus").join(corpus_of(path)).join(name)
}

/// The variant name of an error kind, from its `Debug` form.
fn variant(debug: String) -> String {
    debug.split([' ', '(', '{']).next().unwrap_or_default().to_owned()
}

/// Parses a fixture file the way the pipeline would; `Err` holds the error kind's variant.
fn check(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let (s, p) = (snapshot(), partition());
    let path = Path::new(name);
    match path.extension().and_then(|e| e.to_str()) {
        Some("txt") => live_set::parse(bytes, name, now()).map(drop).map_err(|e| variant(format!("{:?}", e.kind))),
        Some("manifest") => {
            legacy::parse_manifest(bytes, name, &s, &p).map(drop).map_err(|e| variant(format!("{:?}", e.kind)))
        }
        Some("index") => {
            let manifest = dir.join(path.with_extension("manifest"));
            let parsed = std::fs::read(&manifest).ok().and_then(|t| legacy::parse_manifest(&t, "m", &s, &p).ok());
            let res = match parsed {
                Some(m) => legacy::check_index(&m, bytes, name),
                None => legacy::index_ids(bytes, name, &s),
            };
            res.map(drop).map_err(|e| variant(format!("{:?}", e.kind)))
        }
        Some("snap") => unified::parse(Bytes::copy_from_slice(bytes), name, &s, &p)
            .map(drop)
            .map_err(|e| variant(format!("{:?}", e.kind))),
        _ => Err(format!("unexpected fixture {name}")),
    }
}

fn files_on_disk() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for dir in ["live_set", "legacy", "unified"] {
        for entry in std::fs::read_dir(root().join("testdata").join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            out.insert(format!("{dir}/{name}"), std::fs::read(&path).unwrap());
        }
    }
    out
}

#[test]
fn every_fixture_parses_as_expected() {
    let expected: BTreeMap<&str, Expect> = fixtures().iter().map(|f| (f.path, f.expect)).collect();
    let on_disk = files_on_disk();
    let listed: Vec<&str> = expected.keys().copied().collect();
    let found: Vec<&str> = on_disk.keys().map(String::as_str).collect();
    assert_eq!(found, listed, "testdata/ and the fixture table disagree");
    for (path, bytes) in &on_disk {
        let (dir, name) = path.split_once('/').unwrap();
        let got = check(&root().join("testdata").join(dir), name, bytes);
        match expected[path.as_str()] {
            None => assert_eq!(got, Ok(()), "{path} must parse"),
            Some(kind) => assert_eq!(got, Err(kind.to_owned()), "{path} must fail with {kind}"),
        }
    }
}

#[test]
fn invalid_fixtures_are_named_after_their_error() {
    for f in fixtures() {
        let stem = Path::new(f.path).file_stem().unwrap().to_str().unwrap();
        assert_eq!(
            f.expect.is_none(),
            stem.starts_with("valid") || (stem.starts_with("pair_") && f.path.ends_with(".manifest")),
            "{}",
            f.path
        );
    }
}

#[test]
fn fixtures_are_up_to_date() {
    for f in fixtures() {
        let on_disk = std::fs::read(root().join("testdata").join(f.path)).unwrap_or_default();
        assert!(
            on_disk == f.bytes,
            "testdata/{} is stale: run `cargo test --test e2e -- --ignored fixtures::regenerate`",
            f.path
        );
        let copy = std::fs::read(corpus_path(f.path)).unwrap_or_default();
        assert!(copy == f.bytes, "fuzz corpus copy of {} is stale: run the regenerator", f.path);
    }
}

/// Rewrites `testdata/` and the fixture copies in `fuzz/corpus/`.
#[test]
#[ignore = "writes testdata/; run on purpose"]
fn regenerate() {
    for f in fixtures() {
        for path in [root().join("testdata").join(f.path), corpus_path(f.path)] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &f.bytes).unwrap();
        }
    }
}
