//! The plan file (spec 6, 8): JSON Lines, a header, one record per planned delete, a footer
//! without which the plan is incomplete; zstd-compressed when its name ends in `.zst`.
//! Written from the spool; read back, checked, for `--apply-plan`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spool::WRITE_BUFFER;
use super::{PlanError, PlanSpool, SpooledPlan};
use crate::ids::ChunkId;
use crate::listing::ListedChunk;
use crate::locations::Location;
use crate::store::Version;

/// The version of the plan file's shape, its header's `version` (`schemas/plan.v<N>.schema.json`).
pub const PLAN_VERSION: u32 = 3;
/// The plan versions `--apply-plan` reads: 2 has no `version` in its records (spec 10.1).
const READABLE_PLAN_VERSIONS: [u32; 2] = [2, PLAN_VERSION];

/// The plan's first line: what the plan was made from (spec 6, 8.2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct PlanHeader {
    #[serde(rename = "type")]
    #[schemars(extend("const" = "header"))]
    pub kind: String,
    /// The version of the plan file's shape; this schema's.
    #[schemars(extend("const" = PLAN_VERSION))]
    pub version: u32,
    pub partition: String,
    /// The `--store` URL.
    pub store: String,
    /// The mode of the run that wrote the plan; `--apply-plan` refuses an `execute` one.
    #[schemars(with = "crate::mode::ModeName")]
    pub mode: String,
    /// RFC 3339.
    pub cutoff: String,
    /// RFC 3339.
    pub created_at: String,
    /// The live set's `taken_at`, RFC 3339.
    pub taken_at: String,
    pub live_snapshots: u64,
    /// Lowercase hex SHA-256 of the live ids sorted, each followed by `\n` (spec 8.2).
    pub live_set_sha256: String,
    /// Spec 9.2: the deleting set's digest (as `live_set_sha256`), `null` without it.
    #[serde(default)]
    pub deleting_set_sha256: Option<String>,
    pub max_delete_fraction: f64,
    pub bloom_fpr: f64,
    pub bloom_seed: u64,
    /// The candidate locations, `bucket/prefix`, in the order the records follow.
    pub locations: Vec<String>,
}

/// One planned delete: a line between the header and the footer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub(crate) struct DeleteRecord {
    #[serde(rename = "type")]
    #[schemars(extend("const" = "delete"))]
    pub kind: String,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// As listed (RFC 3339, milliseconds); `--apply-plan` deletes the chunk only if it still is.
    pub last_modified: String,
    /// The version the listing returned (GCS generation, Azure ETag, S3 version id; spec
    /// 10.1): `--apply-plan` deletes only that version. Absent where the listing gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The plan's last line: a plan without it is incomplete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct Footer {
    #[serde(rename = "type")]
    #[schemars(extend("const" = "footer"))]
    pub kind: String,
    /// Records in the plan.
    pub count: u64,
    /// Their sizes, summed.
    pub bytes: u64,
    /// Chunks older than the cutoff when the plan was made: the guard's denominator.
    pub old_chunks: u64,
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn ms_to_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map(rfc3339).unwrap_or_else(|| ms.to_string())
}

/// Whether a plan path asks for zstd compression.
pub(crate) fn is_zstd(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

/// Writes the plan file at `path` from the spool, in plan order; the footer is written
/// last, after every record, and the file is synced. Returns (records, bytes).
pub fn write_plan(
    path: &Path,
    header: &PlanHeader,
    locations: &[Location],
    spool: &SpooledPlan,
    old_chunks: u64,
) -> Result<(u64, u64), PlanError> {
    let fail = |source| PlanError::Write { path: path.to_owned(), source };
    let file = File::create(path).map_err(fail)?;
    let out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let file = if is_zstd(path) {
        let mut encoder = zstd::Encoder::new(out, 3).map_err(fail)?;
        let written = write_records(&mut encoder, path, header, locations, spool, old_chunks)?;
        let out = encoder.finish().map_err(fail)?;
        (out.into_inner().map_err(|e| fail(e.into_error()))?, written)
    } else {
        let mut out = out;
        let written = write_records(&mut out, path, header, locations, spool, old_chunks)?;
        (out.into_inner().map_err(|e| fail(e.into_error()))?, written)
    };
    let (file, written) = file;
    file.sync_all().map_err(fail)?;
    Ok(written)
}

fn write_records(
    out: &mut impl Write,
    path: &Path,
    header: &PlanHeader,
    locations: &[Location],
    spool: &SpooledPlan,
    old_chunks: u64,
) -> Result<(u64, u64), PlanError> {
    let path_of = |source| PlanError::Write { path: path.to_owned(), source };
    write_line(out, header).map_err(path_of)?;
    let (mut count, mut bytes) = (0u64, 0u64);
    for run in spool.runs() {
        let (location, records) = run?;
        let location = &locations[location as usize];
        for chunk in records {
            let record = DeleteRecord {
                kind: "delete".into(),
                bucket: location.bucket().to_owned(),
                key: location.chunk_key(&ChunkId(chunk.id)),
                size: chunk.size,
                last_modified: ms_to_rfc3339(chunk.last_modified_ms),
                version: chunk.version.as_str().map(str::to_owned),
            };
            write_line(out, &record).map_err(path_of)?;
            count += 1;
            bytes += chunk.size;
        }
    }
    write_line(out, &Footer { kind: "footer".into(), count, bytes, old_chunks }).map_err(path_of)?;
    out.flush().map_err(path_of)?;
    Ok((count, bytes))
}

/// A plan file read back for `--apply-plan`: its header and footer, its locations, and its
/// records spooled under the work directory (never held in memory).
pub struct ReviewedPlan {
    pub header: PlanHeader,
    pub footer: Footer,
    pub locations: Vec<Location>,
    pub spool: SpooledPlan,
}

/// Why a plan file cannot be applied as it is.
#[derive(Debug, thiserror::Error)]
#[error("plan {path}{}: {why}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct PlanReadError {
    pub path: PathBuf,
    pub line: Option<u64>,
    pub why: String,
}

fn open_plan(path: &Path) -> Result<Box<dyn io::BufRead>, PlanReadError> {
    let fail = |why: String| PlanReadError { path: path.to_owned(), line: None, why };
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let reader: Box<dyn io::Read> = if is_zstd(path) {
        Box::new(zstd::Decoder::new(file).map_err(|e| fail(format!("not zstd: {e}")))?)
    } else {
        Box::new(file)
    };
    Ok(Box::new(io::BufReader::with_capacity(WRITE_BUFFER, reader)))
}

fn parse_header(line: &str, path: &Path) -> Result<PlanHeader, PlanReadError> {
    let fail = |why: String| PlanReadError { path: path.to_owned(), line: Some(1), why };
    let header: PlanHeader = serde_json::from_str(line).map_err(|e| fail(format!("not a plan header: {e}")))?;
    if header.kind != "header" || !READABLE_PLAN_VERSIONS.contains(&header.version) {
        let why = format!(
            "header type {:?} version {} (this build reads versions 2 and {PLAN_VERSION})",
            header.kind, header.version
        );
        return Err(fail(why));
    }
    Ok(header)
}

/// The header of a plan file alone.
pub(crate) fn read_header(path: &Path) -> Result<PlanHeader, PlanReadError> {
    let mut first = String::new();
    io::BufRead::read_line(&mut *open_plan(path)?, &mut first).map_err(|e| PlanReadError {
        path: path.to_owned(),
        line: Some(1),
        why: e.to_string(),
    })?;
    parse_header(first.trim_end(), path)
}

/// Reads and checks a plan file (plain or zstd): a header of this version, records naming
/// chunks of the header's locations, and a footer whose count and bytes match the records.
pub fn read_plan(path: &Path, work_dir: &Path) -> Result<ReviewedPlan, PlanReadError> {
    let fail = |line: Option<u64>, why: String| PlanReadError { path: path.to_owned(), line, why };
    // (line number, line), numbered from 1 as an editor shows them.
    let mut lines = io::BufRead::lines(open_plan(path)?).zip(1u64..).map(|(line, n)| {
        let line = line.map_err(|e| PlanReadError { path: path.to_owned(), line: Some(n), why: e.to_string() });
        (n, line)
    });
    let header = match lines.next() {
        Some((_, line)) => parse_header(&line?, path)?,
        None => return Err(fail(None, "empty file".into())),
    };
    let locations = header
        .locations
        .iter()
        .map(|spec| Location::parse_spec(spec).map_err(|e| fail(Some(1), format!("location {spec:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut spool = PlanSpool::create(work_dir).map_err(|e| fail(None, e.to_string()))?;
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut pending: (u32, Vec<ListedChunk>) = (0, Vec::new());
    let mut footer = None;
    let mut line_no = 1u64;
    for (n, line) in lines {
        line_no = n;
        let line = line?;
        if footer.is_some() {
            return Err(fail(Some(line_no), "a line after the footer".into()));
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| fail(Some(line_no), format!("not JSON: {e}")))?;
        if value["type"] == "footer" {
            footer = Some(serde_json::from_value::<Footer>(value).map_err(|e| fail(Some(line_no), e.to_string()))?);
            continue;
        }
        let record: DeleteRecord = serde_json::from_value(value).map_err(|e| fail(Some(line_no), e.to_string()))?;
        let (location, chunk) = parse_record(&record, &locations).map_err(|why| fail(Some(line_no), why))?;
        if location != pending.0 || pending.1.len() >= crate::listing::PART_CHUNKS {
            spool.append(pending.0, &mut pending.1).map_err(|e| fail(None, e.to_string()))?;
            pending = (location, Vec::new());
        }
        pending.1.push(chunk);
        count += 1;
        bytes += chunk.size;
    }
    spool.append(pending.0, &mut pending.1).map_err(|e| fail(None, e.to_string()))?;
    let Some(footer) = footer else {
        return Err(fail(None, "no footer: the plan is incomplete".into()));
    };
    if footer.count != count || footer.bytes != bytes {
        let why =
            format!("footer says {} records, {} bytes; the plan holds {count}, {bytes}", footer.count, footer.bytes);
        return Err(fail(Some(line_no), why));
    }
    let spool = spool.finish().map_err(|e| fail(None, e.to_string()))?;
    Ok(ReviewedPlan { header, footer, locations, spool })
}

/// A delete record's location (an index into the header's) and chunk.
fn parse_record(record: &DeleteRecord, locations: &[Location]) -> Result<(u32, ListedChunk), String> {
    if record.kind != "delete" {
        return Err(format!("record type {:?}", record.kind));
    }
    let found = locations.iter().enumerate().find_map(|(i, location)| {
        (location.bucket() == record.bucket).then(|| location.chunk_of_key(&record.key).map(|id| (i, id))).flatten()
    });
    let Some((location, id)) = found else {
        return Err(format!("{}/{} is no chunk of the plan's locations", record.bucket, record.key));
    };
    let last_modified = DateTime::parse_from_rfc3339(&record.last_modified)
        .map_err(|e| format!("{}/{}: last_modified {:?}: {e}", record.bucket, record.key, record.last_modified))?;
    let version = match record.version.as_deref() {
        None => Version::NONE,
        Some(text) => Version::new(text)
            .ok_or_else(|| format!("{}/{}: version {text:?} is empty or too long", record.bucket, record.key))?,
    };
    let chunk =
        ListedChunk { id: id.0, size: record.size, last_modified_ms: last_modified.timestamp_millis(), version };
    Ok((location as u32, chunk))
}

/// One JSON value, one line.
fn write_line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    out.write_all(b"\n")
}
