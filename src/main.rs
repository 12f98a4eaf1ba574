//! `gc_partition`: parse flags, start tracing and the runtime, run the collector, print the
//! summary and turn the result into the spec's exit code. Everything else is in the library.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use gc_partition::cli::{Args, LogFormat, OutputFormat};
use gc_partition::config::Config;
use gc_partition::error::{Exit, Signal};
use gc_partition::gc::{self, Progress, Stop};
use gc_partition::report::Report;
use gc_partition::store::Stores;

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err((code, message)) => {
            eprintln!("gc_partition: error: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &Args) -> Result<u8, (u8, String)> {
    let config = Config::from_args(args, chrono::Utc::now()).map_err(|e| (Exit::Usage.code(), e.to_string()))?;
    let stores =
        Stores::from_url(&args.store, config.store.clone()).map_err(|e| (Exit::Usage.code(), e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| (Exit::Usage.code(), format!("cannot start the runtime: {e}")))?;
    let report = runtime.block_on(async {
        let stop = Stop::default();
        let progress = Progress::default();
        watch_signals(stop.clone());
        let ticker = std::io::stderr().is_terminal().then(|| tokio::spawn(show_progress(progress_handles(&progress))));
        let report = gc::run(&stores, &config, &stop, &progress).await;
        if let Some(ticker) = ticker {
            ticker.abort();
            eprint!("\r\x1b[K");
        }
        report
    });
    if let Some(error) = &report.error {
        eprintln!("gc_partition: error: {error}");
    }
    let mut code = report.exit_code;
    if let Some(path) = &config.report_out
        && let Err(e) = write_report(path, &report)
    {
        eprintln!("gc_partition: error: report {}: {e}", path.display());
        if code == Exit::Done.code() {
            code = Exit::Usage.code();
        }
    }
    let summary = match config.output {
        OutputFormat::Human => report.human(),
        OutputFormat::Json => serde_json::to_string_pretty(&report).map(|s| s + "\n").unwrap_or_default(),
    };
    let _ = std::io::stdout().write_all(summary.as_bytes());
    Ok(code)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The first SIGINT or SIGTERM stops the run gently; a second one exits at once.
fn watch_signals(stop: Stop) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            tracing::warn!("cannot install signal handlers");
            return;
        };
        loop {
            let received = tokio::select! {
                _ = int.recv() => Signal::Interrupt,
                _ = term.recv() => Signal::Terminate,
            };
            if stop.signal().is_some() {
                eprintln!("gc_partition: second signal: exiting now");
                std::process::exit(i32::from(Exit::from(received).code()));
            }
            tracing::warn!(signal = ?received, "stopping: no new deletes; in-flight ones finish");
            stop.trigger(received);
        }
    });
}

type Handles = (
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    std::sync::Arc<gc_partition::manifest_fetch::IngestStats>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
);

fn progress_handles(progress: &Progress) -> Handles {
    (progress.listed.clone(), progress.ingest.clone(), progress.deleted.clone())
}

async fn show_progress((listed, ingest, deleted): Handles) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        eprint!(
            "\r\x1b[K manifests {} legacy + {} unified, {} ids | listed {} objects | deleted {}",
            ingest.legacy.load(Ordering::Relaxed),
            ingest.unified.load(Ordering::Relaxed),
            ingest.referenced_ids.load(Ordering::Relaxed),
            listed.load(Ordering::Relaxed),
            deleted.load(Ordering::Relaxed),
        );
    }
}

/// Writes the report next to its final name, then renames it: a reader never sees half.
fn write_report(path: &Path, report: &Report) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}
