//! The exact checks of `--verify` (spec 4.7), which never go through the filter, in memory
//! bounded by one id range rather than by the partition.
//!
//! Every referenced (id, location) a live manifest names is spilled to disk by id range (its
//! first byte: the `<hh>` fan-out), and so is every listed chunk the filter holds (a chunk
//! the filter does not hold is referenced by no live manifest, so it can be neither missing
//! nor planned-but-referenced). Each range is then read alone: its references sorted and
//! deduplicated, then merged with that range's planned chunks, its listing before the deletes
//! and, after `--execute`, its listing after them, each taken in sorted blocks.

use crate::exit::Exit;
use crate::plan::{PlanError, SpooledPlan};
use crate::spill::{Entry, RANGES, SpillError, Spilled};

mod relist;
mod verdict;
pub(crate) use relist::{AfterCheck, RelistError, check_reviewed};
pub(crate) use verdict::{VerifyFailure, VerifyReport};

/// How many missing or wrongly planned keys the report names.
pub(crate) const SAMPLE: usize = 100;

/// The exact checks could not read back a spill or the plan's spool.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl VerifyError {
    pub fn exit(&self) -> Exit {
        match self {
            VerifyError::Spill(e) => e.exit(),
            VerifyError::Plan(e) => e.exit(),
        }
    }
}

/// How the verify stage fails: its checks before the deletes (or a reviewed plan's) could not
/// run, its listing after them failed, or its verdict is a failure.
#[derive(Debug, thiserror::Error)]
pub enum VerifyStageError {
    #[error(transparent)]
    Check(#[from] VerifyError),
    #[error(transparent)]
    Relist(#[from] RelistError),
    #[error("verify failed: {0}")]
    Failed(#[from] VerifyFailure),
}

impl VerifyStageError {
    pub fn exit(&self) -> Exit {
        match self {
            VerifyStageError::Check(e) => e.exit(),
            VerifyStageError::Relist(e) => e.exit(),
            VerifyStageError::Failed(_) => Exit::Verify,
        }
    }
}

impl From<SpillError> for VerifyStageError {
    fn from(error: SpillError) -> Self {
        VerifyStageError::Check(error.into())
    }
}

/// Calls `hit` with the index in `refs` of every entry of `sorted` that `refs` holds: by
/// (id, location) when `exact_location`, else by id alone (the first entry of that id).
fn merge(refs: &[Entry], sorted: &[Entry], exact_location: bool, mut hit: impl FnMut(usize, &Entry)) {
    let mut at = 0;
    for probe in sorted {
        let before = |r: &Entry| if exact_location { r < probe } else { r.id < probe.id };
        at += refs[at..].partition_point(before);
        match refs.get(at) {
            Some(r) if r.id == probe.id && (!exact_location || r.location == probe.location) => hit(at, probe),
            _ => {}
        }
    }
}

/// One bit per entry of a range's references.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// A count and up to [`SAMPLE`] examples of (location index, id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Found {
    pub count: u64,
    pub sample: Vec<(u32, [u8; 32])>,
}

impl Found {
    fn push(&mut self, entry: &Entry) {
        self.count += 1;
        if self.sample.len() < SAMPLE {
            self.sample.push((entry.location, entry.id));
        }
    }
}

/// What the checks before any delete found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BeforeChecks {
    /// Planned chunks whose id a live manifest references (anywhere): must be none.
    pub planned_but_referenced: Found,
    /// Referenced (id, location) pairs the listing did not find.
    pub missing_before: Found,
    /// Distinct referenced (id, location) pairs.
    pub referenced_distinct: u64,
}

/// Before any delete: merges each range's references with its planned chunks and with what
/// the listing found.
pub(crate) fn check_before(refs: &Spilled, listed: &Spilled, plan: &SpooledPlan) -> Result<BeforeChecks, VerifyError> {
    let mut checks = BeforeChecks::default();
    for range in 0..RANGES {
        let refs_of_range = refs.sorted_range(range)?;
        checks.referenced_distinct += refs_of_range.len() as u64;
        let present = presence(&refs_of_range, listed, range)?;
        for (i, entry) in refs_of_range.iter().enumerate() {
            if !present.has(i) {
                checks.missing_before.push(entry);
            }
        }
        planned_in_range(&refs_of_range, refs.block_entries(), plan, range, &mut checks.planned_but_referenced)?;
    }
    Ok(checks)
}

/// Planned chunks whose id a live manifest references: the exact check of `--apply-plan`.
pub(crate) fn check_planned(refs: &Spilled, plan: &SpooledPlan) -> Result<Found, VerifyError> {
    let mut found = Found::default();
    for range in 0..RANGES {
        planned_in_range(&refs.sorted_range(range)?, refs.block_entries(), plan, range, &mut found)?;
    }
    Ok(found)
}

/// Which of a range's references `spill` holds (by id and location).
fn presence(refs_of_range: &[Entry], spill: &Spilled, range: usize) -> Result<Bits, VerifyError> {
    let mut present = Bits::new(refs_of_range.len());
    for block in spill.blocks(range) {
        merge(refs_of_range, &block?, true, |i, _| present.set(i));
    }
    Ok(present)
}

/// Adds to `found` the planned chunks of one range whose id is referenced.
fn planned_in_range(
    refs_of_range: &[Entry],
    block_entries: usize,
    plan: &SpooledPlan,
    range: usize,
    found: &mut Found,
) -> Result<(), VerifyError> {
    for block in planned_blocks(plan, range, block_entries) {
        merge(refs_of_range, &block?, false, |_, probe| found.push(probe));
    }
    Ok(())
}

/// The planned chunks of one range in sorted blocks: a block ends with the first plan run
/// that brings it to `block_entries`, so it holds less than `block_entries` plus one run.
fn planned_blocks(
    plan: &SpooledPlan,
    range: usize,
    block_entries: usize,
) -> impl Iterator<Item = Result<Vec<Entry>, VerifyError>> + '_ {
    let mut runs = plan.runs_of_fanout(range as u8);
    std::iter::from_fn(move || {
        let mut block = Vec::new();
        for run in runs.by_ref() {
            let (location, records) = match run {
                Ok(run) => run,
                Err(e) => return Some(Err(e.into())),
            };
            block.extend(records.into_iter().map(|c| Entry { id: c.id, location }));
            if block.len() >= block_entries {
                break;
            }
        }
        (!block.is_empty()).then(|| {
            block.sort_unstable();
            Ok(block)
        })
    })
}

/// After the deletes: referenced (id, location) pairs listed before and not after.
pub(crate) fn check_after(refs: &Spilled, before: &Spilled, after: &Spilled) -> Result<Found, VerifyError> {
    let mut missing_after = Found::default();
    for range in 0..RANGES {
        let refs_of_range = refs.sorted_range(range)?;
        let (was, is) = (presence(&refs_of_range, before, range)?, presence(&refs_of_range, after, range)?);
        for (i, entry) in refs_of_range.iter().enumerate() {
            if was.has(i) && !is.has(i) {
                missing_after.push(entry);
            }
        }
    }
    Ok(missing_after)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bloom::RefFilter;
    use crate::listing::Listed;
    use crate::listing::{ListedChunk, LocationCounts};
    use crate::plan::PlanSpool;
    use crate::spill::{BLOCK_ENTRIES, ENTRY_LEN, RangeSpill};

    /// An id whose first byte (its range) is `first`, numbered `n` within it.
    pub(crate) fn id(first: u8, n: u32) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[0] = first;
        id[1..5].copy_from_slice(&n.to_be_bytes());
        id
    }

    fn listed(location: u32, ids: &[[u8; 32]]) -> Listed {
        let chunks = ids
            .iter()
            .map(|&id| ListedChunk { id, size: 1, last_modified_ms: 0, version: crate::store::Version::NONE })
            .collect();
        Listed { location, counts: LocationCounts::default(), chunks }
    }

    fn everything_filter(ids: &[[u8; 32]]) -> RefFilter {
        let filter = RefFilter::new(ids.len() as u64, 0.0001, 1);
        filter.insert_all(ids);
        filter
    }

    /// The same id referenced in two locations and listed only in one; ids sharing their
    /// first bytes; references spilled from two threads: exactly the right pairs are missing.
    #[test]
    fn spilled_checks_find_exactly_the_missing_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let shared = id(0xab, 1);
        let (a, b, c) = (id(0xab, 2), id(0xab, 3), id(0x00, 4));
        let refs = RangeSpill::create(dir.path()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| refs.add(0, &[shared, a, a, c]));
            s.spawn(|| refs.add(1, &[shared, b]));
        });
        let refs = refs.finish().unwrap();
        let filter = everything_filter(&[shared, a, b, c]);

        let before = RangeSpill::create(dir.path()).unwrap();
        before.add_listed(&listed(1, &[shared, b]), &filter);
        before.add_listed(&listed(0, &[a, c]), &filter);
        let before = before.finish().unwrap();

        let mut spool = PlanSpool::create(dir.path()).unwrap();
        // Planned: an unreferenced chunk, and `b` in location 0 (referenced in location 1).
        let garbage = id(0xab, 99);
        spool
            .append(
                0,
                &mut [ListedChunk { id: garbage, size: 1, last_modified_ms: 0, version: crate::store::Version::NONE }],
            )
            .unwrap();
        spool
            .append(0, &mut [ListedChunk { id: b, size: 1, last_modified_ms: 0, version: crate::store::Version::NONE }])
            .unwrap();
        let plan = spool.finish().unwrap();

        let checks = check_before(&refs, &before, &plan).unwrap();
        assert_eq!(checks.referenced_distinct, 5);
        assert_eq!(checks.missing_before, Found { count: 1, sample: vec![(0, shared)] });
        assert_eq!(checks.planned_but_referenced, Found { count: 1, sample: vec![(0, b)] });

        let after = RangeSpill::create(dir.path()).unwrap();
        after.add_listed(&listed(1, &[shared]), &filter);
        after.add_listed(&listed(0, &[c, a]), &filter);
        let after = after.finish().unwrap();
        let missing_after = check_after(&refs, &before, &after).unwrap();
        assert_eq!(missing_after, Found { count: 1, sample: vec![(1, b)] }, "b was listed before, not after");
    }

    /// Ranges read back in many blocks give exactly what one block gives: 60 references in
    /// one range over two locations, listed and planned in overlapping parts, against a
    /// model of the three checks in sets.
    #[test]
    fn ranges_of_many_blocks_check_exactly_as_one_block() {
        use std::collections::BTreeSet;
        let dir = tempfile::tempdir().unwrap();
        let refs: Vec<(u32, [u8; 32])> = (0..60).map(|n| (n % 2, id(0x5c, n / 2))).collect();
        let listed_before: Vec<_> = refs.iter().copied().filter(|(_, id)| id[4] % 5 != 1).collect();
        let listed_after: Vec<_> = listed_before.iter().copied().filter(|(_, id)| id[4] % 7 != 2).collect();
        // Garbage beside chunks whose id is referenced (in either location).
        let planned: Vec<(u32, [u8; 32])> =
            (0..40).map(|n| (n % 2, id(0x5c, if n % 3 == 0 { n } else { 1_000 + n }))).collect();
        let all_ids: Vec<[u8; 32]> = refs.iter().chain(&planned).map(|(_, id)| *id).collect();
        let filter = everything_filter(&all_ids);

        let spill = |pairs: &[(u32, [u8; 32])], listed_form: bool| {
            let spill = RangeSpill::create(dir.path()).unwrap();
            for part in pairs.chunks(7) {
                for (location, id) in part {
                    if listed_form {
                        spill.add_listed(&listed(*location, &[*id]), &filter);
                    } else {
                        spill.add(*location, &[*id]);
                    }
                }
            }
            spill.finish().unwrap()
        };
        let mut plan = PlanSpool::create(dir.path()).unwrap();
        for (location, id) in &planned {
            plan.append(
                *location,
                &mut [ListedChunk { id: *id, size: 1, last_modified_ms: 0, version: crate::store::Version::NONE }],
            )
            .unwrap();
        }
        let plan = plan.finish().unwrap();

        let ref_set: BTreeSet<_> = refs.iter().copied().collect();
        let before_set: BTreeSet<_> = listed_before.iter().copied().collect();
        let after_set: BTreeSet<_> = listed_after.iter().copied().collect();
        let referenced_ids: BTreeSet<_> = refs.iter().map(|(_, id)| *id).collect();
        let want_missing_before: Vec<_> = ref_set.difference(&before_set).copied().collect();
        let want_planned: Vec<_> = planned.iter().copied().filter(|(_, id)| referenced_ids.contains(id)).collect();
        let want_missing_after: Vec<_> = before_set.difference(&after_set).copied().collect();
        assert!(!want_missing_before.is_empty() && !want_planned.is_empty() && !want_missing_after.is_empty());
        let sorted = |found: Found| {
            let mut sample = found.sample;
            sample.sort_unstable_by_key(|(location, id)| (*id, *location));
            (found.count, sample)
        };
        let by_id = |mut pairs: Vec<(u32, [u8; 32])>| {
            pairs.sort_unstable_by_key(|(location, id)| (*id, *location));
            (pairs.len() as u64, pairs)
        };

        for block in [1, 2, 7, BLOCK_ENTRIES] {
            let refs = spill(&refs, false).in_blocks_of(block);
            let before = spill(&listed_before, true).in_blocks_of(block);
            let after = spill(&listed_after, true).in_blocks_of(block);
            let checks = check_before(&refs, &before, &plan).unwrap();
            assert_eq!(checks.referenced_distinct, 60, "blocks of {block}");
            assert_eq!(sorted(checks.missing_before), by_id(want_missing_before.clone()), "blocks of {block}");
            assert_eq!(sorted(checks.planned_but_referenced), by_id(want_planned.clone()), "blocks of {block}");
            assert_eq!(sorted(check_planned(&refs, &plan).unwrap()), by_id(want_planned.clone()), "blocks of {block}");
            let missing_after = check_after(&refs, &before, &after).unwrap();
            assert_eq!(sorted(missing_after), by_id(want_missing_after.clone()), "blocks of {block}");
        }
    }

    /// The plan of a range is read in bounded blocks (spec 8.1: a range's plan is never held
    /// whole): runs of 3 in blocks of 2 give one run a block, every entry exactly once.
    #[test]
    fn planned_blocks_are_bounded_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = PlanSpool::create(dir.path()).unwrap();
        let mut want = Vec::new();
        for run in 0..10u32 {
            let mut chunks: Vec<ListedChunk> = (0..3)
                .map(|n| ListedChunk {
                    id: id(0x42, run * 3 + n),
                    size: 1,
                    last_modified_ms: 0,
                    version: crate::store::Version::NONE,
                })
                .collect();
            want.extend(chunks.iter().map(|c| Entry { id: c.id, location: run % 2 }));
            spool.append(run % 2, &mut chunks).unwrap();
        }
        spool
            .append(
                0,
                &mut [ListedChunk {
                    id: id(0x43, 0),
                    size: 1,
                    last_modified_ms: 0,
                    version: crate::store::Version::NONE,
                }],
            )
            .unwrap();
        let plan = spool.finish().unwrap();
        let blocks: Vec<Vec<Entry>> = planned_blocks(&plan, 0x42, 2).map(Result::unwrap).collect();
        let sizes: Vec<usize> = blocks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3; 10], "a block ends with the run that fills it");
        assert!(blocks.iter().all(|b| b.is_sorted()));
        let mut got: Vec<Entry> = blocks.concat();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(planned_blocks(&plan, 0x44, 4).count(), 0, "a range with nothing planned has no block");
    }

    #[test]
    fn listed_chunks_outside_the_filter_are_not_spilled() {
        let dir = tempfile::tempdir().unwrap();
        let filter = everything_filter(&[id(1, 1)]);
        let spill = RangeSpill::create(dir.path()).unwrap();
        spill.add_listed(&listed(0, &[id(1, 1), id(2, 2), id(3, 3)]), &filter);
        let spill = spill.finish().unwrap();
        assert_eq!(spill.bytes_on_disk(), ENTRY_LEN as u64, "only the chunk the filter holds");
    }

    /// However many are found, all are counted and the report names the first [`SAMPLE`].
    #[test]
    fn found_counts_all_and_samples_the_first_hundred() {
        let mut found = Found::default();
        for n in 0..(SAMPLE as u32 + 50) {
            found.push(&Entry { id: id(1, n), location: n % 3 });
        }
        assert_eq!(found.count, SAMPLE as u64 + 50);
        assert_eq!(found.sample.len(), SAMPLE);
        assert_eq!(found.sample.last(), Some(&((SAMPLE as u32 - 1) % 3, id(1, SAMPLE as u32 - 1))));
    }

    #[test]
    fn merge_matches_by_id_or_by_pair() {
        let refs = [
            Entry { id: id(1, 1), location: 0 },
            Entry { id: id(1, 1), location: 2 },
            Entry { id: id(1, 5), location: 1 },
        ];
        let probes = [
            Entry { id: id(1, 1), location: 2 },
            Entry { id: id(1, 5), location: 0 },
            Entry { id: id(1, 6), location: 1 },
        ];
        let mut exact = Vec::new();
        merge(&refs, &probes, true, |i, _| exact.push(i));
        assert_eq!(exact, [1]);
        let mut by_id = Vec::new();
        merge(&refs, &probes, false, |i, _| by_id.push(i));
        assert_eq!(by_id, [0, 2]);
    }
}
