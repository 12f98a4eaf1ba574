//! Synthetic partitions for tests, demos and benchmarks.
//!
//! [`synthesize`] writes one partition laid out as in spec section 2: live and dead snapshots
//! (legacy pairs, unified manifests or both), the chunks they reference, old unreferenced
//! garbage, young unreferenced chunks, foreign objects, and the live-set file. Everything is a
//! pure function of the seed and `now`, so two runs with the same config write the same
//! objects with the same contents and chunk mtimes.
//!
//! Nothing per chunk is held in memory: every chunk object is numbered, and its id, location,
//! kind and mtime are computed from its number. The numbering is
//!
//! ```text
//! [0, shared)                     ids referenced by two live snapshots
//! [shared, referenced)            ids referenced by one live snapshot
//! [referenced, +dead_exclusive)   ids referenced only by dead snapshots (garbage)
//! [.., +orphans)                  ids nobody references (garbage)
//! [.., +young)                    ids nobody references, younger than any sane cutoff
//! ```

use std::io::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use rayon::prelude::*;

use gc_partition::ids::{ChunkId, IdError, PartitionId, SnapshotId};
use gc_partition::locations::{Location, LocationError};
use gc_partition::store::{StoreError, Stores};

use crate::ageing::{AgeError, Ageing};

/// Most ids in one unified-manifest group; bigger sets are split so readers meet several
/// groups per location.
const GROUP_MAX: usize = 50_000;
/// Old chunks are spread over this much time *before* `now - old_age`.
const OLD_SPREAD_SECS: u64 = 3_600;
/// Young chunks are spread over at most this much time *after* `now - young_age`.
const YOUNG_SPREAD_SECS: u64 = 600;

/// Why a synthetic partition could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    #[error("synth config: {0}")]
    Config(String),
    #[error("synth location: {0}")]
    Location(#[from] LocationError),
    #[error("synth snapshot id {id:?}: {source}")]
    SnapshotId { id: String, source: IdError },
    #[error("bucket {bucket}: cannot create: {source}")]
    CreateBucket { bucket: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Age(#[from] AgeError),
    #[error("bucket {bucket} key {key}: write failed: {source}")]
    Put { bucket: String, key: String, source: object_store::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store directory {path} does not exist")]
    NoStoreDir { path: PathBuf },
    #[error("chunk writer: {0}")]
    Worker(String),
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SynthError {
    let path = path.into();
    move |source| SynthError::Io { path, source }
}

/// Shares of the snapshot formats. `both` is what `legacy` and `unified` leave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FormatMix {
    pub legacy: f64,
    pub unified: f64,
    pub both: f64,
}

impl FormatMix {
    /// `both = 1 - legacy - unified`.
    pub fn from_shares(legacy: f64, unified: f64) -> Result<Self, SynthError> {
        let mix = Self { legacy, unified, both: (1.0 - legacy - unified).max(0.0) };
        mix.check()?;
        Ok(mix)
    }

    fn check(&self) -> Result<(), SynthError> {
        let (l, u, b) = (self.legacy, self.unified, self.both);
        if [l, u, b].iter().any(|s| !s.is_finite() || *s < 0.0) || l + u + b <= 0.0 {
            return Err(SynthError::Config(format!(
                "format shares legacy {l}, unified {u}, both {b} must be >= 0 and not all 0"
            )));
        }
        if l + u > 1.0 + 1e-9 {
            return Err(SynthError::Config(format!("legacy share {l} + unified share {u} exceed 1")));
        }
        Ok(())
    }

    /// How many of `n` snapshots get each format (largest remainder, ties to legacy first).
    fn counts(&self, n: usize) -> [usize; 3] {
        let shares = [self.legacy, self.unified, self.both];
        let total: f64 = shares.iter().sum();
        let exact: Vec<f64> = shares.iter().map(|s| s / total * n as f64).collect();
        let mut counts: [usize; 3] = [0, 1, 2].map(|k| exact[k].floor() as usize);
        let mut order = [0usize, 1, 2];
        order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
        let mut left = n.saturating_sub(counts.iter().sum());
        for k in order.iter().cycle().take(3 * n.max(1)) {
            if left == 0 {
                break;
            }
            counts[*k] += 1;
            left -= 1;
        }
        counts
    }
}

impl Default for FormatMix {
    fn default() -> Self {
        Self { legacy: 0.4, unified: 0.4, both: 0.2 }
    }
}

/// The format(s) a snapshot's manifests are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotFormat {
    Legacy,
    Unified,
    Both,
}

impl SnapshotFormat {
    fn has_legacy(self) -> bool {
        matches!(self, Self::Legacy | Self::Both)
    }

    fn has_unified(self) -> bool {
        matches!(self, Self::Unified | Self::Both)
    }
}

/// What to synthesize. Counts are exact; `shared_fraction` is met as closely as integer
/// counts allow.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub partition: PartitionId,
    pub seed: u64,
    pub meta_bucket: String,
    /// Live snapshots: the ones listed in the live set.
    pub snapshots: usize,
    /// Distinct ids referenced by live snapshots.
    pub referenced_ids: u64,
    /// Share of the live snapshots' references that point at an id another live snapshot
    /// also references. Dead snapshots additionally reference this share of live ids.
    pub shared_fraction: f64,
    /// Old unreferenced chunks: the exclusive ids of dead snapshots, then orphans.
    pub garbage_chunks: u64,
    /// Unreferenced chunks last modified `young_age` before `now` (or a little later).
    pub young_chunks: u64,
    /// Non-chunk objects under the chunk locations; aged like old chunks.
    pub foreign_objects: u64,
    /// Unified-manifest locations besides the legacy default.
    pub extra_locations: usize,
    pub format_mix: FormatMix,
    /// The live set's `taken_at`; every timestamp is derived from it.
    pub now: DateTime<Utc>,
    /// Referenced, garbage and foreign objects are last modified `old_age` (up to an hour
    /// more) before `now`.
    pub old_age: Duration,
    pub young_age: Duration,
    pub live_set_path: Option<PathBuf>,
    /// Where to write the dead snapshots as a deleting set (`--deleting-snapshots`, spec 9.2),
    /// with the live set's `taken_at`; their manifests are then aged `old_age`, so a run
    /// reclaims them (and one without the set would stop at the cross-check).
    pub deleting_set_path: Option<PathBuf>,
    /// Snapshots whose manifests are in the store but not in the live set.
    pub dead_snapshots: usize,
    /// Keep the exact sets of written objects in the summary (tests; not for huge runs).
    pub record_sets: bool,
    /// `file://` writer threads; 0 picks a default.
    pub write_threads: usize,
    /// Concurrent puts on other stores.
    pub put_concurrency: usize,
    /// Leave every object as written (now) instead of aging it: for remote stores that
    /// cannot be backdated (gs:// test runs), and only for tests that need no old chunks.
    pub unaged: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        #[allow(clippy::expect_used)] // a literal in the id alphabet
        let partition = PartitionId::parse("p1").expect("literal partition id");
        Self {
            partition,
            seed: 1,
            meta_bucket: "snapshots".to_owned(),
            snapshots: 8,
            referenced_ids: 2_000,
            shared_fraction: 0.3,
            garbage_chunks: 500,
            young_chunks: 100,
            foreign_objects: 20,
            extra_locations: 2,
            format_mix: FormatMix::default(),
            now: Utc::now(),
            old_age: Duration::from_secs(30 * 86_400),
            young_age: Duration::from_secs(3_600),
            live_set_path: None,
            deleting_set_path: None,
            dead_snapshots: 2,
            record_sets: false,
            write_threads: 0,
            put_concurrency: 64,
            unaged: false,
        }
    }
}

/// Objects written to one location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationCounts {
    pub location: Location,
    pub referenced: u64,
    pub garbage: u64,
    pub young: u64,
    pub foreign: u64,
    /// Bytes of chunks and foreign objects.
    pub bytes: u64,
}

/// The exact objects written, when `record_sets` asks for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthSets {
    pub referenced: Vec<(Location, ChunkId)>,
    pub garbage: Vec<(Location, ChunkId)>,
    pub young: Vec<(Location, ChunkId)>,
    /// (bucket, key)
    pub foreign: Vec<(String, String)>,
}

/// What [`synthesize`] wrote.
#[derive(Debug, Clone)]
pub struct SynthSummary {
    pub partition: PartitionId,
    pub seed: u64,
    /// Live snapshots, in live-set order.
    pub snapshots: Vec<SnapshotId>,
    pub dead_snapshots: Vec<SnapshotId>,
    /// Legacy pairs written (live and dead).
    pub legacy_manifests: usize,
    /// Unified manifests written (live and dead).
    pub unified_manifests: usize,
    /// Distinct ids referenced by live snapshots.
    pub referenced_ids: u64,
    /// Of those, ids referenced by two live snapshots.
    pub shared_ids: u64,
    pub garbage_chunks: u64,
    /// Of the garbage, ids that dead snapshots reference.
    pub dead_exclusive_ids: u64,
    pub young_chunks: u64,
    pub foreign_objects: u64,
    /// The legacy default first.
    pub locations: Vec<Location>,
    pub per_location: Vec<LocationCounts>,
    pub live_set: String,
    pub taken_at: DateTime<Utc>,
    /// Chunks, foreign objects and manifest files.
    pub objects_written: u64,
    pub bytes_written: u64,
    pub elapsed: Duration,
    pub sets: Option<SynthSets>,
}

impl SynthSummary {
    pub fn chunk_objects(&self) -> u64 {
        self.referenced_ids + self.garbage_chunks + self.young_chunks
    }

    pub fn objects_per_sec(&self) -> f64 {
        self.objects_written as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Writes the synthetic partition `cfg` describes into `stores`.
pub async fn synthesize(stores: &Stores, cfg: &SynthConfig) -> Result<SynthSummary, SynthError> {
    let started = Instant::now();
    let layout = Arc::new(Layout::plan(cfg)?);
    create_buckets(stores, &layout)?;
    if !cfg.unaged {
        check_backdating(stores, &layout)?;
    }
    let mut tally = write_manifests(stores, &layout).await?;
    tally.merge(write_chunks(stores, &layout, cfg).await?);
    tally.merge(write_foreign(stores, &layout, cfg.unaged).await?);
    let live_set = layout.live_set_text();
    if let Some(path) = &cfg.live_set_path {
        std::fs::write(path, &live_set).map_err(io_err(path))?;
    }
    if let Some(path) = &cfg.deleting_set_path {
        age_dead_manifests(stores, &layout, cfg)?;
        std::fs::write(path, layout.deleting_set_text()).map_err(io_err(path))?;
    }
    let sets = cfg.record_sets.then(|| layout.sets());
    Ok(layout.summary(tally, live_set, started.elapsed(), sets))
}

// ---------------------------------------------------------------------------------------
// Deterministic randomness.

const T_ID: u64 = 1;
const T_HOME: u64 = 2;
const T_AGE: u64 = 3;
const T_PICK: u64 = 4;
const T_SHUFFLE: u64 = 5;
const T_FOREIGN: u64 = 6;

use gc_partition::ids::splitmix64;

/// A well-mixed 64-bit value for (seed, purpose, a, b).
fn mix(seed: u64, tag: u64, a: u64, b: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(seed ^ tag.wrapping_mul(0xA076_1D64_78BD_642F)) ^ a) ^ b)
}

/// Uniform 32 bytes, like a SHA-256.
fn chunk_id(seed: u64, n: u64) -> ChunkId {
    let mut id = [0u8; 32];
    for (lane, part) in id.chunks_exact_mut(8).enumerate() {
        part.copy_from_slice(&mix(seed, T_ID, n, lane as u64).to_le_bytes());
    }
    ChunkId(id)
}

/// 16 to 64 bytes derived from the id.
fn chunk_content(id: &ChunkId) -> ([u8; 64], usize) {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&id.0);
    buf[32..].copy_from_slice(&id.0);
    (buf, 16 + usize::from(id.0[31]) % 49)
}

fn shuffle<T>(seed: u64, salt: u64, items: &mut [T]) {
    for k in (1..items.len()).rev() {
        let j = (mix(seed, T_SHUFFLE, salt, k as u64) % (k as u64 + 1)) as usize;
        items.swap(k, j);
    }
}

/// `[start(j), start(j+1))` with `start(j) = floor(j * total / parts)`: `parts` nearly equal
/// blocks of `0..total`.
fn block(j: usize, parts: usize, total: u64) -> Range<u64> {
    let start = |j: usize| (j as u128 * total as u128 / parts.max(1) as u128) as u64;
    start(j)..start(j + 1)
}

/// The block of [`block`] that holds `k`.
fn block_of(k: u64, parts: usize, total: u64) -> usize {
    (((k as u128 + 1) * parts as u128 - 1) / total.max(1) as u128) as usize
}

fn sub(now: DateTime<Utc>, age: Duration) -> Result<DateTime<Utc>, SynthError> {
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(|| SynthError::Config(format!("age {age:?} before {now} is out of range")))
}

// ---------------------------------------------------------------------------------------
// The plan: who references what, where each chunk lives.

#[derive(Debug, Clone)]
struct SnapPlan {
    id: SnapshotId,
    format: SnapshotFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Referenced,
    Garbage,
    Young,
}

/// One chunk object, computed from its number.
#[derive(Debug, Clone, Copy)]
struct ChunkObject {
    loc: usize,
    id: ChunkId,
    kind: Kind,
    mtime: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Layout {
    seed: u64,
    partition: PartitionId,
    meta_bucket: String,
    now: DateTime<Utc>,
    old: DateTime<Utc>,
    young: DateTime<Utc>,
    young_spread: u64,
    /// `[0]` is the legacy default.
    locations: Vec<Location>,
    live: Vec<SnapPlan>,
    dead: Vec<SnapPlan>,
    shared_fraction: f64,
    shared: u64,
    referenced: u64,
    dead_exclusive: u64,
    orphans: u64,
    young_count: u64,
    foreign: u64,
}

impl Layout {
    fn plan(cfg: &SynthConfig) -> Result<Self, SynthError> {
        check_config(cfg)?;
        let (live, dead) = plan_snapshots(cfg)?;
        let shared = shared_ids(cfg.referenced_ids, cfg.shared_fraction, live.len());
        let dead_exclusive = if dead.is_empty() { 0 } else { cfg.garbage_chunks / 2 };
        let young_spread = (cfg.young_age.as_secs() / 4).min(YOUNG_SPREAD_SECS);
        Ok(Self {
            seed: cfg.seed,
            partition: cfg.partition.clone(),
            meta_bucket: cfg.meta_bucket.clone(),
            now: cfg.now,
            old: sub(cfg.now, cfg.old_age)?,
            young: sub(cfg.now, cfg.young_age)?,
            young_spread,
            locations: plan_locations(&cfg.meta_bucket, &cfg.partition, cfg.extra_locations)?,
            live,
            dead,
            shared_fraction: cfg.shared_fraction,
            shared,
            referenced: cfg.referenced_ids,
            dead_exclusive,
            orphans: cfg.garbage_chunks - dead_exclusive,
            young_count: cfg.young_chunks,
            foreign: cfg.foreign_objects,
        })
    }

    fn garbage(&self) -> u64 {
        self.dead_exclusive + self.orphans
    }

    fn chunk_count(&self) -> u64 {
        self.referenced + self.garbage() + self.young_count
    }

    fn exclusive(&self) -> u64 {
        self.referenced - self.shared
    }

    /// The two live snapshots that reference shared id `s`: `a = s % S`,
    /// `b = a + 1 + (s / S) % (S - 1)` (mod S), never equal to `a`.
    fn shared_owners(&self, s: u64) -> (usize, usize) {
        let n = self.live.len() as u64;
        let a = s % n;
        let b = (a + 1 + (s / n) % (n - 1)) % n;
        (a as usize, b as usize)
    }

    /// Every shared id whose second owner is live snapshot `j`.
    fn shared_second(&self, j: usize) -> impl Iterator<Item = u64> + '_ {
        let n = self.live.len() as u64;
        let rounds = if n < 2 { 0 } else { self.shared.div_ceil(n) };
        (0..rounds).filter_map(move |q| {
            let a = (j as u64 + n - 1 - q % (n - 1)) % n;
            let s = a + n * q;
            (s < self.shared).then_some(s)
        })
    }

    fn any_location(&self, n: u64) -> usize {
        (mix(self.seed, T_HOME, n, 0) % self.locations.len() as u64) as usize
    }

    /// Where chunk `n` lives: the legacy default when a legacy-only snapshot references it.
    fn home(&self, n: u64) -> usize {
        let legacy = |plan: &SnapPlan| plan.format == SnapshotFormat::Legacy;
        let pinned = if n < self.shared {
            let (a, b) = self.shared_owners(n);
            legacy(&self.live[a]) || legacy(&self.live[b])
        } else if n < self.referenced {
            legacy(&self.live[block_of(n - self.shared, self.live.len(), self.exclusive())])
        } else if n < self.referenced + self.dead_exclusive {
            legacy(&self.dead[block_of(n - self.referenced, self.dead.len(), self.dead_exclusive)])
        } else {
            false
        };
        if pinned { 0 } else { self.any_location(n) }
    }

    fn kind(&self, n: u64) -> Kind {
        if n < self.referenced {
            Kind::Referenced
        } else if n < self.referenced + self.garbage() {
            Kind::Garbage
        } else {
            Kind::Young
        }
    }

    fn mtime(&self, n: u64, kind: Kind) -> DateTime<Utc> {
        let r = mix(self.seed, T_AGE, n, 0);
        match kind {
            Kind::Young => self.young + chrono::Duration::seconds((r % (self.young_spread + 1)) as i64),
            Kind::Referenced | Kind::Garbage => self.old - chrono::Duration::seconds((r % OLD_SPREAD_SECS) as i64),
        }
    }

    fn chunk(&self, n: u64) -> ChunkObject {
        let kind = self.kind(n);
        ChunkObject { loc: self.home(n), id: chunk_id(self.seed, n), kind, mtime: self.mtime(n, kind) }
    }

    /// The chunk numbers live snapshot `j` references.
    fn live_refs(&self, j: usize) -> Vec<u64> {
        let n = self.live.len();
        let mut refs: Vec<u64> =
            if self.shared == 0 { Vec::new() } else { (j as u64..self.shared).step_by(n).collect() };
        refs.extend(self.shared_second(j));
        let own = block(j, n, self.exclusive());
        refs.extend((own.start + self.shared)..(own.end + self.shared));
        refs
    }

    /// The chunk numbers dead snapshot `d` references: its exclusive ids and a
    /// `shared_fraction` share as many live ids it can reference.
    fn dead_refs(&self, d: usize) -> Vec<u64> {
        let own = block(d, self.dead.len(), self.dead_exclusive);
        let mut refs: Vec<u64> = (own.start + self.referenced..own.end + self.referenced).collect();
        let picks =
            if self.referenced == 0 { 0 } else { ((own.end - own.start) as f64 * self.shared_fraction).round() as u64 };
        let legacy_only = self.dead[d].format == SnapshotFormat::Legacy;
        let mut live: Vec<u64> = (0..picks)
            .map(|t| mix(self.seed, T_PICK, d as u64, t) % self.referenced)
            .filter(|&n| !legacy_only || self.home(n) == 0)
            .collect();
        live.sort_unstable();
        live.dedup();
        refs.extend(live);
        refs
    }

    /// Foreign object `n`: its location and key.
    fn foreign_object(&self, n: u64) -> (usize, String) {
        let locs = self.locations.len() as u64;
        let loc = (n % locs) as usize;
        let m = n / locs;
        let prefix = self.locations[loc].prefix();
        let id = chunk_id(self.seed ^ T_FOREIGN, n);
        let hex = id.to_hex();
        let rest = match (m, m % 4) {
            (0, _) => "README".to_owned(),
            (_, 1) => format!("{}/notachunk-{m}.tmp", &hex[..2]),
            (_, 2) => format!("zz/partial-{m}"),
            (_, 3) => format!("{:02x}/{hex}", id.0[0].wrapping_add(1)),
            _ => format!("{}/{}", &hex[..2], hex.to_uppercase()),
        };
        let key = if prefix.is_empty() { rest } else { format!("{prefix}/{rest}") };
        (loc, key)
    }

    fn deleting_set_text(&self) -> String {
        let ids: Vec<SnapshotId> = self.dead.iter().map(|s| s.id.clone()).collect();
        formats::live_set(&ids, self.now)
    }

    fn live_set_text(&self) -> String {
        let ids: Vec<SnapshotId> = self.live.iter().map(|s| s.id.clone()).collect();
        formats::live_set(&ids, self.now)
    }

    fn sets(&self) -> SynthSets {
        let mut sets = SynthSets::default();
        for n in 0..self.chunk_count() {
            let obj = self.chunk(n);
            let entry = (self.locations[obj.loc].clone(), obj.id);
            match obj.kind {
                Kind::Referenced => sets.referenced.push(entry),
                Kind::Garbage => sets.garbage.push(entry),
                Kind::Young => sets.young.push(entry),
            }
        }
        sets.foreign = (0..self.foreign)
            .map(|n| {
                let (loc, key) = self.foreign_object(n);
                (self.locations[loc].bucket().to_owned(), key)
            })
            .collect();
        sets
    }

    fn summary(&self, tally: Tally, live_set: String, elapsed: Duration, sets: Option<SynthSets>) -> SynthSummary {
        let per_location = self
            .locations
            .iter()
            .zip(&tally.per_location)
            .map(|(location, c)| LocationCounts { location: location.clone(), ..c.clone() })
            .collect();
        SynthSummary {
            partition: self.partition.clone(),
            seed: self.seed,
            snapshots: self.live.iter().map(|s| s.id.clone()).collect(),
            dead_snapshots: self.dead.iter().map(|s| s.id.clone()).collect(),
            legacy_manifests: tally.legacy_manifests,
            unified_manifests: tally.unified_manifests,
            referenced_ids: self.referenced,
            shared_ids: self.shared,
            garbage_chunks: self.garbage(),
            dead_exclusive_ids: self.dead_exclusive,
            young_chunks: self.young_count,
            foreign_objects: self.foreign,
            locations: self.locations.clone(),
            per_location,
            live_set,
            taken_at: self.now,
            objects_written: tally.objects,
            bytes_written: tally.bytes,
            elapsed,
            sets,
        }
    }
}

fn check_config(cfg: &SynthConfig) -> Result<(), SynthError> {
    cfg.format_mix.check()?;
    let bad = |why: String| Err(SynthError::Config(why));
    if !(0.0..=1.0).contains(&cfg.shared_fraction) {
        return bad(format!("shared fraction {} is not in [0, 1]", cfg.shared_fraction));
    }
    if cfg.referenced_ids > 0 && cfg.snapshots == 0 {
        return bad(format!("{} referenced ids need at least one live snapshot", cfg.referenced_ids));
    }
    if cfg.snapshots + cfg.dead_snapshots > 999_999 {
        return bad("more than 999999 snapshots".to_owned());
    }
    if cfg.extra_locations > 1_000 {
        return bad(format!("{} extra locations is more than 1000", cfg.extra_locations));
    }
    if cfg.young_age >= cfg.old_age {
        return bad(format!(
            "young age {} is not less than old age {}",
            age_text(cfg.young_age),
            age_text(cfg.old_age)
        ));
    }
    let total = cfg.referenced_ids.checked_add(cfg.garbage_chunks).and_then(|n| n.checked_add(cfg.young_chunks));
    if total.is_none_or(|n| n >= 1 << 62) {
        return bad("chunk counts overflow".to_owned());
    }
    Ok(())
}

/// `30d`, `1h` or `90s`, as the CLI takes them.
fn age_text(age: Duration) -> String {
    match age.as_secs() {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ => format!("{}s", age.as_secs_f64()),
    }
}

/// Ids referenced by two live snapshots, so that they carry `fraction` of the references:
/// `2 s / (r - s + 2 s) = f`, so `s = f r / (2 - f)`.
fn shared_ids(referenced: u64, fraction: f64, live: usize) -> u64 {
    if live < 2 {
        return 0;
    }
    let s = (fraction * referenced as f64 / (2.0 - fraction)).round() as u64;
    s.min(referenced)
}

/// Names `snap-000001`..; which are dead and which format each gets are seeded shuffles.
fn plan_snapshots(cfg: &SynthConfig) -> Result<(Vec<SnapPlan>, Vec<SnapPlan>), SynthError> {
    let total = cfg.snapshots + cfg.dead_snapshots;
    let mut numbers: Vec<usize> = (1..=total).collect();
    shuffle(cfg.seed, 0, &mut numbers);
    let (dead, live) = numbers.split_at_mut(cfg.dead_snapshots);
    live.sort_unstable();
    dead.sort_unstable();
    Ok((plan_formats(cfg, live, 1)?, plan_formats(cfg, dead, 2)?))
}

fn plan_formats(cfg: &SynthConfig, numbers: &[usize], salt: u64) -> Result<Vec<SnapPlan>, SynthError> {
    let [legacy, unified, both] = cfg.format_mix.counts(numbers.len());
    let mut formats: Vec<SnapshotFormat> =
        [(SnapshotFormat::Legacy, legacy), (SnapshotFormat::Unified, unified), (SnapshotFormat::Both, both)]
            .into_iter()
            .flat_map(|(format, n)| std::iter::repeat_n(format, n))
            .collect();
    shuffle(cfg.seed, salt, &mut formats);
    numbers
        .iter()
        .zip(formats)
        .map(|(n, format)| {
            let name = format!("snap-{n:06}");
            let id = SnapshotId::parse(&name).map_err(|source| SynthError::SnapshotId { id: name, source })?;
            Ok(SnapPlan { id, format })
        })
        .collect()
}

/// The legacy default, then `extra` locations in a rotation of shapes: another bucket with
/// the partition deep in the prefix, a prefix that is just the partition id, and another
/// prefix of the metadata bucket. Every prefix has the partition id as a segment.
fn plan_locations(meta: &str, partition: &PartitionId, extra: usize) -> Result<Vec<Location>, SynthError> {
    let mut locations = vec![Location::legacy_default(meta, partition)?];
    for k in 1..=extra {
        let loc = match (k - 1) % 3 {
            0 => Location::new("chunks-b", &format!("tier{k}/{partition}/x"))?,
            1 if k == 2 => Location::new("chunks-c", partition.as_str())?,
            1 => Location::new("chunks-c", &format!("c{k}/{partition}"))?,
            _ => Location::new(meta, &format!("partitions/{partition}/extra{k}"))?,
        };
        loc.check_owned_by(partition)?;
        locations.push(loc);
    }
    Ok(locations)
}

// ---------------------------------------------------------------------------------------
// Counting what was written.

#[derive(Debug, Clone, Default)]
struct Tally {
    objects: u64,
    bytes: u64,
    legacy_manifests: usize,
    unified_manifests: usize,
    per_location: Vec<LocationCounts>,
}

impl Tally {
    fn for_locations(locations: &[Location]) -> Self {
        let per_location = locations
            .iter()
            .map(|location| LocationCounts {
                location: location.clone(),
                referenced: 0,
                garbage: 0,
                young: 0,
                foreign: 0,
                bytes: 0,
            })
            .collect();
        Self { per_location, ..Self::default() }
    }

    fn object(&mut self, bytes: usize) {
        self.objects += 1;
        self.bytes += bytes as u64;
    }

    fn chunk(&mut self, obj: &ChunkObject, bytes: usize) {
        self.object(bytes);
        let counts = &mut self.per_location[obj.loc];
        counts.bytes += bytes as u64;
        match obj.kind {
            Kind::Referenced => counts.referenced += 1,
            Kind::Garbage => counts.garbage += 1,
            Kind::Young => counts.young += 1,
        }
    }

    fn foreign(&mut self, loc: usize, bytes: usize) {
        self.object(bytes);
        self.per_location[loc].foreign += 1;
        self.per_location[loc].bytes += bytes as u64;
    }

    fn merge(&mut self, other: Tally) -> &mut Self {
        self.objects += other.objects;
        self.bytes += other.bytes;
        self.legacy_manifests += other.legacy_manifests;
        self.unified_manifests += other.unified_manifests;
        if self.per_location.is_empty() {
            self.per_location = other.per_location;
        } else {
            for (mine, theirs) in self.per_location.iter_mut().zip(other.per_location) {
                mine.referenced += theirs.referenced;
                mine.garbage += theirs.garbage;
                mine.young += theirs.young;
                mine.foreign += theirs.foreign;
                mine.bytes += theirs.bytes;
            }
        }
        self
    }
}

// ---------------------------------------------------------------------------------------
// Writing.

/// Creates the buckets the layout uses; on `file://` the store directory itself must exist,
/// so a mistyped URL does not scatter directories.
fn create_buckets(stores: &Stores, layout: &Layout) -> Result<(), SynthError> {
    let dir = stores.local_dir(&layout.meta_bucket);
    if let Some(root) = dir.as_deref().and_then(std::path::Path::parent)
        && !root.is_dir()
    {
        return Err(SynthError::NoStoreDir { path: root.to_owned() });
    }
    let mut buckets: Vec<&str> = layout.locations.iter().map(Location::bucket).collect();
    buckets.push(&layout.meta_bucket);
    buckets.sort_unstable();
    buckets.dedup();
    for bucket in buckets {
        stores
            .create_bucket(bucket)
            .map_err(|source| SynthError::CreateBucket { bucket: bucket.to_owned(), source })?;
    }
    Ok(())
}

/// Fails before writing anything when the store cannot age objects (gs://, s3:// without a
/// backdate root).
/// Ages the dead snapshots' manifest objects to `old_age`: deleted long enough ago.
fn age_dead_manifests(stores: &Stores, layout: &Layout, cfg: &SynthConfig) -> Result<(), SynthError> {
    if cfg.unaged {
        return Ok(());
    }
    let when = layout.now - chrono::TimeDelta::from_std(cfg.old_age).unwrap_or(chrono::TimeDelta::days(30));
    for dead in &layout.dead {
        let mut keys = Vec::new();
        if dead.format != SnapshotFormat::Unified {
            keys.push(gc_partition::manifest::legacy_manifest_key(&layout.partition, &dead.id));
            keys.push(gc_partition::manifest::legacy_index_key(&layout.partition, &dead.id));
        }
        if dead.format != SnapshotFormat::Legacy {
            keys.push(gc_partition::manifest::unified_key(&layout.partition, &dead.id));
        }
        for key in keys {
            stores.set_last_modified(&layout.meta_bucket, &key, when)?;
        }
    }
    Ok(())
}

fn check_backdating(stores: &Stores, layout: &Layout) -> Result<(), SynthError> {
    if stores.can_backdate() {
        return Ok(());
    }
    let probe = format!("partitions/{}/snapshots/.synth-probe", layout.partition);
    stores.set_last_modified(&layout.meta_bucket, &probe, layout.now)?;
    Ok(())
}

async fn put(store: &dyn ObjectStore, bucket: &str, key: &str, data: Bytes) -> Result<(), SynthError> {
    store.put(&ObjectPath::from(key), data.into()).await.map(drop).map_err(|source| SynthError::Put {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// One snapshot's manifest files: (key, bytes), and whether it has each format.
struct ManifestFiles {
    files: Vec<(String, Vec<u8>)>,
    legacy: bool,
    unified: bool,
}

fn render_snapshot(layout: &Layout, plan: &SnapPlan, refs: &[u64], overlap: bool) -> ManifestFiles {
    let created = layout.old;
    let (mut legacy_ids, mut unified_refs) = (Vec::new(), Vec::new());
    for &n in refs {
        let id = chunk_id(layout.seed, n);
        let home = layout.home(n);
        match plan.format {
            SnapshotFormat::Legacy => legacy_ids.push(id),
            SnapshotFormat::Unified => unified_refs.push((home, id)),
            SnapshotFormat::Both => {
                if home == 0 {
                    legacy_ids.push(id);
                }
                if home != 0 || overlap {
                    unified_refs.push((home, id));
                }
            }
        }
    }
    let mut files = Vec::new();
    if plan.format.has_legacy() {
        files.extend(formats::legacy_files(&layout.partition, &plan.id, &legacy_ids, created));
    }
    if plan.format.has_unified() {
        let (locations, groups) = unified_groups(&layout.locations, unified_refs);
        files.push(formats::unified_file(&layout.partition, &plan.id, created, locations, &groups));
    }
    ManifestFiles { files, legacy: plan.format.has_legacy(), unified: plan.format.has_unified() }
}

/// The locations a unified manifest names (in layout order) and its groups: (index into
/// those locations, ids), at most [`GROUP_MAX`] ids each.
fn unified_groups(all: &[Location], refs: Vec<(usize, ChunkId)>) -> (Vec<Location>, Vec<(u32, Vec<ChunkId>)>) {
    let mut by_home: Vec<Vec<ChunkId>> = vec![Vec::new(); all.len()];
    for (home, id) in refs {
        by_home[home].push(id);
    }
    let (mut locations, mut groups) = (Vec::new(), Vec::new());
    for (home, ids) in by_home.into_iter().enumerate().filter(|(_, ids)| !ids.is_empty()) {
        let index = locations.len() as u32;
        locations.push(all[home].clone());
        groups.extend(ids.chunks(GROUP_MAX).map(|part| (index, part.to_vec())));
    }
    (locations, groups)
}

async fn write_manifests(stores: &Stores, layout: &Arc<Layout>) -> Result<Tally, SynthError> {
    let store = stores.bucket(&layout.meta_bucket)?;
    let jobs = (0..layout.live.len()).map(|j| (true, j)).chain((0..layout.dead.len()).map(|d| (false, d)));
    stream::iter(jobs)
        .map(|(live, j)| {
            let (layout, store) = (Arc::clone(layout), Arc::clone(&store));
            let bucket = layout.meta_bucket.clone();
            async move {
                let files = tokio::task::spawn_blocking(move || {
                    if live {
                        render_snapshot(&layout, &layout.live[j], &layout.live_refs(j), j % 2 == 1)
                    } else {
                        render_snapshot(&layout, &layout.dead[j], &layout.dead_refs(j), j % 2 == 0)
                    }
                })
                .await
                .map_err(|e| SynthError::Worker(e.to_string()))?;
                put_manifest_files(&*store, &bucket, files).await
            }
        })
        .buffer_unordered(4)
        .try_fold(Tally::default(), |mut total, one| async move {
            total.merge(one);
            Ok(total)
        })
        .await
}

async fn put_manifest_files(store: &dyn ObjectStore, bucket: &str, files: ManifestFiles) -> Result<Tally, SynthError> {
    let mut tally = Tally {
        legacy_manifests: usize::from(files.legacy),
        unified_manifests: usize::from(files.unified),
        ..Tally::default()
    };
    for (key, data) in files.files {
        tally.object(data.len());
        put(store, bucket, &key, Bytes::from(data)).await?;
    }
    Ok(tally)
}

async fn write_chunks(stores: &Stores, layout: &Arc<Layout>, cfg: &SynthConfig) -> Result<Tally, SynthError> {
    let roots: Option<Vec<PathBuf>> = layout.locations.iter().map(|l| stores.local_dir(l.bucket())).collect();
    match roots {
        Some(roots) => {
            let (layout, threads) = (Arc::clone(layout), cfg.write_threads);
            tokio::task::spawn_blocking(move || write_chunks_local(&layout, &roots, threads))
                .await
                .map_err(|e| SynthError::Worker(e.to_string()))?
        }
        None => write_chunks_remote(stores, layout, cfg.put_concurrency.max(1), !cfg.unaged).await,
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from) * 4
}

/// `file://`: plain files written by a rayon pool, mtime set through the open handle.
fn write_chunks_local(layout: &Layout, roots: &[PathBuf], threads: usize) -> Result<Tally, SynthError> {
    create_fanout_dirs(layout, roots)?;
    let threads = if threads == 0 { default_threads() } else { threads };
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| SynthError::Worker(e.to_string()))?;
    let count = usize::try_from(layout.chunk_count())
        .map_err(|_| SynthError::Config(format!("{} chunks do not fit in memory indices", layout.chunk_count())))?;
    let empty = || Tally::for_locations(&layout.locations);
    pool.install(|| {
        (0..count)
            .into_par_iter()
            .with_min_len(512)
            .try_fold(empty, |mut tally, n| {
                let obj = layout.chunk(n as u64);
                let bytes = write_chunk_file(&roots[obj.loc], &layout.locations[obj.loc], &obj)?;
                tally.chunk(&obj, bytes);
                Ok(tally)
            })
            .try_reduce(empty, |mut a, b| {
                a.merge(b);
                Ok(a)
            })
    })
}

fn create_fanout_dirs(layout: &Layout, roots: &[PathBuf]) -> Result<(), SynthError> {
    for (root, loc) in roots.iter().zip(&layout.locations) {
        for hh in 0..=255u8 {
            let dir = root.join(loc.fanout_prefix(hh));
            std::fs::create_dir_all(&dir).map_err(io_err(dir))?;
        }
    }
    Ok(())
}

fn write_chunk_file(root: &std::path::Path, loc: &Location, obj: &ChunkObject) -> Result<usize, SynthError> {
    let path = root.join(loc.chunk_key(&obj.id));
    let (buf, len) = chunk_content(&obj.id);
    write_file(&path, &buf[..len], obj.mtime)?;
    Ok(len)
}

fn write_file(path: &std::path::Path, data: &[u8], mtime: DateTime<Utc>) -> Result<(), SynthError> {
    let fail = io_err(path);
    let mut file = match std::fs::File::create(path) {
        Ok(file) => file,
        Err(e) => return Err(fail(e)),
    };
    let when = filetime::FileTime::from_unix_time(mtime.timestamp(), mtime.timestamp_subsec_nanos());
    file.write_all(data).and_then(|()| filetime::set_file_handle_times(&file, None, Some(when))).map_err(fail)
}

/// Other stores: bounded concurrent puts, then the store's own backdating.
async fn write_chunks_remote(
    stores: &Stores,
    layout: &Layout,
    concurrency: usize,
    age: bool,
) -> Result<Tally, SynthError> {
    let buckets = layout.locations.iter().map(|l| stores.bucket(l.bucket())).collect::<Result<Vec<_>, _>>()?;
    stream::iter(0..layout.chunk_count())
        .map(|n| {
            let obj = layout.chunk(n);
            let loc = &layout.locations[obj.loc];
            let store = &buckets[obj.loc];
            async move {
                let key = loc.chunk_key(&obj.id);
                let (buf, len) = chunk_content(&obj.id);
                put(&**store, loc.bucket(), &key, Bytes::copy_from_slice(&buf[..len])).await?;
                if age {
                    stores.set_last_modified(loc.bucket(), &key, obj.mtime)?;
                }
                Ok::<_, SynthError>((obj, len))
            }
        })
        .buffer_unordered(concurrency)
        .try_fold(Tally::for_locations(&layout.locations), |mut tally, (obj, len)| async move {
            tally.chunk(&obj, len);
            Ok(tally)
        })
        .await
}

fn foreign_content(key: &str) -> Vec<u8> {
    format!("not a chunk: {key}\n").into_bytes()
}

/// Foreign objects, aged like old chunks: few, so written one by one.
async fn write_foreign(stores: &Stores, layout: &Layout, unaged: bool) -> Result<Tally, SynthError> {
    let mut tally = Tally::for_locations(&layout.locations);
    for n in 0..layout.foreign {
        let (loc, key) = layout.foreign_object(n);
        let bucket = layout.locations[loc].bucket();
        let data = foreign_content(&key);
        match stores.local_file(bucket, &key) {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                write_file(&path, &data, layout.old)?;
            }
            None => {
                put(&*stores.bucket(bucket)?, bucket, &key, Bytes::from(data.clone())).await?;
                if !unaged {
                    stores.set_last_modified(bucket, &key, layout.old)?;
                }
            }
        }
        tally.foreign(loc, data.len());
    }
    Ok(tally)
}

// ---------------------------------------------------------------------------------------
// The bridge to the format writers (gc_partition::live_set, gc_partition::manifest).

mod formats {
    use chrono::{DateTime, Utc};

    use gc_partition::ids::{ChunkId, PartitionId, SnapshotId};
    use gc_partition::locations::Location;
    use gc_partition::manifest::legacy::{manifest_for_index, render_index, render_manifest};
    use gc_partition::manifest::unified::{self, ChunkGroup, UnifiedManifest};
    use gc_partition::manifest::{legacy_index_key, legacy_manifest_key, unified_key};

    pub(super) fn live_set(ids: &[SnapshotId], taken_at: DateTime<Utc>) -> String {
        gc_partition::live_set::render(ids, taken_at)
    }

    /// The `.manifest` and `.index` files.
    pub(super) fn legacy_files(
        partition: &PartitionId,
        snapshot: &SnapshotId,
        ids: &[ChunkId],
        created: DateTime<Utc>,
    ) -> [(String, Vec<u8>); 2] {
        let index = render_index(ids);
        let manifest = manifest_for_index(snapshot, partition, &index, created.fixed_offset());
        [
            (legacy_manifest_key(partition, snapshot), render_manifest(&manifest).into_bytes()),
            (legacy_index_key(partition, snapshot), index),
        ]
    }

    /// The `.snap` file.
    pub(super) fn unified_file(
        partition: &PartitionId,
        snapshot: &SnapshotId,
        created: DateTime<Utc>,
        locations: Vec<Location>,
        groups: &[(u32, Vec<ChunkId>)],
    ) -> (String, Vec<u8>) {
        let manifest = UnifiedManifest {
            snapshot_id: snapshot.clone(),
            partition_id: partition.clone(),
            created_unix_ms: created.timestamp_millis(),
            locations,
            groups: groups.iter().map(|(loc, ids)| ChunkGroup::new(*loc, ids)).collect(),
        };
        (unified_key(partition, snapshot), unified::render(&manifest))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::TimeZone;
    use futures::TryStreamExt;

    use super::*;

    type Listing = BTreeMap<(String, String), (u64, DateTime<Utc>)>;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).single().expect("valid time")
    }

    fn cfg(seed: u64) -> SynthConfig {
        SynthConfig {
            partition: PartitionId::parse("part-7").expect("id"),
            seed,
            snapshots: 7,
            referenced_ids: 3_000,
            shared_fraction: 0.4,
            garbage_chunks: 800,
            young_chunks: 150,
            foreign_objects: 30,
            extra_locations: 4,
            dead_snapshots: 3,
            now: now(),
            record_sets: true,
            write_threads: 3,
            ..SynthConfig::default()
        }
    }

    fn buckets(summary: &SynthSummary) -> BTreeSet<String> {
        summary.locations.iter().map(|l| l.bucket().to_owned()).chain(["snapshots".to_owned()]).collect()
    }

    async fn listing(stores: &Stores, buckets: &BTreeSet<String>) -> Listing {
        let mut all = Listing::new();
        for bucket in buckets {
            let metas: Vec<_> = stores.bucket(bucket).unwrap().list(None).try_collect().await.unwrap();
            for meta in metas {
                all.insert((bucket.clone(), meta.location.to_string()), (meta.size, meta.last_modified));
            }
        }
        all
    }

    fn is_manifest(key: &str) -> bool {
        key.contains("/snapshots/")
    }

    async fn contents(stores: &Stores, list: &Listing) -> BTreeMap<(String, String), Bytes> {
        let mut all = BTreeMap::new();
        for (bucket, key) in list.keys() {
            let store = stores.bucket(bucket).unwrap();
            let data = store.get(&ObjectPath::from(key.as_str())).await.unwrap().bytes().await.unwrap();
            all.insert((bucket.clone(), key.clone()), data);
        }
        all
    }

    async fn get(stores: &Stores, key: &str) -> Option<Bytes> {
        let store = stores.bucket("snapshots").unwrap();
        match store.get(&ObjectPath::from(key)).await {
            Ok(got) => Some(got.bytes().await.unwrap()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("{key}: {e}"),
        }
    }

    /// Parses a snapshot's manifests back with the formats' parsers: the (location, id) pairs
    /// they reference.
    async fn references(
        stores: &Stores,
        summary: &SynthSummary,
        snapshot: &SnapshotId,
    ) -> BTreeSet<(Location, ChunkId)> {
        use gc_partition::manifest::{legacy, unified};
        let part = &summary.partition;
        let (mkey, ikey, ukey) = (
            gc_partition::manifest::legacy_manifest_key(part, snapshot),
            gc_partition::manifest::legacy_index_key(part, snapshot),
            gc_partition::manifest::unified_key(part, snapshot),
        );
        let mut refs = BTreeSet::new();
        let (manifest, index) = (get(stores, &mkey).await, get(stores, &ikey).await);
        assert_eq!(manifest.is_some(), index.is_some(), "{snapshot}: never half a legacy pair");
        if let (Some(manifest), Some(index)) = (manifest, index) {
            let m = legacy::parse_manifest(&manifest, &mkey, snapshot, part).unwrap();
            let default = Location::legacy_default("snapshots", part).unwrap();
            for id in legacy::check_index(&m, &index, &ikey).unwrap() {
                refs.insert((default.clone(), ChunkId(*id)));
            }
        }
        let snap = get(stores, &ukey).await;
        assert!(snap.is_some() || !refs.is_empty() || get(stores, &mkey).await.is_some(), "{snapshot} has a manifest");
        if let Some(snap) = snap {
            let m = unified::parse(snap, &ukey, snapshot, part).unwrap();
            assert!(m.locations.iter().all(|l| l.belongs_to(part)));
            for group in &m.groups {
                let loc = &m.locations[group.location as usize];
                refs.extend(group.ids().iter().map(|id| (loc.clone(), ChunkId(*id))));
            }
        }
        refs
    }

    /// The live set parses back, live snapshots reference exactly the referenced set, dead
    /// ones the dead-exclusive garbage (and maybe some referenced ids).
    async fn check_manifests(stores: &Stores, c: &SynthConfig, summary: &SynthSummary) {
        let live = gc_partition::live_set::parse(summary.live_set.as_bytes(), "live", c.now).unwrap();
        assert_eq!(live.snapshots, summary.snapshots);
        assert_eq!(live.taken_at, c.now);
        let sets = summary.sets.as_ref().unwrap();
        let mut live_refs = BTreeSet::new();
        for snapshot in &summary.snapshots {
            live_refs.extend(references(stores, summary, snapshot).await);
        }
        assert_eq!(live_refs, sets.referenced.iter().cloned().collect::<BTreeSet<_>>());
        let garbage: BTreeSet<_> = sets.garbage.iter().cloned().collect();
        let mut dead_garbage = BTreeSet::new();
        for snapshot in &summary.dead_snapshots {
            for r in references(stores, summary, snapshot).await {
                assert!(live_refs.contains(&r) || garbage.contains(&r), "{snapshot} references {r:?}");
                if garbage.contains(&r) {
                    dead_garbage.insert(r);
                }
            }
        }
        assert_eq!(dead_garbage.len() as u64, summary.dead_exclusive_ids);
    }

    #[test]
    fn blocks_partition_the_range() {
        for total in [0u64, 1, 5, 17, 100] {
            for parts in 1..8 {
                let mut next = 0;
                for j in 0..parts {
                    let r = block(j, parts, total);
                    assert_eq!(r.start, next);
                    next = r.end;
                    for k in r {
                        assert_eq!(block_of(k, parts, total), j, "k={k} parts={parts} total={total}");
                    }
                }
                assert_eq!(next, total);
            }
        }
    }

    #[test]
    fn format_counts_add_up() {
        let mix = FormatMix::from_shares(0.5, 0.3).unwrap();
        for n in 0..20 {
            assert_eq!(mix.counts(n).iter().sum::<usize>(), n);
        }
        assert_eq!(mix.counts(10), [5, 3, 2]);
        assert_eq!(FormatMix::from_shares(1.0, 0.0).unwrap().counts(3), [3, 0, 0]);
        assert!(FormatMix::from_shares(0.7, 0.7).is_err());
        assert!(FormatMix::from_shares(-0.1, 0.5).is_err());
        assert!(FormatMix::from_shares(f64::NAN, 0.5).is_err());
    }

    #[test]
    fn references_follow_the_plan() {
        for (snapshots, referenced, fraction) in
            [(7, 3_000, 0.4), (2, 11, 1.0), (1, 50, 0.5), (5, 3, 0.9), (9, 1_000, 0.0)]
        {
            let layout = Layout::plan(&SynthConfig {
                snapshots,
                referenced_ids: referenced,
                shared_fraction: fraction,
                ..cfg(3)
            })
            .unwrap();
            let mut seen = vec![0u32; referenced as usize];
            for j in 0..snapshots {
                let refs = layout.live_refs(j);
                assert_eq!(refs.iter().collect::<BTreeSet<_>>().len(), refs.len(), "no repeats in a snapshot");
                for n in refs {
                    seen[n as usize] += 1;
                    if layout.live[j].format == SnapshotFormat::Legacy {
                        assert_eq!(layout.home(n), 0, "a legacy snapshot's chunk lives in the legacy default");
                    }
                }
            }
            let shared = seen.iter().filter(|&&c| c == 2).count() as u64;
            assert_eq!(shared, layout.shared);
            assert!(seen.iter().all(|&c| c == 1 || c == 2), "every referenced id is referenced once or twice");
            let references: u32 = seen.iter().sum();
            if snapshots >= 2 && referenced >= 1_000 {
                let got = 2.0 * shared as f64 / f64::from(references);
                assert!((got - fraction).abs() < 0.01, "shared fraction {got} vs {fraction}");
            }
        }
    }

    #[test]
    fn dead_snapshots_own_their_garbage() {
        let layout = Layout::plan(&cfg(5)).unwrap();
        let mut owned = BTreeSet::new();
        for d in 0..layout.dead.len() {
            for n in layout.dead_refs(d) {
                assert!(n < layout.referenced + layout.dead_exclusive);
                if layout.dead[d].format == SnapshotFormat::Legacy {
                    assert_eq!(layout.home(n), 0);
                }
                if n >= layout.referenced {
                    assert!(owned.insert(n), "dead-exclusive ids have one owner");
                }
            }
        }
        assert_eq!(owned.len() as u64, layout.dead_exclusive);
        assert_eq!(layout.dead_exclusive, 400);
    }

    #[test]
    fn locations_belong_to_the_partition() {
        let part = PartitionId::parse("p9").unwrap();
        let locations = plan_locations("snapshots", &part, 12).unwrap();
        assert_eq!(locations.len(), 13);
        assert_eq!(locations[0], Location::legacy_default("snapshots", &part).unwrap());
        assert_eq!(locations.iter().collect::<BTreeSet<_>>().len(), 13, "distinct");
        for loc in &locations {
            assert!(loc.prefix().split('/').any(|seg| seg == "p9"), "{loc}");
            for other in &locations {
                let nested = loc != other
                    && loc.bucket() == other.bucket()
                    && other.prefix().starts_with(&format!("{}/", loc.prefix()));
                assert!(!nested, "{other} is inside {loc}");
            }
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            SynthConfig { shared_fraction: 1.5, ..cfg(1) },
            SynthConfig { snapshots: 0, ..cfg(1) },
            SynthConfig { young_age: Duration::from_secs(40 * 86_400), ..cfg(1) },
            SynthConfig { old_age: Duration::MAX, young_age: Duration::ZERO, ..cfg(1) },
        ];
        for c in bad {
            assert!(matches!(Layout::plan(&c), Err(SynthError::Config(_))), "{c:?}");
        }
    }

    /// Checks the store against the summary's sets: every object is accounted for, with the
    /// configured counts and ages.
    async fn check_store(stores: &Stores, c: &SynthConfig, summary: &SynthSummary) -> Listing {
        let sets = summary.sets.as_ref().unwrap();
        assert_eq!(sets.referenced.len() as u64, c.referenced_ids);
        assert_eq!(sets.garbage.len() as u64, c.garbage_chunks);
        assert_eq!(sets.young.len() as u64, c.young_chunks);
        assert_eq!(sets.foreign.len() as u64, c.foreign_objects);
        assert_eq!(summary.snapshots.len(), c.snapshots);
        assert_eq!(summary.dead_snapshots.len(), c.dead_snapshots);
        assert_eq!(summary.locations.len(), 1 + c.extra_locations);

        let list = listing(stores, &buckets(summary)).await;
        let old = c.now - chrono::Duration::from_std(c.old_age).unwrap();
        let young = c.now - chrono::Duration::from_std(c.young_age).unwrap();
        let mut expected = BTreeMap::new();
        for (set, kind) in
            [(&sets.referenced, Kind::Referenced), (&sets.garbage, Kind::Garbage), (&sets.young, Kind::Young)]
        {
            for (loc, id) in set {
                assert!(
                    expected.insert((loc.bucket().to_owned(), loc.chunk_key(id)), kind).is_none(),
                    "ids are distinct"
                );
            }
        }
        let foreign: BTreeSet<_> = sets.foreign.iter().cloned().collect();
        assert_eq!(foreign.len(), sets.foreign.len(), "foreign keys are distinct");
        let (mut chunks, mut manifests) = (0, 0);
        for ((bucket, key), (size, modified)) in &list {
            let key_pair = (bucket.clone(), key.clone());
            if let Some(kind) = expected.get(&key_pair) {
                chunks += 1;
                assert!((16..=64).contains(size));
                match kind {
                    Kind::Young => {
                        assert!(*modified >= young && *modified < c.now, "{key} {modified}")
                    }
                    _ => assert!(*modified <= old && *modified > old - chrono::Duration::hours(2), "{key} {modified}"),
                }
            } else if foreign.contains(&key_pair) {
                assert!(*modified <= old, "foreign objects look old");
                let loc = summary
                    .locations
                    .iter()
                    .find(|l| l.bucket() == bucket && key.starts_with(&format!("{}/", l.prefix())));
                assert!(loc.is_some_and(|l| l.chunk_of_key(key).is_none()), "{key} is foreign in a location");
            } else {
                assert!(is_manifest(key) && bucket == "snapshots", "unexpected object {bucket}/{key}");
                manifests += 1;
            }
        }
        assert_eq!(chunks, expected.len());
        assert_eq!(manifests, 2 * summary.legacy_manifests + summary.unified_manifests);
        assert_eq!(list.len() as u64, summary.objects_written);
        assert_eq!(list.values().map(|(size, _)| size).sum::<u64>(), summary.bytes_written);
        assert!(summary.legacy_manifests + summary.unified_manifests >= c.snapshots + c.dead_snapshots);
        let per_loc: u64 = summary.per_location.iter().map(|l| l.referenced + l.garbage + l.young + l.foreign).sum();
        assert_eq!(per_loc, summary.chunk_objects() + summary.foreign_objects);
        list
    }

    #[tokio::test]
    async fn memory_store_matches_the_config() {
        let c = cfg(11);
        let stores = Stores::memory();
        let summary = synthesize(&stores, &c).await.unwrap();
        check_store(&stores, &c, &summary).await;
        check_manifests(&stores, &c, &summary).await;
        assert!(summary.legacy_manifests > 0 && summary.unified_manifests > 0);
        assert!(summary.per_location.iter().all(|l| l.referenced + l.garbage + l.young > 0), "every location is used");
    }

    #[tokio::test]
    async fn same_seed_same_objects() {
        let c = cfg(42);
        let (one, two) = (Stores::memory(), Stores::memory());
        let s1 = synthesize(&one, &c).await.unwrap();
        let s2 = synthesize(&two, &c).await.unwrap();
        let (l1, l2) = (listing(&one, &buckets(&s1)).await, listing(&two, &buckets(&s2)).await);
        let strip = |l: &Listing| -> Vec<_> {
            l.iter().map(|(k, (size, m))| (k.clone(), *size, (!is_manifest(&k.1)).then_some(*m))).collect()
        };
        assert_eq!(strip(&l1), strip(&l2));
        assert_eq!(contents(&one, &l1).await, contents(&two, &l2).await);
        assert_eq!(s1.live_set, s2.live_set);
        assert_eq!(s1.sets, s2.sets);

        let other = Stores::memory();
        let s3 = synthesize(&other, &cfg(43)).await.unwrap();
        assert_ne!(s1.sets.unwrap().referenced, s3.sets.unwrap().referenced, "another seed, other ids");
    }

    #[tokio::test]
    async fn file_store_matches_memory() {
        let dir = tempfile::tempdir().unwrap();
        let live_set = dir.path().join("live.txt");
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        let files = Stores::from_url(&format!("file://{}", root.display()), Default::default()).unwrap();
        let c = SynthConfig { live_set_path: Some(live_set.clone()), ..cfg(7) };
        let summary = synthesize(&files, &c).await.unwrap();
        let on_disk = check_store(&files, &c, &summary).await;
        check_manifests(&files, &c, &summary).await;
        assert_eq!(std::fs::read_to_string(&live_set).unwrap(), summary.live_set);

        let memory = Stores::memory();
        let in_memory = synthesize(&memory, &c).await.unwrap();
        let without_manifest_times = |l: &Listing| -> Vec<_> {
            l.iter().map(|(k, (size, m))| (k.clone(), *size, (!is_manifest(&k.1)).then_some(*m))).collect()
        };
        assert_eq!(
            without_manifest_times(&on_disk),
            without_manifest_times(&listing(&memory, &buckets(&in_memory)).await)
        );
        assert_eq!(contents(&files, &on_disk).await, contents(&memory, &on_disk).await);

        // Rewriting the same partition over itself gives the same store.
        synthesize(&files, &c).await.unwrap();
        assert_eq!(
            without_manifest_times(&on_disk),
            without_manifest_times(&listing(&files, &buckets(&summary)).await)
        );
    }

    #[tokio::test]
    async fn edge_configs_work() {
        let cases = [
            SynthConfig { snapshots: 0, referenced_ids: 0, dead_snapshots: 0, extra_locations: 0, ..cfg(1) },
            SynthConfig {
                snapshots: 1,
                dead_snapshots: 0,
                format_mix: FormatMix::from_shares(1.0, 0.0).unwrap(),
                ..cfg(2)
            },
            SynthConfig {
                snapshots: 3,
                referenced_ids: 2,
                garbage_chunks: 1,
                young_chunks: 0,
                foreign_objects: 0,
                ..cfg(3)
            },
            SynthConfig { format_mix: FormatMix::from_shares(0.0, 0.0).unwrap(), shared_fraction: 1.0, ..cfg(4) },
        ];
        for c in cases {
            let stores = Stores::memory();
            let summary = synthesize(&stores, &c).await.unwrap();
            check_store(&stores, &c, &summary).await;
            check_manifests(&stores, &c, &summary).await;
        }
    }
}
