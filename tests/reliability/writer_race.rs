//! Writers racing `--execute` (spec 4.6, 9.1): threads follow the writer protocol (reuse an
//! old chunk: refresh it, upload it again when the refresh finds it gone, then commit) while
//! the binary deletes the partition's old garbage on a `file://` store. Every chunk a writer
//! committed must still be there when the binary is done.
//!
//! The writers aim at the deletes: they look for the fan-out directories the binary is
//! emptying and refresh the chunks still there, so refreshes land between the collector's
//! judgement of a chunk and its delete. Seeded and bounded (chunks, refreshes, one run of the
//! binary); no timing is asserted. `GC_RACE_CHUNKS`, `GC_RACE_ROUNDS` and `GC_RACE_SEED` make
//! the larger runs of RELIABILITY.md.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use gc_kit::mix::unit;
use gc_partition::ids::ChunkId;
use gc_partition::locations::{HELD_FOLDER, Location};

const WRITERS: u64 = 4;
/// Refreshes per writer, at most.
const MAX_REFRESHES: u64 = 20_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// How a writer refreshes a chunk it reuses (spec 4: either gives a new mtime).
#[derive(Clone, Copy)]
enum Refresh {
    /// Set the mtime to now; a chunk found gone is uploaded again.
    Touch,
    /// Write a temporary file and rename it over the key.
    Rewrite,
}

struct Race {
    _dir: tempfile::TempDir,
    root: PathBuf,
    location: Location,
    /// The chunk ids of each fan-out directory, as written.
    fanout: Vec<Vec<ChunkId>>,
    live: PathBuf,
}

fn chunk_file(race: &Race, id: &ChunkId) -> PathBuf {
    race.root.join("snapshots").join(race.location.chunk_key(id))
}

/// `chunks` old garbage chunks in the legacy default location of `p1`, and an empty live set.
fn partition(chunks: u64, seed: u64) -> Race {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let location = Location::new("snapshots", "partitions/p1/chunks").unwrap();
    let old = SystemTime::now() - Duration::from_secs(3 * 24 * 3600);
    let mut fanout = vec![Vec::new(); 256];
    for n in 0..chunks {
        let mut id = [0u8; 32];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = (unit(seed, n * 32 + i as u64) * 256.0) as u8;
        }
        let id = ChunkId(id);
        fanout[id.0[0] as usize].push(id);
    }
    let race = Race { _dir: dir, root, location, fanout, live: PathBuf::new() };
    for id in race.fanout.iter().flatten() {
        let file = chunk_file(&race, id);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, id.to_hex()).unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
    }
    let live = race.root.parent().unwrap().join("live.txt");
    let taken_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(&live, format!("# end count=0 taken_at={taken_at}\n")).unwrap();
    Race { live, ..race }
}

/// What the writers did.
#[derive(Default)]
struct Writes {
    refreshes: AtomicU64,
    /// Refreshes aimed at a directory the collector was emptying.
    aimed: AtomicU64,
    /// Refreshes that found the chunk gone and uploaded it again.
    uploaded_again: AtomicU64,
    /// Every chunk a writer committed (refreshed, or uploaded again).
    committed: Mutex<BTreeSet<[u8; 32]>>,
}

fn refresh(file: &Path, content: &[u8], how: Refresh, tag: u64) -> bool {
    match how {
        Refresh::Touch => match std::fs::File::options().write(true).open(file) {
            Ok(f) => {
                f.set_modified(SystemTime::now()).unwrap();
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                upload(file, content, tag);
                false
            }
            Err(e) => panic!("{}: {e}", file.display()),
        },
        Refresh::Rewrite => {
            let existed = file.exists();
            upload(file, content, tag);
            existed
        }
    }
}

/// Writes `content` at `file` through a temporary name, as an uploader does.
fn upload(file: &Path, content: &[u8], tag: u64) {
    let tmp = file.with_extension(format!("upload-{tag}"));
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(content).unwrap();
    drop(f);
    std::fs::rename(&tmp, file).unwrap();
}

fn writer(race: &Race, writes: &Writes, done: &AtomicBool, seed: u64, me: u64) {
    let how = if me.is_multiple_of(2) { Refresh::Touch } else { Refresh::Rewrite };
    let mut n = 0u64;
    let mut refreshed = 0u64;
    while !done.load(Ordering::Relaxed) && refreshed < MAX_REFRESHES {
        n += 1;
        let hh = (unit(seed ^ me, n) * 256.0) as usize;
        let ids = &race.fanout[hh];
        if ids.is_empty() {
            continue;
        }
        let dir = race.root.join("snapshots").join(race.location.fanout_prefix(hh as u8));
        let present = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        // Aim at a directory being emptied; elsewhere, refresh now and then.
        let emptying = present > 0 && present < ids.len();
        if !emptying && unit(seed ^ me ^ 0xA5A5, n) > 0.02 {
            continue;
        }
        let picks = if emptying { 4 } else { 1 };
        for k in 0..picks {
            let id = &ids[(unit(seed ^ me ^ 0x5A5A, n * 8 + k) * ids.len() as f64) as usize];
            let found = refresh(&chunk_file(race, id), id.to_hex().as_bytes(), how, me);
            refreshed += 1;
            writes.refreshes.fetch_add(1, Ordering::Relaxed);
            writes.aimed.fetch_add(u64::from(emptying), Ordering::Relaxed);
            writes.uploaded_again.fetch_add(u64::from(!found), Ordering::Relaxed);
            writes.committed.lock().unwrap().insert(id.0);
        }
    }
}

/// Files under `dir`, in any depth (the folders a delete made stay, empty).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.map(|e| e.unwrap()).map(|e| if e.file_type().unwrap().is_dir() { files_under(&e.path()) } else { 1 }).sum()
}

struct Outcome {
    refreshes: u64,
    aimed: u64,
    uploaded_again: u64,
    committed: usize,
    lost: Vec<String>,
    refreshed_kept: u64,
    deleted: u64,
    survivors_not_committed: usize,
    held_left: bool,
}

fn race_once(chunks: u64, seed: u64) -> Outcome {
    let race = partition(chunks, seed);
    let store = format!("file://{}", race.root.display());
    let args = [
        "--partition",
        "p1",
        "--live-snapshots",
        race.live.to_str().unwrap(),
        "--cutoff",
        "48h",
        "--store",
        &store,
        "--execute",
        "--max-delete-fraction",
        "1",
        "--output",
        "json",
    ];
    let binary = std::env::var("GC_RACE_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gc_partition").to_owned());
    let child = Command::new(binary)
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let writes = Writes::default();
    let done = AtomicBool::new(false);
    let output = std::thread::scope(|scope| {
        for me in 0..WRITERS {
            let (race, writes, done) = (&race, &writes, &done);
            scope.spawn(move || writer(race, writes, done, seed, me));
        }
        let output = child.wait_with_output().unwrap();
        done.store(true, Ordering::Relaxed);
        output
    });
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    if std::env::var_os("GC_RACE_BINARY").is_none() {
        // This build's binary (another one, measured by hand, may be older than the schemas).
        common::schemas::check_report(&report);
    }
    let committed = writes.committed.into_inner().unwrap();
    let lost: Vec<String> = committed
        .iter()
        .map(|b| ChunkId(*b))
        .filter(|id| !chunk_file(&race, id).exists())
        .map(|id| id.to_hex())
        .collect();
    let survivors_not_committed =
        race.fanout.iter().flatten().filter(|id| chunk_file(&race, id).exists() && !committed.contains(&id.0)).count();
    Outcome {
        refreshes: writes.refreshes.into_inner(),
        aimed: writes.aimed.into_inner(),
        uploaded_again: writes.uploaded_again.into_inner(),
        committed: committed.len(),
        lost,
        refreshed_kept: report["refreshed_kept"].as_u64().unwrap(),
        deleted: report["deleted"].as_u64().unwrap(),
        survivors_not_committed,
        held_left: files_under(&race.root.join("snapshots").join(HELD_FOLDER)) > 0,
    }
}

#[test]
fn writers_racing_execute_lose_no_chunk_on_file_stores() {
    let chunks = env_u64("GC_RACE_CHUNKS", 6_000);
    let rounds = env_u64("GC_RACE_ROUNDS", 2);
    let seed = env_u64("GC_RACE_SEED", 19);
    let (mut refreshes, mut aimed, mut again, mut kept, mut lost) = (0, 0, 0, 0, 0);
    for round in 0..rounds {
        let outcome = race_once(chunks, seed + round);
        eprintln!(
            "round {round}: {} refreshes ({} aimed at a directory being emptied, {} found the chunk gone), {} chunks committed, {} deleted, {} refreshed_kept, {} lost",
            outcome.refreshes,
            outcome.aimed,
            outcome.uploaded_again,
            outcome.committed,
            outcome.deleted,
            outcome.refreshed_kept,
            outcome.lost.len()
        );
        assert!(!outcome.held_left, "no chunk is left renamed aside after a run that ended");
        assert_eq!(outcome.survivors_not_committed, 0, "every chunk no writer reused was deleted");
        refreshes += outcome.refreshes;
        aimed += outcome.aimed;
        again += outcome.uploaded_again;
        kept += outcome.refreshed_kept;
        lost += outcome.lost.len();
        assert!(
            outcome.lost.is_empty(),
            "round {round}: chunks committed by a writer were deleted: {:?}",
            outcome.lost
        );
    }
    eprintln!(
        "total: {refreshes} refreshes, {aimed} aimed, {again} uploaded again, {kept} refreshed_kept, {lost} lost"
    );
    // The writers met the deletes: the test proves nothing if they never did.
    assert!(aimed > 0 && again + kept > 0, "the writers never raced the deletes: {aimed} aimed, {again} found gone");
}
