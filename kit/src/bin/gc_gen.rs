//! `gc_gen`: what a `gen://` store holds, for benches and tests of `gc_partition`: writes the
//! live-set file of the generated partition and prints the counts a collector should find.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Parser;
use gc_kit::generated::Generated;

/// Describe a generated (`gen://`) partition: its live set and its expected counts.
#[derive(Debug, Parser)]
#[command(name = "gc_gen", version)]
struct Cli {
    /// The store URL, `gen://?chunks=N&...` (parameters: see `gc_kit::generated::GenConfig`).
    #[arg(long)]
    store: String,
    /// Write the live-set file (every generated snapshot) here.
    #[arg(long, value_name = "PATH")]
    live_set_out: Option<PathBuf>,
    /// The live set's `taken_at` (default: now).
    #[arg(long)]
    taken_at: Option<DateTime<Utc>>,
    /// Print the expected counts as JSON (one pass over every chunk: ~1 s per 100M chunks
    /// per core).
    #[arg(long)]
    expect: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gc_gen: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let generated = Generated::from_url(&cli.store).map_err(|e| e.to_string())?;
    if let Some(path) = &cli.live_set_out {
        let text = generated.live_set_text(cli.taken_at.unwrap_or_else(Utc::now));
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if cli.expect {
        let counts = generated.expected();
        println!("{}", serde_json::to_string(&counts).map_err(|e| e.to_string())?);
    }
    Ok(())
}
