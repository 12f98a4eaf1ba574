//! The `gc_synth` program: writes a synthetic partition (see [`crate::synth`]) into a store,
//! for demos, tests and benchmarks of `gc_partition`. `src/bin/gc_synth.rs` runs [`main`];
//! tests run [`run`] with the environment they give the servers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use gc_partition::ids::PartitionId;
use gc_partition::store::{StoreOptions, Stores, error_chain};

use crate::ageing::Ageing;
use crate::fake_gcs;
use crate::synth::{FormatMix, SynthConfig, SynthSummary, synthesize};

/// Write a synthetic, seeded partition: manifests, referenced chunks, old garbage, young
/// chunks, foreign objects and the live-set file.
#[derive(Debug, Parser)]
#[command(name = "gc_synth", version)]
struct Cli {
    /// Store URL: file:///ABS/DIR, memory://, gs:// or s3:// (s3:// and gs:// read their
    /// configuration from the environment, and can age chunks only with --backdate-root).
    #[arg(long)]
    store: String,
    /// For s3:// or gs:// test servers that keep object `KEY` of bucket `B` as the file
    /// `DIR/B/KEY`: s3s-fs (objects are written through the server, then aged by setting
    /// those files' mtimes) or fake-gcs-server's -filesystem-root (written through its JSON
    /// API at GOOGLE_BASE_URL, aged by rewriting their metadata); buckets are created as
    /// directories.
    #[arg(long, value_name = "DIR")]
    backdate_root: Option<PathBuf>,
    #[arg(long)]
    partition: PartitionId,
    #[arg(long)]
    seed: u64,
    #[arg(long, default_value = "snapshots")]
    meta_bucket: String,
    /// Live snapshots (listed in the live set).
    #[arg(long, default_value_t = 8)]
    snapshots: usize,
    /// Distinct chunk ids referenced by live snapshots.
    #[arg(long, default_value_t = 2_000)]
    referenced_ids: u64,
    /// Share of references pointing at ids that another snapshot also references.
    #[arg(long, default_value_t = 0.3)]
    shared_fraction: f64,
    /// Old unreferenced chunks (half owned by dead snapshots when there are any).
    #[arg(long = "garbage", default_value_t = 500)]
    garbage_chunks: u64,
    /// Unreferenced chunks younger than any cutoff.
    #[arg(long = "young", default_value_t = 100)]
    young_chunks: u64,
    /// Non-chunk objects under the chunk locations.
    #[arg(long = "foreign", default_value_t = 20)]
    foreign_objects: u64,
    /// Unified-manifest locations besides the legacy default.
    #[arg(long = "locations", default_value_t = 2)]
    extra_locations: usize,
    /// Share of snapshots with legacy manifests only.
    #[arg(long, default_value_t = 0.4)]
    legacy_share: f64,
    /// Share of snapshots with unified manifests only; the rest have both.
    #[arg(long, default_value_t = 0.4)]
    unified_share: f64,
    /// Snapshots whose manifests are in the store but not in the live set.
    #[arg(long, default_value_t = 2)]
    dead_snapshots: usize,
    /// Where to write the live-set file.
    #[arg(long)]
    live_set_out: Option<PathBuf>,
    /// Where to write the dead snapshots as a deleting set (`--deleting-snapshots`); their
    /// manifests are then aged --old-age, so a run reclaims them.
    #[arg(long)]
    deleting_set_out: Option<PathBuf>,
    /// Age of referenced, garbage and foreign objects.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    old_age: Duration,
    /// Age of young chunks.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    young_age: Duration,
    /// The live set's taken_at, RFC 3339 (default: now).
    #[arg(long)]
    now: Option<DateTime<Utc>>,
    /// file:// writer threads (0: 4 per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Concurrent puts on other stores.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Print the summary as one JSON object.
    #[arg(long)]
    summary_json: bool,
}

impl Cli {
    fn config(&self) -> Result<SynthConfig, String> {
        let format_mix = FormatMix::from_shares(self.legacy_share, self.unified_share).map_err(|e| e.to_string())?;
        Ok(SynthConfig {
            partition: self.partition.clone(),
            seed: self.seed,
            meta_bucket: self.meta_bucket.clone(),
            snapshots: self.snapshots,
            referenced_ids: self.referenced_ids,
            shared_fraction: self.shared_fraction,
            garbage_chunks: self.garbage_chunks,
            young_chunks: self.young_chunks,
            foreign_objects: self.foreign_objects,
            extra_locations: self.extra_locations,
            format_mix,
            now: self.now.unwrap_or_else(Utc::now),
            old_age: self.old_age,
            young_age: self.young_age,
            live_set_path: self.live_set_out.clone(),
            deleting_set_path: self.deleting_set_out.clone(),
            dead_snapshots: self.dead_snapshots,
            record_sets: false,
            write_threads: self.threads,
            put_concurrency: self.concurrency,
            unaged: false,
        })
    }
}

/// `gc_synth`: the flags from the command line, stores configured from the environment.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(first_line(&e.to_string())),
    };
    match write(&cli, process_env()) {
        Ok(summary) => {
            println!("{}", if cli.summary_json { json(&summary) } else { human(&summary) });
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("gc_synth: error: {message}");
    ExitCode::from(1)
}

fn first_line(text: &str) -> &str {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text);
    line.strip_prefix("error: ").unwrap_or(line)
}

fn process_env() -> Vec<(String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

/// What `gc_synth ARGS...` does (`args` without the program name), the stores configured
/// from `env` instead of the process's environment.
pub fn run(args: &[&str], env: Vec<(String, String)>) -> Result<SynthSummary, String> {
    let cli = Cli::try_parse_from(std::iter::once("gc_synth").chain(args.iter().copied()))
        .map_err(|e| first_line(&e.to_string()).to_owned())?;
    write(&cli, env)
}

fn write(cli: &Cli, env: Vec<(String, String)>) -> Result<SynthSummary, String> {
    let cfg = cli.config()?;
    let base_url = env.iter().find(|(k, _)| k == "GOOGLE_BASE_URL").map(|(_, v)| v.clone());
    let mut stores =
        Stores::from_url_and_env(&cli.store, StoreOptions::default(), env.clone()).map_err(|e| e.to_string())?;
    if let Some(root) = &cli.backdate_root {
        if stores.is_local() {
            return Err(
                "--backdate-root is for s3://, gs:// and az:// test servers; file:// ages its files itself".into()
            );
        }
        if !root.is_dir() {
            return Err(format!("--backdate-root {}: not a directory", root.display()));
        }
        stores = if stores.scheme() == "gs://" {
            // fake-gcs-server: writes go through its JSON API (see gc_kit::fake_gcs).
            let endpoint = base_url
                .ok_or("gs:// with --backdate-root (fake-gcs-server) needs GOOGLE_BASE_URL, the server's URL")?;
            fake_gcs::test_server_stores(stores, root.clone(), &endpoint)
        } else if stores.scheme() == "az://" {
            // Azurite: its root holds the port of the ageing hook (see gc_kit::azurite).
            crate::azurite::test_server_stores(stores, root.clone(), &env)?
        } else {
            stores.with_backdate_root(root.clone())
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(synthesize(&stores, &cfg)).map_err(|e| error_chain(&e))
}

fn human(s: &SynthSummary) -> String {
    format!(
        "gc_synth: partition {} seed {}: {} live + {} dead snapshots ({} legacy, {} unified manifests), \
         {} referenced ids ({} shared), {} garbage, {} young, {} foreign in {} locations; \
         wrote {} objects ({} bytes) in {:.2}s = {:.0} objects/s",
        s.partition,
        s.seed,
        s.snapshots.len(),
        s.dead_snapshots.len(),
        s.legacy_manifests,
        s.unified_manifests,
        s.referenced_ids,
        s.shared_ids,
        s.garbage_chunks,
        s.young_chunks,
        s.foreign_objects,
        s.locations.len(),
        s.objects_written,
        s.bytes_written,
        s.elapsed.as_secs_f64(),
        s.objects_per_sec(),
    )
}

fn json(s: &SynthSummary) -> String {
    let per_location: Vec<_> = s
        .per_location
        .iter()
        .map(|l| {
            serde_json::json!({
                "bucket": l.location.bucket(), "prefix": l.location.prefix(),
                "referenced": l.referenced, "garbage": l.garbage, "young": l.young,
                "foreign": l.foreign, "bytes": l.bytes,
            })
        })
        .collect();
    serde_json::json!({
        "partition": s.partition.as_str(),
        "seed": s.seed,
        "snapshots": s.snapshots.len(),
        "dead_snapshots": s.dead_snapshots.len(),
        "legacy_manifests": s.legacy_manifests,
        "unified_manifests": s.unified_manifests,
        "referenced_ids": s.referenced_ids,
        "shared_ids": s.shared_ids,
        "garbage_chunks": s.garbage_chunks,
        "dead_exclusive_ids": s.dead_exclusive_ids,
        "young_chunks": s.young_chunks,
        "foreign_objects": s.foreign_objects,
        "chunk_objects": s.chunk_objects(),
        "locations": per_location,
        "taken_at": s.taken_at.to_rfc3339(),
        "objects_written": s.objects_written,
        "bytes_written": s.bytes_written,
        "elapsed_ms": s.elapsed.as_millis() as u64,
        "objects_per_sec": s.objects_per_sec().round(),
    })
    .to_string()
}
