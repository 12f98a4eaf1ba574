//! `gc_partition`: the garbage collector of a VM-snapshot store. See SPEC.md for the
//! contract. Modules follow the path the data takes:
//! live set -> manifests -> locations -> bloom || listing -> decide -> plan -> execute /
//! verify -> report.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod fuzzing;
pub mod ids;
pub mod live_set;
pub mod locations;
pub mod manifest;
pub mod store;
pub mod synth;
