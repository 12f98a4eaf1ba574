//! A synthetic partition the library runs on in-process (`gc::run`, no binary), on a temporary
//! `file://` store or on `memory://`, with the sets the synthesizer recorded: the fixture of
//! `tests/reliability/faults.rs` and `tests/stores/remote.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use futures::TryStreamExt;
use gc_kit::synth::{SynthConfig, SynthSets, synthesize};
use gc_partition::cli::Args;
use gc_partition::config::Config;
use gc_partition::gc::{self, Progress, Stop};
use gc_partition::report::Report;
use gc_partition::store::{StoreOptions, Stores};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use sha2::Digest;

use super::faults::Faults;

/// A store that lives in the test process: no server to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InProcess {
    File,
    Memory,
}

pub const IN_PROCESS: [InProcess; 2] = [InProcess::File, InProcess::Memory];

pub struct Part {
    _dir: tempfile::TempDir,
    pub url: String,
    pub stores: Stores,
    pub sets: SynthSets,
    pub live: PathBuf,
    /// Every bucket the synthesizer wrote to (chunk locations and the meta bucket).
    pub buckets: Vec<String>,
    pub rt: tokio::runtime::Runtime,
}

/// Partition `p1` synthesized at `now` from `seed` (5 snapshots, 300 referenced ids, 120
/// garbage, 25 young and 8 foreign objects, 2 dead snapshots, 2 extra locations, unless
/// `tweak` says otherwise), its stores opened with `options`.
pub fn part(
    backend: InProcess,
    options: StoreOptions,
    seed: u64,
    now: chrono::DateTime<chrono::Utc>,
    tweak: impl FnOnce(&mut SynthConfig),
) -> Part {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        InProcess::File => {
            let root = dir.path().join("store");
            std::fs::create_dir_all(&root).unwrap();
            format!("file://{}", root.display())
        }
        InProcess::Memory => "memory://".to_owned(),
    };
    let stores = Stores::from_url(&url, options).unwrap();
    let live = dir.path().join("live.txt");
    let mut config = SynthConfig {
        seed,
        now,
        snapshots: 5,
        referenced_ids: 300,
        garbage_chunks: 120,
        young_chunks: 25,
        foreign_objects: 8,
        dead_snapshots: 2,
        extra_locations: 2,
        record_sets: true,
        live_set_path: Some(live.clone()),
        ..SynthConfig::default()
    };
    tweak(&mut config);
    let rt = super::runtime();
    let summary = rt.block_on(synthesize(&stores, &config)).unwrap();
    let mut buckets: Vec<String> = summary.locations.iter().map(|l| l.bucket().to_owned()).collect();
    buckets.push(config.meta_bucket.clone());
    buckets.sort();
    buckets.dedup();
    Part { _dir: dir, url, stores, sets: summary.sets.unwrap(), live, buckets, rt }
}

impl Part {
    /// The run's configuration: partition `p1`, cutoff 7 days, then `extra` flags.
    pub fn config(&self, extra: &[&str]) -> Config {
        let live = self.live.to_str().unwrap();
        let mut argv =
            vec!["gc_partition", "--partition", "p1", "--live-snapshots", live, "--cutoff", "7d", "--store", &self.url];
        argv.extend_from_slice(extra);
        Config::from_args(&Args::try_parse_from(argv).unwrap(), chrono::Utc::now()).unwrap()
    }

    /// One run of the pipeline on `stores` (this partition's, maybe wrapped).
    pub fn run_with(&self, stores: &Stores, stop: &Stop, progress: &Progress, extra: &[&str]) -> Report {
        let config = self.config(extra);
        let report = self.rt.block_on(gc::run(stores, &config, stop, progress));
        super::schemas::check_in_process(extra, &report);
        report
    }

    pub fn run_clean(&self, extra: &[&str]) -> Report {
        self.run_with(&self.stores, &Stop::default(), &Progress::default(), extra)
    }

    /// Every object of the store, as `bucket/key`.
    pub fn objects(&self) -> BTreeSet<String> {
        self.rt.block_on(async {
            let mut all = BTreeSet::new();
            for bucket in &self.buckets {
                let store = self.stores.bucket(bucket).unwrap();
                let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
                all.extend(listed.into_iter().map(|m| format!("{bucket}/{}", m.location)));
            }
            all
        })
    }

    /// The garbage chunks, as `bucket/key`.
    pub fn garbage(&self) -> Vec<String> {
        self.sets.garbage.iter().map(|(l, id)| super::chunk_name(l, id)).collect()
    }

    /// How many garbage chunks are still in the store.
    pub fn garbage_left(&self) -> usize {
        let all = self.objects();
        self.garbage().iter().filter(|g| all.contains(*g)).count()
    }

    /// No referenced chunk, young chunk or foreign object is gone.
    pub fn assert_nothing_lost(&self, context: &str) {
        let all = self.objects();
        for (l, id) in self.sets.referenced.iter().chain(&self.sets.young) {
            let name = super::chunk_name(l, id);
            assert!(all.contains(&name), "{context}: referenced or young chunk {name} was deleted");
        }
        for (bucket, key) in &self.sets.foreign {
            assert!(all.contains(&format!("{bucket}/{key}")), "{context}: foreign object {bucket}/{key} was deleted");
        }
    }

    /// One run through `faults`.
    pub fn run(&self, faults: &Arc<Faults>, extra: &[&str]) -> Report {
        let stop = Stop::default();
        faults.watch(&stop);
        self.run_with(&faults.wrap(&self.stores), &stop, &Progress::default(), extra)
    }

    pub fn exists(&self, name: &str) -> bool {
        let (bucket, key) = name.split_once('/').unwrap();
        let store = self.stores.bucket(bucket).unwrap();
        match self.rt.block_on(store.head(&Path::from(key))) {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("head {name}: {e}"),
        }
    }

    /// Every object with its size and content hash (last-modified differs between two
    /// partitions made apart: manifests are written at the time of the run).
    pub fn digests(&self) -> BTreeMap<String, (u64, [u8; 32])> {
        self.rt.block_on(async {
            let mut all = BTreeMap::new();
            for bucket in &self.buckets {
                let store = self.stores.bucket(bucket).unwrap();
                let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
                for meta in listed {
                    let data = store.get(&meta.location).await.unwrap().bytes().await.unwrap();
                    let hash: [u8; 32] = sha2::Sha256::digest(&data).into();
                    all.insert(format!("{bucket}/{}", meta.location), (meta.size, hash));
                }
            }
            all
        })
    }

    /// The chunk locations the synthesizer filled.
    pub fn locations(&self) -> Vec<gc_partition::locations::Location> {
        let sets = [&self.sets.referenced, &self.sets.garbage, &self.sets.young];
        let mut all: Vec<_> = sets.into_iter().flatten().map(|(l, _)| l.clone()).collect();
        all.sort_by_key(|l| (l.bucket().to_owned(), l.prefix().to_owned()));
        all.dedup();
        all
    }
}
