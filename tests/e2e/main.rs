//! End to end through the built binary: the whole suite on every store (`file`, `s3`, `gcs`,
//! `az`), reviewed plans, snapshots being deleted, held chunks, odd names, schemes, what the
//! operator sees, interruptions, the committed fixtures and the safety rules of spec 4.

mod apply_plan;
mod az;
mod deleting;
mod file;
mod fixtures;
mod gcs;
mod held;
mod odd_names;
mod ops;
mod s3;
mod safety;
mod schemes;
mod signals;
