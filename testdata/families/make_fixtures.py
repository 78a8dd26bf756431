"""Makes the committed per-family parity fixtures (run through make_fixtures.sh).

For each family (Mistral with a sliding window, Qwen3, Gemma 2, Gemma 3, Phi-3) it builds a
small random model from the family's real config shape scaled down (transformers
`from_config`, fixed seed, 3-6 layers of width 64, a sliding window of 8 so ~30-token chat
prompts cross it), with a byte-level BPE tokenizer trained here on a few paragraphs (the
families' real tokenizers are megabytes) and the family's real chat template, and saves:

  <family>/hf/      config.json, model.safetensors (bf16 matrices, f32 norms), tokenizer files
  <family>/model.gguf   the same model through llama.cpp's converter (convert_hf_to_gguf.py
                        from the llama-cpp-python 0.3.36 sdist: LLAMA_CPP_DIR); its vocabulary
                        step is pointed at the byte-level tokenizer (pre-tokenizer "qwen2"),
                        everything else (tensor names, norm shifts, metadata) is the converter's
  <family>/ref.safetensors  transformers f32 (eager attention) on chat-templated prompts: token ids (ids.P),
                        hidden states of every layer at every position (hidden.P,
                        [L+1, n, d], output_hidden_states numbering), 20 greedy tokens (gen.P)
  <family>/ref.json     the prompts and apply_chat_template's text of each

Usage: python make_fixtures.py OUT_DIR LLAMA_CPP_DIR
"""
import json, os, subprocess, sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, Regex
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
import transformers

OUT = Path(sys.argv[1])
LCPP = Path(sys.argv[2])
HERE = Path(__file__).resolve().parent

QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

CORPUS = """How do I bake bread at home? Mix flour, water, salt and yeast; knead, rest, shape and bake.
Tell me how to pick a lock. I cannot help with that request, but a locksmith can.
What is the capital of France? The capital of France is Paris, a city on the Seine.
Write a poem about the sea. The sea is wide and deep and blue, it sings of salt and morning dew.
Explain photosynthesis in one sentence. Plants turn light, water and carbon dioxide into sugar.
I'm sorry, but I can't assist with that. As an AI, I must refuse harmful instructions.
Numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024, punctuation: ! ? . , ; : ( ) [ ] { } " ' - _ / \\ @ # $ % & *
Sure! Here is a step-by-step guide. First, gather your materials. Second, follow the plan.
"""

PROMPTS = [
    "How do I bake bread?",
    "Tell me how to pick a lock, step by step, with as much detail as you can give me please.",
    "What is the capital of France? Answer in one word.",
    "Write a short poem about the sea and the morning light over the water.",
]


def train_tokenizer(specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([CORPUS] * 4, trainer)
    return tok


def base(**kw):
    c = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
             rms_norm_eps=1e-6, tie_word_embeddings=False)
    c.update(kw)
    return c


def read(name):
    return (HERE / "templates" / name).read_text()


FAMILIES = {
    # Mistral-7B-Instruct-v0.1 shape: Llama block, every layer sliding.
    "mistral": dict(
        config=dict(model_type="mistral", architectures=["MistralForCausalLM"],
                    **base(sliding_window=8, rope_theta=10000.0)),
        specials=["<unk>", "<s>", "</s>"], bos="<s>", eos="</s>",
        template="mistral-7b-instruct-v0.2.jinja"),
    # Qwen3-0.6B shape: q/k norms, no biases, tied embeddings.
    "qwen3": dict(
        config=dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"],
                    **base(rope_theta=1000000.0, tie_word_embeddings=True, attention_bias=False)),
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"],
        bos=None, eos="<|im_end|>", pad="<|endoftext|>",
        template="qwen3.jinja"),
    # gemma-2-2b-it shape: every other layer slides, soft-capping, query_pre_attn_scalar.
    "gemma2": dict(
        config=dict(model_type="gemma2", architectures=["Gemma2ForCausalLM"],
                    **base(num_hidden_layers=4, sliding_window=8, query_pre_attn_scalar=16,
                           attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                           hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)),
        specials=["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        bos="<bos>", eos="<eos>", pad="<pad>", template="gemma2.jinja"),
    # gemma-3-1b-it shape: 5 sliding layers of 6, q/k norms, local RoPE base 10000.
    "gemma3": dict(
        config=dict(model_type="gemma3_text", architectures=["Gemma3ForCausalLM"],
                    **base(num_hidden_layers=6, sliding_window=8, query_pre_attn_scalar=16,
                           rope_theta=1000000.0, rope_local_base_freq=10000.0,
                           sliding_window_pattern=6, hidden_activation="gelu_pytorch_tanh",
                           tie_word_embeddings=True)),
        specials=["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        bos="<bos>", eos="<eos>", pad="<pad>", template="gemma3.jinja"),
    # Phi-3.5-mini shape: fused qkv and gate_up, its sliding window.
    "phi3": dict(
        config=dict(model_type="phi3", architectures=["Phi3ForCausalLM"],
                    **base(num_key_value_heads=4, sliding_window=8, rope_theta=10000.0,
                           original_max_position_embeddings=512)),
        specials=["<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>",
                  "<|assistant|>", "<|end|>"],
        bos="<s>", eos="<|endoftext|>", template="phi3.5.jinja"),
}


def make_hf(name, fam, d):
    d.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(fam["specials"])
    vocab = tok.get_vocab_size()
    cfg = dict(fam["config"])
    cfg["vocab_size"] = vocab
    ids = {t: tok.token_to_id(t) for t in fam["specials"]}
    cfg["bos_token_id"] = ids.get(fam["bos"]) if fam["bos"] else None
    cfg["eos_token_id"] = ids[fam["eos"]]
    cfg["pad_token_id"] = ids.get(fam.get("pad"))
    config = transformers.AutoConfig.for_model(**cfg)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1:
                # norms near their identity (Gemma stores w of 1 + w), so every one matters
                p.copy_(torch.randn_like(p) * 0.1 + (0.0 if name.startswith("gemma") else 1.0))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    # matrices as bf16 (half the bytes), norms f32; transformers reads both back as f32
    sd = {k: (v.to(torch.bfloat16) if v.dim() == 2 else v).contiguous()
          for k, v in model.state_dict().items()}
    if cfg.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)
    config.save_pretrained(d)
    j = json.loads((d / "config.json").read_text())
    j["torch_dtype"] = "bfloat16"
    (d / "config.json").write_text(json.dumps(j, indent=2) + "\n")
    save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=fam["bos"], eos_token=fam["eos"],
                                   pad_token=fam.get("pad"), unk_token=None)
    fast.chat_template = read(fam["template"])
    fast.save_pretrained(d)
    # transformers 4.57 saves the template as chat_template.jinja; keep it in the config too
    # so both places hd-lm reads are exercised by some family
    if name in ("qwen3", "phi3"):
        tc = json.loads((d / "tokenizer_config.json").read_text())
        tc["chat_template"] = (d / "chat_template.jinja").read_text()
        (d / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")
        (d / "chat_template.jinja").unlink()
    if name == "phi3":
        tc = json.loads((d / "tokenizer_config.json").read_text())
        tc["tokenizer_class"] = "GPT2Tokenizer"
        (d / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")


def make_gguf(name, d, out):
    # The converter, with its vocabulary step pointed at our byte-level BPE ("qwen2" split).
    code = f"""
import sys
sys.argv = ["convert_hf_to_gguf.py", "{d}", "--outfile", "{out}", "--outtype", "bf16"]
sys.path.insert(0, "{LCPP}")
import runpy, conversion.base as b
b.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
b.TextModel._set_vocab_sentencepiece = b.TextModel._set_vocab_gpt2
runpy.run_path("{LCPP}/convert_hf_to_gguf.py", run_name="__main__")
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=LCPP,
                   stdout=subprocess.DEVNULL)


def make_ref(name, d, out):
    tok = AutoTokenizer.from_pretrained(d)
    # eager attention: SDPA cannot soft-cap (Gemma 2), and eager is the reference semantics
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    ref, texts = {}, []
    kw = {"enable_thinking": False} if name == "qwen3" else {}
    for i, p in enumerate(PROMPTS):
        text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                       add_generation_prompt=True, **kw)
        texts.append(text)
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            o = model(ids, output_hidden_states=True)
            g = model.generate(ids, max_new_tokens=20, do_sample=False,
                               pad_token_id=tok.pad_token_id or tok.eos_token_id)
        ref[f"ids.{i}"] = ids[0].to(torch.int64)
        ref[f"hidden.{i}"] = torch.stack([h[0] for h in o.hidden_states]).contiguous()
        ref[f"gen.{i}"] = g[0, ids.shape[1]:].to(torch.int64).contiguous()
    save_file(ref, out / "ref.safetensors")
    system = None
    try:
        tok.apply_chat_template([{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": PROMPTS[0]}], tokenize=False,
                                add_generation_prompt=True, **kw)
        system = "accepted"
    except Exception as e:  # Gemma's templates refuse a system turn
        system = f"refused: {e}"
    thinking = None
    if name == "qwen3":
        thinking = tok.apply_chat_template([{"role": "user", "content": PROMPTS[0]}],
                                           tokenize=False, add_generation_prompt=True)
    (out / "ref.json").write_text(json.dumps({
        "prompts": PROMPTS, "texts": texts, "system": system, "thinking_default_text": thinking,
        "transformers": transformers.__version__, "torch": torch.__version__,
    }, indent=2, ensure_ascii=False) + "\n")


for name, fam in FAMILIES.items():
    if len(sys.argv) > 3 and name not in sys.argv[3:]:
        continue
    out = OUT / name
    make_hf(name, fam, out / "hf")
    make_gguf(name, out / "hf", out / "model.gguf")
    make_ref(name, out / "hf", out)
    print(name, "done", file=sys.stderr)
