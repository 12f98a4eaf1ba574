//! A reviewed plan applied as reviewed (spec 8.2, 8.3) and `--explain` (spec 8.4), end to
//! end on `file://`: every refusal exits 2 with the store untouched; a plan that a live
//! manifest now contradicts exits 8 with nothing deleted; a chunk touched since the plan is
//! kept; explain is read-only and answers each decision.

use std::collections::HashSet;

use common::*;
use gc_kit::Ageing;
use gc_partition::ids::{ChunkId, PartitionId, SnapshotId};
use gc_partition::manifest::unified::{ChunkGroup, UnifiedManifest, render};

/// A fixture and the dry-run plan made on it.
fn reviewed(seed: u64, plan_name: &str) -> (Fixture, std::path::PathBuf) {
    let fx = partition(&Backend::File, |c| c.seed = seed);
    let plan = fx.path(plan_name);
    let out = fx.gc(&["--plan-out", plan.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (fx, plan)
}

fn apply(fx: &Fixture, plan: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let live = fx.live_path.to_str().unwrap();
    let mut args = vec!["--partition", &fx.partition, "--live-snapshots", live, "--apply-plan", plan.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(["--output", "json"]);
    fx.gc_raw(&args, None)
}

fn plan_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(path).unwrap();
    let text =
        if path.extension().is_some_and(|e| e == "zst") { zstd::decode_all(bytes.as_slice()).unwrap() } else { bytes };
    String::from_utf8(text).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write_lines(path: &std::path::Path, lines: &[serde_json::Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn planned_keys(lines: &[serde_json::Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| l["type"] == "delete")
        .map(|l| (l["bucket"].as_str().unwrap().to_owned(), l["key"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn a_reviewed_plan_is_applied_exactly_plain_and_zstd() {
    for name in ["plan.jsonl", "plan.jsonl.zst"] {
        let (fx, plan) = reviewed(61, name);
        let lines = plan_lines(&plan);
        let header = &lines[0];
        assert_eq!(header["store"], fx.url.as_str());
        assert_eq!(header["max_delete_fraction"], 0.5);
        assert_eq!(header["live_set_sha256"].as_str().unwrap().len(), 64);
        let planned = planned_keys(&lines);
        assert!(!planned.is_empty());
        let footer = lines.last().unwrap();
        assert_eq!(footer["type"], "footer");
        assert_eq!(footer["count"], planned.len());
        assert!(footer["old_chunks"].as_u64().unwrap() >= planned.len() as u64);

        let before = fx.fingerprint();
        let out = apply(&fx, &plan, &[]);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        let report = json_stdout(&out);
        assert_eq!(report["mode"], "apply");
        assert_eq!(report["deleted"], planned.len());
        assert_eq!(report["verify"]["planned_but_referenced"], 0);
        for (bucket, key) in &planned {
            assert!(!fx.exists(bucket, key), "{bucket}/{key} planned but not deleted");
        }
        let after = fx.fingerprint();
        assert_eq!(before.len() - after.len(), planned.len(), "{name}: deleted something the plan did not list");
        assert!(after.keys().all(|k| before.contains_key(k)));
        // Nothing referenced went missing: an exact dry-run verify passes.
        let check = fx.gc(&["--verify"]);
        assert_eq!(code(&check), 0, "{}", stderr(&check));
    }
}

#[test]
fn every_refusal_exits_2_and_changes_nothing() {
    let (fx, plan) = reviewed(62, "plan.jsonl");
    let good = plan_lines(&plan);
    let live = std::fs::read_to_string(&fx.live_path).unwrap();
    let header_with = |field: &str, value: serde_json::Value| {
        let mut lines = good.clone();
        lines[0][field] = value;
        lines
    };
    let mut footer_off = good.clone();
    let n = footer_off.len();
    footer_off[n - 1]["count"] = (good[n - 1]["count"].as_u64().unwrap() + 1).into();
    let old = (chrono::Utc::now() - chrono::TimeDelta::hours(13)).to_rfc3339();
    let plan_cases: Vec<(&str, Vec<serde_json::Value>)> = vec![
        ("no footer", good[..n - 1].to_vec()),
        ("footer count", footer_off),
        ("other partition", header_with("partition", "p-other".into())),
        ("other store", header_with("store", "file:///elsewhere".into())),
        ("older than --max-plan-age", header_with("created_at", old.into())),
        ("made by --execute", header_with("mode", "execute".into())),
        ("other live set", header_with("live_set_sha256", "0".repeat(64).into())),
    ];
    let before = fx.fingerprint();
    for (what, lines) in plan_cases {
        let bad = fx.path("bad.jsonl");
        write_lines(&bad, &lines);
        let out = apply(&fx, &bad, &[]);
        assert_eq!(code(&out), 2, "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains("bad.jsonl") || stderr(&out).contains("refused"), "{what}: {}", stderr(&out));
        assert_eq!(fx.fingerprint(), before, "{what}: the store changed");
    }

    // The live set gained a snapshot since the plan (one that has manifests), or lost one.
    let dead = fx.summary.dead_snapshots[0].to_string();
    let count = fx.summary.snapshots.len();
    let gained = format!("{dead}\n{}", live.replace(&format!("count={count} "), &format!("count={} ", count + 1)));
    let first = fx.summary.snapshots[0].to_string();
    let lost = live
        .lines()
        .filter(|l| *l != first)
        .map(|l| l.replace(&format!("count={count} "), &format!("count={} ", count - 1)) + "\n")
        .collect::<String>();
    for (what, text) in [("gained a snapshot", gained), ("lost a snapshot", lost)] {
        std::fs::write(&fx.live_path, text).unwrap();
        let out = apply(&fx, &plan, &[]);
        assert_eq!(code(&out), 2, "live set {what}: {}", stderr(&out));
        assert!(stderr(&out).contains("live set"), "{}", stderr(&out));
        assert_eq!(fx.fingerprint(), before, "live set {what}: the store changed");
    }
    std::fs::write(&fx.live_path, &live).unwrap();

    for (what, flags) in [("--cutoff", ["--cutoff", "7d"]), ("--max-plan-age over 23h", ["--max-plan-age", "24h"])] {
        let out = apply(&fx, &plan, &flags);
        assert_eq!(code(&out), 2, "{what}: {}", stderr(&out));
        assert_eq!(fx.fingerprint(), before);
    }
    let out = apply(&fx, &plan, &["--execute"]);
    assert_eq!(code(&out), 2, "--execute with --apply-plan: {}", stderr(&out));
    // The untouched plan still applies.
    let out = apply(&fx, &plan, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_manifest_that_now_references_a_planned_chunk_aborts_with_8_and_deletes_nothing() {
    let (fx, plan) = reviewed(63, "plan.jsonl");
    let lines = plan_lines(&plan);
    let (bucket, key) = planned_keys(&lines)[0].clone();
    let location =
        fx.summary.locations.iter().find(|l| l.bucket() == bucket && l.chunk_of_key(&key).is_some()).unwrap();
    let id = location.chunk_of_key(&key).unwrap();
    // A live snapshot's manifest is rewritten (same snapshot, same live set) to name it.
    let snapshot = fx.summary.snapshots[0].clone();
    let manifest = UnifiedManifest {
        snapshot_id: SnapshotId::parse(snapshot.as_str()).unwrap(),
        partition_id: PartitionId::parse(&fx.partition).unwrap(),
        created_unix_ms: 0,
        locations: vec![location.clone()],
        groups: vec![ChunkGroup::new(0, &[id])],
    };
    fx.write(&fx.meta_bucket, &format!("partitions/{}/snapshots/{snapshot}.snap", fx.partition), render(&manifest));
    let before = fx.fingerprint();
    let out = apply(&fx, &plan, &[]);
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    let report = json_stdout(&out);
    assert_eq!(report["verify"]["planned_but_referenced"], 1);
    assert_eq!(report["deleted"], 0);
    assert_eq!(fx.fingerprint(), before, "an apply that failed its exact check changed the store");
}

#[test]
fn a_chunk_touched_after_the_plan_is_kept() {
    let (fx, plan) = reviewed(64, "plan.jsonl");
    let lines = plan_lines(&plan);
    let planned = planned_keys(&lines);
    let (bucket, key) = planned[0].clone();
    let record = lines.iter().find(|l| l["key"] == key.as_str()).unwrap();
    let planned_at = chrono::DateTime::parse_from_rfc3339(record["last_modified"].as_str().unwrap()).unwrap();
    // Still far older than the cutoff, but not what was reviewed: kept.
    let touched = planned_at.with_timezone(&chrono::Utc) + chrono::TimeDelta::seconds(1);
    fx.stores.set_last_modified(&bucket, &key, touched).unwrap();
    let out = apply(&fx, &plan, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json_stdout(&out);
    assert_eq!(report["refreshed_kept"], 1);
    assert_eq!(report["deleted"], planned.len() - 1);
    assert!(fx.exists(&bucket, &key), "a chunk changed since the review was deleted");
}

#[test]
fn explain_answers_each_decision_and_is_read_only() {
    let fx = partition(&Backend::File, |c| c.seed = 65);
    let sets = fx.summary.sets.clone().unwrap();
    let referenced = sets.referenced[0].1;
    let garbage = sets.garbage[0].1;
    let young = sets.young[0].1;
    let absent = ChunkId([0x5a; 32]);
    let known: HashSet<[u8; 32]> =
        sets.referenced.iter().chain(&sets.garbage).chain(&sets.young).map(|(_, id)| id.0).collect();
    assert!(!known.contains(&absent.0));
    let before = fx.fingerprint();
    let ids = [referenced, garbage, young, absent].map(|id| id.to_hex());
    let mut args = vec!["--execute", "--output", "json"];
    for id in &ids {
        args.extend(["--explain", id.as_str()]);
    }
    let out = fx.gc(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fx.fingerprint(), before, "--explain changed the store, --execute or not");
    let report = json_stdout(&out);
    let explain = report["explain"].as_array().unwrap();
    let decisions: Vec<&str> = explain.iter().map(|e| e["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["keep-referenced", "delete", "keep-young", "absent"]);
    let live: HashSet<String> = fx.summary.snapshots.iter().map(|s| s.to_string()).collect();
    let referenced_by = explain[0]["referenced_by"].as_array().unwrap();
    assert!(!referenced_by.is_empty() && referenced_by.iter().all(|s| live.contains(s.as_str().unwrap())));
    assert!(explain[1]["referenced_by"].as_array().unwrap().is_empty());
    let (location, _) = &sets.garbage[0];
    assert_eq!(explain[1]["found"][0]["key"], location.chunk_key(&garbage).as_str());
    assert!(explain[3]["found"].as_array().unwrap().is_empty());
    assert!(explain.iter().all(|e| !e["reason"].as_str().unwrap().is_empty()));
    let human = fx.gc(&["--explain", &ids[1]]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("delete"), "{}", String::from_utf8_lossy(&human.stdout));
}
