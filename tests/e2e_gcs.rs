//! End-to-end on `gs://`: the suite (`common/suite.rs`) against the GCS endpoint in
//! `GC_TEST_GCS_ENDPOINT` (an emulator such as fake-gcs-server, or real GCS; see README).
//! GCS objects cannot be aged, so the tests that need old chunks skip, saying so. Skipped
//! entirely, saying so, when the variable is unset.

mod common;

whole_suite!(common::Backend::gcs());
