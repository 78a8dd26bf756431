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

Two more fixtures carry a SentencePiece tokenizer (sentencepiece's BPE trainer, byte
fallback), as real Mistral and Gemma files do: mistral-spm (Llama-style, a space prefixed to
every text run) and gemma2-spm (no prefix). Their GGUF vocabulary goes through the converter's
own SentencePiece step (tokenizer.ggml.model "llama"), and ref.safetensors also holds llama.cpp's
own token ids of each templated prompt (lcpp_ids.P, llama-cpp-python with its vocabulary only).

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


# Text outside the prompts' vocabulary for the SentencePiece fixtures: byte fallback (accents,
# emoji, CJK), runs of spaces, newlines, a special token inside text.
EXTRA = [
    "Grüße aus Köln — naïve café 😀 你好",
    "  two  leading spaces,\ttabs\tand\nnew lines\n\n",
    "Sure</s>and then<unk> more [INST] text",
    "I'm sorry, but I can't assist with that.",
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


def train_spm(name, fam, d):
    """A SentencePiece BPE model with byte fallback (Mistral: <unk> <s> </s> at 0-2; Gemma:
    its control tokens), read back by transformers' slow-to-fast converter."""
    import sentencepiece as spm
    d.mkdir(parents=True, exist_ok=True)
    corpus = d / "corpus.txt"
    corpus.write_text(CORPUS * 4)
    specials = fam["specials"]
    kw = dict(input=str(corpus), model_prefix=str(d / "tokenizer"), model_type="bpe",
              vocab_size=fam.get("vocab", 512), byte_fallback=True, character_coverage=1.0,
              split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
              normalization_rule_name="identity", add_dummy_prefix=fam["prefix"],
              minloglevel=2)
    if name.startswith("gemma"):
        kw.update(pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
                  bos_piece="<bos>", unk_piece="<unk>",
                  user_defined_symbols=["<start_of_turn>", "<end_of_turn>"])
    else:
        kw.update(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    spm.SentencePieceTrainer.train(**kw)
    corpus.unlink()
    (d / "tokenizer.vocab").unlink()
    return d / "tokenizer.model"


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
    # Mistral-7B-Instruct-v0.3 shape (no window) with a Llama-style SentencePiece tokenizer.
    "mistral-spm": dict(
        config=dict(model_type="mistral", architectures=["MistralForCausalLM"],
                    **base(sliding_window=None, rope_theta=1000000.0)),
        specials=["<unk>", "<s>", "</s>"], bos="<s>", eos="</s>", spm=True, prefix=True,
        template="mistral-7b-instruct-v0.2.jinja"),
    # gemma-2-2b-it shape with Gemma's SentencePiece conventions (no space prefix).
    "gemma2-spm": dict(
        config=dict(model_type="gemma2", architectures=["Gemma2ForCausalLM"],
                    **base(num_hidden_layers=2, sliding_window=8, query_pre_attn_scalar=16,
                           attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                           hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)),
        specials=["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        bos="<bos>", eos="<eos>", pad="<pad>", spm=True, prefix=False, template="gemma2.jinja"),
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
    if fam.get("spm"):
        from transformers import GemmaTokenizerFast, LlamaTokenizerFast
        model_file = train_spm(name, fam, d)
        cls = GemmaTokenizerFast if name.startswith("gemma") else LlamaTokenizerFast
        extra = {} if name.startswith("gemma") else {"legacy": True, "add_prefix_space": True}
        fast = cls(vocab_file=str(model_file), bos_token=fam["bos"], eos_token=fam["eos"],
                   pad_token=fam.get("pad"), unk_token="<unk>", add_bos_token=False, **extra)
        tok = fast.backend_tokenizer
    else:
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
    if not fam.get("spm"):
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=fam["bos"],
                                       eos_token=fam["eos"], pad_token=fam.get("pad"),
                                       unk_token=None)
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


def make_gguf(name, fam, d, out):
    # The converter, with its vocabulary step pointed at our byte-level BPE ("qwen2" split);
    # SentencePiece fixtures keep the converter's own vocabulary step.
    patch = "" if fam.get("spm") else """
b.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
b.TextModel._set_vocab_sentencepiece = b.TextModel._set_vocab_gpt2"""
    code = f"""
import sys
sys.argv = ["convert_hf_to_gguf.py", "{d}", "--outfile", "{out}", "--outtype", "bf16"]
sys.path.insert(0, "{LCPP}")
import runpy, conversion.base as b{patch}
runpy.run_path("{LCPP}/convert_hf_to_gguf.py", run_name="__main__")
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=LCPP,
                   stdout=subprocess.DEVNULL)


def lcpp_ids(gguf, texts):
    """llama.cpp's own tokenization of each text (special tokens parsed, no BOS added)."""
    from llama_cpp import Llama
    llm = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    return [torch.tensor(llm.tokenize(t.encode(), add_bos=False, special=True), dtype=torch.int64)
            for t in texts]


def make_ref(name, fam, d, out):
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
    extra = {}
    if fam.get("spm"):
        for i, ids in enumerate(lcpp_ids(out / "model.gguf", texts)):
            ref[f"lcpp_ids.{i}"] = ids
        for i, ids in enumerate(lcpp_ids(out / "model.gguf", EXTRA)):
            ref[f"lcpp_extra.{i}"] = ids
        hf = [tok(t, add_special_tokens=False)["input_ids"] for t in EXTRA]
        for i, ids in enumerate(hf):
            ref[f"hf_extra.{i}"] = torch.tensor(ids, dtype=torch.int64)
        extra = {"extra_texts": EXTRA,
                 "extra_decoded": [tok.decode(ids, skip_special_tokens=True) for ids in hf]}
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
        "transformers": transformers.__version__, "torch": torch.__version__, **extra,
    }, indent=2, ensure_ascii=False) + "\n")


for name, fam in FAMILIES.items():
    if len(sys.argv) > 3 and name not in sys.argv[3:]:
        continue
    out = OUT / name
    make_hf(name, fam, out / "hf")
    make_gguf(name, fam, out / "hf", out / "model.gguf")
    make_ref(name, fam, out / "hf", out)
    print(name, "done", file=sys.stderr)
