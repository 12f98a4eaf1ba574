//! Chunks a killed run left renamed aside (spec 9.1, `file://`): the next `--execute` puts
//! them back before it lists, so nothing is lost and the chunks are judged again; a dry run
//! only counts them; a copy a writer made at the key meanwhile wins over the held one.

use common::*;
use gc_partition::locations::{HELD_FOLDER, held_key};

/// Renames the chunk at `key` of `bucket` aside, as a run killed after its rename leaves it.
fn hold(fx: &Fixture, bucket: &str, key: &str) -> std::path::PathBuf {
    let root = fx.root.as_ref().unwrap().join(bucket);
    let held = root.join(held_key(key));
    std::fs::create_dir_all(held.parent().unwrap()).unwrap();
    std::fs::rename(root.join(key), &held).unwrap();
    held
}

#[test]
fn chunks_left_aside_by_a_killed_run_are_put_back_before_the_listing() {
    let fx = partition(&Backend::File, |c| c.seed = 33);
    let sets = fx.summary.sets.clone().unwrap();
    let (referenced, garbage) = (&sets.referenced[0], &sets.garbage[0]);
    let referenced_key = referenced.0.chunk_key(&referenced.1);
    let garbage_key = garbage.0.chunk_key(&garbage.1);
    let held_referenced = hold(&fx, referenced.0.bucket(), &referenced_key);
    let held_garbage = hold(&fx, garbage.0.bucket(), &garbage_key);
    // A writer uploaded a referenced chunk again while it was aside: both copies exist.
    let (rewritten, rewritten_id) = &sets.referenced[1];
    let rewritten_key = rewritten.chunk_key(rewritten_id);
    let rewritten_file = fx.root.as_ref().unwrap().join(rewritten.bucket()).join(&rewritten_key);
    let held_rewritten = fx.root.as_ref().unwrap().join(rewritten.bucket()).join(held_key(&rewritten_key));
    std::fs::create_dir_all(held_rewritten.parent().unwrap()).unwrap();
    std::fs::copy(&rewritten_file, &held_rewritten).unwrap();
    std::fs::write(&rewritten_file, b"the writer's copy").unwrap();

    // A dry run counts them and moves nothing.
    let before = fx.fingerprint();
    let dry = fx.gc(&["--output", "json"]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let json = json_stdout(&dry);
    assert_eq!(json["held_chunks"]["found"], 3, "{json}");
    assert_eq!(json["held_chunks"]["put_back"], 0);
    assert_eq!(fx.fingerprint(), before, "a dry run changed the store");

    let out = fx.gc(&["--execute", "--verify", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["held_chunks"]["found"], 3, "{json}");
    assert_eq!(json["held_chunks"]["put_back"], 3);
    assert_eq!(json["verify"]["ok"], true, "every referenced chunk is back: {json}");
    assert!(!held_referenced.exists() && !held_garbage.exists() && !held_rewritten.exists());
    assert!(fx.exists(referenced.0.bucket(), &referenced_key), "the referenced chunk was not put back");
    assert_eq!(std::fs::read(&rewritten_file).unwrap(), b"the writer's copy", "the writer's copy must win");
    // The garbage chunk was put back, listed and judged again: old and unreferenced, deleted.
    assert!(!fx.exists(garbage.0.bucket(), &garbage_key), "the held garbage chunk was not collected");
    assert_eq!(json["deleted"], json["planned_deletes"]);
    let held_files = walk_files(&fx.root.as_ref().unwrap().join(referenced.0.bucket()).join(HELD_FOLDER));
    assert_eq!(held_files, 0, "files left aside after the run");
}

fn walk_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.map(|e| e.unwrap()).map(|e| if e.file_type().unwrap().is_dir() { walk_files(&e.path()) } else { 1 }).sum()
}

/// The manifests a stopped reclaim left aside (spec 9.2) and the chunks a killed run left
/// aside are both put back, and both counted in `held_chunks`: the first used to vanish from
/// the count when the listing's put-back replaced it.
#[test]
fn manifests_and_chunks_left_aside_are_both_counted() {
    let fx = partition(&Backend::File, |c| {
        c.seed = 35;
        c.dead_snapshots = 1;
    });
    let dead = &fx.summary.dead_snapshots[0];
    let partition = gc_partition::ids::PartitionId::parse(&fx.partition).unwrap();
    let folder =
        fx.root.as_ref().unwrap().join(&fx.meta_bucket).join(gc_partition::manifest::snapshots_dir(&partition));
    let manifest_key = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| {
            format!("{}{}", gc_partition::manifest::snapshots_dir(&partition), e.unwrap().file_name().to_str().unwrap())
        })
        .find(|key| gc_partition::manifest::manifest_of_key(&partition, key).is_some_and(|(s, _)| &s == dead))
        .expect("the dead snapshot has a manifest");
    hold(&fx, &fx.meta_bucket, &manifest_key);
    let sets = fx.summary.sets.clone().unwrap();
    let garbage = &sets.garbage[0];
    let garbage_key = garbage.0.chunk_key(&garbage.1);
    hold(&fx, garbage.0.bucket(), &garbage_key);
    let taken_at = fx.summary.taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let deleting = fx.path("deleting.txt");
    std::fs::write(&deleting, format!("{dead}\n# end count=1 taken_at={taken_at}\n")).unwrap();

    let out = fx.gc(&["--deleting-snapshots", deleting.to_str().unwrap(), "--execute", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["held_chunks"]["found"], 2, "the held manifest and the held chunk: {json}");
    assert_eq!(json["held_chunks"]["put_back"], 2, "{json}");
    assert!(fx.exists(&fx.meta_bucket, &manifest_key), "the held manifest was not put back");
}
