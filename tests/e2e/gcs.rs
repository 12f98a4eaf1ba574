//! End-to-end on `gs://`: the whole suite (`common/suite.rs`) against the fake-gcs-server
//! `scripts/test` starts (`GC_TEST_GCS_ENDPOINT`, `GC_TEST_GCS_ROOT`; see
//! `scripts/gcs-server`). Ignored when `GC_TEST_GCS_ENDPOINT` was unset at build time.

common::whole_suite!(common::Backend::gcs(), gc_test_gcs);
