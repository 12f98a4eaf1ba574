//! The unified manifest (spec 3.4): a protobuf `SnapshotManifest`.
//!
//! The bytes are first walked at the wire level against the schema: any field number the
//! schema does not have (at the top level or inside `ChunkLocation`/`ChunkGroup`) is an error,
//! because an unknown field may be a reference this version cannot see. Only then does prost
//! decode them, from `Bytes`, so the ids of each group are slices of the fetched object.

use std::fmt;

use bytes::Bytes;
use prost::Message;

use super::{ManifestError, ManifestErrorKind};
use crate::ids::{ChunkId, PartitionId, SnapshotId};
use crate::locations::Location;

/// The prost types generated from `proto/snapshot.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/gcpart.snapshot.v1.rs"));
}

/// The only `format_version` this version understands.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A parsed and checked `.snap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedManifest {
    pub snapshot_id: SnapshotId,
    pub partition_id: PartitionId,
    pub created_unix_ms: i64,
    pub locations: Vec<Location>,
    pub groups: Vec<ChunkGroup>,
}

/// Chunk ids kept in one location. `location` indexes [`UnifiedManifest::locations`].
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkGroup {
    pub location: u32,
    /// Invariant: a multiple of 32 bytes.
    ids: Bytes,
}

impl ChunkGroup {
    pub fn new(location: u32, ids: &[ChunkId]) -> Self {
        let mut raw = Vec::with_capacity(32 * ids.len());
        for id in ids {
            raw.extend_from_slice(&id.0);
        }
        Self { location, ids: Bytes::from(raw) }
    }

    /// A group over already concatenated ids; `None` unless `ids` is a multiple of 32 bytes.
    pub fn from_bytes(location: u32, ids: Bytes) -> Option<Self> {
        ids.len().is_multiple_of(32).then_some(Self { location, ids })
    }

    pub fn ids(&self) -> &[[u8; 32]] {
        self.ids.as_chunks::<32>().0
    }

    #[cfg(test)]
    /// The concatenated ids, as decoded (shares the fetched buffer).
    pub(crate) fn ids_bytes(&self) -> &Bytes {
        &self.ids
    }

    pub fn count(&self) -> u64 {
        (self.ids.len() / 32) as u64
    }
}

impl fmt::Debug for ChunkGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkGroup").field("location", &self.location).field("count", &self.count()).finish()
    }
}

/// Parses a `.snap` fetched for `snapshot` of `partition`. `object` names it in errors.
/// Location ownership is not checked here.
pub fn parse(
    bytes: Bytes,
    object: &str,
    snapshot: &SnapshotId,
    partition: &PartitionId,
) -> Result<UnifiedManifest, ManifestError> {
    let reader = SnapReader::open(bytes, object, snapshot, partition)?;
    let mut groups = Vec::new();
    reader.for_each_group(|group| groups.push(group.clone()))?;
    let SnapReader { head, .. } = reader;
    Ok(UnifiedManifest {
        snapshot_id: snapshot.clone(),
        partition_id: partition.clone(),
        created_unix_ms: head.created_unix_ms,
        locations: head.locations,
        groups,
    })
}

/// The fields of a `SnapshotManifest` but its groups. Decoding the whole object as this
/// message skips field 6 without materialising it.
#[derive(Clone, PartialEq, prost::Message)]
struct HeadPb {
    #[prost(uint32, tag = "1")]
    format_version: u32,
    #[prost(string, tag = "2")]
    snapshot_id: String,
    #[prost(string, tag = "3")]
    partition_id: String,
    #[prost(int64, tag = "4")]
    created_unix_ms: i64,
    #[prost(message, repeated, tag = "5")]
    locations: Vec<pb::ChunkLocation>,
}

/// What a `.snap` says besides its groups, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapHead {
    pub created_unix_ms: i64,
    pub locations: Vec<Location>,
}

/// A `.snap` whose framing, schema, version, ids and locations are checked, and whose groups
/// are read one at a time: a manifest of many small groups never holds them all at once.
pub struct SnapReader<'a> {
    bytes: Bytes,
    head: SnapHead,
    object: &'a str,
    snapshot: &'a SnapshotId,
}

impl<'a> SnapReader<'a> {
    pub fn open(
        bytes: Bytes,
        object: &'a str,
        snapshot: &'a SnapshotId,
        partition: &PartitionId,
    ) -> Result<Self, ManifestError> {
        use ManifestErrorKind as K;
        let err = |kind| ManifestError::new(snapshot.as_str(), object, kind);
        check_wire(&bytes, 0, &SNAPSHOT_MANIFEST).map_err(err)?;
        let m = HeadPb::decode(bytes.clone()).map_err(|e| err(K::Decode(e.to_string())))?;
        if m.format_version != FORMAT_VERSION {
            return Err(err(K::FormatVersion { found: m.format_version }));
        }
        if m.snapshot_id != snapshot.as_str() {
            return Err(err(K::SnapshotMismatch { expected: snapshot.to_string(), found: m.snapshot_id }));
        }
        if m.partition_id != partition.as_str() {
            return Err(err(K::PartitionMismatch { expected: partition.to_string(), found: m.partition_id }));
        }
        let locations = m
            .locations
            .iter()
            .enumerate()
            .map(|(index, l)| {
                Location::new(&l.bucket, &l.prefix)
                    .map_err(|error| err(K::BadLocation { index, error: Box::new(error) }))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { bytes, head: SnapHead { created_unix_ms: m.created_unix_ms, locations }, object, snapshot })
    }

    pub fn head(&self) -> &SnapHead {
        &self.head
    }

    /// Calls `each` with every group, in order, each checked (location in range, ids of
    /// `count × 32` bytes) before it is passed. On `Err`, the groups already passed belong
    /// to an invalid manifest: the caller must treat them as void.
    pub fn for_each_group(&self, mut each: impl FnMut(&ChunkGroup)) -> Result<(), ManifestError> {
        use ManifestErrorKind as K;
        let err = |kind| ManifestError::new(self.snapshot.as_str(), self.object, kind);
        let locations = self.head.locations.len();
        for (group, body) in fields(&self.bytes, 6).enumerate() {
            let g = pb::ChunkGroup::decode(body.map_err(err)?).map_err(|e| err(K::Decode(e.to_string())))?;
            if usize::try_from(g.location).map_or(true, |l| l >= locations) {
                return Err(err(K::LocationOutOfRange { group, location: g.location, locations }));
            }
            let len = g.ids.len();
            if g.count.checked_mul(32) != Some(len as u64) {
                return Err(err(K::IdsLength { group, len, count: g.count }));
            }
            each(&ChunkGroup { location: g.location, ids: g.ids });
        }
        Ok(())
    }
}

/// The bodies of the top-level length-delimited fields numbered `number` of an encoded
/// message, in order, as slices of `bytes` (no copy). Framing errors end the walk with one
/// `Err` ([`check_wire`] has refused them already; this does not rely on it).
fn fields(bytes: &Bytes, number: u64) -> impl Iterator<Item = Result<Bytes, ManifestErrorKind>> + '_ {
    let mut pos = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        while !failed && pos < bytes.len() {
            let at = pos;
            let framing = |why: &str| ManifestErrorKind::Decode(format!("byte {at}: {why} in SnapshotManifest"));
            let Some(tag) = read_varint(bytes, &mut pos) else {
                failed = true;
                return Some(Err(framing("malformed tag varint")));
            };
            let end = match (tag & 7) as u8 {
                VARINT => read_varint(bytes, &mut pos).map(|_| pos),
                LEN => read_varint(bytes, &mut pos)
                    .and_then(|len| usize::try_from(len).ok())
                    .and_then(|len| pos.checked_add(len)),
                I64 => pos.checked_add(8),
                I32 => pos.checked_add(4),
                _ => None,
            };
            let Some(end) = end.filter(|&end| end <= bytes.len()) else {
                failed = true;
                return Some(Err(framing("malformed field")));
            };
            let body = pos..end;
            pos = end;
            if tag >> 3 == number && (tag & 7) as u8 == LEN {
                return Some(Ok(bytes.slice(body)));
            }
        }
        None
    })
}

/// Renders a `.snap` that [`parse`] accepts (with `format_version` 1).
pub fn render(m: &UnifiedManifest) -> Vec<u8> {
    to_pb(m).encode_to_vec()
}

/// The protobuf message of `m`, for writers that want to add to it (tests of invalid files).
pub fn to_pb(m: &UnifiedManifest) -> pb::SnapshotManifest {
    pb::SnapshotManifest {
        format_version: FORMAT_VERSION,
        snapshot_id: m.snapshot_id.to_string(),
        partition_id: m.partition_id.to_string(),
        created_unix_ms: m.created_unix_ms,
        locations: m
            .locations
            .iter()
            .map(|l| pb::ChunkLocation { bucket: l.bucket().to_owned(), prefix: l.prefix().to_owned() })
            .collect(),
        groups: m
            .groups
            .iter()
            .map(|g| pb::ChunkGroup { location: g.location, count: g.count(), ids: g.ids.clone() })
            .collect(),
    }
}

// --- the wire-level check -------------------------------------------------------------------

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// A message of the schema: its fields as (number, wire type, nested message).
struct Schema {
    name: &'static str,
    fields: &'static [(u64, u8, Option<&'static Schema>)],
}

static CHUNK_LOCATION: Schema = Schema { name: "ChunkLocation", fields: &[(1, LEN, None), (2, LEN, None)] };
static CHUNK_GROUP: Schema =
    Schema { name: "ChunkGroup", fields: &[(1, VARINT, None), (2, VARINT, None), (3, LEN, None)] };
static SNAPSHOT_MANIFEST: Schema = Schema {
    name: "SnapshotManifest",
    fields: &[
        (1, VARINT, None),
        (2, LEN, None),
        (3, LEN, None),
        (4, VARINT, None),
        (5, LEN, Some(&CHUNK_LOCATION)),
        (6, LEN, Some(&CHUNK_GROUP)),
    ],
};

/// Reads a varint at `*pos`, advancing it. `None` when truncated or longer than 64 bits.
fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Walks `buf`, one encoded `schema` message starting at byte `base` of the object, and
/// refuses fields the schema does not have, wrong wire types and malformed framing.
fn check_wire(buf: &[u8], base: usize, schema: &Schema) -> Result<(), ManifestErrorKind> {
    use ManifestErrorKind as K;
    let malformed = |at: usize, why: &str| K::Decode(format!("byte {}: {why} in {}", base + at, schema.name));
    let mut pos = 0;
    while pos < buf.len() {
        let at = pos;
        let tag = read_varint(buf, &mut pos).ok_or_else(|| malformed(at, "malformed tag varint"))?;
        let (field, wire_type) = (tag >> 3, (tag & 7) as u8);
        if field == 0 {
            return Err(malformed(at, "field number 0"));
        }
        let Some(&(_, expected, nested)) = schema.fields.iter().find(|f| f.0 == field) else {
            return Err(K::UnknownField { message: schema.name, field, offset: base + at });
        };
        if wire_type != expected {
            return Err(K::WrongWireType { message: schema.name, field, wire_type, expected, offset: base + at });
        }
        match wire_type {
            VARINT => {
                read_varint(buf, &mut pos).ok_or_else(|| malformed(pos, "malformed varint"))?;
            }
            LEN => {
                let len_at = pos;
                let len = read_varint(buf, &mut pos).ok_or_else(|| malformed(len_at, "malformed length"))?;
                let end =
                    usize::try_from(len).ok().and_then(|len| pos.checked_add(len)).filter(|&end| end <= buf.len());
                let Some(body) = end.and_then(|end| buf.get(pos..end)) else {
                    return Err(malformed(len_at, "length-delimited field runs past the end"));
                };
                if let Some(nested) = nested {
                    check_wire(body, base + pos, nested)?;
                }
                pos += body.len();
            }
            I64 | I32 => {
                let size = if wire_type == I64 { 8 } else { 4 };
                pos = pos
                    .checked_add(size)
                    .filter(|&end| end <= buf.len())
                    .ok_or_else(|| malformed(at, "truncated fixed-size field"))?;
            }
            _ => return Err(malformed(at, "unsupported wire type")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locations::LocationError;
    use crate::manifest::tests::mutate;
    use ManifestErrorKind as K;
    use proptest::prelude::*;

    fn s() -> SnapshotId {
        SnapshotId::parse("snap-1").unwrap()
    }
    fn p() -> PartitionId {
        PartitionId::parse("p1").unwrap()
    }
    fn sample() -> UnifiedManifest {
        UnifiedManifest {
            snapshot_id: s(),
            partition_id: p(),
            created_unix_ms: 1_750_000_000_000,
            locations: vec![Location::new("chunks-eu", "p1/chunks").unwrap(), Location::new("cold", "").unwrap()],
            groups: vec![
                ChunkGroup::new(0, &[ChunkId([1; 32]), ChunkId([2; 32])]),
                ChunkGroup::new(1, &[ChunkId([3; 32])]),
                ChunkGroup::new(0, &[]),
            ],
        }
    }
    fn parse_vec(bytes: Vec<u8>) -> Result<UnifiedManifest, ManifestError> {
        parse(Bytes::from(bytes), "snap-1.snap", &s(), &p())
    }
    fn kind_of(m: &pb::SnapshotManifest) -> ManifestErrorKind {
        parse_vec(m.encode_to_vec()).unwrap_err().kind
    }
    fn key(field: u64, wire_type: u8) -> Vec<u8> {
        varint((field << 3) | u64::from(wire_type))
    }
    fn varint(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(v, &mut out);
        out
    }
    fn len_field(field: u64, body: &[u8]) -> Vec<u8> {
        let mut out = key(field, LEN);
        out.extend(varint(body.len() as u64));
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn valid_round_trip_and_zero_copy() {
        let m = sample();
        let bytes = Bytes::from(render(&m));
        let back = parse(bytes.clone(), "o", &s(), &p()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.groups[0].ids(), &[[1; 32], [2; 32]]);
        assert_eq!(back.groups[0].count(), 2);
        let range = bytes.as_ptr_range();
        assert!(range.contains(&back.groups[0].ids_bytes().as_ptr()), "ids were copied");
    }

    #[test]
    fn empty_manifest_is_valid() {
        let m = UnifiedManifest { locations: vec![], groups: vec![], created_unix_ms: -5, ..sample() };
        assert_eq!(parse_vec(render(&m)).unwrap(), m);
    }

    #[test]
    fn unknown_fields_are_refused_everywhere() {
        let base = render(&sample());
        let mut top = base.clone();
        top.extend(key(7, VARINT));
        top.push(1);
        assert_eq!(
            parse_vec(top).unwrap_err().kind,
            K::UnknownField { message: "SnapshotManifest", field: 7, offset: base.len() }
        );
        let mut top = key(1000, LEN);
        top.push(0);
        top.extend(&base);
        assert!(matches!(parse_vec(top).unwrap_err().kind, K::UnknownField { field: 1000, offset: 0, .. }));

        let mut loc = pb::ChunkLocation { bucket: "chunks-eu".into(), prefix: "p1".into() }.encode_to_vec();
        loc.extend(len_field(3, b"x"));
        let mut bytes = base.clone();
        bytes.extend(len_field(5, &loc));
        let k = parse_vec(bytes).unwrap_err().kind;
        assert!(matches!(k, K::UnknownField { message: "ChunkLocation", field: 3, .. }), "{k:?}");

        let mut group = pb::ChunkGroup { location: 0, count: 0, ids: Bytes::new() }.encode_to_vec();
        group.extend(key(4, I32));
        group.extend([0; 4]);
        let mut bytes = base.clone();
        bytes.extend(len_field(6, &group));
        let k = parse_vec(bytes).unwrap_err().kind;
        assert!(matches!(k, K::UnknownField { message: "ChunkGroup", field: 4, .. }), "{k:?}");
    }

    #[test]
    fn wrong_wire_types_are_refused() {
        let mut bytes = len_field(1, b"\x01");
        bytes.extend(render(&sample()));
        let k = parse_vec(bytes).unwrap_err().kind;
        assert_eq!(
            k,
            K::WrongWireType { message: "SnapshotManifest", field: 1, wire_type: LEN, expected: VARINT, offset: 0 }
        );
        let mut bytes = key(2, I64);
        bytes.extend([0; 8]);
        assert!(matches!(parse_vec(bytes).unwrap_err().kind, K::WrongWireType { field: 2, .. }));
        let mut group = key(2, 3); // a start-group where count should be
        group.extend(key(2, 4));
        let k = parse_vec(len_field(6, &group)).unwrap_err().kind;
        assert!(matches!(k, K::WrongWireType { message: "ChunkGroup", field: 2, wire_type: 3, .. }), "{k:?}");
    }

    #[test]
    fn decode_errors() {
        let whole = render(&sample());
        for cut in [1, 3, whole.len() - 1] {
            let k = parse_vec(whole[..cut].to_vec()).unwrap_err().kind;
            assert!(matches!(k, K::Decode(_)), "cut at {cut}: {k:?}");
        }
        // Field number 0, an 11-byte varint, an overlong 10th byte, a huge length.
        for bad in [vec![0x00, 0x01], vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]] {
            assert!(matches!(parse_vec(bad).unwrap_err().kind, K::Decode(_)));
        }
        let mut bad = vec![0x08];
        bad.extend([0xff; 9]);
        bad.push(0x02);
        assert!(matches!(parse_vec(bad).unwrap_err().kind, K::Decode(_)));
        let mut bad = key(6, LEN);
        bad.extend(varint(u64::MAX));
        assert!(matches!(parse_vec(bad).unwrap_err().kind, K::Decode(_)));
        // Invalid UTF-8 in a string is caught by prost.
        let mut bad = key(1, VARINT);
        bad.push(1);
        bad.extend(len_field(2, b"snap-\xff"));
        let k = parse_vec(bad).unwrap_err().kind;
        assert!(matches!(k, K::Decode(_)), "{k:?}");
    }

    #[test]
    fn content_errors() {
        let good = to_pb(&sample());
        assert_eq!(kind_of(&pb::SnapshotManifest { format_version: 0, ..good.clone() }), K::FormatVersion { found: 0 });
        assert_eq!(kind_of(&pb::SnapshotManifest { format_version: 2, ..good.clone() }), K::FormatVersion { found: 2 });
        assert_eq!(
            kind_of(&pb::SnapshotManifest { snapshot_id: "snap-2".into(), ..good.clone() }),
            K::SnapshotMismatch { expected: "snap-1".into(), found: "snap-2".into() }
        );
        assert_eq!(
            kind_of(&pb::SnapshotManifest { partition_id: "p2".into(), ..good.clone() }),
            K::PartitionMismatch { expected: "p1".into(), found: "p2".into() }
        );

        let mut m = good.clone();
        m.groups[1].location = 2;
        assert_eq!(kind_of(&m), K::LocationOutOfRange { group: 1, location: 2, locations: 2 });
        m.groups[1].location = u32::MAX;
        assert_eq!(kind_of(&m), K::LocationOutOfRange { group: 1, location: u32::MAX, locations: 2 });

        for count in [1, 3, u64::MAX, u64::MAX / 32, (u64::MAX / 32) + 1, 1 << 59] {
            let mut m = good.clone();
            m.groups[0].count = count;
            assert_eq!(kind_of(&m), K::IdsLength { group: 0, len: 64, count });
        }
        let mut m = good.clone();
        m.groups[0].ids = Bytes::from_static(&[0; 63]);
        assert_eq!(kind_of(&m), K::IdsLength { group: 0, len: 63, count: 2 });

        let mut m = good.clone();
        m.locations[1].bucket = "Bad_Bucket".into();
        assert_eq!(
            kind_of(&m),
            K::BadLocation { index: 1, error: Box::new(LocationError::BadBucket("Bad_Bucket".into())) }
        );
        let mut m = good.clone();
        m.locations[0].prefix = "p1/chunks/".into();
        let k = kind_of(&m);
        assert!(
            matches!(&k, K::BadLocation { index: 0, error } if matches!(**error, LocationError::EdgeSlash(_))),
            "{k:?}"
        );
        let mut m = good;
        m.locations[0].prefix = "p1/../x".into();
        let k = kind_of(&m);
        assert!(
            matches!(&k, K::BadLocation { index: 0, error } if matches!(**error, LocationError::BadSegment(_))),
            "{k:?}"
        );
    }

    #[test]
    fn group_from_bytes() {
        assert!(ChunkGroup::from_bytes(0, Bytes::from_static(&[0; 31])).is_none());
        let g = ChunkGroup::from_bytes(3, Bytes::from_static(&[7; 64])).unwrap();
        assert_eq!((g.location, g.count(), g.ids()), (3, 2, &[[7; 32], [7; 32]][..]));
        assert_eq!(format!("{g:?}"), "ChunkGroup { location: 3, count: 2 }");
    }

    #[test]
    fn render_is_what_prost_renders() {
        let m = sample();
        let decoded = pb::SnapshotManifest::decode(render(&m).as_slice()).unwrap();
        assert_eq!(decoded, to_pb(&m));
    }

    fn manifest_strategy() -> impl Strategy<Value = UnifiedManifest> {
        let location = ("[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", "([a-z0-9_-]{1,8}(/[A-Za-z0-9._-]{0,6}[A-Za-z0-9])?)?")
            .prop_filter_map("valid location", |(b, pfx)| Location::new(&b, &pfx).ok());
        (
            "[A-Za-z0-9][A-Za-z0-9._-]{0,30}",
            "[A-Za-z0-9][A-Za-z0-9._-]{0,30}",
            any::<i64>(),
            proptest::collection::vec(location, 1..4),
            proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<[u8; 32]>(), 0..6)), 0..5),
        )
            .prop_map(|(s, p, created_unix_ms, locations, groups)| {
                let n = locations.len() as u32;
                UnifiedManifest {
                    snapshot_id: SnapshotId::parse(&s).unwrap(),
                    partition_id: PartitionId::parse(&p).unwrap(),
                    created_unix_ms,
                    groups: groups
                        .into_iter()
                        .map(|(l, ids)| ChunkGroup::new(l % n, &ids.into_iter().map(ChunkId).collect::<Vec<_>>()))
                        .collect(),
                    locations,
                }
            })
    }

    proptest! {
        #[test]
        fn round_trip(m in manifest_strategy()) {
            let back = parse(Bytes::from(render(&m)), "o", &m.snapshot_id, &m.partition_id).unwrap();
            prop_assert_eq!(back, m);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_vec(bytes);
        }

        #[test]
        fn mutated_files_never_panic(
            m in manifest_strategy(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let mut bytes = render(&m);
            mutate(&mut bytes, &edits);
            if let Ok(back) = parse(Bytes::from(bytes), "o", &m.snapshot_id, &m.partition_id) {
                // Whatever was accepted is well-formed and renders back to itself.
                let again = parse(Bytes::from(render(&back)), "o", &m.snapshot_id, &m.partition_id).unwrap();
                prop_assert_eq!(again, back);
            }
        }

        /// A field outside the schema, at the top level or inside any location or group,
        /// whatever its number, wire type and place among the known fields, is refused by the
        /// wire check, although prost alone would skip it and accept the file.
        #[test]
        fn an_unknown_field_anywhere_is_refused(
            m in manifest_strategy(),
            level in 0u8..3,
            pick in any::<usize>(),
            before in any::<bool>(),
            field in 1u64..(1 << 29),
            wire_type in prop::sample::select(vec![VARINT, I64, LEN, I32]),
        ) {
            let message = to_pb(&m);
            let (schema, known): (&str, &[u64]) = match level {
                0 => ("SnapshotManifest", &[1, 2, 3, 4, 5, 6]),
                1 => ("ChunkLocation", &[1, 2]),
                _ if m.groups.is_empty() => ("SnapshotManifest", &[1, 2, 3, 4, 5, 6]),
                _ => ("ChunkGroup", &[1, 2, 3]),
            };
            prop_assume!(!known.contains(&field));
            let mut unknown = key(field, wire_type);
            unknown.extend(match wire_type {
                VARINT => vec![0x7f],
                I64 => vec![0; 8],
                I32 => vec![0; 4],
                _ => vec![1, b'x'],
            });
            let with_unknown = |body: Vec<u8>| if before { [unknown.clone(), body].concat() } else { [body, unknown.clone()].concat() };
            let bytes = match schema {
                "ChunkLocation" => {
                    let mut out = pb::SnapshotManifest { locations: vec![], ..message.clone() }.encode_to_vec();
                    let at = pick % message.locations.len();
                    for (i, location) in message.locations.iter().enumerate() {
                        let body = location.encode_to_vec();
                        out.extend(len_field(5, &if i == at { with_unknown(body) } else { body }));
                    }
                    out
                }
                "ChunkGroup" => {
                    let mut out = pb::SnapshotManifest { groups: vec![], ..message.clone() }.encode_to_vec();
                    let at = pick % message.groups.len();
                    for (i, group) in message.groups.iter().enumerate() {
                        let body = group.encode_to_vec();
                        out.extend(len_field(6, &if i == at { with_unknown(body) } else { body }));
                    }
                    out
                }
                _ => with_unknown(message.encode_to_vec()),
            };
            prop_assert!(pb::SnapshotManifest::decode(bytes.as_slice()).is_ok(), "prost alone accepts it");
            let k = parse(Bytes::from(bytes), "o", &m.snapshot_id, &m.partition_id).unwrap_err().kind;
            prop_assert!(
                matches!(k, K::UnknownField { message: found, field: f, .. } if found == schema && f == field),
                "{:?}", k
            );
        }
    }
}
