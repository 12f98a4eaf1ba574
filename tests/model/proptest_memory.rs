//! Property: over random partitions on `memory://`, executing GC never deletes a referenced
//! chunk, a chunk at or after the cutoff, or a foreign object; every other chunk is deleted
//! except the filter's false positives, whose number stays within what `--bloom-fpr`
//! predicts.

use std::collections::HashSet;

use clap::Parser;
use gc_kit::synth::{FormatMix, SynthConfig, synthesize};
use gc_partition::cli::Args;
use gc_partition::config::Config;
use gc_partition::gc::{self, Progress, Stop};
use gc_partition::store::Stores;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use proptest::prelude::*;

const FPR: f64 = 0.01;

#[derive(Debug, Clone)]
struct Shape {
    seed: u64,
    snapshots: usize,
    dead: usize,
    referenced: u64,
    garbage: u64,
    young: u64,
    foreign: u64,
    extra_locations: usize,
    shared: f64,
    legacy: f64,
    unified: f64,
}

fn shape() -> impl Strategy<Value = Shape> {
    (any::<u64>(), 0usize..8, 0usize..4, 0u64..400, 0u64..300, 0u64..40, 0u64..10, 0usize..3, 0.0..0.9f64, 0.0..1.0f64)
        .prop_map(|(seed, snapshots, dead, referenced, garbage, young, foreign, extra_locations, shared, legacy)| {
            Shape {
                seed,
                snapshots,
                dead,
                referenced: if snapshots == 0 { 0 } else { referenced },
                garbage,
                young,
                foreign,
                extra_locations,
                shared,
                legacy,
                unified: (1.0 - legacy) / 2.0,
            }
        })
}

async fn exists(stores: &Stores, bucket: &str, key: &str) -> bool {
    let store = stores.bucket(bucket).unwrap();
    match store.head(&Path::from(key)).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("head {bucket}/{key}: {e}"),
    }
}

fn check(shape: Shape) -> Result<(), TestCaseError> {
    let rt = common::runtime();
    rt.block_on(async {
        let stores = Stores::memory();
        let config = SynthConfig {
            seed: shape.seed,
            snapshots: shape.snapshots,
            dead_snapshots: shape.dead,
            referenced_ids: shape.referenced,
            garbage_chunks: shape.garbage,
            young_chunks: shape.young,
            foreign_objects: shape.foreign,
            extra_locations: shape.extra_locations,
            shared_fraction: shape.shared,
            format_mix: FormatMix::from_shares(shape.legacy, shape.unified).unwrap(),
            record_sets: true,
            ..SynthConfig::default()
        };
        let summary = synthesize(&stores, &config).await.unwrap();
        let live = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(live.path(), &summary.live_set).unwrap();
        let location_flags: Vec<String> =
            summary.locations.iter().flat_map(|l| ["--location".to_owned(), l.to_string()]).collect();
        let fixed = [
            "gc_partition",
            "--partition",
            "p1",
            "--live-snapshots",
            live.path().to_str().unwrap(),
            "--cutoff",
            "7d",
            "--store",
            "memory://",
            "--execute",
            "--verify",
            "--max-delete-fraction",
            "1",
            "--bloom-fpr",
            &FPR.to_string(),
        ];
        let args =
            Args::try_parse_from(fixed.iter().copied().chain(location_flags.iter().map(String::as_str))).unwrap();
        let config = Config::from_args(&args, chrono::Utc::now()).unwrap();
        let report = gc::run(&stores, &config, &Stop::default(), &Progress::default()).await;
        prop_assert_eq!(report.exit_code, 0, "{:?}", report.error);
        prop_assert!(report.verify.as_ref().is_some_and(|v| v.ok));

        let sets = summary.sets.unwrap();
        for (location, id) in sets.referenced.iter().chain(&sets.young) {
            prop_assert!(exists(&stores, location.bucket(), &location.chunk_key(id)).await, "{location} {id} deleted");
        }
        for (bucket, key) in &sets.foreign {
            prop_assert!(exists(&stores, bucket, key).await, "foreign {bucket}/{key} deleted");
        }
        let mut kept = 0u64;
        let mut seen = HashSet::new();
        for (location, id) in &sets.garbage {
            prop_assert!(seen.insert((location.clone(), *id)), "garbage listed twice");
            kept += u64::from(exists(&stores, location.bucket(), &location.chunk_key(id)).await);
        }
        let garbage = sets.garbage.len() as u64;
        prop_assert_eq!(report.deleted + kept, garbage);
        // Binomial(garbage, fpr): mean + 8 sigma + 4 is beyond chance (under 1e-10 a case;
        // 5 sigma + 2 failed by chance about once in 15,000 runs of the 24 cases).
        let mean = garbage as f64 * FPR;
        let bound = mean + 8.0 * mean.sqrt() + 4.0;
        prop_assert!((kept as f64) <= bound, "{kept} of {garbage} garbage chunks kept, above {bound:.1}");
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn gc_deletes_exactly_the_garbage(shape in shape()) {
        check(shape)?;
    }
}
