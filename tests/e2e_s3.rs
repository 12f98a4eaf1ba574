//! End-to-end on `s3://`: the whole suite (`common/suite.rs`) against the `s3s-fs` server
//! `scripts/test` starts (`GC_TEST_S3_ENDPOINT`, `GC_TEST_S3_ROOT`). Skipped, saying so,
//! when the variable is unset.

mod common;

whole_suite!(common::Backend::s3());
