//! Snapshot manifests (spec 3.2-3.4).
