//! End-to-end on `s3://`: the whole suite (`common/suite.rs`) against the `s3s-fs` server
//! `scripts/test` starts (`GC_TEST_S3_ENDPOINT`, `GC_TEST_S3_ROOT`). Ignored when
//! `GC_TEST_S3_ENDPOINT` was unset at build time.

common::whole_suite!(common::Backend::s3(), gc_test_s3);
