//! What the binary writes for other programs, validated against the schemas checked in under
//! `schemas/` (the files a consumer pins; `tests/docs/schemas.rs` proves them equal to what the
//! types generate): the report (`--report-out`, stdout with `--output json`), every line of
//! the plan (`--plan-out`, `.zst` too) and every `progress` event of stderr under
//! `--log-format json`. [`check_run`] is called on every run of the binary the suites make
//! ([`super::gc_binary`] and the few tests that spawn it themselves); [`check_report`] on the
//! reports the in-process runs return.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// The schema files, named as the library names them, read from `schemas/`.
struct Validators {
    report: jsonschema::Validator,
    plan: jsonschema::Validator,
    progress: jsonschema::Validator,
}

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let load = |file: gc_partition::schema::SchemaFile| {
            let path = super::repository().join("schemas").join(&file.name);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (GC_UPDATE_SCHEMAS=1 cargo test --test docs schemas::)", path.display())
            });
            let schema: Value = serde_json::from_str(&text).unwrap();
            jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        Validators {
            report: load(gc_partition::schema::report()),
            plan: load(gc_partition::schema::plan()),
            progress: load(gc_partition::schema::progress_event()),
        }
    })
}

fn check(validator: &jsonschema::Validator, what: &str, value: &Value) {
    let errors: Vec<String> =
        validator.iter_errors(value).map(|e| format!("{e} (at {})", e.instance_path())).take(10).collect();
    assert!(errors.is_empty(), "{what} does not match its schema under schemas/:\n{}\n{value:#}", errors.join("\n"));
}

/// A report, as the binary writes it or as an in-process run's `Report` serializes.
pub fn check_report(report: &Value) {
    check(&validators().report, "the report", report);
}

/// One line of a plan file.
pub fn check_plan_line(line: &Value) {
    check(&validators().plan, "a plan line", line);
}

/// One `progress` event line of stderr.
pub fn check_progress_line(line: &Value) {
    check(&validators().progress, "a progress event", line);
}

/// Every line of the plan file at `path` (zstd-compressed when its name ends in `.zst`): a
/// header first, then records, and a footer last when the plan is complete.
pub fn check_plan_file(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let text = if path.extension().is_some_and(|e| e == "zst") {
        String::from_utf8(zstd::decode_all(&bytes[..]).unwrap()).unwrap()
    } else {
        String::from_utf8(bytes).unwrap()
    };
    for (n, line) in text.lines().enumerate() {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{} line {}: {e}", path.display(), n + 1));
        check_plan_line(&value);
        if n == 0 {
            assert_eq!(value["type"], "header", "{} starts with its header", path.display());
        }
    }
}

/// Validates what an in-process run (`gc::run`) with the flags `args` wrote: its report,
/// serialized as the binary would, and its `--plan-out` file. Returns the report as JSON.
pub fn check_in_process(args: &[&str], report: &gc_partition::report::Report) -> Value {
    let value = serde_json::to_value(report).unwrap();
    check_report(&value);
    if let Some(path) = flag(args, "--plan-out").map(PathBuf::from).filter(|p| p.is_file()) {
        check_plan_file(&path);
    }
    value
}

/// The value of `flag` in `args` (`--flag VALUE` or `--flag=VALUE`), the last one given.
fn flag<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    let mut found = None;
    for (i, arg) in args.iter().enumerate() {
        if *arg == flag {
            found = args.get(i + 1).copied();
        } else if let Some(value) = arg.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
            found = Some(value);
        }
    }
    found
}

/// Validates what one run of the binary with `args` wrote: its JSON report on stdout
/// (`--output json`, when it printed one), the `--report-out` and `--plan-out` files when
/// they are there, and its progress events (`--log-format json`). Returns how many JSON
/// documents and lines it checked.
pub fn check_run(args: &[&str], stdout: &[u8], stderr: &[u8]) -> usize {
    let mut checked = 0;
    if flag(args, "--output") == Some("json") && !stdout.is_empty() {
        let report: Value = serde_json::from_slice(stdout)
            .unwrap_or_else(|e| panic!("--output json printed no JSON ({e}): {}", String::from_utf8_lossy(stdout)));
        check_report(&report);
        checked += 1;
    }
    if let Some(path) = flag(args, "--report-out").map(PathBuf::from).filter(|p| p.is_file()) {
        check_report(&serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap());
        checked += 1;
    }
    if let Some(path) = flag(args, "--plan-out").map(PathBuf::from).filter(|p| p.is_file()) {
        check_plan_file(&path);
        checked += 1;
    }
    if flag(args, "--log-format") == Some("json") {
        for line in String::from_utf8_lossy(stderr).lines() {
            let Ok(value) = serde_json::from_str::<Value>(line) else { continue };
            if value["target"] == gc_partition::progress::EVENT_TARGET {
                check_progress_line(&value);
                checked += 1;
            }
        }
    }
    checked
}
