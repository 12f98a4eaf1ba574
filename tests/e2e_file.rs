//! End-to-end: the built binary on `file://` partitions made by the synthesizer. Every abort
//! case checks its exit code and a byte-for-byte unchanged store; every execute ends with a
//! verify.

mod common;

use std::collections::HashSet;

use common::*;

fn planned_names(plan: &[serde_json::Value]) -> HashSet<String> {
    plan.iter()
        .filter(|l| l["type"] == "delete")
        .map(|l| format!("{}/{}", l["bucket"].as_str().unwrap(), l["key"].as_str().unwrap()))
        .collect()
}

#[test]
fn dry_run_plans_the_garbage_and_changes_nothing() {
    let fx = partition(|_| {});
    let before = fingerprint(&fx.root);
    let (plan, report) = (fx.path("plan.jsonl"), fx.path("report.json"));
    let out = fx.gc(&[
        "--verify",
        "--plan-out",
        plan.to_str().unwrap(),
        "--report-out",
        report.to_str().unwrap(),
        "--output",
        "json",
        "--bloom-fpr",
        "0.0001",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fingerprint(&fx.root), before, "a dry run changed the store");

    let sets = fx.summary.sets.as_ref().unwrap();
    let lines = read_plan(&plan);
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines[0]["partition"], "p1");
    assert_eq!(lines.last().unwrap()["type"], "footer");
    let planned = planned_names(&lines);
    assert_eq!(lines.last().unwrap()["count"], planned.len());
    let garbage: HashSet<String> = sets.garbage.iter().map(|(l, id)| chunk_name(l, id)).collect();
    assert!(planned.is_subset(&garbage), "planned something that is not garbage");
    let kept_by_fp = garbage.len() - planned.len();
    assert!(kept_by_fp <= 2, "{kept_by_fp} garbage chunks not planned at fpr 1e-4");

    let json = json_stdout(&out);
    assert_eq!(json, read_json(&report), "stdout JSON and --report-out differ");
    assert_eq!(json["mode"], "dry-run");
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["planned_deletes"], planned.len());
    assert_eq!(json["foreign_objects"], fx.summary.foreign_objects);
    assert_eq!(json["young_kept"], fx.summary.young_chunks);
    assert_eq!(json["verify"]["ok"], true);
    assert_eq!(json["verify"]["planned_but_referenced"], 0);
    assert_eq!(json["verify"]["missing_before"], 0);
    assert_eq!(json["deleted"], 0);
    assert_eq!(json["live_snapshots"], fx.summary.snapshots.len());
}

#[test]
fn execute_deletes_only_garbage_and_a_rerun_has_nothing_left() {
    let fx = partition(|c| c.seed = 2);
    let sets = fx.summary.sets.clone().unwrap();
    let out = fx.gc(&["--execute", "--verify", "--output", "json", "--bloom-fpr", "0.0001"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["verify"]["ok"], true);
    assert_eq!(json["verify"]["missing_after"], 0);
    assert_eq!(json["deleted"], json["planned_deletes"]);
    for (location, id) in sets.referenced.iter().chain(&sets.young) {
        assert!(fx.exists(location.bucket(), &location.chunk_key(id)), "{} was deleted", chunk_name(location, id));
    }
    for (bucket, key) in &sets.foreign {
        assert!(fx.exists(bucket, key), "foreign object {bucket}/{key} was deleted");
    }
    let left = sets.garbage.iter().filter(|(l, id)| fx.exists(l.bucket(), &l.chunk_key(id))).count();
    assert!(left <= 2, "{left} garbage chunks left at fpr 1e-4");

    let again = fx.gc(&["--execute", "--verify", "--output", "json"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let json = json_stdout(&again);
    assert_eq!(json["deleted"].as_u64().unwrap() as usize, left, "a rerun collects exactly what a false positive kept");
    assert_eq!(json["verify"]["ok"], true);
}

#[test]
fn cutoff_inside_the_grace_window_is_refused() {
    let fx = partition(|c| c.seed = 3);
    let before = fingerprint(&fx.root);
    for cutoff in ["23h", "1h", "0s"] {
        let live = fx.live_path.to_str().unwrap();
        let args = ["--partition", "p1", "--live-snapshots", live, "--cutoff", cutoff, "--store", &fx.url, "--execute"];
        let out = gc_binary(&args, None);
        assert_eq!(code(&out), 2, "cutoff {cutoff}: {}", stderr(&out));
        assert!(stderr(&out).contains("24 h"), "{}", stderr(&out));
    }
    // A cutoff 24h before taken_at is accepted.
    let taken = fx.summary.taken_at - chrono::TimeDelta::hours(24);
    let cutoff = taken.to_rfc3339();
    let live = fx.live_path.to_str().unwrap();
    let out =
        gc_binary(&["--partition", "p1", "--live-snapshots", live, "--cutoff", &cutoff, "--store", &fx.url], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fingerprint(&fx.root), before);
}

#[test]
fn bad_live_sets_exit_3_and_change_nothing() {
    let fx = partition(|c| c.seed = 4);
    let before = fingerprint(&fx.root);
    let good = std::fs::read_to_string(&fx.live_path).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    let trailer = lines.pop().unwrap();
    let first = lines.iter().find(|l| !l.starts_with('#')).unwrap().to_string();
    let future = format!(
        "# end count={} taken_at={}",
        lines.len(),
        (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339()
    );
    let cases = [
        ("truncated", lines.join("\n")),
        ("wrong count", format!("{}\n{}", lines.join("\n"), trailer.replace("count=", "count=9"))),
        ("duplicate", format!("{}\n{first}\n{trailer}", lines.join("\n"))),
        ("bad id", format!("../etc\n{}\n{trailer}", lines.join("\n"))),
        ("future", format!("{}\n{future}", lines.join("\n"))),
    ];
    for (what, text) in cases {
        let path = fx.path("bad-live.txt");
        std::fs::write(&path, text).unwrap();
        let out = gc_binary(
            &[
                "--partition",
                "p1",
                "--live-snapshots",
                path.to_str().unwrap(),
                "--cutoff",
                "7d",
                "--store",
                &fx.url,
                "--execute",
            ],
            None,
        );
        assert_eq!(code(&out), 3, "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains("bad-live.txt"), "{what}: error does not name the file: {}", stderr(&out));
    }
    assert_eq!(fingerprint(&fx.root), before);
}

#[test]
fn live_set_from_stdin() {
    let fx = partition(|c| c.seed = 5);
    let live = std::fs::read(&fx.live_path).unwrap();
    let out = gc_binary(
        &["--partition", "p1", "--live-snapshots", "-", "--cutoff", "7d", "--store", &fx.url, "--output", "json"],
        Some(&live),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_stdout(&out)["live_snapshots"], fx.summary.snapshots.len());
}

fn snapshot_file(fx: &Fixture, suffix: &str) -> Option<std::path::PathBuf> {
    let dir = fx.root.join("snapshots/partitions/p1/snapshots");
    fx.summary.snapshots.iter().map(|s| dir.join(format!("{s}{suffix}"))).find(|p| p.exists())
}

#[test]
fn any_manifest_problem_exits_4_and_deletes_nothing() {
    type Break = fn(&std::path::Path);
    let cases: [(&str, &str, Break); 5] = [
        ("missing index", ".index", |p| std::fs::remove_file(p).unwrap()),
        ("missing manifest half", ".manifest", |p| std::fs::remove_file(p).unwrap()),
        ("truncated index", ".index", |p| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..bytes.len() - 1]).unwrap();
        }),
        ("flipped index byte", ".index", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(p, bytes).unwrap();
        }),
        ("corrupt snap", ".snap", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            bytes.extend_from_slice(&[0xf8, 0x07, 0x01]); // field 127, varint: unknown
            std::fs::write(p, bytes).unwrap();
        }),
    ];
    for (i, (what, suffix, damage)) in cases.into_iter().enumerate() {
        let fx = partition(|c| c.seed = 10 + i as u64);
        let victim = snapshot_file(&fx, suffix).unwrap_or_else(|| panic!("{what}: no {suffix} file"));
        damage(&victim);
        let before = fingerprint(&fx.root);
        let out = fx.gc(&["--execute", "--max-delete-fraction", "1"]);
        assert_eq!(code(&out), 4, "{what}: {}", stderr(&out));
        let name = victim.file_name().unwrap().to_str().unwrap().to_owned();
        let snapshot = name.rsplit_once('.').unwrap().0.to_owned();
        assert!(stderr(&out).contains(&snapshot), "{what}: error does not name the snapshot: {}", stderr(&out));
        assert_eq!(fingerprint(&fx.root), before, "{what}: store changed");
    }
}

#[test]
fn a_live_snapshot_without_manifests_exits_4() {
    let fx = partition(|c| c.seed = 20);
    let mut live = std::fs::read_to_string(&fx.live_path).unwrap();
    let count = fx.summary.snapshots.len();
    live = live.replace(&format!("count={count} "), &format!("count={} ", count + 1));
    live = format!("ghost-snapshot\n{live}");
    std::fs::write(&fx.live_path, live).unwrap();
    let before = fingerprint(&fx.root);
    let out = fx.gc(&["--execute"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("ghost-snapshot"), "{}", stderr(&out));
    assert_eq!(fingerprint(&fx.root), before);
}

#[test]
fn delete_fraction_guard_blocks_execute_and_is_reported_in_dry_run() {
    let fx = partition(|c| c.seed = 21);
    let before = fingerprint(&fx.root);
    let out = fx.gc(&["--execute", "--max-delete-fraction", "0.01", "--output", "json"]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["guard"]["tripped"], true);
    assert_eq!(json["deleted"], 0);
    assert_eq!(fingerprint(&fx.root), before, "the guard let something through");

    let dry = fx.gc(&["--max-delete-fraction", "0.01", "--output", "json"]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert_eq!(json_stdout(&dry)["guard"]["tripped"], true);
    let human = fx.gc(&["--max-delete-fraction", "0.01"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("TRIPPED"));
}

#[test]
fn locations_of_other_partitions_are_refused() {
    let fx = partition(|c| c.seed = 22);
    let before = fingerprint(&fx.root);
    let out = fx.gc(&["--location", "chunks-b/tier/p2/x", "--execute"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("p2"), "{}", stderr(&out));
    assert_eq!(fingerprint(&fx.root), before);
}

#[test]
fn a_listing_failure_exits_5_and_deletes_nothing() {
    let fx = partition(|c| c.seed = 23);
    let before = fingerprint(&fx.root);
    let out = fx.gc(&["--location", "no-such-bucket/p1", "--execute"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-bucket"), "{}", stderr(&out));
    assert_eq!(fingerprint(&fx.root), before);
}

#[test]
fn human_summary_reads_well() {
    let fx = partition(|c| c.seed = 24);
    let out = fx.gc(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["dry-run of partition p1", "planned", "guard", "durations", "next"] {
        assert!(text.contains(needle), "summary lacks {needle:?}:\n{text}");
    }
}

/// Adds a live snapshot `name` with a unified manifest naming `location`, keeping the live
/// set's count right.
fn add_unified_snapshot(fx: &Fixture, name: &str, location: gc_partition::locations::Location) {
    use gc_partition::ids::{ChunkId, PartitionId, SnapshotId};
    use gc_partition::manifest::unified::{ChunkGroup, UnifiedManifest, render};
    let manifest = UnifiedManifest {
        snapshot_id: SnapshotId::parse(name).unwrap(),
        partition_id: PartitionId::parse("p1").unwrap(),
        created_unix_ms: 0,
        locations: vec![location],
        groups: vec![ChunkGroup::new(0, &[ChunkId([7; 32])])],
    };
    let path = fx.root.join(format!("snapshots/partitions/p1/snapshots/{name}.snap"));
    std::fs::write(path, render(&manifest)).unwrap();
    let live = std::fs::read_to_string(&fx.live_path).unwrap();
    let count = fx.summary.snapshots.len();
    let live = format!("{name}\n{}", live.replace(&format!("count={count} "), &format!("count={} ", count + 1)));
    std::fs::write(&fx.live_path, live).unwrap();
}

#[test]
fn a_manifest_naming_another_partitions_location_exits_4() {
    let fx = partition(|c| c.seed = 25);
    // p2's chunks sit beside p1's in the same bucket: GC must not even list them.
    let other = gc_partition::locations::Location::new("chunks-b", "tier/p2/x").unwrap();
    add_unified_snapshot(&fx, "intruder", other);
    let before = fingerprint(&fx.root);
    let out = fx.gc(&["--execute", "--max-delete-fraction", "1"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("intruder") && err.contains("p2"), "{err}");
    assert_eq!(fingerprint(&fx.root), before);
}

#[test]
fn a_location_named_only_by_a_manifest_is_listed_and_collected() {
    let fx = partition(|c| c.seed = 26);
    let extra = gc_partition::locations::Location::new("chunks-z", "p1").unwrap();
    let garbage = gc_partition::ids::ChunkId([9; 32]);
    let key = extra.chunk_key(&garbage);
    let path = fx.root.join("chunks-z").join(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"old garbage").unwrap();
    let old = chrono::Utc::now() - chrono::TimeDelta::days(30);
    gc_partition::store::set_mtime(&path, old).unwrap();
    add_unified_snapshot(&fx, "newcomer", extra);
    let out = fx.gc(&["--execute", "--verify", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!path.exists(), "garbage in a manifest-only location was not collected");
    let json = json_stdout(&out);
    assert!(json["per_location"].as_array().unwrap().iter().any(|l| l["bucket"] == "chunks-z"));
    // The referenced chunk of `newcomer` does not exist: verify after execute only checks
    // what was present before, so the run passes; a dry-run verify reports it missing.
    let dry = fx.gc(&["--verify", "--output", "json"]);
    assert_eq!(code(&dry), 8, "{}", stderr(&dry));
    assert_eq!(json_stdout(&dry)["verify"]["missing_before"], 1);
}

#[test]
fn the_gc_synth_binary_makes_a_partition_gc_can_collect() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let url = format!("file://{}", store.display());
    let live = dir.path().join("live.txt");
    let synth = std::process::Command::new(env!("CARGO_BIN_EXE_gc_synth"))
        .args(["--store", &url, "--partition", "p9", "--seed", "3", "--snapshots", "4", "--referenced-ids", "300"])
        .args(["--garbage", "100", "--young", "10", "--live-set-out", live.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    let args = ["--partition", "p9", "--live-snapshots", live.to_str().unwrap(), "--cutoff", "7d", "--store", &url];
    let out = gc_binary(&[&args[..], &["--execute", "--verify", "--output", "json"]].concat(), None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    let n = |k: &str| json[k].as_u64().unwrap();
    assert!(n("deleted") >= 95, "{json}");
    assert_eq!(n("chunks_scanned"), 410, "300 referenced + 100 garbage + 10 young");
    assert_eq!(n("young_kept") + n("referenced_kept") + n("deleted"), 410);
}
