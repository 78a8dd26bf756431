//! Integer products for `Compute::Fast` with Q4_0, Q4_1 and Q8_0 weights, llama.cpp's approach:
//! each activation row is quantised to blocks of 32 signed bytes with one f32 scale, and each
//! weight block is multiplied with it by integer multiply-adds, scaled once per block.
//! Chosen at run time:
//! - AVX-512 VNNI: tiles of 16 weight rows gathered into registers (one 4-value group of each
//!   row per register) and multiplied with every activation row by `vpdpbusd` — 512 products
//!   per 8 instructions, for decode and prefill alike;
//! - AVX2: one weight row at a time against up to 16 activation rows (`vpmaddubsw`); larger
//!   products are faster dequantised, so `Matrix` runs them `Exact`;
//! - elsewhere a portable loop, for the same few rows.
//!
//! All give the same integer sums per block; they differ only in the order of the float
//! additions across blocks.
//!
//! Candle's port of llama.cpp's kernels (which `Fast` still uses for the K-quants) converts each
//! block's half-float scale through a function call, which cost more than the block's
//! products.

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
}

impl Kind {
    fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_0 => 18,
            Kind::Q4_1 => 20,
            Kind::Q8_0 => 34,
        }
    }

    /// Where the block's values start.
    fn values_at(self) -> usize {
        match self {
            Kind::Q4_1 => 4,
            _ => 2,
        }
    }

    /// The block's minimum (`Q4_1`), else 0.
    fn min(self, b: &[u8]) -> f32 {
        match self {
            Kind::Q4_1 => half(&b[2..]),
            _ => 0.0,
        }
    }
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
    let rb = x.nb * kind.block_bytes();
    assert!(
        bytes.len() == rows * rb && dst.len() == x.t * rows,
        "qdot::matmul: shapes"
    );
    let isa = isa();
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Vnni) {
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
        Isa::Vnni | Isa::Avx2 => unsafe { x86::row_dot_avx2(kind, w, x, o) },
        Isa::Portable => row_dot_portable(kind, w, x, o),
    }
}

fn half(b: &[u8]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

/// Signed weight values of one block.
fn unpack(kind: Kind, b: &[u8]) -> [i8; QK] {
    let mut v = [0i8; QK];
    match kind {
        Kind::Q4_0 | Kind::Q4_1 => {
            let (at, off) = (kind.values_at(), if kind == Kind::Q4_0 { 8 } else { 0 });
            for j in 0..16 {
                v[j] = (b[at + j] & 0x0F) as i8 - off;
                v[j + 16] = (b[at + j] >> 4) as i8 - off;
            }
        }
        Kind::Q8_0 => {
            for j in 0..QK {
                v[j] = b[2 + j] as i8;
            }
        }
    }
    v
}

fn row_dot_portable(kind: Kind, w: &[u8], x: &Q8Rows, o: &mut [f32]) {
    let bb = kind.block_bytes();
    o.fill(0.0);
    for (b, blk) in w.chunks_exact(bb).enumerate() {
        let (dw, mw, wv) = (half(blk), kind.min(blk), unpack(kind, blk));
        for (r, acc) in o.iter_mut().enumerate() {
            let i = r * x.nb + b;
            let xq = &x.qs[i * QK..(i + 1) * QK];
            let s: i32 = wv.iter().zip(xq).map(|(&a, &c)| a as i32 * c as i32).sum();
            *acc += dw * x.d[i] * s as f32 + mw * x.d[i] * x.s[i] as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Kind, Q8Rows, QK};
    use std::arch::x86_64::*;

    /// Activation rows per pass over a weight row: their accumulators stay in registers.
    const R: usize = 4;

    /// A weight block's signed values, and their half-float scale as f32.
    #[inline(always)]
    unsafe fn load_block(kind: Kind, b: *const u8) -> (__m256i, f32) {
        unsafe {
            let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                (b as *const u16).read_unaligned() as i32,
            )));
            let v = match kind {
                Kind::Q4_0 | Kind::Q4_1 => {
                    let q = _mm_loadu_si128(b.add(kind.values_at()) as *const __m128i);
                    let both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
                    let nib = _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
                    let off = if kind == Kind::Q4_0 { 8 } else { 0 };
                    _mm256_sub_epi8(nib, _mm256_set1_epi8(off))
                }
                Kind::Q8_0 => _mm256_loadu_si256(b.add(2) as *const __m256i),
            };
            (v, d)
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
                    let bb = kind.block_bytes();
                    let nb = x.nb;
                    let mut r0 = 0;
                    while r0 < x.t {
                        let n = R.min(x.t - r0);
                        let mut acc = [_mm256_setzero_ps(); R];
                        let mut mins = [0f32; R];
                        for b in 0..nb {
                            let blk = w.as_ptr().add(b * bb);
                            let (wv, dw) = load_block(kind, blk);
                            let mw = kind.min(std::slice::from_raw_parts(blk, bb));
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
                                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), s, acc[k]);
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

    /// [`super::matmul`] for many activation rows: tiles of 16 weight rows across the thread
    /// pool, each multiplied with every activation row.
    pub(super) fn gemm_vnni(kind: Kind, bytes: &[u8], rows: usize, x: &Q8Rows, dst: &mut [f32]) {
        use rayon::prelude::*;
        let rb = x.nb * kind.block_bytes();
        // off · Σx per activation block: what the unsigned weights add to each sum.
        let off = match kind {
            Kind::Q4_0 => 8,
            Kind::Q4_1 => 0,
            Kind::Q8_0 => 128,
        };
        let bias: Vec<i32> = x.s.iter().map(|s| off * s).collect();
        let tiles: Vec<Vec<f32>> = (0..rows.div_ceil(TILE))
            .into_par_iter()
            .map(|i| {
                let j0 = i * TILE;
                let n = TILE.min(rows - j0);
                let tile = &bytes[j0 * rb..(j0 + n) * rb];
                let mut acc = vec![0f32; x.t * TILE];
                // SAFETY: `has_gemm` (through `isa`) detected these features; every gathered
                // 4 bytes lie inside one block of one of the tile's `n` rows.
                unsafe { tile_vnni(kind, tile.as_ptr(), n, rb, x, &bias, &mut acc) };
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

    fn blocks(kind: Kind, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut out = Vec::new();
        for _ in 0..rows * cols / QK {
            let d = half::f16::from_f32(0.01 + (next() % 100) as f32 * 1e-4);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
            if kind == Kind::Q4_1 {
                let m = half::f16::from_f32((next() % 100) as f32 * 1e-3 - 0.05);
                out.extend_from_slice(&m.to_bits().to_le_bytes());
            }
            let n = kind.block_bytes() - kind.values_at();
            out.extend((0..n).map(|_| next() as u8));
        }
        out
    }

    /// Every instruction set gives the integer sums of the portable loop, and the products
    /// are the exact dot products of the quantised values.
    #[test]
    fn every_instruction_set_matches_the_plain_integer_dot_product() {
        let (rows, cols, t) = (37, 256, 7);
        let x: Vec<f32> = (0..t * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let q = quantize_rows(&x, t, cols);
        for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q8_0] {
            let w = blocks(kind, rows, cols, 42);
            let rb = cols / QK * kind.block_bytes();
            // reference: f64 sums of dequantised values
            let mut want = vec![0f64; t * rows];
            for j in 0..rows {
                for r in 0..t {
                    let mut s = 0f64;
                    for b in 0..cols / QK {
                        let blk = &w[j * rb + b * kind.block_bytes()..];
                        let wv = unpack(kind, blk);
                        let xq = &q.qs[(r * q.nb + b) * QK..(r * q.nb + b + 1) * QK];
                        let dot: i64 = wv.iter().zip(xq).map(|(&a, &c)| a as i64 * c as i64).sum();
                        let sx: i64 = xq.iter().map(|&c| c as i64).sum();
                        s += q.d[r * q.nb + b] as f64
                            * (half(blk) as f64 * dot as f64 + kind.min(blk) as f64 * sx as f64);
                    }
                    want[r * rows + j] = s;
                }
            }
            let mut isas = vec![Isa::Portable];
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx2") && has!("fma") && has!("f16c") {
                    isas.push(Isa::Avx2);
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

    /// The tile kernel for many rows gives the row kernel's results (both exact integer sums
    /// per block), for tiles cut short at the end of the matrix too.
    #[test]
    fn the_many_row_kernel_matches_the_row_kernel() {
        if !has_gemm() {
            eprintln!("no AVX-512 VNNI here: the many-row kernel is not used");
            return;
        }
        let (rows, cols, t) = (37, 256, 23);
        let x: Vec<f32> = (0..t * cols)
            .map(|i| ((i * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let q = quantize_rows(&x, t, cols);
        for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q8_0] {
            let w = blocks(kind, rows, cols, 9);
            let rb = cols / QK * kind.block_bytes();
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
                    let wv = unpack(Kind::Q8_0, blk);
                    for i in 0..QK {
                        s += half(blk) as f64 * wv[i] as f64 * x[r * cols + b * QK + i] as f64;
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
