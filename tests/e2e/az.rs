//! End-to-end on `az://`: the whole suite (`common/suite.rs`) against the Azurite server
//! `scripts/test` starts (`GC_TEST_AZ_ENDPOINT`, `GC_TEST_AZ_ROOT`; see
//! `scripts/azurite-server`), blobs aged through its hook (`gc_kit::azurite`). Ignored when
//! `GC_TEST_AZ_ENDPOINT` was unset at build time.

common::whole_suite!(common::Backend::az(), gc_test_az);
