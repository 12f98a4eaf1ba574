//! The JSON Schemas (draft 2020-12) of what the collector writes for other programs: the
//! report (spec 6), the plan file's lines (spec 6, 8.2) and the `progress` event (spec 8.5).
//! Generated from the types that are serialized (`schemars`), and checked in under
//! `schemas/`: `tests/docs/schemas.rs` fails when a checked-in file differs from what the types
//! generate now, and the end-to-end suites validate what the binary writes against the
//! checked-in files.
//!
//! Each file's name carries the version of the shape it describes: the report's `version`
//! ([`REPORT_VERSION`]), the plan header's `version` ([`PLAN_VERSION`], which versions every
//! line of the plan) and, for the progress event, which has no version field,
//! [`EVENT_SCHEMA_VERSION`].

use schemars::generate::SchemaSettings;
use schemars::transform::{RecursiveTransform, Transform};
use schemars::{Schema, SchemaGenerator};
use serde_json::{Value, json};

use crate::plan::{DeleteRecord, Footer, PLAN_VERSION, PlanHeader};
use crate::progress::{EVENT_SCHEMA_VERSION, EventLine};
use crate::report::{REPORT_VERSION, Report};

/// One schema file: its name under `schemas/` and its content.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaFile {
    pub name: String,
    pub schema: Value,
}

impl SchemaFile {
    /// The file's bytes as checked in: pretty JSON and a final newline.
    pub fn text(&self) -> String {
        serde_json::to_string_pretty(&self.schema).unwrap_or_default() + "\n"
    }
}

/// Every schema file, in the order doc/running.md lists them.
pub fn all() -> Vec<SchemaFile> {
    vec![report(), plan(), progress_event()]
}

/// The report: `--report-out`, and stdout with `--output json`.
pub fn report() -> SchemaFile {
    let schema = generator().into_root_schema_for::<Report>();
    file(
        format!("report.v{REPORT_VERSION}.schema.json"),
        format!("gc_partition report, version {REPORT_VERSION}"),
        schema,
    )
}

/// One line of a plan file (`--plan-out`): its header, a planned delete or its footer, told
/// apart by `type`. Each is also a definition of its own (`#/$defs/PlanHeader`, ...).
pub fn plan() -> SchemaFile {
    let mut generator = generator();
    let lines = [
        generator.subschema_for::<PlanHeader>(),
        generator.subschema_for::<DeleteRecord>(),
        generator.subschema_for::<Footer>(),
    ];
    let schema = json!({
        "$schema": generator.settings().meta_schema,
        "description": "One line of a plan file (JSON Lines, zstd-compressed when its name ends in `.zst`): \
            the first line is the header, then one `delete` record per planned chunk, and the last line \
            is the footer, without which the plan is incomplete. The header's `version` is the version \
            of every line.",
        "oneOf": lines,
        "$defs": generator.take_definitions(true),
    });
    file(
        format!("plan.v{PLAN_VERSION}.schema.json"),
        format!("gc_partition plan line, version {PLAN_VERSION}"),
        Schema::try_from(schema).unwrap_or_default(),
    )
}

/// A `progress` event, one line of stderr under `--log-format json`.
pub fn progress_event() -> SchemaFile {
    let schema = generator().into_root_schema_for::<EventLine>();
    file(
        format!("progress-event.v{EVENT_SCHEMA_VERSION}.schema.json"),
        format!("gc_partition progress event, schema version {EVENT_SCHEMA_VERSION}"),
        schema,
    )
}

/// What the serialized types generate: draft 2020-12, as written (an `Option` field is
/// required and may be `null` unless it is skipped when `None`).
fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().for_serialize().into_generator()
}

/// Every object the schemas describe is a struct serialized with exactly its fields (flattened
/// ones included): each object schema with `properties` says `additionalProperties: false`,
/// so a consumer, and the tests, see a field renamed or added as a difference, not as an
/// unknown extra key.
fn close(schema: &mut Schema) {
    if schema.get("properties").is_some() && schema.get("additionalProperties").is_none() {
        schema.insert("additionalProperties".into(), false.into());
    }
}

/// The file `name`: its schema, every object in it closed, given an `$id` (a URN naming the
/// file) and a title.
fn file(name: String, title: String, mut schema: Schema) -> SchemaFile {
    RecursiveTransform(close).transform(&mut schema);
    schema.insert("$id".into(), format!("urn:gc-partition:schemas:{name}").into());
    schema.insert("title".into(), title.into());
    SchemaFile { name, schema: schema.to_value() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_versions_and_every_object_is_closed() {
        let files = all();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["report.v1.schema.json", "plan.v3.schema.json", "progress-event.v1.schema.json"]);
        let report = &files[0].schema;
        assert_eq!(report["properties"]["version"]["const"], json!(REPORT_VERSION));
        assert_eq!(report["additionalProperties"], json!(false));
        assert_eq!(report["$defs"]["Guard"]["additionalProperties"], json!(false));
        let plan = &files[1].schema;
        assert_eq!(plan["$defs"]["PlanHeader"]["properties"]["version"]["const"], json!(PLAN_VERSION));
        assert_eq!(plan["$defs"]["Footer"]["properties"]["type"]["const"], json!("footer"));
        assert_eq!(plan["oneOf"].as_array().map(Vec::len), Some(3));
        let progress = &files[2].schema;
        assert_eq!(progress["properties"]["target"]["const"], json!(crate::progress::EVENT_TARGET));
        for file in &files {
            assert_eq!(file.schema["$schema"], json!("https://json-schema.org/draft/2020-12/schema"), "{}", file.name);
            assert!(file.schema["$id"].as_str().is_some_and(|id| id.ends_with(&file.name)), "{}", file.name);
        }
    }
}
