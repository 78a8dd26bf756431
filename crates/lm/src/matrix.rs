//! Weight matrices as their file stores them: f32, f16, bf16 or GGUF quantised blocks, usually
//! in a memory-mapped file, multiplied without ever expanding the whole matrix to f32.
//!
//! Two ways to multiply ([`Compute`]):
//! - `Exact`: tiles of the stored weight are dequantised to f32 (exactly the values a full
//!   dequantisation gives) and multiplied in f32, with the same kernels as an f32 matrix; each
//!   output is the same sum in the same order, so results equal the f32 path's.
//! - `Fast`: llama.cpp's approach: activations are quantised to 8-bit blocks and multiplied
//!   with the weight blocks by integer dot products — our own kernels for Q4_0, Q4_1, Q8_0,
//!   Q4_K, Q5_K and Q6_K (`qdot`: AVX-512 VNNI, AVX2 or portable, chosen at run time), candle's
//!   port of llama.cpp's for the other quantised types. Where a product is faster dequantised
//!   (see [`runs_int8`]: prefill-sized products without VNNI, or of Q5_0, Q5_1, Q2_K, Q3_K) it
//!   runs `Exact`.
//!   Float matrices (f32, f16, bf16) have no integer form and always run `Exact`.
//!
//! A matrix is a stack of row parts (fused q|k|v, gate|up): each part runs its own product into
//! its columns of the output, so fusing never copies a stored weight.

use crate::kernels;
use crate::qdot;
use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8_0, GgmlType,
};
use candle_core::quantized::GgmlDType;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

/// How products with stored weights are computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Compute {
    /// Dequantised f32 tiles: the f32 path's results.
    #[default]
    Exact,
    /// Int8-quantised activations against the weight blocks (llama.cpp's approach) where
    /// that is faster ([`runs_int8`]); the other products, and float weights, run `Exact`.
    Fast,
}

impl Compute {
    /// The name used in flags and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Compute::Exact => "exact",
            Compute::Fast => "fast",
        }
    }

    /// Parses [`Compute::name`].
    pub fn parse(s: &str) -> Option<Compute> {
        match s {
            "exact" => Some(Compute::Exact),
            "fast" => Some(Compute::Fast),
            _ => None,
        }
    }
}

/// Storage types a [`Matrix`] holds as stored.
pub const STORED_TYPES: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, \
                                Q5_K, Q6_K";

/// Bytes that outlive the loader: a memory map, or an owned, 8-byte-aligned buffer.
#[derive(Clone)]
pub struct Bytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
}

struct Aligned(Vec<u64>, usize);

impl AsRef<[u8]> for Aligned {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: a u64 buffer viewed as its first `self.1` bytes (`self.1 <= 8·len`).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.1) }
    }
}

impl Bytes {
    /// `range` of `owner` (a memory map, say); checked to lie within it.
    pub fn new(owner: Arc<dyn AsRef<[u8]> + Send + Sync>, range: Range<usize>) -> Option<Self> {
        (range.start <= range.end && range.end <= (*owner).as_ref().len())
            .then_some(Bytes { owner, range })
    }

    /// A copy of `data` in an aligned buffer of its own.
    pub fn copy_of(data: &[u8]) -> Self {
        let mut v = vec![0u64; data.len().div_ceil(8)];
        // SAFETY: `v` holds at least `data.len()` bytes; the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), v.as_mut_ptr().cast::<u8>(), data.len())
        };
        let n = data.len();
        Bytes {
            owner: Arc::new(Aligned(v, n)),
            range: 0..n,
        }
    }

    fn get(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }
}

#[derive(Clone)]
enum Store {
    /// Plain f32 values, row-major (built in memory: fixtures, trained weights).
    F32(Arc<Vec<f32>>),
    /// Bytes of `kind`, row-major, each row a whole number of blocks.
    Raw { kind: GgmlDType, bytes: Bytes },
}

/// Rows of a matrix held in one storage.
#[derive(Clone)]
struct Part {
    rows: usize,
    store: Store,
    /// `perm[r]`: the stored row holding logical row `r` (GGUF's permuted Llama q/k rows).
    perm: Option<Arc<[u32]>>,
}

/// A row-major `[rows, cols]` weight matrix in its stored type. Cloning shares the storage.
#[derive(Clone)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    parts: Vec<Part>,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Matrix[{}, {}; {}]",
            self.rows,
            self.cols,
            self.type_name()
        )
    }
}

impl PartialEq for Matrix {
    /// Equal shapes and values (stored types may differ).
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows && self.cols == other.cols && self.to_f32() == other.to_f32()
    }
}

/// Calls `$f::<T>` with the block type of a quantised `GgmlDType`, or evaluates `$float` for
/// the float types.
macro_rules! with_block {
    ($kind:expr, $f:ident, $float:expr, ($($arg:expr),*)) => {
        match $kind {
            GgmlDType::Q4_0 => $f::<BlockQ4_0>($($arg),*),
            GgmlDType::Q4_1 => $f::<BlockQ4_1>($($arg),*),
            GgmlDType::Q5_0 => $f::<BlockQ5_0>($($arg),*),
            GgmlDType::Q5_1 => $f::<BlockQ5_1>($($arg),*),
            GgmlDType::Q8_0 => $f::<BlockQ8_0>($($arg),*),
            GgmlDType::Q2K => $f::<BlockQ2K>($($arg),*),
            GgmlDType::Q3K => $f::<BlockQ3K>($($arg),*),
            GgmlDType::Q4K => $f::<BlockQ4K>($($arg),*),
            GgmlDType::Q5K => $f::<BlockQ5K>($($arg),*),
            GgmlDType::Q6K => $f::<BlockQ6K>($($arg),*),
            GgmlDType::F32 => $f::<f32>($($arg),*),
            GgmlDType::F16 => $f::<half::f16>($($arg),*),
            GgmlDType::BF16 => $f::<half::bf16>($($arg),*),
            _ => $float,
        }
    };
}

/// Whether a matrix can hold `kind` as stored.
pub fn supports(kind: GgmlDType) -> bool {
    !matches!(kind, GgmlDType::Q8_1 | GgmlDType::Q8K)
}

/// `bytes` as blocks of `T` (aligned: checked when the part was built).
fn blocks<T: GgmlType>(bytes: &[u8]) -> &[T] {
    let size = std::mem::size_of::<T>();
    assert!(
        bytes.len().is_multiple_of(size)
            && (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    );
    // SAFETY: aligned for T and a whole number of blocks (asserted); ggml blocks are plain
    // integers and half floats, valid for any bit pattern.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) }
}

fn to_float<T: GgmlType>(bytes: &[u8], out: &mut [f32]) {
    if !legacy_to_float(T::DTYPE, bytes, out) {
        T::to_float(blocks::<T>(bytes), out)
    }
}

/// Q4_0, Q4_1 and Q8_0 blocks to f32 with exactly ggml's (and candle's) arithmetic — the
/// block's half-float scales converted once, `q·d` or `q·d + m` per value, no fused
/// multiply-add — in fixed-size loops LLVM vectorises for AVX2: candle's version spent 60% of
/// a prefill converting scales. False for other types.
fn legacy_to_float(kind: GgmlDType, bytes: &[u8], out: &mut [f32]) -> bool {
    match kind {
        GgmlDType::Q4_0 => kernels::with_avx2(|| {
            for (b, o) in bytes.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
                let d = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
                let q: &[u8; 16] = b[2..18].try_into().expect("16 bytes");
                let o: &mut [f32; 32] = o.try_into().expect("32 values");
                for j in 0..16 {
                    o[j] = (((q[j] & 0x0F) as i16 - 8) as f32) * d;
                    o[j + 16] = (((q[j] >> 4) as i16 - 8) as f32) * d;
                }
            }
        }),
        GgmlDType::Q4_1 => kernels::with_avx2(|| {
            for (b, o) in bytes.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
                let d = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
                let m = f16_bits_to_f32(u16::from_le_bytes([b[2], b[3]]));
                let q: &[u8; 16] = b[4..20].try_into().expect("16 bytes");
                let o: &mut [f32; 32] = o.try_into().expect("32 values");
                for j in 0..16 {
                    o[j] = ((q[j] & 0x0F) as f32) * d + m;
                    o[j + 16] = ((q[j] >> 4) as f32) * d + m;
                }
            }
        }),
        GgmlDType::Q8_0 => kernels::with_avx2(|| {
            for (b, o) in bytes.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
                let d = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
                let q: &[u8; 32] = b[2..34].try_into().expect("32 bytes");
                let o: &mut [f32; 32] = o.try_into().expect("32 values");
                for j in 0..32 {
                    o[j] = (q[j] as i8) as f32 * d;
                }
            }
        }),
        _ => return false,
    }
    true
}

/// IEEE half to single precision, exactly (every half is a single), inline: the `half` crate's
/// call per block cost as much as the block's values.
#[inline(always)]
fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x3FF) as u32;
    match exp {
        // zero and subnormals: man · 2⁻²⁴, exact in f32
        0 => {
            f32::from_bits(sign) + if sign != 0 { -1.0 } else { 1.0 } * man as f32 * 5.960_464_5e-8
        }
        0x1F => f32::from_bits(sign | 0x7F80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

fn row_bytes(kind: GgmlDType, cols: usize) -> usize {
    cols / kind.block_size() * kind.type_size()
}

fn align_of(kind: GgmlDType) -> usize {
    fn a<T>() -> usize {
        std::mem::align_of::<T>()
    }
    with_block!(kind, a, 1, ())
}

impl Part {
    /// Logical row `r` as f32 into `out` (`cols` values).
    fn row_into(&self, r: usize, cols: usize, out: &mut [f32]) {
        let s = self.perm.as_ref().map_or(r, |p| p[r] as usize);
        match &self.store {
            Store::F32(v) => out.copy_from_slice(&v[s * cols..(s + 1) * cols]),
            Store::Raw { kind, bytes } => {
                let rb = row_bytes(*kind, cols);
                let b = &bytes.get()[s * rb..(s + 1) * rb];
                with_block!(*kind, to_float, unreachable!(), (b, out))
            }
        }
    }

    /// Logical rows `lo..hi` as f32 into `out` (`(hi − lo)·cols` values).
    fn rows_into(&self, lo: usize, hi: usize, cols: usize, out: &mut [f32]) {
        if let (Store::F32(v), None) = (&self.store, &self.perm) {
            return out.copy_from_slice(&v[lo * cols..hi * cols]);
        }
        for (r, o) in (lo..hi).zip(out.chunks_exact_mut(cols)) {
            self.row_into(r, cols, o);
        }
    }

    /// The part's values as an f32 slice, when it holds them so.
    fn f32_slice(&self) -> Option<&[f32]> {
        match (&self.store, &self.perm) {
            (Store::F32(v), None) => Some(v),
            _ => None,
        }
    }
}

impl Matrix {
    /// A matrix of f32 values, row-major (`data.len() == rows·cols`).
    pub fn from_f32(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "Matrix::from_f32: data does not match its shape"
        );
        Matrix {
            rows,
            cols,
            parts: vec![Part {
                rows,
                store: Store::F32(Arc::new(data)),
                perm: None,
            }],
        }
    }

    /// A `[rows, cols]` matrix of `kind` held in `bytes` as stored, row-major; `perm[r]` names
    /// the stored row that is logical row `r`. Errors say what does not fit.
    pub fn stored(
        rows: usize,
        cols: usize,
        kind: GgmlDType,
        bytes: Bytes,
        perm: Option<Vec<u32>>,
    ) -> std::result::Result<Self, String> {
        if !supports(kind) {
            return Err(format!(
                "type {kind:?} is not a weight type we run (supported: {STORED_TYPES})"
            ));
        }
        let bs = kind.block_size();
        if !cols.is_multiple_of(bs) {
            return Err(format!(
                "rows of {cols} values do not divide into {kind:?} blocks of {bs}"
            ));
        }
        let want = rows.checked_mul(row_bytes(kind, cols));
        if want != Some(bytes.get().len()) {
            return Err(format!(
                "{} bytes do not hold [{rows}, {cols}] values of {kind:?}",
                bytes.get().len()
            ));
        }
        if let Some(p) = &perm {
            let mut seen = vec![false; rows];
            for &s in p {
                match seen.get_mut(s as usize) {
                    Some(x) if !*x => *x = true,
                    _ => return Err(format!("row permutation is not one of {rows} rows")),
                }
            }
            if p.len() != rows {
                return Err(format!("row permutation is not one of {rows} rows"));
            }
        }
        // GGUF aligns tensor data; a file that does not gets an aligned copy.
        let bytes = if (bytes.get().as_ptr() as usize).is_multiple_of(align_of(kind)) {
            bytes
        } else {
            Bytes::copy_of(bytes.get())
        };
        let store = match kind {
            // Plain f32 data in memory runs with no conversion at all.
            GgmlDType::F32 => Store::F32(Arc::new(
                bytes
                    .get()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )),
            _ => Store::Raw { kind, bytes },
        };
        Ok(Matrix {
            rows,
            cols,
            parts: vec![Part {
                rows,
                store,
                perm: perm.map(Into::into),
            }],
        })
    }

    /// Rows of `parts` stacked in order (fused q|k|v, gate|up). Parts of plain f32 values are
    /// joined into one buffer (they are in memory already); stored parts stay as they are.
    pub fn stack(parts: Vec<Matrix>) -> Self {
        let cols = parts.first().map_or(0, |m| m.cols);
        assert!(
            parts.iter().all(|m| m.cols == cols),
            "Matrix::stack: widths differ"
        );
        let rows = parts.iter().map(|m| m.rows).sum();
        if parts.iter().all(|m| m.as_f32().is_some()) {
            let mut v = Vec::with_capacity(rows * cols);
            for m in &parts {
                v.extend_from_slice(m.as_f32().unwrap_or_default());
            }
            return Matrix::from_f32(rows, cols, v);
        }
        Matrix {
            rows,
            cols,
            parts: parts.into_iter().flat_map(|m| m.parts).collect(),
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The stored types, e.g. `Q4_K` or `Q4_K+Q6_K` for a fused matrix of mixed parts.
    pub fn type_name(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        for p in &self.parts {
            let n = match &p.store {
                Store::F32(_) => "F32".to_string(),
                Store::Raw { kind, .. } => format!("{kind:?}"),
            };
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names.join("+")
    }

    /// Bytes the values take in memory or in the mapped file.
    pub fn stored_bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match &p.store {
                Store::F32(v) => v.len() * 4,
                Store::Raw { bytes, .. } => bytes.get().len(),
            })
            .sum()
    }

    /// The values as one f32 slice, when the matrix holds them so (built from f32 data).
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self.parts.as_slice() {
            [p] => p.f32_slice(),
            [] => Some(&[]),
            _ => None,
        }
    }

    /// Mutable f32 values (tests, training); `None` for a stored matrix. Storage shared with a
    /// clone is copied first.
    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match self.parts.as_mut_slice() {
            [Part {
                store: Store::F32(v),
                perm: None,
                ..
            }] => Some(Arc::make_mut(v).as_mut_slice()),
            _ => None,
        }
    }

    /// The f32 values, moved out when this matrix holds them alone (built from f32 data and
    /// not shared with a clone); otherwise the matrix back.
    pub fn into_f32(self) -> std::result::Result<Vec<f32>, Matrix> {
        if self.as_f32().is_none() || self.parts.len() != 1 {
            return Err(self);
        }
        let Matrix { rows, cols, parts } = self;
        let part = parts.into_iter().next().expect("one part");
        match part.store {
            Store::F32(v) => Arc::try_unwrap(v).map_err(|v| Matrix {
                rows,
                cols,
                parts: vec![Part {
                    rows,
                    store: Store::F32(v),
                    perm: None,
                }],
            }),
            Store::Raw { .. } => unreachable!("as_f32 checked"),
        }
    }

    /// Every value as f32, row-major: a full copy, for small matrices (export, training).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        self.rows_into(0, self.rows, &mut out);
        out
    }

    /// Row `r` as f32 into `out` (`cols` values): an embedding lookup.
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let (p, lr) = self.locate(r);
        p.row_into(lr, self.cols, out)
    }

    /// Rows `lo..hi` as f32 into `out`.
    pub fn rows_into(&self, lo: usize, hi: usize, out: &mut [f32]) {
        let mut p0 = 0;
        for p in &self.parts {
            let (a, b) = (lo.max(p0), hi.min(p0 + p.rows));
            if a < b {
                p.rows_into(
                    a - p0,
                    b - p0,
                    self.cols,
                    &mut out[(a - lo) * self.cols..(b - lo) * self.cols],
                );
            }
            p0 += p.rows;
        }
    }

    fn locate(&self, r: usize) -> (&Part, usize) {
        let mut p0 = 0;
        for p in &self.parts {
            if r < p0 + p.rows {
                return (p, r - p0);
            }
            p0 += p.rows;
        }
        panic!("row {r} of a matrix of {} rows", self.rows)
    }

    /// `y[t, rows] (+)= x[t, cols] · selfᵀ`, all row-major.
    pub fn linear(&self, x: &[f32], t: usize, y: &mut [f32], add: bool, mode: Compute) {
        let (out, inp) = (self.rows, self.cols);
        assert!(
            x.len() == t * inp && y.len() == t * out,
            "Matrix::linear: shapes"
        );
        if t == 0 {
            return;
        }
        if let Some(w) = self.as_f32() {
            return kernels::linear(x, t, inp, w, out, y, add);
        }
        // Row-at-a-time int8 kernels (candle's, our AVX2 one) beat dequantised tiles for
        // decode-sized products and lose for prefill-sized ones; the VNNI tile kernel wins
        // at every size (see `runs_int8`).
        if mode == Compute::Fast {
            // quantised parts through the integer kernels where they are faster, the rest
            // exactly
            let mut c0 = 0;
            let mut rest = Vec::new();
            let mut q8 = None;
            for p in &self.parts {
                match &p.store {
                    Store::Raw { kind, bytes }
                        if qdot_kind(*kind).is_some() && runs_int8(*kind, t) =>
                    {
                        let q = q8.get_or_insert_with(|| qdot::quantize_rows(x, t, inp));
                        let k = qdot_kind(*kind).expect("matched");
                        let mut buf = vec![0.0f32; t * p.rows];
                        qdot::matmul(k, bytes.get(), p.rows, q, &mut buf);
                        scatter(&buf, p, t, y, out, c0, add);
                    }
                    Store::Raw { kind, bytes } if runs_int8(*kind, t) => {
                        fast_part(*kind, bytes.get(), p, x, t, inp, y, out, c0, add)
                    }
                    _ => rest.push((p, c0)),
                }
                c0 += p.rows;
            }
            return exact_parts(&rest, x, t, inp, y, out, add);
        }
        let mut c0 = 0;
        let parts: Vec<(&Part, usize)> = self
            .parts
            .iter()
            .map(|p| {
                c0 += p.rows;
                (p, c0 - p.rows)
            })
            .collect();
        exact_parts(&parts, x, t, inp, y, out, add)
    }

    /// `g[m, rows] · self` into `out[m, cols]` (the input gradient of [`Matrix::linear`]),
    /// from dequantised tiles of whole columns, so every sum runs over all rows in order.
    pub fn matmul_n(&self, g: &[f32], m: usize, out: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        assert!(
            g.len() == m * rows && out.len() == m * cols,
            "Matrix::matmul_n: shapes"
        );
        if m == 0 || cols == 0 {
            return;
        }
        let bs = self
            .parts
            .iter()
            .map(|p| match &p.store {
                Store::Raw { kind, .. } => kind.block_size(),
                Store::F32(_) => 1,
            })
            .max()
            .unwrap_or(1);
        // Column tiles of ~256 KiB of f32 weight, whole blocks wide.
        let width = ((1usize << 16) / rows.max(1)).max(bs).div_ceil(bs) * bs;
        let tiles: Vec<(usize, usize)> = (0..cols)
            .step_by(width)
            .map(|c| (c, width.min(cols - c)))
            .collect();
        let outs: Vec<Vec<f32>> = tiles
            .par_iter()
            .map(|&(c, w)| {
                let mut panel = vec![0.0f32; rows * w];
                self.column_tile(c, w, &mut panel);
                let mut buf = vec![0.0f32; m * w];
                faer::linalg::matmul::matmul(
                    MatMut::from_row_major_slice_mut(&mut buf, m, w),
                    Accum::Replace,
                    MatRef::from_row_major_slice(g, m, rows),
                    MatRef::from_row_major_slice(&panel, rows, w),
                    1.0f32,
                    Par::Seq,
                );
                buf
            })
            .collect();
        for (&(c, w), buf) in tiles.iter().zip(outs) {
            for r in 0..m {
                out[r * cols + c..r * cols + c + w].copy_from_slice(&buf[r * w..(r + 1) * w]);
            }
        }
    }

    /// Columns `c..c+w` of every row, as f32 `[rows, w]` (`c` and `w` whole blocks).
    fn column_tile(&self, c: usize, w: usize, panel: &mut [f32]) {
        let mut r0 = 0;
        for p in &self.parts {
            for r in 0..p.rows {
                let s = p.perm.as_ref().map_or(r, |q| q[r] as usize);
                let o = &mut panel[(r0 + r) * w..(r0 + r + 1) * w];
                match &p.store {
                    Store::F32(v) => {
                        o.copy_from_slice(&v[s * self.cols + c..s * self.cols + c + w])
                    }
                    Store::Raw { kind, bytes } => {
                        let (bs, ts) = (kind.block_size(), kind.type_size());
                        let rb = row_bytes(*kind, self.cols);
                        let b = &bytes.get()[s * rb + c / bs * ts..s * rb + (c + w) / bs * ts];
                        with_block!(*kind, to_float, unreachable!(), (b, o))
                    }
                }
            }
            r0 += p.rows;
        }
    }
}

fn is_quantised(kind: GgmlDType) -> bool {
    !matches!(kind, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

/// Weight rows dequantised at once in the panel product: 96 rows (the decode kernel's task)
/// or fewer for wide rows, so a panel stays within the L2 cache.
fn panel_rows(cols: usize) -> usize {
    let r = ((1usize << 18) / cols.max(1)).clamp(12, 96);
    r / 12 * 12
}

/// An exact product of `parts` (each with the first output column it fills): their rows
/// dequantised in panels, all panels of all parts in parallel, each multiplied like an f32
/// matrix's rows (the decode kernel for a few rows, a single-threaded GEMM otherwise).
fn exact_parts(
    parts: &[(&Part, usize)],
    x: &[f32],
    t: usize,
    inp: usize,
    y: &mut [f32],
    out: usize,
    add: bool,
) {
    let pr = panel_rows(inp);
    // (part, first output column of the panel, first row in the part, rows)
    let panels: Vec<(&Part, usize, usize, usize)> = parts
        .iter()
        .flat_map(|&(p, c0)| {
            (0..p.rows)
                .step_by(pr)
                .map(move |lo| (p, c0 + lo, lo, pr.min(p.rows - lo)))
        })
        .collect();
    let small = t <= kernels::SMALL_M;
    // Rows along the vector lanes for the decode kernel (built once for all panels).
    let xt = small.then(|| kernels::transpose_rows(x, t, inp));
    let y_in: &[f32] = y;
    let outs: Vec<Vec<f32>> = panels
        .par_iter()
        .map(|&(p, c, lo, n)| {
            let mut w = vec![0.0f32; n * inp];
            p.rows_into(lo, lo + n, inp, &mut w);
            match &xt {
                // results transposed, [n, tp]
                Some(xt) => kernels::small_panel(xt, inp, &w),
                None => {
                    // With `add`, faer adds into y's values as the f32 path's GEMM does (the
                    // same sums in the same order).
                    let mut buf = vec![0.0f32; t * n];
                    if add {
                        for r in 0..t {
                            buf[r * n..(r + 1) * n]
                                .copy_from_slice(&y_in[r * out + c..r * out + c + n]);
                        }
                    }
                    faer::linalg::matmul::matmul(
                        MatMut::from_row_major_slice_mut(&mut buf, t, n),
                        if add { Accum::Add } else { Accum::Replace },
                        MatRef::from_row_major_slice(x, t, inp),
                        MatRef::from_row_major_slice(&w, n, inp).transpose(),
                        1.0f32,
                        Par::Seq,
                    );
                    buf
                }
            }
        })
        .collect();
    for (&(_, c, _, n), buf) in panels.iter().zip(outs) {
        for r in 0..t {
            let dst = &mut y[r * out + c..r * out + c + n];
            if small {
                let tp = buf.len() / n;
                for (j, o) in dst.iter_mut().enumerate() {
                    *o = if add {
                        *o + buf[j * tp + r]
                    } else {
                        buf[j * tp + r]
                    };
                }
            } else {
                dst.copy_from_slice(&buf[r * n..(r + 1) * n]);
            }
        }
    }
}

/// One quantised part of a fast product: candle's port of llama.cpp's CPU matmul (int8
/// activations, integer block dot products, AVX2 where present), then into columns
/// `c0..c0+p.rows` of `y` (through the row permutation).
#[allow(clippy::too_many_arguments)]
fn fast_part(
    kind: GgmlDType,
    bytes: &[u8],
    p: &Part,
    x: &[f32],
    t: usize,
    inp: usize,
    y: &mut [f32],
    out: usize,
    c0: usize,
    add: bool,
) {
    fn mm<T: GgmlType>(dims: (usize, usize, usize), x: &[f32], bytes: &[u8], dst: &mut [f32]) {
        candle_core::quantized::k_quants::matmul::<T>(dims, x, blocks::<T>(bytes), dst)
            .expect("quantised matmul: shapes checked by the caller")
    }
    let mut buf = vec![0.0f32; t * p.rows];
    with_block!(
        kind,
        mm,
        unreachable!(),
        ((t, inp, p.rows), x, bytes, &mut buf)
    );
    scatter(&buf, p, t, y, out, c0, add);
}

/// Whether `Compute::Fast` multiplies `t` activation rows with `kind` weights by integer
/// kernels on this machine (otherwise it runs them `Exact`): Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and
/// Q6_K at any size where AVX-512 VNNI is present, every quantised type for decode-sized
/// products (at most 16 rows), where candle's or our row kernels beat dequantised tiles; never
/// float types.
pub fn runs_int8(kind: GgmlDType, t: usize) -> bool {
    is_quantised(kind) && (t <= kernels::SMALL_M || (qdot_kind(kind).is_some() && qdot::has_gemm()))
}

/// The layouts [`qdot`] multiplies itself; the other quantised types go through candle.
fn qdot_kind(kind: GgmlDType) -> Option<qdot::Kind> {
    match kind {
        GgmlDType::Q4_0 => Some(qdot::Kind::Q4_0),
        GgmlDType::Q4_1 => Some(qdot::Kind::Q4_1),
        GgmlDType::Q8_0 => Some(qdot::Kind::Q8_0),
        GgmlDType::Q4K => Some(qdot::Kind::Q4K),
        GgmlDType::Q5K => Some(qdot::Kind::Q5K),
        GgmlDType::Q6K => Some(qdot::Kind::Q6K),
        _ => None,
    }
}

/// `buf[t, p.rows]` (stored row order) into columns `c0..c0+p.rows` of `y`: logical row `j`
/// is stored row `perm[j]`.
fn scatter(buf: &[f32], p: &Part, t: usize, y: &mut [f32], out: usize, c0: usize, add: bool) {
    let n = p.rows;
    let perm = p.perm.as_deref();
    for r in 0..t {
        let src = &buf[r * n..(r + 1) * n];
        let dst = &mut y[r * out + c0..r * out + c0 + n];
        for (j, o) in dst.iter_mut().enumerate() {
            let v = src[perm.map_or(j, |pm| pm[j] as usize)];
            *o = if add { *o + v } else { v };
        }
    }
}
