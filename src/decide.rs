//! The decision for one listed chunk: a pure function, no I/O.

use crate::bloom::RefFilter;

/// Why a chunk stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepReason {
    /// The filter holds its id (a live snapshot references it, or a false positive).
    Referenced,
    /// Last modified at or after the cutoff.
    Young,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep(KeepReason),
    Delete,
}

/// Spec 4.5: referenced -> keep; last-modified >= cutoff -> keep; otherwise delete.
pub fn decide(id: &[u8; 32], last_modified_ms: i64, filter: &RefFilter, cutoff_ms: i64) -> Decision {
    if filter.contains(id) {
        Decision::Keep(KeepReason::Referenced)
    } else if last_modified_ms >= cutoff_ms {
        Decision::Keep(KeepReason::Young)
    } else {
        Decision::Delete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_wins_then_young_then_delete() {
        let filter = RefFilter::new(1, 0.001, 1);
        let referenced = [1u8; 32];
        filter.insert_all(&[referenced]);
        let other = [2u8; 32];
        assert_eq!(decide(&referenced, 0, &filter, 100), Decision::Keep(KeepReason::Referenced));
        assert_eq!(decide(&referenced, 200, &filter, 100), Decision::Keep(KeepReason::Referenced));
        assert_eq!(decide(&other, 100, &filter, 100), Decision::Keep(KeepReason::Young), "at the cutoff is kept");
        assert_eq!(decide(&other, 99, &filter, 100), Decision::Delete);
    }
}
