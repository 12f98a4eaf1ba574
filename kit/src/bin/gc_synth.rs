//! `gc_synth`: writes a synthetic partition into a store (see `gc_kit::synth_cli`).

use std::process::ExitCode;

fn main() -> ExitCode {
    gc_kit::synth_cli::main()
}
