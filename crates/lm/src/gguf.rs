//! GGUF files (llama.cpp): config from metadata, weight matrices kept in their block types in
//! the memory-mapped file (small tensors dequantized to f32 by candle), and the tokenizer and
//! chat template from `tokenizer.*` metadata.

use crate::config::{Act, Arch, Config, Features, Llama3Scaling};
use crate::error::{LmError, Result};
use crate::matrix::{self, Bytes, Matrix};
use crate::weights::{decode_floats, Float, TensorSource};
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::quantized::GgmlDType;
use memmap2::Mmap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) struct Gguf {
    pub path: PathBuf,
    pub content: Content,
    map: Arc<Mmap>,
    arch: Arch,
    heads: (usize, usize),
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| LmError::io(path, e))?;
        // SAFETY: the file is only read; as with every mmap-based loader, it must not be
        // truncated by another process while we decode it.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| LmError::io(path, e))?;
        if alignment_is_zero(&map) {
            // candle divides by it (a panic); say what is wrong instead.
            return Err(LmError::format(
                path,
                "metadata 'general.alignment' is 0, expected a positive alignment (like 32)",
            ));
        }
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| {
            LmError::format(
                path,
                format!("not a readable GGUF file: {}", crate::error::candle_msg(&e)),
            )
        })?;
        let arch_name = get_str(&content, path, "general.architecture")?;
        let arch = match arch_name.as_str() {
            // llama.cpp writes Mistral 7B as "llama" (without its sliding window)
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma2" => Arch::Gemma2,
            "gemma3" => Arch::Gemma3,
            "phi3" => Arch::Phi3,
            other => {
                return Err(LmError::Unsupported {
                    path: path.into(),
                    what: format!(
                        "architecture '{other}' (supported: llama (Llama, Mistral), qwen2, \
                         qwen3, gemma2, gemma3, phi3)"
                    ),
                })
            }
        };
        check_disjoint(path, &content)?;
        Ok(Gguf {
            path: path.into(),
            content,
            map: Arc::new(map),
            arch,
            heads: (0, 0),
        })
    }

    pub fn config(&mut self) -> Result<Config> {
        let a = self.arch.name();
        let c = &self.content;
        let p = &self.path;
        let u = |k: &str| get_usize(c, p, &format!("{a}.{k}"));
        let hidden_size = u("embedding_length")?;
        let num_heads = u("attention.head_count")?;
        let num_kv_heads = match c.metadata.get(&format!("{a}.attention.head_count_kv")) {
            Some(_) => u("attention.head_count_kv")?,
            None => num_heads,
        };
        let head_dim = match c.metadata.get(&format!("{a}.attention.key_length")) {
            Some(_) => u("attention.key_length")?,
            // 0 heads is reported by validate(), not a division by zero here.
            None => hidden_size.checked_div(num_heads).unwrap_or(0),
        };
        let embd = self
            .content
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| LmError::format(p, "missing tensor 'token_embd.weight'"))?;
        let vocab_size = embd.shape.dims().first().copied().unwrap_or(0);
        let f = |k: &str, default: f64| -> Result<f64> {
            Ok(self.meta_f64(&format!("{a}.{k}"))?.unwrap_or(default))
        };
        let rope_theta = f("rope.freq_base", 10_000.0)?;
        let rms_norm_eps = f("attention.layer_norm_rms_epsilon", 1e-6)?;
        let max_position_embeddings = u("context_length").unwrap_or(4096);
        // llama.cpp stores Llama 3 scaling as a precomputed `rope_freqs` tensor; we take the
        // scaling parameters from metadata when they are there and reject the tensor otherwise
        // rather than silently ignoring it.
        let rope_scaling = if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            let factor = f("rope.scaling.factor", 0.0)?;
            if factor <= 0.0 {
                return Err(LmError::Unsupported {
                    path: p.clone(),
                    what: "rope_freqs tensor without rope.scaling.factor metadata".into(),
                });
            }
            Some(Llama3Scaling {
                factor,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: f("rope.scaling.original_context_length", 8192.0)?
                    as usize,
            })
        } else {
            None
        };
        let tie_word_embeddings = !self.content.tensor_infos.contains_key("output.weight");
        let num_layers = u("block_count")?;
        let features = self.features(num_layers, num_heads, hidden_size, head_dim)?;
        let cfg = Config {
            arch: self.arch,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings,
            tie_word_embeddings,
            features,
        };
        cfg.validate().map_err(|m| LmError::format(p, m))?;
        self.heads = (num_heads, num_kv_heads);
        Ok(cfg)
    }

    fn meta_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(v) => v
                .to_f64()
                .or_else(|_| v.to_f32().map(f64::from))
                .map(Some)
                .map_err(|e| {
                    LmError::format(
                        &self.path,
                        format!("metadata '{key}': {}", crate::error::candle_msg(&e)),
                    )
                }),
        }
    }

    /// What the family adds to the Llama block, from metadata and llama.cpp's fixed choices
    /// per architecture (Gemma's window patterns and local RoPE base, its attention scale).
    fn features(&self, nl: usize, heads: usize, d: usize, hd: usize) -> Result<Features> {
        let a = self.arch.name();
        let p = &self.path;
        let mut f = Features::default();
        let window = match self
            .content
            .metadata
            .get(&format!("{a}.attention.sliding_window"))
        {
            Some(_) => Some(get_usize(
                &self.content,
                p,
                &format!("{a}.attention.sliding_window"),
            )?),
            None => None,
        };
        let has = |t: &str| self.content.tensor_infos.contains_key(t);
        match self.arch {
            Arch::Llama | Arch::Qwen2 | Arch::Qwen3 => {
                f.qk_norm = self.arch == Arch::Qwen3;
                if window.is_some() {
                    return Err(LmError::Unsupported {
                        path: p.clone(),
                        what: format!("metadata '{a}.attention.sliding_window' for {a}"),
                    });
                }
            }
            Arch::Phi3 => {
                f.sliding_window = window;
                if has("rope_factors_short.weight") || has("rope_factors_long.weight") {
                    return Err(LmError::Unsupported {
                        path: p.clone(),
                        what: "Phi-3 longrope factors in a GGUF file (the Hugging Face \
                               directory of a longrope model runs)"
                            .into(),
                    });
                }
            }
            Arch::Gemma2 | Arch::Gemma3 => {
                self.gemma_features(&mut f, window, (nl, heads, d, hd))?
            }
            Arch::Mistral => unreachable!("GGUF files name Mistral 'llama'"),
        }
        Ok(f)
    }

    /// Gemma 2's and Gemma 3's block (`f` starts as the Llama block's): sliding layers and
    /// their RoPE base, sandwich norms, GeGLU, scaled embeddings and queries, and Gemma 2's
    /// soft-capping or Gemma 3's q/k norms and RoPE scaling.
    fn gemma_features(
        &self,
        f: &mut Features,
        window: Option<usize>,
        (nl, heads, d, hd): (usize, usize, usize, usize),
    ) -> Result<()> {
        let a = self.arch.name();
        let p = &self.path;
        let gemma3 = self.arch == Arch::Gemma3;
        // llama.cpp's defaults: Gemma 2 slides over 4096 keys on every other layer;
        // Gemma 3 slides only when the file gives a window, on 5 layers of 6.
        f.sliding_window = if gemma3 {
            window.filter(|&w| w > 0)
        } else {
            Some(window.unwrap_or(4096))
        };
        if f.sliding_window.is_some() {
            f.sliding_layers = self.swa_pattern(nl, if gemma3 { 6 } else { 2 })?;
        }
        f.sandwich_norms = true;
        f.act = Act::GeluTanh;
        f.embed_scale = Some((d as f64).sqrt() as f32);
        // llama.cpp: the 27B models scale queries by (d / heads)^-0.5, the others by
        // head_dim^-0.5 (query_pre_attn_scalar is not in the file).
        let big = nl == if gemma3 { 62 } else { 46 };
        f.query_pre_attn_scalar = Some(if big { (d / heads) as f64 } else { hd as f64 });
        let local = self.meta_f64(&format!("{a}.rope.freq_base_swa"))?;
        if gemma3 {
            f.qk_norm = true;
            f.rope_local_theta = Some(local.unwrap_or(10_000.0));
            match self.content.metadata.get(&format!("{a}.rope.scaling.type")) {
                None => {}
                Some(Value::String(t)) if t == "none" => {}
                Some(Value::String(t)) if t == "linear" => {
                    f.rope_linear_factor = self.meta_f64(&format!("{a}.rope.scaling.factor"))?;
                }
                Some(v) => {
                    return Err(LmError::Unsupported {
                        path: p.clone(),
                        what: format!("{a}.rope.scaling.type {v:?} (supported: linear)"),
                    })
                }
            }
        } else {
            f.rope_local_theta = local;
            f.attn_softcap = self
                .meta_f64(&format!("{a}.attn_logit_softcapping"))?
                .map(|x| x as f32);
            f.final_softcap = self
                .meta_f64(&format!("{a}.final_logit_softcapping"))?
                .map(|x| x as f32);
        }
        Ok(())
    }

    /// Which layers slide: `attention.sliding_window_pattern` as a period or per-layer flags,
    /// else the family's period (the last layer of each period is global).
    fn swa_pattern(&self, nl: usize, period: usize) -> Result<Vec<bool>> {
        let key = format!("{}.attention.sliding_window_pattern", self.arch.name());
        let period = match self.content.metadata.get(&key) {
            None => period,
            Some(Value::Array(a)) if a.len() == nl => {
                return a
                    .iter()
                    .map(|v| match v {
                        Value::Bool(b) => Ok(*b),
                        _ => Err(LmError::format(
                            &self.path,
                            format!("metadata '{key}' holds a non-boolean"),
                        )),
                    })
                    .collect()
            }
            Some(_) => get_usize(&self.content, &self.path, &key)?.max(1),
        };
        Ok((0..nl).map(|i| (i + 1) % period != 0).collect())
    }

    fn gguf_name(&self, hf: &str) -> Option<String> {
        let gemma = matches!(self.arch, Arch::Gemma2 | Arch::Gemma3);
        let map = |s: &str| -> Option<&'static str> {
            Some(match s {
                "input_layernorm.weight" => "attn_norm.weight",
                "self_attn.q_proj.weight" => "attn_q.weight",
                "self_attn.k_proj.weight" => "attn_k.weight",
                "self_attn.v_proj.weight" => "attn_v.weight",
                "self_attn.qkv_proj.weight" => "attn_qkv.weight",
                "self_attn.q_proj.bias" => "attn_q.bias",
                "self_attn.k_proj.bias" => "attn_k.bias",
                "self_attn.v_proj.bias" => "attn_v.bias",
                "self_attn.q_norm.weight" => "attn_q_norm.weight",
                "self_attn.k_norm.weight" => "attn_k_norm.weight",
                "self_attn.o_proj.weight" => "attn_output.weight",
                "post_attention_layernorm.weight" if gemma => "post_attention_norm.weight",
                "post_attention_layernorm.weight" => "ffn_norm.weight",
                "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
                "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
                "mlp.gate_proj.weight" => "ffn_gate.weight",
                "mlp.up_proj.weight" => "ffn_up.weight",
                // Phi-3: gate|up fused in one tensor llama.cpp calls ffn_up
                "mlp.gate_up_proj.weight" => "ffn_up.weight",
                "mlp.down_proj.weight" => "ffn_down.weight",
                _ => return None,
            })
        };
        match hf {
            "model.embed_tokens.weight" => Some("token_embd.weight".into()),
            "model.norm.weight" => Some("output_norm.weight".into()),
            "lm_head.weight" => Some("output.weight".into()),
            _ => {
                let rest = hf.strip_prefix("model.layers.")?;
                let (i, tail) = rest.split_once('.')?;
                Some(format!("blk.{i}.{}", map(tail)?))
            }
        }
    }
}

impl Gguf {
    /// The tensor's info and its bytes in the file, checked to lie within it.
    fn raw(&self, gname: &str) -> Result<Option<(&TensorInfo, &[u8])>> {
        let Some(info) = self.content.tensor_infos.get(gname) else {
            return Ok(None);
        };
        let n = info.shape.elem_count();
        let (bs, ts) = (info.ggml_dtype.block_size(), info.ggml_dtype.type_size());
        let cols = info.shape.dims().last().copied().unwrap_or(1);
        if cols % bs != 0 {
            return Err(LmError::format(
                &self.path,
                format!(
                    "tensor '{gname}': rows of {cols} values do not divide into {:?} blocks of {bs}",
                    info.ggml_dtype
                ),
            ));
        }
        // Offsets and sizes come from the file: overflow must not wrap into a valid range.
        let start = (self.content.tensor_data_offset)
            .checked_add(info.offset)
            .and_then(|s| usize::try_from(s).ok());
        let len = (n / bs).checked_mul(ts);
        let range = start.zip(len).and_then(|(s, l)| Some(s..s.checked_add(l)?));
        let (start, len) = (
            range.as_ref().map_or(usize::MAX, |r| r.start),
            len.unwrap_or(usize::MAX),
        );
        match range.and_then(|r| self.map.get(r)) {
            Some(b) => Ok(Some((info, b))),
            None => Err(LmError::format(
                &self.path,
                format!(
                    "tensor '{gname}': its {len} bytes at offset {start} lie past the end of the \
                     {}-byte file (truncated?)",
                    self.map.len()
                ),
            )),
        }
    }
}

impl Gguf {
    /// convert_hf_to_gguf.py permutes Llama q/k rows for llama.cpp's interleaved RoPE; the
    /// heads of a tensor whose rows we read back in Hugging Face's order, so one rotate-half
    /// RoPE serves every source.
    fn rope_heads(&self, gname: &str) -> Option<usize> {
        match self.arch {
            Arch::Llama if gname.ends_with("attn_q.weight") || gname.ends_with("attn_q.bias") => {
                Some(self.heads.0)
            }
            Arch::Llama if gname.ends_with("attn_k.weight") || gname.ends_with("attn_k.bias") => {
                Some(self.heads.1)
            }
            _ => None,
        }
    }
}

impl TensorSource for Gguf {
    fn path(&self) -> &Path {
        &self.path
    }

    fn gemma_norms_plus_one(&self) -> bool {
        true
    }

    fn unused(&self, used: &std::collections::BTreeSet<String>) -> Option<String> {
        let used: std::collections::BTreeSet<String> =
            used.iter().filter_map(|n| self.gguf_name(n)).collect();
        let mut names: Vec<&String> = self.content.tensor_infos.keys().collect();
        names.sort();
        names
            .into_iter()
            // Llama 3's frequencies: read through rope.scaling metadata (see config)
            .find(|n| !used.contains(*n) && n.as_str() != "rope_freqs.weight")
            .cloned()
    }

    fn shape(&self, name: &str) -> Result<Option<Vec<usize>>> {
        let Some(gname) = self.gguf_name(name) else {
            return Ok(None);
        };
        Ok(self
            .raw(&gname)?
            .map(|(info, _)| info.shape.dims().to_vec()))
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let gname = self.gguf_name(name).unwrap_or_default();
        let Some((info, bytes)) = self.raw(&gname)? else {
            return Err(LmError::format(
                &self.path,
                format!("missing tensor '{gname}'"),
            ));
        };
        let kind = info.ggml_dtype;
        if !matrix::supports(kind) {
            return Err(LmError::Unsupported {
                path: self.path.clone(),
                what: format!(
                    "tensor '{gname}' of type {kind:?} (weight types we run: {})",
                    matrix::STORED_TYPES
                ),
            });
        }
        let start = bytes.as_ptr() as usize - self.map.as_ptr() as usize;
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = self.map.clone();
        let bytes = Bytes::new(owner, start..start + bytes.len()).expect("range within the map");
        let perm = self.rope_heads(&gname).map(|h| {
            let hd = rows / h;
            let mut p = vec![0u32; rows];
            for r in 0..rows {
                let (head, i, j) = (r / hd, (r % hd) / 2, r % 2);
                p[head * hd + j * (hd / 2) + i] = r as u32;
            }
            p
        });
        Matrix::stored(rows, cols, kind, bytes, perm)
            .map_err(|m| LmError::format(&self.path, format!("tensor '{gname}': {m}")))
    }

    fn read_into(&self, name: &str, dst: &mut [f32]) -> Result<()> {
        let gname = self.gguf_name(name).unwrap_or_default();
        let Some((info, bytes)) = self.raw(&gname)? else {
            return Err(LmError::format(
                &self.path,
                format!("missing tensor '{gname}'"),
            ));
        };
        let err = |m: String| LmError::format(&self.path, format!("tensor '{gname}': {m}"));
        let Some(h) = self.rope_heads(&gname) else {
            return dequantize(info.ggml_dtype, bytes, dst).map_err(err);
        };
        let rows = info.shape.dims()[0];
        let cols = dst.len() / rows;
        let row_bytes = bytes.len() / rows;
        let hd = rows / h;
        for r in 0..rows {
            let (head, i, j) = (r / hd, (r % hd) / 2, r % 2);
            let to = head * hd + j * (hd / 2) + i;
            dequantize(
                info.ggml_dtype,
                &bytes[r * row_bytes..(r + 1) * row_bytes],
                &mut dst[to * cols..(to + 1) * cols],
            )
            .map_err(err)?;
        }
        Ok(())
    }
}

/// Decodes GGUF tensor bytes of `dtype` into f32, straight into `out`.
fn dequantize(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> std::result::Result<(), String> {
    use candle_core::quantized::k_quants::*;
    fn blocks<T: GgmlType>(bytes: &[u8], out: &mut [f32]) -> std::result::Result<(), String> {
        let size = std::mem::size_of::<T>();
        if !out.len().is_multiple_of(T::BLCK_SIZE) || bytes.len() != out.len() / T::BLCK_SIZE * size
        {
            return Err(format!(
                "{} bytes do not hold {} values of {:?}",
                bytes.len(),
                out.len(),
                T::DTYPE
            ));
        }
        let n = bytes.len() / size;
        if (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
            // SAFETY: the pointer is aligned for T, the length is n whole blocks, and ggml
            // blocks are plain integers and half floats, valid for any bit pattern.
            let xs = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), n) };
            T::to_float(xs, out);
        } else {
            // GGUF aligns tensor data (32 bytes by default); copy when a file does not.
            let mut xs: Vec<T> = Vec::with_capacity(n);
            // SAFETY: as above; the destination has capacity for n blocks.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    xs.as_mut_ptr().cast::<u8>(),
                    bytes.len(),
                );
                xs.set_len(n);
            }
            T::to_float(&xs, out);
        }
        Ok(())
    }
    match dtype {
        GgmlDType::F32 => decode_floats(Float::F32, bytes, out),
        GgmlDType::F16 => decode_floats(Float::F16, bytes, out),
        GgmlDType::BF16 => decode_floats(Float::BF16, bytes, out),
        GgmlDType::Q4_0 => blocks::<BlockQ4_0>(bytes, out),
        GgmlDType::Q4_1 => blocks::<BlockQ4_1>(bytes, out),
        GgmlDType::Q5_0 => blocks::<BlockQ5_0>(bytes, out),
        GgmlDType::Q5_1 => blocks::<BlockQ5_1>(bytes, out),
        GgmlDType::Q8_0 => blocks::<BlockQ8_0>(bytes, out),
        GgmlDType::Q8_1 => blocks::<BlockQ8_1>(bytes, out),
        GgmlDType::Q2K => blocks::<BlockQ2K>(bytes, out),
        GgmlDType::Q3K => blocks::<BlockQ3K>(bytes, out),
        GgmlDType::Q4K => blocks::<BlockQ4K>(bytes, out),
        GgmlDType::Q5K => blocks::<BlockQ5K>(bytes, out),
        GgmlDType::Q6K => blocks::<BlockQ6K>(bytes, out),
        GgmlDType::Q8K => blocks::<BlockQ8K>(bytes, out),
    }
}

/// Walks the metadata of a GGUF file far enough to see whether `general.alignment` is an
/// integer 0. Anything malformed stops the walk (false): candle's reader reports it.
fn alignment_is_zero(b: &[u8]) -> bool {
    struct R<'a>(&'a [u8], usize, bool);
    impl R<'_> {
        fn take(&mut self, n: u64) -> Option<&[u8]> {
            let n = usize::try_from(n).ok()?;
            let end = self.1.checked_add(n)?;
            let s = self.0.get(self.1..end)?;
            self.1 = end;
            Some(s)
        }
        fn u32(&mut self) -> Option<u32> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        fn len(&mut self) -> Option<u64> {
            if self.2 {
                self.u32().map(u64::from)
            } else {
                self.u64()
            }
        }
        /// Skips a value; returns it when it is an integer.
        fn value(&mut self, ty: u32, depth: u32) -> Option<Option<u64>> {
            let size = match ty {
                0 | 1 | 7 => 1,
                2 | 3 => 2,
                4..=6 => 4,
                10..=12 => 8,
                8 => {
                    let n = self.len()?;
                    self.take(n)?;
                    return Some(None);
                }
                9 if depth < 8 => {
                    let (t, n) = (self.u32()?, self.len()?);
                    for _ in 0..n {
                        self.value(t, depth + 1)?;
                    }
                    return Some(None);
                }
                _ => return None,
            };
            let v = self.take(size)?;
            let mut x = [0u8; 8];
            x[..v.len()].copy_from_slice(v);
            Some((ty != 6 && ty != 12 && ty != 7).then_some(u64::from_le_bytes(x)))
        }
    }
    let mut r = R(b, 0, false);
    let mut walk = || -> Option<bool> {
        r.take(4)?;
        r.2 = r.u32()? == 1;
        r.len()?;
        let kvs = r.len()?;
        for _ in 0..kvs {
            let n = r.len()?;
            let key = r.take(n)?.to_vec();
            let ty = r.u32()?;
            let v = r.value(ty, 0)?;
            if key == b"general.alignment" {
                return Some(v == Some(0));
            }
        }
        Some(false)
    };
    walk().unwrap_or(false)
}

/// Tensors whose byte ranges overlap decode the same bytes twice: a crafted or corrupt file,
/// never what a writer produces. Each range is checked to lie in the file when it is read.
fn check_disjoint(path: &Path, c: &Content) -> Result<()> {
    let mut ranges: Vec<(u64, u64, &str)> = Vec::with_capacity(c.tensor_infos.len());
    for (name, info) in &c.tensor_infos {
        let (bs, ts) = (info.ggml_dtype.block_size(), info.ggml_dtype.type_size());
        let len = info
            .shape
            .dims()
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| (n / bs.max(1)).checked_mul(ts))
            .and_then(|l| u64::try_from(l).ok());
        let start = c.tensor_data_offset.checked_add(info.offset);
        let (Some(len), Some(start)) = (len, start) else {
            return Err(LmError::format(
                path,
                format!("tensor '{name}': its offset or size overflows"),
            ));
        };
        let Some(end) = start.checked_add(len) else {
            return Err(LmError::format(
                path,
                format!("tensor '{name}': its byte range overflows"),
            ));
        };
        ranges.push((start, end, name));
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        let ((_, a_end, a), (b_start, _, b)) = (w[0], w[1]);
        if b_start < a_end {
            return Err(LmError::format(
                path,
                format!(
                    "tensors '{a}' and '{b}' overlap: '{a}' ends at byte {a_end}, '{b}' starts \
                     at {b_start}; expected disjoint byte ranges (corrupt file?)"
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn get_str(c: &Content, path: &Path, key: &str) -> Result<String> {
    match c.metadata.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(LmError::format(
            path,
            format!(
                "metadata '{key}' has type {:?}, expected a string",
                v.value_type()
            ),
        )),
        None => Err(LmError::format(path, format!("missing metadata '{key}'"))),
    }
}

pub(crate) fn get_usize(c: &Content, path: &Path, key: &str) -> Result<usize> {
    let v = c
        .metadata
        .get(key)
        .ok_or_else(|| LmError::format(path, format!("missing metadata '{key}'")))?;
    let n = match v {
        Value::U8(x) => *x as i128,
        Value::I8(x) => *x as i128,
        Value::U16(x) => *x as i128,
        Value::I16(x) => *x as i128,
        Value::U32(x) => *x as i128,
        Value::I32(x) => *x as i128,
        Value::U64(x) => *x as i128,
        Value::I64(x) => *x as i128,
        _ => -1,
    };
    usize::try_from(n).map_err(|_| {
        LmError::format(
            path,
            format!("metadata '{key}' is {v:?}, expected a non-negative integer"),
        )
    })
}
