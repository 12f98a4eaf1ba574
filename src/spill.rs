//! Entries (chunk id, location index) spilled to disk by id range (an id's first byte: the
//! `<hh>` fan-out), from any number of threads, then read back one range at a time: how
//! `--verify`, the deleting snapshots' accounting and the references of the manifests stage
//! stay within memory bounded by one range rather than by the partition.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::bloom::RefFilter;
use crate::exit::Exit;
use crate::listing::Listed;

/// Id ranges: one per value of an id's first byte.
pub(crate) const RANGES: usize = 256;
/// Bytes of one spilled entry: the id and the location index.
pub(crate) const ENTRY_LEN: usize = 36;
/// Entries sorted and merged at once when a range's listing or plan is read back.
pub(crate) const BLOCK_ENTRIES: usize = 1 << 20;
/// Write buffer of each range file.
const RANGE_BUFFER: usize = 64 * 1024;

/// A spill file under the work directory could not be created, written or read back.
#[derive(Debug, thiserror::Error)]
#[error("spill under {dir}: {source}")]
pub struct SpillError {
    pub dir: PathBuf,
    pub source: io::Error,
}

impl SpillError {
    /// The work directory (`--work-dir`) is the operator's to fix, as a flag is.
    pub fn exit(&self) -> Exit {
        Exit::Usage
    }
}

/// A referenced or listed (chunk id, location index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub id: [u8; 32],
    pub location: u32,
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[..32].copy_from_slice(&self.id);
        out[32..].copy_from_slice(&self.location.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Entry {
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[..32]);
        let mut location = [0u8; 4];
        location.copy_from_slice(&bytes[32..ENTRY_LEN]);
        Entry { id, location: u32::from_le_bytes(location) }
    }
}

/// Entries written to one file per id range, from any number of threads.
pub struct RangeSpill {
    dir: PathBuf,
    ranges: Vec<Mutex<BufWriter<File>>>,
    entries: AtomicU64,
    /// The first write error: the spill is then incomplete, and `finish` says so.
    failed: Mutex<Option<io::Error>>,
}

impl RangeSpill {
    /// One anonymous file per range under `dir`: nothing is left behind, whatever the exit.
    pub fn create(dir: &Path) -> Result<Self, SpillError> {
        let ranges = (0..RANGES)
            .map(|_| Ok(Mutex::new(BufWriter::with_capacity(RANGE_BUFFER, tempfile::tempfile_in(dir)?))))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|source| SpillError { dir: dir.to_owned(), source })?;
        Ok(Self { dir: dir.to_owned(), ranges, entries: AtomicU64::new(0), failed: Mutex::new(None) })
    }

    /// Adds (id, location) for every id: grouped by range first, so each range's lock is
    /// taken once per call.
    pub fn add(&self, location: u32, ids: &[[u8; 32]]) {
        let mut entries: Vec<Entry> = ids.iter().map(|&id| Entry { id, location }).collect();
        self.add_entries(&mut entries);
    }

    fn add_entries(&self, entries: &mut [Entry]) {
        entries.sort_unstable_by_key(|e| e.id[0]);
        for group in entries.chunk_by(|a, b| a.id[0] == b.id[0]) {
            let mut out = self.ranges[usize::from(group[0].id[0])].lock().unwrap_or_else(PoisonError::into_inner);
            for entry in group {
                if let Err(e) = out.write_all(&entry.encode()) {
                    self.fail(e);
                    return;
                }
            }
        }
        self.entries.fetch_add(entries.len() as u64, Ordering::Relaxed);
    }

    /// Adds every chunk of a listed part that the filter holds: only those can be referenced.
    pub(crate) fn add_listed(&self, part: &Listed, filter: &RefFilter) {
        let mut entries: Vec<Entry> = part
            .chunks
            .iter()
            .filter(|c| filter.contains(&c.id))
            .map(|c| Entry { id: c.id, location: part.location })
            .collect();
        self.add_entries(&mut entries);
    }

    /// Adds (id, location) for the ids `filter` holds: what concerns the deleting snapshots.
    pub(crate) fn add_held(&self, location: u32, ids: &[[u8; 32]], filter: &RefFilter) {
        let mut entries: Vec<Entry> =
            ids.iter().filter(|id| filter.contains(id)).map(|&id| Entry { id, location }).collect();
        if !entries.is_empty() {
            self.add_entries(&mut entries);
        }
    }

    fn fail(&self, error: io::Error) {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(error);
    }

    /// Flushes every range; fails if any write failed.
    pub fn finish(self) -> Result<Spilled, SpillError> {
        let dir = self.dir;
        let spill_err = |source| SpillError { dir: dir.clone(), source };
        if let Some(error) = self.failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
            return Err(spill_err(error));
        }
        let files = self
            .ranges
            .into_iter()
            .map(|range| {
                let out = range.into_inner().unwrap_or_else(PoisonError::into_inner);
                out.into_inner().map_err(|e| e.into_error())
            })
            .collect::<io::Result<Vec<File>>>()
            .map_err(spill_err)?;
        let entries = self.entries.into_inner();
        Ok(Spilled { dir, files, entries, block_entries: BLOCK_ENTRIES })
    }
}

/// A finished spill: its ranges read back one at a time.
pub struct Spilled {
    dir: PathBuf,
    files: Vec<File>,
    entries: u64,
    /// Entries read back at once: [`BLOCK_ENTRIES`], but a few in tests, so that ranges
    /// of many blocks are tried.
    block_entries: usize,
}

impl Spilled {
    #[cfg(test)]
    pub(crate) fn in_blocks_of(self, block_entries: usize) -> Self {
        Self { block_entries, ..self }
    }

    /// Entries read back at once.
    pub(crate) fn block_entries(&self) -> usize {
        self.block_entries
    }

    /// Bytes the spill takes under the work directory.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.entries * ENTRY_LEN as u64
    }

    /// Every entry of `range`, in blocks of at most `block_entries`, each sorted.
    pub(crate) fn blocks(&self, range: usize) -> impl Iterator<Item = Result<Vec<Entry>, SpillError>> + '_ {
        self.unsorted_blocks(range).map(|block| {
            block.map(|mut entries| {
                entries.sort_unstable();
                entries
            })
        })
    }

    /// Every entry of `range`, in blocks of at most `block_entries`, in spill order.
    pub(crate) fn unsorted_blocks(&self, range: usize) -> impl Iterator<Item = Result<Vec<Entry>, SpillError>> + '_ {
        let file = &self.files[range];
        let (len, unreadable) = match file.metadata() {
            Ok(meta) => (meta.len(), None),
            Err(source) => (0, Some(SpillError { dir: self.dir.clone(), source })),
        };
        let block_bytes = (self.block_entries * ENTRY_LEN) as u64;
        unreadable.map(Err).into_iter().chain((0..len.div_ceil(block_bytes)).map(move |i| {
            let offset = i * block_bytes;
            let mut bytes = vec![0u8; (len - offset).min(block_bytes) as usize];
            file.read_exact_at(&mut bytes, offset).map_err(|source| SpillError { dir: self.dir.clone(), source })?;
            Ok(bytes.chunks_exact(ENTRY_LEN).map(Entry::decode).collect())
        }))
    }

    /// The whole range, sorted and deduplicated.
    pub(crate) fn sorted_range(&self, range: usize) -> Result<Vec<Entry>, SpillError> {
        let mut all = Vec::new();
        for block in self.blocks(range) {
            all.extend(block?);
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }
}

/// The deleted chunks the accounting asks about (spec 9.2): those a filter of the deleting
/// snapshots' ids holds, spilled by id range as (id, location index).
pub struct DeletedWatch {
    pub named: Arc<RefFilter>,
    pub spill: RangeSpill,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An id of range `first`, numbered `n` within it.
    fn id(first: u8, n: u32) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[0] = first;
        id[1..5].copy_from_slice(&n.to_be_bytes());
        id
    }

    /// A disk that is full for a moment, then has room again: the entries of the failed
    /// write are lost, so the spill must fail even though every later write and the final
    /// flush succeed (else `--verify` would check an incomplete set and could pass).
    #[test]
    fn a_write_that_failed_once_fails_the_spill() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let spill = RangeSpill::create(dir.path()).unwrap();
        let fd = spill.ranges[7].lock().unwrap().get_ref().as_raw_fd();
        let full = File::options().write(true).open("/dev/full").unwrap();
        // SAFETY: `fd` is range 7's open file, owned by `spill` for the whole test; it is
        // pointed at /dev/full and back at its own file (kept open as `saved`), never closed.
        let saved = unsafe { libc::dup(fd) };
        assert!(saved >= 0);
        assert_eq!(unsafe { libc::dup2(full.as_raw_fd(), fd) }, fd);
        // More than the write buffer holds, so a write reaches the full disk.
        let many: Vec<[u8; 32]> = (0..4_000).map(|n| id(7, n)).collect();
        spill.add(0, &many);
        assert_eq!(unsafe { libc::dup2(saved, fd) }, fd);
        assert_eq!(unsafe { libc::close(saved) }, 0);
        spill.add(0, &[id(7, 9_999)]);
        assert!(matches!(spill.finish(), Err(SpillError { .. })), "a lost write went unnoticed");
    }
}
