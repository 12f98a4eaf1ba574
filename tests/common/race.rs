//! What a writer race (`tests/reliability/writer_race_remote.rs`) asserts once
//! the run is over, on any store: no chunk a writer committed was deleted, every DELETE
//! carried a precondition on a version the collector read, the report counted them, the race
//! was met, and the garbage no writer reused is gone.

use std::collections::BTreeSet;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::gcs_proxy::GcsProxy;

/// The run's outcome: its report, the chunks writers committed and how many uploads they
/// made, the keys of the garbage, and `condition` (how the store names its precondition).
pub struct Race<'a> {
    pub report: &'a serde_json::Value,
    pub committed: &'a BTreeSet<String>,
    pub uploads: u64,
    pub keys: &'a [String],
    pub condition: &'a str,
}

/// Starts `--execute` of partition `p1` (an empty live set, cutoff 48 h) on the store `url`,
/// its live set written under `dir`; `GC_RACE_BINARY` may name another binary.
pub fn start_collector(dir: &std::path::Path, url: &str, env: &[(String, String)]) -> std::process::Child {
    let live = dir.join("live.txt");
    let taken_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(&live, format!("# end count=0 taken_at={taken_at}\n")).unwrap();
    let binary = std::env::var_os("GC_RACE_BINARY").map_or_else(super::gc_partition_binary, Into::into);
    std::process::Command::new(binary)
        .args(["--partition", "p1", "--live-snapshots", live.to_str().unwrap(), "--cutoff", "48h"])
        .args(["--store", url, "--execute", "--max-delete-fraction", "1", "--output", "json"])
        .args(["--delete-concurrency", "8"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// How long writer `seed` waits before its `n`th upload: 0 to 20 ms, so refreshes land
/// anywhere between the collector's listing (or re-read) and its delete.
pub fn writer_delay(seed: u64, n: u64) -> std::time::Duration {
    std::time::Duration::from_micros((gc_kit::mix::unit(seed, n ^ 0x5eed) * 20_000.0) as u64)
}

pub fn assert_race(rt: &tokio::runtime::Runtime, bucket: &dyn ObjectStore, proxy: &GcsProxy, race: &Race<'_>) {
    let Race { report, committed, uploads, keys, condition } = race;
    // Counted before the checks below, which HEAD through the proxy themselves.
    let (heads, wire_deletes, posts) = (proxy.requests("HEAD"), proxy.requests("DELETE"), proxy.requests("POST"));
    let exists = |key: &str| match rt.block_on(bucket.head(&ObjectPath::from(key))) {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("{key}: {e}"),
    };
    let lost: Vec<&String> = committed.iter().filter(|key| !exists(key)).collect();
    let deletes = proxy.deletes();
    let refused = deletes.iter().filter(|d| d.status == 412).count() as u64;
    eprintln!(
        "{uploads} uploads by writers after a listing or re-read, {} chunks committed, {} DELETEs ({refused} refused by {condition}), report: deleted {}, refreshed_kept {}, lost {}",
        committed.len(),
        deletes.len(),
        report["deleted"],
        report["refreshed_kept"],
        lost.len()
    );
    eprintln!(
        "at the wire: {heads} HEADs, {wire_deletes} DELETEs, {posts} POSTs (batches; on GCS the writers' uploads too) for {} deleted chunks",
        report["deleted"]
    );
    assert!(lost.is_empty(), "chunks committed by a writer were deleted: {lost:?}");
    // The listing's version conditions each delete: the collector sends no re-read (spec
    // 10.1), at the wire and in its report.
    assert_eq!(heads, 0, "HEADs at the wire");
    assert_eq!(report["requests"]["head"], 0, "{report}");
    assert!(!deletes.is_empty(), "the collector deleted nothing");
    for delete in &deletes {
        let read = delete.if_generation_match.as_deref();
        let read = read.unwrap_or_else(|| panic!("DELETE {} carries no {condition}", delete.path));
        assert!(proxy.answered(&delete.path, read), "DELETE {} on a {condition} never listed nor read", delete.path);
    }
    assert_eq!(report["delete_conditions"]["conditional"].as_u64(), Some(deletes.len() as u64));
    assert_eq!(report["delete_conditions"]["unconditional"].as_u64(), Some(0));
    assert!(report["refreshed_kept"].as_u64().unwrap() >= refused, "every refused delete is a kept chunk");
    assert!(refused > 0, "no writer's upload landed between a listing or re-read and its delete: the race was not run");
    let survivors: Vec<&String> = keys.iter().filter(|key| !committed.contains(*key) && exists(key)).collect();
    assert!(survivors.is_empty(), "garbage no writer reused survived: {survivors:?}");
}
