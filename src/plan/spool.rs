//! The spool: planned chunks written to an anonymous file under the work directory as the
//! decide stage decides them, one *run* per listed part, read back in plan order.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::PlanError;
use crate::listing::ListedChunk;
use crate::store::Version;

/// Bytes of one spooled record before its version: id, size, last-modified, version length.
const RECORD_HEAD: usize = 49;
/// The longest spooled record.
const RECORD_MAX: usize = RECORD_HEAD + crate::store::VERSION_CAPACITY;
/// Buffer of the spool's writer and of the plan file's writer.
pub(super) const WRITE_BUFFER: usize = 1 << 20;

/// One run of the spool: consecutive records of one location and fan-out directory.
#[derive(Debug, Clone, Copy)]
struct Run {
    location: u32,
    fanout: u8,
    seq: u64,
    offset: u64,
    count: u32,
    /// Bytes of its records on disk.
    len: u32,
}

/// Where the decide stage writes planned chunks as it decides them.
pub struct PlanSpool {
    dir: PathBuf,
    out: BufWriter<File>,
    runs: Vec<Run>,
    offset: u64,
}

impl PlanSpool {
    /// An anonymous file under `dir`: nothing is left behind, whatever the exit.
    pub fn create(dir: &Path) -> Result<Self, PlanError> {
        let file = tempfile::tempfile_in(dir).map_err(|source| PlanError::Spool { dir: dir.to_owned(), source })?;
        Ok(Self { dir: dir.to_owned(), out: BufWriter::with_capacity(WRITE_BUFFER, file), runs: Vec::new(), offset: 0 })
    }

    /// Appends the planned chunks of one listed part, sorted by id, one run per first byte.
    pub fn append(&mut self, location: u32, planned: &mut [ListedChunk]) -> Result<(), PlanError> {
        if planned.is_empty() {
            return Ok(());
        }
        planned.sort_unstable_by_key(|c| c.id);
        for run in planned.chunk_by(|a, b| a.id[0] == b.id[0]) {
            self.append_run(location, run).map_err(|source| PlanError::Spool { dir: self.dir.clone(), source })?;
        }
        Ok(())
    }

    fn append_run(&mut self, location: u32, run: &[ListedChunk]) -> io::Result<()> {
        let mut record = [0u8; RECORD_MAX];
        let mut len = 0usize;
        for chunk in run {
            let n = encode(chunk, &mut record);
            self.out.write_all(&record[..n])?;
            len += n;
        }
        let seq = self.runs.len() as u64;
        let (count, len32) = (run.len() as u32, len as u32);
        self.runs.push(Run { location, fanout: run[0].id[0], seq, offset: self.offset, count, len: len32 });
        self.offset += len as u64;
        Ok(())
    }

    /// Flushes the spool and orders its runs: location, fan-out directory, arrival.
    pub fn finish(self) -> Result<SpooledPlan, PlanError> {
        let dir = self.dir;
        let file = self.out.into_inner().map_err(|e| PlanError::Spool { dir: dir.clone(), source: e.into_error() })?;
        let mut runs = self.runs;
        runs.sort_unstable_by_key(|r| (r.location, r.fanout, r.seq));
        Ok(SpooledPlan { dir, file, runs, bytes_on_disk: self.offset })
    }
}

/// Writes `chunk`'s record into `out`; returns its length.
fn encode(chunk: &ListedChunk, out: &mut [u8; RECORD_MAX]) -> usize {
    let version = chunk.version.as_bytes();
    out[..32].copy_from_slice(&chunk.id);
    out[32..40].copy_from_slice(&chunk.size.to_le_bytes());
    out[40..48].copy_from_slice(&chunk.last_modified_ms.to_le_bytes());
    out[48] = version.len() as u8;
    out[RECORD_HEAD..RECORD_HEAD + version.len()].copy_from_slice(version);
    RECORD_HEAD + version.len()
}

/// The record at the start of `bytes` and its length; `None` when `bytes` do not hold one
/// (a spool this process wrote always does).
fn decode(bytes: &[u8]) -> Option<(ListedChunk, usize)> {
    let head = bytes.get(..RECORD_HEAD)?;
    let len = RECORD_HEAD + usize::from(head[48]);
    let word = |at: usize| head[at..at + 8].try_into().ok();
    let chunk = ListedChunk {
        id: head[..32].try_into().ok()?,
        size: u64::from_le_bytes(word(32)?),
        last_modified_ms: i64::from_le_bytes(word(40)?),
        version: Version::from_bytes(bytes.get(RECORD_HEAD..len)?)?,
    };
    Some((chunk, len))
}

/// The planned records on disk, in plan order.
pub struct SpooledPlan {
    dir: PathBuf,
    file: File,
    runs: Vec<Run>,
    bytes_on_disk: u64,
}

impl SpooledPlan {
    /// Bytes the spool takes under the work directory.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.bytes_on_disk
    }

    /// Every run in plan order, read one at a time: (location index, its records).
    pub fn runs(&self) -> impl Iterator<Item = Result<(u32, Vec<ListedChunk>), PlanError>> + '_ {
        self.runs.iter().map(|run| self.read(run).map(|records| (run.location, records)))
    }

    /// The runs of one fan-out directory (ids starting with `fanout`), every location.
    pub(crate) fn runs_of_fanout(
        &self,
        fanout: u8,
    ) -> impl Iterator<Item = Result<(u32, Vec<ListedChunk>), PlanError>> + '_ {
        self.runs
            .iter()
            .filter(move |r| r.fanout == fanout)
            .map(|run| self.read(run).map(|records| (run.location, records)))
    }

    fn read(&self, run: &Run) -> Result<Vec<ListedChunk>, PlanError> {
        let fail = |source| PlanError::Spool { dir: self.dir.clone(), source };
        let mut bytes = vec![0u8; run.len as usize];
        self.file.read_exact_at(&mut bytes, run.offset).map_err(fail)?;
        let mut records = Vec::with_capacity(run.count as usize);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (chunk, len) = decode(rest).ok_or_else(|| fail(io::Error::other("a spool record cut short")))?;
            records.push(chunk);
            rest = &rest[len..];
        }
        if records.len() != run.count as usize {
            return Err(fail(io::Error::other("a spool run of the wrong length")));
        }
        Ok(records)
    }
}
