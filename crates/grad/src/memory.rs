//! How many prompts one traced (attribution) pass may hold: the tape of a traced forward grows
//! with every token and block it covers, so on a large model a prompt count that suits the
//! default one would not fit beside the weights.

use hd_lm::Config;

/// Bytes the traced forward keeps per token and per block: an upper bound, in f32s, of
/// 4·d + the q|k|v width + 2·the MLP width + 2·heads·context (attention scores and weights).
/// Calibrated on the default model (dir-label tokens through 29 blocks, 460 → 920 tokens per
/// pass: 21 KB per token and block measured, 30 KB by this bound).
pub fn traced_bytes_per_token(cfg: &Config, context: usize) -> u64 {
    let floats = 4 * cfg.hidden_size
        + cfg.qkv_width()
        + 2 * cfg.intermediate_size
        + 2 * cfg.num_heads * context;
    4 * floats as u64
}

/// Prompts per traced pass as the memory available allows (what a tool runs when not told
/// a batch size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracedBatch {
    /// Prompts per traced pass.
    pub batch: usize,
    /// Whether fewer than the tool's default were chosen because of memory.
    pub reduced: bool,
}

/// [`traced_batch`] for `model` on `seqs` through `blocks` blocks, with the memory this
/// process has ([`hd_lm::memory::available`]).
pub fn traced_batch_for(
    model: &hd_lm::Model,
    seqs: &[Vec<u32>],
    blocks: usize,
    default: usize,
) -> TracedBatch {
    let max_tokens = seqs.iter().map(Vec::len).max().unwrap_or(1);
    traced_batch(
        &model.config,
        model.weights.stored_bytes() as u64,
        blocks,
        max_tokens,
        default,
        hd_lm::memory::available(),
    )
}

/// Prompts per traced pass: `default`, or fewer (never below 1) when that many prompts of
/// `max_tokens` tokens through `blocks` blocks would not fit in `available` bytes beside
/// `weight_bytes` of weights, keeping a 1 GiB margin. `available` unknown: `default`.
pub fn traced_batch(
    cfg: &Config,
    weight_bytes: u64,
    blocks: usize,
    max_tokens: usize,
    default: usize,
    available: Option<u64>,
) -> TracedBatch {
    let Some(have) = available else {
        return TracedBatch {
            batch: default,
            reduced: false,
        };
    };
    let per_prompt = traced_bytes_per_token(cfg, max_tokens)
        .saturating_mul((max_tokens.max(1) * blocks.max(1)) as u64);
    let budget = have.saturating_sub(weight_bytes).saturating_sub(1 << 30);
    let fits = (budget / per_prompt.max(1)) as usize;
    let batch = fits.clamp(1, default.max(1));
    TracedBatch {
        batch,
        reduced: batch < default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama_8b() -> Config {
        let mut c = small_config();
        c.hidden_size = 4096;
        c.intermediate_size = 14336;
        c.num_layers = 32;
        c.num_heads = 32;
        c.num_kv_heads = 8;
        c.head_dim = 128;
        c
    }

    /// The default model's shape (SmolLM2-135M).
    fn small_config() -> Config {
        let mut c = hd_testkit::tiny_config(hd_lm::Arch::Llama, 49152, true);
        c.hidden_size = 576;
        c.intermediate_size = 1536;
        c.num_layers = 30;
        c.num_heads = 9;
        c.num_kv_heads = 3;
        c.head_dim = 64;
        c
    }

    #[test]
    fn default_model_keeps_its_default_batch_in_8_gb() {
        let c = small_config();
        let b = traced_batch(&c, 100 << 20, 30, 110, 32, Some(8 << 30));
        assert_eq!(
            b,
            TracedBatch {
                batch: 32,
                reduced: false
            }
        );
    }

    #[test]
    fn an_8b_model_gets_fewer_prompts_per_pass_within_16_gb() {
        let c = llama_8b();
        let weights = 4_660_000_000u64;
        let b = traced_batch(&c, weights, 32, 110, 32, Some(16 << 30));
        assert!(b.reduced && b.batch >= 1 && b.batch < 32, "{b:?}");
        // The chosen batch's tape fits the budget; one more prompt would not.
        let per = traced_bytes_per_token(&c, 110) * 110 * 32;
        let budget = (16u64 << 30) - weights - (1 << 30);
        assert!(per * b.batch as u64 <= budget && per * (b.batch as u64 + 1) > budget);
    }

    #[test]
    fn no_room_at_all_still_runs_one_prompt_and_unknown_memory_keeps_the_default() {
        let c = llama_8b();
        assert_eq!(
            traced_batch(&c, 5 << 30, 32, 110, 16, Some(1 << 30)).batch,
            1
        );
        assert_eq!(traced_batch(&c, 5 << 30, 32, 110, 16, None).batch, 16);
    }
}
