//! A small, self-contained seeded RNG (SplitMix64).
//!
//! We do not use `rand::rngs::StdRng`: its algorithm is documented as not stable across `rand`
//! releases, and the prompt splits must stay byte-identical for a given `--seed` forever (they
//! are inputs to every later stage). SplitMix64 is ten lines, passes BigCrush as a stream, and
//! its output is fixed by its definition (Steele, Lea & Flood 2014).
//!
//! Each independent choice (which harmful behaviours, which benign prompts, which template for
//! which split and category) draws from its own named stream, so changing one size flag does
//! not reshuffle unrelated parts of the output.

/// SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator for the stream `name` under `seed`.
    pub fn stream(seed: u64, name: &str) -> Self {
        // FNV-1a of the stream name, mixed into the seed, then warmed up once so that nearby
        // seeds do not give correlated first outputs.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut rng = SplitMix64 {
            state: seed ^ h.rotate_left(17),
        };
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0), by the multiply-high method. The bias is below n / 2^64,
    /// far below anything that matters for choosing prompts.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// `0..n` in a random order.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference_values() {
        // Reference outputs of SplitMix64 seeded with state 0 (from the published C code):
        // the first value is 0xe220a8397b1dcdaf.
        let mut r = SplitMix64 { state: 0 };
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
        let mut p = r.permutation(100);
        assert_ne!(p, (0..100).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::stream(1, "b");
        for n in 1..50 {
            for _ in 0..20 {
                assert!(r.below(n) < n);
            }
        }
    }
}
