//! Issue 12 item 10: no reader of hd-formats (prompt CSV, .npy, .npz, safetensors) panics
//! or allocates far beyond its input on thousands of seeded mutations of valid files.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use hd_formats::prompts::PromptTable;
use hd_formats::tensors::{Tensor, TensorFile};

// ---------------------------------------------------------------------------------------
// The largest single allocation made by this thread while armed.

struct Counting;

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

#[global_allocator]
static A: Counting = Counting;

/// candle's errors capture a backtrace when RUST_BACKTRACE is set, and resolving it
/// allocates megabytes whatever the input; the bound is about the input. Called first in
/// every test, before any error could decide the process-wide setting.
fn no_error_backtraces() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("RUST_LIB_BACKTRACE", "0"));
}

/// Runs `f`, catching panics; returns the largest allocation it made on this thread.
fn measured<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> (std::thread::Result<T>, usize) {
    LARGEST.with(|m| m.set(0));
    ARMED.with(|a| a.set(true));
    let r = std::panic::catch_unwind(f);
    ARMED.with(|a| a.set(false));
    (r, LARGEST.with(Cell::get))
}

/// A seeded xorshift: the mutations are the same on every run, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `b`: byte flips, an "interesting" integer written over 1-8 bytes, a
/// truncation, a removed or duplicated span. `hot` is where the structure lives (headers);
/// most mutations land there.
fn mutate(rng: &mut Rng, b: &[u8], hot: usize) -> Vec<u8> {
    let mut v = b.to_vec();
    let pos = |rng: &mut Rng, len: usize| {
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
fn fuzz(
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
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ valid.len() as u64);
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

fn tensor_file_bytes(ext: &str) -> Vec<u8> {
    let mut md = BTreeMap::new();
    md.insert("prompt_ids_hash".to_string(), "sha256:00".to_string());
    let mut f = TensorFile::new(md);
    let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    f.insert("resid.3", Tensor::f32(vec![4, 6], data).unwrap());
    if ext != "npy" {
        f.insert("offsets", Tensor::i64(vec![3], vec![0, 2, 4]).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("t.{ext}"));
    f.write(&p).unwrap();
    std::fs::read(&p).unwrap()
}

fn fuzz_tensor_file(ext: &str, hot: usize) {
    no_error_backtraces();
    let good = tensor_file_bytes(ext);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("m.{ext}"));
    let hot = hot.min(good.len());
    fuzz(ext, &good, hot, 3000, 16, 64 << 10, |b| {
        std::fs::write(&p, b).unwrap();
        TensorFile::read(&p).is_ok()
    });
}

#[test]
fn issue12_npy_reader_never_panics_on_mutations() {
    fuzz_tensor_file("npy", 128);
}

#[test]
fn issue12_npz_reader_never_panics_on_mutations() {
    fuzz_tensor_file("npz", usize::MAX);
}

#[test]
fn issue12_safetensors_reader_never_panics_on_mutations() {
    fuzz_tensor_file("safetensors", 256);
}

#[test]
fn issue12_csv_reader_never_panics_on_mutations() {
    no_error_backtraces();
    let good = "id,prompt,label\na,\"say \"\"hi\"\"\",harmless\nb,\"two\nlines\",harmful\nc,plain,\n\u{feff}d,x,y\n";
    fuzz(
        "csv",
        good.as_bytes(),
        good.len(),
        3000,
        16,
        64 << 10,
        |b| PromptTable::from_bytes("m.csv", b).is_ok(),
    );
}
