//! Shared end-to-end fixtures: a synthetic partition on a backend (a temporary `file://`
//! store, or the `s3s-fs` and fake-gcs-server servers `scripts/test` starts), a way to run
//! the built binary on it, and a fingerprint of the store to prove it unchanged.
//!
//! The end-to-end suite itself is `suite.rs`; each `e2e_*.rs` runs it on one backend with
//! [`suite_tests!`]. Server-backed tests are compiled as ignored unless the server's variable
//! (`GC_TEST_S3_ENDPOINT`, `GC_TEST_GCS_ENDPOINT`) was set at build time (`build.rs` turns
//! them into the cfgs `gc_test_s3`, `gc_test_gcs`): a plain `cargo test` reports them ignored,
//! never passed, and under `scripts/test` a server that cannot be reached is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod accounting;
pub mod contract;
pub mod faults;
pub mod gcs_proxy;
pub mod part;
pub mod race;
pub mod schemas;
pub mod suite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::TryStreamExt;
use gc_kit::Ageing;
use gc_kit::synth::{SynthConfig, SynthSummary, synthesize};
use gc_partition::store::{StoreOptions, Stores};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use sha2::{Digest, Sha256};

/// The file `scripts/test` puts in the root of the `s3s-fs` server it starts: tests only
/// ever empty a root that has it.
pub const S3_ROOT_MARKER: &str = ".gc-test-s3-root";
/// The same for the fake-gcs-server root.
pub const GCS_ROOT_MARKER: &str = ".gc-test-gcs-root";

/// Where a test's partition lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A fresh temporary `file://` store per fixture.
    File,
    /// The `s3s-fs` server at `endpoint`, whose objects are the files `root/<bucket>/<key>`.
    S3 { endpoint: String, root: PathBuf, access_key: String, secret_key: String },
    /// The fake-gcs-server at `endpoint`, whose objects are the files `root/<bucket>/<key>`
    /// (their times in the `user.metadata` xattr, see `gc_kit::fake_gcs`).
    Gcs { endpoint: String, root: PathBuf, env: Vec<(String, String)> },
    /// Azurite at `endpoint` (`http://127.0.0.1:PORT/devstoreaccount1`), its data and the
    /// port of its ageing hook under `root` (see `gc_kit::azurite`).
    Az { endpoint: String, root: PathBuf, env: Vec<(String, String)> },
}

fn required_var(name: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{name} is unset, but this test was built to run against its server (see scripts/test)")
    })
}

/// The server root in `$var`, refused unless it has `marker` (tests empty it).
fn server_root(var: &str, marker: &str) -> PathBuf {
    let root = PathBuf::from(required_var(var));
    assert!(root.join(marker).exists(), "{} lacks {marker}: not a test server root", root.display());
    root
}

impl Backend {
    /// The S3 test server from `GC_TEST_S3_ENDPOINT` and `GC_TEST_S3_ROOT` (set by
    /// `scripts/test`). Panics when they are unset: only called by tests that run because
    /// they were set at build time.
    pub fn s3() -> Backend {
        let endpoint = required_var("GC_TEST_S3_ENDPOINT");
        let root = server_root("GC_TEST_S3_ROOT", S3_ROOT_MARKER);
        Backend::S3 {
            endpoint,
            root,
            access_key: required_var("AWS_ACCESS_KEY_ID"),
            secret_key: required_var("AWS_SECRET_ACCESS_KEY"),
        }
    }

    /// The fake-gcs-server from `GC_TEST_GCS_ENDPOINT` and `GC_TEST_GCS_ROOT` (set by
    /// `scripts/test`, see `scripts/gcs-server`). A service-account file with `disable_oauth`
    /// is written, as the emulator needs. Panics when the variables are unset.
    pub fn gcs() -> Backend {
        let endpoint = required_var("GC_TEST_GCS_ENDPOINT");
        let root = server_root("GC_TEST_GCS_ROOT", GCS_ROOT_MARKER);
        let path = std::env::temp_dir().join(format!("gc-test-gcs-sa-{}.json", std::process::id()));
        let json = serde_json::json!({
            "gcs_base_url": endpoint, "disable_oauth": true,
            "client_email": "", "private_key": "", "private_key_id": "",
        });
        std::fs::write(&path, json.to_string()).unwrap();
        let env = vec![
            ("GOOGLE_SERVICE_ACCOUNT".to_owned(), path.display().to_string()),
            ("GOOGLE_BASE_URL".to_owned(), endpoint.clone()),
        ];
        Backend::Gcs { endpoint, root, env }
    }

    /// Azurite from `GC_TEST_AZ_ENDPOINT` and `GC_TEST_AZ_ROOT` (set by `scripts/test`, see
    /// `scripts/azurite-server`), with its well-known account and key. Panics when unset.
    pub fn az() -> Backend {
        let endpoint = required_var("GC_TEST_AZ_ENDPOINT");
        Backend::Az { env: az_env(&endpoint), endpoint, root: PathBuf::from(required_var("GC_TEST_AZ_ROOT")) }
    }

    /// The Azurite that serves HTTPS with OAuth on, from `GC_TEST_AZ_TLS_ENDPOINT` and
    /// `GC_TEST_AZ_TLS_ROOT` (`scripts/azurite-server run-tls`): its certificate is
    /// self-signed, so the store allows invalid certificates. Panics when unset.
    pub fn az_tls() -> Backend {
        let endpoint = required_var("GC_TEST_AZ_TLS_ENDPOINT");
        let mut env: Vec<(String, String)> =
            az_env(&endpoint).into_iter().filter(|(k, _)| k != "AZURE_ALLOW_HTTP").collect();
        env.push(("AZURE_ALLOW_INVALID_CERTIFICATES".to_owned(), "true".to_owned()));
        Backend::Az { env, endpoint, root: PathBuf::from(required_var("GC_TEST_AZ_TLS_ROOT")) }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::S3 { .. } => "s3",
            Backend::Gcs { .. } => "gcs",
            Backend::Az { .. } => "az",
        }
    }

    /// Whether the store's listing gives each object's version (spec 10.1): GCS generations,
    /// Azure ETags. (`s3s-fs` keeps no versions; moto's versioned buckets are tested in
    /// `tests/s3_versions.rs`.)
    pub fn lists_versions(&self) -> bool {
        matches!(self, Backend::Gcs { .. } | Backend::Az { .. })
    }

    /// The re-reads an execute sends per deleted chunk on a quiet store, and the most keys
    /// one delete request carries (spec 10.1): none where the listing's version conditions
    /// the delete (GCS: one conditional DELETE a chunk; Azure: Blob Batches of 256); one on
    /// unversioned S3 (bulk deletes of 1,000). `None` for `file://`, which sends no request.
    pub fn delete_requests(&self) -> Option<(u64, u64)> {
        match self {
            Backend::Gcs { .. } => Some((0, 1)),
            Backend::Az { .. } => Some((0, 256)),
            Backend::S3 { .. } => Some((1, 1000)),
            Backend::File => None,
        }
    }

    /// The server's root, for `gc_synth --backdate-root`.
    pub fn server_root(&self) -> Option<&Path> {
        match self {
            Backend::File => None,
            Backend::S3 { root, .. } | Backend::Gcs { root, .. } | Backend::Az { root, .. } => Some(root),
        }
    }

    /// The environment a `gc_partition` or in-process store needs for this backend.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::File => Vec::new(),
            Backend::S3 { endpoint, access_key, secret_key, .. } => [
                ("AWS_ENDPOINT", endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", access_key),
                ("AWS_SECRET_ACCESS_KEY", secret_key),
                ("AWS_ALLOW_HTTP", "true"),
                ("AWS_REGION", "us-east-1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            Backend::Gcs { env, .. } | Backend::Az { env, .. } => env.clone(),
        }
    }
}

/// Azurite's well-known development account and key (public, in Azure's documentation).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The `AZURE_*` configuration of an `az://` store at an Azurite `endpoint`.
pub fn az_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
        ("AZURE_STORAGE_ENDPOINT", endpoint),
        ("AZURE_ALLOW_HTTP", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// moto's S3 server from `GC_TEST_MOTO_ENDPOINT` (set by `scripts/test`).
pub fn moto_endpoint() -> String {
    required_var("GC_TEST_MOTO_ENDPOINT")
}

/// moto's S3 server at `url` (the server, or a proxy in front of it) as a backend: moto takes
/// any credentials, and its objects are not files to age (no root).
pub fn moto_backend(url: &str) -> Backend {
    Backend::S3 {
        endpoint: url.to_owned(),
        root: "/nonexistent".into(),
        access_key: "moto".into(),
        secret_key: "moto".into(),
    }
}

/// The `AWS_*` configuration of an `s3://` store reaching moto at `url`.
pub fn moto_env(url: &str) -> Vec<(String, String)> {
    moto_backend(url).env()
}

/// The `az://` stores of Azurite for `env`, able to make containers and age blobs, and
/// emptied: every container that holds a blob is deleted.
pub fn azurite_stores(root: &Path, env: &[(String, String)]) -> Stores {
    let stores = Stores::from_url_and_env("az://", StoreOptions::default(), env.to_vec()).unwrap();
    let stores = gc_kit::azurite::test_server_stores(stores, root.to_owned(), env).unwrap();
    gc_kit::azurite::of(&stores).unwrap().empty().unwrap();
    stores
}

/// Tests of one binary share the server: they take turns, each on an emptied root.
pub static S3_TURN: Mutex<()> = Mutex::new(());

/// Empties the server root, keeping the marker. Only called on a root that has the marker.
pub fn empty_root(root: &Path) {
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == S3_ROOT_MARKER || entry.file_name() == GCS_ROOT_MARKER {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(entry.path()).unwrap();
        } else {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
}

pub struct Fixture {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    /// The folder that holds the store's files (`file://` root, the server's root): always
    /// set.
    pub root: Option<PathBuf>,
    pub url: String,
    pub stores: Stores,
    pub summary: SynthSummary,
    pub live_path: PathBuf,
    pub partition: String,
    pub meta_bucket: String,
    _turn: Option<MutexGuard<'static, ()>>,
}

/// A bloom false-positive rate at which no test run keeps a garbage chunk by chance (about
/// 1e-8 over the whole suite): for tests that assert exactly which garbage is deleted. The
/// filter's seed changes every run, so at the default 0.001 such a test fails now and then.
pub const EXACT_FPR: &str = "0.000000000001";

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// A small synthetic partition on the backend, with its sets recorded.
pub fn partition(backend: &Backend, tweak: impl FnOnce(&mut SynthConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let live_path = dir.path().join("live.txt");
    let mut config = SynthConfig {
        snapshots: 6,
        referenced_ids: 600,
        garbage_chunks: 150,
        young_chunks: 40,
        foreign_objects: 12,
        dead_snapshots: 2,
        extra_locations: 2,
        record_sets: true,
        live_set_path: Some(live_path.clone()),
        ..SynthConfig::default()
    };
    tweak(&mut config);
    let (turn, root, url, stores) = match backend {
        Backend::File => {
            let root = dir.path().join("store");
            std::fs::create_dir_all(&root).unwrap();
            let url = format!("file://{}", root.display());
            let stores = Stores::from_url(&url, StoreOptions::default()).unwrap();
            (None, Some(root), url, stores)
        }
        Backend::S3 { root, .. } => {
            let turn = S3_TURN.lock().unwrap_or_else(PoisonError::into_inner);
            empty_root(root);
            let stores = Stores::from_url_and_env("s3://", StoreOptions::default(), backend.env())
                .unwrap()
                .with_backdate_root(root.clone());
            (Some(turn), Some(root.clone()), "s3://".to_owned(), stores)
        }
        Backend::Gcs { endpoint, root, .. } => {
            let turn = S3_TURN.lock().unwrap_or_else(PoisonError::into_inner);
            empty_root(root);
            let stores = Stores::from_url_and_env("gs://", StoreOptions::default(), backend.env()).unwrap();
            let stores = gc_kit::fake_gcs::test_server_stores(stores, root.clone(), endpoint);
            (Some(turn), Some(root.clone()), "gs://".to_owned(), stores)
        }
        Backend::Az { root, env, .. } => {
            let turn = S3_TURN.lock().unwrap_or_else(PoisonError::into_inner);
            let stores = azurite_stores(root, env);
            (Some(turn), Some(root.clone()), "az://".to_owned(), stores)
        }
    };
    let partition = config.partition.to_string();
    let meta_bucket = config.meta_bucket.clone();
    let summary = runtime().block_on(synthesize(&stores, &config)).unwrap();
    Fixture {
        backend: backend.clone(),
        dir,
        root,
        url,
        stores,
        summary,
        live_path,
        partition,
        meta_bucket,
        _turn: turn,
    }
}

/// A store's content: (bucket or file path, key) -> (size, last-modified, content hash).
pub type Fingerprint = BTreeMap<(String, String), (u64, i64, [u8; 32])>;

impl Fixture {
    /// Runs `gc_partition` on this partition with `--cutoff 7d` and the extra flags.
    pub fn gc(&self, extra: &[&str]) -> Output {
        let live = self.live_path.to_str().unwrap();
        let mut args = vec!["--partition", &self.partition, "--live-snapshots", live, "--cutoff", "7d"];
        args.extend_from_slice(extra);
        self.gc_raw(&args, None)
    }

    /// Runs `gc_partition` with exactly `args` plus `--store` of this fixture.
    pub fn gc_raw(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--store", &self.url]);
        gc_binary(&all, stdin, &self.backend.env())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn exists(&self, bucket: &str, key: &str) -> bool {
        let store = self.stores.bucket(bucket).unwrap();
        match runtime().block_on(store.head(&ObjectPath::from(key))) {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("head {bucket}/{key}: {e}"),
        }
    }

    /// Every id `snapshot`'s manifests name, read with the library's parsers (tested on their own
    /// against the fixtures), as the truth's input.
    pub fn named_ids(&self, snapshot: &gc_partition::ids::SnapshotId) -> std::collections::BTreeSet<[u8; 32]> {
        use gc_partition::manifest::{legacy, legacy_index_key, legacy_manifest_key, unified, unified_key};
        let partition = gc_partition::ids::PartitionId::parse(&self.partition).unwrap();
        let mut ids = std::collections::BTreeSet::new();
        let snap = unified_key(&partition, snapshot);
        if self.exists(&self.meta_bucket, &snap) {
            let bytes = self.read(&self.meta_bucket, &snap);
            let reader = unified::SnapReader::open(bytes.into(), &snap, snapshot, &partition).unwrap();
            reader.for_each_group(|group| ids.extend(group.ids().iter().copied())).unwrap();
        }
        let text = legacy_manifest_key(&partition, snapshot);
        if self.exists(&self.meta_bucket, &text) {
            let parsed =
                legacy::parse_manifest(&self.read(&self.meta_bucket, &text), &text, snapshot, &partition).unwrap();
            let index = self.read(&self.meta_bucket, &legacy_index_key(&partition, snapshot));
            ids.extend(legacy::check_index(&parsed, &index, "index").unwrap().iter().copied());
        }
        ids
    }

    pub fn read(&self, bucket: &str, key: &str) -> Vec<u8> {
        let store = self.stores.bucket(bucket).unwrap();
        runtime().block_on(async { store.get(&ObjectPath::from(key)).await.unwrap().bytes().await.unwrap().to_vec() })
    }

    pub fn write(&self, bucket: &str, key: &str, data: Vec<u8>) {
        let store = self.stores.bucket(bucket).unwrap();
        runtime().block_on(store.put(&ObjectPath::from(key), data.into())).unwrap();
    }

    pub fn remove(&self, bucket: &str, key: &str) {
        let store = self.stores.bucket(bucket).unwrap();
        runtime().block_on(store.delete(&ObjectPath::from(key))).unwrap();
    }

    /// Every file under the store's folder (`file://`, the server's root: the server's own
    /// metadata files included) with its size, last-modified and content hash: equal
    /// fingerprints mean a byte-for-byte unchanged store.
    pub fn fingerprint(&self) -> Fingerprint {
        if let Some(azurite) = gc_kit::azurite::of(&self.stores) {
            return azurite_fingerprint(azurite);
        }
        fingerprint_dir(self.root.as_ref().expect("every fixture has a root"))
    }
}

/// The repository's root (schemas, testdata and docs live there).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `gc_partition` binary cargo built beside the running test binary: tests run from
/// `target/<profile>/deps/`, the package's binaries sit one directory up (cargo builds them
/// for the package's integration tests).
pub fn gc_partition_binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let profile = test.parent().and_then(Path::parent).expect("a test binary under target/<profile>/deps");
    let binary = profile.join(format!("gc_partition{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.exists(), "{} is not built: run the tests with cargo test", binary.display());
    binary
}

/// Runs the built `gc_partition` with `args` (`RUST_LOG=warn`), and validates what it wrote for
/// other programs (report, plan, progress events) against the schemas ([`schemas::check_run`]).
pub fn gc_binary(args: &[&str], stdin: Option<&[u8]>, env: &[(String, String)]) -> Output {
    let mut command = Command::new(gc_partition_binary());
    command.args(args).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped());
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    schemas::check_run(args, &output.stdout, &output.stderr);
    output
}

pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json_stdout(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}\nstderr: {}", String::from_utf8_lossy(&output.stdout), stderr(output))
    })
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The plan's lines, parsed.
pub fn read_plan(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every blob record of Azurite: its files on disk are written every few seconds, so they
/// cannot tell. The ETag stands for the content (it changes on every write).
pub fn azurite_fingerprint(azurite: &gc_kit::azurite::Azurite) -> Fingerprint {
    let mut blobs = Fingerprint::new();
    for (account, container, name, size, modified, etag, snapshot) in azurite.blobs().unwrap() {
        let stamp = chrono::DateTime::parse_from_rfc3339(&modified).unwrap().timestamp_millis();
        let tag: [u8; 32] = Sha256::digest(format!("{etag} {snapshot}")).into();
        blobs.insert((format!("{account}/{container}"), name), (size, stamp, tag));
    }
    blobs
}

/// Every file under `root` with its size, mtime and content hash.
pub fn fingerprint_dir(root: &Path) -> Fingerprint {
    let mut files = Fingerprint::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let mtime = filetime::FileTime::from_last_modification_time(&meta);
            let stamp = mtime.unix_seconds() * 1_000_000_000 + i64::from(mtime.nanoseconds());
            let hash: [u8; 32] = Sha256::digest(std::fs::read(entry.path()).unwrap()).into();
            let rel = entry.path().strip_prefix(root).unwrap().display().to_string();
            files.insert((String::new(), rel), (meta.len(), stamp, hash));
        }
    }
    files
}

/// `bucket/key` of a chunk, as the plan and report name it.
pub fn chunk_name(location: &gc_partition::locations::Location, id: &gc_partition::ids::ChunkId) -> String {
    format!("{}/{}", location.bucket(), location.chunk_key(id))
}

/// One `#[test]` per suite function, each on the backend `$backend` builds, ignored unless
/// the cfg `$server` is set (`all()` for a backend that needs no server).
#[macro_export]
macro_rules! suite_tests {
    ($backend:expr, $server:meta; $($name:ident),* $(,)?) => {
        $(
            #[test]
            #[cfg_attr(not($server), ignore = "no test server: scripts/test starts it (see doc/testing.md)")]
            fn $name() {
                $crate::suite::$name(&$backend);
            }
        )*
    };
}

/// Every test of the suite, for [`suite_tests!`].
#[macro_export]
macro_rules! whole_suite {
    ($backend:expr, $server:meta) => {
        $crate::suite_tests!($backend, $server;
            dry_run_plans_the_garbage_and_changes_nothing,
            execute_deletes_only_garbage_and_a_rerun_has_nothing_left,
            cutoff_inside_the_grace_window_is_refused,
            bad_live_sets_exit_3_and_change_nothing,
            live_set_from_stdin,
            any_manifest_problem_exits_4_and_deletes_nothing,
            a_live_snapshot_without_manifests_exits_4,
            delete_fraction_guard_blocks_execute_and_is_reported_in_dry_run,
            locations_of_other_partitions_are_refused,
            a_listing_failure_exits_5_and_deletes_nothing,
            human_summary_reads_well,
            backdated_objects_show_their_age_in_list_and_head,
            a_manifest_naming_another_partitions_location_exits_4,
            a_location_named_only_by_a_manifest_is_listed_and_collected,
            gc_synth_makes_a_partition_gc_can_collect,
            the_cross_check_stops_an_incomplete_set_and_an_execute_reclaims,
            a_reviewed_plan_deletes_its_chunks,
            execute_sends_few_requests_per_deleted_chunk,
        );
    };
}
