//! The request bill (spec 8.6) and throttling (spec 8.7) through the real pipeline
//! (`gc::run`) on `memory://` partitions: a dry run's estimate of its execute against what the
//! execute then asked for, and a run against a simulated store that answers 503 SlowDown above
//! a request rate. Counts and outcomes only, never wall time.

use common::part::{InProcess, Part};
use gc_kit::WithLatency;
use gc_kit::latency::LatencyProfile;
use gc_partition::gc::{Progress, Stop};
use gc_partition::report::Report;
use gc_partition::store::{StoreOptions, Stores};

fn part(seed: u64) -> Part {
    common::part::part(InProcess::Memory, StoreOptions::default(), seed, chrono::Utc::now(), |_| {})
}

/// One run on `stores`, this partition's with a latency profile or not.
fn run(part: &Part, stores: &Stores, extra: &[&str]) -> Report {
    part.run_with(stores, &Stop::default(), &Progress::default(), extra)
}

/// The `deleted` garbage chunks are gone (the others were kept by bloom false positives);
/// no referenced chunk, young chunk or foreign object is.
fn assert_collected_and_nothing_lost(part: &Part, deleted: u64) {
    part.assert_nothing_lost("after the run");
    let left = part.garbage_left();
    assert_eq!(left as u64, part.sets.garbage.len() as u64 - deleted, "garbage left");
    assert!(left <= 2, "{left} garbage chunks kept: more than false positives explain");
}

#[test]
fn a_dry_run_estimates_exactly_the_requests_its_execute_then_makes() {
    for (seed, concurrency, profile) in [(11, "32", None), (12, "7", Some("s3")), (13, "32", Some("s3"))] {
        let part = part(seed);
        let stores = match profile {
            Some(p) => part.stores.clone().with_latency(
                LatencyProfile::parse(&format!("{p},list=0ms,get=0ms,head=0ms,delete=0ms,bulk_delete=0ms")).unwrap(),
            ),
            None => part.stores.clone(),
        };
        // The same seed, so both runs plan the same chunks (a false positive is seed-dependent).
        let flags = ["--delete-concurrency", concurrency, "--bloom-seed", "7"];
        let dry = run(&part, &stores, &flags);
        assert_eq!(dry.exit_code, 0, "{:?}", dry.error);
        let bill = dry.requests.clone().expect("requests in the report");
        assert!(bill.counts.list_pages >= 256, "one page per fan-out directory at least: {bill:?}");
        assert!(bill.counts.get > 0, "manifests are read: {bill:?}");
        assert_eq!(
            (bill.counts.head, bill.counts.delete_calls, bill.counts.deleted_keys),
            (0, 0, 0),
            "a dry run deletes nothing"
        );
        assert_eq!(bill.estimated_request_cost_usd, None, "memory:// bills nothing");
        let estimate = bill.execute_estimate.clone().expect("a dry run estimates its execute");
        assert_eq!(estimate.head, dry.planned_deletes);
        assert_eq!(estimate.deleted_keys, dry.planned_deletes);

        let run = run(&part, &stores, &[&flags[..], &["--execute"]].concat());
        assert_eq!(run.exit_code, 0, "{:?}", run.error);
        let done = run.requests.clone().unwrap();
        assert!(done.execute_estimate.is_none());
        assert_eq!(done.counts.head, estimate.head, "{profile:?} {concurrency}: {done:?}");
        assert_eq!(done.counts.delete_calls, estimate.delete_calls, "{profile:?} {concurrency}: {done:?}");
        assert_eq!(done.counts.deleted_keys, estimate.deleted_keys);
        if profile.is_some() {
            assert!(estimate.delete_calls < estimate.deleted_keys, "S3-like deletes go in bulk");
        } else {
            assert_eq!(estimate.delete_calls, estimate.deleted_keys, "one request per key");
        }
        assert!(run.human().contains("requests     "), "{}", run.human());
        assert_collected_and_nothing_lost(&part, run.deleted);
    }
}

#[test]
fn a_store_throttling_above_its_rate_slows_the_run_which_completes_and_loses_nothing() {
    let part = part(21);
    // Every request takes 2 ms and the store accepts 300 per second: the listing alone asks
    // for about a thousand, at 32 in flight, so the store must push back.
    let profile = LatencyProfile::parse("gcs,list=2ms,get=2ms,head=2ms,delete=2ms,throttle=300").unwrap();
    let stores = part.stores.clone().with_latency(profile);
    let report = run(&part, &stores, &["--execute", "--verify", "--bloom-fpr", common::EXACT_FPR]);
    assert_eq!(report.exit_code, 0, "{:?}", report.error);
    let bill = report.requests.clone().unwrap();
    assert!(bill.counts.throttled > 0, "the store never pushed back: {bill:?}");
    assert!(report.store_retries >= bill.counts.throttled, "every throttled answer was retried");
    assert_eq!(report.delete_failures, 0);
    assert_eq!(report.deleted, report.planned_deletes);
    assert!(report.verify.as_ref().is_some_and(|v| v.ok));
    assert_collected_and_nothing_lost(&part, report.deleted);
}
