//! Hostile input: files claiming huge counts or lengths are refused before any allocation of
//! that size (measured with a counting allocator, per thread), hostile names are refused,
//! and a `file://` store's symbolic links are never followed out of the bucket.

use std::os::unix::fs::symlink;

use crate::peak_during;
use bytes::Bytes;
use common::*;
use gc_kit::fuzzing::{now, snapshot};
use gc_partition::ids::{PartitionId, SnapshotId, check_id};
use gc_partition::locations::{Location, check_bucket, check_prefix};
use gc_partition::manifest::{legacy, unified};

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn field(number: u64, wire: u64) -> Vec<u8> {
    varint(number << 3 | wire)
}

fn len_field(number: u64, body: &[u8]) -> Vec<u8> {
    let mut out = field(number, 2);
    out.extend(varint(body.len() as u64));
    out.extend_from_slice(body);
    out
}

/// A valid-looking `.snap` head: version, ids, one location.
fn snap_head() -> Vec<u8> {
    let mut out = field(1, 0);
    out.extend(varint(1));
    out.extend(len_field(2, b"snap-1"));
    out.extend(len_field(3, b"p1"));
    let mut loc = len_field(1, b"snapshots");
    loc.extend(len_field(2, b"partitions/p1/chunks"));
    out.extend(len_field(5, &loc));
    out
}

const KIB: usize = 1024;

#[test]
fn an_index_claiming_2_pow_60_ids_is_refused_without_allocating() {
    let mut index = b"CHUNKIDX".to_vec();
    index.extend(1u32.to_le_bytes());
    index.extend(32u32.to_le_bytes());
    index.extend((1u64 << 60).to_le_bytes());
    index.resize(KIB, 0xab);
    let (result, peak) = peak_during(|| legacy::index_ids(&index, "x.index", &snapshot()).map(<[_]>::len));
    assert!(result.is_err(), "{result:?}");
    assert!(peak < 4 * KIB, "refusing a 1 KiB index took {peak} bytes");
    // And a count that overflows 24 + 32 × count.
    index[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let (result, peak) = peak_during(|| legacy::index_ids(&index, "x.index", &snapshot()).map(<[_]>::len));
    assert!(result.is_err() && peak < 4 * KIB, "{peak}");
}

#[test]
fn a_snap_claiming_huge_counts_or_lengths_is_refused_without_allocating() {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // A group claiming 2^60 ids, holding 900 bytes of them.
    let mut group = field(1, 0);
    group.extend(varint(0));
    group.extend(field(2, 0));
    group.extend(varint(1 << 60));
    group.extend(len_field(3, &[0xcd; 900]));
    let mut snap = snap_head();
    snap.extend(len_field(6, &group));
    cases.push(("count 2^60", snap));
    // A length prefix of 2^60 (the ids field, the group, a string).
    for number in [6u64, 2, 5] {
        let mut snap = snap_head();
        snap.extend(field(number, 2));
        snap.extend(varint(1 << 60));
        snap.resize(KIB, 0);
        cases.push(("length 2^60", snap));
    }
    let mut inner = field(3, 2);
    inner.extend(varint(u64::MAX >> 1));
    inner.resize(200, 7);
    let mut snap = snap_head();
    snap.extend(len_field(6, &inner));
    cases.push(("ids length 2^63 inside a group", snap));
    // A count of u64::MAX (count × 32 overflows).
    let mut group = field(2, 0);
    group.extend(varint(u64::MAX));
    let mut snap = snap_head();
    snap.extend(len_field(6, &group));
    cases.push(("count u64::MAX", snap));
    for (what, bytes) in cases {
        let size = bytes.len();
        assert!(size <= KIB, "{what}: {size}");
        let bytes = Bytes::from(bytes);
        let (result, peak) =
            peak_during(|| unified::parse(bytes.clone(), "x.snap", &snapshot(), &gc_kit::fuzzing::partition()));
        assert!(result.is_err(), "{what}: accepted");
        assert!(peak < 16 * KIB, "{what}: refusing {size} bytes took {peak} bytes");
    }
}

/// A valid `.snap` of `groups` empty groups: 2 bytes each on the wire, the most structs per
/// input byte a schema-valid manifest can ask for.
fn empty_groups_snap(groups: usize) -> Bytes {
    let mut snap = snap_head();
    for _ in 0..groups {
        snap.extend(len_field(6, &[]));
    }
    Bytes::from(snap)
}

/// Not a refusal: the most a valid-by-schema `.snap` makes the parser hold per input byte.
/// Empty repeated messages are the worst case (2 bytes each on the wire).
#[test]
fn parsed_manifests_stay_within_a_bounded_multiple_of_their_size() {
    let groups = 64 * KIB;
    let bytes = empty_groups_snap(groups);
    let size = bytes.len();
    let (result, peak) = peak_during(|| {
        unified::parse(bytes, "x.snap", &snapshot(), &gc_kit::fuzzing::partition()).map(|m| m.groups.len())
    });
    assert_eq!(result.ok(), Some(groups), "empty groups are valid");
    let ratio = peak as f64 / size as f64;
    eprintln!("{size} bytes of empty groups: peak {peak} bytes ({ratio:.1}x)");
    assert!(ratio < 32.0, "{ratio:.1}x");
    // The same bytes as one index: a borrowed view, no copy.
    let mut index = b"CHUNKIDX".to_vec();
    index.extend(1u32.to_le_bytes());
    index.extend(32u32.to_le_bytes());
    index.extend(32_768u64.to_le_bytes());
    index.resize(24 + 32 * 32_768, 1);
    let (result, peak) = peak_during(|| legacy::index_ids(&index, "x.index", &snapshot()).map(<[_]>::len));
    assert_eq!(result.ok(), Some(32_768));
    assert!(peak < KIB, "{peak}");
}

/// The ingest reads a `.snap` a group at a time: what it holds does not grow with the groups.
#[test]
fn a_snap_read_group_by_group_holds_one_group_at_a_time() {
    let groups = 64 * KIB;
    let bytes = empty_groups_snap(groups);
    let size = bytes.len();
    let (seen, peak) = peak_during(|| {
        let (s, p) = (snapshot(), gc_kit::fuzzing::partition());
        let reader = unified::SnapReader::open(bytes, "x.snap", &s, &p).unwrap();
        let mut seen = 0usize;
        reader.for_each_group(|_| seen += 1).unwrap();
        seen
    });
    assert_eq!(seen, groups);
    eprintln!("{size} bytes of empty groups read group by group: peak {peak} bytes");
    assert!(peak < 16 * KIB, "reading {size} bytes group by group held {peak} bytes");
}

#[test]
fn a_live_set_or_manifest_claiming_a_huge_count_is_refused_without_allocating() {
    let text = format!("snap-1\n# end count={} taken_at=2025-12-31T00:00:00Z\n", 1u64 << 60);
    let (result, peak) =
        peak_during(|| gc_partition::live_set::parse(text.as_bytes(), "live", now()).map(|l| l.snapshots.len()));
    assert!(result.is_err() && peak < 4 * KIB, "{result:?} {peak}");
    let manifest = format!(
        "version: 1\nsnapshot_id: snap-1\npartition_id: p1\nchunk_count: {}\nindex_sha256: {}\ncreated_at: 2025-01-01T00:00:00Z\n",
        1u64 << 60,
        "00".repeat(32)
    );
    let (parsed, peak) =
        peak_during(|| legacy::parse_manifest(manifest.as_bytes(), "m", &snapshot(), &gc_kit::fuzzing::partition()));
    let parsed = parsed.expect("a big count alone is no error in the text");
    assert!(peak < 4 * KIB, "{peak}");
    let index = legacy::render_index(&[]);
    let (checked, peak) = peak_during(|| legacy::check_index(&parsed, &index, "i").map(<[_]>::len));
    assert!(checked.is_err() && peak < 4 * KIB, "{checked:?} {peak}");
}

#[test]
fn hostile_names_are_refused() {
    let hostile = [
        "..",
        ".",
        "../p2",
        "p1/..",
        "p1/../p2",
        "/p1",
        "p1/",
        "p1\\..\\p2",
        "p1\0",
        "p1%2F..",
        "%2e%2e",
        "p1%00",
        "pé",
        "p\u{202e}1",
        "p 1",
        "p1\n",
        "ｐ1",
        "",
    ];
    for name in hostile {
        assert!(check_id(name).is_err(), "id {name:?}");
        assert!(PartitionId::parse(name).is_err(), "partition {name:?}");
        assert!(SnapshotId::parse(name).is_err(), "snapshot {name:?}");
        assert!(check_bucket(name).is_err(), "bucket {name:?}");
        if !name.is_empty() {
            // The empty prefix is valid (spec 1); every other hostile name is no prefix.
            assert!(check_prefix(name).is_err(), "prefix {name:?}");
            assert!(Location::parse_spec(&format!("bucket/{name}")).is_err(), "location bucket/{name:?}");
        }
    }
    for prefix in ["..", "a/..", "../a", "a/./b", "a\\b", "a%2Fb", "a%2e%2e", "a\0b", "é", "a b", "a//b", "/a", "a/"] {
        assert!(check_prefix(prefix).is_err(), "prefix {prefix:?}");
        assert!(Location::parse_spec(&format!("bucket/{prefix}")).is_err(), "location bucket/{prefix}");
    }
    for bucket in ["a\\bc", "abc%2f", "ab\0c", "abç", "..a", "abc/..", "ABC"] {
        assert!(check_bucket(bucket).is_err(), "bucket {bucket:?}");
    }
    // A live set naming a hostile snapshot is refused (exit 3).
    for name in ["../p2/snapshots/x", "a/b", "a\\b", "%2e%2e", "é"] {
        let text = format!("{name}\n# end count=1 taken_at=2025-12-31T00:00:00Z\n");
        assert!(gc_partition::live_set::parse(text.as_bytes(), "live", now()).is_err(), "{name:?}");
    }
}

/// A small file:// partition for the link tests.
fn small(seed: u64) -> Fixture {
    partition(&Backend::File, |c| {
        c.seed = seed;
        c.snapshots = 3;
        c.referenced_ids = 60;
        c.garbage_chunks = 30;
        c.young_chunks = 5;
        c.foreign_objects = 2;
        c.extra_locations = 1;
    })
}

fn old_file(path: &std::path::Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    let old = chrono::Utc::now() - chrono::TimeDelta::days(60);
    gc_kit::ageing::set_mtime(path, old).unwrap();
}

#[test]
fn symbolic_links_in_a_file_store_are_never_followed_or_deleted() {
    let fx = small(41);
    let legacy = fx.summary.locations[0].clone();
    let location_dir = fx.root.as_ref().unwrap().join(legacy.bucket()).join(legacy.prefix());
    // A fan-out directory moved out of the store (beside another partition's old chunk) and
    // linked back: nothing in it may be deleted through the link.
    // The fan-out directory of a garbage chunk: what a run would delete if it followed the link.
    let sets = fx.summary.sets.as_ref().unwrap();
    let (_, garbage) = sets.garbage.iter().find(|(l, _)| *l == legacy).expect("garbage in the legacy location");
    let hh = &garbage.to_hex()[..2];
    let outside = fx.path("other-partition");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::rename(location_dir.join(hh), outside.join(hh)).unwrap();
    let moved: Vec<_> = std::fs::read_dir(outside.join(hh)).unwrap().map(|e| e.unwrap().path()).collect();
    let moved_garbage = outside.join(hh).join(garbage.to_hex());
    assert!(moved.contains(&moved_garbage), "{moved:?}");
    let victim = outside.join(hh).join(format!("{hh}{}", "7".repeat(62)));
    old_file(&victim, b"another partition's chunk");
    symlink(outside.join(hh), location_dir.join(hh)).unwrap();
    // A chunk-named link to a file outside, in an existing fan-out directory.
    let existing = (0u8..=255)
        .map(|b| format!("{b:02x}"))
        .find(|hh| location_dir.join(hh).symlink_metadata().is_ok_and(|m| m.is_dir()))
        .unwrap();
    let target = fx.path("outside-file");
    old_file(&target, b"not ours");
    let link = location_dir.join(&existing).join(format!("{existing}{}", "9".repeat(62)));
    symlink(&target, &link).unwrap();
    // A linked directory deeper down, pointing at the store root (a loop) .
    symlink(fx.root.as_ref().unwrap(), location_dir.join(&existing).join("loop")).unwrap();

    let out = fx.gc(&["--execute", "--verify", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert!(victim.exists(), "a chunk of another partition was deleted through a linked directory");
    for file in &moved {
        assert!(file.exists(), "{} was deleted through a linked directory", file.display());
    }
    assert!(target.exists(), "a file outside the store was deleted through a link");
    assert!(link.symlink_metadata().is_ok(), "the link itself was deleted");
    assert_eq!(
        json["foreign_objects"].as_u64().unwrap(),
        fx.summary.foreign_objects + 3,
        "the three links count as foreign objects"
    );
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    for (l, id) in sets.referenced.iter().chain(&sets.young) {
        // Through the file system (links followed): a chunk behind the linked directory counts.
        let file = fx.root.as_ref().unwrap().join(l.bucket()).join(l.chunk_key(id));
        assert!(file.exists(), "{} was deleted", chunk_name(l, id));
    }
}

#[test]
fn a_manifest_behind_a_symbolic_link_is_refused_with_exit_4() {
    for ext in ["index", "snap", "manifest"] {
        let fx = small(42);
        let dir = fx.root.as_ref().unwrap().join("snapshots/partitions/p1/snapshots");
        let live = std::fs::read_to_string(&fx.live_path).unwrap();
        let file = live
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|s| dir.join(format!("{}.{ext}", s.trim())))
            .find(|f| f.exists())
            .unwrap_or_else(|| panic!("no live .{ext}"));
        // The same bytes, but outside the store and reached through a link.
        let outside = fx.path(&format!("outside.{ext}"));
        std::fs::copy(&file, &outside).unwrap();
        std::fs::remove_file(&file).unwrap();
        symlink(&outside, &file).unwrap();
        let before = fx.fingerprint();
        let out = fx.gc(&["--execute"]);
        assert_eq!(code(&out), 4, ".{ext}: {}", stderr(&out));
        assert!(stderr(&out).contains("symbolic link"), ".{ext}: {}", stderr(&out));
        assert_eq!(fx.fingerprint(), before);
    }
}
