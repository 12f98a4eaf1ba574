//! Model-based property test: random small partitions (`memory://`, from the synthesizer
//! with a random configuration) × random fault schedules, through the real `gc::run`.
//!
//! For every case:
//! - no referenced chunk, young chunk or foreign object is deleted; nothing but garbage is;
//! - the exit code is the one the fault calls for (and an aborting fault deletes nothing);
//! - a clean rerun converges: afterwards the garbage left is exactly what that rerun's bloom
//!   false positives kept (plus a chunk a writer refreshed).

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use common::faults::{FaultPlan, Faults, Kind, Op};
use futures::TryStreamExt;
use gc_partition::cli::Args;
use gc_partition::config::Config;
use gc_partition::error::Signal;
use gc_partition::gc::{self, Progress, Stop};
use gc_partition::report::Report;
use gc_partition::store::{StoreOptions, Stores};
use gc_partition::synth::{SynthConfig, synthesize};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Fault {
    None,
    /// This share of calls fails transiently (retried: as if no fault). At most 20%: with 12
    /// retries a call then fails for good with odds 0.2^13, about 1e-9.
    Transient(f64),
    /// Every chunk listing breaks half way, for good: exit 5.
    ListingBroken,
    /// A live snapshot's manifest cannot be read: exit 4.
    ManifestUnreadable(usize),
    /// Deletes of every Nth garbage chunk fail for good: exit 7 if one was planned.
    DeletesFail(usize),
    /// A stop arrives with the Nth delete: exit 130 if there were that many.
    StopAt(u64),
    /// A writer refreshes the Nth garbage chunk right before its re-read.
    Refresh(usize),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::None),
        (0.05f64..0.2).prop_map(Fault::Transient),
        Just(Fault::ListingBroken),
        (0usize..8).prop_map(Fault::ManifestUnreadable),
        (1usize..6).prop_map(Fault::DeletesFail),
        (1u64..40).prop_map(Fault::StopAt),
        (0usize..50).prop_map(Fault::Refresh),
    ]
}

fn synth_config() -> impl Strategy<Value = SynthConfig> {
    (any::<u64>(), 1usize..6, 1u64..200, 0u64..120, 0u64..20, 0u64..6, 0usize..3, 0usize..3).prop_map(
        |(seed, snapshots, referenced_ids, garbage_chunks, young_chunks, foreign_objects, extra_locations, dead)| {
            SynthConfig {
                seed,
                snapshots,
                referenced_ids,
                garbage_chunks,
                young_chunks,
                foreign_objects,
                extra_locations,
                dead_snapshots: dead,
                record_sets: true,
                ..SynthConfig::default()
            }
        },
    )
}

fn run(stores: &Stores, live: &std::path::Path, stop: &Stop, extra: &[&str]) -> Report {
    let live = live.to_str().unwrap();
    let mut argv = vec![
        "gc_partition",
        "--partition",
        "p1",
        "--live-snapshots",
        live,
        "--cutoff",
        "7d",
        "--store",
        "memory://",
        "--max-delete-fraction",
        "1",
        "--bloom-fpr",
        "0.02",
    ];
    argv.extend_from_slice(extra);
    let config = Config::from_args(&Args::try_parse_from(argv).unwrap(), chrono::Utc::now()).unwrap();
    common::runtime().block_on(gc::run(stores, &config, stop, &Progress::default()))
}

fn objects(stores: &Stores, buckets: &[String]) -> BTreeSet<String> {
    common::runtime().block_on(async {
        let mut all = BTreeSet::new();
        for bucket in buckets {
            let listed: Vec<_> = stores.bucket(bucket).unwrap().list(None).try_collect().await.unwrap();
            all.extend(listed.into_iter().map(|m| format!("{bucket}/{}", m.location)));
        }
        all
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn faults_never_lose_data_and_a_clean_rerun_converges(config in synth_config(), fault in fault(), execute_first in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.txt");
        let options = StoreOptions {
            max_retries: 12,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..StoreOptions::default()
        };
        let stores = Stores::from_url("memory://", options).unwrap();
        let config = SynthConfig { live_set_path: Some(live.clone()), ..config };
        let summary = match common::runtime().block_on(synthesize(&stores, &config)) {
            Ok(summary) => summary,
            Err(e) => return Err(TestCaseError::reject(format!("synth: {e}"))),
        };
        let sets = summary.sets.as_ref().unwrap();
        let mut buckets: Vec<String> = summary.locations.iter().map(|l| l.bucket().to_owned()).collect();
        buckets.push(config.meta_bucket.clone());
        buckets.sort();
        buckets.dedup();
        let name = |l: &gc_partition::locations::Location, id| common::chunk_name(l, id);
        let garbage: Vec<String> = sets.garbage.iter().map(|(l, id)| name(l, id)).collect();
        let keep: Vec<String> = sets
            .referenced
            .iter()
            .chain(&sets.young)
            .map(|(l, id)| name(l, id))
            .chain(sets.foreign.iter().map(|(b, k)| format!("{b}/{k}")))
            .collect();
        let before = objects(&stores, &buckets);
        let key_of = |n: &String| n.split_once('/').unwrap().1.to_owned();

        let mut plan = FaultPlan::default();
        let mut refreshed: Option<String> = None;
        match &fault {
            Fault::None => {}
            Fault::Transient(share) => {
                plan.transient_share = *share;
                plan.seed = config.seed;
            }
            Fault::ListingBroken => {
                plan.break_listings_under = Some("/".into());
                plan.break_listings_except = Some("/snapshots".into());
                plan.break_listing_share = 1.0;
                plan.break_listing_kind = Some(Kind::Permanent);
            }
            Fault::ManifestUnreadable(n) => {
                let snapshot = &summary.snapshots[n % summary.snapshots.len()];
                let keys: Vec<String> = before
                    .iter()
                    .filter(|o| o.contains(&format!("/snapshots/{snapshot}.")))
                    .map(key_of)
                    .collect();
                plan.fail_get_keys = keys.into_iter().map(|k| (k, Kind::Permanent)).collect::<HashMap<_, _>>();
            }
            Fault::DeletesFail(n) => {
                plan.fail_delete_keys = garbage.iter().step_by(*n).map(key_of).collect();
            }
            Fault::StopAt(n) => plan.stop_at_delete = Some((*n, Signal::Interrupt)),
            Fault::Refresh(n) => {
                if !garbage.is_empty() {
                    let target = garbage[n % garbage.len()].clone();
                    let writer = stores.clone();
                    plan.on_first_head = Some((
                        key_of(&target),
                        Box::new(move |bucket, path| {
                            writer.set_last_modified(bucket, path.as_ref(), chrono::Utc::now()).unwrap();
                        }),
                    ));
                    refreshed = Some(target);
                }
            }
        }
        let faults = Faults::new(plan);
        let stop = Stop::default();
        faults.watch(&stop);
        let mode: &[&str] = if execute_first { &["--execute", "--verify"] } else { &["--verify"] };
        let report = run(&faults.wrap(&stores), &live, &stop, mode);
        let after = objects(&stores, &buckets);

        // Nothing but garbage is ever deleted.
        let gone: HashSet<&String> = before.difference(&after).collect();
        for k in &keep {
            prop_assert!(after.contains(k), "{fault:?}: {k} was deleted");
        }
        let garbage_set: HashSet<&String> = garbage.iter().collect();
        prop_assert!(gone.iter().all(|g| garbage_set.contains(g)), "{fault:?}: deleted something not garbage");
        prop_assert_eq!(gone.len() as u64, report.deleted, "{:?}: report and store disagree", fault);

        // The exit code the fault calls for.
        let planned = report.planned_deletes;
        let expected = match (&fault, execute_first) {
            (Fault::ListingBroken, _) => 5,
            (Fault::ManifestUnreadable(_), _) => 4,
            (_, false) => 0,
            (Fault::DeletesFail(_), true) => {
                let failing = faults.calls().iter().filter(|c| c.injected).count();
                if failing > 0 { 7 } else { 0 }
            }
            (Fault::StopAt(n), true) if *n <= planned => 130,
            _ => 0,
        };
        prop_assert_eq!(report.exit_code, expected, "{:?}: {:?}", fault, report.error);
        if matches!(report.exit_code, 4 | 5) || !execute_first {
            prop_assert_eq!(&after, &before, "{:?}: an abort or a dry run changed the store", fault);
        }
        if let (Fault::Transient(_), true) = (&fault, execute_first) {
            prop_assert_eq!(report.store_retries, faults.injected.load(Ordering::SeqCst));
        }
        if let (Some(target), true) = (&refreshed, execute_first) {
            prop_assert!(after.contains(target), "the refreshed chunk {} was deleted", target);
        }

        // A clean rerun converges: what is left of the garbage is what its false positives kept.
        let again = run(&stores, &live, &Stop::default(), &["--execute", "--verify"]);
        prop_assert_eq!(again.exit_code, 0, "{:?}", again.error);
        let last = objects(&stores, &buckets);
        for k in &keep {
            prop_assert!(last.contains(k), "rerun: {k} was deleted");
        }
        // Keep(Referenced) is decided before Keep(Young): a false positive on a young chunk
        // counts as referenced too.
        let refresh_fired = refreshed.as_ref().is_some_and(|t| {
            let key = key_of(t);
            faults.calls().iter().any(|c| c.op == Op::Head && c.key == key)
        });
        let fired = u64::from(refresh_fired);
        // Only the locations the run lists count (a location only a dead snapshot names is
        // never listed, so its garbage stays).
        let listed: HashSet<(String, String)> =
            again.per_location.iter().map(|l| (l.bucket.clone(), l.prefix.clone())).collect();
        let in_listed = |l: &gc_partition::locations::Location| listed.contains(&(l.bucket().to_owned(), l.prefix().to_owned()));
        let count = |v: &Vec<(gc_partition::locations::Location, gc_partition::ids::ChunkId)>| v.iter().filter(|(l, _)| in_listed(l)).count() as u64;
        let fp_total = again.referenced_kept - count(&sets.referenced);
        let fp_young = count(&sets.young) + fired - again.young_kept;
        let false_positives = fp_total - fp_young;
        let refreshed_left = fired;
        let left = sets.garbage.iter().filter(|(l, id)| in_listed(l) && last.contains(&name(l, id))).count() as u64;
        prop_assert_eq!(left, false_positives + refreshed_left, "{:?}", fault);
    }
}
