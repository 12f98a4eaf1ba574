//! Fault injection through the library's API: the real pipeline (`gc::run`) on `file://` and
//! `memory://` partitions, every bucket wrapped by `common::faults` under the library's own
//! retry layer. Every test checks that no referenced chunk, young chunk or foreign object
//! was deleted, whatever the fault.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::EXACT_FPR;
use common::faults::{FaultPlan, Faults, Kind, Op};
use common::part::{IN_PROCESS as BACKENDS, InProcess as Backend, Part};
use gc_kit::Ageing;
use gc_kit::synth::SynthConfig;
use gc_partition::error::Signal;
use gc_partition::gc::{self, Progress, Stop};
use gc_partition::report::Report;
use gc_partition::store::StoreOptions;
use object_store::path::Path;

/// Quick retries: a fault that outlasts them surfaces in milliseconds, not minutes.
fn quick() -> StoreOptions {
    StoreOptions {
        max_retries: 12,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..StoreOptions::default()
    }
}

fn part(backend: Backend, seed: u64, tweak: impl FnOnce(&mut SynthConfig)) -> Part {
    part_at(backend, seed, chrono::Utc::now(), tweak)
}

fn part_at(
    backend: Backend,
    seed: u64,
    now: chrono::DateTime<chrono::Utc>,
    tweak: impl FnOnce(&mut SynthConfig),
) -> Part {
    common::part::part(backend, quick(), seed, now, tweak)
}

#[test]
fn a_dry_run_makes_no_mutating_call_with_or_without_verify() {
    for backend in BACKENDS {
        let p = part(backend, 11, |_| {});
        let before = p.objects();
        for extra in [&[][..], &["--verify"][..], &["--verify", "--max-delete-fraction", "0"][..]] {
            let faults = Faults::new(FaultPlan { forbid_mutations: true, ..FaultPlan::default() });
            let report = p.run(&faults, extra);
            assert_eq!(report.exit_code, 0, "{backend:?} {extra:?}: {:?}", report.error);
            assert!(report.planned_deletes > 0, "{backend:?}: nothing planned, the test proves nothing");
            assert_eq!(faults.mutations().len(), 0, "{backend:?} {extra:?}: {:?}", faults.mutations());
            assert!(faults.count(Op::List) > 0 && faults.count(Op::Get) > 0, "{backend:?}: the recorder saw no reads");
        }
        assert_eq!(p.objects(), before, "{backend:?}: a dry run changed the store");
        // The recorder does see mutations: the same run with --execute is refused every delete.
        let faults = Faults::new(FaultPlan { forbid_mutations: true, ..FaultPlan::default() });
        let report = p.run(&faults, &["--execute"]);
        assert_eq!(report.exit_code, 7, "{backend:?}: {:?}", report.error);
        assert_eq!(faults.mutations().len() as u64, report.planned_deletes);
        assert_eq!(p.objects(), before, "{backend:?}: a refused delete happened anyway");
    }
}

#[test]
fn a_listing_that_breaks_half_way_exits_5_and_deletes_nothing() {
    for backend in BACKENDS {
        let p = part(backend, 12, |_| {});
        let before = p.objects();
        let locations = p.locations();
        assert!(locations.len() >= 3, "the legacy location and the extra ones: {locations:?}");
        // Each location in turn, the others listing fine: any one broken listing aborts.
        for location in &locations {
            for kind in [Kind::Transient, Kind::Permanent] {
                let plan = FaultPlan {
                    break_listings_of: Some((location.bucket().to_owned(), location.prefix().to_owned())),
                    break_listing_share: 1.0,
                    break_listing_kind: Some(kind),
                    ..FaultPlan::default()
                };
                let faults = Faults::new(plan);
                let report = p.run(&faults, &["--execute", "--verify", "--max-delete-fraction", "1"]);
                let context = format!("{backend:?} {kind:?} {}/{}", location.bucket(), location.prefix());
                assert_eq!(report.exit_code, 5, "{context}: {:?}", report.error);
                assert!(faults.injected.load(Ordering::SeqCst) > 0, "{context}: nothing broken");
                assert_eq!(faults.count(Op::Delete), 0, "{context}: a delete after a listing error");
                assert_eq!(report.deleted, 0);
                assert_eq!(p.objects(), before, "{context}");
            }
        }
        // A listing that breaks but recovers on a retry is no error.
        let plan = FaultPlan {
            break_listings_under: Some("p1/chunks/".into()),
            break_listing_share: 0.25,
            seed: 3,
            ..FaultPlan::default()
        };
        let faults = Faults::new(plan);
        let report = p.run(&faults, &["--bloom-seed", "7"]);
        let clean = p.run_clean(&["--bloom-seed", "7"]);
        assert_eq!(report.exit_code, 0, "{backend:?}: {:?}", report.error);
        assert!(faults.injected.load(Ordering::SeqCst) > 0, "{backend:?}: no listing was broken");
        assert_eq!((report.chunks_scanned, report.planned_deletes), (clean.chunks_scanned, clean.planned_deletes));
    }
}

/// Row 8b end to end. `memory://` promises key order (as S3 and GCS do): a listing that
/// yields keys out of order and then fails is not resumed after its last key (that would skip
/// the keys not yet seen), so the run aborts with exit 5 before any delete. `file://` makes
/// no such promise: the same faults restart its listings and the run plans what a clean one
/// plans.
#[test]
fn a_store_breaking_its_key_order_promise_aborts_before_any_delete() {
    for backend in BACKENDS {
        let p = part(backend, 17, |_| {});
        let before = p.objects();
        let plan = FaultPlan {
            break_listings_under: Some("p1".into()),
            break_listings_except: Some("/snapshots".into()),
            break_listing_share: 1.0,
            break_each_listing_once: true,
            break_listing_kind: Some(Kind::Transient),
            reverse_listings: true,
            ..FaultPlan::default()
        };
        let faults = Faults::new(plan);
        let args = ["--execute", "--verify", "--max-delete-fraction", "1", "--bloom-seed", "5", "--bloom-fpr", "1e-12"];
        let report = p.run(&faults, &args);
        assert!(faults.injected.load(Ordering::SeqCst) > 0, "{backend:?}: no listing was broken");
        match backend {
            Backend::Memory => {
                assert_eq!(report.exit_code, 5, "{:?}", report.error);
                assert_eq!(faults.count(Op::Delete), 0, "a delete after a listing error");
                assert_eq!(p.objects(), before);
            }
            Backend::File => {
                assert_eq!(report.exit_code, 0, "{:?}", report.error);
                assert_eq!(report.planned_deletes, p.garbage().len() as u64);
                assert_eq!(p.garbage_left(), 0);
                p.assert_nothing_lost("restarted listings");
            }
        }
    }
}

#[test]
fn a_manifest_read_error_exits_4_and_deletes_nothing() {
    for backend in BACKENDS {
        let p = part(backend, 13, |_| {});
        let before = p.objects();
        // The text objects are read through the store on every backend (the .index is
        // memory-mapped on file://).
        let live = std::fs::read_to_string(&p.live).unwrap();
        let snapshot = live.lines().find(|l| !l.starts_with('#')).unwrap().trim().to_owned();
        let keys: Vec<String> = p
            .objects()
            .into_iter()
            .filter(|o| o.contains(&format!("/snapshots/{snapshot}.")) && !o.ends_with(".index"))
            .map(|o| o.split_once('/').unwrap().1.to_owned())
            .collect();
        assert!(!keys.is_empty());
        for key in keys {
            for kind in [Kind::Transient, Kind::Permanent] {
                let plan = FaultPlan { fail_get_keys: HashMap::from([(key.clone(), kind)]), ..FaultPlan::default() };
                let faults = Faults::new(plan);
                let report = p.run(&faults, &["--execute"]);
                assert_eq!(report.exit_code, 4, "{backend:?} {key} {kind:?}: {:?}", report.error);
                assert_eq!(faults.count(Op::Delete), 0);
                assert_eq!(p.objects(), before, "{backend:?} {key}");
            }
        }
    }
}

#[test]
fn transient_errors_on_20_percent_of_calls_end_exactly_like_a_clean_run() {
    for backend in BACKENDS {
        let now = chrono::Utc::now();
        let clean = part_at(backend, 14, now, |_| {});
        let faulty = part_at(backend, 14, now, |_| {});
        assert_eq!(clean.digests(), faulty.digests(), "the two partitions differ");
        let args = ["--execute", "--verify", "--bloom-seed", "99", "--delete-concurrency", "8"];
        let expected = clean.run_clean(&args);
        assert_eq!(expected.exit_code, 0, "{:?}", expected.error);

        let plan = FaultPlan { transient_share: 0.2, seed: 5, ..FaultPlan::default() };
        let faults = Faults::new(plan);
        let got = faulty.run(&faults, &args);
        assert_eq!(got.exit_code, 0, "{backend:?}: {:?}", got.error);
        let injected = faults.injected.load(Ordering::SeqCst);
        let calls = faults.calls().len() as u64;
        // A seeded 20% of calls: at least 15% of them did fail (19.9% measured).
        assert!(injected * 100 >= calls * 15, "{backend:?}: only {injected} of {calls} calls failed");
        assert_eq!(got.store_retries, injected, "{backend:?}: every injected fault is retried once");
        assert_eq!(faulty.digests(), clean.digests(), "{backend:?}: the store differs from a clean run's");
        for field in [
            |r: &Report| r.planned_deletes,
            |r: &Report| r.deleted,
            |r: &Report| r.chunks_scanned,
            |r: &Report| r.foreign_objects,
            |r: &Report| r.referenced_ids,
            |r: &Report| r.delete_failures,
        ] {
            assert_eq!(field(&got), field(&expected), "{backend:?}");
        }
        faulty.assert_nothing_lost("20% transient");
        eprintln!("{backend:?}: {injected} of {calls} calls failed transiently; result identical to a clean run");
    }
}

#[test]
fn permanent_delete_failures_exit_7_name_the_keys_and_a_rerun_finishes() {
    for backend in BACKENDS {
        let p = part(backend, 15, |_| {});
        let chosen: HashSet<String> =
            p.garbage().into_iter().step_by(17).map(|g| g.split_once('/').unwrap().1.to_owned()).collect();
        assert!(chosen.len() >= 5);
        let plan = FaultPlan { fail_delete_keys: chosen.clone(), ..FaultPlan::default() };
        let faults = Faults::new(plan);
        let report = p.run(&faults, &["--execute", "--verify", "--bloom-fpr", EXACT_FPR]);
        assert_eq!(report.exit_code, 7, "{backend:?}: {:?}", report.error);
        let failed: HashSet<String> = report.failed_deletes.iter().map(|f| f.key.clone()).collect();
        assert_eq!(failed, chosen, "{backend:?}: failed_deletes must be exactly the failing keys");
        assert_eq!(report.delete_failures, chosen.len() as u64);
        assert_eq!(report.deleted + report.delete_failures, report.planned_deletes);
        assert!(report.verify.as_ref().is_some_and(|v| v.ok), "{backend:?}: verify after partial deletes");
        p.assert_nothing_lost("delete failures");
        assert_eq!(p.garbage_left(), chosen.len());

        let again = p.run_clean(&["--execute", "--verify", "--bloom-fpr", EXACT_FPR]);
        assert_eq!(again.exit_code, 0, "{backend:?}: {:?}", again.error);
        assert_eq!(again.deleted, chosen.len() as u64);
        assert_eq!(p.garbage_left(), 0);
        p.assert_nothing_lost("rerun after delete failures");
    }
}

#[test]
fn a_stop_during_execute_starts_no_new_delete_and_a_rerun_finishes() {
    for backend in BACKENDS {
        for signal in [Signal::Interrupt, Signal::Terminate] {
            let p = part(backend, 16, |c| c.garbage_chunks = 200);
            let plan = FaultPlan {
                delay: Some((Duration::from_millis(5), vec![Op::Delete, Op::Head])),
                stop_at_delete: Some((10, signal)),
                ..FaultPlan::default()
            };
            let faults = Faults::new(plan);
            let stop = Stop::default();
            faults.watch(&stop);
            let stores = faults.wrap(&p.stores);
            let args = ["--execute", "--verify", "--delete-concurrency", "4", "--bloom-fpr", EXACT_FPR];
            let report = p.run_with(&stores, &stop, &Progress::default(), &args);
            let code = if signal == Signal::Interrupt { 130 } else { 143 };
            assert_eq!(report.exit_code, code, "{backend:?}: {:?}", report.error);
            assert!(report.deletes_not_started > 0, "{backend:?}: the stop came too late to prove anything");

            // A delete starts with its re-read (head), or on a store that renames chunks
            // aside with the rename (whose key is the held one the head and the delete then
            // use): none starts after the stop, and every call after the stop finishes a
            // delete that started before it.
            let calls = faults.calls();
            let start = if calls.iter().any(|c| c.op == Op::Rename) { Op::Rename } else { Op::Head };
            let starts_after: Vec<_> = calls.iter().filter(|c| c.op == start && c.after_stop).collect();
            assert!(starts_after.is_empty(), "{backend:?}: {} deletes started after the stop", starts_after.len());
            let started_before: HashSet<&str> =
                calls.iter().filter(|c| c.op == start && !c.after_stop).map(|c| c.key.as_str()).collect();
            for c in calls.iter().filter(|c| matches!(c.op, Op::Delete | Op::Head) && c.after_stop) {
                assert!(
                    started_before.contains(c.key.as_str()),
                    "{backend:?}: {:?} of {} started after the stop",
                    c.op,
                    c.key
                );
            }
            let deletes = calls.iter().filter(|c| c.op == Op::Delete).count() as u64;
            assert_eq!(deletes, report.deleted, "{backend:?}: the report's count is not the store's");
            assert_eq!(report.deleted + report.deletes_not_started, report.planned_deletes);
            assert_eq!(p.garbage().len() - p.garbage_left(), report.deleted as usize);
            p.assert_nothing_lost("stop during execute");

            let again = p.run_clean(&["--execute", "--verify", "--bloom-fpr", EXACT_FPR]);
            assert_eq!(again.exit_code, 0, "{backend:?}: {:?}", again.error);
            assert_eq!(p.garbage_left(), 0, "{backend:?}: the rerun did not finish the job");
            p.assert_nothing_lost("rerun after stop");
        }
    }
}

/// Spec 9.3: a panic is a bug. It ends the run with exit 9 and a report saying so (never a
/// listing, manifest or delete failure), no delete starts after it, and a rerun finishes.
#[test]
fn a_panic_exits_9_starts_no_further_delete_and_a_rerun_finishes() {
    for backend in BACKENDS {
        // In each stage: the manifests' reads, the listing's tasks, the deletes.
        let panics = [(Op::Get, 2, "manifests"), (Op::List, 1, "listing"), (Op::Head, 15, "execute")];
        for (op, nth, stage) in panics {
            let p = part(backend, 21, |c| c.garbage_chunks = 120);
            let faults = Faults::new(FaultPlan { panic_at: Some((op, nth)), ..FaultPlan::default() });
            let report = p.run(&faults, &["--execute", "--delete-concurrency", "4"]);
            let context = format!("{backend:?}, panic in the {stage} stage");
            assert_eq!(report.exit_code, 9, "{context}: {:?}", report.error);
            let error = report.error.clone().unwrap_or_default();
            assert!(error.starts_with("internal error (a bug)"), "{context}: {error}");
            assert!(error.contains("injected panic"), "{context}: the panic's message is kept: {error}");
            assert!(report.human().contains("file a bug report"), "{context}");

            let calls = faults.calls();
            let panicked = calls.iter().filter(|c| c.op == op).nth(nth as usize - 1).expect("the panicking call");
            let later: Vec<_> = calls.iter().filter(|c| c.op.mutates() && c.seq > panicked.seq).collect();
            assert!(later.is_empty(), "{context}: {} mutating calls started after the panic: {later:?}", later.len());
            if stage != "execute" {
                assert!(faults.mutations().is_empty(), "{context}: nothing is deleted before the plan is done");
            }
            p.assert_nothing_lost(&context);

            let again = p.run_clean(&["--execute", "--verify", "--bloom-fpr", EXACT_FPR]);
            assert_eq!(again.exit_code, 0, "{context}, rerun: {:?}", again.error);
            assert_eq!(p.garbage_left(), 0, "{context}: the rerun did not finish the job");
            p.assert_nothing_lost(&format!("{context}, rerun"));
        }
    }
}

/// The dead snapshots of `p` as a deleting set (a file beside the live set, same
/// `taken_at`), their manifests made older than the cutoff: returns the file and the
/// manifests' `bucket/key` names.
fn deleting_set(p: &Part) -> (std::path::PathBuf, Vec<String>, Vec<String>) {
    use gc_partition::ids::PartitionId;
    use gc_partition::ids::SnapshotId;
    use gc_partition::manifest::manifest_of_key;
    let live_text = std::fs::read_to_string(&p.live).unwrap();
    let live: HashSet<&str> = live_text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let trailer = live_text.lines().find(|l| l.starts_with("# end")).unwrap();
    let taken_at = trailer.split("taken_at=").nth(1).unwrap();
    let partition = PartitionId::parse("p1").unwrap();
    let (mut dead, mut manifests): (Vec<SnapshotId>, Vec<String>) = (Vec::new(), Vec::new());
    for name in p.objects() {
        let Some(key) = name.strip_prefix("snapshots/") else { continue };
        let found = manifest_of_key(&partition, key).map(|(snapshot, _)| snapshot);
        let Some(snapshot) = found.filter(|s| !live.contains(s.as_str())) else { continue };
        p.stores.set_last_modified("snapshots", key, chrono::Utc::now() - chrono::TimeDelta::days(30)).unwrap();
        manifests.push(name.clone());
        dead.push(snapshot);
    }
    dead.sort();
    dead.dedup();
    assert!(!dead.is_empty() && !manifests.is_empty());
    let mut text: String = dead.iter().map(|s| format!("{s}\n")).collect();
    text.push_str(&format!("# end count={} taken_at={taken_at}\n", dead.len()));
    let path = p.live.with_file_name("deleting.txt");
    std::fs::write(&path, text).unwrap();
    (path, manifests, dead.iter().map(ToString::to_string).collect())
}

/// Spec 9.2: a deleting snapshot's manifests are reclaimed only by a run that ends with exit
/// 0; a listing failure (5), delete failures (7), a verify failure (8), a bug (9) or a signal
/// (130, 143) leaves every one of them, so a rerun still sees them. The rerun that ends with exit 0 reclaims.
#[test]
fn the_reclaim_waits_for_a_run_that_ends_with_exit_0() {
    for backend in BACKENDS {
        let p = part(backend, 23, |c| c.garbage_chunks = 200);
        let (deleting, manifests, dead) = deleting_set(&p);
        let flag = deleting.to_str().unwrap();
        let a_garbage_key = p.garbage()[7].split_once('/').unwrap().1.to_owned();
        let locations = p.locations();
        let slow = Some((Duration::from_millis(5), vec![Op::Delete, Op::Head]));
        let cases = [
            (
                FaultPlan {
                    break_listings_of: Some((locations[0].bucket().to_owned(), locations[0].prefix().to_owned())),
                    break_listing_share: 1.0,
                    break_listing_kind: Some(Kind::Permanent),
                    ..FaultPlan::default()
                },
                5,
            ),
            (FaultPlan { panic_at: Some((Op::Head, 3)), ..FaultPlan::default() }, 9),
            (
                FaultPlan { delay: slow.clone(), stop_at_delete: Some((6, Signal::Interrupt)), ..FaultPlan::default() },
                130,
            ),
            (FaultPlan { delay: slow, stop_at_delete: Some((6, Signal::Terminate)), ..FaultPlan::default() }, 143),
            // Last: it deletes every garbage chunk but one.
            (FaultPlan { fail_delete_keys: HashSet::from([a_garbage_key]), ..FaultPlan::default() }, 7),
        ];
        for (plan, exit) in cases {
            let faults = Faults::new(plan);
            let args = [
                "--execute",
                "--deleting-snapshots",
                flag,
                "--delete-concurrency",
                "4",
                "--max-delete-fraction",
                "1",
                "--bloom-fpr",
                EXACT_FPR,
            ];
            let report = p.run(&faults, &args);
            assert_eq!(report.exit_code, exit, "{backend:?}: {:?}", report.error);
            assert!(report.reclaimed_snapshots.is_empty(), "{backend:?}, exit {exit}");
            let objects = p.objects();
            let gone: Vec<_> = manifests.iter().filter(|m| !objects.contains(*m)).collect();
            assert!(gone.is_empty(), "{backend:?}, exit {exit}: manifests reclaimed: {gone:?}");
        }
        // Exit 8: `--verify` finds a referenced chunk planned (the filter made to miss it). An
        // exact filter: at the default rate, one run in a thousand would find the omitted id a
        // false positive, keep it, and end with exit 0.
        let flags = ["--execute", "--verify", "--deleting-snapshots", flag, "--max-delete-fraction", "1"];
        let mut config = p.config(&[&flags[..], &["--bloom-fpr", EXACT_FPR]].concat());
        config.filter_omits = vec![p.sets.referenced[0].1.0];
        let report = p.rt.block_on(gc::run(&p.stores, &config, &Stop::default(), &Progress::default()));
        assert_eq!(report.exit_code, 8, "{backend:?}: {:?}", report.error);
        assert!(report.reclaimed_snapshots.is_empty(), "{backend:?}, exit 8");
        let objects = p.objects();
        assert!(manifests.iter().all(|m| objects.contains(m)), "{backend:?}, exit 8: a manifest was reclaimed");
        let report = p.run_clean(&["--execute", "--deleting-snapshots", flag, "--max-delete-fraction", "1"]);
        assert_eq!(report.exit_code, 0, "{backend:?}: {:?}", report.error);
        assert_eq!(report.reclaimed_snapshots, dead, "{backend:?}");
        let objects = p.objects();
        assert!(manifests.iter().all(|m| !objects.contains(m)), "{backend:?}: a reclaimed manifest is still there");
        p.assert_nothing_lost(&format!("{backend:?}: after the reclaim"));
    }
}

/// A writer touches a deleting snapshot's manifest between the listing and its delete (a
/// snapshot being re-created under the same id, or a restore): the reclaim's re-read sees it
/// young and keeps it, the snapshot is not listed as reclaimed (its other manifest objects,
/// if any, are deleted or kept as the rule says), and the other snapshots are reclaimed.
#[test]
fn a_manifest_refreshed_during_the_reclaim_is_kept() {
    for backend in BACKENDS {
        let p = part(backend, 24, |c| c.dead_snapshots = 3);
        let (deleting, manifests, dead) = deleting_set(&p);
        let target = manifests[0].clone();
        let (_, key) = target.split_once('/').unwrap();
        let touched = dead.iter().find(|s| key.contains(&format!("/{s}."))).unwrap().clone();
        let writer = p.stores.clone();
        let hook = Box::new(move |bucket: &str, path: &Path| {
            writer.set_last_modified(bucket, path.as_ref(), chrono::Utc::now()).unwrap();
        });
        let faults = Faults::new(FaultPlan { on_first_head: Some((key.to_owned(), hook)), ..FaultPlan::default() });
        let flag = deleting.to_str().unwrap();
        let report = p.run(&faults, &["--execute", "--deleting-snapshots", flag, "--max-delete-fraction", "1"]);
        assert_eq!(report.exit_code, 0, "{backend:?}: {:?}", report.error);
        assert!(p.exists(&target), "{backend:?}: the refreshed manifest {target} was deleted");
        let others: Vec<String> = dead.iter().filter(|s| **s != touched).cloned().collect();
        assert_eq!(report.reclaimed_snapshots, others, "{backend:?}: {touched} was refreshed");
        p.assert_nothing_lost(&format!("{backend:?}: refreshed manifest"));
    }
}

#[test]
fn a_chunk_refreshed_between_listing_and_delete_is_kept() {
    for backend in BACKENDS {
        let p = part(backend, 17, |_| {});
        let target = p.garbage()[3].clone();
        let (bucket, key) = target.split_once('/').unwrap();
        let writer = p.stores.clone();
        let hook = Box::new(move |bucket: &str, path: &Path| {
            // A writer reuses the chunk: it refreshes its last-modified to now.
            writer.set_last_modified(bucket, path.as_ref(), chrono::Utc::now()).unwrap();
        });
        let plan = FaultPlan { on_first_head: Some((key.to_owned(), hook)), ..FaultPlan::default() };
        let faults = Faults::new(plan);
        let report = p.run(&faults, &["--execute", "--verify", "--bloom-fpr", EXACT_FPR]);
        assert_eq!(report.exit_code, 0, "{backend:?}: {:?}", report.error);
        assert_eq!(report.refreshed_kept, 1, "{backend:?}");
        assert!(p.exists(&target), "{backend:?}: the refreshed chunk {bucket}/{key} was deleted");
        assert_eq!(report.deleted + 1, report.planned_deletes);
        assert_eq!(p.garbage_left(), 1);
        p.assert_nothing_lost("refreshed chunk");
    }
}

#[test]
fn the_nth_call_of_a_kind_fails() {
    for backend in BACKENDS {
        let p = part(backend, 18, |_| {});
        let before = p.objects();
        let args = ["--execute", "--verify", "--bloom-fpr", EXACT_FPR];
        // The first top-level listing of a location fails for good: a listing error.
        let faults =
            Faults::new(FaultPlan { fail_nth: vec![(Op::ListDelimiter, 1, Kind::Permanent)], ..FaultPlan::default() });
        let report = p.run(&faults, &args);
        assert_eq!(report.exit_code, 5, "{backend:?}: {:?}", report.error);
        assert_eq!(faults.count(Op::Delete), 0);
        assert_eq!(p.objects(), before);
        // The first manifest read fails once: retried, no error.
        let faults = Faults::new(FaultPlan { fail_nth: vec![(Op::Get, 1, Kind::Transient)], ..FaultPlan::default() });
        let report = p.run(&faults, &["--bloom-seed", "1"]);
        assert_eq!((report.exit_code, report.store_retries), (0, 1), "{backend:?}: {:?}", report.error);
        assert_eq!(p.objects(), before);
        // The third re-read before a delete fails for good: that chunk is not deleted.
        let faults = Faults::new(FaultPlan { fail_nth: vec![(Op::Head, 3, Kind::Permanent)], ..FaultPlan::default() });
        let report = p.run(&faults, &args);
        assert_eq!(report.exit_code, 7, "{backend:?}: {:?}", report.error);
        assert_eq!(report.failed_deletes.len(), 1);
        assert!(report.failed_deletes[0].error.contains("re-reading"), "{:?}", report.failed_deletes);
        let kept = format!("{}/{}", report.failed_deletes[0].bucket, report.failed_deletes[0].key);
        assert!(p.exists(&kept), "{backend:?}: the chunk whose re-read failed was deleted");
        assert_eq!(report.deleted + 1, report.planned_deletes);
        p.assert_nothing_lost("nth call");
    }
}
