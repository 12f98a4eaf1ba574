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

use std::io;
use std::path::PathBuf;

use crate::exit::Exit;
use crate::listing::{ListedChunk, LocationCounts};
use crate::locations::Location;

mod file;
mod guard;
mod review;
mod spool;
pub(crate) use file::{DeleteRecord, ms_to_rfc3339, read_header, rfc3339};
pub use file::{Footer, PLAN_VERSION, PlanHeader, PlanReadError, ReviewedPlan, read_plan, write_plan};
pub(crate) use guard::{Guard, GuardTripped};
pub(crate) use review::{Binding, PlanRefused};
pub use spool::{PlanSpool, SpooledPlan};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("plan spool under {dir}: {source}")]
    Spool { dir: PathBuf, source: io::Error },
}

impl PlanError {
    /// `--plan-out` and the work directory are the operator's to fix, as a flag is.
    pub fn exit(&self) -> Exit {
        match self {
            PlanError::Write { .. } | PlanError::Spool { .. } => Exit::Usage,
        }
    }
}

/// How the plan stage fails: `--plan-out` not written, or a reviewed plan (`--apply-plan`)
/// refused (spec 8.3). Both are the flags' fault: nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum PlanStageError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Refused(#[from] PlanRefused),
}

impl PlanStageError {
    pub fn exit(&self) -> Exit {
        match self {
            PlanStageError::Plan(e) => e.exit(),
            PlanStageError::Refused(_) => Exit::Usage,
        }
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::file::is_zstd;
    use super::*;
    use crate::store::Version;

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
