//! The filter of referenced chunk ids, filled from several threads at once: 256 shards by
//! first id byte in one huge-page-backed array (or one seeded `fastbloom::AtomicBloomFilter`).
//!
//! Chunk ids are SHA-256 digests, so they are already uniform: each id is hashed once, by
//! mixing its first 16 bytes with the run's seed, instead of running SipHash over 32 bytes.
//! The seed changes every run (unless `--bloom-seed` pins it), so the ids that a false
//! positive keeps in one run are different in the next.

use std::sync::atomic::{AtomicU64, Ordering};

use fastbloom::AtomicBloomFilter;
use rayon::prelude::*;

use crate::ids::splitmix64 as mix;

/// Below this many ids an insert stays on the calling thread.
const PARALLEL_INSERT_MIN: usize = 1 << 16;
/// One shard per `<hh>` fan-out directory.
pub const SHARDS: usize = 256;

/// The fewest expected ids for which [`RefFilter::new`] shards the filter: about 4,000 per
/// shard, where the uneven spread of ids over shards no longer raises the false-positive
/// rate (measured: 0.000994 at 2^20 ids and a target of 0.001; 0.00108 at 100k; 0.0138 at 1k).
pub(crate) const SHARDED_MIN_IDS: u64 = 1 << 20;

/// Benches only: `GC_PARTITION_FILTER_SHARDS=1` makes a run use one unsharded filter
/// whatever its size ([`RefFilter::for_run`]).
pub(crate) const SHARDS_ENV: &str = "GC_PARTITION_FILTER_SHARDS";

/// The filter of the referenced ids. From [`SHARDED_MIN_IDS`] ids, [`RefFilter::new`] gives
/// the sharded layout: the bits of an id confined to one of 256 equal ranges of one
/// huge-page-backed array, chosen by the id's first byte, so the probes of one `<hh>`
/// directory's listing stay in one range (6.7 MiB at 1B ids). End to end it was the faster
/// layout: 1B chunks in 322 s against 350 s for one `AtomicBloomFilter`, 100M in 30.1 s
/// against 32.0 s (BENCHMARKS.md, "Filter at scale"), with the same false-positive rate.
/// Below that size the ids are too few for the shards to fill evenly (at 1,000 ids the
/// fullest shards pushed the rate to 14x the target), and one filter is kept: it fits the
/// caches anyway.
pub struct RefFilter {
    layout: Layout,
    seed: u64,
    inserted: AtomicU64,
    fpr: f64,
}

enum Layout {
    Single(AtomicBloomFilter),
    Sharded(ShardedBits),
}

/// [`SHARDS`] Bloom filters of `shard_words` words each, side by side in one array.
struct ShardedBits {
    words: Box<[AtomicU64]>,
    shard_words: usize,
    hashes: u32,
}

impl ShardedBits {
    fn new(expected_ids: usize, fpr: f64) -> Self {
        let per_shard = expected_ids.div_ceil(SHARDS).max(1);
        let bits = fastbloom::optimal_size(per_shard, fpr);
        let shard_words = bits.div_ceil(64);
        let hashes = fastbloom::optimal_hashes(shard_words * 64, per_shard);
        let words = std::iter::repeat_with(|| AtomicU64::new(0)).take(shard_words * SHARDS).collect();
        Self { words, shard_words, hashes }
    }

    /// The words of shard `id[0]`, and the bit positions of `hash` in it (double hashing).
    fn positions(&self, first_byte: u8, hash: u64) -> (&[AtomicU64], impl Iterator<Item = usize>) {
        let start = usize::from(first_byte) * self.shard_words;
        let words = &self.words[start..start + self.shard_words];
        let bits = (self.shard_words * 64) as u128;
        let step = mix(hash) | 1;
        let positions = (0..u64::from(self.hashes))
            .map(move |i| ((u128::from(hash.wrapping_add(i.wrapping_mul(step))) * bits) >> 64) as usize);
        (words, positions)
    }

    fn insert(&self, first_byte: u8, hash: u64) {
        let (words, positions) = self.positions(first_byte, hash);
        for bit in positions {
            words[bit / 64].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
    }

    fn contains(&self, first_byte: u8, hash: u64) -> bool {
        let (words, mut positions) = self.positions(first_byte, hash);
        positions.all(|bit| words[bit / 64].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0)
    }
}

impl RefFilter {
    /// A filter sized for `expected_ids` at false-positive rate `fpr`: [`SHARDS`] shards
    /// from [`SHARDED_MIN_IDS`] ids, one filter below.
    pub fn new(expected_ids: u64, fpr: f64, seed: u64) -> Self {
        let shards = if expected_ids >= SHARDED_MIN_IDS { SHARDS } else { 1 };
        Self::with_shards(expected_ids, fpr, seed, shards)
    }

    /// The filter of a run: [`RefFilter::new`], or one filter when [`SHARDS_ENV`] is `1`
    /// (benches, to time both layouts end to end).
    pub(crate) fn for_run(expected_ids: u64, fpr: f64, seed: u64) -> Self {
        match std::env::var(SHARDS_ENV) {
            Ok(value) if value.trim() == "1" => {
                tracing::warn!("{SHARDS_ENV}=1: one unsharded filter (for benches)");
                Self::with_shards(expected_ids, fpr, seed, 1)
            }
            _ => Self::new(expected_ids, fpr, seed),
        }
    }

    /// A filter of `shards` parts: 1, or (any other number) [`SHARDS`] ranges by first id byte.
    pub fn with_shards(expected_ids: u64, fpr: f64, seed: u64, shards: usize) -> Self {
        let expected = usize::try_from(expected_ids).unwrap_or(usize::MAX).max(1);
        let layout = if shards > 1 {
            let bits = ShardedBits::new(expected, fpr);
            back_with_huge_pages(&bits.words);
            Layout::Sharded(bits)
        } else {
            let filter = AtomicBloomFilter::with_false_pos(fpr).seed(&u128::from(seed)).expected_items(expected);
            back_with_huge_pages(filter.as_slice());
            Layout::Single(filter)
        };
        Self { layout, seed, inserted: AtomicU64::new(0), fpr }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many parts the filter has (1 or [`SHARDS`]).
    pub fn shards(&self) -> usize {
        match self.layout {
            Layout::Single(_) => 1,
            Layout::Sharded(_) => SHARDS,
        }
    }

    /// Inserts every id; large slices are split across the rayon pool.
    pub fn insert_all(&self, ids: &[[u8; 32]]) {
        if ids.len() >= PARALLEL_INSERT_MIN {
            ids.par_chunks(PARALLEL_INSERT_MIN / 4).for_each(|part| self.insert_serial(part));
        } else {
            self.insert_serial(ids);
        }
        self.inserted.fetch_add(ids.len() as u64, Ordering::Relaxed);
    }

    fn insert_serial(&self, ids: &[[u8; 32]]) {
        match &self.layout {
            Layout::Single(filter) => ids.iter().for_each(|id| {
                filter.insert_hash(id_hash(self.seed, id));
            }),
            Layout::Sharded(bits) => ids.iter().for_each(|id| bits.insert(id[0], id_hash(self.seed, id))),
        }
    }

    pub fn contains(&self, id: &[u8; 32]) -> bool {
        let hash = id_hash(self.seed, id);
        match &self.layout {
            Layout::Single(filter) => filter.contains_hash(hash),
            Layout::Sharded(bits) => bits.contains(id[0], hash),
        }
    }

    /// Ids inserted so far, duplicates included.
    pub(crate) fn inserted(&self) -> u64 {
        self.inserted.load(Ordering::Relaxed)
    }

    pub fn num_bits(&self) -> usize {
        match &self.layout {
            Layout::Single(filter) => filter.num_bits(),
            Layout::Sharded(bits) => bits.words.len() * 64,
        }
    }

    fn num_hashes(&self) -> u32 {
        match &self.layout {
            Layout::Single(filter) => filter.num_hashes(),
            Layout::Sharded(bits) => bits.hashes,
        }
    }

    /// The false-positive rate expected from the fill: the textbook estimate for the bits,
    /// hashes and ids inserted, never below the rate asked for (the filter is blocked, which
    /// costs a little accuracy).
    pub fn expected_fpr(&self) -> f64 {
        let k = f64::from(self.num_hashes());
        let m = self.num_bits() as f64;
        let n = self.inserted() as f64;
        let textbook = (1.0 - (-k * n / m).exp()).powf(k);
        textbook.max(self.fpr).min(1.0)
    }

    /// Unreferenced old chunks this filter kept by mistake, expected: with rate p, the
    /// `planned` ones are the (1 - p) share of the truly unreferenced.
    pub(crate) fn expected_false_positives(&self, planned: u64) -> f64 {
        let p = self.expected_fpr();
        planned as f64 * p / (1.0 - p)
    }
}

/// Asks the kernel to back the filter's bits with 2 MiB pages. Each id sets bits in about
/// ten random places of the filter: past a few MiB every insert misses the TLB ten times, and
/// in a virtual machine each miss walks two page tables. Huge pages make the TLB cover the
/// filter. Only a hint: where the kernel declines, the filter works the same on small pages.
fn back_with_huge_pages<T>(bits: &[T]) {
    const HUGE_PAGE: usize = 2 << 20;
    let start = bits.as_ptr() as usize;
    let end = start + std::mem::size_of_val(bits);
    let (first, last) = (start.next_multiple_of(HUGE_PAGE), end / HUGE_PAGE * HUGE_PAGE);
    if last <= first {
        return;
    }
    let (addr, len) = (first as *mut libc::c_void, last - first);
    // SAFETY: the range lies inside the filter's live allocation, and neither advice changes
    // its contents: MADV_HUGEPAGE only marks it, MADV_COLLAPSE copies it into huge pages.
    unsafe {
        libc::madvise(addr, len, libc::MADV_HUGEPAGE);
        libc::madvise(addr, len, libc::MADV_COLLAPSE);
    }
}

/// The filter hash of one id: two 64-bit words of the digest, mixed with the seed.
pub(crate) fn id_hash(seed: u64, id: &[u8; 32]) -> u64 {
    let (words, _) = id.as_chunks::<8>();
    let w0 = u64::from_le_bytes(words[0]);
    let w1 = u64::from_le_bytes(words[1]);
    mix(w0 ^ mix(w1 ^ seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize, salt: u64) -> Vec<[u8; 32]> {
        (0..n as u64)
            .map(|i| {
                let mut id = [0u8; 32];
                for (j, word) in id.chunks_exact_mut(8).enumerate() {
                    word.copy_from_slice(&mix(i ^ mix(salt + j as u64)).to_le_bytes());
                }
                id
            })
            .collect()
    }

    #[test]
    fn no_false_negatives_serial_and_parallel_in_both_layouts() {
        for shards in [1, SHARDS] {
            for n in [10, 300, PARALLEL_INSERT_MIN * 3, PARALLEL_INSERT_MIN * 2 + 17] {
                let inserted = ids(n, 1);
                let filter = RefFilter::with_shards(n as u64, 0.001, 7, shards);
                assert_eq!(filter.shards(), shards);
                filter.insert_all(&inserted);
                assert!(inserted.iter().all(|id| filter.contains(id)), "{shards} shards, {n} ids");
                assert_eq!(filter.inserted(), n as u64);
            }
        }
    }

    #[test]
    fn both_layouts_have_the_same_size() {
        let ids = 1 << 22;
        assert_eq!(RefFilter::new(ids, 0.001, 1).shards(), SHARDS);
        assert_eq!(RefFilter::new(SHARDED_MIN_IDS - 1, 0.001, 1).shards(), 1);
        let sharded = RefFilter::with_shards(ids, 0.001, 1, SHARDS);
        assert_eq!(sharded.shards(), SHARDS);
        let single = RefFilter::with_shards(ids, 0.001, 1, 1);
        let (a, b) = (sharded.num_bits() as f64, single.num_bits() as f64);
        assert!((a / b - 1.0).abs() < 1e-3, "sharding changed the size: {a} vs {b} bits");
    }

    #[test]
    fn false_positive_rate_is_near_the_target_in_both_layouts() {
        let n = 200_000;
        for shards in [1, SHARDS] {
            let filter = RefFilter::with_shards(n as u64, 0.01, 3, shards);
            filter.insert_all(&ids(n, 1));
            let probes = ids(200_000, 99);
            let fp = probes.iter().filter(|id| filter.contains(id)).count() as f64 / probes.len() as f64;
            assert!(fp < 0.02, "{shards} shards: false-positive rate {fp} far above 0.01");
            assert!(filter.expected_fpr() >= 0.01);
        }
    }

    /// The layout `new` picks keeps the rate asked for at every size, small partitions
    /// included (a sharded filter of a few thousand ids would not).
    #[test]
    fn the_default_layout_keeps_the_false_positive_rate_at_every_size() {
        let probes = ids(400_000, 99);
        for n in [100, 1_000, 10_000, 100_000, SHARDED_MIN_IDS as usize] {
            let filter = RefFilter::new(n as u64, 0.001, 3);
            filter.insert_all(&ids(n, 1));
            let fp = probes.iter().filter(|id| filter.contains(id)).count() as f64 / probes.len() as f64;
            assert!(fp < 0.0015, "{n} ids, {} shards: false-positive rate {fp} above 0.001", filter.shards());
        }
    }

    #[test]
    fn another_seed_gives_other_false_positives() {
        let n = 50_000;
        let members = ids(n, 1);
        let probes = ids(100_000, 2);
        let positives = |seed| {
            let filter = RefFilter::new(n as u64, 0.01, seed);
            filter.insert_all(&members);
            probes.iter().filter(|id| filter.contains(id)).copied().collect::<Vec<_>>()
        };
        let (a, b) = (positives(1), positives(2));
        let common = a.iter().filter(|id| b.contains(id)).count();
        assert!(!a.is_empty() && !b.is_empty());
        assert!(common * 10 < a.len(), "{common} of {} false positives repeat under another seed", a.len());
    }

    proptest! {
        #[test]
        fn every_inserted_id_is_contained(raw in proptest::collection::vec(any::<[u8; 32]>(), 0..200), seed: u64) {
            let filter = RefFilter::new(raw.len() as u64, 0.001, seed);
            filter.insert_all(&raw);
            prop_assert!(raw.iter().all(|id| filter.contains(id)));
        }
    }
}
