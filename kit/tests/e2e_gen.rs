//! `gc_partition_kit` (the `gc_partition` program with the kit's stores) on a generated
//! (`gen://`) partition: the counts the generator predicts are exactly the ones the collector
//! reports. The release `gc_partition` refuses `gen://` (`tests/e2e/schemes.rs`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use gc_kit::generated::{GenCounts, Generated};

/// Three locations, legacy pairs and `.snap`s, foreign objects inside and beside the fan-out.
const URL: &str =
    "gen://?chunks=200000&referenced=0.4&young=0.1&seed=11&snapshots=40&locations=3&foreign=300&legacy=0.5";

fn gc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gc_partition_kit"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("gc_partition_kit runs")
}

fn report(output: &Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("stdout is the JSON report")
}

fn live_set(dir: &Path, url: &str) -> String {
    let generated = Generated::from_url(url).expect("gen url");
    let path = dir.join("live.txt");
    std::fs::write(&path, generated.live_set_text(chrono::Utc::now())).expect("write live set");
    path.to_str().expect("utf-8 path").to_owned()
}

fn run(url: &str, live: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--partition", "p1", "--live-snapshots", live, "--cutoff", "36h", "--store", url];
    // A pinned seed and a tiny false-positive rate: no garbage is kept by the filter, and the
    // run is the same every time.
    args.extend(["--bloom-seed", "5", "--bloom-fpr", "1e-7", "--output", "json", "--max-delete-fraction", "0.9"]);
    args.extend(extra);
    report(&gc(&args))
}

fn assert_counts(r: &serde_json::Value, want: &GenCounts) {
    assert_eq!(r["chunks_scanned"], want.chunks);
    assert_eq!(r["referenced_ids"], want.referenced);
    assert_eq!(r["referenced_kept"], want.referenced);
    assert_eq!(r["young_kept"], want.young);
    assert_eq!(r["planned_deletes"], want.garbage);
    assert_eq!(r["planned_bytes"], want.garbage_bytes);
    assert_eq!(r["foreign_objects"], want.foreign);
    assert_eq!(r["listed_objects"], want.chunks + want.foreign);
    assert_eq!(r["manifests"]["legacy"], want.legacy_snapshots);
    assert_eq!(r["manifests"]["unified"], want.unified_manifests);
}

#[test]
fn dry_run_plans_exactly_the_generated_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = live_set(dir.path(), URL);
    let want = Generated::from_url(URL).expect("gen url").expected();
    assert!(want.garbage > 0 && want.referenced > 0 && want.young > 0 && want.legacy_snapshots > 0);
    let r = run(URL, &live, &["--verify"]);
    assert_counts(&r, &want);
    assert_eq!(r["verify"]["ok"], true, "{}", r["verify"]);
    assert_eq!(r["deleted"], 0);
}

#[test]
fn execute_deletes_exactly_the_generated_garbage_and_verify_sees_it_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `remember=1`: deleted chunks vanish from the store's listings, so the verify after
    // execute lists a store that really changed.
    let url = format!("{URL}&remember=1");
    let live = live_set(dir.path(), &url);
    let want = Generated::from_url(&url).expect("gen url").expected();
    let r = run(&url, &live, &["--execute", "--verify"]);
    assert_counts(&r, &want);
    assert_eq!(r["deleted"], want.garbage);
    assert_eq!(r["deleted_bytes"], want.garbage_bytes);
    assert_eq!(r["verify"]["ok"], true, "{}", r["verify"]);
}
