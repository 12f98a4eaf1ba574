//! `--metrics-out` (spec 8.5): the run's outcome in the Prometheus text exposition format,
//! for node_exporter's textfile collector. Built from the report, written to a temporary
//! name in the same directory and renamed, so the collector never reads half a file.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: cannot encode: {0}")]
    Encode(#[from] std::fmt::Error),
    #[error("metrics {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

type Count = Gauge<u64, AtomicU64>;
type Seconds = Gauge<f64, AtomicU64>;

fn count(value: u64) -> Count {
    let gauge = Count::default();
    gauge.set(value);
    gauge
}

/// The metrics of a run that ended with `exit_code` (the process's, which may differ from
/// the report's when writing the report failed) at `ended_at`.
pub fn render(report: &Report, exit_code: u8, ended_at: DateTime<Utc>) -> Result<String, MetricsError> {
    let labels = [("partition", report.partition.clone()), ("mode", report.mode.as_str().to_owned())]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()));
    let mut registry = Registry::with_prefix_and_labels("gc_partition", labels);
    registry.register("exit_code", "Exit code of the last run", count(u64::from(exit_code)));
    let at = Seconds::default();
    at.set(ended_at.timestamp_millis() as f64 / 1000.0);
    registry.register("last_run_timestamp_seconds", "When the last run ended, Unix time", at);

    let stages = Family::<StageLabel, Seconds>::default();
    for (stage, ms) in &report.durations_ms {
        stages.get_or_create(&StageLabel { stage: (*stage).to_owned() }).set(*ms as f64 / 1000.0);
    }
    registry.register(
        "stage_duration_seconds",
        "Wall time of each stage of the last run; stage=\"total\" is the whole run",
        stages,
    );

    let objects = Family::<KindLabel, Count>::default();
    for (kind, value) in [
        ("listed", report.listed_objects),
        ("foreign", report.foreign_objects),
        ("referenced_kept", report.referenced_kept),
        ("young_kept", report.young_kept),
        ("refreshed_kept", report.refreshed_kept),
        ("planned", report.planned_deletes),
        ("deleted", report.deleted),
        ("delete_failures", report.delete_failures),
    ] {
        objects.get_or_create(&KindLabel { kind: kind.to_owned() }).set(value);
    }
    registry.register("objects", "Objects of the last run, by what became of them", objects);
    registry.register(
        "planned_bytes",
        "Bytes of the chunks the last run planned to delete",
        count(report.planned_bytes),
    );
    registry.register("deleted_bytes", "Bytes of the chunks the last run deleted", count(report.deleted_bytes));

    let snapshots = Family::<StateLabel, Count>::default();
    let census = &report.snapshots;
    for (state, value) in [
        ("live", census.live),
        ("deleting", census.deleting),
        ("being_written", census.being_written),
        ("unclassified", census.unclassified),
    ] {
        snapshots.get_or_create(&StateLabel { state: state.to_owned() }).set(value);
    }
    registry.register("snapshots", "Snapshots of the last run by state (spec 9.2)", snapshots);
    registry.register(
        "reclaimed_snapshots",
        "Deleting snapshots whose manifests the last run deleted",
        count(report.reclaimed_snapshots.len() as u64),
    );

    if let Some(bill) = &report.requests {
        let requests = Family::<OpLabel, Count>::default();
        let c = &bill.counts;
        for (op, value) in [
            ("list_pages", c.list_pages),
            ("get", c.get),
            ("head", c.head),
            ("delete_calls", c.delete_calls),
            ("deleted_keys", c.deleted_keys),
            ("batch_requests", c.batch_requests),
            ("throttled", c.throttled),
        ] {
            requests.get_or_create(&OpLabel { op: op.to_owned() }).set(value);
        }
        registry.register("requests_total", "Store calls of the last run by kind, retries included", requests);
    }

    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Writes the metrics at `path` through a temporary file in the same directory, renamed
/// over it: a hidden `.tmp` name the textfile collector (which reads `*.prom`) skips.
pub fn write(path: &Path, report: &Report, exit_code: u8, ended_at: DateTime<Utc>) -> Result<(), MetricsError> {
    let text = render(report, exit_code, ended_at)?;
    crate::atomic_file::write(path, "gc_partition-metrics", text.as_bytes())
        .map_err(|source| MetricsError::Write { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::deleting::SnapshotCensus;
    use crate::mode::ModeName;

    use super::*;

    /// One sample: name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// A small parser of the text format's sample lines (no escapes: the labels here have none).
    fn parse(text: &str) -> Vec<Sample> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("a value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
                    None => (series, ""),
                };
                let labels = labels
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once('=').expect("k=v");
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels, value.parse().expect("a number"))
            })
            .collect()
    }

    fn one(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
        let found: Vec<_> = samples
            .iter()
            .filter(|(n, l, _)| n == name && label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {label:?}: {found:?}");
        found[0].2
    }

    #[test]
    fn the_text_parses_back_to_the_report() {
        let mut report = Report {
            partition: "p1".into(),
            mode: ModeName::Execute,
            snapshots: SnapshotCensus { live: 6, deleting: 2, being_written: 1, unclassified: 0 },
            reclaimed_snapshots: vec!["gone-1".into()],
            listed_objects: 1_000,
            foreign_objects: 3,
            referenced_kept: 600,
            young_kept: 40,
            refreshed_kept: 2,
            planned_deletes: 357,
            deleted: 350,
            delete_failures: 5,
            planned_bytes: 357 << 20,
            deleted_bytes: 350 << 20,
            ..Report::default()
        };
        report.durations_ms.insert("manifests", 1_500);
        report.durations_ms.insert("total", 4_250);
        let counts = crate::store::RequestCounts {
            list_pages: 9,
            get: 4,
            head: 355,
            delete_calls: 12,
            deleted_keys: 350,
            batch_requests: 0,
            throttled: 1,
        };
        report.requests = Some(crate::bill::RequestBill::new(counts, Some(crate::bill::GCS)));
        let at = DateTime::parse_from_rfc3339("2026-11-24T12:00:00.5Z").unwrap().with_timezone(&Utc);
        let text = render(&report, 7, at).unwrap();
        let samples = parse(&text);

        assert_eq!(one(&samples, "gc_partition_exit_code", None), 7.0);
        assert_eq!(one(&samples, "gc_partition_last_run_timestamp_seconds", None), 1_795_521_600.5);
        assert_eq!(one(&samples, "gc_partition_stage_duration_seconds", Some(("stage", "manifests"))), 1.5);
        assert_eq!(one(&samples, "gc_partition_stage_duration_seconds", Some(("stage", "total"))), 4.25);
        for (kind, value) in [
            ("listed", 1_000),
            ("foreign", 3),
            ("referenced_kept", 600),
            ("young_kept", 40),
            ("refreshed_kept", 2),
            ("planned", 357),
            ("deleted", 350),
            ("delete_failures", 5),
        ] {
            assert_eq!(one(&samples, "gc_partition_objects", Some(("kind", kind))), f64::from(value), "{kind}");
        }
        assert_eq!(one(&samples, "gc_partition_planned_bytes", None), (357u64 << 20) as f64);
        assert_eq!(one(&samples, "gc_partition_deleted_bytes", None), (350u64 << 20) as f64);
        for (op, value) in [
            ("list_pages", 9),
            ("get", 4),
            ("head", 355),
            ("delete_calls", 12),
            ("deleted_keys", 350),
            ("throttled", 1),
        ] {
            assert_eq!(one(&samples, "gc_partition_requests_total", Some(("op", op))), f64::from(value), "{op}");
        }
        for (state, value) in [("live", 6), ("deleting", 2), ("being_written", 1), ("unclassified", 0)] {
            assert_eq!(one(&samples, "gc_partition_snapshots", Some(("state", state))), f64::from(value), "{state}");
        }
        assert_eq!(one(&samples, "gc_partition_reclaimed_snapshots", None), 1.0);
        assert_eq!(samples.len(), 2 + 2 + 8 + 2 + 4 + 1 + 7);
        for (name, labels, _) in &samples {
            assert_eq!(labels.get("partition").map(String::as_str), Some("p1"), "{name}");
            assert_eq!(labels.get("mode").map(String::as_str), Some("execute"), "{name}");
        }
        assert!(text.contains("# TYPE gc_partition_exit_code gauge\n"), "{text}");
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc.prom");
        std::fs::write(&path, "old").unwrap();
        let report = Report { partition: "p1".into(), mode: ModeName::DryRun, ..Report::default() };
        write(&path, &report, 0, Utc::now()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(one(&parse(&text), "gc_partition_exit_code", None), 0.0);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["gc.prom"]);
        let missing_dir = dir.path().join("nope").join("gc.prom");
        assert!(matches!(write(&missing_dir, &report, 0, Utc::now()), Err(MetricsError::Write { .. })));
    }
}
