//! Deterministic, uniform-looking numbers for tests and benches, from the project's one
//! mixer, [`gc_partition::ids::splitmix64`].

use gc_partition::ids::splitmix64;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The `n`-th output of the splitmix64 generator seeded with `seed`.
pub fn word(seed: u64, n: u64) -> u64 {
    splitmix64(seed.wrapping_add(n.wrapping_mul(GOLDEN)))
}

/// A number in [0, 1) from (seed, n).
pub fn unit(seed: u64, n: u64) -> f64 {
    (word(seed, n) >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` distinct-looking 32-byte ids (SHA-256 digests are uniform; so is splitmix64).
pub fn ids(n: usize, salt: u64) -> Vec<[u8; 32]> {
    let seed = salt.wrapping_mul(GOLDEN);
    (0..n as u64)
        .map(|i| {
            let mut id = [0u8; 32];
            for (k, word_bytes) in id.chunks_exact_mut(8).enumerate() {
                word_bytes.copy_from_slice(&word(seed, i * 4 + k as u64).to_le_bytes());
            }
            id
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator the tests and the pipeline bench used to copy: the same numbers.
    #[test]
    fn word_is_the_splitmix64_sequence() {
        let mut state: u64 = 42;
        let mut next = || {
            state = state.wrapping_add(GOLDEN);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for n in 0..100 {
            assert_eq!(word(42, n), next());
        }
        assert!((0..1000).all(|n| (0.0..1.0).contains(&unit(7, n))));
        let ids = ids(100, 3);
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 100);
    }
}
