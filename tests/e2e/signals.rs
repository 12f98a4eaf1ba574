//! Interruptions of the real binary during execute: SIGTERM, SIGINT and SIGKILL on a
//! `file://` partition large enough that execute takes seconds. The signal is sent once
//! deletes are seen in the store. Afterwards nothing referenced, young or foreign is gone,
//! the report (when the process could write one) matches the store, and a rerun finishes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::accounting::{chunks_stored, truth};
use common::*;

struct Big {
    fx: Fixture,
    garbage: Vec<String>,
    /// The garbage chunks deleted first: the lowest ids of the legacy location.
    first: Vec<String>,
    /// Of those, the ones the dead snapshot names (its own garbage).
    first_of_dead: Vec<String>,
}

fn big(seed: u64) -> Big {
    let fx = partition(&Backend::File, |c| {
        c.seed = seed;
        c.snapshots = 4;
        c.referenced_ids = 4_000;
        c.garbage_chunks = 30_000;
        c.young_chunks = 100;
        c.foreign_objects = 10;
        c.dead_snapshots = 1;
        c.extra_locations = 1;
    });
    let sets = fx.summary.sets.as_ref().unwrap();
    let legacy = &fx.summary.locations[0];
    let mut legacy_garbage: Vec<_> = sets.garbage.iter().filter(|(l, _)| l == legacy).map(|(_, id)| id.0).collect();
    legacy_garbage.sort();
    let name = |id: &[u8; 32]| chunk_name(legacy, &gc_partition::ids::ChunkId(*id));
    let first = legacy_garbage.iter().take(30).map(name).collect();
    let dead = fx.named_ids(&fx.summary.dead_snapshots[0]);
    let first_of_dead = legacy_garbage.iter().filter(|id| dead.contains(*id)).take(30).map(name).collect();
    let garbage = sets.garbage.iter().map(|(l, id)| chunk_name(l, id)).collect();
    Big { fx, garbage, first, first_of_dead }
}

impl Big {
    fn exists(&self, name: &str) -> bool {
        self.fx.root.as_ref().unwrap().join(name).exists()
    }

    fn spawn(&self, report: &std::path::Path, extra: &[&str]) -> Child {
        let live = self.fx.live_path.to_str().unwrap();
        Command::new(env!("CARGO_BIN_EXE_gc_partition"))
            .args(["--partition", "p1", "--live-snapshots", live, "--cutoff", "7d", "--store", &self.fx.url])
            .args(["--execute", "--verify", "--max-delete-fraction", "1", "--bloom-fpr", EXACT_FPR])
            .args(["--delete-concurrency", "1", "--report-out", report.to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until the first deletes are visible in the store, then freezes the process
    /// (SIGSTOP) so that what the test sees next cannot race with it. No deadline: a run
    /// that never deletes fails by exiting first, or is stopped by the test harness.
    fn wait_for_deletes_and_freeze(&self, child: &mut Child, first: &[String]) -> Frozen {
        while first.iter().all(|name| self.exists(name)) {
            assert!(child.try_wait().unwrap().is_none(), "gc_partition exited before deleting anything");
            std::thread::sleep(Duration::from_millis(5));
        }
        kill(child, "-STOP");
        let deleted = self.garbage_deleted();
        assert!(deleted > 0, "the first deletes were seen");
        assert!(deleted < self.garbage.len(), "every delete was done before the freeze: the test proves nothing");
        Frozen { deleted }
    }

    /// A deleting set (spec 9.2) naming the fixture's dead snapshot.
    fn write_deleting_set(&self) -> std::path::PathBuf {
        let dead = &self.fx.summary.dead_snapshots;
        assert_eq!(dead.len(), 1);
        let taken_at = self.fx.summary.taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let path = self.fx.path("deleting.txt");
        std::fs::write(&path, format!("{}\n# end count=1 taken_at={taken_at}\n", dead[0])).unwrap();
        path
    }

    /// The dead snapshot's manifest files.
    fn dead_manifests(&self) -> Vec<String> {
        let partition = gc_partition::ids::PartitionId::parse(&self.fx.partition).unwrap();
        let root = self.fx.root.as_ref().unwrap();
        let folder = root.join(&self.fx.meta_bucket).join(gc_partition::manifest::snapshots_dir(&partition));
        let dead = self.fx.summary.dead_snapshots[0].as_str();
        let names = std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|name| name.starts_with(dead)).collect()
    }

    fn garbage_deleted(&self) -> usize {
        self.garbage.iter().filter(|g| !self.exists(g)).count()
    }

    fn assert_nothing_lost(&self) {
        let sets = self.fx.summary.sets.as_ref().unwrap();
        for (l, id) in sets.referenced.iter().chain(&sets.young) {
            assert!(self.exists(&chunk_name(l, id)), "{} was deleted", chunk_name(l, id));
        }
        for (bucket, key) in &sets.foreign {
            assert!(self.exists(&format!("{bucket}/{key}")), "foreign {bucket}/{key} was deleted");
        }
    }

    fn rerun_finishes(&self) {
        let out = self.fx.gc(&[
            "--execute",
            "--verify",
            "--max-delete-fraction",
            "1",
            "--bloom-fpr",
            EXACT_FPR,
            "--output",
            "json",
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let json = json_stdout(&out);
        assert_eq!(json["verify"]["ok"], true);
        assert_eq!(self.garbage_deleted(), self.garbage.len(), "the rerun did not finish the job");
        self.assert_nothing_lost();
    }
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Sends `signal` to the frozen child and lets it go on: the signal is pending before the
/// process can run again, so it arrives while garbage is left to delete.
fn signal_frozen(child: &Child, signal: &str) {
    kill(child, signal);
    kill(child, "-CONT");
}

/// The child's exit status (128 + N when killed by signal N), and how long it took after the
/// signal (printed, never asserted). Waits as long as the process runs: the harness bounds it.
fn wait_for_exit(child: &mut Child) -> (i32, Duration) {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    let status = child.wait().unwrap();
    (status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(-1), start.elapsed())
}

/// What the store showed while the process was frozen.
struct Frozen {
    deleted: usize,
}

/// Stops an execute with `signal`; `deleting` passes the dead snapshot as being deleted, whose
/// accounting must then say what the run freed before the stop.
fn gentle_stop(signal: &str, expected: i32, seed: u64, deleting: bool) {
    let b = big(seed);
    let report_path = b.fx.path("report.json");
    let set = b.write_deleting_set();
    let dead_manifests = b.dead_manifests();
    let stored_before = chunks_stored(&b.fx);
    let extra = if deleting { vec!["--deleting-snapshots", set.to_str().unwrap()] } else { Vec::new() };
    let mut child = b.spawn(&report_path, &extra);
    // With a deleting set, frozen once one of the dead snapshot's own chunks is gone.
    let first = if deleting { &b.first_of_dead } else { &b.first };
    assert!(!first.is_empty(), "no chunk to wait for");
    let frozen = b.wait_for_deletes_and_freeze(&mut child, first);
    signal_frozen(&child, signal);
    let (status, took) = wait_for_exit(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status, expected, "{err}");
    let report = read_json(&report_path);
    common::schemas::check_report(&report);
    assert_eq!(report["exit_code"], expected, "the report was not written with the exit code");
    let deleted = report["deleted"].as_u64().unwrap();
    let not_started = report["deletes_not_started"].as_u64().unwrap();
    let planned = report["planned_deletes"].as_u64().unwrap();
    // The signal was pending while garbage was left: no new deletes after it, so some were
    // never started (with one delete in flight at a time, the stop comes within a few).
    assert!(deleted as usize >= frozen.deleted, "{deleted} deleted, {} seen before the signal", frozen.deleted);
    assert!(not_started > 0, "deletes went on after the signal: {deleted} of {planned}");
    // Stopped: no second listing for verify, which could outlast the grace before a SIGKILL.
    assert_eq!(report["verify"]["after_checked"], false, "verify re-listed the store after the signal");
    assert_eq!(report["verify"]["planned_but_referenced"], 0);
    assert!(report["durations_ms"].get("verify_after").is_none());
    assert_eq!(deleted + not_started, planned);
    // No delete after the report's accounting: the store agrees with the report exactly.
    assert_eq!(b.garbage_deleted() as u64, deleted, "the store and the report disagree");
    b.assert_nothing_lost();
    if deleting {
        // What the run freed before the stop, from the store: spec 9.2's accounting of it.
        let fx = &b.fx;
        let live: BTreeSet<[u8; 32]> = fx.summary.snapshots.iter().flat_map(|s| fx.named_ids(s)).collect();
        let dead = &fx.summary.dead_snapshots[0];
        let named = [(dead.clone(), fx.named_ids(dead))];
        let stored_after = chunks_stored(fx);
        let freed = stored_before.iter().filter(|(chunk, _)| !stored_after.contains_key(*chunk));
        let freed: BTreeMap<_, _> = freed.map(|(chunk, size)| (*chunk, *size)).collect();
        let want = truth(&named, &live, &stored_before, &freed);
        let accounted = report["deleting_snapshots"].as_array().expect("accounted after a stop (spec 9.2)");
        assert_eq!(accounted, &want);
        let freed_chunks = want[0]["freed_chunks"].as_u64().unwrap();
        assert!(freed_chunks > 0, "one of the dead snapshot's chunks was gone before the signal");
        assert!(want[0]["chunks"].as_u64().unwrap() > freed_chunks, "the stop came after every delete");
        eprintln!("{signal}: the dead snapshot's chunks freed before the stop: {freed_chunks}");
        // Stopped: not exit 0, so no manifest is reclaimed.
        assert_eq!(report["reclaimed_snapshots"], serde_json::json!([]), "{report}");
        assert_eq!(b.dead_manifests(), dead_manifests, "a stopped run reclaimed a manifest");
    }
    eprintln!("{signal}: exit {status} {took:?} after the signal; {deleted} deleted, {not_started} not started");
    b.rerun_finishes();
}

#[test]
fn sigterm_during_execute_stops_gently_and_a_rerun_finishes() {
    gentle_stop("-TERM", 143, 31, true);
}

#[test]
fn sigint_during_execute_stops_gently_and_a_rerun_finishes() {
    gentle_stop("-INT", 130, 32, false);
}

#[test]
fn sigkill_during_execute_loses_nothing_and_a_rerun_finishes() {
    let b = big(33);
    let report_path = b.fx.path("report.json");
    let mut child = b.spawn(&report_path, &[]);
    let frozen = b.wait_for_deletes_and_freeze(&mut child, &b.first);
    // SIGKILL ends a stopped process at once: the store stays as the freeze left it.
    kill(&child, "-KILL");
    let (status, _) = wait_for_exit(&mut child);
    assert_eq!(status, 128 + 9);
    assert!(!report_path.exists(), "a killed process cannot have written its report");
    let deleted = b.garbage_deleted();
    assert_eq!(deleted, frozen.deleted, "killed at {deleted} of {} deletes", b.garbage.len());
    b.assert_nothing_lost();
    let left: HashSet<&String> = b.garbage.iter().filter(|g| b.exists(g)).collect();
    eprintln!("SIGKILL after {deleted} deletes; {} garbage left for the rerun", left.len());
    b.rerun_finishes();
}
