//! The decide stage: each listed chunk is decided as its part arrives (spec 4.5), counted
//! per location, and the planned ones go to the plan's spool. [`decide`] is the pure rule;
//! [`decide_stream`] is the loop over the listing's parts, run once the filter is complete.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::bloom::RefFilter;
use crate::listing::{Listed, ListedChunk};
use crate::plan::{LocationTally, Plan, PlanError, PlanSpool};

mod stage;
pub use stage::DecideStageError;
pub(crate) use stage::{Deciding, ListingSettings, Watched, start_listing};

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

/// Decides parts one at a time, keeping only counters and the current part's planned chunks.
pub struct Decider<'a> {
    filter: &'a RefFilter,
    cutoff_ms: i64,
    per_location: Vec<LocationTally>,
    spool: Option<PlanSpool>,
    /// Spool only the planned chunks this filter holds (spec 9.2's accounting in a dry run
    /// that needs no other record): the plan's counters stay whole.
    spool_only: Option<&'a RefFilter>,
    /// The current part's planned chunks.
    part_planned: Vec<ListedChunk>,
    /// Planned so far, every location.
    planned: u64,
}

impl<'a> Decider<'a> {
    /// `spool`: where planned chunks go; `None` when nothing will read them (a dry run
    /// without `--plan-out` or `--verify` needs only the counters).
    pub fn new(filter: &'a RefFilter, cutoff_ms: i64, spool: Option<PlanSpool>) -> Self {
        Self {
            filter,
            cutoff_ms,
            per_location: Vec::new(),
            spool,
            spool_only: None,
            part_planned: Vec::new(),
            planned: 0,
        }
    }

    /// Spools only the planned chunks `held` holds: the spool is then no plan, only what the
    /// deleting snapshots' accounting reads.
    pub(crate) fn spooling_only(self, held: &'a RefFilter) -> Self {
        Self { spool_only: Some(held), ..self }
    }

    pub fn decide_part(&mut self, part: &Listed) -> Result<(), PlanError> {
        let index = part.location as usize;
        if self.per_location.len() <= index {
            self.per_location.resize_with(index + 1, LocationTally::default);
        }
        let tally = &mut self.per_location[index];
        tally.listing.add(&part.counts);
        self.part_planned.clear();
        for chunk in &part.chunks {
            tally.old += u64::from(chunk.last_modified_ms < self.cutoff_ms);
            match decide(&chunk.id, chunk.last_modified_ms, self.filter, self.cutoff_ms) {
                Decision::Keep(KeepReason::Referenced) => tally.referenced_kept += 1,
                Decision::Keep(KeepReason::Young) => tally.young_kept += 1,
                Decision::Delete => {
                    tally.planned += 1;
                    tally.planned_bytes += chunk.size;
                    tally.planned_versioned += u64::from(!chunk.version.is_none());
                    self.part_planned.push(*chunk);
                }
            }
        }
        self.planned += self.part_planned.len() as u64;
        if let Some(held) = self.spool_only {
            self.part_planned.retain(|c| held.contains(&c.id));
        }
        match &mut self.spool {
            Some(spool) => spool.append(part.location, &mut self.part_planned),
            None => Ok(()),
        }
    }

    /// The plan: its counters for `locations` locations, and its spooled records.
    pub fn finish(mut self, locations: usize) -> Result<Plan, PlanError> {
        let len = self.per_location.len().max(locations);
        self.per_location.resize_with(len, LocationTally::default);
        let spool = self.spool.map(PlanSpool::finish).transpose()?;
        Ok(Plan { per_location: self.per_location, spool })
    }
}

/// Decides every part the listing sends until it closes its channel; `observe` sees each
/// part first (verify's record of what was listed). Blocking: run it off the async workers.
/// Stops early, leaving the rest undecided, when `stopped` says so (a signal).
pub(crate) fn decide_stream(
    parts: &mut mpsc::Receiver<Listed>,
    decider: &mut Decider<'_>,
    observe: &mut dyn FnMut(&Listed),
    planned: &AtomicU64,
    stopped: &dyn Fn() -> bool,
) -> Result<(), PlanError> {
    while let Some(part) = parts.blocking_recv() {
        observe(&part);
        decider.decide_part(&part)?;
        planned.store(decider.planned, Ordering::Relaxed);
        if stopped() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::LocationCounts;

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

    fn chunk(n: u8, last_modified_ms: i64, size: u64) -> ListedChunk {
        ListedChunk { id: [n; 32], size, last_modified_ms, version: crate::store::Version::NONE }
    }

    fn part(location: u32, chunks: Vec<ListedChunk>, foreign: u64) -> Listed {
        let counts = LocationCounts {
            listed_objects: chunks.len() as u64 + foreign,
            chunks: chunks.len() as u64,
            chunk_bytes: chunks.iter().map(|c| c.size).sum(),
            foreign_objects: foreign,
            foreign_sample: Vec::new(),
        };
        Listed { location, counts, chunks }
    }

    #[test]
    fn parts_are_counted_per_location_and_only_planned_chunks_are_spooled() {
        let filter = RefFilter::new(2, 0.0001, 5);
        filter.insert_all(&[[1; 32], [2; 32]]);
        let dir = tempfile::tempdir().unwrap();
        let mut decider = Decider::new(&filter, 100, Some(PlanSpool::create(dir.path()).unwrap()));
        // Location 1: a referenced old chunk, a young one, two old unreferenced ones.
        decider
            .decide_part(&part(1, vec![chunk(1, 5, 10), chunk(3, 100, 20), chunk(4, 99, 30), chunk(5, 0, 40)], 2))
            .unwrap();
        // Location 0: a referenced young chunk; an empty part with only foreign objects.
        decider.decide_part(&part(0, vec![chunk(2, 500, 1)], 0)).unwrap();
        decider.decide_part(&part(0, Vec::new(), 3)).unwrap();
        let plan = decider.finish(3).unwrap();
        assert_eq!(plan.per_location.len(), 3, "every location has a tally, listed or not");
        let l1 = &plan.per_location[1];
        assert_eq!((l1.referenced_kept, l1.young_kept, l1.planned, l1.planned_bytes, l1.old), (1, 1, 2, 70, 3));
        assert_eq!((l1.listing.listed_objects, l1.listing.foreign_objects), (6, 2));
        let l0 = &plan.per_location[0];
        assert_eq!((l0.referenced_kept, l0.planned, l0.old, l0.listing.foreign_objects), (1, 0, 0, 3));
        let totals = plan.totals();
        assert_eq!((totals.planned, totals.old, totals.listing.chunks), (2, 3, 5));
        let spooled: Vec<(u32, u8)> = plan
            .spool
            .as_ref()
            .unwrap()
            .runs()
            .flat_map(|r| {
                let (location, records) = r.unwrap();
                records.into_iter().map(move |c| (location, c.id[0]))
            })
            .collect();
        assert_eq!(spooled, [(1, 4), (1, 5)]);
    }

    /// Every part is observed before it is decided, the shared counter follows the plan, and
    /// a stop leaves the parts not yet received undecided: a later call decides them.
    /// For the accounting alone: every planned chunk is counted, only the held ones spooled.
    #[test]
    fn spooling_only_the_held_chunks_keeps_the_counters_whole() {
        let filter = RefFilter::new(1, 0.0001, 5);
        filter.insert_all(&[[1; 32]]);
        let held = RefFilter::new(1, 0.0001, 6);
        held.insert_all(&[[4; 32]]);
        let dir = tempfile::tempdir().unwrap();
        let decider = Decider::new(&filter, 100, Some(PlanSpool::create(dir.path()).unwrap()));
        let mut decider = decider.spooling_only(&held);
        decider.decide_part(&part(0, vec![chunk(1, 5, 10), chunk(3, 5, 20), chunk(4, 5, 30)], 0)).unwrap();
        let plan = decider.finish(1).unwrap();
        assert_eq!((plan.totals().planned, plan.totals().planned_bytes), (2, 50));
        let spooled: Vec<u8> = plan.spool.unwrap().runs().flat_map(|r| r.unwrap().1).map(|c| c.id[0]).collect();
        assert_eq!(spooled, [4], "only the held chunk is spooled");
    }

    #[test]
    fn the_stream_observes_every_part_and_stops_when_told() {
        let filter = RefFilter::new(1, 0.001, 5);
        filter.insert_all(&[[1; 32]]);
        let (tx, mut rx) = mpsc::channel(8);
        tx.try_send(part(0, vec![chunk(1, 0, 1), chunk(2, 0, 1), chunk(3, 0, 1)], 0)).unwrap();
        tx.try_send(part(0, vec![chunk(4, 0, 1)], 0)).unwrap();
        tx.try_send(part(1, vec![chunk(5, 0, 1)], 0)).unwrap();
        drop(tx);
        let mut decider = Decider::new(&filter, 100, None);
        let mut observed = Vec::new();
        let planned = AtomicU64::new(0);
        let stop_at_three = || planned.load(Ordering::Relaxed) >= 3;
        decide_stream(&mut rx, &mut decider, &mut |p| observed.push(p.chunks.len()), &planned, &stop_at_three).unwrap();
        assert_eq!(observed, [3, 1], "observed in order, then stopped");
        assert_eq!(planned.load(Ordering::Relaxed), 3);

        decide_stream(&mut rx, &mut decider, &mut |p| observed.push(p.chunks.len()), &planned, &|| false).unwrap();
        assert_eq!(observed, [3, 1, 1], "the part left by the stop, then the closed channel ends it");
        assert_eq!(planned.load(Ordering::Relaxed), 4);
        assert_eq!(decider.finish(2).unwrap().totals().planned, 4);
    }

    #[test]
    fn without_a_spool_only_counters_are_kept() {
        let filter = RefFilter::new(1, 0.001, 5);
        let mut decider = Decider::new(&filter, 100, None);
        decider.decide_part(&part(0, vec![chunk(7, 0, 1)], 0)).unwrap();
        let plan = decider.finish(1).unwrap();
        assert!(plan.spool.is_none());
        assert_eq!(plan.totals().planned, 1);
    }
}
