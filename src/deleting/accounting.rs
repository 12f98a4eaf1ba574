//! What each deleting snapshot freed (spec 9.2's accounting), exactly and in memory bounded by
//! one id range, as `--verify`'s checks: the ids the deleting manifests name are spilled with
//! their snapshot, and every other stage spilled only what a filter of those ids holds (the
//! live references, the listing, the deletes). Each range is then read alone: its named ids
//! sorted and deduplicated, then matched against that range's share of each spill and of the
//! plan.

use std::sync::Arc;

use serde::Serialize;

use crate::bloom::RefFilter;
use crate::exit::Exit;
use crate::ids::SnapshotId;
use crate::plan::PlanError;
use crate::plan::SpooledPlan;
use crate::spill::DeletedWatch;
use crate::spill::{Entry, RANGES, RangeSpill, SpillError, Spilled};

/// How the accounting stage (spec 9.2) fails: it could not write or read back a spill, or
/// read back the plan's spool.
#[derive(Debug, thiserror::Error)]
pub enum AccountingError {
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl AccountingError {
    pub fn exit(&self) -> Exit {
        match self {
            AccountingError::Spill(e) => e.exit(),
            AccountingError::Plan(e) => e.exit(),
        }
    }
}

/// What the deleting snapshots' manifests name: every id with its snapshot's index (in the
/// deleting set's order), a filter of those ids, and each snapshot's error.
pub struct Named {
    pub snapshots: Vec<SnapshotId>,
    pub filter: Arc<RefFilter>,
    pub refs: Spilled,
    pub errors: Vec<Option<String>>,
}

/// The accounting as far as planning took it: what the deleting snapshots name, the live
/// references among those ids, and (when this run listed) the listed chunks among them.
pub(crate) struct Accounting {
    pub named: Named,
    pub shared: Spilled,
    pub listed: Option<Spilled>,
}

impl Accounting {
    /// With the chunks this run listed among the named ids (`None`: it did not list).
    pub(crate) fn with_listed(self, listed: Option<Spilled>) -> Self {
        Self { listed, ..self }
    }

    /// Every deleting snapshot's counts over `plan`, with `freed` saying what counts as freed.
    pub fn account(&self, plan: &SpooledPlan, freed: Freed<'_>) -> Result<Vec<DeletingSnapshot>, AccountingError> {
        let t = std::time::Instant::now();
        let _span = tracing::info_span!("accounting").entered();
        let Accounting { named, shared, listed } = self;
        let counts = account(&Ledger {
            snapshots: &named.snapshots,
            errors: &named.errors,
            named: &named.refs,
            shared,
            listed: listed.as_ref(),
            plan,
            freed,
        })?;
        let freed_chunks: u64 = counts.iter().map(|c| c.freed_chunks).sum();
        let elapsed_ms = t.elapsed().as_millis() as u64;
        tracing::info!(snapshots = counts.len(), freed_chunks, elapsed_ms, "deleting snapshots accounted");
        Ok(counts)
    }

    /// What the deletes must note for the accounting after them: the deleted chunks its
    /// named ids hold.
    pub(crate) fn deleted_watch(&self, work_dir: &std::path::Path) -> Result<DeletedWatch, AccountingError> {
        Ok(DeletedWatch { named: Arc::clone(&self.named.filter), spill: RangeSpill::create(work_dir)? })
    }
}

/// One deleting snapshot in the report's `deleting_snapshots` (spec 9.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DeletingSnapshot {
    pub snapshot: String,
    /// Distinct ids its manifests name (as far as they could be read).
    pub chunks: u64,
    /// Of those, referenced by a live snapshot (listed or not).
    pub shared_kept: u64,
    /// Of those, planned (a dry run) or deleted by this run (`--execute`, `--apply-plan`).
    pub freed_chunks: u64,
    /// Their bytes, summed over every location a copy was planned (or deleted) in.
    pub freed_bytes: u64,
    /// Named, not shared, and listed in no candidate location. `null` under `--apply-plan`,
    /// which lists nothing (the reviewed plan's run did).
    pub not_found: Option<u64>,
    /// Why its manifests could not be read whole: missing, unparsable, another partition's
    /// location.
    pub error: Option<String>,
}

/// What counts as freed of the plan.
#[derive(Clone, Copy)]
pub enum Freed<'a> {
    /// Every planned chunk: what a dry run would free.
    Planned,
    /// Nothing: the run deleted nothing (the guard stopped it).
    Nothing,
    /// What the deletes deleted: (id, location).
    Deleted(&'a Spilled),
}

/// What the accounting reads: the named ids with their snapshots, and the spills of the other
/// stages, each holding only what the filter of named ids holds.
pub struct Ledger<'a> {
    /// The deleting snapshots, in the order of the indexes `named` carries.
    pub snapshots: &'a [SnapshotId],
    pub errors: &'a [Option<String>],
    /// (id, deleting snapshot's index).
    pub named: &'a Spilled,
    /// Live references: (id, location).
    pub shared: &'a Spilled,
    /// Listed chunks, when this run listed: (id, location).
    pub listed: Option<&'a Spilled>,
    pub plan: &'a SpooledPlan,
    pub freed: Freed<'a>,
}

/// Per range: which of its distinct named ids each check found.
struct RangeFacts {
    ids: Vec<[u8; 32]>,
    shared: Vec<bool>,
    listed: Vec<bool>,
    freed_bytes: Vec<Option<u64>>,
}

impl RangeFacts {
    fn new(ids: Vec<[u8; 32]>) -> Self {
        let n = ids.len();
        Self { ids, shared: vec![false; n], listed: vec![false; n], freed_bytes: vec![None; n] }
    }

    fn find(&self, id: &[u8; 32]) -> Option<usize> {
        find(&self.ids, id)
    }
}

fn find(ids: &[[u8; 32]], id: &[u8; 32]) -> Option<usize> {
    ids.binary_search(id).ok()
}

/// Which of the range's named `ids` (sorted) `spill`'s entries of `range` hold.
fn held_by(ids: &[[u8; 32]], spill: &Spilled, range: usize) -> Result<Vec<bool>, AccountingError> {
    let mut held = vec![false; ids.len()];
    for block in spill.unsorted_blocks(range) {
        for entry in block? {
            if let Some(i) = find(ids, &entry.id) {
                held[i] = true;
            }
        }
    }
    Ok(held)
}

/// Every deleting snapshot's counts, in the deleting set's order.
pub fn account(ledger: &Ledger<'_>) -> Result<Vec<DeletingSnapshot>, AccountingError> {
    let mut out: Vec<DeletingSnapshot> = ledger
        .snapshots
        .iter()
        .zip(ledger.errors)
        .map(|(snapshot, error)| DeletingSnapshot {
            snapshot: snapshot.to_string(),
            not_found: ledger.listed.map(|_| 0),
            error: error.clone(),
            ..DeletingSnapshot::default()
        })
        .collect();
    for range in 0..RANGES {
        let pairs = ledger.named.sorted_range(range)?;
        if pairs.is_empty() {
            continue;
        }
        let mut ids: Vec<[u8; 32]> = pairs.iter().map(|e| e.id).collect();
        ids.dedup();
        let facts = range_facts(ledger, range, ids)?;
        for pair in &pairs {
            let Some(i) = facts.find(&pair.id) else { continue };
            let Some(counts) = out.get_mut(pair.location as usize) else { continue };
            counts.chunks += 1;
            if facts.shared[i] {
                counts.shared_kept += 1;
            } else if let Some(bytes) = facts.freed_bytes[i] {
                counts.freed_chunks += 1;
                counts.freed_bytes += bytes;
            } else if !facts.listed[i]
                && let Some(not_found) = counts.not_found.as_mut()
            {
                *not_found += 1;
            }
        }
    }
    Ok(out)
}

fn range_facts(ledger: &Ledger<'_>, range: usize, ids: Vec<[u8; 32]>) -> Result<RangeFacts, AccountingError> {
    let mut facts = RangeFacts::new(ids);
    facts.shared = held_by(&facts.ids, ledger.shared, range)?;
    if let Some(listed) = ledger.listed {
        facts.listed = held_by(&facts.ids, listed, range)?;
    }
    let deleted = match ledger.freed {
        Freed::Nothing => return Ok(facts),
        Freed::Planned => None,
        Freed::Deleted(deleted) => Some(deleted.sorted_range(range)?),
    };
    for run in ledger.plan.runs_of_fanout(range as u8) {
        let (location, records) = run?;
        for record in records {
            let Some(i) = facts.find(&record.id) else { continue };
            let freed = deleted.as_ref().is_none_or(|d| d.binary_search(&Entry { id: record.id, location }).is_ok());
            if freed {
                *facts.freed_bytes[i].get_or_insert(0) += record.size;
            }
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::listing::ListedChunk;
    use crate::plan::PlanSpool;
    use crate::spill::RangeSpill;
    use crate::verify::tests::id;

    fn spill(dir: &std::path::Path, pairs: &[(u32, [u8; 32])], block: usize) -> Spilled {
        let spill = RangeSpill::create(dir).unwrap();
        for (location, id) in pairs {
            spill.add(*location, &[*id]);
        }
        spill.finish().unwrap().in_blocks_of(block)
    }

    /// A model of the accounting in sets, against the spilled one: three deleting snapshots
    /// sharing ids, over two locations, in ranges of many blocks.
    #[test]
    fn the_accounting_matches_a_model_of_sets() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots: Vec<SnapshotId> =
            ["gone-a", "gone-b", "gone-c"].iter().map(|s| SnapshotId::parse(s).unwrap()).collect();
        // Ids 0..60 in two ranges; each snapshot names a stride of them, some twice.
        let all: Vec<[u8; 32]> = (0..60).map(|n| id(if n % 2 == 0 { 0x10 } else { 0xf0 }, n)).collect();
        let named: Vec<(u32, [u8; 32])> = (0..3u32)
            .flat_map(|s| {
                all.iter().enumerate().filter(move |(n, _)| n % (s as usize + 2) == 0).map(move |(_, id)| (s, *id))
            })
            .chain([(0, all[0]), (1, all[3])])
            .collect();
        let shared: Vec<(u32, [u8; 32])> =
            all.iter().enumerate().filter(|(n, _)| n % 5 == 0).map(|(_, id)| (1, *id)).collect();
        // Listed: all but every 7th; the ones not shared and not young are planned, in one
        // or two locations; a few planned copies were kept by the re-read.
        let listed: Vec<(u32, [u8; 32])> =
            all.iter().enumerate().filter(|(n, _)| n % 7 != 3).map(|(_, id)| (0, *id)).collect();
        let shared_ids: BTreeSet<[u8; 32]> = shared.iter().map(|(_, id)| *id).collect();
        let mut planned: Vec<(u32, [u8; 32], u64)> = Vec::new();
        for (n, id) in all.iter().enumerate().filter(|(n, _)| n % 7 != 3 && n % 11 != 4) {
            if !shared_ids.contains(id) {
                planned.push((0, *id, 100 + n as u64));
                if n % 3 == 0 {
                    planned.push((1, *id, 1));
                }
            }
        }
        let deleted: Vec<(u32, [u8; 32])> =
            planned.iter().enumerate().filter(|(k, _)| k % 4 != 1).map(|(_, (l, id, _))| (*l, *id)).collect();
        let mut spool = PlanSpool::create(dir.path()).unwrap();
        for (location, id, size) in &planned {
            spool
                .append(
                    *location,
                    &mut [ListedChunk {
                        id: *id,
                        size: *size,
                        last_modified_ms: 0,
                        version: crate::store::Version::NONE,
                    }],
                )
                .unwrap();
        }
        let plan = spool.finish().unwrap();
        let errors = vec![None, Some("snapshot gone-b: missing".to_owned()), None];

        let model = |after_deletes: bool| -> Vec<DeletingSnapshot> {
            let listed_ids: BTreeSet<_> = listed.iter().map(|(_, id)| *id).collect();
            let deleted: BTreeSet<_> = deleted.iter().copied().collect();
            let mut freed: BTreeMap<[u8; 32], u64> = BTreeMap::new();
            for (l, id, size) in &planned {
                if !after_deletes || deleted.contains(&(*l, *id)) {
                    *freed.entry(*id).or_default() += size;
                }
            }
            (0..3u32)
                .map(|s| {
                    let ids: BTreeSet<_> = named.iter().filter(|(i, _)| *i == s).map(|(_, id)| *id).collect();
                    let shared_kept: Vec<_> = ids.iter().filter(|id| shared_ids.contains(*id)).collect();
                    let freed_ids: Vec<_> =
                        ids.iter().filter(|id| !shared_ids.contains(*id) && freed.contains_key(*id)).collect();
                    let not_found = ids
                        .iter()
                        .filter(|id| !shared_ids.contains(*id) && !freed.contains_key(*id) && !listed_ids.contains(*id))
                        .count();
                    DeletingSnapshot {
                        snapshot: snapshots[s as usize].to_string(),
                        chunks: ids.len() as u64,
                        shared_kept: shared_kept.len() as u64,
                        freed_chunks: freed_ids.len() as u64,
                        freed_bytes: freed_ids.iter().map(|id| freed[*id]).sum(),
                        not_found: Some(not_found as u64),
                        error: errors[s as usize].clone(),
                    }
                })
                .collect()
        };
        for block in [1, 3, 1 << 20] {
            let (named_spill, shared_spill) = (spill(dir.path(), &named, block), spill(dir.path(), &shared, block));
            let (listed_spill, deleted_spill) = (spill(dir.path(), &listed, block), spill(dir.path(), &deleted, block));
            let ledger = Ledger {
                snapshots: &snapshots,
                errors: &errors,
                named: &named_spill,
                shared: &shared_spill,
                listed: Some(&listed_spill),
                plan: &plan,
                freed: Freed::Planned,
            };
            let dry_run = account(&ledger).unwrap();
            assert_eq!(dry_run, model(false), "dry run, blocks of {block}");
            assert!(dry_run.iter().all(|d| d.freed_chunks > 0 && d.shared_kept > 0 && d.not_found > Some(0)));
            let executed = account(&Ledger { freed: Freed::Deleted(&deleted_spill), ..ledger }).unwrap();
            assert_eq!(executed, model(true), "after deletes, blocks of {block}");
            assert!(executed[0].freed_bytes < dry_run[0].freed_bytes, "a kept copy is not freed");
            let applied = account(&Ledger { listed: None, ..ledger }).unwrap();
            assert!(applied.iter().all(|d| d.not_found.is_none()), "nothing listed: not_found unknown");
            let stopped = account(&Ledger { freed: Freed::Nothing, ..ledger }).unwrap();
            let unfreed = |d: &DeletingSnapshot| DeletingSnapshot { freed_chunks: 0, freed_bytes: 0, ..d.clone() };
            assert_eq!(stopped, dry_run.iter().map(unfreed).collect::<Vec<_>>(), "nothing deleted, nothing freed");
        }
    }

    /// An id named by a snapshot whose other manifest failed still counts; a snapshot with
    /// nothing read has zeros and its error.
    #[test]
    fn a_snapshot_with_nothing_read_has_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = vec![SnapshotId::parse("gone-a").unwrap(), SnapshotId::parse("gone-b").unwrap()];
        let errors = vec![None, Some("bad".to_owned())];
        let named = spill(dir.path(), &[(0, id(1, 1))], 8);
        let empty = spill(dir.path(), &[], 8);
        let plan = PlanSpool::create(dir.path()).unwrap().finish().unwrap();
        let ledger = Ledger {
            snapshots: &snapshots,
            errors: &errors,
            named: &named,
            shared: &empty,
            listed: Some(&empty),
            plan: &plan,
            freed: Freed::Planned,
        };
        let got = account(&ledger).unwrap();
        assert_eq!(
            got[0],
            DeletingSnapshot { snapshot: "gone-a".into(), chunks: 1, not_found: Some(1), ..Default::default() }
        );
        assert_eq!(
            got[1],
            DeletingSnapshot {
                snapshot: "gone-b".into(),
                not_found: Some(0),
                error: Some("bad".into()),
                ..Default::default()
            }
        );
    }
}
