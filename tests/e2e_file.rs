//! End-to-end on `file://`: the whole suite (`common/suite.rs`) on temporary directories.

mod common;

whole_suite!(Some(common::Backend::File));
