//! Safety rules that each test here would miss if the rule were gone (spec 4): the guard's
//! denominator, boundary and default; the re-read's `>=` boundary; chunks that vanish after
//! the listing; never listing another partition's location; a live set from the future.
//! In-process runs go through `common::faults` (a recording, fault-injecting `ObjectStore`
//! wrapper); the others spawn the binary on a `file://` store.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use common::faults::{FaultPlan, Faults, Op};
use common::*;
use gc_kit::Ageing;
use gc_kit::synth::{SynthConfig, SynthSummary, synthesize};
use gc_partition::cli::Args;
use gc_partition::config::Config;
use gc_partition::gc::{self, Progress, Stop};
use gc_partition::ids::{ChunkId, PartitionId, SnapshotId};
use gc_partition::locations::Location;
use gc_partition::report::Report;
use gc_partition::store::{StoreOptions, Stores};

/// A `file://` partition made in-process, for runs through a fault layer.
struct Local {
    dir: tempfile::TempDir,
    url: String,
    stores: Stores,
    summary: SynthSummary,
    live: std::path::PathBuf,
}

fn local(partition: &str, tweak: impl FnOnce(&mut SynthConfig)) -> Local {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{}", root.display());
    let options = StoreOptions {
        max_retries: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        ..StoreOptions::default()
    };
    let stores = Stores::from_url(&url, options).unwrap();
    let live = dir.path().join("live.txt");
    let summary = synth_into(&stores, partition, &live, tweak);
    Local { dir, url, stores, summary, live }
}

fn synth_into(
    stores: &Stores,
    partition: &str,
    live: &std::path::Path,
    tweak: impl FnOnce(&mut SynthConfig),
) -> SynthSummary {
    let mut config = SynthConfig {
        partition: PartitionId::parse(partition).unwrap(),
        snapshots: 3,
        referenced_ids: 120,
        garbage_chunks: 60,
        young_chunks: 10,
        foreign_objects: 3,
        dead_snapshots: 0,
        extra_locations: 2,
        record_sets: true,
        live_set_path: Some(live.to_owned()),
        ..SynthConfig::default()
    };
    tweak(&mut config);
    runtime().block_on(synthesize(stores, &config)).unwrap()
}

impl Local {
    fn run(&self, faults: &Arc<Faults>, extra: &[&str]) -> Report {
        self.run_config(faults, extra, |_| {})
    }

    fn run_config(&self, faults: &Arc<Faults>, extra: &[&str], tweak: impl FnOnce(&mut Config)) -> Report {
        let live = self.live.to_str().unwrap();
        let partition = self.summary.partition.to_string();
        let mut argv = vec!["gc_partition", "--partition", &partition, "--live-snapshots", live, "--store", &self.url];
        argv.extend_from_slice(extra);
        let mut config = Config::from_args(&Args::try_parse_from(argv).unwrap(), Utc::now()).unwrap();
        tweak(&mut config);
        let stop = Stop::default();
        faults.watch(&stop);
        let report = runtime().block_on(gc::run(&faults.wrap(&self.stores), &config, &stop, &Progress::default()));
        common::schemas::check_in_process(extra, &report);
        report
    }

    fn exists(&self, name: &str) -> bool {
        self.dir.path().join("store").join(name).exists()
    }

    fn size(&self, name: &str) -> u64 {
        std::fs::metadata(self.dir.path().join("store").join(name)).unwrap().len()
    }

    fn garbage(&self) -> Vec<(Location, ChunkId)> {
        self.summary.sets.as_ref().unwrap().garbage.clone()
    }
}

fn names(set: &[(Location, ChunkId)]) -> Vec<String> {
    set.iter().map(|(l, id)| chunk_name(l, id)).collect()
}

fn key_of(name: &str) -> String {
    name.split_once('/').unwrap().1.to_owned()
}

/// Spec 4.6: a chunk whose re-read last-modified is now *at* the cutoff is kept.
#[test]
fn a_chunk_refreshed_to_exactly_the_cutoff_is_kept() {
    let p = local("p1", |_| {});
    let cutoff = DateTime::from_timestamp((Utc::now() - TimeDelta::days(7)).timestamp(), 0).unwrap();
    let garbage = names(&p.garbage());
    let target = garbage[garbage.len() / 2].clone();
    let writer = p.stores.clone();
    let plan = FaultPlan {
        on_first_head: Some((
            key_of(&target),
            Box::new(move |bucket, path| writer.set_last_modified(bucket, path.as_ref(), cutoff).unwrap()),
        )),
        ..FaultPlan::default()
    };
    let faults = Faults::new(plan);
    let cutoff_arg = cutoff.to_rfc3339();
    let report = p.run(
        &faults,
        &["--cutoff", &cutoff_arg, "--execute", "--verify", "--max-delete-fraction", "1", "--bloom-fpr", EXACT_FPR],
    );
    assert_eq!(report.exit_code, 0, "{:?}", report.error);
    assert_eq!(report.planned_deletes, garbage.len() as u64, "the target was old at the listing");
    assert_eq!(report.refreshed_kept, 1);
    assert!(p.exists(&target), "a chunk refreshed to exactly the cutoff was deleted");
    for name in garbage.iter().filter(|n| **n != target) {
        assert!(!p.exists(name), "{name} was left");
    }
    assert_eq!(report.deleted, garbage.len() as u64 - 1);
}

/// Spec 4.6 "a delete that finds the object already gone counts as done": chunks deleted by
/// someone else after the listing, before their re-read or right before their delete, are
/// counted deleted, never failed, and their bytes are not counted as freed by this run.
#[test]
fn chunks_that_vanish_after_the_listing_count_as_deleted_not_failed() {
    let p = local("p1", |_| {});
    let garbage = names(&p.garbage());
    let sizes: BTreeMap<String, u64> = garbage.iter().map(|n| (n.clone(), p.size(n))).collect();
    let before_head: Vec<String> = garbage.iter().step_by(7).cloned().collect();
    let before_delete: Vec<String> = garbage.iter().skip(3).step_by(7).cloned().collect();
    let plan = FaultPlan {
        vanish_before_head: before_head.iter().map(|n| key_of(n)).collect(),
        vanish_before_delete: before_delete.iter().map(|n| key_of(n)).collect(),
        ..FaultPlan::default()
    };
    let faults = Faults::new(plan);
    let report = p.run(
        &faults,
        &["--cutoff", "7d", "--execute", "--verify", "--max-delete-fraction", "1", "--bloom-fpr", EXACT_FPR],
    );
    assert_eq!(report.exit_code, 0, "{:?} {:?}", report.error, report.failed_deletes);
    assert_eq!(report.delete_failures, 0, "{:?}", report.failed_deletes);
    assert_eq!(report.planned_deletes, garbage.len() as u64);
    assert_eq!(report.deleted, garbage.len() as u64, "vanished chunks count as deleted");
    let all: u64 = sizes.values().sum();
    let vanished: u64 = before_head.iter().chain(&before_delete).map(|n| sizes[n]).sum();
    assert_eq!(report.planned_bytes, all);
    assert_eq!(report.deleted_bytes, all - vanished, "bytes freed by this run: not those someone else deleted");
    assert!(garbage.iter().all(|n| !p.exists(n)));
    // The chunks gone before their re-read were never sent to delete; the others were (on
    // `file://` under the key they were renamed aside to).
    let chunk_key = |key: &str| gc_partition::locations::key_of_held(key).unwrap_or(key).to_owned();
    let deletes: HashSet<String> = faults
        .calls()
        .into_iter()
        .filter(|c| c.op == Op::Delete)
        .map(|c| format!("{}/{}", c.bucket, chunk_key(&c.key)))
        .collect();
    assert!(before_head.iter().all(|n| !deletes.contains(n)), "a chunk gone at its re-read was still deleted");
    assert!(before_delete.iter().all(|n| deletes.contains(n)));
}

/// Spec 4.3: GC never lists where another partition may keep chunks. Every listing call of a
/// run is recorded; each must be under a prefix with a segment equal to the partition id.
/// The neighbour partition shares every bucket and is left byte for byte as it was.
#[test]
fn a_run_lists_only_its_own_partitions_locations() {
    let p = local("p1", |_| {});
    let other_live = p.dir.path().join("other-live.txt");
    let other = synth_into(&p.stores, "p2", &other_live, |c| c.seed = 99);
    assert!(
        other.locations.iter().any(|l| p.summary.locations.iter().any(|m| m.bucket() == l.bucket())),
        "the partitions share a bucket"
    );
    let root = p.dir.path().join("store");
    let neighbour = |fp: Fingerprint| -> Fingerprint {
        fp.into_iter().filter(|((_, path), _)| path.split('/').any(|s| s == "p2")).collect()
    };
    let before = neighbour(fingerprint_dir(&root));
    assert!(!before.is_empty());
    let faults = Faults::recorder();
    let extra = format!("{}/p1/extra", p.summary.locations[0].bucket());
    let report = p
        .run(&faults, &["--cutoff", "7d", "--execute", "--verify", "--max-delete-fraction", "1", "--location", &extra]);
    assert_eq!(report.exit_code, 0, "{:?}", report.error);
    let listings: Vec<_> =
        faults.calls().into_iter().filter(|c| matches!(c.op, Op::List | Op::ListDelimiter)).collect();
    assert!(listings.len() as u64 >= report.locations, "every location is listed: {listings:?}");
    for call in &listings {
        assert!(
            call.key.split('/').any(|segment| segment == "p1"),
            "listed {}/{:?}, which is not partition p1's",
            call.bucket,
            call.key
        );
    }
    assert_eq!(neighbour(fingerprint_dir(&root)), before, "the other partition changed");
}

/// A live set taken more than 5 minutes in the future is refused (exit 3, store unchanged),
/// through the real binary and its clock; 4 minutes ahead is within the allowed skew.
#[test]
fn a_live_set_from_the_future_is_refused() {
    let fx = partition(&Backend::File, |c| {
        c.referenced_ids = 60;
        c.garbage_chunks = 20;
        c.young_chunks = 5;
    });
    let before = fx.fingerprint();
    let live = |ahead: TimeDelta| {
        let path = fx.path("future.txt");
        let text = gc_partition::live_set::render(&fx.summary.snapshots, Utc::now() + ahead);
        std::fs::write(&path, text).unwrap();
        path
    };
    let path = live(TimeDelta::minutes(10));
    let args = ["--partition", &fx.partition, "--live-snapshots", path.to_str().unwrap(), "--cutoff", "7d"];
    let out = fx.gc_raw(&[&args[..], &["--execute", "--max-delete-fraction", "1"]].concat(), None);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("taken_at"), "{}", stderr(&out));
    assert_eq!(fx.fingerprint(), before, "a refused live set changed the store");

    let path = live(TimeDelta::minutes(4));
    let args = ["--partition", &fx.partition, "--live-snapshots", path.to_str().unwrap(), "--cutoff", "7d"];
    let out = fx.gc_raw(&args, None);
    assert_eq!(code(&out), 0, "4 minutes of skew is allowed: {}", stderr(&out));
}

/// Spec 4 `--max-delete-fraction`: the fraction is planned deletes over the chunks older than
/// the cutoff (young ones excluded, referenced ones included), it trips only when *above* F,
/// and F defaults to 0.5.
#[test]
fn the_delete_fraction_guard_counts_old_chunks_trips_above_f_and_defaults_to_one_half() {
    let fx = partition(&Backend::File, |c| {
        c.referenced_ids = 100;
        c.garbage_chunks = 150;
        c.young_chunks = 40;
        c.dead_snapshots = 0;
        c.extra_locations = 1;
    });
    let sets = fx.summary.sets.as_ref().unwrap();
    let mut garbage = names(&sets.garbage);
    let referenced = sets.referenced.len();
    let run = |extra: &[&str]| {
        let out = fx.gc(&[&["--output", "json", "--bloom-fpr", EXACT_FPR], extra].concat());
        (code(&out), json_stdout(&out))
    };

    // The denominator: every referenced and garbage chunk (all old), no young one.
    let (exit, json) = run(&[]);
    assert_eq!(exit, 0);
    assert_eq!(json["planned_deletes"], garbage.len() as u64);
    assert_eq!(json["guard"]["old_chunks"], (referenced + garbage.len()) as u64, "{}", json["guard"]);

    // Make k garbage chunks young, so that planned / old is just above one half, then
    // exactly one half: (G - k) / (R + G - k) = 1/2 when k = 2G - (R + G).
    let k = 2 * garbage.len() - (referenced + garbage.len());
    let refresh = |names: Vec<String>| {
        for name in names {
            let (bucket, key) = name.split_once('/').unwrap();
            fx.stores.set_last_modified(bucket, key, Utc::now()).unwrap();
        }
    };
    refresh(garbage.drain(..k - 1).collect());
    let (planned, old) = (garbage.len() as u64, (referenced + garbage.len()) as u64);
    assert!(planned * 2 > old);
    let before = fx.fingerprint();
    let (exit, json) = run(&["--execute"]);
    assert_eq!(exit, 6, "{planned}/{old} is above the default 0.5: {json}");
    assert_eq!(json["guard"]["old_chunks"], old);
    assert_eq!(fx.fingerprint(), before, "a tripped guard deleted something");
    let fraction = planned as f64 / old as f64;
    let just_below = f64::from_bits(fraction.to_bits() - 1).to_string();
    let (exit, _) = run(&["--execute", "--max-delete-fraction", &just_below]);
    assert_eq!(exit, 6, "{planned}/{old} is above {just_below}");
    assert_eq!(fx.fingerprint(), before);

    // Exactly one half, with the default: not above it, so the run deletes.
    refresh(garbage.drain(..1).collect());
    let planned = garbage.len() as u64;
    assert_eq!(planned * 2, (referenced as u64) + planned);
    let (exit, json) = run(&["--execute", "--verify"]);
    assert_eq!(exit, 0, "exactly 0.5 does not trip the default guard: {json}");
    assert_eq!(json["guard"]["fraction"], 0.5);
    assert_eq!(json["deleted"], planned);
    assert!(garbage.iter().all(|n| !fx.exists(n.split_once('/').unwrap().0, &key_of(n))));
}

/// `--verify` in a dry run reports exactly the referenced (id, location) pairs not found. The
/// same id is referenced in two locations and stored in one only; its neighbours share its
/// first two bytes (one fan-out directory) and are all present.
#[test]
fn verify_reports_exactly_the_copy_missing_from_one_of_two_locations() {
    for stored_in in [0usize, 1] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let url = format!("file://{}", root.display());
        let locations = [Location::new("chunks", "p1/a").unwrap(), Location::new("chunks", "p1/b").unwrap()];
        let id = |n: u8| {
            let mut id = [n; 32];
            id[..2].copy_from_slice(&[0xab, 0xcd]);
            ChunkId(id)
        };
        let (x, others) = (id(1), [id(2), id(3), id(4), id(5)]);
        let groups = [vec![others[0], x, others[1]], vec![others[2], x, others[3]]];
        let manifest = gc_partition::manifest::unified::UnifiedManifest {
            snapshot_id: SnapshotId::parse("s1").unwrap(),
            partition_id: PartitionId::parse("p1").unwrap(),
            created_unix_ms: 0,
            locations: locations.to_vec(),
            groups: groups
                .iter()
                .enumerate()
                .map(|(i, ids)| gc_partition::manifest::unified::ChunkGroup::new(i as u32, ids))
                .collect(),
        };
        let write = |bucket: &str, key: &str, data: &[u8]| {
            let path = root.join(bucket).join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        };
        write("snapshots", "partitions/p1/snapshots/s1.snap", &gc_partition::manifest::unified::render(&manifest));
        let mut missing = String::new();
        for (i, (location, ids)) in locations.iter().zip(&groups).enumerate() {
            for chunk in ids {
                if *chunk == x && i != stored_in {
                    missing = format!("{}/{}", location.bucket(), location.chunk_key(chunk));
                    continue;
                }
                write(location.bucket(), &location.chunk_key(chunk), b"chunk");
            }
        }
        let live = dir.path().join("live.txt");
        let snapshots = [SnapshotId::parse("s1").unwrap()];
        std::fs::write(&live, gc_partition::live_set::render(&snapshots, Utc::now())).unwrap();
        let live = live.to_str().unwrap();
        let args = ["--partition", "p1", "--live-snapshots", live, "--cutoff", "7d", "--store", &url];
        let out = gc_binary(&[&args[..], &["--verify", "--output", "json"]].concat(), None, &[]);
        assert_eq!(code(&out), 8, "a referenced chunk is missing: {}", stderr(&out));
        let json = json_stdout(&out);
        assert_eq!(json["verify"]["ok"], false);
        assert_eq!(json["verify"]["missing_before"], 1, "stored in location {stored_in}: {}", json["verify"]);
        assert_eq!(json["verify"]["missing_before_keys"], serde_json::json!([missing]), "{}", json["verify"]);
        assert_eq!(json["verify"]["planned_but_referenced"], 0);
    }
}

/// Spec 4 (`--verify`): the exact check finds a referenced chunk among the planned deletes
/// and stops the run before any delete (exit 8), whatever the filter said. The filter is
/// made to miss one referenced id (`Config::filter_omits`, a test-kit hook: a Bloom filter
/// never misses a member, so nothing else reaches this check). Without `--verify` the same
/// wrong filter deletes that chunk: the check, not luck, is what keeps it.
#[test]
fn verify_stops_a_run_whose_filter_misses_a_referenced_chunk() {
    let p = local("p1", |_| {});
    let sets = p.summary.sets.as_ref().unwrap();
    let (location, id) = sets.referenced[sets.referenced.len() / 2].clone();
    let target = chunk_name(&location, &id);
    let omit = |config: &mut Config| config.filter_omits = vec![id.0];
    let flags = ["--cutoff", "7d", "--max-delete-fraction", "1", "--bloom-fpr", EXACT_FPR];
    let store = p.dir.path().join("store");
    let before = fingerprint_dir(&store);

    for extra in [&["--verify"][..], &["--execute", "--verify"][..]] {
        let faults = Faults::new(FaultPlan::default());
        let report = p.run_config(&faults, &[&flags[..], extra].concat(), omit);
        assert_eq!(report.exit_code, 8, "{extra:?}: {:?}", report.error);
        let verify = report.verify.as_ref().unwrap();
        assert_eq!(verify.planned_but_referenced, 1, "{extra:?}");
        assert_eq!(verify.planned_but_referenced_keys, vec![target.clone()], "{extra:?}");
        assert_eq!(report.deleted, 0, "{extra:?}");
        assert_eq!(faults.count(Op::Delete), 0, "{extra:?}: a delete was sent");
        assert!(fingerprint_dir(&store) == before, "{extra:?}: the store changed");
    }

    let faults = Faults::new(FaultPlan::default());
    let report = p.run_config(&faults, &[&flags[..], &["--execute"][..]].concat(), omit);
    assert_eq!(report.exit_code, 0, "{:?}", report.error);
    assert!(!p.exists(&target), "without --verify the wrong filter should have cost the chunk");
}
