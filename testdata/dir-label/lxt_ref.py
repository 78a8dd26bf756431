"""AttnLRP token relevances from lxt 2.1 on Hugging Face transformers: the independent
reference of `dir-label tokens` (and the speed baseline of `make bench`).

For each prompt (chat template with the generation prompt, as transformers tokenises it),
each layer L and each direction c (rows of components.{L} in --components), the target is
c . hidden_states[L][-1] at the last prompt token, seeded with 1/(c . h) as the paper's
reference does, back-propagated with lxt's efficient AttnLRP rules (monkey_patch of
modeling_llama / qwen2 / qwen3 / gemma3, the families lxt has rules for); a token's relevance
is sum_d(embedding * gradient). Qwen3's template is rendered with enable_thinking=False (the
study's --thinking off; other templates ignore it).

  python lxt_ref.py --gguf model.gguf --prompts p.csv --components c.safetensors \
      --layers 10,20 --out ref.npz            # relevances, token ids (committed reference)
  python lxt_ref.py --hf testdata/families/gemma3/hf --prompts lxt_prompts.csv \
      --components lxt_family_components.safetensors --layers 3,6 --out lxt_ref_gemma3.npz
      # a Hugging Face directory, eager attention (the family fixtures' references)
  python lxt_ref.py ... --make-components c.safetensors --k 3 --seed 7
      # first writes seeded random unit directions for those layers
  python lxt_ref.py ... --bench --threads 2   # prints prompts x components per second

One forward per prompt (batch 1, as the reference) and one backward per direction on the
kept graph (retain_graph), the cheapest way to use lxt for several directions.
"""
import argparse, csv, os, sys, time, types

import numpy as np
import torch


def stub_torchvision():
    # lxt.efficient.models imports torchvision for its ViT map, which we never use.
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass
    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    vt = types.ModuleType("torchvision.models.vision_transformer")
    vt.nn = torch.nn
    models.vision_transformer = vt
    tv.models = models
    sys.modules.update({"torchvision": tv, "torchvision.models": models,
                        "torchvision.models.vision_transformer": vt})


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf")
    src.add_argument("--hf", help="Hugging Face model directory")
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--components", required=True)
    ap.add_argument("--layers", required=True)
    ap.add_argument("--comps", type=int, default=None, help="first N rows of each components.{L}")
    ap.add_argument("--make-components", action="store_true")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    stub_torchvision()
    from lxt.efficient import monkey_patch
    from safetensors.numpy import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.models.gemma3 import modeling_gemma3
    from transformers.models.llama import modeling_llama
    from transformers.models.qwen2 import modeling_qwen2
    from transformers.models.qwen3 import modeling_qwen3

    for m in (modeling_llama, modeling_qwen2, modeling_qwen3, modeling_gemma3):
        monkey_patch(m)
    if a.hf:
        tok = AutoTokenizer.from_pretrained(a.hf)
        model = AutoModelForCausalLM.from_pretrained(a.hf, dtype=torch.float32,
                                                     attn_implementation="eager")
    else:
        d, f = os.path.split(os.path.abspath(a.gguf))
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    layers = [int(x) for x in a.layers.split(",")]
    width = model.config.hidden_size
    if a.make_components:
        rng = np.random.default_rng(a.seed)
        comps = {}
        for l in layers:
            c = rng.standard_normal((a.k, width)).astype(np.float32)
            comps[f"components.{l}"] = c / np.linalg.norm(c, axis=1, keepdims=True)
        save_file(comps, a.components)
    comps = load_file(a.components)
    dirs = {l: torch.from_numpy(comps[f"components.{l}"][: a.comps].astype(np.float32)) for l in layers}
    rows = list(csv.DictReader(open(a.prompts, newline="", encoding="utf-8")))
    emb_layer = model.get_input_embeddings()
    out, ids_all, offsets = {}, [], [0]
    n_targets, t0 = 0, time.perf_counter()
    for r in rows:
        ids = tok.apply_chat_template([{"role": "user", "content": r["prompt"]}],
                                      add_generation_prompt=True, tokenize=True,
                                      enable_thinking=False)
        ids = torch.tensor([ids])
        emb = emb_layer(ids).detach().requires_grad_(True)
        # The decoder body only: the hidden states need no vocabulary-wide logits.
        hs = model.model(inputs_embeds=emb, output_hidden_states=True, use_cache=False).hidden_states
        for l in layers:
            h = hs[l][0, -1]
            for j, c in enumerate(dirs[l]):
                emb.grad = None
                t = h @ c
                (t / t.detach()).backward(retain_graph=True)
                rel = (emb * emb.grad).sum(-1)[0].detach().numpy().astype(np.float64)
                out.setdefault(f"relevance.{l}.{j}", []).append(rel)
                n_targets += 1
        ids_all.extend(ids[0].tolist())
        offsets.append(len(ids_all))
    dt = time.perf_counter() - t0
    if a.bench:
        print(f"lxt: {len(rows)} prompts x {n_targets // len(rows)} targets in {dt:.2f} s = "
              f"{n_targets / dt:.2f} prompt-components/s")
    if a.out:
        arrays = {k: np.concatenate(v) for k, v in out.items()}
        arrays["token_ids"] = np.array(ids_all, dtype=np.int64)
        arrays["offsets"] = np.array(offsets, dtype=np.int64)
        tmp = a.out + ".part.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
