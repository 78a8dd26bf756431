//! Mutation testing of file readers: a counting allocator (the largest single allocation a
//! thread makes while armed), seeded byte mutations, and [`fuzz`], which runs a reader on
//! thousands of them and fails on a panic or an allocation far beyond the input.
//!
//! The allocator only counts once a test binary installs it:
//!
//! ```ignore
//! #[global_allocator]
//! static A: hd_testkit::fuzz::Counting = hd_testkit::fuzz::Counting;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

// ---------------------------------------------------------------------------------------
// The largest single allocation made by this thread while armed.

/// A global allocator that notes the largest single allocation of the armed thread.
pub struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        unsafe { System.realloc(p, l, new) }
    }
}

fn note(size: usize) {
    let _ = ARMED.try_with(|a| {
        if a.get() {
            let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
        }
    });
}

/// candle's errors capture a backtrace when RUST_BACKTRACE is set, and resolving it
/// allocates megabytes whatever the input; the bound is about the input. Called first in
/// every test, before any error could decide the process-wide setting.
pub fn no_error_backtraces() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("RUST_LIB_BACKTRACE", "0"));
}

/// Runs `f`, catching panics; returns the largest allocation it made on this thread.
pub fn measured<T>(
    f: impl FnOnce() -> T + std::panic::UnwindSafe,
) -> (std::thread::Result<T>, usize) {
    LARGEST.with(|m| m.set(0));
    ARMED.with(|a| a.set(true));
    let r = std::panic::catch_unwind(f);
    ARMED.with(|a| a.set(false));
    (r, LARGEST.with(Cell::get))
}

/// A seeded xorshift: the mutations are the same on every run, so a failure reproduces.
pub struct Xorshift(pub u64);

impl Xorshift {
    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A value in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// One mutation of `b`: byte flips, an "interesting" integer written over 1-8 bytes, a
/// truncation, a removed or duplicated span. `hot` is where the structure lives (headers);
/// most mutations land there.
pub fn mutate(rng: &mut Xorshift, b: &[u8], hot: usize) -> Vec<u8> {
    let mut v = b.to_vec();
    let pos = |rng: &mut Xorshift, len: usize| {
        if rng.below(4) > 0 {
            rng.below(hot.min(len))
        } else {
            rng.below(len)
        }
    };
    for _ in 0..1 + rng.below(3) {
        if v.is_empty() {
            break;
        }
        match rng.below(6) {
            0 | 1 => {
                let i = pos(rng, v.len());
                v[i] ^= 1 << rng.below(8);
            }
            2 => {
                const INTERESTING: [u64; 9] = [
                    0,
                    1,
                    0x7f,
                    0xff,
                    0xffff,
                    0x7fff_ffff,
                    0xffff_ffff,
                    1 << 40,
                    u64::MAX,
                ];
                let x = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let i = pos(rng, v.len());
                let n = [1, 2, 4, 8][rng.below(4)].min(v.len() - i);
                v[i..i + n].copy_from_slice(&x[..n]);
            }
            3 => {
                let i = pos(rng, v.len());
                v.truncate(i);
            }
            4 => {
                let i = pos(rng, v.len());
                let n = rng.below(16).min(v.len() - i);
                v.drain(i..i + n);
            }
            _ => {
                let i = pos(rng, v.len());
                let n = rng.below(16).min(v.len() - i);
                let span = v[i..i + n].to_vec();
                v.splice(i..i, span);
            }
        }
    }
    v
}

/// Runs `check` on `iters` mutations of `valid`; every outcome must be Ok or Err (no panic)
/// and no single allocation may pass `factor` times the input size plus `slack` bytes.
pub fn fuzz(
    what: &str,
    valid: &[u8],
    hot: usize,
    iters: usize,
    factor: usize,
    slack: usize,
    check: impl Fn(&[u8]) -> bool + std::panic::RefUnwindSafe,
) {
    // Fixed costs that do not grow with the input (a tokenizer's cache, thread pools) are
    // measured on the valid file and allowed on top.
    let (r, base) = measured(|| check(valid));
    assert!(matches!(r, Ok(true)), "{what}: the valid input is rejected");
    let slack = slack + base;
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15 ^ valid.len() as u64);
    let (mut oks, mut errs) = (0, 0);
    for i in 0..iters {
        let m = mutate(&mut rng, valid, hot);
        let (r, largest) = measured(|| check(&m));
        match r {
            Ok(true) => oks += 1,
            Ok(false) => errs += 1,
            Err(_) => panic!("{what}: mutation {i} panicked (seeded; rerun reproduces it)"),
        }
        let bound = factor * m.len() + slack;
        assert!(
            largest <= bound,
            "{what}: mutation {i} allocated {largest} bytes at once for a {}-byte input (bound {bound})",
            m.len()
        );
    }
    eprintln!("{what}: {iters} mutations: {oks} accepted, {errs} errors, no panic");
    assert!(
        errs > 0,
        "{what}: the mutations never produced an error; are they effective?"
    );
}
