//! Flags validated into the configuration of one run.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cli::{Args, OutputFormat};
use crate::ids::{ChunkId, IdError, PartitionId};
pub(crate) use crate::live_set::LiveSource;
use crate::locations::{Location, LocationError, check_bucket};
pub(crate) use crate::mode::Mode;
use crate::plan::Binding;
use crate::store::StoreOptions;

/// How far before the live set's `taken_at` the cutoff must be (spec 4, safety rules).
pub(crate) const GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--partition {value:?}: {source}")]
    Partition { value: String, source: IdError },
    #[error("--location {value:?}: {source}")]
    Location { value: String, source: LocationError },
    #[error("--meta-bucket: {0}")]
    MetaBucket(LocationError),
    #[error("--cutoff {value:?} is neither an RFC 3339 timestamp nor a duration like 36h or 7d")]
    Cutoff { value: String },
    #[error("--cutoff {cutoff} is not at least 24 h before the live set's taken_at {taken_at}")]
    CutoffTooLate { cutoff: DateTime<Utc>, taken_at: DateTime<Utc> },
    #[error("--{flag} {value}: {why}")]
    Range { flag: &'static str, value: String, why: &'static str },
    #[error("--request-timeout {0:?} is not a duration like 30s")]
    Timeout(String),
    #[error("--max-plan-age {value:?}: {why}")]
    PlanAge { value: String, why: &'static str },
    #[error("--apply-plan {path}: {why}")]
    ApplyPlan { path: PathBuf, why: String },
    #[error("--deleting-snapshots -: the deleting set is read from a file, not stdin (stdin may hold the live set)")]
    DeletingFromStdin,
    #[error("--explain {value:?}: not a chunk id (64 hex digits)")]
    Explain { value: String },
    #[error("--progress-interval {0:?} is not a duration like 10s, or 0")]
    ProgressInterval(String),
    #[error("--work-dir {path}: {why}")]
    WorkDir { path: PathBuf, why: String },
}

/// The mode the flags ask for: `--explain` wins, whatever else is given (it never deletes).
fn mode_from_args(args: &Args) -> Result<Mode, ConfigError> {
    if !args.explain.is_empty() {
        let ids = args.explain.iter().map(|hex| {
            ChunkId::from_hex(&hex.to_ascii_lowercase()).ok_or_else(|| ConfigError::Explain { value: hex.clone() })
        });
        return Ok(Mode::Explain(ids.collect::<Result<_, _>>()?));
    }
    Ok(match (&args.apply_plan, args.execute) {
        (Some(plan), _) => Mode::Apply(plan.clone()),
        (None, true) => Mode::Execute,
        (None, false) => Mode::DryRun,
    })
}

#[derive(Debug, Clone)]
pub struct Config {
    pub partition: PartitionId,
    pub live_snapshots: LiveSource,
    /// `--deleting-snapshots` (spec 9.2): a file, never stdin.
    pub deleting_snapshots: Option<PathBuf>,
    pub cutoff: DateTime<Utc>,
    pub meta_bucket: String,
    pub extra_locations: Vec<Location>,
    pub verify: bool,
    pub mode: Mode,
    pub max_plan_age: chrono::TimeDelta,
    pub plan_out: Option<PathBuf>,
    pub report_out: Option<PathBuf>,
    pub metrics_out: Option<PathBuf>,
    /// How often progress is shown; `None` when off (`--progress-interval 0`).
    pub progress_interval: Option<Duration>,
    /// Where the plan's spool and verify's spill go.
    pub work_dir: PathBuf,
    /// The `--store` URL as given: named in the report and bound into the plan's header.
    pub store_url: String,
    pub output: OutputFormat,
    pub max_delete_fraction: f64,
    pub bloom_fpr: f64,
    pub bloom_seed: u64,
    pub list_concurrency: usize,
    pub delete_concurrency: usize,
    /// `--max-delete-rate`: deleted keys per second at most (spec 8.7).
    pub max_delete_rate: Option<f64>,
    pub manifest_concurrency: usize,
    pub store: StoreOptions,
    /// The clock of this run: the CLI reads it once, tests may set it.
    pub now: DateTime<Utc>,
    /// Test kit only: referenced ids the filter leaves out. Nothing else can make the filter
    /// miss an id; tests use it to see `--verify` stop a run whose filter is wrong.
    #[cfg(feature = "test-kit")]
    pub filter_omits: Vec<[u8; 32]>,
}

impl Config {
    pub fn from_args(args: &Args, now: DateTime<Utc>) -> Result<Self, ConfigError> {
        let partition = PartitionId::parse(&args.partition)
            .map_err(|source| ConfigError::Partition { value: args.partition.clone(), source })?;
        check_bucket(&args.meta_bucket).map_err(ConfigError::MetaBucket)?;
        let extra_locations = args
            .locations
            .iter()
            .map(|value| {
                let location_err = |source| ConfigError::Location { value: value.clone(), source };
                let location = Location::parse_spec(value).map_err(location_err)?;
                location.check_owned_by(&partition).map_err(location_err)?;
                Ok(location)
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        check_range("max-delete-fraction", args.max_delete_fraction, 0.0..=1.0, "must be between 0 and 1")?;
        if !(args.bloom_fpr > 0.0 && args.bloom_fpr < 1.0) {
            return Err(range_err("bloom-fpr", args.bloom_fpr, "must be above 0 and below 1"));
        }
        for (flag, value) in [
            ("list-concurrency", args.list_concurrency),
            ("delete-concurrency", args.delete_concurrency),
            ("manifest-concurrency", args.manifest_concurrency),
        ] {
            if value == 0 {
                return Err(range_err(flag, value, "must be at least 1"));
            }
        }
        if let Some(rate) = args.max_delete_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(range_err("max-delete-rate", rate, "must be a positive number of deletes per second"));
        }
        let request_timeout = humantime::parse_duration(&args.request_timeout)
            .map_err(|_| ConfigError::Timeout(args.request_timeout.clone()))?;
        Ok(Self {
            partition,
            deleting_snapshots: match &args.deleting_snapshots {
                Some(path) if path.as_os_str() == "-" => return Err(ConfigError::DeletingFromStdin),
                path => path.clone(),
            },
            live_snapshots: match args.live_snapshots.as_str() {
                "-" => LiveSource::Stdin,
                path => LiveSource::File(PathBuf::from(path)),
            },
            cutoff: match (&args.cutoff, &args.apply_plan) {
                (Some(cutoff), _) => parse_when(cutoff, now)?,
                (None, Some(plan)) => plan_cutoff(plan)?,
                (None, None) => return Err(ConfigError::Cutoff { value: String::new() }),
            },
            meta_bucket: args.meta_bucket.clone(),
            extra_locations,
            verify: args.verify,
            mode: mode_from_args(args)?,
            max_plan_age: max_plan_age(&args.max_plan_age)?,
            plan_out: args.plan_out.clone(),
            report_out: args.report_out.clone(),
            metrics_out: args.metrics_out.clone(),
            progress_interval: parse_interval(&args.progress_interval)?,
            work_dir: work_dir(args.work_dir.as_deref())?,
            store_url: args.store.clone(),
            output: args.output,
            max_delete_fraction: args.max_delete_fraction,
            bloom_fpr: args.bloom_fpr,
            bloom_seed: args.bloom_seed.unwrap_or_else(rand::random),
            list_concurrency: args.list_concurrency,
            delete_concurrency: args.delete_concurrency,
            max_delete_rate: args.max_delete_rate,
            manifest_concurrency: args.manifest_concurrency,
            store: StoreOptions { request_timeout, max_retries: args.max_retries, ..StoreOptions::default() },
            now,
            #[cfg(feature = "test-kit")]
            filter_omits: Vec::new(),
        })
    }

    /// What this run's plan is bound to, and what a reviewed plan must match (spec 8.2, 8.3).
    pub fn binding(&self) -> Binding<'_> {
        Binding {
            partition: self.partition.as_str(),
            store: &self.store_url,
            mode: self.mode.name(),
            cutoff: self.cutoff,
            now: self.now,
            max_plan_age: self.max_plan_age,
            max_delete_fraction: self.max_delete_fraction,
            bloom_fpr: self.bloom_fpr,
            bloom_seed: self.bloom_seed,
        }
    }

    /// The grace rule: the cutoff is at least 24 h before the live set was taken.
    pub(crate) fn check_cutoff(&self, taken_at: DateTime<Utc>) -> Result<(), ConfigError> {
        if self.cutoff <= taken_at - GRACE {
            Ok(())
        } else {
            Err(ConfigError::CutoffTooLate { cutoff: self.cutoff, taken_at })
        }
    }
}

/// The longest `--max-plan-age`: a plan must be applied well inside the grace window.
pub(crate) const MAX_PLAN_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(23);

fn max_plan_age(value: &str) -> Result<chrono::TimeDelta, ConfigError> {
    let bad = |why| ConfigError::PlanAge { value: value.to_owned(), why };
    let age = humantime::parse_duration(value).map_err(|_| bad("not a duration like 12h"))?;
    let age = chrono::TimeDelta::from_std(age).map_err(|_| bad("too long"))?;
    if age > MAX_PLAN_AGE {
        return Err(bad("at most 23h: a plan must be applied well inside the 24 h grace window"));
    }
    Ok(age)
}

/// The cutoff an `--apply-plan` run takes from its plan's header.
fn plan_cutoff(path: &std::path::Path) -> Result<DateTime<Utc>, ConfigError> {
    let fail = |why: String| ConfigError::ApplyPlan { path: path.to_owned(), why };
    let header = crate::plan::read_header(path).map_err(|e| fail(e.why))?;
    DateTime::parse_from_rfc3339(&header.cutoff)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| fail(format!("header cutoff {:?}: {e}", header.cutoff)))
}

/// The work directory: given, or the system's temporary directory; it must be a directory.
fn work_dir(given: Option<&std::path::Path>) -> Result<PathBuf, ConfigError> {
    let path = given.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(ConfigError::WorkDir { path, why: "not a directory".into() }),
        Err(e) => Err(ConfigError::WorkDir { path, why: e.to_string() }),
    }
}

fn range_err(flag: &'static str, value: impl ToString, why: &'static str) -> ConfigError {
    ConfigError::Range { flag, value: value.to_string(), why }
}

fn check_range(
    flag: &'static str,
    value: f64,
    range: std::ops::RangeInclusive<f64>,
    why: &'static str,
) -> Result<(), ConfigError> {
    if range.contains(&value) { Ok(()) } else { Err(range_err(flag, value, why)) }
}

/// `--progress-interval`: a duration, `0` (in any unit) turning progress off.
fn parse_interval(value: &str) -> Result<Option<Duration>, ConfigError> {
    let every = if value.trim() == "0" {
        Duration::ZERO
    } else {
        humantime::parse_duration(value).map_err(|_| ConfigError::ProgressInterval(value.to_owned()))?
    };
    Ok(Some(every).filter(|every| !every.is_zero()))
}

/// `WHEN`: an RFC 3339 timestamp, or a duration before `now`.
pub(crate) fn parse_when(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ConfigError> {
    let bad = || ConfigError::Cutoff { value: value.to_owned() };
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago: Duration = humantime::parse_duration(value).map_err(|_| bad())?;
    let ago = chrono::TimeDelta::from_std(ago).map_err(|_| bad())?;
    now.checked_sub_signed(ago).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::ModeName;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "gc_partition",
            "--partition",
            "p1",
            "--live-snapshots",
            "-",
            "--cutoff",
            "7d",
            "--store",
            "memory://",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn cutoff_forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_when("36h", now).unwrap(), now - chrono::TimeDelta::hours(36));
        assert_eq!(parse_when("7d", now).unwrap(), now - chrono::TimeDelta::days(7));
        assert_eq!(parse_when("2026-11-01T00:00:00+01:00", now).unwrap().to_rfc3339(), "2026-10-31T23:00:00+00:00");
        assert!(parse_when("yesterday", now).is_err());
    }

    #[test]
    fn progress_interval_forms() {
        assert_eq!(parse_interval("10s").unwrap(), Some(Duration::from_secs(10)));
        assert_eq!(parse_interval("5ms").unwrap(), Some(Duration::from_millis(5)));
        assert_eq!(parse_interval("0").unwrap(), None);
        assert_eq!(parse_interval("0s").unwrap(), None);
        assert!(parse_interval("often").is_err());
        assert_eq!(Config::from_args(&args(&[]), Utc::now()).unwrap().progress_interval, Some(Duration::from_secs(10)));
    }

    #[test]
    fn grace_window_is_24h_before_taken_at() {
        let now = Utc::now();
        let mut with_cutoff = args(&[]);
        with_cutoff.cutoff = Some("2026-11-01T00:00:00Z".into());
        let config = Config::from_args(&with_cutoff, now).unwrap();
        let taken = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(config.check_cutoff(taken("2026-11-02T00:00:00Z")).is_ok());
        assert!(config.check_cutoff(taken("2026-11-01T23:59:59Z")).is_err());
    }

    #[test]
    fn bad_flags_are_refused() {
        let now = Utc::now();
        assert!(Config::from_args(&args(&["--location", "chunks/other/x"]), now).is_err());
        assert!(Config::from_args(&args(&["--location", "chunks/a/p1"]), now).is_ok());
        assert!(Config::from_args(&args(&["--location", "chunks"]), now).is_err(), "a whole bucket is no partition's");
        assert!(Config::from_args(&args(&["--max-delete-fraction", "1.5"]), now).is_err());
        assert!(Config::from_args(&args(&["--bloom-fpr", "0"]), now).is_err());
        assert!(Config::from_args(&args(&["--bloom-fpr", "1"]), now).is_err(), "a filter keeping everything");
        assert!(Config::from_args(&args(&["--bloom-fpr", "0.999"]), now).is_ok());
        assert!(Config::from_args(&args(&["--max-delete-fraction=-0.01"]), now).is_err());
        assert!(Config::from_args(&args(&["--request-timeout", "soon"]), now).is_err());
        assert!(Config::from_args(&args(&["--list-concurrency", "0"]), now).is_err());
        assert!(Config::from_args(&args(&["--max-delete-rate", "0"]), now).is_err());
        assert!(Config::from_args(&args(&["--max-delete-rate=-5"]), now).is_err());
        assert!(Config::from_args(&args(&["--max-delete-rate", "inf"]), now).is_err(), "no limit is no flag");
        assert!(Config::from_args(&args(&["--max-delete-rate", "NaN"]), now).is_err());
        assert_eq!(Config::from_args(&args(&["--max-delete-rate", "500"]), now).unwrap().max_delete_rate, Some(500.0));
        assert!(Config::from_args(&args(&["--meta-bucket", "UP"]), now).is_err());
        assert!(Config::from_args(&args(&["--work-dir", "/nonexistent/gc-work"]), now).is_err());
        assert!(Config::from_args(&args(&["--max-plan-age", "24h"]), now).is_err(), "longer than the grace");
        assert!(Config::from_args(&args(&["--max-plan-age", "23h"]), now).is_ok());
        assert!(Config::from_args(&args(&["--explain", "abc"]), now).is_err());
        assert!(matches!(
            Config::from_args(&args(&["--deleting-snapshots", "-"]), now),
            Err(ConfigError::DeletingFromStdin)
        ));
        let deleting = Config::from_args(&args(&["--deleting-snapshots", "deleting.txt"]), now).unwrap();
        assert_eq!(deleting.deleting_snapshots, Some(PathBuf::from("deleting.txt")));
        let explain = Config::from_args(&args(&["--explain", &"AB".repeat(32), "--execute"]), now).unwrap();
        assert!(matches!(explain.mode, Mode::Explain(_)), "--explain is read-only whatever other flags say");
        assert!(!explain.mode.deletes());
        assert_eq!(explain.mode.name(), ModeName::DryRun, "the report names an --explain run a dry run");
        assert_eq!(Config::from_args(&args(&["--execute"]), now).unwrap().mode, Mode::Execute);
        assert_eq!(Config::from_args(&args(&[]), now).unwrap().mode, Mode::DryRun);
        assert_eq!(serde_json::to_string(&ModeName::DryRun).unwrap(), "\"dry-run\"");
        assert!(Config::from_args(&args(&["--work-dir", "/etc/hostname"]), now).is_err(), "a file is no work dir");
        let mut bad = args(&[]);
        bad.partition = "../x".into();
        assert!(Config::from_args(&bad, now).is_err());
    }

    #[test]
    fn store_flags_reach_the_store_options() {
        let config = Config::from_args(&args(&["--request-timeout", "7s", "--max-retries", "3"]), Utc::now()).unwrap();
        assert_eq!(config.store.request_timeout, Duration::from_secs(7));
        assert_eq!(config.store.max_retries, 3);
        let defaults = Config::from_args(&args(&[]), Utc::now()).unwrap();
        assert_eq!(defaults.store.request_timeout, Duration::from_secs(30));
        assert_eq!(defaults.store.max_retries, 10);
    }

    #[test]
    fn the_delete_fraction_defaults_to_one_half() {
        assert_eq!(Config::from_args(&args(&[]), Utc::now()).unwrap().max_delete_fraction, 0.5);
    }
}
