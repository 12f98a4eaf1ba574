//! Replays every file of every fuzz target's corpus (`fuzz/corpus/<target>/`) through the
//! same function the target calls, so plain `cargo test` catches regressions the fuzzers
//! once found.

use std::path::PathBuf;

use gc_kit::fuzzing;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
        count += 1;
    }
    assert!(count > 0, "{} is empty", dir.display());
}

#[test]
fn live_set() {
    replay("live_set", fuzzing::fuzz_live_set);
}

#[test]
fn legacy_manifest() {
    replay("legacy_manifest", fuzzing::fuzz_legacy_manifest);
}

#[test]
fn legacy_index() {
    replay("legacy_index", fuzzing::fuzz_legacy_index);
}

#[test]
fn unified_manifest() {
    replay("unified_manifest", fuzzing::fuzz_unified_manifest);
}

#[test]
fn list_page() {
    replay("list_page", fuzzing::fuzz_list_page);
}

#[test]
fn every_target_has_a_corpus() {
    let targets = std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets")).unwrap();
    for target in targets {
        let path = target.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(&name);
        assert!(corpus.is_dir(), "fuzz target {name} has no corpus/{name}/");
    }
}
