//! Synthetic partitions for tests, demos and benchmarks.
