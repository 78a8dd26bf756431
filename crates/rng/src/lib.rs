//! SplitMix64: a tiny seeded generator whose outputs are fixed by its definition (Steele,
//! Lea & Flood 2014), so shuffles, prompt splits and initial weights stay the same across
//! releases of any crate — which `rand`'s `StdRng` does not promise. One home for the
//! training, analysis and test code and for prompt-set, each drawing from its own named or
//! derived stream so that changing one choice does not reshuffle unrelated ones.
//!
//! Two ways to draw an index: [`SplitMix64::below`] (rejection, no modulo bias; training,
//! analysis) and [`SplitMix64::below_mul_high`] (multiply-high, bias below n / 2^64;
//! prompt-set's splits are defined by it, so it stays as it is).

/// SplitMix64 (Steele, Lea & Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator for a sub-stream named by `parts` (e.g. seed, epoch), so streams do not
    /// overlap in practice.
    pub fn derive(parts: &[u64]) -> Self {
        let mut r = SplitMix64(0x05EE_D0F4_D1D5_u64);
        for &p in parts {
            r.0 ^= p;
            r.next_u64();
        }
        r
    }

    /// A generator for the stream `name` under `seed` (prompt-set's streams): FNV-1a of the
    /// name mixed into the seed, then warmed up once so that nearby seeds do not give
    /// correlated first outputs.
    pub fn stream(seed: u64, name: &str) -> Self {
        let mut r = SplitMix64(seed ^ hash_str(name).rotate_left(17));
        r.next_u64();
        r
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..n` (n > 0), by rejection (no modulo bias).
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// A value in `0..n` (n > 0) by the multiply-high method (prompt-set's draws). The bias
    /// is below n / 2^64, far below anything that matters for choosing prompts.
    pub fn below_mul_high(&mut self, n: usize) -> usize {
        assert!(n > 0, "below_mul_high(0)");
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// `0..n` in a random order, by a Fisher–Yates shuffle drawing with
    /// [`SplitMix64::below_mul_high`] (prompt-set's permutations).
    pub fn permutation_mul_high(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below_mul_high(i + 1);
            p.swap(i, j);
        }
        p
    }
}

/// FNV-1a of a string, to turn ids into seeds.
pub fn hash_str(s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Reference values of SplitMix64 seeded with 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..100).collect();
        SplitMix64::new(7).shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }

    #[test]
    fn splitmix64_matches_reference_values() {
        // Reference outputs of SplitMix64 seeded with state 0 (from the published C code):
        // the first value is 0xe220a8397b1dcdaf.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn streams_differ_by_name_and_seed() {
        let a = SplitMix64::stream(42, "harmful").next_u64();
        let b = SplitMix64::stream(42, "benign").next_u64();
        let c = SplitMix64::stream(43, "harmful").next_u64();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut r = SplitMix64::stream(7, "p");
        let mut p = r.permutation_mul_high(100);
        assert_ne!(p, (0..100).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::stream(1, "b");
        for n in 1..50 {
            for _ in 0..20 {
                assert!(r.below_mul_high(n) < n);
            }
        }
    }
}
