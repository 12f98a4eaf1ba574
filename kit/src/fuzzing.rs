//! One entry point per parser, shared by the `fuzz/` targets and by `tests/docs/fuzz_corpus.rs`,
//! which replays every corpus file under plain `cargo test`.
//!
//! Each function must never panic on any input, except through its own assertions: whatever
//! a parser accepts must render back to something it accepts again, unchanged.

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};

use gc_partition::ids::{ChunkId, PartitionId, SnapshotId};
use gc_partition::live_set;
use gc_partition::locations::Location;
use gc_partition::manifest::{legacy, unified};
use gc_partition::store::{parse_gcs_page, parse_s3_page};

/// The partition every fixture and corpus file is written for.
pub const PARTITION: &str = "p1";
/// The snapshot every manifest fixture and corpus file is fetched as.
pub const SNAPSHOT: &str = "snap-1";
/// The `now` live-set fixtures are checked against.
pub const NOW: &str = "2026-01-01T00:00:00Z";

pub fn partition() -> PartitionId {
    PartitionId::parse(PARTITION).unwrap_or_else(|e| unreachable!("{e}"))
}

pub fn snapshot() -> SnapshotId {
    SnapshotId::parse(SNAPSHOT).unwrap_or_else(|e| unreachable!("{e}"))
}

pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW).map_or(DateTime::UNIX_EPOCH, |t| t.with_timezone(&Utc))
}

pub fn fuzz_live_set(data: &[u8]) {
    if let Ok(live) = live_set::parse(data, "fuzz", now()) {
        assert!(live.taken_at <= now() + TimeDelta::minutes(5));
        let again = live_set::parse(live_set::render(&live.snapshots, live.taken_at).as_bytes(), "again", now());
        assert_eq!(again.as_ref().ok(), Some(&live), "{again:?}");
    }
}

pub fn fuzz_legacy_manifest(data: &[u8]) {
    let (s, p) = (snapshot(), partition());
    if let Ok(m) = legacy::parse_manifest(data, "fuzz.manifest", &s, &p) {
        let again = legacy::parse_manifest(legacy::render_manifest(&m).as_bytes(), "again", &s, &p);
        assert_eq!(again.as_ref().ok(), Some(&m), "{again:?}");
    }
}

pub fn fuzz_legacy_index(data: &[u8]) {
    let s = snapshot();
    if let Ok(ids) = legacy::index_ids(data, "fuzz.index", &s) {
        // A valid index is fully determined by its ids.
        let ids: Vec<ChunkId> = ids.iter().copied().map(ChunkId).collect();
        assert_eq!(legacy::render_index(&ids), data);
    }
    let m = legacy::manifest_for_index(&s, &partition(), data, DateTime::UNIX_EPOCH.fixed_offset());
    match (legacy::check_index(&m, data, "fuzz.index"), legacy::index_ids(data, "fuzz.index", &s)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("check_index {a:?} but index_ids {b:?}"),
    }
}

pub fn fuzz_unified_manifest(data: &[u8]) {
    let (s, p) = (snapshot(), partition());
    if let Ok(m) = unified::parse(Bytes::copy_from_slice(data), "fuzz.snap", &s, &p) {
        for g in &m.groups {
            assert!((g.location as usize) < m.locations.len());
        }
        let again = unified::parse(Bytes::from(unified::render(&m)), "again", &s, &p);
        assert_eq!(again.as_ref().ok(), Some(&m), "{again:?}");
    }
}

/// The location list pages are classified for: a prefix of several segments.
pub fn location() -> Location {
    Location::new("bucket-1", "partitions/p1/chunks").unwrap_or_else(|e| unreachable!("{e}"))
}

/// The chunk-key rule over any name: a name is a chunk only when it is exactly the key
/// [`Location::chunk_key`] renders for that chunk (`<prefix>/<hh>/<hex>`).
pub fn check_chunk_rule(location: &Location, name: &str) {
    if let Some(id) = location.chunk_of_key(name) {
        assert_eq!(location.chunk_key(&id), name, "{name:?} read as chunk {id:?}");
    }
}

/// An S3 `ListObjectsV2` or GCS `objects.list` answer (store/raw_list.rs): whatever a page
/// parses to, every name in it obeys the chunk-key rule; the input itself, read as one
/// name, too.
pub fn fuzz_list_page(data: &[u8]) {
    let location = location();
    for page in [parse_s3_page(data), parse_gcs_page(data)].into_iter().flatten() {
        for name in page.objects.iter().map(|o| o.key.as_str()).chain(page.common_prefixes.iter().map(String::as_str)) {
            check_chunk_rule(&location, name);
        }
    }
    check_chunk_rule(&location, &String::from_utf8_lossy(data));
}
