//! End-to-end on `file://`: the whole suite (`common/suite.rs`) on temporary directories.

common::whole_suite!(common::Backend::File, all());
