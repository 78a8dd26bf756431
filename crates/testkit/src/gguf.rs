//! Byte patches of a GGUF file, for tests that need a model that loads but is broken: a
//! minimal reader of the header (enough to find one tensor's bytes or one metadata value) and
//! the corrupted copies of the default model that the tools' bad-input tests run.

use std::path::{Path, PathBuf};

/// Reads `n` little-endian bytes at `*at` and moves past them.
fn rd(b: &[u8], at: &mut usize, n: usize) -> u64 {
    let v = b[*at..*at + n]
        .iter()
        .rev()
        .fold(0u64, |a, &x| (a << 8) | x as u64);
    *at += n;
    v
}

/// Moves past one GGUF metadata value of type `ty`.
fn skip_value(b: &[u8], at: &mut usize, ty: u64) {
    match ty {
        0 | 1 | 7 => *at += 1,
        2 | 3 => *at += 2,
        4..=6 => *at += 4,
        10..=12 => *at += 8,
        8 => {
            let n = rd(b, at, 8) as usize;
            *at += n;
        }
        9 => {
            let (t, n) = (rd(b, at, 4), rd(b, at, 8));
            for _ in 0..n {
                skip_value(b, at, t);
            }
        }
        _ => panic!("bad GGUF value type {ty}"),
    }
}

/// The byte range of F32 tensor `name`'s data in a GGUF file (a minimal reader of the
/// header, enough to corrupt one tensor on purpose).
pub fn gguf_f32_tensor(b: &[u8], name: &str) -> std::ops::Range<usize> {
    let mut at = 8usize;
    let (n_tensors, n_kv) = (rd(b, &mut at, 8), rd(b, &mut at, 8));
    let mut alignment = 32;
    for _ in 0..n_kv {
        let n = rd(b, &mut at, 8) as usize;
        let key = b[at..at + n].to_vec();
        at += n;
        let ty = rd(b, &mut at, 4);
        let mut v = at;
        skip_value(b, &mut at, ty);
        if key == b"general.alignment" {
            let len = at - v;
            alignment = rd(b, &mut v, len);
        }
    }
    let mut found = None;
    for _ in 0..n_tensors {
        let n = rd(b, &mut at, 8) as usize;
        let tname = b[at..at + n].to_vec();
        at += n;
        let dims = rd(b, &mut at, 4);
        let elems: u64 = (0..dims).map(|_| rd(b, &mut at, 8)).product();
        let (ty, offset) = (rd(b, &mut at, 4), rd(b, &mut at, 8));
        if tname == name.as_bytes() {
            assert_eq!(ty, 0, "{name} is not F32");
            found = Some((offset, elems));
        }
    }
    let data = (at as u64).div_ceil(alignment) * alignment;
    let (offset, elems) = found.unwrap_or_else(|| panic!("no tensor {name}"));
    let start = (data + offset) as usize;
    start..start + 4 * elems as usize
}

/// A copy of the default model whose block-3 norms are 3e38: finite weights, so the load
/// passes, but the activations overflow to infinity and NaN from layer 4 on.
pub fn overflowing_model(m: &Path, dir: &Path) -> PathBuf {
    let mut b = std::fs::read(m).unwrap();
    for t in ["blk.3.attn_norm.weight", "blk.3.ffn_norm.weight"] {
        let r = gguf_f32_tensor(&b, t);
        for c in b[r].chunks_mut(4) {
            c.copy_from_slice(&3e38f32.to_le_bytes());
        }
    }
    let p = dir.join("overflow.gguf");
    std::fs::write(&p, &b).unwrap();
    p
}

/// A copy of the default model whose `rope.freq_base` is NaN.
pub fn nan_rope_model(m: &Path, dir: &Path) -> PathBuf {
    let mut b = std::fs::read(m).unwrap();
    let key = b"llama.rope.freq_base";
    let mut pat = (key.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(key);
    let at = b.windows(pat.len()).position(|w| w == pat).unwrap() + pat.len() + 4;
    b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = dir.join("nan-rope.gguf");
    std::fs::write(&p, &b).unwrap();
    p
}
