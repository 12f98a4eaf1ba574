//! The JSON Schemas of the report, the plan's lines and the progress event, generated from the
//! serialized types (`gc_partition::schema`) and checked in under `schemas/`: this test fails
//! when a checked-in file differs from what the types generate now (a field added, renamed,
//! retyped or documented differently), or when `schemas/` holds a schema the library no
//! longer generates (a version raised: the old file is gone from the tree, the new one is
//! there). `GC_UPDATE_SCHEMAS=1 cargo test --test docs schemas::` writes them again.
//!
//! What the binary writes is validated against these files in every end-to-end suite
//! (`tests/common/schemas.rs`); the tests here also prove that validation is not vacuous.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gc_partition::schema::{self, SchemaFile};
use serde_json::json;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// The `*.schema.json` files under `schemas/`.
fn checked_in() -> BTreeSet<String> {
    std::fs::read_dir(schema_dir())
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".schema.json"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_checked_in_schemas_are_generated_from_the_types() {
    let update = std::env::var_os("GC_UPDATE_SCHEMAS").is_some();
    let generated = schema::all();
    let names: BTreeSet<String> = generated.iter().map(|f| f.name.clone()).collect();
    for file in &generated {
        let path = schema_dir().join(&file.name);
        if update {
            std::fs::create_dir_all(schema_dir()).unwrap();
            std::fs::write(&path, file.text()).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == file.text(),
            "{} is not what the types generate: run `GC_UPDATE_SCHEMAS=1 cargo test --test docs schemas::` and commit it",
            path.display()
        );
    }
    for stale in checked_in().difference(&names) {
        if update {
            std::fs::remove_file(schema_dir().join(stale)).unwrap();
        } else {
            panic!("schemas/{stale} is no longer generated (a version was raised?): GC_UPDATE_SCHEMAS=1 removes it");
        }
    }
}

fn validator(file: &SchemaFile) -> jsonschema::Validator {
    jsonschema::draft202012::new(&file.schema).unwrap()
}

/// A report as the binary writes it: a real dry run on a small partition.
fn real_report() -> serde_json::Value {
    let fx = common::partition(&common::Backend::File, |_| {});
    let out = fx.gc(&["--output", "json", "--verify"]);
    assert_eq!(common::code(&out), 0, "{}", common::stderr(&out));
    common::json_stdout(&out)
}

#[test]
fn a_renamed_or_missing_report_field_fails_validation() {
    let report = schema::report();
    let validator = validator(&report);
    let real = real_report();
    assert!(validator.is_valid(&real), "{real:#}");
    // Renamed: the old name is missing (required) and the new one unknown (closed objects).
    let mut renamed = real.clone();
    let value = renamed.as_object_mut().unwrap().remove("planned_deletes").unwrap();
    renamed["planned_deletes_total"] = value;
    assert!(!validator.is_valid(&renamed));
    // Nested objects are closed and required too.
    let mut nested = real.clone();
    let value = nested["guard"].as_object_mut().unwrap().remove("tripped").unwrap();
    nested["guard"]["is_tripped"] = value;
    assert!(!validator.is_valid(&nested));
    // Another type, another mode, another version.
    for (field, wrong) in [("deleted", json!("12")), ("mode", json!("dry_run")), ("version", json!(2))] {
        let mut changed = real.clone();
        changed[field] = wrong;
        assert!(!validator.is_valid(&changed), "{field}");
    }
}

#[test]
fn each_plan_line_matches_exactly_one_kind() {
    let plan = schema::plan();
    let validator = validator(&plan);
    let fx = common::partition(&common::Backend::File, |_| {});
    let path = fx.path("plan.jsonl");
    let out = fx.gc(&["--plan-out", path.to_str().unwrap()]);
    assert_eq!(common::code(&out), 0, "{}", common::stderr(&out));
    let lines = common::read_plan(&path);
    assert!(lines.len() > 2, "a plan with records");
    for line in &lines {
        assert!(validator.is_valid(line), "{line}");
    }
    let (header, record, footer) = (&lines[0], &lines[1], lines.last().unwrap());
    // A header without its binding, a record without its last-modified, a footer without
    // `old_chunks`: each fails, and so does a record that claims to be a footer.
    for (line, field) in [(header, "live_set_sha256"), (record, "last_modified"), (footer, "old_chunks")] {
        let mut missing = line.clone();
        missing.as_object_mut().unwrap().remove(field);
        assert!(!validator.is_valid(&missing), "{field}");
    }
    let mut disguised = record.clone();
    disguised["type"] = json!("footer");
    assert!(!validator.is_valid(&disguised));
    let mut newer = header.clone();
    newer["version"] = json!(gc_partition::plan::PLAN_VERSION + 1);
    assert!(!validator.is_valid(&newer), "the schema is of one plan version");
}

#[test]
fn the_progress_events_of_a_run_validate_and_a_changed_one_does_not() {
    let fx = common::partition(&common::Backend::File, |_| {});
    let args = ["--log-format", "json", "--progress-interval", "1ms", "--execute", "--max-delete-fraction", "1"];
    let out = fx.gc(&args);
    assert_eq!(common::code(&out), 0, "{}", common::stderr(&out));
    let live = fx.live_path.to_str().unwrap();
    let all_args = [&["--partition", &fx.partition, "--live-snapshots", live, "--cutoff", "7d"], &args[..]].concat();
    // gc_binary validated them already; this says they were there to validate.
    let checked = common::schemas::check_run(&all_args, &out.stdout, &out.stderr);
    assert!(checked >= 1, "no progress event was logged: {}", common::stderr(&out));
    let stderr = common::stderr(&out);
    let last: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["target"] == gc_partition::progress::EVENT_TARGET)
        .unwrap();
    assert_eq!(last["fields"]["stage"], "done");
    let validator = validator(&schema::progress_event());
    assert!(validator.is_valid(&last));
    let mut renamed = last.clone();
    let value = renamed["fields"].as_object_mut().unwrap().remove("listed_objects").unwrap();
    renamed["fields"]["listed"] = value;
    assert!(!validator.is_valid(&renamed));
    let mut unknown_stage = last.clone();
    unknown_stage["fields"]["stage"] = json!("sweeping");
    assert!(!validator.is_valid(&unknown_stage));
}
