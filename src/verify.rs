//! The exact checks of `--verify`, which never go through the filter: a sorted table of
//! every (chunk id, location) a live manifest references, with a prefix table over the
//! first two bytes so a lookup is a short binary search.

use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::listing::{ListedChunk, Listing};

const PREFIX_BUCKETS: usize = 1 << 16;
/// How many missing or wrongly planned keys the report names.
pub const SAMPLE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RefEntry {
    id: [u8; 32],
    location: u32,
}

/// Collects references from the manifest workers, then freezes into [`ExactRefs`].
#[derive(Default)]
pub struct ExactRefsBuilder {
    entries: Mutex<Vec<RefEntry>>,
}

impl ExactRefsBuilder {
    pub fn add(&self, location: u32, ids: &[[u8; 32]]) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.extend(ids.iter().map(|&id| RefEntry { id, location }));
    }

    pub fn build(self) -> ExactRefs {
        let mut entries = self.entries.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.par_sort_unstable();
        entries.dedup();
        entries.shrink_to_fit();
        let mut starts = vec![0u32; PREFIX_BUCKETS + 1];
        for entry in &entries {
            starts[prefix_of(&entry.id) + 1] += 1;
        }
        for i in 0..PREFIX_BUCKETS {
            starts[i + 1] += starts[i];
        }
        ExactRefs { entries, starts }
    }
}

fn prefix_of(id: &[u8; 32]) -> usize {
    usize::from(u16::from_be_bytes([id[0], id[1]]))
}

/// Every referenced (id, location), sorted and deduplicated.
pub struct ExactRefs {
    entries: Vec<RefEntry>,
    starts: Vec<u32>,
}

impl ExactRefs {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Distinct ids referenced, whatever the location.
    pub fn distinct_ids(&self) -> u64 {
        self.entries.windows(2).filter(|w| w[0].id != w[1].id).count() as u64 + u64::from(!self.entries.is_empty())
    }

    fn range_of(&self, id: &[u8; 32]) -> &[RefEntry] {
        let p = prefix_of(id);
        let (lo, hi) = (self.starts[p] as usize, self.starts[p + 1] as usize);
        let bucket = &self.entries[lo..hi];
        let start = bucket.partition_point(|e| e.id < *id);
        let end = bucket.partition_point(|e| e.id <= *id);
        &bucket[start..end]
    }

    /// True when any live manifest references `id`, in any location.
    pub fn references_id(&self, id: &[u8; 32]) -> bool {
        !self.range_of(id).is_empty()
    }

    /// The entry index of (id, location), if referenced there.
    fn position(&self, id: &[u8; 32], location: u32) -> Option<usize> {
        let range = self.range_of(id);
        let offset = range.iter().position(|e| e.location == location)?;
        let base = range.as_ptr() as usize - self.entries.as_ptr() as usize;
        Some(base / std::mem::size_of::<RefEntry>() + offset)
    }

    /// Which referenced (id, location) pairs the listing found.
    pub fn presence(&self, listing: &Listing) -> Presence {
        let bits: Vec<std::sync::atomic::AtomicU64> =
            (0..self.entries.len().div_ceil(64)).map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
        listing.batches.par_iter().for_each(|batch| {
            for chunk in batch {
                if let Some(i) = self.position(&chunk.id, chunk.location) {
                    bits[i / 64].fetch_or(1 << (i % 64), std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Presence { bits: bits.into_iter().map(|b| b.into_inner()).collect() }
    }

    /// (id, location) pairs of `before` that `after` lacks, with a sample.
    pub fn missing(&self, before: &Presence, after: Option<&Presence>) -> (u64, Vec<(u32, [u8; 32])>) {
        let mut count = 0u64;
        let mut sample = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            let lost = match after {
                None => !before.has(i),
                Some(after) => before.has(i) && !after.has(i),
            };
            if lost {
                count += 1;
                if sample.len() < SAMPLE {
                    sample.push((entry.location, entry.id));
                }
            }
        }
        (count, sample)
    }

    /// Planned chunks whose id a live manifest references: must be none.
    pub fn planned_but_referenced<'a>(&self, planned: impl Iterator<Item = &'a ListedChunk>) -> Vec<ListedChunk> {
        planned.filter(|c| self.references_id(&c.id)).copied().collect()
    }
}

/// One bit per [`ExactRefs`] entry: was it listed.
pub struct Presence {
    bits: Vec<u64>,
}

impl Presence {
    fn has(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }
}

/// The `verify` object of the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub missing_before: u64,
    pub missing_after: u64,
    pub planned_but_referenced: u64,
    /// Whether the store was listed again after the deletes (`--execute` only; skipped when
    /// a signal stopped the run, which must exit promptly).
    pub after_checked: bool,
    /// Up to [`SAMPLE`] `bucket/key` names for each of the three counts.
    pub missing_before_keys: Vec<String>,
    pub missing_after_keys: Vec<String>,
    pub planned_but_referenced_keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
        id[4..8].copy_from_slice(&n.to_be_bytes());
        id
    }

    fn chunk(n: u32, location: u32) -> ListedChunk {
        ListedChunk { id: id(n), size: 1, last_modified_ms: 0, location }
    }

    #[test]
    fn lookups_are_exact() {
        let builder = ExactRefsBuilder::default();
        builder.add(0, &(0..1000).map(id).collect::<Vec<_>>());
        builder.add(1, &[id(5), id(5), id(2000)]);
        let refs = builder.build();
        assert_eq!(refs.len(), 1002);
        assert_eq!(refs.distinct_ids(), 1001);
        assert!((0..1000).all(|n| refs.references_id(&id(n))));
        assert!(refs.references_id(&id(2000)));
        assert!(!refs.references_id(&id(1500)));
        assert!(refs.position(&id(5), 1).is_some());
        assert!(refs.position(&id(6), 1).is_none());
    }

    #[test]
    fn presence_finds_what_went_missing() {
        let builder = ExactRefsBuilder::default();
        builder.add(0, &[id(1), id(2), id(3)]);
        let refs = builder.build();
        let before = Listing { per_location: vec![], batches: vec![vec![chunk(1, 0), chunk(2, 0), chunk(9, 0)]] };
        let after = Listing { per_location: vec![], batches: vec![vec![chunk(1, 0), chunk(2, 1)]] };
        let (before, after) = (refs.presence(&before), refs.presence(&after));
        let (missing_before, sample) = refs.missing(&before, None);
        assert_eq!(missing_before, 1);
        assert_eq!(sample, vec![(0, id(3))]);
        let (missing_after, sample) = refs.missing(&before, Some(&after));
        assert_eq!(missing_after, 1, "id 2 moved to another location: missing where it was");
        assert_eq!(sample, vec![(0, id(2))]);
        let planned = [chunk(9, 0), chunk(3, 4)];
        assert_eq!(refs.planned_but_referenced(planned.iter()), vec![chunk(3, 4)]);
    }
}
