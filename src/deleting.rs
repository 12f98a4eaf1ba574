//! Snapshots being deleted (spec 9.2): the `--deleting-snapshots` set, checked against the
//! live set, and the cross-check of the snapshots folder. Every snapshot with a manifest
//! object there is live, being deleted, or unknown; an unknown one with a manifest older than
//! the cutoff is the signature of a live set that lost an entry, and stops the run before any
//! delete.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::exit::Exit;
use crate::ids::SnapshotId;
use crate::live_set::{self, LiveSet, LiveSetError};
use crate::plan::ms_to_rfc3339;

mod accounting;
pub use accounting::AccountingError;
mod reclaim;
pub(crate) use accounting::{Accounting, DeletingSnapshot, Freed};
pub use accounting::{Named, account};

pub use reclaim::{Reclaim, ReclaimError, Reclaimed, reclaim, reclaimable};

/// How far apart the live set's and the deleting set's `taken_at` may be.
pub(crate) const TAKEN_AT_SPREAD: TimeDelta = TimeDelta::minutes(5);
/// Unknown snapshots the refusal names, at most.
pub(crate) const NAMED: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum DeletingError {
    #[error("{path}: cannot read the deleting set: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("deleting set {0}")]
    Invalid(#[from] LiveSetError),
    #[error(
        "{path}: taken_at {deleting} is more than 5 minutes from the live set's taken_at {live}: the two files are not from one read of the control plane"
    )]
    TakenAt { path: PathBuf, deleting: DateTime<Utc>, live: DateTime<Utc> },
    #[error("{path}: snapshot {snapshot} is in both the live set and the deleting set")]
    Overlap { path: PathBuf, snapshot: SnapshotId },
    #[error(
        "the live set may be incomplete: {count} snapshots in {folder} are neither live nor being deleted and have manifests older than the cutoff: {named}; nothing deleted"
    )]
    Unknown { count: usize, folder: String, named: String },
}

/// How the live-set stage fails: the live set, or the deleting set checked against it (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum LiveSetStageError {
    #[error(transparent)]
    Live(#[from] LiveSetError),
    #[error(transparent)]
    Deleting(#[from] DeletingError),
}

impl LiveSetStageError {
    pub fn exit(&self) -> Exit {
        match self {
            LiveSetStageError::Live(_) | LiveSetStageError::Deleting(_) => Exit::LiveSet,
        }
    }
}

/// The two sets the control plane gave: live, and (`--deleting-snapshots`) being deleted.
pub struct Sets {
    pub live: LiveSet,
    pub deleting: Option<LiveSet>,
}

impl Sets {
    /// `live` with the deleting set read from `deleting` (when given) and checked against it.
    pub fn read(live: LiveSet, deleting: Option<&Path>, now: DateTime<Utc>) -> Result<Self, DeletingError> {
        let deleting = deleting.map(|path| read(path, &live, now)).transpose()?;
        Ok(Self { live, deleting })
    }

    /// The census before the snapshots folder is read: the two sets' sizes.
    pub fn census(&self) -> SnapshotCensus {
        let counted = |set: &LiveSet| set.snapshots.len() as u64;
        SnapshotCensus {
            live: counted(&self.live),
            deleting: self.deleting.as_ref().map_or(0, counted),
            ..SnapshotCensus::default()
        }
    }
}

/// Reads the deleting set and checks it against the live set: the live set's format, its
/// `taken_at` within [`TAKEN_AT_SPREAD`] of the live set's, no snapshot in both.
pub fn read(path: &Path, live: &LiveSet, now: DateTime<Utc>) -> Result<LiveSet, DeletingError> {
    let text = std::fs::read(path).map_err(|source| DeletingError::Read { path: path.to_owned(), source })?;
    let deleting = live_set::parse(&text, &path.display().to_string(), now)?;
    if (deleting.taken_at - live.taken_at).abs() > TAKEN_AT_SPREAD {
        return Err(DeletingError::TakenAt { path: path.to_owned(), deleting: deleting.taken_at, live: live.taken_at });
    }
    let live_ids: HashSet<&SnapshotId> = live.snapshots.iter().collect();
    if let Some(both) = deleting.snapshots.iter().find(|s| live_ids.contains(s)) {
        return Err(DeletingError::Overlap { path: path.to_owned(), snapshot: both.clone() });
    }
    Ok(deleting)
}

/// One manifest object of the snapshots folder (`<snapshot>.manifest`, `.index`, `.snap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestObject {
    pub snapshot: SnapshotId,
    pub key: String,
    pub last_modified_ms: i64,
    /// As listed: bounds the ids a manifest can name (sizes the deleting ids' filter).
    pub size: Option<u64>,
}

/// The report's `snapshots`: what the snapshots folder and the two sets hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SnapshotCensus {
    /// Ids of the live set.
    pub live: u64,
    /// Ids of the deleting set.
    pub deleting: u64,
    /// Unknown snapshots whose manifest objects are all at or after the cutoff.
    pub being_written: u64,
    /// Without `--deleting-snapshots`: snapshots with manifest objects that are not live.
    pub unclassified: u64,
}

/// The cross-check: `folder` holds every manifest object of a snapshot that is not live.
/// Without a deleting set, they are only counted (`unclassified`).
pub(crate) fn cross_check(
    live: &LiveSet,
    deleting: Option<&LiveSet>,
    not_live: &[ManifestObject],
    cutoff_ms: i64,
    folder: &str,
) -> Result<SnapshotCensus, DeletingError> {
    let mut census = SnapshotCensus { live: live.snapshots.len() as u64, ..SnapshotCensus::default() };
    let mut by_snapshot: BTreeMap<&SnapshotId, Vec<&ManifestObject>> = BTreeMap::new();
    for object in not_live {
        by_snapshot.entry(&object.snapshot).or_default().push(object);
    }
    let Some(deleting) = deleting else {
        census.unclassified = by_snapshot.len() as u64;
        if census.unclassified > 0 {
            tracing::warn!(
                unclassified = census.unclassified,
                "snapshots with manifests that are not live: the cross-check is off without --deleting-snapshots"
            );
        }
        return Ok(census);
    };
    census.deleting = deleting.snapshots.len() as u64;
    let deleting: HashSet<&SnapshotId> = deleting.snapshots.iter().collect();
    let mut unknown_old = Vec::new();
    for (snapshot, objects) in by_snapshot.into_iter().filter(|(s, _)| !deleting.contains(s)) {
        if objects.iter().all(|o| o.last_modified_ms >= cutoff_ms) {
            census.being_written += 1;
        } else {
            unknown_old.push((snapshot, objects));
        }
    }
    if unknown_old.is_empty() {
        return Ok(census);
    }
    let named: Vec<String> = unknown_old
        .iter()
        .take(NAMED)
        .map(|(snapshot, objects)| {
            let objects: Vec<String> = objects
                .iter()
                .map(|o| {
                    let name = o.key.rsplit('/').next().unwrap_or(&o.key);
                    format!("{name} last modified {}", ms_to_rfc3339(o.last_modified_ms))
                })
                .collect();
            format!("{snapshot} ({})", objects.join(", "))
        })
        .collect();
    let more = unknown_old.len().saturating_sub(NAMED);
    let named = if more > 0 { format!("{} and {more} more", named.join("; ")) } else { named.join("; ") };
    Err(DeletingError::Unknown { count: unknown_old.len(), folder: folder.to_owned(), named })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUTOFF: i64 = 1_000_000;

    fn set(ids: &[&str], taken_at: DateTime<Utc>) -> LiveSet {
        LiveSet { snapshots: ids.iter().map(|id| SnapshotId::parse(id).unwrap()).collect(), taken_at }
    }

    fn object(snapshot: &str, extension: &str, last_modified_ms: i64) -> ManifestObject {
        ManifestObject {
            snapshot: SnapshotId::parse(snapshot).unwrap(),
            key: format!("partitions/p1/snapshots/{snapshot}.{extension}"),
            last_modified_ms,
            size: Some(0),
        }
    }

    #[test]
    fn an_unknown_snapshot_with_an_old_manifest_refuses_the_run() {
        let now = Utc::now();
        let (live, deleting) = (set(&["live-1"], now), set(&["gone-1"], now));
        let folder = [
            object("gone-1", "snap", CUTOFF - 1),
            object("lost-1", "manifest", CUTOFF + 5),
            object("lost-1", "index", CUTOFF - 5),
        ];
        let refused = cross_check(&live, Some(&deleting), &folder, CUTOFF, "snapshots/partitions/p1/snapshots/");
        let Err(DeletingError::Unknown { count, named, .. }) = refused else { panic!("{refused:?}") };
        assert_eq!(count, 1, "one old object is enough");
        assert!(named.starts_with("lost-1 (lost-1.manifest last modified"), "{named}");
        assert!(named.contains("lost-1.index last modified"), "{named}");
    }

    #[test]
    fn a_snapshot_being_written_and_the_deleting_ones_pass() {
        let now = Utc::now();
        let (live, deleting) = (set(&["live-1"], now), set(&["gone-1", "gone-2"], now));
        let folder =
            [object("gone-1", "snap", 0), object("new-1", "manifest", CUTOFF), object("new-1", "index", CUTOFF + 1)];
        let census = cross_check(&live, Some(&deleting), &folder, CUTOFF, "f/").unwrap();
        assert_eq!(census, SnapshotCensus { live: 1, deleting: 2, being_written: 1, unclassified: 0 });
    }

    #[test]
    fn without_the_set_every_other_snapshot_is_unclassified() {
        let live = set(&["live-1"], Utc::now());
        let folder = [object("old-1", "snap", 0), object("old-1", "manifest", 0), object("new-1", "snap", CUTOFF)];
        let census = cross_check(&live, None, &folder, CUTOFF, "f/").unwrap();
        assert_eq!(census, SnapshotCensus { live: 1, deleting: 0, being_written: 0, unclassified: 2 });
    }

    #[test]
    fn the_refusal_names_ten() {
        let live = set(&[], Utc::now());
        let deleting = set(&[], Utc::now());
        let folder: Vec<_> = (0..13).map(|i| object(&format!("lost-{i:02}"), "snap", 0)).collect();
        let Err(DeletingError::Unknown { count, named, .. }) =
            cross_check(&live, Some(&deleting), &folder, CUTOFF, "f/")
        else {
            panic!("not refused")
        };
        assert_eq!(count, 13);
        assert_eq!(named.matches(".snap last modified").count(), NAMED);
        assert!(named.ends_with("and 3 more"), "{named}");
    }

    #[test]
    fn the_deleting_file_is_checked_against_the_live_set() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let live = set(&["live-1", "live-2"], now);
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let good = write("good", format!("gone-1\n# end count=1 taken_at={}\n", at(now - TimeDelta::minutes(4))));
        assert_eq!(read(&good, &live, now).unwrap().snapshots.len(), 1);
        let far = write("far", format!("gone-1\n# end count=1 taken_at={}\n", at(now - TimeDelta::minutes(6))));
        assert!(matches!(read(&far, &live, now), Err(DeletingError::TakenAt { .. })));
        let both = write("both", format!("gone-1\nlive-2\n# end count=2 taken_at={}\n", at(now)));
        let overlap = read(&both, &live, now).unwrap_err();
        assert!(overlap.to_string().ends_with("snapshot live-2 is in both the live set and the deleting set"));
        let truncated = write("truncated", "gone-1\n".to_owned());
        let invalid = read(&truncated, &live, now).unwrap_err();
        assert!(matches!(invalid, DeletingError::Invalid(_)) && invalid.to_string().contains("truncated"), "{invalid}");
        let missing = read(&dir.path().join("nope"), &live, now).unwrap_err();
        assert!(matches!(missing, DeletingError::Read { .. }));
    }

    #[test]
    fn a_snapshot_is_reclaimed_whole_or_not_at_all() {
        let deleting = set(&["gone-1", "gone-2", "gone-3"], Utc::now());
        let folder = [
            object("gone-1", "manifest", 0),
            object("gone-1", "index", CUTOFF - 1),
            object("gone-2", "snap", 0),
            object("gone-2", "manifest", CUTOFF),
            object("other", "snap", 0),
        ];
        let reclaim = reclaimable(&deleting, &folder, CUTOFF);
        let names: Vec<(&str, usize)> = reclaim.iter().map(|r| (r.snapshot.as_str(), r.objects.len())).collect();
        assert_eq!(names, [("gone-1", 2), ("gone-3", 0)], "gone-2 has a young object; gone-3 has none left");
    }
}
