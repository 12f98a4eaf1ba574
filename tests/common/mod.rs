//! Shared end-to-end fixtures: a synthetic partition in a temporary `file://` store, a way to
//! run the built binary on it, and a fingerprint of the store to prove it unchanged.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod faults;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gc_partition::store::Stores;
use gc_partition::synth::{SynthConfig, SynthSummary, synthesize};
use sha2::{Digest, Sha256};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub url: String,
    pub stores: Stores,
    pub summary: SynthSummary,
    pub live_path: PathBuf,
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// A small synthetic partition `p1` on a fresh `file://` store, with its sets recorded.
pub fn partition(tweak: impl FnOnce(&mut SynthConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let url = format!("file://{}", root.display());
    let stores = Stores::from_url(&url, Default::default()).unwrap();
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
    let summary = runtime().block_on(synthesize(&stores, &config)).unwrap();
    Fixture { dir, root, url, stores, summary, live_path }
}

impl Fixture {
    /// Runs `gc_partition` on this partition with `--cutoff 7d` and the extra flags.
    pub fn gc(&self, extra: &[&str]) -> Output {
        let live = self.live_path.to_str().unwrap();
        let mut args = vec!["--partition", "p1", "--live-snapshots", live, "--cutoff", "7d", "--store", &self.url];
        args.extend_from_slice(extra);
        gc_binary(&args, None)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn exists(&self, bucket: &str, key: &str) -> bool {
        self.root.join(bucket).join(key).exists()
    }
}

pub fn gc_binary(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gc_partition"));
    command.args(args).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
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

/// Every file under `root` with its size, mtime and content hash: equal fingerprints mean a
/// byte-for-byte unchanged store.
pub fn fingerprint(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64, [u8; 32])> {
    let mut files = BTreeMap::new();
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
            let hash: [u8; 32] = Sha256::digest(std::fs::read(entry.path()).unwrap()).into();
            let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
            files.insert(rel, (meta.len(), mtime.unix_seconds(), i64::from(mtime.nanoseconds()), hash));
        }
    }
    files
}

/// `bucket/key` of a chunk, as the plan and report name it.
pub fn chunk_name(location: &gc_partition::locations::Location, id: &gc_partition::ids::ChunkId) -> String {
    format!("{}/{}", location.bucket(), location.chunk_key(id))
}
