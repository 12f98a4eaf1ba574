//! The kit's binaries as the scripts use them: `gc_synth` writes a partition that
//! `gc_partition_kit` (the `gc_partition` program) collects, `gc_gen` describes a `gen://`
//! partition exactly as the generator does, and a bad `gen://` URL or latency profile is a
//! usage error (exit 2), as a bad store URL is in `gc_partition`.

use std::process::{Command, Output, Stdio};

use gc_kit::generated::Generated;

fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn gc_synth_writes_a_partition_gc_partition_kit_collects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir(&store).expect("mkdir");
    let url = format!("file://{}", store.display());
    let live = dir.path().join("live.txt");
    let live = live.to_str().expect("utf-8 path");
    let synth_args = ["--store", &url, "--partition", "p9", "--seed", "3", "--snapshots", "4"];
    let more = ["--referenced-ids", "300", "--garbage", "100", "--young", "10", "--live-set-out", live];
    let out = run(env!("CARGO_BIN_EXE_gc_synth"), &[&synth_args[..], &more[..], &["--summary-json"]].concat(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    assert_eq!(summary["garbage_chunks"], 100, "{summary}");

    let args = ["--partition", "p9", "--live-snapshots", live, "--cutoff", "7d", "--store", &url];
    let out = run(
        env!("CARGO_BIN_EXE_gc_partition_kit"),
        &[&args[..], &["--execute", "--verify", "--output", "json"]].concat(),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let n = |k: &str| report[k].as_u64().expect("a count");
    assert_eq!(n("chunks_scanned"), 410, "300 referenced + 100 garbage + 10 young");
    assert!(n("deleted") >= 95, "{report}");
    assert_eq!(n("young_kept") + n("referenced_kept") + n("deleted"), 410);
}

#[test]
fn gc_gen_prints_what_the_generator_expects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = "gen://?chunks=5000&referenced=0.4&young=0.1&seed=2&snapshots=7&locations=2&foreign=10";
    let live = dir.path().join("live.txt");
    let out = run(
        env!("CARGO_BIN_EXE_gc_gen"),
        &["--store", url, "--live-set-out", live.to_str().expect("utf-8"), "--expect"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("counts JSON");
    let want = serde_json::to_value(Generated::from_url(url).expect("gen url").expected()).expect("counts");
    assert_eq!(printed, want);
    let text = std::fs::read_to_string(&live).expect("live set written");
    assert_eq!(text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count(), 7);
}

#[test]
fn bad_kit_stores_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("live.txt");
    std::fs::write(&live, "# end count=0 taken_at=2026-01-01T00:00:00Z\n").expect("live set");
    let live = live.to_str().expect("utf-8");
    let args = ["--partition", "p1", "--live-snapshots", live, "--cutoff", "2025-12-01T00:00:00Z"];
    let kit = env!("CARGO_BIN_EXE_gc_partition_kit");
    let out = run(kit, &[&args[..], &["--store", "gen://?chunks=lots"]].concat(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("gen://?chunks=lots"), "{}", stderr(&out));
    let out = run(kit, &[&args[..], &["--store", "memory://"]].concat(), &[("GC_PARTITION_SIM_LATENCY", "nope")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("GC_PARTITION_SIM_LATENCY"), "{}", stderr(&out));
    let out = run(kit, &[&args[..], &["--store", "http://x"]].concat(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not file:///ABS/DIR"), "{}", stderr(&out));
}
