//! The live-set file (spec 3.1).
