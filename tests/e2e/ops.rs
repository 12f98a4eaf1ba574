//! End-to-end on `file://`: what the people who run the collector see (spec 8.5): the
//! `progress` events when stderr is not a terminal, and `--metrics-out`.

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

const FIELDS: [&str; 7] = [
    "manifests_done",
    "manifests_total",
    "referenced_ids",
    "listed_objects",
    "planned_deletes",
    "deleted",
    "rate_per_s",
];

/// The `fields` of every JSON log line that is a `progress` event.
fn progress_events(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|event| event["fields"].clone())
        .filter(|fields| fields["message"] == "progress")
        .collect()
}

#[test]
fn progress_events_are_logged_as_json_with_their_fields() {
    let fx = partition(&Backend::File, |c| c.seed = 31);
    // RUST_LOG=warn (as every e2e run) does not silence the events the flag asks for.
    let out = fx.gc(&["--log-format", "json", "--progress-interval", "1ms", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json_stdout(&out);
    let events = progress_events(&stderr(&out));
    assert!(!events.is_empty(), "no progress event: {}", stderr(&out));
    for event in &events {
        let stage = event["stage"].as_str().unwrap_or_else(|| panic!("no stage: {event}"));
        assert!(
            ["live_set", "manifests", "listing", "plan", "execute", "verify", "done"].contains(&stage),
            "stage {stage}"
        );
        for field in FIELDS {
            assert!(event[field].is_number(), "{field} missing or not a number: {event}");
        }
        if let Some(eta) = event.get("eta_s") {
            assert!(eta.is_u64(), "eta_s: {event}");
        }
    }
    // The last event is the run's end, with the report's counts.
    let last = events.last().unwrap();
    assert_eq!(last["stage"], "done");
    assert_eq!(last["manifests_done"], report["live_snapshots"]);
    assert_eq!(last["manifests_total"], report["live_snapshots"]);
    assert_eq!(last["referenced_ids"], report["referenced_ids"]);
    assert_eq!(last["listed_objects"], report["listed_objects"]);
    assert_eq!(last["planned_deletes"], report["planned_deletes"]);
    assert_eq!(last["deleted"], 0);
}

#[test]
fn progress_interval_0_logs_no_progress_event() {
    let fx = partition(&Backend::File, |c| c.seed = 32);
    let out = fx.gc(&["--log-format", "json", "--progress-interval", "0"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(progress_events(&stderr(&out)), Vec::<serde_json::Value>::new());
    let bad = fx.gc(&["--progress-interval", "often"]);
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("--progress-interval"), "{}", stderr(&bad));
}

/// The samples of a Prometheus text file: `name{labels}` -> value. Panics on a line that
/// is not a comment nor a well-formed sample.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            assert!(series.starts_with("gc_partition_"), "{line}");
            (series.to_owned(), value.parse().unwrap_or_else(|_| panic!("not a number: {line}")))
        })
        .collect()
}

fn metrics_of(dir: &Path) -> (String, BTreeMap<String, f64>) {
    let names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["gc.prom"], "a temporary file was left behind");
    let text = std::fs::read_to_string(dir.join("gc.prom")).unwrap();
    (text.clone(), parse_metrics(&text))
}

#[test]
fn metrics_out_on_a_good_run_and_on_an_abort() {
    let fx = partition(&Backend::File, |c| c.seed = 33);
    let dir = fx.path("metrics");
    std::fs::create_dir(&dir).unwrap();
    let prom = dir.join("gc.prom");
    let prom = prom.to_str().unwrap();

    let out = fx.gc(&["--metrics-out", prom, "--output", "json", "--execute", "--max-delete-fraction", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json_stdout(&out);
    let (text, samples) = metrics_of(&dir);
    let labels = r#"partition="p1",mode="execute""#;
    let get = |series: &str| samples.get(series).copied().unwrap_or_else(|| panic!("{series} missing:\n{text}"));
    assert_eq!(get(&format!("gc_partition_exit_code{{{labels}}}")), 0.0);
    let now = chrono::Utc::now().timestamp() as f64;
    let at = get(&format!("gc_partition_last_run_timestamp_seconds{{{labels}}}"));
    assert!(at > now - 3600.0 && at <= now + 1.0, "{at} is not this run's end");
    for (kind, field) in [
        ("listed", "listed_objects"),
        ("foreign", "foreign_objects"),
        ("referenced_kept", "referenced_kept"),
        ("young_kept", "young_kept"),
        ("refreshed_kept", "refreshed_kept"),
        ("planned", "planned_deletes"),
        ("deleted", "deleted"),
        ("delete_failures", "delete_failures"),
    ] {
        let value = get(&format!("gc_partition_objects{{{labels},kind=\"{kind}\"}}"));
        assert_eq!(value, report[field].as_f64().unwrap(), "{kind}");
    }
    assert!(get(&format!("gc_partition_objects{{{labels},kind=\"deleted\"}}")) > 0.0);
    assert_eq!(get(&format!("gc_partition_planned_bytes{{{labels}}}")), report["planned_bytes"].as_f64().unwrap());
    assert_eq!(get(&format!("gc_partition_deleted_bytes{{{labels}}}")), report["deleted_bytes"].as_f64().unwrap());
    for stage in ["live_set", "manifests", "listing", "decide", "execute", "total"] {
        let seconds = get(&format!("gc_partition_stage_duration_seconds{{{labels},stage=\"{stage}\"}}"));
        assert!(seconds >= 0.0, "{stage}");
    }

    // An abort (a truncated live set: exit 3) replaces the file with its own outcome.
    let bad_live = fx.path("bad-live.txt");
    let good = std::fs::read_to_string(&fx.live_path).unwrap();
    std::fs::write(&bad_live, good.lines().filter(|l| !l.starts_with("# end")).collect::<Vec<_>>().join("\n")).unwrap();
    let args = ["--partition", "p1", "--live-snapshots", bad_live.to_str().unwrap(), "--cutoff", "7d"];
    let out = fx.gc_raw(&[&args[..], &["--metrics-out", prom]].concat(), None);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let (text, samples) = metrics_of(&dir);
    assert_eq!(samples.get(r#"gc_partition_exit_code{partition="p1",mode="dry-run"}"#), Some(&3.0), "{text}");
    assert_eq!(samples.get(r#"gc_partition_objects{partition="p1",mode="dry-run",kind="listed"}"#), Some(&0.0));

    // Flags that are not valid: no outcome to write, the file stays as it was.
    let out = fx.gc(&["--metrics-out", prom, "--max-delete-fraction", "2"]);
    assert_eq!(code(&out), 2);
    assert_eq!(metrics_of(&dir).0, text);
}
