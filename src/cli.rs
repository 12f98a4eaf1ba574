//! The command line of spec section 5, as clap parses it. Validation lives in `config.rs`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Garbage-collects the chunks of one partition that no live snapshot references.
///
/// Dry run by default: writes the plan and report, changes nothing. Exit codes: 0 done,
/// 2 usage, 3 live set, 4 manifest, 5 listing, 6 delete-fraction guard, 7 some deletes
/// failed, 8 verify failed, 9 internal error (a bug), 130/143 interrupted.
#[derive(Debug, Clone, Parser)]
#[command(name = "gc_partition", version, about, long_about = None)]
pub struct Args {
    /// Partition to collect.
    #[arg(long, value_name = "ID")]
    pub partition: String,
    /// The complete live set: one snapshot id per line and the `# end` trailer; `-` = stdin.
    #[arg(long, value_name = "PATH")]
    pub live_snapshots: String,
    /// The partition's snapshots being deleted (and deleted ones whose manifests may remain),
    /// in the live set's format, taken within 5 min of it. Turns on the cross-check of the
    /// snapshots folder, the per-snapshot accounting and the reclaim of their manifests.
    #[arg(long, value_name = "PATH")]
    pub deleting_snapshots: Option<PathBuf>,
    /// Chunks modified at or after this are kept: RFC 3339, or a duration before now (36h,
    /// 7d). Must be at least 24 h before the live set's taken_at. Not with --apply-plan,
    /// which takes the plan's.
    #[arg(long, value_name = "WHEN", required_unless_present = "apply_plan", conflicts_with = "apply_plan")]
    pub cutoff: Option<String>,
    /// Store URL: file:///abs/dir, gs://, s3://, az:// or memory://.
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// Bucket holding the manifests and the legacy chunk location.
    #[arg(long, value_name = "NAME", default_value = "snapshots")]
    pub meta_bucket: String,
    /// Another location to list, BUCKET[/PREFIX]; its prefix must name the partition.
    #[arg(long = "location", value_name = "BUCKET[/PREFIX]")]
    pub locations: Vec<String>,
    /// Check the plan exactly before deleting, and that no referenced chunk went missing.
    #[arg(long)]
    pub verify: bool,
    /// Delete the planned chunks (default: dry run).
    #[arg(long, conflicts_with = "apply_plan")]
    pub execute: bool,
    /// Delete exactly what a reviewed dry-run plan lists (plain or .zst), after checking it
    /// against this run's live set, manifests and store.
    #[arg(long, value_name = "PATH", conflicts_with = "plan_out")]
    pub apply_plan: Option<PathBuf>,
    /// Refuse an --apply-plan plan older than this (at most 23h: shorter than the grace).
    #[arg(long, value_name = "DURATION", default_value = "12h")]
    pub max_plan_age: String,
    /// Explain why this chunk (64 hex digits) is kept or deleted; repeatable; read-only.
    #[arg(long = "explain", value_name = "HEX")]
    pub explain: Vec<String>,
    /// Write the plan (JSON Lines) here.
    #[arg(long, value_name = "PATH")]
    pub plan_out: Option<PathBuf>,
    /// Directory of the run's temporary files (the plan's spool, verify's spill); default:
    /// the system temporary directory.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Write the report (JSON) here.
    #[arg(long, value_name = "PATH")]
    pub report_out: Option<PathBuf>,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value = "human")]
    pub output: OutputFormat,
    /// Refuse to execute a plan deleting more than this share of the chunks older than the cutoff.
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    pub max_delete_fraction: f64,
    /// Bloom filter false-positive rate (a false positive keeps garbage one run longer).
    #[arg(long, value_name = "P", default_value_t = 0.001)]
    pub bloom_fpr: f64,
    /// Pin the bloom filter's seed (default: a fresh one each run).
    #[arg(long, value_name = "N")]
    pub bloom_seed: Option<u64>,
    /// Listing requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub list_concurrency: usize,
    /// Deletes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub delete_concurrency: usize,
    /// Deletes per second at most, whatever the store allows (default: unlimited).
    #[arg(long, value_name = "N")]
    pub max_delete_rate: Option<f64>,
    /// Manifest fetches in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub manifest_concurrency: usize,
    /// Timeout of one request to a remote store (gs://, s3://).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub request_timeout: String,
    /// Retries, with backoff, of a request that failed transiently (any store).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_retries: usize,
    /// Progress: bars on a terminal, otherwise a `progress` log event this often; 0 = off.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub progress_interval: String,
    /// Write the run's outcome here in the Prometheus text format (node_exporter textfile).
    #[arg(long, value_name = "PATH")]
    pub metrics_out: Option<PathBuf>,
    /// Log format on stderr (RUST_LOG sets the level).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}
