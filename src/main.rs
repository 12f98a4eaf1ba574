//! `gc_partition`: the collector on the stores of the spec (`file://`, `gs://`, `s3://`,
//! `memory://`). The program is `gc_partition::app`; everything else is in the library.

use std::process::ExitCode;

use gc_partition::store::Stores;

fn main() -> ExitCode {
    gc_partition::app::main(Stores::from_url)
}
