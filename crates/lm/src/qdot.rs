//! Integer products for `Compute::Fast` with Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K weights,
//! llama.cpp's approach: each activation row is quantised to blocks of 32 signed bytes with
//! one f32 scale, and each weight block of 32 values is multiplied with it by integer
//! multiply-adds, scaled once per block. A K-quant super-block of 256 values is 8 such blocks
//! with their own scales (and minimums: Q4_K, Q5_K) or 16 half-blocks with their own scales
//! (Q6_K), so its blocks' sums are scaled per block or per half.
//! Chosen at run time:
//! - AVX-512 VNNI: tiles of 16 weight rows gathered into registers (one 4-value group of each
//!   row per register) and multiplied with every activation row by `vpdpbusd` — 512 products
//!   per 8 instructions, for prefill and batched decode; at batch 1 the K-quants instead run
//!   a row kernel: each super-block's values decoded from contiguous bytes, two blocks of 32 per
//!   512-bit `vpdpbusd` (about twice the tile's products per cycle on one row);
//! - AVX2: one weight row at a time against up to 16 activation rows (`vpmaddubsw`; the
//!   K-quants a super-block at a time, scales and minimums applied to all 8 blocks in one
//!   vector); larger products are faster dequantised, so `Matrix` runs them `Exact`;
//! - elsewhere a portable loop, for the same few rows.
//!
//! All give the same integer sums per block; they differ only in the order of the float
//! additions across blocks.
//!
//! Candle's port of llama.cpp's kernels (which `Fast` still uses for Q5_0, Q5_1, Q2_K and
//! Q3_K) converts each block's half-float scale through a function call, which cost more than
//! the block's products.

use rayon::prelude::*;

/// Values per block (Q4_0, Q8_0 and the activations' blocks alike).
const QK: usize = 32;

/// Activation rows quantised to 8-bit blocks: `qs[r·cols + i]`, scale `d[r·nb + b]`, sum of
/// the block's values `s[r·nb + b]`.
pub(crate) struct Q8Rows {
    t: usize,
    nb: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<i32>,
}

/// Quantises `t` rows of `cols` values (`cols` a multiple of 32): per block, scale
/// `max |x| / 127` and values rounded to nearest (llama.cpp's `quantize_row_q8_0`, with the
/// scale kept in f32).
pub(crate) fn quantize_rows(x: &[f32], t: usize, cols: usize) -> Q8Rows {
    assert!(
        cols.is_multiple_of(QK) && x.len() == t * cols,
        "quantize_rows: shapes"
    );
    let nb = cols / QK;
    let mut qs = vec![0i8; t * cols];
    let mut d = vec![0f32; t * nb];
    for ((xb, qb), db) in x
        .chunks_exact(QK)
        .zip(qs.chunks_exact_mut(QK))
        .zip(d.iter_mut())
    {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        for (q, v) in qb.iter_mut().zip(xb) {
            *q = (v * inv).round() as i8;
        }
        *db = scale;
    }
    let s = qs
        .chunks_exact(QK)
        .map(|q| q.iter().map(|&v| v as i32).sum())
        .collect();
    Q8Rows { t, nb, qs, d, s }
}

/// Weight block layouts this module multiplies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// 2-byte half scale, 16 bytes of nibbles: values `q − 8`, low nibbles first.
    Q4_0,
    /// Half scale `d` and minimum `m`, 16 bytes of nibbles: values `q·d + m`.
    Q4_1,
    /// 2-byte half scale, 32 signed bytes.
    Q8_0,
    /// Super-block of 256: half `d` and `dmin`, 12 bytes of 6-bit scales and minimums of its 8
    /// blocks, 128 bytes of nibbles (block `2c` the low nibbles of bytes `32c..32c+32`, block
    /// `2c+1` their high nibbles): values `q·d·sc − dmin·m`.
    Q4K,
    /// Q4_K with a fifth bit per value: `d`, `dmin`, scales, 32 bytes of high bits (bit `k`
    /// of byte `l` for value `l` of block `k`), then Q4_K's nibbles.
    Q5K,
    /// Super-block of 256: 128 bytes of low nibbles, 64 of 2-bit high parts, 16 signed scales
    /// (one per 16 values), half `d`: values `d·sc·(q − 32)`.
    Q6K,
}

impl Kind {
    /// Bytes of one stored block (a super-block for the K-quants).
    fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_0 => 18,
            Kind::Q4_1 => 20,
            Kind::Q8_0 => 34,
            Kind::Q4K => 144,
            Kind::Q5K => 176,
            Kind::Q6K => 210,
        }
    }

    /// Blocks of 32 values in one stored block.
    pub(crate) fn subs(self) -> usize {
        match self {
            Kind::Q4K | Kind::Q5K | Kind::Q6K => 8,
            _ => 1,
        }
    }

    /// Bytes of a row of `nb` blocks of 32.
    fn row_bytes(self, nb: usize) -> usize {
        nb / self.subs() * self.block_bytes()
    }

    /// Where the block's values start.
    fn values_at(self) -> usize {
        match self {
            Kind::Q4_1 => 4,
            _ => 2,
        }
    }
}

/// One block of 32 weight values as integers: the value is `v · lo + min` for the first 16,
/// `v · hi + min` for the last 16.
struct Sub {
    v: [i8; QK],
    lo: f32,
    hi: f32,
    min: f32,
}

/// The 6-bit scale and minimum of block `j` of a Q4_K / Q5_K super-block (llama.cpp's
/// `get_scale_min_k4`): blocks 0–3 in the low 6 bits of bytes 0–3 and 4–7, blocks 4–7 split
/// between the nibbles of bytes 8–11 and the top 2 bits of bytes 0–7.
fn scale_min_k4(q: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Block `k` (of [`Kind::subs`]) of the stored block `b`.
fn sub(kind: Kind, b: &[u8], k: usize) -> Sub {
    let mut v = [0i8; QK];
    let (lo, hi, min) = match kind {
        Kind::Q4_0 | Kind::Q4_1 | Kind::Q8_0 => {
            let at = if kind == Kind::Q4_1 { 4 } else { 2 };
            match kind {
                Kind::Q8_0 => {
                    for j in 0..QK {
                        v[j] = b[at + j] as i8;
                    }
                }
                _ => {
                    let off = if kind == Kind::Q4_0 { 8 } else { 0 };
                    for j in 0..16 {
                        v[j] = (b[at + j] & 0x0F) as i8 - off;
                        v[j + 16] = (b[at + j] >> 4) as i8 - off;
                    }
                }
            }
            let min = if kind == Kind::Q4_1 {
                half(&b[2..])
            } else {
                0.0
            };
            (half(b), half(b), min)
        }
        Kind::Q4K | Kind::Q5K => {
            let (d, dmin) = (half(b), half(&b[2..]));
            let (sc, m) = scale_min_k4(&b[4..16], k);
            let qs = if kind == Kind::Q4K { 16 } else { 48 } + 32 * (k / 2);
            for l in 0..QK {
                let nib = (b[qs + l] >> (4 * (k % 2))) & 0x0F;
                let high = if kind == Kind::Q5K {
                    ((b[16 + l] >> k) & 1) << 4
                } else {
                    0
                };
                v[l] = (nib | high) as i8;
            }
            (d * sc as f32, d * sc as f32, -dmin * m as f32)
        }
        Kind::Q6K => {
            let (n, kk) = (k / 4, k % 4);
            let ql = 64 * n + 32 * (kk % 2);
            for l in 0..QK {
                let low = (b[ql + l] >> (4 * (kk / 2))) & 0x0F;
                let high = (b[128 + 32 * n + l] >> (2 * kk)) & 3;
                v[l] = (low | (high << 4)) as i8 - 32;
            }
            let d = half(&b[208..]);
            let sc = |i: usize| d * b[192 + i] as i8 as f32;
            (sc(2 * k), sc(2 * k + 1), 0.0)
        }
    };
    Sub { v, lo, hi, min }
}

#[derive(Clone, Copy)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(detect)
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        if avx2 && has!("avx512vnni") && has!("avx512vl") {
            return Isa::Vnni;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// Whether [`matmul`] has an integer kernel for products of many rows (prefill-sized) on this
/// machine; without one, such products are faster dequantised (`Exact`).
pub(crate) fn has_gemm() -> bool {
    #[cfg(target_arch = "x86_64")]
    return matches!(isa(), Isa::Vnni);
    #[allow(unreachable_code)]
    false
}

/// `dst[r, j] = x[r] · w[j]` for the `rows` weight rows of `bytes` (`kind` blocks, row-major,
/// `x.nb` blocks per row); `dst` is `[x.t, rows]` row-major. Weight rows are split across the
/// thread pool.
pub(crate) fn matmul(kind: Kind, bytes: &[u8], rows: usize, x: &Q8Rows, dst: &mut [f32]) {
    let rb = kind.row_bytes(x.nb);
    assert!(
        x.nb.is_multiple_of(kind.subs()),
        "qdot::matmul: a row is whole super-blocks"
    );
    assert!(
        bytes.len() == rows * rb && dst.len() == x.t * rows,
        "qdot::matmul: shapes"
    );
    let isa = isa();
    // One activation row (decode): the row kernel's contiguous super-blocks beat the tile's
    // gathers for the K-quants (about twice the products per cycle).
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Vnni) && !(kind.subs() > 1 && x.t == 1) {
        return x86::gemm_vnni(kind, bytes, rows, x, dst);
    }
    // Results transposed, `[rows, t]`, so each task writes one contiguous piece.
    let mut out = vec![0f32; rows * x.t];
    const CHUNK: usize = 32;
    out.par_chunks_mut(CHUNK * x.t)
        .enumerate()
        .for_each(|(c, o)| {
            for (k, o) in o.chunks_exact_mut(x.t).enumerate() {
                let j = c * CHUNK + k;
                row_dot(isa, kind, &bytes[j * rb..(j + 1) * rb], x, o);
            }
        });
    for j in 0..rows {
        for r in 0..x.t {
            dst[r * rows + j] = out[j * x.t + r];
        }
    }
}

/// One weight row against every activation row, into `o[r]`.
fn row_dot(isa: Isa, kind: Kind, w: &[u8], x: &Q8Rows, o: &mut [f32]) {
    match isa {
        // SAFETY: the features each function enables were detected by `isa`.
        #[cfg(target_arch = "x86_64")]
        Isa::Vnni if kind.subs() > 1 => unsafe { x86::row_dot_k512(kind, w, x, o) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if kind.subs() > 1 => unsafe { x86::row_dot_k_avx2(kind, w, x, o) },
        #[cfg(target_arch = "x86_64")]
        Isa::Vnni | Isa::Avx2 => unsafe { x86::row_dot_avx2(kind, w, x, o) },
        Isa::Portable => row_dot_portable(kind, w, x, o),
    }
}

fn half(b: &[u8]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

fn row_dot_portable(kind: Kind, w: &[u8], x: &Q8Rows, o: &mut [f32]) {
    o.fill(0.0);
    for b in 0..x.nb {
        let (m, k) = (kind.subs(), b % kind.subs());
        let blk = &w[b / m * kind.block_bytes()..];
        let Sub { v, lo, hi, min } = sub(kind, blk, k);
        for (r, acc) in o.iter_mut().enumerate() {
            let i = r * x.nb + b;
            let xq = &x.qs[i * QK..(i + 1) * QK];
            let dot = |h: std::ops::Range<usize>| -> f32 {
                h.map(|j| v[j] as i32 * xq[j] as i32).sum::<i32>() as f32
            };
            *acc += x.d[i] * (lo * dot(0..16) + hi * dot(16..32) + min * x.s[i] as f32);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Kind, Q8Rows, QK};
    use std::arch::x86_64::*;

    /// Activation rows per pass over a weight row: their accumulators stay in registers.
    const R: usize = 4;

    #[inline(always)]
    unsafe fn half_at(b: *const u8) -> f32 {
        unsafe {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                (b as *const u16).read_unaligned() as i32,
            )))
        }
    }

    /// Block `k` of the stored block at `b` (see [`super::sub`]): its 32 signed values, the
    /// scale of each 4-value group (`lo` for groups 0–3, `hi` for 4–7) and its minimum.
    #[inline(always)]
    unsafe fn load_sub(kind: Kind, b: *const u8, k: usize) -> (__m256i, __m256, f32) {
        unsafe {
            // macros, not closures: a closure would not be inlined into the caller's features
            let low = _mm256_set1_epi8(0x0F);
            macro_rules! shift {
                ($v:expr, $n:expr) => {
                    _mm256_srl_epi16($v, _mm_cvtsi32_si128(($n) as i32))
                };
            }
            macro_rules! load {
                ($at:expr) => {
                    _mm256_loadu_si256(b.add($at) as *const __m256i)
                };
            }
            match kind {
                Kind::Q4_0 | Kind::Q4_1 | Kind::Q8_0 => {
                    let v = match kind {
                        Kind::Q8_0 => load!(2),
                        _ => {
                            let at = if kind == Kind::Q4_1 { 4 } else { 2 };
                            let q = _mm_loadu_si128(b.add(at) as *const __m128i);
                            let both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
                            let off = if kind == Kind::Q4_0 { 8 } else { 0 };
                            _mm256_sub_epi8(_mm256_and_si256(both, low), _mm256_set1_epi8(off))
                        }
                    };
                    let min = if kind == Kind::Q4_1 {
                        half_at(b.add(2))
                    } else {
                        0.0
                    };
                    (v, _mm256_set1_ps(half_at(b)), min)
                }
                Kind::Q4K | Kind::Q5K => {
                    let scales = std::slice::from_raw_parts(b.add(4), 12);
                    let (sc, m) = super::scale_min_k4(scales, k);
                    let at = if kind == Kind::Q4K { 16 } else { 48 } + 32 * (k / 2);
                    let mut v = _mm256_and_si256(shift!(load!(at), 4 * (k % 2)), low);
                    if kind == Kind::Q5K {
                        let bit = _mm256_and_si256(shift!(load!(16), k), _mm256_set1_epi8(1));
                        v = _mm256_or_si256(v, _mm256_slli_epi16(bit, 4));
                    }
                    let (d, dmin) = (half_at(b), half_at(b.add(2)));
                    (v, _mm256_set1_ps(d * sc as f32), -dmin * m as f32)
                }
                Kind::Q6K => {
                    let (n, kk) = (k / 4, k % 4);
                    let ql =
                        _mm256_and_si256(shift!(load!(64 * n + 32 * (kk % 2)), 4 * (kk / 2)), low);
                    let qh =
                        _mm256_and_si256(shift!(load!(128 + 32 * n), 2 * kk), _mm256_set1_epi8(3));
                    let v = _mm256_sub_epi8(
                        _mm256_or_si256(ql, _mm256_slli_epi16(qh, 4)),
                        _mm256_set1_epi8(32),
                    );
                    let d = half_at(b.add(208));
                    let (lo, hi) = (*b.add(192 + 2 * k) as i8, *b.add(193 + 2 * k) as i8);
                    let (lo, hi) = (_mm_set1_ps(d * lo as f32), _mm_set1_ps(d * hi as f32));
                    (v, _mm256_set_m128(hi, lo), 0.0)
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }
    }

    macro_rules! row_dot {
        ($name:ident, $features:literal, $dot:ident) => {
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(kind: Kind, w: &[u8], x: &Q8Rows, o: &mut [f32]) {
                unsafe {
                    let (bb, m) = (kind.block_bytes(), kind.subs());
                    let nb = x.nb;
                    let mut r0 = 0;
                    while r0 < x.t {
                        let n = R.min(x.t - r0);
                        let mut acc = [_mm256_setzero_ps(); R];
                        let mut mins = [0f32; R];
                        for b in 0..nb {
                            let blk = w.as_ptr().add(b / m * bb);
                            let (wv, dw, mw) = load_sub(kind, blk, b % m);
                            // |w| and the sign moved onto x: unsigned × signed byte products.
                            let aw = _mm256_sign_epi8(wv, wv);
                            for k in 0..n {
                                let r = r0 + k;
                                let xv = _mm256_loadu_si256(
                                    x.qs.as_ptr().add((r * nb + b) * QK) as *const __m256i
                                );
                                let sx = _mm256_sign_epi8(xv, wv);
                                let s = _mm256_cvtepi32_ps($dot(aw, sx));
                                let dx = *x.d.get_unchecked(r * nb + b);
                                acc[k] = _mm256_fmadd_ps(
                                    _mm256_mul_ps(dw, _mm256_set1_ps(dx)),
                                    s,
                                    acc[k],
                                );
                                mins[k] += mw * dx * *x.s.get_unchecked(r * nb + b) as f32;
                            }
                        }
                        for k in 0..n {
                            o[r0 + k] = hsum(acc[k]) + mins[k];
                        }
                        r0 += n;
                    }
                }
            }
        };
    }

    #[inline(always)]
    unsafe fn dot_avx2(a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)) }
    }

    row_dot!(row_dot_avx2, "avx2,fma,f16c", dot_avx2);

    /// The 6-bit scales (bytes 0–7) and minimums (bytes 8–15) of a Q4_K / Q5_K super-block's
    /// 8 blocks from its 12 packed bytes at `q` (llama.cpp's `utmp` unpacking: the same values
    /// as [`super::scale_min_k4`], all at once).
    #[inline(always)]
    unsafe fn scales_k4(q: *const u8) -> [u32; 4] {
        unsafe {
            const M6: u32 = 0x3f3f_3f3f;
            const M4: u32 = 0x0f0f_0f0f;
            const M2: u32 = 0x0303_0303;
            let u = |i: usize| (q.add(4 * i) as *const u32).read_unaligned();
            let (u0, u1, u2) = (u(0), u(1), u(2));
            [
                u0 & M6,
                (u2 & M4) | (((u0 >> 6) & M2) << 4),
                u1 & M6,
                ((u2 >> 4) & M4) | (((u1 >> 6) & M2) << 4),
            ]
        }
    }

    /// The 8 bytes at `p` as 8 lanes of i32 (`signed`: as i8, else as u8).
    #[inline(always)]
    unsafe fn lanes8(p: *const u8, signed: bool) -> __m256i {
        unsafe {
            let b = _mm_loadl_epi64(p as *const __m128i);
            if signed {
                _mm256_cvtepi8_epi32(b)
            } else {
                _mm256_cvtepu8_epi32(b)
            }
        }
    }

    /// Lane `i` of `v` in every lane.
    #[inline(always)]
    unsafe fn lane(v: __m256, i: usize) -> __m256 {
        unsafe { _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(i as i32)) }
    }

    /// A Q4_K / Q5_K super-block's float factors against activation blocks `i..i + 8` (scales
    /// `xd`), a lane per block: the scale `d·sc·dx` of each block's integer sum, and its
    /// minimum's whole contribution `−dmin·m·dx·Σx`.
    #[inline(always)]
    unsafe fn scales_mins_k4(blk: *const u8, x: &Q8Rows, i: usize, xd: __m256) -> (__m256, __m256) {
        unsafe {
            let u = scales_k4(blk.add(4));
            let (sc, m) = (u.as_ptr() as *const u8, u.as_ptr().add(2) as *const u8);
            let (d, dmin) = (half_at(blk), half_at(blk.add(2)));
            let sc = _mm256_cvtepi32_ps(lanes8(sc, false));
            let scale = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(d), sc), xd);
            let xs = _mm256_cvtepi32_ps(_mm256_loadu_si256(x.s.as_ptr().add(i) as *const __m256i));
            let m = _mm256_mul_ps(_mm256_set1_ps(-dmin), _mm256_cvtepi32_ps(lanes8(m, false)));
            (scale, _mm256_mul_ps(m, _mm256_mul_ps(xd, xs)))
        }
    }

    /// The 8 blocks of 32 of the K-quant super-block at `blk` as unsigned bytes (Q6_K: value +
    /// 32), one register each.
    #[inline(always)]
    unsafe fn values_k(kind: Kind, blk: *const u8) -> [__m256i; 8] {
        unsafe {
            let nib = _mm256_set1_epi8(0x0F);
            macro_rules! load {
                ($at:expr) => {
                    _mm256_loadu_si256(blk.add($at) as *const __m256i)
                };
            }
            macro_rules! shr {
                ($v:expr, $n:expr) => {
                    _mm256_srl_epi16($v, _mm_cvtsi32_si128(($n) as i32))
                };
            }
            let mut wv = [_mm256_setzero_si256(); 8];
            if kind == Kind::Q6K {
                for h in 0..2 {
                    let (ql, qh) = ([load!(64 * h), load!(64 * h + 32)], load!(128 + 32 * h));
                    for kk in 0..4 {
                        let low = _mm256_and_si256(shr!(ql[kk % 2], 4 * (kk / 2)), nib);
                        let high = _mm256_and_si256(shr!(qh, 2 * kk), _mm256_set1_epi8(3));
                        wv[4 * h + kk] = _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
                    }
                }
                return wv;
            }
            let qs = if kind == Kind::Q4K { 16 } else { 48 };
            for c in 0..4 {
                let q = load!(qs + 32 * c);
                wv[2 * c] = _mm256_and_si256(q, nib);
                wv[2 * c + 1] = _mm256_and_si256(shr!(q, 4), nib);
            }
            if kind == Kind::Q5K {
                // bit j of each of the 32 bytes at 16 is the fifth bit of block j
                let qh = load!(16);
                for (j, v) in wv.iter_mut().enumerate() {
                    let bit = _mm256_and_si256(shr!(qh, j), _mm256_set1_epi8(1));
                    *v = _mm256_or_si256(*v, _mm256_slli_epi16(bit, 4));
                }
            }
            wv
        }
    }

    /// One K-quant super-block (`blk`, values `wv`) times activation blocks `i..i + 8`: 8
    /// lanes whose sum is the product. Each block's integer sum is scaled by `d·sc·dx` in
    /// floats; Q4_K / Q5_K's minimums of all 8 blocks are applied in one vector, Q6_K's offset
    /// of 32 and its per-half scales to the integer sums.
    #[inline(always)]
    unsafe fn superblock_row(
        kind: Kind,
        blk: *const u8,
        wv: &[__m256i; 8],
        x: &Q8Rows,
        i: usize,
    ) -> __m256 {
        unsafe {
            let xd = _mm256_loadu_ps(x.d.as_ptr().add(i));
            macro_rules! xq {
                ($b:expr) => {
                    _mm256_loadu_si256(x.qs.as_ptr().add((i + $b) * QK) as *const __m256i)
                };
            }
            let mut p = [_mm256_setzero_ps(); 8];
            let mut sum = _mm256_setzero_ps();
            if kind == Kind::Q6K {
                let d = _mm256_mul_ps(_mm256_set1_ps(half_at(blk.add(208))), xd);
                let sc = [lanes8(blk.add(192), true), lanes8(blk.add(200), true)];
                let off = _mm256_set1_epi8(32);
                for (b, p) in p.iter_mut().enumerate() {
                    let xv = xq!(b);
                    let s = _mm256_sub_epi32(dot_avx2(wv[b], xv), dot_avx2(off, xv));
                    // lanes 0–3 are the block's first half (scale 2b), lanes 4–7 its second
                    let (lo, hi) = ((2 * b % 8) as i32, (2 * b % 8 + 1) as i32);
                    let pick = _mm256_setr_epi32(lo, lo, lo, lo, hi, hi, hi, hi);
                    let s = _mm256_mullo_epi32(s, _mm256_permutevar8x32_epi32(sc[b / 4], pick));
                    *p = _mm256_mul_ps(_mm256_cvtepi32_ps(s), lane(d, b));
                }
            } else {
                let (scale, mins) = scales_mins_k4(blk, x, i, xd);
                sum = mins;
                for (b, p) in p.iter_mut().enumerate() {
                    let s = _mm256_cvtepi32_ps(dot_avx2(wv[b], xq!(b)));
                    *p = _mm256_mul_ps(s, lane(scale, b));
                }
            }
            // summed as a tree, not one chain of dependent additions
            let q = [0, 2, 4, 6].map(|b| _mm256_add_ps(p[b], p[b + 1]));
            let q = _mm256_add_ps(_mm256_add_ps(q[0], q[1]), _mm256_add_ps(q[2], q[3]));
            _mm256_add_ps(sum, q)
        }
    }

    /// One K-quant weight row against every activation row, a super-block at a time (the
    /// decode product): the super-block's values are decoded into registers once per pass of
    /// [`R`] activation rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row_dot_k_avx2(kind: Kind, w: &[u8], x: &Q8Rows, o: &mut [f32]) {
        unsafe {
            let (bb, nb) = (kind.block_bytes(), x.nb);
            for r0 in (0..x.t).step_by(R) {
                let n = R.min(x.t - r0);
                let mut acc = [_mm256_setzero_ps(); R];
                for sb in 0..nb / 8 {
                    let blk = w.as_ptr().add(sb * bb);
                    let wv = values_k(kind, blk);
                    for (k, acc) in acc[..n].iter_mut().enumerate() {
                        let i = (r0 + k) * nb + sb * 8;
                        *acc = _mm256_add_ps(*acc, superblock_row(kind, blk, &wv, x, i));
                    }
                }
                for k in 0..n {
                    o[r0 + k] = hsum(acc[k]);
                }
            }
        }
    }

    /// A constant of 16 i32 lanes, `f(lane)`.
    #[inline(always)]
    unsafe fn lanes16(f: impl Fn(usize) -> i32) -> __m512i {
        let v: [i32; 16] = std::array::from_fn(f);
        unsafe { _mm512_loadu_si512(v.as_ptr() as *const _) }
    }

    /// [`values_k`] two blocks to a 512-bit register: register `p` holds blocks `2p` (low
    /// 256 bits) and `2p + 1`, as the activation blocks lie in memory.
    #[inline(always)]
    unsafe fn values_k512(kind: Kind, blk: *const u8) -> [__m512i; 4] {
        unsafe {
            let nib = _mm512_set1_epi8(0x0F);
            // 32 bytes in both halves
            let both = |at: usize| {
                _mm512_broadcast_i64x4(_mm256_loadu_si256(blk.add(at) as *const __m256i))
            };
            // 16-bit lanes shifted right by `lo` bits in the low half, `hi` in the high
            let shr = |v: __m512i, lo: usize, hi: usize| {
                _mm512_srlv_epi16(
                    v,
                    _mm512_inserti64x4::<1>(
                        _mm512_set1_epi16(lo as i16),
                        _mm256_set1_epi16(hi as i16),
                    ),
                )
            };
            let mut wz = [_mm512_setzero_si512(); 4];
            if kind == Kind::Q6K {
                for n in 0..2 {
                    let ql = _mm512_loadu_si512(blk.add(64 * n) as *const _);
                    let qh = both(128 + 32 * n);
                    for (m, v) in wz[2 * n..2 * n + 2].iter_mut().enumerate() {
                        // blocks 4n, 4n + 1: low nibbles; 4n + 2, 4n + 3: high
                        let ql = if m == 0 {
                            ql
                        } else {
                            _mm512_srli_epi16::<4>(ql)
                        };
                        let low = _mm512_and_si512(ql, nib);
                        let high = _mm512_and_si512(shr(qh, 4 * m, 4 * m + 2), _mm512_set1_epi8(3));
                        *v = _mm512_or_si512(low, _mm512_slli_epi16::<4>(high));
                    }
                }
                return wz;
            }
            let qs = if kind == Kind::Q4K { 16 } else { 48 };
            for (c, v) in wz.iter_mut().enumerate() {
                *v = _mm512_and_si512(shr(both(qs + 32 * c), 0, 4), nib);
                if kind == Kind::Q5K {
                    let bit =
                        _mm512_and_si512(shr(both(16), 2 * c, 2 * c + 1), _mm512_set1_epi8(1));
                    *v = _mm512_or_si512(*v, _mm512_slli_epi16::<4>(bit));
                }
            }
            wz
        }
    }

    /// [`superblock_row`] on [`values_k512`]'s registers: 16 lanes whose sum is the product.
    /// Q6_K's per-half scales multiply the 16-bit pair sums (`vpmaddwd`), as llama.cpp does.
    #[inline(always)]
    unsafe fn superblock_row512(
        kind: Kind,
        blk: *const u8,
        wz: &[__m512i; 4],
        x: &Q8Rows,
        i: usize,
    ) -> __m512 {
        unsafe {
            let xd = _mm256_loadu_ps(x.d.as_ptr().add(i));
            let xz = |p: usize| _mm512_loadu_si512(x.qs.as_ptr().add((i + 2 * p) * QK) as *const _);
            // lanes 0–7 from lane 2p of `v`, 8–15 from lane 2p + 1
            let pair =
                |v: __m512, p: usize| _mm512_permutexvar_ps(lanes16(|l| (2 * p + l / 8) as i32), v);
            let mut prod = [_mm512_setzero_ps(); 4];
            let mut sum = _mm512_setzero_ps();
            if kind == Kind::Q6K {
                let d = _mm512_castps256_ps512(_mm256_mul_ps(
                    _mm256_set1_ps(half_at(blk.add(208))),
                    xd,
                ));
                let sc = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                    blk.add(192) as *const __m128i,
                )));
                let off = _mm512_set1_epi8(32);
                for (p, prod) in prod.iter_mut().enumerate() {
                    let xv = xz(p);
                    let s = _mm512_sub_epi16(
                        _mm512_maddubs_epi16(wz[p], xv),
                        _mm512_maddubs_epi16(off, xv),
                    );
                    // 16-bit lanes 8h..8h+8 (half h of the 4 halves of blocks 2p, 2p + 1): scale 4p + h
                    let idx: [i16; 32] = std::array::from_fn(|l| (4 * p + l / 8) as i16);
                    let scale =
                        _mm512_permutexvar_epi16(_mm512_loadu_si512(idx.as_ptr() as *const _), sc);
                    *prod =
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(s, scale)), pair(d, p));
                }
            } else {
                let (scale, mins) = scales_mins_k4(blk, x, i, xd);
                let scale = _mm512_castps256_ps512(scale);
                sum = _mm512_zextps256_ps512(mins);
                for (p, prod) in prod.iter_mut().enumerate() {
                    let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wz[p], xz(p));
                    *prod = _mm512_mul_ps(_mm512_cvtepi32_ps(s), pair(scale, p));
                }
            }
            let q = _mm512_add_ps(
                _mm512_add_ps(prod[0], prod[1]),
                _mm512_add_ps(prod[2], prod[3]),
            );
            _mm512_add_ps(sum, q)
        }
    }

    /// [`row_dot_k_avx2`] with AVX-512 VNNI: two blocks per instruction.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c")]
    pub(super) unsafe fn row_dot_k512(kind: Kind, w: &[u8], x: &Q8Rows, o: &mut [f32]) {
        unsafe {
            let (bb, nb) = (kind.block_bytes(), x.nb);
            for r0 in (0..x.t).step_by(R) {
                let n = R.min(x.t - r0);
                let mut acc = [_mm512_setzero_ps(); R];
                for sb in 0..nb / 8 {
                    let blk = w.as_ptr().add(sb * bb);
                    let wz = values_k512(kind, blk);
                    for (k, acc) in acc[..n].iter_mut().enumerate() {
                        let i = (r0 + k) * nb + sb * 8;
                        *acc = _mm512_add_ps(*acc, superblock_row512(kind, blk, &wz, x, i));
                    }
                }
                for k in 0..n {
                    o[r0 + k] = _mm512_reduce_add_ps(acc[k]);
                }
            }
        }
    }

    /// Weight rows per tile: one 512-bit register holds a 4-byte group of each.
    const TILE: usize = 16;

    /// `acc[r·16 + j] += x[r] · w[j]` over every block, for the tile's (up to 16) weight
    /// rows at `w` (rows `rb` bytes apart) and every activation row. For each block, the
    /// tile's values are gathered into eight registers (4-value group `g` of each row in one
    /// register, as unsigned bytes `w + off`), then every activation row's group `g`,
    /// broadcast, is multiplied into them by `vpdpbusd`: 512 products per 8 instructions,
    /// scaled once. `bias[r·nb + b]` is `off · Σx` of that block.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c")]
    unsafe fn tile_vnni(
        kind: Kind,
        w: *const u8,
        rows: usize,
        rb: usize,
        x: &Q8Rows,
        bias: &[i32],
        acc: &mut [f32],
    ) {
        unsafe {
            let (nb, bb) = (x.nb, kind.block_bytes());
            // byte offset of each row's block 0 (rows past the tile's end repeat its last row)
            let row: [i32; TILE] = std::array::from_fn(|j| (j.min(rows - 1) * rb) as i32);
            let row = _mm512_loadu_si512(row.as_ptr() as *const _);
            let low = _mm512_set1_epi8(0x0F);
            let first = kind.values_at() as i32;
            for b in 0..nb {
                let at = _mm512_add_epi32(row, _mm512_set1_epi32((b * bb) as i32));
                let head = _mm512_i32gather_epi32::<1>(at, w as *const _);
                let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head));
                // Q4_1's minimum: the next half
                let mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(head, 16)));
                // 4 bytes at offset `first + 4k` of each row's block (a macro, not a closure: the
                // closure was not inlined, and its calls took half the time)
                macro_rules! group {
                    ($k:expr) => {
                        _mm512_i32gather_epi32::<1>(
                            _mm512_add_epi32(at, _mm512_set1_epi32(first + 4 * $k)),
                            w as *const _,
                        )
                    };
                }
                let mut wv = [_mm512_setzero_si512(); 8];
                match kind {
                    Kind::Q4_0 | Kind::Q4_1 => {
                        for k in 0..4 {
                            let q = group!(k as i32);
                            wv[k] = _mm512_and_si512(q, low);
                            wv[k + 4] = _mm512_and_si512(_mm512_srli_epi32(q, 4), low);
                        }
                    }
                    Kind::Q8_0 => {
                        let flip = _mm512_set1_epi8(-128);
                        for (k, v) in wv.iter_mut().enumerate() {
                            *v = _mm512_xor_si512(group!(k as i32), flip);
                        }
                    }
                    Kind::Q4K | Kind::Q5K | Kind::Q6K => unreachable!("tile_vnni_k"),
                }
                for r in 0..x.t {
                    let xp = x.qs.as_ptr().add((r * nb + b) * QK) as *const i32;
                    let mut s = _mm512_set1_epi32(-*bias.get_unchecked(r * nb + b));
                    for (g, v) in wv.iter().enumerate() {
                        s = _mm512_dpbusd_epi32(
                            s,
                            *v,
                            _mm512_set1_epi32(xp.add(g).read_unaligned()),
                        );
                    }
                    let i = r * nb + b;
                    let dx = *x.d.get_unchecked(i);
                    let scale = _mm512_mul_ps(dw, _mm512_set1_ps(dx));
                    let o = acc.as_mut_ptr().add(r * TILE);
                    let mut v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, _mm512_loadu_ps(o));
                    if kind == Kind::Q4_1 {
                        let m = _mm512_set1_ps(dx * *x.s.get_unchecked(i) as f32);
                        v = _mm512_fmadd_ps(mw, m, v);
                    }
                    _mm512_storeu_ps(o, v);
                }
            }
        }
    }

    /// `acc[r·16 + j] += Σ_g x[r] group g · wv[g]` scaled: one block of 32 values of the tile's
    /// rows (`wv`: 8 registers of unsigned bytes, see [`tile_vnni`]) against activation block
    /// `b` of every row, with per-row scale `dw` and minimum `mw` (Q4_K, Q5_K).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c")]
    unsafe fn block_k4(
        wv: &[__m512i; 8],
        dw: __m512,
        mw: __m512,
        b: usize,
        x: &Q8Rows,
        acc: &mut [f32],
    ) {
        unsafe {
            for r in 0..x.t {
                let i = r * x.nb + b;
                let xp = x.qs.as_ptr().add(i * QK) as *const i32;
                let mut s = _mm512_setzero_si512();
                for (g, v) in wv.iter().enumerate() {
                    s = _mm512_dpbusd_epi32(s, *v, _mm512_set1_epi32(xp.add(g).read_unaligned()));
                }
                let dx = *x.d.get_unchecked(i);
                let o = acc.as_mut_ptr().add(r * TILE);
                let v = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(s),
                    _mm512_mul_ps(dw, _mm512_set1_ps(dx)),
                    _mm512_loadu_ps(o),
                );
                let m = _mm512_set1_ps(dx * *x.s.get_unchecked(i) as f32);
                _mm512_storeu_ps(o, _mm512_fmadd_ps(mw, m, v));
            }
        }
    }

    /// [`block_k4`] for Q6_K: unsigned values `q` (the value is `q − 32`) whose halves have
    /// their own integer scales `sc_lo`, `sc_hi`; `half[2i + h]` is `32 · Σx` over half `h` of
    /// activation block `i`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block_q6(
        wv: &[__m512i; 8],
        sc_lo: __m512i,
        sc_hi: __m512i,
        d: __m512,
        b: usize,
        x: &Q8Rows,
        half: &[i32],
        acc: &mut [f32],
    ) {
        unsafe {
            for r in 0..x.t {
                let i = r * x.nb + b;
                let xp = x.qs.as_ptr().add(i * QK) as *const i32;
                let mut lo = _mm512_set1_epi32(-*half.get_unchecked(2 * i));
                let mut hi = _mm512_set1_epi32(-*half.get_unchecked(2 * i + 1));
                for g in 0..4 {
                    lo = _mm512_dpbusd_epi32(
                        lo,
                        wv[g],
                        _mm512_set1_epi32(xp.add(g).read_unaligned()),
                    );
                    hi = _mm512_dpbusd_epi32(
                        hi,
                        wv[g + 4],
                        _mm512_set1_epi32(xp.add(g + 4).read_unaligned()),
                    );
                }
                // |q − 32| · 127 · 16 · |sc| < 2^22 per half: the scaled sum fits in i32
                let s =
                    _mm512_add_epi32(_mm512_mullo_epi32(lo, sc_lo), _mm512_mullo_epi32(hi, sc_hi));
                let dx = *x.d.get_unchecked(i);
                let o = acc.as_mut_ptr().add(r * TILE);
                let v = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(s),
                    _mm512_mul_ps(d, _mm512_set1_ps(dx)),
                    _mm512_loadu_ps(o),
                );
                _mm512_storeu_ps(o, v);
            }
        }
    }

    /// The 4 bytes at `off` of each lane's super-block (`at`: their offsets from `w`).
    macro_rules! gather {
        ($w:expr, $at:expr, $off:expr) => {
            _mm512_i32gather_epi32::<1>(
                _mm512_add_epi32($at, _mm512_set1_epi32(($off) as i32)),
                $w as *const _,
            )
        };
    }
    /// Byte `i` (0..4) of each lane, shifted right by `sh` more bits.
    macro_rules! byte {
        ($v:expr, $i:expr, $sh:expr) => {
            _mm512_srlv_epi32($v, _mm512_set1_epi32((8 * ($i) + ($sh)) as i32))
        };
    }
    /// The half float in the low 16 bits of each lane, as f32.
    macro_rules! half_f32 {
        ($v:expr) => {
            _mm512_cvtph_ps(_mm512_cvtepi32_epi16($v))
        };
    }

    /// One Q6_K super-block of the tile (lanes at `at` from `w`) into every activation row.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c")]
    unsafe fn superblock_q6(
        w: *const u8,
        at: __m512i,
        sb: usize,
        x: &Q8Rows,
        half: &[i32],
        acc: &mut [f32],
    ) {
        unsafe {
            let (zero, nib) = (_mm512_setzero_si512(), _mm512_set1_epi8(0x0F));
            // d is the block's last half: the upper half of the 4 bytes at 206
            let d = half_f32!(_mm512_srli_epi32(gather!(w, at, 206), 16));
            let mut sc = [zero; 4];
            for (k, v) in sc.iter_mut().enumerate() {
                *v = gather!(w, at, 192 + 4 * k);
            }
            // signed scale j: byte j % 4 of sc[j / 4], moved to the top and back
            macro_rules! scale {
                ($j:expr) => {
                    _mm512_srai_epi32(
                        _mm512_sllv_epi32(
                            sc[$j / 4],
                            _mm512_set1_epi32((24 - 8 * ($j % 4)) as i32),
                        ),
                        24,
                    )
                };
            }
            for n in 0..2 {
                let (mut ql, mut qh) = ([[zero; 8]; 2], [zero; 8]);
                for g in 0..8 {
                    ql[0][g] = gather!(w, at, 64 * n + 4 * g);
                    ql[1][g] = gather!(w, at, 64 * n + 32 + 4 * g);
                    qh[g] = gather!(w, at, 128 + 32 * n + 4 * g);
                }
                for kk in 0..4 {
                    let mut wv = [zero; 8];
                    let (sl, sh) = (
                        _mm512_set1_epi32(4 * (kk / 2) as i32),
                        _mm512_set1_epi32(2 * kk as i32),
                    );
                    for g in 0..8 {
                        let low = _mm512_and_si512(_mm512_srlv_epi32(ql[kk % 2][g], sl), nib);
                        let high =
                            _mm512_and_si512(_mm512_srlv_epi32(qh[g], sh), _mm512_set1_epi8(3));
                        wv[g] = _mm512_or_si512(low, _mm512_slli_epi32(high, 4));
                    }
                    let k = 4 * n + kk;
                    block_q6(
                        &wv,
                        scale!(2 * k),
                        scale!(2 * k + 1),
                        d,
                        sb * 8 + k,
                        x,
                        half,
                        acc,
                    );
                }
            }
        }
    }

    /// One Q4_K or Q5_K super-block of the tile (lanes at `at` from `w`) into every
    /// activation row.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c")]
    unsafe fn superblock_k4(
        kind: Kind,
        w: *const u8,
        at: __m512i,
        sb: usize,
        x: &Q8Rows,
        acc: &mut [f32],
    ) {
        unsafe {
            let (zero, nib) = (_mm512_setzero_si512(), _mm512_set1_epi8(0x0F));
            let head = gather!(w, at, 0);
            let (d, dmin) = (half_f32!(head), half_f32!(_mm512_srli_epi32(head, 16)));
            let s = [gather!(w, at, 4), gather!(w, at, 8), gather!(w, at, 12)];
            let (m6, m4, m2) = (
                _mm512_set1_epi32(63),
                _mm512_set1_epi32(0x0F),
                _mm512_set1_epi32(3),
            );
            let mut qh = [zero; 8];
            if kind == Kind::Q5K {
                for (g, v) in qh.iter_mut().enumerate() {
                    *v = gather!(w, at, 16 + 4 * g);
                }
            }
            let qs0 = if kind == Kind::Q4K { 16 } else { 48 };
            // the top 2 bits of byte i, as bits 4–5
            macro_rules! top {
                ($v:expr, $i:expr) => {
                    _mm512_slli_epi32(_mm512_and_si512(byte!($v, $i, 6), m2), 4)
                };
            }
            for c in 0..4 {
                let mut q = [zero; 8];
                for (g, v) in q.iter_mut().enumerate() {
                    *v = gather!(w, at, qs0 + 32 * c + 4 * g);
                }
                for h in 0..2 {
                    let j = 2 * c + h;
                    let (nsh, bsh) = (_mm512_set1_epi32(4 * h as i32), _mm512_set1_epi32(j as i32));
                    let mut wv = [zero; 8];
                    for g in 0..8 {
                        wv[g] = _mm512_and_si512(_mm512_srlv_epi32(q[g], nsh), nib);
                        if kind == Kind::Q5K {
                            let bit = _mm512_and_si512(
                                _mm512_srlv_epi32(qh[g], bsh),
                                _mm512_set1_epi8(1),
                            );
                            wv[g] = _mm512_or_si512(wv[g], _mm512_slli_epi32(bit, 4));
                        }
                    }
                    // llama.cpp's get_scale_min_k4, 16 rows at once
                    let (sc, m) = if j < 4 {
                        (
                            _mm512_and_si512(byte!(s[0], j, 0), m6),
                            _mm512_and_si512(byte!(s[1], j, 0), m6),
                        )
                    } else {
                        let i = j - 4;
                        (
                            _mm512_or_si512(_mm512_and_si512(byte!(s[2], i, 0), m4), top!(s[0], i)),
                            _mm512_or_si512(_mm512_and_si512(byte!(s[2], i, 4), m4), top!(s[1], i)),
                        )
                    };
                    let dw = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
                    let mw = _mm512_sub_ps(
                        _mm512_setzero_ps(),
                        _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(m)),
                    );
                    block_k4(&wv, dw, mw, sb * 8 + j, x, acc);
                }
            }
        }
    }

    /// [`tile_vnni`] for the K-quants: per super-block, the tile's scales (and minimums) are
    /// decoded in registers, then each of its 8 blocks of 32 is gathered as 8 registers of
    /// unsigned bytes and multiplied into every activation row.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c")]
    unsafe fn tile_vnni_k(
        kind: Kind,
        w: *const u8,
        rows: usize,
        rb: usize,
        x: &Q8Rows,
        half: &[i32],
        acc: &mut [f32],
    ) {
        unsafe {
            let bb = kind.block_bytes();
            let row: [i32; TILE] = std::array::from_fn(|j| (j.min(rows - 1) * rb) as i32);
            let row = _mm512_loadu_si512(row.as_ptr() as *const _);
            for sb in 0..x.nb / 8 {
                let at = _mm512_add_epi32(row, _mm512_set1_epi32((sb * bb) as i32));
                if kind == Kind::Q6K {
                    superblock_q6(w, at, sb, x, half, acc);
                } else {
                    superblock_k4(kind, w, at, sb, x, acc);
                }
            }
        }
    }

    /// [`super::matmul`] for many activation rows: tiles of 16 weight rows across the thread
    /// pool, each multiplied with every activation row.
    pub(super) fn gemm_vnni(kind: Kind, bytes: &[u8], rows: usize, x: &Q8Rows, dst: &mut [f32]) {
        use rayon::prelude::*;
        let rb = kind.row_bytes(x.nb);
        // Q4_0, Q8_0: off · Σx per activation block, what the unsigned weights add to each
        // sum; Q6_K: 32 · Σx per half block.
        let bias: Vec<i32> = match kind {
            Kind::Q4_0 => x.s.iter().map(|s| 8 * s).collect(),
            Kind::Q8_0 => x.s.iter().map(|s| 128 * s).collect(),
            Kind::Q6K => {
                x.qs.chunks_exact(16)
                    .map(|h| 32 * h.iter().map(|&v| v as i32).sum::<i32>())
                    .collect()
            }
            Kind::Q4_1 | Kind::Q4K | Kind::Q5K => vec![0; x.s.len()],
        };
        let tiles: Vec<Vec<f32>> = (0..rows.div_ceil(TILE))
            .into_par_iter()
            .map(|i| {
                let j0 = i * TILE;
                let n = TILE.min(rows - j0);
                let tile = &bytes[j0 * rb..(j0 + n) * rb];
                let mut acc = vec![0f32; x.t * TILE];
                // SAFETY: `has_gemm` (through `isa`) detected these features; every gathered
                // 4 bytes lie inside one block of one of the tile's `n` rows.
                unsafe {
                    if kind.subs() > 1 {
                        tile_vnni_k(kind, tile.as_ptr(), n, rb, x, &bias, &mut acc)
                    } else {
                        tile_vnni(kind, tile.as_ptr(), n, rb, x, &bias, &mut acc)
                    }
                };
                acc
            })
            .collect();
        for (i, acc) in tiles.iter().enumerate() {
            let j0 = i * TILE;
            let n = TILE.min(rows - j0);
            for r in 0..x.t {
                dst[r * rows + j0..r * rows + j0 + n].copy_from_slice(&acc[r * TILE..r * TILE + n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [Kind; 6] = [
        Kind::Q4_0,
        Kind::Q4_1,
        Kind::Q8_0,
        Kind::Q4K,
        Kind::Q5K,
        Kind::Q6K,
    ];

    /// Random blocks of `kind`: small positive half scales (and minimums of either sign),
    /// every other byte random.
    fn blocks(kind: Kind, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut out = Vec::new();
        for _ in 0..rows * cols / QK / kind.subs() {
            let mut blk: Vec<u8> = (0..kind.block_bytes()).map(|_| next() as u8).collect();
            let mut put = |at: usize, v: f32| {
                blk[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes())
            };
            let d = 0.01 + (next() % 100) as f32 * 1e-4;
            let m = (next() % 100) as f32 * 1e-3 - 0.05;
            match kind {
                Kind::Q6K => put(208, d / 16.0),
                Kind::Q4K | Kind::Q5K => {
                    put(0, d / 16.0);
                    put(2, m.abs() / 16.0);
                }
                _ => {
                    put(0, d);
                    if kind == Kind::Q4_1 {
                        put(2, m);
                    }
                }
            }
            out.extend(blk);
        }
        out
    }

    /// Our reading of each layout equals candle's dequantisation (a port of llama.cpp's).
    #[test]
    fn blocks_decode_as_candle_dequantises_them() {
        use candle_core::quantized::k_quants::*;
        fn deq<T: GgmlType>(bytes: &[u8], n: usize) -> Vec<f32> {
            let blocks = unsafe {
                std::slice::from_raw_parts(
                    bytes.as_ptr() as *const T,
                    bytes.len() / std::mem::size_of::<T>(),
                )
            };
            let mut out = vec![0f32; n];
            T::to_float(blocks, &mut out);
            out
        }
        let cols = 512;
        for kind in KINDS {
            let w = blocks(kind, 3, cols, 5);
            let want = match kind {
                Kind::Q4_0 => deq::<BlockQ4_0>(&w, 3 * cols),
                Kind::Q4_1 => deq::<BlockQ4_1>(&w, 3 * cols),
                Kind::Q8_0 => deq::<BlockQ8_0>(&w, 3 * cols),
                Kind::Q4K => deq::<BlockQ4K>(&w, 3 * cols),
                Kind::Q5K => deq::<BlockQ5K>(&w, 3 * cols),
                Kind::Q6K => deq::<BlockQ6K>(&w, 3 * cols),
            };
            for (b, chunk) in want.chunks_exact(QK).enumerate() {
                let blk = &w[b / kind.subs() * kind.block_bytes()..];
                let Sub { v, lo, hi, min } = sub(kind, blk, b % kind.subs());
                for (j, &e) in chunk.iter().enumerate() {
                    let g = v[j] as f32 * if j < 16 { lo } else { hi } + min;
                    assert!(
                        (g - e).abs() <= 1e-6 * e.abs().max(1e-3),
                        "{kind:?} block {b} value {j}: {g} vs {e}"
                    );
                }
            }
        }
    }

    /// f64 sums of the integer products of each block, scaled: what every kernel computes.
    fn integer_reference(kind: Kind, w: &[u8], rows: usize, q: &Q8Rows) -> Vec<f64> {
        let rb = kind.row_bytes(q.nb);
        let mut want = vec![0f64; q.t * rows];
        for j in 0..rows {
            for r in 0..q.t {
                let mut s = 0f64;
                for b in 0..q.nb {
                    let blk = &w[j * rb + b / kind.subs() * kind.block_bytes()..];
                    let Sub { v, lo, hi, min } = sub(kind, blk, b % kind.subs());
                    let xq = &q.qs[(r * q.nb + b) * QK..(r * q.nb + b + 1) * QK];
                    let dot = |h: std::ops::Range<usize>| -> f64 {
                        h.map(|i| v[i] as i64 * xq[i] as i64).sum::<i64>() as f64
                    };
                    let sx: i64 = xq.iter().map(|&c| c as i64).sum();
                    s += q.d[r * q.nb + b] as f64
                        * (lo as f64 * dot(0..16)
                            + hi as f64 * dot(16..32)
                            + min as f64 * sx as f64);
                }
                want[r * rows + j] = s;
            }
        }
        want
    }

    /// Every instruction set gives the integer sums of the portable loop, and the products
    /// are the exact dot products of the quantised values.
    #[test]
    fn every_instruction_set_matches_the_plain_integer_dot_product() {
        let (rows, cols, t) = (37, 512, 7);
        let x: Vec<f32> = (0..t * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let q = quantize_rows(&x, t, cols);
        for kind in KINDS {
            let w = blocks(kind, rows, cols, 42);
            let rb = kind.row_bytes(q.nb);
            let want = integer_reference(kind, &w, rows, &q);
            let mut isas = vec![Isa::Portable];
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx2") && has!("fma") && has!("f16c") {
                    isas.push(Isa::Avx2);
                }
                if has_gemm() {
                    isas.push(Isa::Vnni);
                }
            }
            for isa in isas {
                let mut o = vec![0f32; t];
                for j in 0..rows {
                    row_dot(isa, kind, &w[j * rb..(j + 1) * rb], &q, &mut o);
                    for r in 0..t {
                        let (g, e) = (o[r] as f64, want[r * rows + j]);
                        assert!(
                            (g - e).abs() <= 1e-5 * e.abs().max(1.0),
                            "{kind:?} row {j} x {r}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }

    /// The product of a whole matrix (the tile kernel for many rows, the K-quants' row kernel
    /// for one) gives the portable row kernel's results (both exact integer sums per block),
    /// for tiles cut short at the end of the matrix too.
    #[test]
    fn the_matrix_product_matches_the_portable_row_kernel_at_decode_and_prefill_sizes() {
        for t in [1, 2, 23] {
            matrix_product_matches_portable(t);
        }
    }

    fn matrix_product_matches_portable(t: usize) {
        let (rows, cols) = (37, 512);
        let x: Vec<f32> = (0..t * cols)
            .map(|i| ((i * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let q = quantize_rows(&x, t, cols);
        for kind in KINDS {
            let w = blocks(kind, rows, cols, 9);
            let rb = kind.row_bytes(q.nb);
            let mut got = vec![0f32; t * rows];
            matmul(kind, &w, rows, &q, &mut got);
            let mut o = vec![0f32; t];
            for j in 0..rows {
                row_dot(Isa::Portable, kind, &w[j * rb..(j + 1) * rb], &q, &mut o);
                for r in 0..t {
                    let (g, e) = (got[r * rows + j], o[r]);
                    assert!(
                        (g - e).abs() <= 1e-5 * e.abs().max(1.0),
                        "{kind:?} row {j} x {r}: {g} vs {e}"
                    );
                }
            }
        }
    }

    /// Quantising then multiplying stays within a few percent of the f32 product.
    #[test]
    fn the_int8_product_is_close_to_the_float_one() {
        let (rows, cols, t) = (16, 512, 3);
        let x: Vec<f32> = (0..t * cols)
            .map(|i| ((i * 31) % 97) as f32 / 48.0 - 1.0)
            .collect();
        let w = blocks(Kind::Q8_0, rows, cols, 7);
        let q = quantize_rows(&x, t, cols);
        let mut dst = vec![0f32; t * rows];
        matmul(Kind::Q8_0, &w, rows, &q, &mut dst);
        let rb = cols / QK * 34;
        let (mut err, mut norm) = (0f64, 0f64);
        for r in 0..t {
            for j in 0..rows {
                let mut s = 0f64;
                for b in 0..cols / QK {
                    let blk = &w[j * rb + b * 34..];
                    let Sub { v, lo, .. } = sub(Kind::Q8_0, blk, 0);
                    for i in 0..QK {
                        s += lo as f64 * v[i] as f64 * x[r * cols + b * QK + i] as f64;
                    }
                }
                err += (dst[r * rows + j] as f64 - s).powi(2);
                norm += s * s;
            }
        }
        let rel = (err / norm).sqrt();
        assert!(rel < 0.02, "relative error {rel}");
    }
}
