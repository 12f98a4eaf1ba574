//! Properties over random partitions: the model of what GC may delete, and the memory and
//! deletion bounds of execute.

mod model;
mod proptest_memory;
