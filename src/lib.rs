//! `gc_partition`: the garbage collector of a VM-snapshot store. See SPEC.md for the
//! contract. Modules follow the path the data takes:
//! live set -> manifests -> locations -> bloom || listing -> decide -> plan -> execute /
//! verify -> report.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod atomic_file;
pub mod bill;
pub mod bloom;
pub mod bug;
pub mod cli;
pub mod config;
pub mod decide;
pub mod deleting;
pub mod error;
pub mod execute;
pub mod exit;
pub mod explain;
pub mod gc;
pub mod ids;
pub mod listing;
pub mod live_set;
pub mod locations;
pub mod manifest;
pub mod manifest_fetch;
pub mod metrics;
pub mod mode;
pub mod plan;
pub mod progress;
pub mod report;
pub mod schema;
pub mod spill;
pub mod stop;
pub mod store;
pub mod throttle;
pub mod verify;
