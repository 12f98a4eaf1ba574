//! The end-to-end suite: the built binary on partitions made by the synthesizer, on any
//! backend. Every abort case checks its exit code and a byte-for-byte unchanged store; every
//! execute ends with a verify. Every backend can age objects, so every test runs everywhere.

use std::collections::HashSet;

use gc_kit::Ageing;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::*;

fn planned_names(plan: &[serde_json::Value]) -> HashSet<String> {
    plan.iter()
        .filter(|l| l["type"] == "delete")
        .map(|l| format!("{}/{}", l["bucket"].as_str().unwrap(), l["key"].as_str().unwrap()))
        .collect()
}

pub fn dry_run_plans_the_garbage_and_changes_nothing(backend: &Backend) {
    let fx = partition(backend, |_| {});
    let before = fx.fingerprint();
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
    assert_eq!(fx.fingerprint(), before, "a dry run changed the store");

    let sets = fx.summary.sets.as_ref().unwrap();
    let lines = read_plan(&plan);
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines[0]["partition"], fx.partition.as_str());
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

pub fn execute_deletes_only_garbage_and_a_rerun_has_nothing_left(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 2);
    let sets = fx.summary.sets.clone().unwrap();
    // A small concurrency makes many batches (of 2 chunks), the larger default one few.
    let out =
        fx.gc(&["--execute", "--verify", "--output", "json", "--bloom-fpr", "0.0001", "--delete-concurrency", "4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["verify"]["ok"], true);
    assert_eq!(json["verify"]["missing_after"], 0);
    assert_eq!(json["verify"]["after_checked"], true);
    assert_eq!(json["deleted"], json["planned_deletes"]);
    assert_eq!(json["refreshed_kept"], 0, "the re-read saw a fresh last-modified on an old chunk");
    assert_eq!(json["delete_failures"], 0);
    for (location, id) in sets.referenced.iter().chain(&sets.young) {
        assert!(fx.exists(location.bucket(), &location.chunk_key(id)), "{} was deleted", chunk_name(location, id));
    }
    for (bucket, key) in &sets.foreign {
        assert!(fx.exists(bucket, key), "foreign object {bucket}/{key} was deleted");
    }
    let left = sets.garbage.iter().filter(|(l, id)| fx.exists(l.bucket(), &l.chunk_key(id))).count();
    assert!(left <= 2, "{left} garbage chunks left at fpr 1e-4");
    assert_eq!(json["deleted"].as_u64().unwrap() as usize + left, sets.garbage.len());

    let again = fx.gc(&["--execute", "--verify", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let json = json_stdout(&again);
    assert_eq!(json["deleted"].as_u64().unwrap() as usize, left, "a rerun collects exactly what a false positive kept");
    assert_eq!(json["verify"]["ok"], true);
}

pub fn cutoff_inside_the_grace_window_is_refused(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 3);
    let before = fx.fingerprint();
    let live = fx.live_path.to_str().unwrap();
    for cutoff in ["23h", "1h", "0s"] {
        let args = ["--partition", &fx.partition, "--live-snapshots", live, "--cutoff", cutoff, "--execute"];
        let out = fx.gc_raw(&args, None);
        assert_eq!(code(&out), 2, "cutoff {cutoff}: {}", stderr(&out));
        assert!(stderr(&out).contains("24 h"), "{}", stderr(&out));
    }
    // A cutoff 24h before taken_at is accepted.
    let taken = fx.summary.taken_at - chrono::TimeDelta::hours(24);
    let cutoff = taken.to_rfc3339();
    let out = fx.gc_raw(&["--partition", &fx.partition, "--live-snapshots", live, "--cutoff", &cutoff], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fx.fingerprint(), before);
}

pub fn bad_live_sets_exit_3_and_change_nothing(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 4);
    let before = fx.fingerprint();
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
        let args =
            ["--partition", &fx.partition, "--live-snapshots", path.to_str().unwrap(), "--cutoff", "7d", "--execute"];
        let out = fx.gc_raw(&args, None);
        assert_eq!(code(&out), 3, "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains("bad-live.txt"), "{what}: error does not name the file: {}", stderr(&out));
    }
    assert_eq!(fx.fingerprint(), before);
}

pub fn live_set_from_stdin(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 5);
    let live = std::fs::read(&fx.live_path).unwrap();
    let out = fx.gc_raw(
        &["--partition", &fx.partition, "--live-snapshots", "-", "--cutoff", "7d", "--output", "json"],
        Some(&live),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_stdout(&out)["live_snapshots"], fx.summary.snapshots.len());
}

/// The key of the first live snapshot's `suffix` file that exists.
fn snapshot_key(fx: &Fixture, suffix: &str) -> Option<String> {
    let dir = format!("partitions/{}/snapshots", fx.partition);
    fx.summary.snapshots.iter().map(|s| format!("{dir}/{s}{suffix}")).find(|k| fx.exists(&fx.meta_bucket, k))
}

pub fn any_manifest_problem_exits_4_and_deletes_nothing(backend: &Backend) {
    /// New content, or `None` to delete the object.
    type Break = fn(Vec<u8>) -> Option<Vec<u8>>;
    let cases: [(&str, &str, Break); 5] = [
        ("missing index", ".index", |_| None),
        ("missing manifest half", ".manifest", |_| None),
        ("truncated index", ".index", |mut bytes| {
            bytes.pop();
            Some(bytes)
        }),
        ("flipped index byte", ".index", |mut bytes| {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            Some(bytes)
        }),
        ("corrupt snap", ".snap", |mut bytes| {
            bytes.extend_from_slice(&[0xf8, 0x07, 0x01]); // field 127, varint: unknown
            Some(bytes)
        }),
    ];
    for (i, (what, suffix, damage)) in cases.into_iter().enumerate() {
        let fx = partition(backend, |c| c.seed = 10 + i as u64);
        let victim = snapshot_key(&fx, suffix).unwrap_or_else(|| panic!("{what}: no {suffix} object"));
        match damage(fx.read(&fx.meta_bucket, &victim)) {
            Some(bytes) => fx.write(&fx.meta_bucket, &victim, bytes),
            None => fx.remove(&fx.meta_bucket, &victim),
        }
        let before = fx.fingerprint();
        let out = fx.gc(&["--execute", "--max-delete-fraction", "1"]);
        assert_eq!(code(&out), 4, "{what}: {}", stderr(&out));
        let name = victim.rsplit('/').next().unwrap();
        let snapshot = name.rsplit_once('.').unwrap().0.to_owned();
        assert!(stderr(&out).contains(&snapshot), "{what}: error does not name the snapshot: {}", stderr(&out));
        assert_eq!(fx.fingerprint(), before, "{what}: store changed");
    }
}

pub fn a_live_snapshot_without_manifests_exits_4(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 20);
    let mut live = std::fs::read_to_string(&fx.live_path).unwrap();
    let count = fx.summary.snapshots.len();
    live = live.replace(&format!("count={count} "), &format!("count={} ", count + 1));
    live = format!("ghost-snapshot\n{live}");
    std::fs::write(&fx.live_path, live).unwrap();
    let before = fx.fingerprint();
    let out = fx.gc(&["--execute"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("ghost-snapshot"), "{}", stderr(&out));
    assert_eq!(fx.fingerprint(), before);
}

pub fn delete_fraction_guard_blocks_execute_and_is_reported_in_dry_run(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 21);
    let before = fx.fingerprint();
    let out = fx.gc(&["--execute", "--max-delete-fraction", "0.01", "--output", "json"]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["guard"]["tripped"], true);
    assert_eq!(json["deleted"], 0);
    assert_eq!(fx.fingerprint(), before, "the guard let something through");

    let dry = fx.gc(&["--max-delete-fraction", "0.01", "--output", "json"]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert_eq!(json_stdout(&dry)["guard"]["tripped"], true);
    let human = fx.gc(&["--max-delete-fraction", "0.01"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("TRIPPED"));
}

pub fn locations_of_other_partitions_are_refused(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 22);
    let before = fx.fingerprint();
    let out = fx.gc(&["--location", "chunks-b/tier/p2/x", "--execute"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("p2"), "{}", stderr(&out));
    assert_eq!(fx.fingerprint(), before);
}

pub fn a_listing_failure_exits_5_and_deletes_nothing(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 23);
    let before = fx.fingerprint();
    let location = format!("no-such-bucket-gc-test/{}", fx.partition);
    let out = fx.gc(&["--location", &location, "--execute", "--max-retries", "0"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-bucket-gc-test"), "{}", stderr(&out));
    assert_eq!(fx.fingerprint(), before);
}

pub fn human_summary_reads_well(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 24);
    let out = fx.gc(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let header = format!("dry-run of partition {}", fx.partition);
    for needle in [header.as_str(), "planned", "guard", "durations", "next"] {
        assert!(text.contains(needle), "summary lacks {needle:?}:\n{text}");
    }
}

/// What every aging test rests on: the store reports the age we gave an object both in
/// listings (what GC decides on) and in HEAD (the re-read right before a delete).
pub fn backdated_objects_show_their_age_in_list_and_head(backend: &Backend) {
    let fx = partition(backend, |c| {
        c.seed = 25;
        c.referenced_ids = 50;
        c.garbage_chunks = 10;
        c.young_chunks = 5;
    });
    let sets = fx.summary.sets.as_ref().unwrap();
    let (location, id) = &sets.garbage[0];
    let key = location.chunk_key(id);
    let when = chrono::DateTime::from_timestamp(1_500_000_000, 0).unwrap();
    fx.stores.set_last_modified(location.bucket(), &key, when).unwrap();
    let store = fx.stores.bucket(location.bucket()).unwrap();
    let path = ObjectPath::from(key.as_str());
    let head = runtime().block_on(store.head(&path)).unwrap();
    assert_eq!(head.last_modified, when, "HEAD does not report the backdated time");
    let dir = ObjectPath::from(key.rsplit_once('/').unwrap().0);
    let listed: Vec<_> = runtime().block_on(store.list(Some(&dir)).try_collect::<Vec<_>>()).unwrap();
    let mine: Vec<_> = listed.iter().filter(|m| m.location == path).collect();
    assert_eq!(mine.len(), 1, "{key} not listed");
    assert_eq!(mine[0].last_modified, when, "the listing does not report the backdated time");
}

/// Adds a live snapshot `name` with a unified manifest naming `location`, keeping the live
/// set's count right.
fn add_unified_snapshot(fx: &Fixture, name: &str, location: gc_partition::locations::Location) {
    use gc_partition::ids::{ChunkId, PartitionId, SnapshotId};
    use gc_partition::manifest::unified::{ChunkGroup, UnifiedManifest, render};
    let manifest = UnifiedManifest {
        snapshot_id: SnapshotId::parse(name).unwrap(),
        partition_id: PartitionId::parse(&fx.partition).unwrap(),
        created_unix_ms: 0,
        locations: vec![location],
        groups: vec![ChunkGroup::new(0, &[ChunkId([7; 32])])],
    };
    let key = format!("partitions/{}/snapshots/{name}.snap", fx.partition);
    fx.write(&fx.meta_bucket, &key, render(&manifest));
    let live = std::fs::read_to_string(&fx.live_path).unwrap();
    let count = fx.summary.snapshots.len();
    let live = format!("{name}\n{}", live.replace(&format!("count={count} "), &format!("count={} ", count + 1)));
    std::fs::write(&fx.live_path, live).unwrap();
}

pub fn a_manifest_naming_another_partitions_location_exits_4(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 25);
    // p2's chunks sit beside p1's in the same bucket: GC must not even list them.
    let other = gc_partition::locations::Location::new("chunks-b", "tier/p2/x").unwrap();
    add_unified_snapshot(&fx, "intruder", other);
    let before = fx.fingerprint();
    let out = fx.gc(&["--execute", "--max-delete-fraction", "1"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("intruder") && err.contains("p2"), "{err}");
    assert_eq!(fx.fingerprint(), before);
}

pub fn a_location_named_only_by_a_manifest_is_listed_and_collected(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 26);
    let extra = gc_partition::locations::Location::new("chunks-z", &fx.partition).unwrap();
    let garbage = gc_partition::ids::ChunkId([9; 32]);
    let key = extra.chunk_key(&garbage);
    fx.stores.create_bucket("chunks-z").unwrap();
    fx.write("chunks-z", &key, b"old garbage".to_vec());
    let old = chrono::Utc::now() - chrono::TimeDelta::days(30);
    fx.stores.set_last_modified("chunks-z", &key, old).unwrap();
    add_unified_snapshot(&fx, "newcomer", extra);
    // One garbage chunk: at the default rate a bloom false positive (a fresh seed each run)
    // would keep it about once in a thousand runs.
    let out = fx.gc(&["--execute", "--verify", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!fx.exists("chunks-z", &key), "garbage in a manifest-only location was not collected");
    let json = json_stdout(&out);
    assert!(json["per_location"].as_array().unwrap().iter().any(|l| l["bucket"] == "chunks-z"));
    // The referenced chunk of `newcomer` does not exist: verify after execute only checks
    // what was present before, so the run passes; a dry-run verify reports it missing.
    let dry = fx.gc(&["--verify", "--output", "json"]);
    assert_eq!(code(&dry), 8, "{}", stderr(&dry));
    assert_eq!(json_stdout(&dry)["verify"]["missing_before"], 1);
}

/// `gc_synth`'s command line (with `--backdate-root` on the servers) makes a partition GC
/// collects. Run in process (`gc_kit::synth_cli::run`, what the `gc_synth` binary runs), with
/// the environment the servers need: the kit's binaries are not this package's.
pub fn gc_synth_makes_a_partition_gc_can_collect(backend: &Backend) {
    // A tiny fixture only to get a store (and, on S3, the server's turn).
    let fx = partition(backend, |c| {
        c.snapshots = 1;
        c.referenced_ids = 5;
        c.garbage_chunks = 0;
        c.young_chunks = 0;
        c.foreign_objects = 0;
        c.dead_snapshots = 0;
    });
    let live = fx.path("live-p9.txt");
    let mut synth = vec!["--store", &fx.url, "--partition", "p9", "--seed", "3", "--snapshots", "4"];
    synth.extend(["--referenced-ids", "300", "--garbage", "100", "--young", "10"]);
    synth.extend(["--live-set-out", live.to_str().unwrap()]);
    if let Some(root) = backend.server_root() {
        synth.extend(["--backdate-root", root.to_str().unwrap()]);
    }
    if let Err(e) = gc_kit::synth_cli::run(&synth, backend.env()) {
        panic!("gc_synth {synth:?}: {e}");
    }
    let args = ["--partition", "p9", "--live-snapshots", live.to_str().unwrap(), "--cutoff", "7d"];
    let out = fx.gc_raw(&[&args[..], &["--execute", "--verify", "--output", "json"]].concat(), None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    let n = |k: &str| json[k].as_u64().unwrap();
    assert!(n("deleted") >= 95, "{json}");
    assert_eq!(n("chunks_scanned"), 410, "300 referenced + 100 garbage + 10 young");
    assert_eq!(n("young_kept") + n("referenced_kept") + n("deleted"), 410);
}

/// Spec 9.2 on every store: a deleting set missing a snapshot whose manifests are old stops
/// the run before any delete (exit 3); with the complete set an execute reclaims the deleting
/// snapshots' manifests, through the store's compare-and-delete, and nothing else.
pub fn the_cross_check_stops_an_incomplete_set_and_an_execute_reclaims(backend: &Backend) {
    let out_dir = tempfile::tempdir().unwrap();
    let deleting = out_dir.path().join("deleting.txt");
    let fx = partition(backend, |c| {
        c.dead_snapshots = 2;
        c.deleting_set_path = Some(deleting.clone());
    });
    let text = std::fs::read_to_string(&deleting).unwrap();
    let ids: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert_eq!(ids.len(), 2);
    let trailer = text.lines().find(|l| l.starts_with("# end")).unwrap();
    let partial = fx.path("partial.txt");
    std::fs::write(&partial, format!("{}\n{}\n", ids[1], trailer.replace("count=2", "count=1"))).unwrap();

    let before = fx.fingerprint();
    let out = fx.gc(&["--deleting-snapshots", partial.to_str().unwrap(), "--execute", "--max-delete-fraction", "1"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("{} (", ids[0])), "{}", stderr(&out));
    assert_eq!(fx.fingerprint(), before, "the cross-check's refusal changed the store");

    let partition_id = gc_partition::ids::PartitionId::parse(&fx.partition).unwrap();
    let manifests = |fx: &Fixture| -> Vec<(String, String)> {
        let store = fx.stores.bucket(&fx.meta_bucket).unwrap();
        let dir = gc_partition::manifest::snapshots_dir(&partition_id);
        let listed: Vec<_> = runtime().block_on(async {
            use futures::TryStreamExt;
            store.list(Some(&ObjectPath::from(dir.as_str()))).try_collect::<Vec<_>>().await.unwrap()
        });
        listed
            .into_iter()
            .filter_map(|m| {
                let key = m.location.to_string();
                gc_partition::manifest::manifest_of_key(&partition_id, &key).map(|(s, _)| (s.to_string(), key))
            })
            .collect()
    };
    let live_before: Vec<_> = manifests(&fx).into_iter().filter(|(s, _)| !ids.contains(&s.as_str())).collect();
    // A bloom false positive would keep a garbage chunk (neither freed nor lost): made rare.
    let flags = ["--execute", "--verify", "--bloom-fpr", EXACT_FPR, "--output", "json"];
    let out = fx.gc(&[&["--deleting-snapshots", deleting.to_str().unwrap()][..], &flags].concat());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    let mut expected: Vec<&str> = ids.clone();
    expected.sort_unstable();
    assert_eq!(json["reclaimed_snapshots"], serde_json::json!(expected));
    // The accounting against the synthesizer's layout: a dead snapshot names live ids (shared)
    // and garbage it owns alone (old, so deleted): nothing else, nothing missing.
    let accounted = json["deleting_snapshots"].as_array().unwrap();
    assert_eq!(accounted.len(), 2);
    let sum = |field: &str| accounted.iter().map(|a| a[field].as_u64().unwrap()).sum::<u64>();
    let counts = ["planned_deletes", "deleted", "refreshed_kept", "delete_failures", "young_kept"].map(|k| &json[k]);
    assert_eq!(sum("freed_chunks"), fx.summary.dead_exclusive_ids, "{accounted:?} {counts:?}");
    assert!(sum("shared_kept") > 0 && sum("not_found") == 0, "{accounted:?}");
    for a in accounted {
        assert_eq!(a["error"], serde_json::Value::Null, "{a}");
        let (chunks, shared, freed) = (a["chunks"].as_u64(), a["shared_kept"].as_u64(), a["freed_chunks"].as_u64());
        assert_eq!(chunks, Some(shared.unwrap() + freed.unwrap()), "{a}");
    }
    let after = manifests(&fx);
    assert!(after.iter().all(|(s, _)| !ids.contains(&s.as_str())), "a reclaimed manifest is still there: {after:?}");
    assert_eq!(after, live_before, "a live snapshot's manifest changed");
}

/// A reviewed plan deletes its chunks on every store (spec 8.3, 10.1): where the listing gave
/// versions the records carry them and each delete is conditioned on its record's version;
/// elsewhere the re-read compares last-modified at the precision both sides carry.
pub fn a_reviewed_plan_deletes_its_chunks(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 31);
    let plan = fx.path("reviewed.plan");
    let out = fx.gc(&["--plan-out", plan.to_str().unwrap(), "--bloom-fpr", EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = std::fs::read_to_string(&plan).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["version"], 3);
    let records: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "delete").collect();
    assert!(!records.is_empty());
    for record in &records {
        let version = record.get("version").and_then(|v| v.as_str());
        assert_eq!(version.is_some(), backend.lists_versions(), "{record}");
    }
    let live = fx.live_path.to_str().unwrap();
    let args = ["--partition", &fx.partition, "--live-snapshots", live, "--apply-plan", plan.to_str().unwrap()];
    let out = fx.gc_raw(&[&args[..], &["--output", "json"]].concat(), None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["deleted"], records.len(), "{json}");
    assert_eq!(json["refreshed_kept"], 0, "nothing was written after the review: {json}");
    for record in &records {
        let (bucket, key) = (record["bucket"].as_str().unwrap(), record["key"].as_str().unwrap());
        assert!(!fx.exists(bucket, key), "{bucket}/{key} reviewed but not deleted");
    }
    if backend.lists_versions() {
        assert_eq!(json["requests"]["head"], 0, "a versioned delete needs no re-read: {json}");
    }
}

/// HEAD and delete requests an execute sends per deleted chunk, over those of a dry run on
/// the same store (spec 10.1), within what the store allows; the report says the same.
pub fn execute_sends_few_requests_per_deleted_chunk(backend: &Backend) {
    let fx = partition(backend, |c| c.seed = 37);
    let dry = json_stdout(&fx.gc(&["--output", "json", "--bloom-fpr", EXACT_FPR]));
    let out = fx.gc(&["--execute", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    let deleted = json["deleted"].as_u64().unwrap();
    assert_eq!(json["deleted"], dry["planned_deletes"], "{json}");
    let count = |r: &serde_json::Value, kind: &str| r["requests"][kind].as_u64().unwrap();
    let sent = |r: &serde_json::Value| count(r, "head") + count(r, "delete_calls");
    let reported = json["requests"]["per_deleted_chunk"].as_f64().unwrap();
    assert!((reported - sent(&json) as f64 / deleted as f64).abs() < 1e-9, "{json}");
    let Some((re_reads, batch)) = backend.delete_requests() else { return };
    assert_eq!(count(&json, "head") - count(&dry, "head"), re_reads * deleted, "re-reads: {json}");
    // Batches never span two locations.
    let most_calls: u64 = dry["per_location"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["planned_deletes"].as_u64().unwrap().div_ceil(batch))
        .sum();
    let calls = count(&json, "delete_calls") - count(&dry, "delete_calls");
    assert!(calls <= most_calls, "{calls} delete requests for {deleted} chunks, batches of {batch}: {json}");
}
