//! The plan file (spec section 6): JSON Lines, a header, one record per planned delete, and
//! a footer without which the plan is incomplete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::listing::ListedChunk;
use crate::locations::Location;

pub const PLAN_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
#[error("plan {path}: {source}")]
pub struct PlanError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

#[derive(Debug, Serialize)]
pub struct PlanHeader<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub version: u32,
    pub partition: &'a str,
    pub mode: &'static str,
    pub cutoff: String,
    pub created_at: String,
    pub taken_at: String,
    pub live_snapshots: u64,
    pub bloom_fpr: f64,
    pub bloom_seed: u64,
    pub locations: Vec<String>,
}

#[derive(Serialize)]
struct DeleteRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    bucket: &'a str,
    key: &'a str,
    size: u64,
    last_modified: String,
}

#[derive(Serialize)]
struct Footer {
    #[serde(rename = "type")]
    kind: &'static str,
    count: u64,
    bytes: u64,
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn ms_to_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map(rfc3339).unwrap_or_else(|| ms.to_string())
}

/// Writes the whole plan to `path`; the footer is written last, after every record.
pub fn write_plan<'a>(
    path: &Path,
    header: &PlanHeader<'_>,
    locations: &[Location],
    planned: impl Iterator<Item = &'a ListedChunk>,
) -> Result<(u64, u64), PlanError> {
    let fail = |source| PlanError { path: path.to_owned(), source };
    let file = File::create(path).map_err(fail)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let (count, bytes) = write_records(&mut out, header, locations, planned).map_err(fail)?;
    let file = out.into_inner().map_err(|e| fail(e.into_error()))?;
    file.sync_all().map_err(fail)?;
    Ok((count, bytes))
}

fn write_records<'a>(
    out: &mut impl Write,
    header: &PlanHeader<'_>,
    locations: &[Location],
    planned: impl Iterator<Item = &'a ListedChunk>,
) -> std::io::Result<(u64, u64)> {
    serde_json::to_writer(&mut *out, header)?;
    out.write_all(b"\n")?;
    let (mut count, mut bytes) = (0u64, 0u64);
    for chunk in planned {
        let location = &locations[chunk.location as usize];
        let key = location.chunk_key(&crate::ids::ChunkId(chunk.id));
        let record = DeleteRecord {
            kind: "delete",
            bucket: location.bucket(),
            key: &key,
            size: chunk.size,
            last_modified: ms_to_rfc3339(chunk.last_modified_ms),
        };
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")?;
        count += 1;
        bytes += chunk.size;
    }
    serde_json::to_writer(&mut *out, &Footer { kind: "footer", count, bytes })?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok((count, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_has_header_records_and_footer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.jsonl");
        let locations = vec![Location::new("snapshots", "partitions/p1/chunks").unwrap()];
        let header = PlanHeader {
            kind: "header",
            version: PLAN_VERSION,
            partition: "p1",
            mode: "dry-run",
            cutoff: "2026-01-01T00:00:00.000Z".into(),
            created_at: "2026-01-03T00:00:00.000Z".into(),
            taken_at: "2026-01-03T00:00:00.000Z".into(),
            live_snapshots: 2,
            bloom_fpr: 0.001,
            bloom_seed: 9,
            locations: vec![locations[0].to_string()],
        };
        let chunks = [
            ListedChunk { id: [0xab; 32], size: 10, last_modified_ms: 0, location: 0 },
            ListedChunk { id: [0x01; 32], size: 5, last_modified_ms: 1000, location: 0 },
        ];
        assert_eq!(write_plan(&path, &header, &locations, chunks.iter()).unwrap(), (2, 15));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["type"], "header");
        assert_eq!(lines[0]["bloom_seed"], 9);
        assert_eq!(lines[1]["key"], format!("partitions/p1/chunks/ab/{}", "ab".repeat(32)));
        assert_eq!(lines[2]["last_modified"], "1970-01-01T00:00:01.000Z");
        assert_eq!(lines[3], serde_json::json!({"type": "footer", "count": 2, "bytes": 15}));
    }
}
