//! Interruptions of the real binary during execute: SIGTERM, SIGINT and SIGKILL on a
//! `file://` partition large enough that execute takes seconds. The signal is sent once
//! deletes are seen in the store. Afterwards nothing referenced, young or foreign is gone,
//! the report (when the process could write one) matches the store, and a rerun finishes.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Big {
    fx: Fixture,
    garbage: Vec<String>,
    /// The garbage chunks deleted first: the lowest ids of the legacy location.
    first: Vec<String>,
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
    let first = legacy_garbage.iter().take(30).map(|id| chunk_name(legacy, &gc_partition::ids::ChunkId(*id))).collect();
    let garbage = sets.garbage.iter().map(|(l, id)| chunk_name(l, id)).collect();
    Big { fx, garbage, first }
}

impl Big {
    fn exists(&self, name: &str) -> bool {
        self.fx.root.as_ref().unwrap().join(name).exists()
    }

    fn spawn(&self, report: &std::path::Path) -> Child {
        let live = self.fx.live_path.to_str().unwrap();
        Command::new(env!("CARGO_BIN_EXE_gc_partition"))
            .args(["--partition", "p1", "--live-snapshots", live, "--cutoff", "7d", "--store", &self.fx.url])
            .args(["--execute", "--verify", "--max-delete-fraction", "1", "--bloom-fpr", "0.000001"])
            .args(["--delete-concurrency", "1", "--report-out", report.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until the first deletes are visible in the store.
    fn wait_for_deletes(&self, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.first.iter().all(|name| self.exists(name)) {
            assert!(child.try_wait().unwrap().is_none(), "gc_partition exited before deleting anything");
            assert!(Instant::now() < deadline, "no delete within 120 s");
            std::thread::sleep(Duration::from_millis(5));
        }
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
            "0.000001",
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

/// Waits up to `limit` for the child to exit; kills it and fails if it does not.
fn wait_within(child: &mut Child, limit: Duration) -> (i32, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            return (status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(-1), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("gc_partition did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn gentle_stop(signal: &str, expected: i32, seed: u64) {
    let b = big(seed);
    let report_path = b.fx.path("report.json");
    let mut child = b.spawn(&report_path);
    b.wait_for_deletes(&mut child);
    kill(&child, signal);
    let (status, took) = wait_within(&mut child, Duration::from_secs(10));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status, expected, "{err}");
    let report = read_json(&report_path);
    assert_eq!(report["exit_code"], expected, "the report was not written with the exit code");
    let deleted = report["deleted"].as_u64().unwrap();
    let not_started = report["deletes_not_started"].as_u64().unwrap();
    let planned = report["planned_deletes"].as_u64().unwrap();
    assert!(not_started > 0, "the signal came after the last delete: the test proves nothing");
    // Stopped: no second listing for verify, which could outlast the grace before a SIGKILL.
    assert_eq!(report["verify"]["after_checked"], false, "verify re-listed the store after the signal");
    assert_eq!(report["verify"]["planned_but_referenced"], 0);
    assert!(report["durations_ms"].get("verify_after").is_none());
    assert_eq!(deleted + not_started, planned);
    // No delete after the report's accounting: the store agrees with the report exactly.
    assert_eq!(b.garbage_deleted() as u64, deleted, "the store and the report disagree");
    b.assert_nothing_lost();
    eprintln!("{signal}: exit {status} {took:?} after the signal; {deleted} deleted, {not_started} not started");
    b.rerun_finishes();
}

#[test]
fn sigterm_during_execute_stops_gently_and_a_rerun_finishes() {
    gentle_stop("-TERM", 143, 31);
}

#[test]
fn sigint_during_execute_stops_gently_and_a_rerun_finishes() {
    gentle_stop("-INT", 130, 32);
}

#[test]
fn sigkill_during_execute_loses_nothing_and_a_rerun_finishes() {
    let b = big(33);
    let report_path = b.fx.path("report.json");
    let mut child = b.spawn(&report_path);
    b.wait_for_deletes(&mut child);
    kill(&child, "-KILL");
    let (status, _) = wait_within(&mut child, Duration::from_secs(10));
    assert_eq!(status, 128 + 9);
    assert!(!report_path.exists(), "a killed process cannot have written its report");
    let deleted = b.garbage_deleted();
    assert!(deleted > 0 && deleted < b.garbage.len(), "killed at {deleted} of {} deletes", b.garbage.len());
    b.assert_nothing_lost();
    let left: HashSet<&String> = b.garbage.iter().filter(|g| b.exists(g)).collect();
    eprintln!("SIGKILL after {deleted} deletes; {} garbage left for the rerun", left.len());
    b.rerun_finishes();
}
