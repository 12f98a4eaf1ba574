//! The plan: what a run decided to delete, spooled to disk as it is decided, and the plan
//! file of spec sections 6 and 8 (JSON Lines: a header, one record per planned delete, a
//! footer without which the plan is incomplete; zstd-compressed when its name ends in `.zst`).
//!
//! The decide stage appends each listed part's planned chunks to a [`PlanSpool`] as one *run*
//! (49 bytes a record, plus the listed version's bytes where the store gave one: 16 for a GCS
//! generation, 32 for an S3 version id; in an anonymous file under the work directory), so memory holds only
//! the run index, never the records. [`Plan`] orders the runs by location, then fan-out
//! directory, then arrival: the plan's order, with no global sort. Within a run, records are
//! sorted by id (a directory of more than one part is a sequence of sorted runs).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::ChunkId;
use crate::listing::{ListedChunk, LocationCounts};
use crate::locations::Location;
use crate::store::Version;

mod guard;
mod review;
pub(crate) use guard::{Guard, GuardTripped};
pub(crate) use review::{Binding, PlanRefused};

/// The version of the plan file's shape, its header's `version` (`schemas/plan.v<N>.schema.json`).
pub const PLAN_VERSION: u32 = 3;
/// The plan versions `--apply-plan` reads: 2 has no `version` in its records (spec 10.1).
const READABLE_PLAN_VERSIONS: [u32; 2] = [2, PLAN_VERSION];
/// Bytes of one spooled record before its version: id, size, last-modified, version length.
const RECORD_HEAD: usize = 49;
/// The longest spooled record.
const RECORD_MAX: usize = RECORD_HEAD + crate::store::VERSION_CAPACITY;
/// Buffer of the spool's writer and of the plan file's writer.
const WRITE_BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("plan spool under {dir}: {source}")]
    Spool { dir: PathBuf, source: io::Error },
}

/// What the decide stage counted for one location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocationTally {
    pub listing: LocationCounts,
    pub young_kept: u64,
    pub referenced_kept: u64,
    pub planned: u64,
    pub planned_bytes: u64,
    /// Planned chunks whose listing gave the version their delete is conditioned on: no
    /// re-read before their delete (spec 10.1).
    pub planned_versioned: u64,
    /// Chunks last modified before the cutoff: the guard's denominator.
    pub old: u64,
}

impl LocationTally {
    pub fn add(&mut self, other: &LocationTally) {
        self.listing.add(&other.listing);
        self.young_kept += other.young_kept;
        self.referenced_kept += other.referenced_kept;
        self.planned += other.planned;
        self.planned_bytes += other.planned_bytes;
        self.planned_versioned += other.planned_versioned;
        self.old += other.old;
    }
}

/// One run of the spool: consecutive records of one location and fan-out directory.
#[derive(Debug, Clone, Copy)]
struct Run {
    location: u32,
    fanout: u8,
    seq: u64,
    offset: u64,
    count: u32,
    /// Bytes of its records on disk.
    len: u32,
}

/// Where the decide stage writes planned chunks as it decides them.
pub struct PlanSpool {
    dir: PathBuf,
    out: BufWriter<File>,
    runs: Vec<Run>,
    offset: u64,
}

impl PlanSpool {
    /// An anonymous file under `dir`: nothing is left behind, whatever the exit.
    pub fn create(dir: &Path) -> Result<Self, PlanError> {
        let file = tempfile::tempfile_in(dir).map_err(|source| PlanError::Spool { dir: dir.to_owned(), source })?;
        Ok(Self { dir: dir.to_owned(), out: BufWriter::with_capacity(WRITE_BUFFER, file), runs: Vec::new(), offset: 0 })
    }

    /// Appends the planned chunks of one listed part, sorted by id, one run per first byte.
    pub fn append(&mut self, location: u32, planned: &mut [ListedChunk]) -> Result<(), PlanError> {
        if planned.is_empty() {
            return Ok(());
        }
        planned.sort_unstable_by_key(|c| c.id);
        for run in planned.chunk_by(|a, b| a.id[0] == b.id[0]) {
            self.append_run(location, run).map_err(|source| PlanError::Spool { dir: self.dir.clone(), source })?;
        }
        Ok(())
    }

    fn append_run(&mut self, location: u32, run: &[ListedChunk]) -> io::Result<()> {
        let mut record = [0u8; RECORD_MAX];
        let mut len = 0usize;
        for chunk in run {
            let n = encode(chunk, &mut record);
            self.out.write_all(&record[..n])?;
            len += n;
        }
        let seq = self.runs.len() as u64;
        let (count, len32) = (run.len() as u32, len as u32);
        self.runs.push(Run { location, fanout: run[0].id[0], seq, offset: self.offset, count, len: len32 });
        self.offset += len as u64;
        Ok(())
    }

    /// Flushes the spool and orders its runs: location, fan-out directory, arrival.
    pub fn finish(self) -> Result<SpooledPlan, PlanError> {
        let dir = self.dir;
        let file = self.out.into_inner().map_err(|e| PlanError::Spool { dir: dir.clone(), source: e.into_error() })?;
        let mut runs = self.runs;
        runs.sort_unstable_by_key(|r| (r.location, r.fanout, r.seq));
        Ok(SpooledPlan { dir, file, runs, bytes_on_disk: self.offset })
    }
}

/// Writes `chunk`'s record into `out`; returns its length.
fn encode(chunk: &ListedChunk, out: &mut [u8; RECORD_MAX]) -> usize {
    let version = chunk.version.as_bytes();
    out[..32].copy_from_slice(&chunk.id);
    out[32..40].copy_from_slice(&chunk.size.to_le_bytes());
    out[40..48].copy_from_slice(&chunk.last_modified_ms.to_le_bytes());
    out[48] = version.len() as u8;
    out[RECORD_HEAD..RECORD_HEAD + version.len()].copy_from_slice(version);
    RECORD_HEAD + version.len()
}

/// The record at the start of `bytes` and its length; `None` when `bytes` do not hold one
/// (a spool this process wrote always does).
fn decode(bytes: &[u8]) -> Option<(ListedChunk, usize)> {
    let head = bytes.get(..RECORD_HEAD)?;
    let len = RECORD_HEAD + usize::from(head[48]);
    let word = |at: usize| head[at..at + 8].try_into().ok();
    let chunk = ListedChunk {
        id: head[..32].try_into().ok()?,
        size: u64::from_le_bytes(word(32)?),
        last_modified_ms: i64::from_le_bytes(word(40)?),
        version: Version::from_bytes(bytes.get(RECORD_HEAD..len)?)?,
    };
    Some((chunk, len))
}

/// The planned records on disk, in plan order.
pub struct SpooledPlan {
    dir: PathBuf,
    file: File,
    runs: Vec<Run>,
    bytes_on_disk: u64,
}

impl SpooledPlan {
    /// Bytes the spool takes under the work directory.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.bytes_on_disk
    }

    /// Every run in plan order, read one at a time: (location index, its records).
    pub fn runs(&self) -> impl Iterator<Item = Result<(u32, Vec<ListedChunk>), PlanError>> + '_ {
        self.runs.iter().map(|run| self.read(run).map(|records| (run.location, records)))
    }

    /// The runs of one fan-out directory (ids starting with `fanout`), every location.
    pub(crate) fn runs_of_fanout(
        &self,
        fanout: u8,
    ) -> impl Iterator<Item = Result<(u32, Vec<ListedChunk>), PlanError>> + '_ {
        self.runs
            .iter()
            .filter(move |r| r.fanout == fanout)
            .map(|run| self.read(run).map(|records| (run.location, records)))
    }

    fn read(&self, run: &Run) -> Result<Vec<ListedChunk>, PlanError> {
        let fail = |source| PlanError::Spool { dir: self.dir.clone(), source };
        let mut bytes = vec![0u8; run.len as usize];
        self.file.read_exact_at(&mut bytes, run.offset).map_err(fail)?;
        let mut records = Vec::with_capacity(run.count as usize);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (chunk, len) = decode(rest).ok_or_else(|| fail(io::Error::other("a spool record cut short")))?;
            records.push(chunk);
            rest = &rest[len..];
        }
        if records.len() != run.count as usize {
            return Err(fail(io::Error::other("a spool run of the wrong length")));
        }
        Ok(records)
    }
}

/// What a run decided: the counters, and the records when they were spooled (they are only
/// kept when something will read them: `--execute`, `--plan-out` or `--verify`).
pub struct Plan {
    pub per_location: Vec<LocationTally>,
    pub spool: Option<SpooledPlan>,
}

impl Plan {
    pub fn totals(&self) -> LocationTally {
        let mut total = LocationTally::default();
        self.per_location.iter().for_each(|t| total.add(t));
        total
    }
}

/// What the re-read of a chunk's last-modified right before its delete must still show for
/// the delete to go ahead; anything else keeps the chunk (`refreshed_kept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reread {
    /// A run's own plan (spec 4.6): still older than the cutoff.
    OlderThan { cutoff_ms: i64 },
    /// A reviewed plan (spec 8.3): exactly the last-modified the plan recorded.
    Unchanged,
}

impl Reread {
    pub(crate) fn still_doomed(self, planned: &ListedChunk, now_last_modified_ms: i64) -> bool {
        match self {
            Reread::OlderThan { cutoff_ms } => now_last_modified_ms < cutoff_ms,
            Reread::Unchanged => same_instant(planned.last_modified_ms, now_last_modified_ms),
        }
    }
}

/// Whether two last-modified times are the same at the precision both carry: a store whose
/// HEAD says whole seconds (GCS's XML API, S3) while its listing said milliseconds is
/// compared to the second (spec 10.1); two times in milliseconds must be equal.
fn same_instant(listed_ms: i64, reread_ms: i64) -> bool {
    let whole_second = |ms: i64| ms.rem_euclid(1000) == 0;
    if whole_second(listed_ms) || whole_second(reread_ms) {
        listed_ms.div_euclid(1000) == reread_ms.div_euclid(1000)
    } else {
        listed_ms == reread_ms
    }
}

/// What planning gives the rest of the run, made from this run's own listing or from a
/// reviewed plan (`--apply-plan`): the deletes, their guard verdict and what each chunk's
/// re-read must still show. One execute path serves both.
pub struct Planned {
    pub locations: Vec<Location>,
    /// The decide stage's counts per location (none for a reviewed plan).
    pub per_location: Vec<LocationTally>,
    /// In total; a reviewed plan knows its planned deletes, bytes and old chunks only.
    pub totals: LocationTally,
    /// The records, when something reads them (`--execute`, `--plan-out`, `--verify`).
    pub spool: Option<SpooledPlan>,
    pub guard: Guard,
    pub reread: Reread,
}

impl Planned {
    /// This run's plan, as the decide stage left it.
    pub(crate) fn decided(plan: Plan, locations: Vec<Location>, max_delete_fraction: f64, cutoff_ms: i64) -> Self {
        let totals = plan.totals();
        Planned {
            guard: Guard::judge(max_delete_fraction, totals.old, totals.planned),
            locations,
            per_location: plan.per_location,
            totals,
            spool: plan.spool,
            reread: Reread::OlderThan { cutoff_ms },
        }
    }

    /// A reviewed plan, judged by its own footer; each delete needs the plan's last-modified.
    pub fn reviewed(plan: ReviewedPlan, max_delete_fraction: f64) -> Self {
        let footer = &plan.footer;
        let totals = LocationTally {
            planned: footer.count,
            planned_bytes: footer.bytes,
            old: footer.old_chunks,
            ..LocationTally::default()
        };
        Planned {
            guard: Guard::judge(max_delete_fraction, footer.old_chunks, footer.count),
            locations: plan.locations,
            per_location: Vec::new(),
            totals,
            spool: Some(plan.spool),
            reread: Reread::Unchanged,
        }
    }

    /// The decide stage's totals, and the guard when it tripped, in the run's log.
    pub fn log(&self) {
        let totals = &self.totals;
        tracing::info!(
            chunks = totals.listing.chunks,
            planned = totals.planned,
            referenced_kept = totals.referenced_kept,
            young_kept = totals.young_kept,
            "decided"
        );
        if self.guard.tripped {
            let guard = &self.guard;
            tracing::warn!(fraction = guard.fraction, max = guard.max_delete_fraction, "delete-fraction guard tripped");
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(first: u8, n: u8, size: u64) -> ListedChunk {
        let mut id = [n; 32];
        id[0] = first;
        // The 0xab chunks as a GCS listing gives them, with their generation (spec 10.1).
        let version = if first == 0xab { Version::or_none(Some(GENERATION)) } else { Version::NONE };
        ListedChunk { id, size, last_modified_ms: 1000 * i64::from(n), version }
    }

    const GENERATION: &str = "1767323045678123";

    fn header(locations: &[Location]) -> PlanHeader {
        PlanHeader {
            kind: "header".into(),
            version: PLAN_VERSION,
            partition: "p1".into(),
            store: "file:///s".into(),
            mode: "dry-run".into(),
            cutoff: "2026-01-01T00:00:00.000Z".into(),
            created_at: "2026-01-03T00:00:00.000Z".into(),
            taken_at: "2026-01-03T00:00:00.000Z".into(),
            live_snapshots: 2,
            live_set_sha256: "00".repeat(32),
            deleting_set_sha256: None,
            max_delete_fraction: 0.5,
            bloom_fpr: 0.001,
            bloom_seed: 9,
            locations: locations.iter().map(Location::to_string).collect(),
        }
    }

    fn read_lines(path: &Path) -> Vec<serde_json::Value> {
        let bytes = std::fs::read(path).unwrap();
        let text = if is_zstd(path) { zstd::decode_all(bytes.as_slice()).unwrap() } else { bytes };
        String::from_utf8(text).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Parts arrive in any order across locations and directories; the plan comes out by
    /// location, then directory, then arrival, each run sorted by id.
    #[test]
    fn plan_order_is_location_then_directory_then_arrival() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = PlanSpool::create(dir.path()).unwrap();
        spool.append(1, &mut [chunk(0x10, 3, 1)]).unwrap();
        spool.append(0, &mut [chunk(0xab, 9, 1), chunk(0xab, 2, 1)]).unwrap();
        spool.append(0, &mut [chunk(0x01, 7, 1)]).unwrap();
        spool.append(0, &mut [chunk(0xab, 1, 1)]).unwrap();
        // A part whose planned chunks span two first bytes is split into two runs.
        spool.append(1, &mut [chunk(0x20, 5, 1), chunk(0x05, 6, 1)]).unwrap();
        let plan = spool.finish().unwrap();
        let order: Vec<(u8, u8)> = plan.runs().flat_map(|r| r.unwrap().1).map(|c| (c.id[0], c.id[1])).collect();
        assert_eq!(order, [(0x01, 7), (0xab, 2), (0xab, 9), (0xab, 1), (0x05, 6), (0x10, 3), (0x20, 5)]);
        let locations_in_order: Vec<u32> = plan.runs().map(|r| r.unwrap().0).collect();
        assert_eq!(locations_in_order, [0, 0, 0, 1, 1, 1]);
        assert_eq!(plan.runs_of_fanout(0xab).count(), 2);
    }

    #[test]
    fn plan_file_has_header_records_and_footer_plain_and_zstd() {
        let dir = tempfile::tempdir().unwrap();
        let locations = vec![Location::new("snapshots", "partitions/p1/chunks").unwrap()];
        let mut spool = PlanSpool::create(dir.path()).unwrap();
        spool.append(0, &mut [chunk(0xab, 0xab, 10), chunk(0x01, 1, 5)]).unwrap();
        let spool = spool.finish().unwrap();
        for name in ["plan.jsonl", "plan.jsonl.zst"] {
            let path = dir.path().join(name);
            assert_eq!(write_plan(&path, &header(&locations), &locations, &spool, 7).unwrap(), (2, 15));
            let raw = std::fs::read(&path).unwrap();
            assert_eq!(raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), name.ends_with(".zst"), "zstd magic");
            let lines = read_lines(&path);
            assert_eq!(lines.len(), 4);
            assert_eq!(lines[0]["type"], "header");
            assert_eq!(lines[0]["bloom_seed"], 9);
            assert_eq!(lines[0]["store"], "file:///s");
            assert_eq!(lines[1]["key"], format!("partitions/p1/chunks/01/01{}", "01".repeat(31)));
            assert_eq!(lines[1]["last_modified"], "1970-01-01T00:00:01.000Z");
            assert_eq!(lines[2]["key"], format!("partitions/p1/chunks/ab/{}", "ab".repeat(32)));
            assert_eq!(lines[1].get("version"), None, "no version listed, none written");
            assert_eq!(lines[2]["version"], GENERATION);
            assert_eq!(lines[3], serde_json::json!({"type": "footer", "count": 2, "bytes": 15, "old_chunks": 7}));

            let read = read_plan(&path, dir.path()).unwrap();
            assert_eq!(read.header, header(&locations));
            assert_eq!((read.footer.count, read.footer.bytes, read.footer.old_chunks), (2, 15, 7));
            let records: Vec<ListedChunk> = read.spool.runs().flat_map(|r| r.unwrap().1).collect();
            let written: Vec<ListedChunk> = spool.runs().flat_map(|r| r.unwrap().1).collect();
            assert_eq!(records, written, "{name}: the records read back are the ones written");
        }
    }

    #[test]
    fn a_plan_without_its_footer_or_with_a_wrong_count_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let locations = vec![Location::new("snapshots", "partitions/p1/chunks").unwrap()];
        let mut spool = PlanSpool::create(dir.path()).unwrap();
        spool.append(0, &mut [chunk(0xab, 0xab, 10), chunk(0x01, 1, 5)]).unwrap();
        let spool = spool.finish().unwrap();
        let path = dir.path().join("plan.jsonl");
        write_plan(&path, &header(&locations), &locations, &spool, 7).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            ("no footer", lines[..3].join("\n")),
            ("count", text.replace("\"count\":2", "\"count\":3")),
            ("bytes", text.replace("\"bytes\":15", "\"bytes\":16")),
            ("foreign key", text.replace("partitions/p1/chunks/01/", "partitions/p2/chunks/01/")),
            ("after footer", format!("{text}{}\n", lines[1])),
            ("version", text.replace(&format!("\"version\":{PLAN_VERSION}"), "\"version\":1")),
            ("empty record version", text.replacen("\"last_modified\"", "\"version\":\"\",\"last_modified\"", 1)),
        ];
        for (what, bad) in cases {
            assert_ne!(bad, text, "{what}: the case changes the plan");
            std::fs::write(&path, bad).unwrap();
            assert!(read_plan(&path, dir.path()).is_err(), "{what}: accepted");
        }
        // A plan of version 2 (no record carries a version) is still read (spec 10.1).
        let v2 = text.replace(&format!("\"version\":{PLAN_VERSION}"), "\"version\":2");
        std::fs::write(&path, v2).unwrap();
        let read = read_plan(&path, dir.path()).expect("a version 2 plan");
        assert_eq!(read.spool.runs().flat_map(|r| r.unwrap().1).count(), 2);
    }
}
