//! `gc_partition_kit`: `gc_partition` itself (`gc_partition::app`: the same flags, the same
//! exit codes) with the test kit's stores: `--store gen://?...` and the latency layer
//! (`GC_PARTITION_SIM_LATENCY`). For benches and tests; never shipped.

use std::process::ExitCode;

fn main() -> ExitCode {
    gc_partition::app::main(gc_kit::stores::open)
}
