//! `gc_kit`: what `gc_partition`'s tests, benches, demos and fuzzers use, and the production
//! crate does not ship. Built on the `gc_partition` library; the `gc_partition` package only
//! has it as a dev-dependency.
//!
//! - [`synth`]: the synthetic partition writer behind `gc_synth` ([`synth_cli`]);
//! - [`fake_gcs`]: writes and ageing on the fake-gcs-server emulator;
//! - [`gcs_metadata`]: the object metadata fake-gcs-server keeps in an extended attribute;
//! - [`azurite`]: containers and ageing on the Azurite emulator;
//! - [`ageing`]: buckets made and objects aged on `file://`, `memory://` and the test servers;
//! - [`generated`]: the `gen://` store, a partition listed but never stored (`gc_gen`);
//! - [`latency`]: the simulated remote store (`GC_PARTITION_SIM_LATENCY`);
//! - [`stores`]: how `gc_partition_kit` opens `--store` with those two;
//! - [`fuzzing`]: the fuzz targets' entry points (`fuzz/`, `tests/docs/fuzz_corpus.rs`);
//! - [`mix`]: deterministic numbers from `gc_partition`'s one splitmix64.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod ageing;
pub mod azurite;
pub mod fake_gcs;
pub mod fuzzing;
pub mod gcs_metadata;
pub mod generated;
pub mod latency;
pub mod mix;
pub mod stores;
pub mod synth;
pub mod synth_cli;

pub use ageing::Ageing;
pub use stores::WithLatency;
