//! The `gc_partition` program, for `main.rs`: parse flags, start tracing and the runtime, run
//! the collector, print the summary and turn the result into the spec's exit code.
//!
//! In the library so that another binary runs exactly this program with other stores: the
//! test kit's `gc_partition_kit` (same flags, same exit codes) adds `gen://` and the latency
//! layer through [`OpenStores`].

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use indicatif::MultiProgress;

use crate::cli::{Args, LogFormat, OutputFormat};
use crate::config::Config;
use crate::error::{Exit, Signal};
use crate::gc::{self, Progress, Stop};
use crate::report::Report;
use crate::store::OpenStores;
use crate::{metrics, progress};

/// The `gc_partition` program: parses the flags, starts logging and the runtime, runs the
/// collector on the stores `open` makes of `--store`, prints the summary and returns the
/// spec's exit code. `gc_partition`'s `main` passes [`crate::store::Stores::from_url`]; the test kit's
/// `gc_partition_kit` passes its own, which adds `gen://` and the latency layer.
pub fn main(open: OpenStores) -> ExitCode {
    let args = Args::parse();
    // Where bars are drawn (nothing is drawn when stderr is no terminal); log lines
    // suspend them.
    let bars = MultiProgress::new();
    init_tracing(args.log_format, bars.clone());
    match run(&args, open, bars) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err((exit, message)) => {
            eprintln!("gc_partition: error: {message}");
            ExitCode::from(exit.code())
        }
    }
}

fn run(args: &Args, open: OpenStores, bars: MultiProgress) -> Result<Exit, (Exit, String)> {
    let config = Config::from_args(args, chrono::Utc::now()).map_err(|e| (Exit::Usage, e.to_string()))?;
    // The flags are valid: from here on, every exit writes the metrics.
    let (report, mut exit) = match collect(args, &config, open, bars) {
        Ok(report) => {
            let exit = write_report_out(&config, &report);
            (report, exit)
        }
        Err(message) => {
            eprintln!("gc_partition: error: {message}");
            let report = Report::usage_error(&config, message);
            let exit = report.exit();
            write_metrics(&config, &report, exit);
            return Ok(exit);
        }
    };
    exit = write_metrics(&config, &report, exit);
    let summary = match config.output {
        OutputFormat::Human => report.human(),
        OutputFormat::Json => serde_json::to_string_pretty(&report).map(|s| s + "\n").unwrap_or_default(),
    };
    let _ = std::io::stdout().write_all(summary.as_bytes());
    Ok(exit)
}

/// Runs the collector with its progress display; an error here is a usage error (exit 2).
fn collect(args: &Args, config: &Config, open: OpenStores, bars: MultiProgress) -> Result<Report, String> {
    let stores = open(&args.store, config.store.clone()).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let report = runtime.block_on(async {
        let stop = Stop::default();
        let progress = Arc::new(Progress::default());
        watch_signals(stop.clone());
        let mode = progress::Mode::choose(config.progress_interval, std::io::stderr().is_terminal());
        let display = progress::Display::start(mode, Arc::clone(&progress), bars);
        let report = gc::run(&stores, config, &stop, &progress).await;
        display.finish().await;
        report
    });
    if let Some(error) = &report.error {
        eprintln!("gc_partition: error: {error}");
    }
    Ok(report)
}

/// Writes `--report-out`; returns the run's exit, which a failed write turns into 2.
fn write_report_out(config: &Config, report: &Report) -> Exit {
    let exit = report.exit();
    if let Some(path) = &config.report_out
        && let Err(e) = write_report(path, report)
    {
        eprintln!("gc_partition: error: report {}: {e}", path.display());
        return failed_write(exit);
    }
    exit
}

/// Writes `--metrics-out`; returns the run's exit, which a failed write turns into 2.
fn write_metrics(config: &Config, report: &Report, exit: Exit) -> Exit {
    let Some(path) = &config.metrics_out else {
        return exit;
    };
    match metrics::write(path, report, exit.code(), chrono::Utc::now()) {
        Ok(()) => exit,
        Err(e) => {
            eprintln!("gc_partition: error: {e}");
            failed_write(exit)
        }
    }
}

/// A run that succeeded but whose output could not be written is a usage error; a failed
/// run keeps its own exit.
fn failed_write(exit: Exit) -> Exit {
    if exit == Exit::Done { Exit::Usage } else { exit }
}

fn init_tracing(format: LogFormat, bars: MultiProgress) {
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::try_new(&rust_log)
        .ok()
        .filter(|_| !rust_log.is_empty())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    // Progress events are asked for by --progress-interval: a RUST_LOG=warn does not
    // silence them, unless it names their target.
    if !rust_log.contains(progress::EVENT_TARGET)
        && let Ok(directive) = format!("{}=info", progress::EVENT_TARGET).parse()
    {
        filter = filter.add_directive(directive);
    }
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(move || progress::LogWriter(bars.clone()));
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

/// Writes the report through a hidden temporary file renamed over it: a reader never sees half.
fn write_report(path: &Path, report: &Report) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    crate::atomic_file::write(path, "gc_partition-report", &json)
}
